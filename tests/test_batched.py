"""The batched engine: per-seed independence, determinism, exact resume, and the stacked pieces."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlbasins.core.config import load_config, parse_config
from rlbasins.core.policy import ActorCritic, StackedPolicy
from rlbasins.core.store import RunDir, sha256_file
from rlbasins.train import batched, train_experiment
from rlbasins.train.batched import SeedwiseAdam, clip_grad_norm_per_seed
from tests.conftest import tiny_config, tiny_cueconflict_config


def grid_config(**overrides):
    base = dict(engine="batched", env={"id": "rlbasins/CueConflict-v0", "num_envs": 4},
                ppo={"total_timesteps": 1024, "n_steps": 32, "batch_size": 64, "n_epochs": 2},
                checkpoints={"every": 256})
    base.update(overrides)
    return tiny_config(**base)


def _train(tmp_path: Path, **overrides) -> RunDir:
    return train_experiment(parse_config(grid_config(**overrides)), tmp_path / "runs", show_progress=False)


def _weights(run: RunDir, k: int, step: int) -> dict[str, torch.Tensor]:
    return run.seed(k).load_policy(step)[0]


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> RunDir:
    return _train(tmp_path_factory.mktemp("batched"), seeds={"count": 3})


def test_trains_every_seed_and_checkpoints_on_schedule(reference: RunDir) -> None:
    manifest = reference.manifest()
    assert manifest["status"] == "finished"
    assert all(s["status"] == "finished" for s in manifest["seeds"].values())
    assert [e.step for e in reference.seed(2).entries()] == [0, 256, 512, 768, 1024]
    assert not _same(_weights(reference, 0, 0), _weights(reference, 0, 1024))
    assert not _same(_weights(reference, 0, 1024), _weights(reference, 1, 1024))


def test_same_config_gives_bit_identical_checkpoints(reference: RunDir, tmp_path: Path) -> None:
    again = _train(tmp_path, seeds={"count": 3})
    for k in range(3):
        for path in sorted(reference.seed(k).ckpt_dir.glob("*.safetensors")):
            assert sha256_file(path) == sha256_file(again.seed(k).ckpt_dir / path.name), path.name


def test_a_seed_does_not_depend_on_the_other_seeds(reference: RunDir, tmp_path: Path) -> None:
    alone = _train(tmp_path, seeds={"count": 1})
    assert _same(_weights(alone, 0, 1024), _weights(reference, 0, 1024))


def test_nan_poisoned_seed_is_failed_and_the_others_are_unchanged(reference: RunDir, tmp_path: Path,
                                                                  monkeypatch) -> None:
    real_update = batched.BatchedTrainer._update

    def poisoning_update(self, *args):
        stats = real_update(self, *args)
        if self.num_timesteps == 512:
            with torch.no_grad():
                next(iter(self.policy.params.values()))[1].fill_(float("nan"))
        return stats

    monkeypatch.setattr(batched.BatchedTrainer, "_update", poisoning_update)
    run = _train(tmp_path, seeds={"count": 3})
    seeds = run.manifest()["seeds"]
    assert seeds["1"]["status"] == "failed" and "non-finite" in seeds["1"]["error"]
    assert seeds["1"]["last_step"] == 256
    for k in (0, 2):
        assert seeds[str(k)]["status"] == "finished"
        assert _same(_weights(run, k, 1024), _weights(reference, k, 1024))


def test_resume_from_a_checkpoint_is_exact(reference: RunDir, tmp_path: Path) -> None:
    import json

    run = _train(tmp_path, seeds={"count": 3})
    for k in range(3):  # forget everything after step 512, as if killed there
        store = run.seed(k)
        store.index_path.write_text(json.dumps(json.loads(store.index_path.read_text())[:3]))
    manifest = run.manifest()
    manifest["status"] = "interrupted"
    for seed in manifest["seeds"].values():
        seed["status"] = "running"
    run.write_manifest(manifest)
    train_experiment(parse_config(grid_config(seeds={"count": 3})), tmp_path / "runs", resume=True,
                     show_progress=False)
    for k in range(3):
        assert sha256_file(run.seed(k).policy_path(1024)) == sha256_file(reference.seed(k).policy_path(1024))
        assert sha256_file(run.seed(k).state_path(1024)) == sha256_file(reference.seed(k).state_path(1024))


@pytest.mark.parametrize("kwargs", [{}, {"sutton_barto_reward": False}], ids=["torch core", "gymnasium fallback"])
def test_cartpole_trains_through_the_core_or_the_gymnasium_fallback(tmp_path: Path, kwargs: dict) -> None:
    from rlbasins.train.batched import BatchedEnv

    cfg = parse_config(tiny_config(engine="batched", name="cartpole", env={"id": "CartPole-v1", "num_envs": 2,
                                                                           "kwargs": kwargs}))
    env = BatchedEnv(cfg, [cfg.env.kwargs] * 2, torch.tensor([1, 2]), torch.device("cpu"))
    assert (env.groups[0][1].core is None) == bool(kwargs)
    run = train_experiment(cfg, tmp_path / "runs", show_progress=False)
    assert run.manifest()["status"] == "finished"
    assert not _same(_weights(run, 0, 0), _weights(run, 0, 2048))


ROW_KWARGS = {          # env id → (a per-row kwarg and values to draw from, None = unset; a kwarg that splits groups)
    "rlbasins/CueConflict-v0": ("nuisance", [None, 0.0, 0.2, 0.5], "probe", ["halfway", "adjacent"]),
    "rlbasins/TaskOrProxy-v0": ("smoke", [None, 0.0, 0.3, 1.0], "probe", ["halfway", "adjacent"]),
}


@settings(max_examples=12, deadline=None)
@given(env_id=st.sampled_from(sorted(ROW_KWARGS)), data=st.data(),
       actions=st.lists(st.integers(0, 3), min_size=20, max_size=20))
def test_seeds_that_differ_only_in_row_kwargs_share_one_core_and_step_as_alone(env_id, data, actions) -> None:
    """A per-row kwarg (GridCore.row_kwargs: CueConflict's nuisance, TaskOrProxy's smoke) does not split seeds
    into cores, another kwarg does; every seed's observations, rewards and ends are those of a batch of its own
    kwargs alone."""
    from rlbasins.train.batched import BatchedEnv

    name, values, splitter, choices = ROW_KWARGS[env_id]
    picked = data.draw(st.lists(st.sampled_from(values), min_size=2, max_size=5))
    split = data.draw(st.lists(st.sampled_from(choices), min_size=len(picked), max_size=len(picked)))
    data_cfg = tiny_cueconflict_config()
    data_cfg["env"] = {**data_cfg["env"], "id": env_id}
    cfg = parse_config(data_cfg)
    kwargs = [{splitter: other} | ({} if value is None else {name: value})
              for value, other in zip(picked, split, strict=True)]
    env_seeds = torch.arange(len(kwargs)) * 11 + 3
    env = BatchedEnv(cfg, kwargs, env_seeds, torch.device("cpu"))
    assert len(env.groups) == len(set(split))
    alone = [BatchedEnv(cfg, [k], env_seeds[s:s + 1], torch.device("cpu")) for s, k in enumerate(kwargs)]
    E = cfg.env.num_envs
    rows = [slice(s * E, (s + 1) * E) for s in range(len(kwargs))]
    assert all(torch.equal(env.first_obs[r], lone.first_obs) for r, lone in zip(rows, alone, strict=True))
    for t, a in enumerate(actions):
        act = (torch.arange(len(kwargs) * E) + a * (t + 1)) % 4
        mine = env.step(act, with_final=True)
        for r, lone in zip(rows, alone, strict=True):
            theirs = lone.step(act[r], with_final=True)
            assert all(torch.equal(x[r], y) for x, y in zip(mine, theirs, strict=True))


PLANTED = [{"label": "colour", "kwargs": {"informative": "colour"}},
           {"label": "shape", "kwargs": {"informative": "shape"}}]


def _planted_env(**kwargs) -> dict:
    return {"id": "rlbasins/CueConflict-v0", "num_envs": 4, "kwargs": {"size": 5, **kwargs}}


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> tuple[RunDir, list[list[tuple[dict, list[int]]]]]:
    """3 seeds: colour (0, 2) and shape (1, alone in its variant); and each trainer's env groups (kwargs, seeds)."""
    trainers = []
    real_init = batched.BatchedTrainer.__init__

    def spying_init(self, cfg, tasks, **kwargs):
        real_init(self, cfg, tasks, **kwargs)
        seeds = [task.index for task in tasks]
        trainers.append([(group.kwargs, [seeds[s] for s, (g, _) in self.env._where.items() if g == i])
                         for i, (_, group) in enumerate(self.env.groups)])

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(batched.BatchedTrainer, "__init__", spying_init)
        run = _train(tmp_path_factory.mktemp("planted"), env={**_planted_env(), "planted": PLANTED},
                     seeds={"count": 3})
    return run, trainers


def test_planted_variants_train_in_one_batch_and_are_recorded(planted) -> None:
    run, trainers = planted
    assert trainers == [[({"size": 5, "informative": "colour"}, [0, 2]), ({"size": 5, "informative": "shape"}, [1])]]
    manifest = run.manifest()
    assert manifest["status"] == "finished"
    assert [(s["status"], s["planted"]) for s in manifest["seeds"].values()] == [
        ("finished", "colour"), ("finished", "shape"), ("finished", "colour")]
    assert [e.step for e in run.seed(1).entries()] == [0, 256, 512, 768, 1024]
    assert load_config(run.config_path).env.kwargs == {"size": 5}  # analysis evaluates on the standard env


@pytest.mark.parametrize(("seed", "informative", "count"), [(0, "colour", 1), (1, "shape", 2)],
                         ids=["beside a seed vs alone", "alone vs beside a seed"])
def test_a_planted_seed_trains_as_it_would_without_the_other_groups(planted, tmp_path: Path, seed: int,
                                                                    informative: str, count: int) -> None:
    run, _ = planted
    plain = _train(tmp_path, env=_planted_env(informative=informative), seeds={"count": count})
    steps = [e.step for e in run.seed(seed).entries()]
    assert steps == [e.step for e in plain.seed(seed).entries()]
    for step in steps:
        assert _same(_weights(run, seed, step), _weights(plain, seed, step))
        assert _same(run.seed(seed).load_state(step)[0], plain.seed(seed).load_state(step)[0])


def _modules(n: int, seed: int) -> list[ActorCritic]:
    torch.manual_seed(seed)
    return [ActorCritic(obs_shape=5, n_actions=3, hidden_sizes=[8, 6]).ortho_init_() for _ in range(n)]


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 5), seed=st.integers(0, 10_000))
def test_stack_then_unstack_is_the_identity_and_forward_matches(n, seed) -> None:
    modules = _modules(n, seed)
    stacked = StackedPolicy(modules, torch.device("cpu"))
    obs = torch.randn(n, 7, 5)
    logits, values = stacked(obs)
    for s, module in enumerate(modules):
        assert _same(stacked.seed_weights(s), module.state_dict())
        expected_logits, expected_values = module(obs[s])
        assert torch.allclose(logits[s], expected_logits, atol=1e-6)
        assert torch.allclose(values[s], expected_values, atol=1e-6)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), steps=st.integers(1, 6), lr=st.floats(1e-4, 1e-1))
def test_seedwise_adam_matches_torch_adam_and_leaves_masked_seeds_alone(seed, steps, lr) -> None:
    torch.manual_seed(seed)
    reference_param = torch.randn(4, 3, requires_grad=True)
    optimizer = torch.optim.Adam([reference_param], lr=lr, eps=1e-5)
    stacked = {"w": torch.stack([reference_param.detach().clone(), torch.randn(4, 3)]).requires_grad_()}
    frozen_before = stacked["w"][1].detach().clone()
    adam = SeedwiseAdam(stacked)
    for _ in range(steps):
        grad = torch.randn(4, 3)
        reference_param.grad = grad.clone()
        optimizer.step()
        stacked["w"].grad = torch.stack([grad, torch.randn(4, 3)])
        adam.step(lr, torch.tensor([True, False]))
    assert torch.allclose(stacked["w"][0], reference_param, atol=1e-5, rtol=1e-5)  # float32 rounding
    assert torch.equal(stacked["w"][1].detach(), frozen_before)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), steps=st.integers(1, 5), seeds=st.integers(1, 5))
def test_seedwise_adam_in_place_when_all_seeds_are_active_gives_the_masked_steps_bits(seed, steps, seeds) -> None:
    generator = torch.Generator().manual_seed(seed)
    start = {"w": torch.randn(seeds, 4, 3, generator=generator), "b": torch.randn(seeds, 3, generator=generator)}
    in_place, masked = ({k: v.clone().requires_grad_() for k, v in start.items()} for _ in range(2))
    fast, reference = SeedwiseAdam(in_place), SeedwiseAdam(masked, sync_free=True)  # sync-free: always masks
    lr = torch.rand(seeds, generator=generator) * 1e-2
    for step in range(steps + 1):
        active = torch.ones(seeds, dtype=torch.bool) if step < steps else torch.arange(seeds) % 2 == 0
        for name, value in start.items():
            in_place[name].grad = torch.randn(value.shape, generator=generator)
            masked[name].grad = in_place[name].grad.clone()
        fast.step(lr, active)
        reference.step(lr, active)
        for name in start:
            assert torch.equal(in_place[name], masked[name])
            assert torch.equal(fast.m[name], reference.m[name]) and torch.equal(fast.v[name], reference.v[name])


def test_gradient_clipping_is_per_seed() -> None:
    params = {"w": torch.zeros(2, 3, requires_grad=True)}
    params["w"].grad = torch.tensor([[3.0, 4.0, 0.0], [0.03, 0.04, 0.0]])
    norms = clip_grad_norm_per_seed(params, max_norm=0.5)
    assert torch.allclose(norms, torch.tensor([5.0, 0.05]))
    assert torch.allclose(params["w"].grad[0].norm(), torch.tensor(0.5), atol=1e-5)
    assert torch.allclose(params["w"].grad[1], torch.tensor([0.03, 0.04, 0.0]))


def test_other_architectures_fall_back_to_vmap() -> None:
    modules = _modules(3, seed=1)
    for module in modules:  # not a Linear/Tanh/ReLU chain any more
        module.actor = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.LayerNorm(8), torch.nn.Tanh(),
                                           torch.nn.Linear(8, 3))
    stacked = StackedPolicy(modules, torch.device("cpu"))
    assert stacked.plans["actor"] is None
    obs = torch.randn(3, 4, 5)
    logits, values = stacked(obs)
    for s, module in enumerate(modules):
        expected_logits, expected_values = module(obs[s])
        assert torch.allclose(logits[s], expected_logits, atol=1e-6)
        assert torch.allclose(values[s], expected_values, atol=1e-6)


# --------------------------------------------------------------------------- a grid of settings in one batch

GRID_SETTINGS = [
    {},
    {"ppo": {"learning_rate": 3e-4, "ent_coef": 0.0}, "policy": {"init_scale": 0.5}},
    {"ppo": {"lr_schedule": "linear", "clip_range": 0.1, "clip_range_schedule": "linear", "clip_range_vf": 0.2,
             "target_kl": 0.02, "gamma": 0.9, "gae_lambda": 0.8, "vf_coef": 1.0, "max_grad_norm": 0.3}},
    {"env": {"nuisance": 0.5, "probe": "adjacent"}},             # env variants: each seed steps its own
    {"env": {"nuisance": 0.2, "probe": "adjacent"}, "ppo": {"ent_coef": 0.0}},   # one core, a nuisance per row
    {"env": {"nuisance": 0.3}},                                   # in the plain settings' core, beside nuisance 0
]


def _grid_member(i: int, setting: dict):
    from tests.conftest import tiny_cueconflict_config

    data = tiny_cueconflict_config()
    data.update(name=f"grid{i}", seeds={"count": 3}, checkpoints={"every": 4096})
    data["ppo"] = {**data["ppo"], "total_timesteps": 8192, **setting.get("ppo", {})}
    data["policy"] = {**data["policy"], **setting.get("policy", {})}
    data["env"] = {**data["env"], "kwargs": setting.get("env", {})}
    return parse_config(data)


def test_a_grid_of_settings_trains_in_one_batch_as_each_setting_would_alone(tmp_path: Path) -> None:
    from rlbasins.train import train_together

    members = [_grid_member(i, setting) for i, setting in enumerate(GRID_SETTINGS)]
    together = train_together(members, tmp_path / "grid", show_progress=False)
    for run, cfg in zip(together, members, strict=True):
        alone = train_experiment(cfg, tmp_path / "alone", show_progress=False)
        assert run.manifest()["status"] == "finished" and load_config(run.config_path).hash() == cfg.hash()
        for k in range(3):
            steps = [e.step for e in alone.seed(k).entries()]
            assert [e.step for e in run.seed(k).entries()] == steps == [0, 4096, 8192]
            for step in steps:  # every checkpoint: weights, Adam, env state, the same bytes
                for load in ("load_policy", "load_state"):
                    mine, theirs = getattr(run.seed(k), load)(step)[0], getattr(alone.seed(k), load)(step)[0]
                    assert mine.keys() == theirs.keys()
                    assert all(torch.equal(mine[name], theirs[name]) for name in mine), (cfg.name, k, step, load)
    finals = [run.seed(0).load_policy(8192)[0]["actor.0.weight"] for run in together]
    assert all(not torch.equal(finals[0], other) for other in finals[1:])  # the settings acted


def test_configs_that_differ_in_shape_cannot_train_together(tmp_path: Path) -> None:
    from rlbasins.train import lockstep_issue, train_together

    wide = _grid_member(1, {"policy": {"hidden_sizes": [64, 64]}})
    assert "differ in more than" in lockstep_issue([_grid_member(0, {}), wide])
    larger = _grid_member(1, {"env": {"size": 6}})                 # env kwargs that change the observation shape
    assert "differ in more than" in lockstep_issue([_grid_member(0, {}), larger])
    assert lockstep_issue([_grid_member(0, {}), _grid_member(1, {"env": {"nuisance": 0.5}})]) is None
    assert "same name" in lockstep_issue([_grid_member(0, {}), _grid_member(0, {"ppo": {"ent_coef": 0.0}})])
    with pytest.raises(ValueError, match="cannot train together"):
        train_together([_grid_member(0, {}), wide], tmp_path, show_progress=False)
    assert not (tmp_path / "grid0").exists()
