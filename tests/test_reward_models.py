"""Learned reward models: artifacts and their hashes, determinism, cue preferences, and PPO on them."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from stable_baselines3.common.vec_env import DummyVecEnv

import envs
from envs.cue_conflict import CueConflictEnv
from reward_models.artifact import load_reward_model
from reward_models.build import build_reward_model
from reward_models.config import RewardModelConfig
from reward_models.data import collect_preferences
from reward_models.zoo.build import ZOO_DIR, zoo_names
from rlbasins.core.config import ConfigError, parse_config
from rlbasins.core.logs import read_scalars
from rlbasins.core.reward_card import read_card
from rlbasins.core.store import CorruptFileError, RunDir, sha256_file
from rlbasins.train import batched, train_experiment
from rlbasins.train.learned_reward import LearnedRewardVecEnv, learned_reward
from tests.conftest import batched_trainer, tiny_config

CUE_MODEL = ZOO_DIR / "cue_conflict.json"


def tiny_recipe(**overrides) -> RewardModelConfig:
    """A reward model that trains in about a second (too little data to be good)."""
    recipe = {"env_id": "rlbasins/CueConflict-v0", "data": {"num_envs": 32, "steps": 16, "pairs": 200},
              "training": {"max_epochs": 2, "batch_size": 32}, **overrides}
    return RewardModelConfig.model_validate(recipe)


def rm_experiment(reward_model: Path | str | None, **overrides) -> dict:
    base = dict(engine="batched", env={"id": "rlbasins/CueConflict-v0", "num_envs": 4},
                reward_model=None if reward_model is None else str(reward_model),
                ppo={"total_timesteps": 512, "n_steps": 32, "batch_size": 64, "n_epochs": 2},
                checkpoints={"every": 256})
    base.update(overrides)
    return tiny_config(**base)


def copy_model(src: Path, dst_dir: Path) -> Path:
    _, weights = read_card(src)
    shutil.copy(weights, dst_dir / weights.name)
    shutil.copy(src, dst_dir / src.name)
    return dst_dir / src.name


# --------------------------------------------------------------------------- the artifact


@pytest.mark.parametrize("name", zoo_names())
def test_shipped_models_load_and_meet_the_acceptance_bar(name: str) -> None:
    loaded = load_reward_model(ZOO_DIR / f"{name}.json")
    card = loaded.card
    assert loaded.sha256 == sha256_file(ZOO_DIR / card["weights"])
    assert (ZOO_DIR / card["weights"]).stat().st_size < 100_000  # KB, not MB
    assert card["metrics"]["preference_accuracy"] >= 0.9


@pytest.mark.parametrize("name", zoo_names())
def test_ppo_on_shipped_models_reaches_90_percent_of_the_optimum(name: str) -> None:
    """The numbers `rlbasins rm ppo configs/<name>_rm.yaml` wrote onto the card: mean and worst seed."""
    ppo = read_card(ZOO_DIR / f"{name}.json")[0]["ppo"]
    assert ppo["seeds"] >= 8 and ppo["optimum"] == 1.0
    assert ppo["fraction_of_optimum_mean"] >= 0.9 and ppo["fraction_of_optimum_min"] >= 0.9, ppo


def test_a_modified_weights_file_is_refused_by_name(tmp_path: Path) -> None:
    card = copy_model(CUE_MODEL, tmp_path)
    weights = tmp_path / read_card(card)[0]["weights"]
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match=f"{weights}.*sha256.*does not match"):
        load_reward_model(card)
    with pytest.raises(ConfigError, match=f"reward_model.*{weights.name}.*rlbasins rm build"):
        parse_config(rm_experiment(card), base_dir=tmp_path)


def test_config_resolves_the_model_and_checks_its_env(tmp_path: Path) -> None:
    cfg = parse_config(rm_experiment("cue_conflict.json"), base_dir=ZOO_DIR)
    assert cfg.reward_model == str(CUE_MODEL)
    assert cfg.reward_model_sha256() == read_card(CUE_MODEL)[0]["weights_sha256"]
    with pytest.raises(ConfigError, match="reward_model.*env.id rlbasins/GoalOrPlace-v0.*CueConflict"):
        parse_config(rm_experiment(CUE_MODEL, env={"id": "rlbasins/GoalOrPlace-v0", "num_envs": 4}))
    with pytest.raises(ConfigError, match="observations of shape"):
        parse_config(rm_experiment(CUE_MODEL, env={"id": "rlbasins/CueConflict-v0", "kwargs": {"size": 6}}))


def test_config_hash_follows_the_model_file_not_its_path(tmp_path: Path) -> None:
    shipped = parse_config(rm_experiment(CUE_MODEL))
    moved = parse_config(rm_experiment(copy_model(CUE_MODEL, tmp_path)))
    assert moved.hash() == shipped.hash() != parse_config(rm_experiment(None)).hash()
    build_reward_model(tiny_recipe(), tmp_path / "cue_conflict.json")  # retrained in place
    assert parse_config(rm_experiment(tmp_path / "cue_conflict.json")).hash() != shipped.hash()


def test_reward_model_training_is_deterministic_on_cpu(tmp_path: Path) -> None:
    cards = [build_reward_model(tiny_recipe(), tmp_path / f"{k}.json") for k in range(2)]
    assert cards[0]["data"]["sha256"] == cards[1]["data"]["sha256"]
    assert (tmp_path / "0.safetensors").read_bytes() == (tmp_path / "1.safetensors").read_bytes()
    other = build_reward_model(tiny_recipe(seed=1), tmp_path / "seed1.json")
    assert other["weights_sha256"] != cards[0]["weights_sha256"]


def test_two_doors_preference_data_favour_neither_door() -> None:
    """Both doors pay in training, so the expert mix walks to each equally often: the data open as many red as
    square doors (with every expert at the red door, ε = 0 alone would open red doors only)."""
    recipe = RewardModelConfig(env_id="rlbasins/TwoDoors-v0", env_kwargs={"size": 4},
                               data={"num_envs": 128, "steps": 48, "pairs": 200})
    t = collect_preferences(recipe).transitions
    opened = t.reward > 0
    at_red = (t.obs[:, 0] * t.obs[:, 1]).flatten(1).sum(1) > 0          # agent plane × red plane: on the red door
    red, square = int((opened & at_red).sum()), int((opened & ~at_red).sum())
    assert red + square > 500 and abs(red - square) / (red + square) < 0.1, (red, square)


@torch.no_grad()
def test_the_two_doors_model_pays_a_doors_own_key_and_a_wrong_key_like_any_step() -> None:
    """The shipped TwoDoors model reads the outcome from the state reached (an opened door is gone from the
    final observation): on 500 training layouts, with the agent on each door, the door's own key is paid far
    above the other key, and the other key (a jam) about as a plain move (the first model, over obs and action,
    paid both keys alike)."""
    card = ZOO_DIR.parent / "below_bar" / "two_doors.json"
    model = load_reward_model(card).model.eval()
    core_class = envs.GRID_ENVS["rlbasins/TwoDoors-v0"]
    start = core_class.training_states(500, seed=11, size=4)
    core = core_class(num_envs=500, size=4)

    def paid(state, key: int) -> torch.Tensor:
        obs = core.reset_to(state)
        step = core.step(torch.full((500,), key))
        return model(obs, torch.full((500,), key), step.final_obs)

    move = paid(start, 1).mean()                                       # a step right (or into a wall)
    for door, own, other in ((0, 4, 5), (1, 5, 4)):
        on_door = dataclasses.replace(start, agent=start.objects[:, door].clone())
        right, wrong = paid(on_door, own), paid(on_door, other)
        assert (right > wrong.max() + 1).all(), (right.min(), wrong.max())
        assert abs(float(wrong.mean() - move)) < 0.2, (wrong.mean(), move)


def test_a_reward_model_for_other_actions_is_refused(tmp_path: Path) -> None:
    """TwoDoors' ``keys`` changes the actions but not the observation: the action count is checked too."""
    card = ZOO_DIR.parent / "below_bar" / "two_doors.json"
    env = {"id": "rlbasins/TwoDoors-v0", "num_envs": 4, "kwargs": read_card(card)[0]["env_kwargs"]}
    assert parse_config(rm_experiment(card, env=env)).reward_model == str(card)
    with pytest.raises(ConfigError, match="reward_model.*for 10 actions.*takes 8"):
        parse_config(rm_experiment(card, env={**env, "kwargs": {**env["kwargs"], "keys": 6}}))


@pytest.mark.slow
@pytest.mark.parametrize("cue", ["colour", "shape"])
def test_a_planted_cue_preference_is_reported(cue: str, tmp_path: Path) -> None:
    """Trained where only one cue pays (CueConflict ``informative``), the model prefers that cue on held-out states."""
    recipe = RewardModelConfig(env_id="rlbasins/CueConflict-v0", env_kwargs={"informative": cue},
                               data={"num_envs": 128, "steps": 32, "pairs": 3000},
                               training={"max_epochs": 8, "batch_size": 32})
    metrics = build_reward_model(recipe, tmp_path / "planted.json")["metrics"]
    assert metrics["cue_preference"]["prefers"] == cue
    assert metrics["cue_preference"]["share_of_states"][cue] >= 0.9
    assert metrics["preference_accuracy"] >= 0.9


# --------------------------------------------------------------------------- PPO on the learned reward


def test_vec_env_wrapper_rewards_the_final_observation_and_keeps_the_true_return() -> None:
    from stable_baselines3.common.monitor import Monitor

    model = load_reward_model(CUE_MODEL).model
    venv = DummyVecEnv([lambda: Monitor(CueConflictEnv())])
    venv.seed(3)
    wrapped = LearnedRewardVecEnv(venv, learned_reward(str(CUE_MODEL)))
    obs = wrapped.reset()
    learned_sum = 0.0
    for _ in range(envs.GRID_ENVS["rlbasins/CueConflict-v0"](1).max_steps):
        action = np.array([0])
        new_obs, reward, done, info = wrapped.step(action)
        next_obs = info[0]["terminal_observation"][None] if done[0] else new_obs
        expected = model(torch.as_tensor(obs), torch.as_tensor(action), torch.as_tensor(next_obs))
        assert reward[0] == pytest.approx(float(expected[0]), abs=1e-6)
        learned_sum += float(reward[0])
        obs = new_obs
        if done[0]:
            assert info[0]["episode"]["r"] == pytest.approx(learned_sum, abs=1e-5)
            assert "true_r" in info[0]["episode"]
            break
    assert done[0]


@pytest.mark.parametrize("engine", ["batched", pytest.param("sb3", marks=pytest.mark.slow)])
def test_engines_train_on_the_model_and_log_both_returns(engine: str, tmp_path: Path) -> None:
    cfg = parse_config(rm_experiment(CUE_MODEL, engine=engine, seeds={"count": 2}))
    run = train_experiment(cfg, tmp_path / "runs", show_progress=False)
    manifest = run.manifest()
    assert manifest["status"] == "finished"
    assert manifest["reward_model_sha256"] == read_card(CUE_MODEL)[0]["weights_sha256"]
    tags = read_scalars(run.tb_dir / "seed_0")
    assert {"rollout/ep_rew_mean", "rollout/true_ep_rew_mean"} <= set(tags)
    assert not np.allclose(tags["rollout/ep_rew_mean"][1], tags["rollout/true_ep_rew_mean"][1])
    plain = train_experiment(parse_config(rm_experiment(None, engine=engine, seeds={"count": 2}, name="plain")),
                             tmp_path / "runs", show_progress=False)
    assert "rollout/true_ep_rew_mean" not in read_scalars(plain.tb_dir / "seed_0")
    end = cfg.checkpoint_steps()[-1]
    learned, env_reward = (r.seed(0).load_policy(end)[0] for r in (run, plain))
    assert any(not torch.equal(learned[k], env_reward[k]) for k in learned)


def test_the_batched_engine_pays_each_step_the_models_reward_of_that_transition_alone(tmp_path: Path,
                                                                                     monkeypatch) -> None:
    """The engine scores a rollout after collecting it, many steps per call (here 100 transitions: calls that
    straddle steps, the last one short); a step whose episode goes on gets the model's reward of (obs, action,
    next obs) scored on that step's transitions alone, bit for bit."""
    monkeypatch.setattr(batched, "LEARNED_REWARD_ROWS", 100)
    trainer = batched_trainer(rm_experiment(CUE_MODEL, seeds={"count": 3}), tmp_path)
    rollout, _, _ = trainer._collect()
    model = load_reward_model(CUE_MODEL).model
    S, T, E = rollout.rewards.shape
    checked = 0
    for t in range(T - 1):
        goes_on = rollout.starts[:, t + 1] == 0                                   # [S, E]: next obs is step t + 1's
        with torch.no_grad():
            alone = model(rollout.obs[:, t].flatten(0, 1), rollout.actions[:, t].flatten(),
                          rollout.obs[:, t + 1].flatten(0, 1)).view(S, E)
        assert torch.equal(rollout.rewards[:, t][goes_on], alone[goes_on])
        checked += int(goes_on.sum())
    assert checked > S * E * (T - 1) // 2
    trainer.close()


def test_batched_seed_on_a_learned_reward_does_not_depend_on_the_others_and_resumes(tmp_path: Path) -> None:
    two = train_experiment(parse_config(rm_experiment(CUE_MODEL, seeds={"count": 2})), tmp_path / "a",
                           show_progress=False)
    one = train_experiment(parse_config(rm_experiment(CUE_MODEL, seeds={"count": 1})), tmp_path / "b",
                           show_progress=False)
    end = parse_config(rm_experiment(CUE_MODEL)).checkpoint_steps()[-1]
    a, b = two.seed(0).load_policy(end)[0], one.seed(0).load_policy(end)[0]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # resume from the middle checkpoint: same final weights
    cfg = parse_config(rm_experiment(CUE_MODEL, seeds={"count": 2}))
    resumed = RunDir(tmp_path / "c" / cfg.name)
    shutil.copytree(two.root, resumed.root)
    for k in range(2):
        store = resumed.seed(k)
        entries = [e for e in store.entries() if e.step <= 256]
        (store.ckpt_dir / "index.json").write_text(__import__("json").dumps([e.__dict__ for e in entries]))
    manifest = resumed.manifest()
    manifest["status"] = "interrupted"
    for seed in manifest["seeds"].values():
        seed["status"] = "interrupted"
    resumed.write_manifest(manifest)
    train_experiment(cfg, tmp_path / "c", resume=True, show_progress=False)
    c = resumed.seed(0).load_policy(end)[0]
    assert all(torch.equal(a[k], c[k]) for k in a)
