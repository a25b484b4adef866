"""Policies trained elsewhere (:mod:`rlbasins.train.interop`): SB3 zips and plain-torch state dicts are
imported into run directories that ``analyze`` and ``report`` read unchanged, seeds are exported as zips
that stock SB3 loads, and no imported file is ever unpickled."""

from __future__ import annotations

import base64
import io
import json
import pickle
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import gymnasium as gym
import pytest
import torch
from safetensors.torch import save_file
from stable_baselines3 import PPO
from torch import nn
from typer.testing import CliRunner

from envs.suites import get_suite
from rlbasins.cli import app
from rlbasins.core.checkpoints import load_policy
from rlbasins.core.config import load_config
from rlbasins.core.heldout import evaluation_sample, heldout_observations
from rlbasins.core.logs import read_scalars
from rlbasins.core.store import RunDir, read_json, sha256_file

PLAIN_SB3_SCRIPT = textwrap.dedent('''
    """Three PPO seeds on CartPole-v1 with plain Stable-Baselines3: nothing from rlbasins."""
    import sys
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import CheckpointCallback

    folder = sys.argv[1]
    for seed in range(3):
        model = PPO("MlpPolicy", "CartPole-v1", n_steps=256, batch_size=64, n_epochs=4, seed=seed,
                    policy_kwargs=dict(net_arch=[16, 16]))
        model.learn(2048, callback=CheckpointCallback(1024, f"{folder}/seed{seed}", name_prefix="ppo"))
''')


def _invoke(*args: str | Path) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def _refused(*args: str | Path) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    return result.output


def _heldout_obs(run: RunDir) -> torch.Tensor:
    cfg = load_config(run.config_path)
    return heldout_observations(cfg, get_suite(cfg.env.id), evaluation_sample(cfg).states).float()


def _sb3_probs(model: PPO, obs: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.policy.get_distribution(obs).distribution.probs


@pytest.fixture(scope="module")
def sb3_zips(tmp_path_factory) -> Path:
    """Three CartPole seeds trained by a plain SB3 script in its own process, each with zips at 1,024 and
    2,048 steps (about 15 s)."""
    folder = tmp_path_factory.mktemp("sb3")
    script = folder / "train.py"
    script.write_text(PLAIN_SB3_SCRIPT)
    subprocess.run([sys.executable, str(script), str(folder / "zips")], check=True, cwd=folder, timeout=600)
    return folder / "zips"


@pytest.fixture(scope="module")
def imported(sb3_zips: Path, tmp_path_factory) -> RunDir:
    out = tmp_path_factory.mktemp("runs") / "cartpole_sb3"
    _invoke("import-sb3", *sorted(sb3_zips.iterdir()), "--env", "CartPole-v1", "-o", out)
    return RunDir(out)


# --------------------------------------------------------------------------- import-sb3


def test_plain_sb3_seeds_are_analysed_and_reported_unchanged(imported: RunDir, sb3_zips: Path) -> None:
    manifest = imported.manifest()
    assert manifest["imported"] == {"from": "sb3"} and manifest["status"] == "finished"
    for k in range(3):
        seed = manifest["seeds"][str(k)]
        zips = sorted((sb3_zips / f"seed{k}").glob("*.zip"))
        assert [s["sha256"] for s in seed["sources"]] == [sha256_file(z) for z in zips]
        assert [e.step for e in imported.seed(k).entries()] == [1024, 2048]  # several zips: that seed's checkpoints
        assert seed["hyperparameters"]["n_steps"] == 256 and seed["hyperparameters"]["seed"] == k
        assert seed["hyperparameters"]["clip_range"] == "ConstantSchedule(val=0.2)"
    cfg = load_config(imported.config_path)
    assert cfg.policy.hidden_sizes == [16, 16] and cfg.ppo.n_epochs == 4 and cfg.seeds.count == 3

    _invoke("analyze", imported.root, "--no-progress")
    _invoke("report", imported.root)
    assert read_json(imported.analysis_dir / "basins.json")["behaviour"]["clustering"]["labels"]
    html = imported.report_path.read_text()
    assert "imported from sb3" in html and "no training logs came with them" in html


def test_imported_policies_act_as_sb3_does(imported: RunDir, sb3_zips: Path) -> None:
    obs = _heldout_obs(imported)
    for k in range(3):
        for zip_path, entry in zip(sorted((sb3_zips / f"seed{k}").glob("*.zip")), imported.seed(k).entries(),
                                   strict=True):
            policy, _ = load_policy(imported, k, entry.step)
            with torch.no_grad():
                ours = policy.action_probs(obs)
            assert (ours - _sb3_probs(PPO.load(zip_path, device="cpu"), obs)).abs().max() <= 1e-6


# --------------------------------------------------------------------------- export


def test_an_exported_seed_imports_back_bit_identical_and_sb3_trains_it(imported: RunDir, tmp_path: Path) -> None:
    zip_path = tmp_path / "seed1.zip"
    _invoke("export", f"{imported.root}:1@1024", "-o", zip_path)
    model = PPO.load(zip_path, env=gym.make("CartPole-v1"), device="cpu")
    policy, _ = load_policy(imported, 1, 1024)
    obs = _heldout_obs(imported)
    with torch.no_grad():
        assert (policy.action_probs(obs) - _sb3_probs(model, obs)).abs().max() <= 1e-6
    model.learn(1000)
    assert model.num_timesteps >= 1000

    back = tmp_path / "back"
    _invoke("import-sb3", zip_path, "--env", "CartPole-v1", "-o", back)
    again, _ = load_policy(RunDir(back), 0)
    original = policy.state_dict()
    assert again.state_dict().keys() == original.keys()
    assert all(torch.equal(again.state_dict()[name], original[name]) for name in original)


def test_a_seed_trained_here_exports_to_sb3_with_the_same_action_probabilities(trained: RunDir,
                                                                              tmp_path: Path) -> None:
    import envs  # noqa: F401  (the rlbasins/* ids SB3 is given below)

    cfg = load_config(trained.config_path)
    _invoke("export", f"{trained.root}:2", "-o", tmp_path / "cue.zip")
    model = PPO.load(tmp_path / "cue.zip", env=gym.make(cfg.env.id, **cfg.env.kwargs), device="cpu")
    policy, _ = load_policy(trained, 2)
    obs = _heldout_obs(trained)
    with torch.no_grad():
        assert (policy.action_probs(obs) - _sb3_probs(model, obs)).abs().max() <= 1e-6


def test_seeds_of_a_two_strategy_env_round_trip_through_sb3_and_are_analysed(trained: RunDir, tmp_path: Path) -> None:
    for k in range(4):  # each seed as SB3 checkpoint zips at two steps: early detection has something to read
        for step in (15360, 30720):
            _invoke("export", f"{trained.root}:{k}@{step}", "-o", tmp_path / "zips" / f"seed{k}" / f"{step}.zip")
    back = tmp_path / "back"
    _invoke("import-sb3", *sorted((tmp_path / "zips").iterdir()), "--config", trained.config_path, "-o", back)
    run = RunDir(back)
    for k in range(4):
        assert [e.step for e in run.seed(k).entries()] == [15360, 30720]
        for step in (15360, 30720):
            here, there = load_policy(run, k, step)[0].state_dict(), load_policy(trained, k, step)[0].state_dict()
            assert all(torch.equal(here[name], there[name]) for name in there)
    _invoke("analyze", back, "--no-progress")
    behavior = read_json(run.analysis_dir / "behavior.json")
    assert behavior["labels"] == ["colour", "shape", "neither"] and behavior["preference_greedy"] is not None
    assert not (run.analysis_dir / "symmetry.json").exists()  # it needs each seed's initialisation: not imported
    assert read_scalars(run.tb_dir / "seed_0") == {}  # no training logs came with them: nothing, not an error


# --------------------------------------------------------------------------- untrusted files


class _LeavesAMark:
    """Unpickling this creates the folder ``path``: the proof that a pickle was executed."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        import os

        return os.mkdir, (str(self.path),)


def _with_members(source: Path, target: Path, replace: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for item in zin.infolist():
            zout.writestr(item, replace.get(item.filename, zin.read(item.filename)))
    return target


def test_a_malicious_zip_never_runs_its_code(sb3_zips: Path, tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    payload = pickle.dumps(_LeavesAMark(marker))
    source = sorted((sb3_zips / "seed0").glob("*.zip"))[-1]
    data = json.loads(zipfile.ZipFile(source).read("data"))
    for entry in data.values():  # every cloudpickled object (policy class, spaces, schedules) runs code
        if isinstance(entry, dict) and ":serialized:" in entry:
            entry[":serialized:"] = base64.b64encode(payload).decode()
    hostile = {"data": json.dumps(data).encode(), "policy.optimizer.pth": payload, "pytorch_variables.pth": payload}
    loaded = _with_members(source, tmp_path / "serialized.zip", hostile)
    _invoke("import-sb3", loaded, "--env", "CartPole-v1", "-o", tmp_path / "run")  # what is needed is plain JSON
    assert not marker.exists()

    refused = _with_members(source, tmp_path / "policy.zip", {**hostile, "policy.pth": payload})
    output = _refused("import-sb3", refused, "--env", "CartPole-v1", "-o", tmp_path / "run2")
    assert "policy.pth" in output and "refused unread" in output
    assert not marker.exists() and not (tmp_path / "run2").exists()

    pickle.loads(payload)  # the control: the payload is live, and it is what would have run
    assert marker.is_dir()


def test_unsupported_zips_are_refused_naming_what_is_not_supported(sb3_zips: Path, tmp_path: Path) -> None:
    source = sorted((sb3_zips / "seed0").glob("*.zip"))[-1]
    data = json.loads(zipfile.ZipFile(source).read("data"))
    masked = {**data, "policy_class": {**data["policy_class"], "__module__": "sb3_contrib.common.maskable.policies",
                                       "__init__": "<function MaskableActorCriticPolicy.__init__ at 0x0>"}}
    output = _refused("import-sb3", _with_members(source, tmp_path / "m.zip", {"data": json.dumps(masked).encode()}),
                      "--env", "CartPole-v1")
    assert "sb3_contrib" in output and "MaskablePPO" in output

    state = torch.load(io.BytesIO(zipfile.ZipFile(source).read("policy.pth")), weights_only=True)
    state["features_extractor.linear.weight"] = torch.zeros(8, 4)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    custom = {**data, "policy_kwargs": {":type:": "<class 'dict'>", ":serialized:": "",
                                        "features_extractor_class": "<class '__main__.MyExtractor'>"}}
    output = _refused("import-sb3", _with_members(source, tmp_path / "c.zip", {
        "data": json.dumps(custom).encode(), "policy.pth": buffer.getvalue()}), "--env", "CartPole-v1")
    assert "features_extractor_class" in output and "MyExtractor" in output

    output = _refused("import-sb3", source, "--env", "Acrobot-v1", "-o", tmp_path / "acrobot")
    assert "observation_space" in output and "[6]" in output
    output = _refused("import-sb3", tmp_path / "missing.zip", "--env", "CartPole-v1")
    assert "does not exist" in output
    (tmp_path / "notzip.zip").write_text("hello")
    assert "not a readable zip" in _refused("import-sb3", tmp_path / "notzip.zip", "--env", "CartPole-v1")


# --------------------------------------------------------------------------- import-torch


class CleanRLAgent(nn.Module):
    """The actor-critic of CleanRL's ppo.py (separate nn.Sequential trunks)."""

    def __init__(self, obs_dim: int, n_actions: int, width: int = 8):
        super().__init__()
        self.critic = nn.Sequential(nn.Linear(obs_dim, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(),
                                    nn.Linear(width, 1))
        self.actor = nn.Sequential(nn.Linear(obs_dim, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(),
                                   nn.Linear(width, n_actions))


def test_cleanrl_agents_import_from_safetensors_and_act_as_their_modules(tmp_path: Path) -> None:
    agents = []
    for seed in range(2):
        torch.manual_seed(seed)
        agents.append(CleanRLAgent(4, 2))
        folder = tmp_path / f"seed{seed}"
        folder.mkdir()
        save_file(agents[-1].state_dict(), folder / "5000.safetensors")
    layout = tmp_path / "layout.yaml"
    layout.write_text("actor: actor\ncritic: critic\nactivation: tanh\n")
    out = tmp_path / "run"
    _invoke("import-torch", layout, tmp_path / "seed0", tmp_path / "seed1", "--env", "CartPole-v1", "-o", out)
    run = RunDir(out)
    obs = _heldout_obs(run)
    for k, agent in enumerate(agents):
        policy, step = load_policy(run, k)
        assert step == 5000
        with torch.no_grad():
            assert torch.allclose(policy.action_probs(obs), torch.softmax(agent.actor(obs), -1), atol=1e-6)

    (tmp_path / "bad.yaml").write_text("actor: actor\nactivation: gelu\n")
    output = _refused("import-torch", tmp_path / "bad.yaml", tmp_path / "seed0", "--env", "CartPole-v1",
                      "-o", tmp_path / "bad")
    assert "activation" in output and not (tmp_path / "bad").exists()
    (tmp_path / "wrong.yaml").write_text("actor: policy\n")
    output = _refused("import-torch", tmp_path / "wrong.yaml", tmp_path / "seed0", "--env", "CartPole-v1",
                      "-o", tmp_path / "wrong")
    assert "policy.*" in output


def test_an_existing_run_is_not_replaced_without_overwrite(imported: RunDir, sb3_zips: Path, tmp_path: Path) -> None:
    copy = RunDir(shutil.copytree(imported.root, tmp_path / "copy"))
    before = copy.manifest_path.read_bytes()
    result = CliRunner().invoke(app, ["import-sb3", str(sb3_zips / "seed0"), "--env", "CartPole-v1",
                                      "-o", str(copy.root)])
    assert result.exit_code == 3 and "--overwrite" in result.output
    assert copy.manifest_path.read_bytes() == before
