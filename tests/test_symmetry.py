"""The symmetry test: a two-cue env whose cue planes coincide in training must fail it (the documented
control), the nuisance knob must pass it, and the asymmetry itself is checked on weights of known
structure."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from rlbasins.analysis.symmetry import (
    GOAL_STATISTIC,
    cue_channels,
    goal_asymmetry,
    goal_change_outside,
    symmetry_test,
    weight_asymmetry,
)
from rlbasins.cli import app
from rlbasins.core.config import parse_config
from rlbasins.core.store import RunDir
from rlbasins.train import train_experiment
from tests.conftest import tiny_config, tiny_cueconflict_config

OBS = (5, 5, 5)                                     # CueConflict's planes [C, H, W] at size 5
A, B = (1, 2), (3, 4)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), out=st.integers(1, 8))
def test_equal_cue_blocks_have_zero_asymmetry_in_linear_and_conv_layout(seed: int, out: int) -> None:
    g = torch.Generator().manual_seed(seed)
    start = torch.randn(out, *OBS, generator=g)
    change = torch.randn(out, *OBS, generator=g)
    change[:, list(B)] = change[:, list(A)]           # cue B's weights move exactly as cue A's
    for shape in ((out, 125), (out, *OBS)):           # a Linear over the flat planes; a Conv2d (5×5 kernel)
        value, shared = weight_asymmetry(start.reshape(shape), (start + change).reshape(shape), A, B, OBS)
        assert value < 1e-6                           # float32 rounding of (start + change) − start only
        assert shared == pytest.approx(float(change[:, list(A)].norm()), rel=1e-6)


def test_asymmetry_is_the_relative_norm_of_the_cue_difference() -> None:
    start = torch.zeros(2, *OBS)
    end = torch.zeros(2, *OBS)
    end[:, 1], end[:, 3] = 1.0, 3.0                   # Δ_A = 1, Δ_B = 3 on one matched plane
    value, shared = weight_asymmetry(start, end, A, B, OBS)
    assert value == pytest.approx(2.0 / 2.0)          # ‖Δ_A − Δ_B‖ / ‖(Δ_A + Δ_B)/2‖ = 2·n / 2·n
    assert shared == pytest.approx(2.0 * (2 * 25) ** 0.5)
    # swapping the roles of the cues changes nothing; the channels outside both cues are ignored
    end[:, 0] = 100.0
    assert weight_asymmetry(start, end, B, A, OBS)[0] == pytest.approx(value)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), region=st.integers(1, 4))
def test_goal_asymmetry_ignores_a_change_shared_by_the_region_cells(seed: int, region: int) -> None:
    g = torch.Generator().manual_seed(seed)
    obs = (2, 5, 5)                                   # GoalOrPlace's planes: agent, goal
    start = torch.randn(3, *obs, generator=g)
    change = torch.randn(3, *obs, generator=g)
    change[:, 1, :region, 5 - region:] = torch.randn(3, 1, 1, generator=g)   # one change for every region cell
    value, agent = goal_asymmetry(start.flatten(1), (start + change).flatten(1), region, obs)
    assert value < 1e-6 and agent == pytest.approx(float(change[:, 0].norm()), rel=1e-6)
    change[0, 1, 0, 4] += 1.0                         # the corner cell alone moves: position-dependent
    if region > 1:
        assert goal_asymmetry(start.flatten(1), (start + change).flatten(1), region, obs)[0] > 0.01
    with pytest.raises(ValueError, match="Linear first layer"):
        goal_asymmetry(start.reshape(3, 2, 5, 5), start.reshape(3, 2, 5, 5), region, obs)
    # the held-out cells' change reads only the goal plane outside the region
    inside_only = torch.zeros(3, *obs)
    inside_only[:, 0] = 5.0                           # the agent plane moves everywhere
    inside_only[:, 1, :region, 5 - region:] = torch.randn(3, region, region, generator=g)
    assert goal_change_outside(start.flatten(1), (start + inside_only).flatten(1), region, obs) == 0.0
    inside_only[1, 1, 4, 0] = -0.5                    # the bottom-left cell, outside every region
    assert goal_change_outside(start.flatten(1), (start + inside_only).flatten(1), region, obs) == \
        pytest.approx(0.5, rel=1e-5)


def goal_or_place_run(tmp_path, region: int) -> tuple[RunDir, dict]:
    data = tiny_cueconflict_config()
    data["env"] = {"id": "rlbasins/GoalOrPlace-v0", "kwargs": {"region": region}, "num_envs": 4}
    data.update(seeds={"count": 2}, checkpoints={"every": 2048})
    data["ppo"]["total_timesteps"] = 2048
    return train_experiment(parse_config(data), tmp_path / f"region{region}", show_progress=False), data


def test_goal_or_place_fails_with_a_fixed_goal_and_passes_with_a_goal_region(tmp_path) -> None:
    """With the goal always in the corner its plane is one image: the weights off the corner never move and the
    corner's move as a bias (asymmetry exactly 0); a goal drawn from a 2 × 2 region is learned cell by cell."""
    fixed, data = goal_or_place_run(tmp_path, 1)
    result = symmetry_test(fixed, parse_config(data), [0, 1])
    assert not result.passed and result.min_asymmetry == 0.0 and result.statistic == GOAL_STATISTIC
    assert all(v > 1e-2 for layer in result.shared_change.values() for v in layer)  # the agent plane trained
    moving, data = goal_or_place_run(tmp_path, 2)
    result = symmetry_test(moving, parse_config(data), [0, 1])
    assert result.passed and result.reads_goal_plane and result.cue_labels == ("goal", "place")
    # the pass is about the region's cells: where the goal never is in training (every held-out goal), an
    # MLP's goal-plane weights get no gradient and stay bit for bit at their initial values
    assert result.heldout_goal_change == [0.0, 0.0]
    store = moving.seed(0)
    (start, _), (end, _) = (store.load_policy(step) for step in (0, 2048))
    outside = torch.ones(5, 5, dtype=torch.bool)
    outside[:2, 3:] = False                                                  # the 2 × 2 region at the corner
    for layer in ("actor.0.weight", "critic.0.weight"):
        goal_plane = [w[layer].reshape(-1, 2, 5, 5)[:, 1] for w in (start, end)]   # [out, H, W]
        assert torch.equal(goal_plane[0][:, outside], goal_plane[1][:, outside])
        assert not torch.equal(goal_plane[0][:, ~outside], goal_plane[1][:, ~outside])
    passed = CliRunner().invoke(app, ["symmetry", str(moving.root)])
    assert passed.exit_code == 0 and "read through untrained weights" in " ".join(passed.output.split())
    failed = CliRunner().invoke(app, ["symmetry", str(fixed.root)])
    assert failed.exit_code == 1 and GOAL_STATISTIC in " ".join(failed.output.split()) and "FAIL" in failed.output


def test_envs_without_paired_cue_planes_say_so() -> None:
    assert cue_channels("rlbasins/CueConflict-v0") == (("colour", "shape"), (A, B))
    for env_id in ("rlbasins/GoalOrPlace-v0", "CartPole-v1"):
        with pytest.raises(ValueError, match="no paired cue planes"):
            cue_channels(env_id)


def test_duplicated_cueconflict_fails_the_symmetry_test_as_the_documented_control(trained: RunDir) -> None:
    cfg = parse_config(tiny_cueconflict_config())
    result = symmetry_test(trained, cfg, [0, 1, 2])
    # the red and the square planes are equal in every training state: float rounding only
    assert not result.passed and result.min_asymmetry < 1e-4
    assert all(v > 1e-2 for layer in result.shared_change.values() for v in layer)  # yet the layer trained
    assert result.steps == [cfg.checkpoint_steps()[-1]] * 3


@pytest.fixture(scope="module")
def nuisance_run(tmp_path_factory) -> tuple[RunDir, dict]:
    data = tiny_cueconflict_config()
    data["env"]["kwargs"] = {"nuisance": 0.5}
    data.update(seeds={"count": 2}, checkpoints={"every": 2048})
    data["ppo"]["total_timesteps"] = 4096
    return train_experiment(parse_config(data), tmp_path_factory.mktemp("runs"), show_progress=False), data


def test_nuisance_breaks_the_symmetry(nuisance_run) -> None:
    run, data = nuisance_run
    result = symmetry_test(run, parse_config(data), [0, 1])
    assert result.passed and result.min_asymmetry > 0.01
    assert set(result.asymmetry) == {"actor.0.weight", "critic.0.weight"}


def test_task_or_proxy_fails_as_cueconflict_does_and_passes_with_smoke(tmp_path) -> None:
    """Without smoke TaskOrProxy is CueConflict's MDP in training (the same asymmetry to every digit); a broken
    machine's smoke makes the true state a pattern and the lamp a point, and training tells them apart."""
    results = []
    for smoke in (0.0, 0.5):
        data = tiny_cueconflict_config()
        data["env"] = {"id": "rlbasins/TaskOrProxy-v0", "kwargs": {"smoke": smoke}, "num_envs": 4}
        data.update(seeds={"count": 2}, checkpoints={"every": 2048})
        data["ppo"]["total_timesteps"] = 2048
        run = train_experiment(parse_config(data), tmp_path / f"smoke{smoke}", show_progress=False)
        results.append(symmetry_test(run, parse_config(data), [0, 1]))
    plain, smoky = results
    assert not plain.passed and plain.min_asymmetry < 1e-4 and plain.cue_labels == ("task", "proxy")
    assert smoky.passed and smoky.min_asymmetry > 0.01


def test_two_doors_passes_the_symmetry_test(tmp_path) -> None:
    """Its colour plane is lit on one door and its square plane on the other, so training tells them apart."""
    data = tiny_cueconflict_config()
    data["env"] = {"id": "rlbasins/TwoDoors-v0", "kwargs": {"size": 4}, "num_envs": 4}
    data.update(seeds={"count": 2}, checkpoints={"every": 2048})
    data["ppo"]["total_timesteps"] = 4096
    run = train_experiment(parse_config(data), tmp_path, show_progress=False)
    result = symmetry_test(run, parse_config(data), [0, 1])
    assert result.passed and result.min_asymmetry > 0.1
    assert cue_channels("rlbasins/TwoDoors-v0") == (("colour", "shape"), (A, B))


def test_cli_writes_the_symmetry_json_and_exits_1_on_a_failed_test(nuisance_run, trained: RunDir) -> None:
    run, _ = nuisance_run
    passed = CliRunner().invoke(app, ["symmetry", str(run.root)])
    assert passed.exit_code == 0, passed.output
    written = json.loads((run.analysis_dir / "symmetry.json").read_text())
    assert written["passed"] and written["seeds"] == [0, 1] and "PASS" in passed.output
    failed = CliRunner().invoke(app, ["symmetry", str(trained.root), "--threshold", "0.01"])
    assert failed.exit_code == 1 and "FAIL" in failed.output


def test_cli_refuses_an_env_without_cue_planes(tmp_path) -> None:
    run = train_experiment(parse_config(tiny_config(seeds={"count": 1})), tmp_path, show_progress=False)
    result = CliRunner().invoke(app, ["symmetry", str(run.root)])
    assert result.exit_code == 2 and "no paired cue planes" in result.output
