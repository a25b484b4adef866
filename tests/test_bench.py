"""`rlbasins bench` runs end to end at a tiny scale and writes what it prints (numbers are never asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rlbasins.cli import app


@pytest.mark.slow
def test_bench_ppo_measures_sb3_the_engine_the_floor_syncs_and_memory(tmp_path: Path) -> None:
    output = tmp_path / "ppo.json"
    result = CliRunner().invoke(app, ["bench", "ppo", "--env", "rlbasins/CueConflict-v0", "--seeds", "1", "--seeds",
                                      "3", "--epochs", "2", "--sb3-steps", "512", "--n-steps", "32",
                                      "--batch-size", "64", "-o", str(output)])
    assert result.exit_code == 0, result.output
    measured = json.loads(output.read_text())
    assert measured["sb3_all_cores_env_steps_per_s"] > 0
    assert [row["seeds"] for row in measured["batched"]] == [1, 3]
    for row in measured["batched"]:
        assert row["env_steps_per_s"] > 0 and row["floor_env_steps_per_s"] > 0 and row["peak_rss_bytes"] > 0
        assert row["host_syncs_per_iteration"] > 0  # the CPU path; CUDA's is sync-free
        assert row["peak_device_bytes"] is None
        assert 0 < row["collect_share"] < 1  # the rollouts' share of an iteration, the update taking the rest
    assert measured["batched"][1]["rss_bytes_per_extra_seed"] is not None
    for column in ("× SB3", "floor/K", "collect", "syncs", "MB/seed"):
        assert column in result.output


def test_bench_ppo_with_a_reward_model_times_it_against_the_env_reward(tmp_path: Path) -> None:
    output = tmp_path / "learned.json"
    card = Path(__file__).resolve().parent.parent / "reward_models" / "zoo" / "cue_conflict.json"
    result = CliRunner().invoke(app, ["bench", "ppo", "--reward-model", str(card), "--seeds", "2", "--epochs", "1",
                                      "--n-steps", "8", "--batch-size", "32", "--hidden", "8", "-o", str(output)])
    assert result.exit_code == 0, result.output
    measured = json.loads(output.read_text())
    assert (measured["env"], measured["env_kwargs"]) == ("rlbasins/CueConflict-v0", {"size": 5})  # the card's
    assert measured["hidden_sizes"] == [8]
    (row,) = measured["rows"]
    assert row["seeds"] == 2 and row["env_reward_env_steps_per_s"] > 0 and row["learned_reward_env_steps_per_s"] > 0
    assert row["slowdown"] == row["env_reward_env_steps_per_s"] / row["learned_reward_env_steps_per_s"]
    assert row["model_seconds_per_iteration"] > 0 and row["model_share_of_learned_iteration"] > 0
    assert "slowdown" in result.output


def test_bench_ppo_names_a_missing_reward_model_card(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["bench", "ppo", "--reward-model", str(tmp_path / "none.json")])
    assert result.exit_code == 2 and "no reward-model card" in result.output


def test_bench_envs_writes_one_row_per_env_and_batch_size(tmp_path: Path) -> None:
    output = tmp_path / "envs.json"
    result = CliRunner().invoke(app, ["bench", "envs", "--env", "rlbasins/GoalOrPlace-v0", "--num-envs", "1",
                                      "--num-envs", "64", "--seconds", "0.05", "--repeats", "1", "-o", str(output)])
    assert result.exit_code == 0, result.output
    rows = json.loads(output.read_text())["results"]
    assert [(row["env"], row["num_envs"]) for row in rows] == [("rlbasins/GoalOrPlace-v0", 1),
                                                               ("rlbasins/GoalOrPlace-v0", 64)]
    assert all(row["env_steps_per_s"] > 0 for row in rows)


@pytest.mark.parametrize("vary", ["ppo", "env"])
def test_bench_grid_times_a_grid_against_one_setting_of_as_many_seeds(tmp_path: Path, vary: str) -> None:
    output = tmp_path / "grid.json"
    result = CliRunner().invoke(app, ["bench", "grid", "--settings", "3", "--seeds", "2", "--epochs", "1",
                                      "--iterations", "1", "--vary", vary, "-o", str(output)])
    assert result.exit_code == 0, result.output
    measured = json.loads(output.read_text())
    assert (measured["settings"], measured["seeds_per_setting"], measured["vary"]) == (3, 2, vary)
    rates = measured["env_steps_per_s"]
    assert rates["grid"] > 0 and rates["one setting"] > 0
    assert measured["grid_over_one_setting"] == rates["grid"] / rates["one setting"]
    assert "grid / one setting" in result.output


def test_bench_analysis_times_every_stage_of_a_run_against_its_target(trained, tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained.root, run)
    output = tmp_path / "analysis.json"
    result = CliRunner().invoke(app, ["bench", "analysis", "--run", str(run), "-o", str(output)])
    assert result.exit_code == 0, result.output
    measured = json.loads(output.read_text())
    assert measured["seeds"] == 5 and measured["train_seconds"] is None
    assert {"behaviour", "barriers", "early detection"} <= set(measured["stages"])
    assert (measured["target_seeds"], measured["target_seconds"]) == (64, 10.0)          # up to 64 seeds
    assert measured["total_seconds"] >= sum(measured["stages"].values()) > 0
    assert "target for 64 seeds" in result.output
