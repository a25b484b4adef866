"""Basin map: knobs become points one at a time around the base config, bad knobs are named, the per-point
statistics on known cases, and the whole map through the CLI on a tiny TwoDoors experiment."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from rlbasins.cli import app
from rlbasins.core.config import ConfigError, parse_config
from rlbasins.studies.basin_map import bimodality, committed_counts, resolving_share
from tests.conftest import tiny_config, write_yaml


def map_config(knobs: dict, **extra) -> dict:
    """4 TwoDoors seeds × 2,048 steps with a ``basin_map`` of ``knobs``: enough to run every stage, not to learn."""
    data = tiny_config(name="bm", env={"id": "rlbasins/TwoDoors-v0", "kwargs": {"size": 4, "probe": "adjacent"},
                                       "num_envs": 4},
                       engine="batched", policy={"hidden_sizes": [16]},
                       ppo={"total_timesteps": 2048, "n_steps": 64, "batch_size": 128, "n_epochs": 2,
                            "learning_rate": 1e-3},
                       seeds={"count": 4}, checkpoints={"every": 2048},
                       analysis={"heldout": {"n_states": 104, "n_episodes": 104}, "train_episodes": 8})
    data["basin_map"] = {"knobs": knobs, **extra}
    return data


# --------------------------------------------------------------------------- config


def test_knobs_become_points_one_at_a_time_outside_the_hash() -> None:
    data = map_config({"env.kwargs.code_length": [0, 1, 2], "ppo.learning_rate": [1e-3, 3e-3]})
    cfg = parse_config(data)
    points = cfg.map_points()
    base = points[0][2]
    assert points[0][:2] == (None, None) and base.name == "bm-base" and base.basin_map is None
    assert [(knob, value) for knob, value, _ in points[1:]] == [
        ("env.kwargs.code_length", 0), ("env.kwargs.code_length", 1), ("env.kwargs.code_length", 2),
        ("ppo.learning_rate", 1e-3), ("ppo.learning_rate", 3e-3)]
    names = [member.name for _, _, member in points[1:]]
    # code_length 1 is TwoDoors' default but the base does not write it: its own run; learning_rate 1e-3 is the
    # base's value: the base point itself
    assert names == ["bm-env.kwargs.code_length-0", "bm-env.kwargs.code_length-1", "bm-env.kwargs.code_length-2",
                     "bm-base", "bm-ppo.learning_rate-0.003"]
    two = points[3][2]
    assert two.env.kwargs == {"size": 4, "probe": "adjacent", "code_length": 2} and two.ppo == cfg.ppo
    assert points[5][2].ppo.learning_rate == 3e-3 and points[5][2].env == cfg.env
    without = parse_config({k: v for k, v in data.items() if k != "basin_map"})
    assert cfg.hash() == without.hash()  # the map decides which runs exist, not what a seed computes


def test_bad_knobs_are_named_by_knob_and_field() -> None:
    data = map_config({"ppo.ent_coeff": [0.1], "ppo.n_epochs": [4, 0], "name": ["x"], "sweep.permutations": [100]},
                      alpha=0.7)
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    paths = {issue.path for issue in info.value.issues}
    assert paths == {"basin_map.alpha"}  # the section's own fields first: the knobs are checked on a sound base
    del data["basin_map"]["alpha"]
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    issues = {issue.path: issue for issue in info.value.issues}
    assert set(issues) == {"basin_map.knobs.ppo.ent_coeff[0].ppo.ent_coeff",
                           "basin_map.knobs.ppo.n_epochs[1].ppo.n_epochs", "basin_map.knobs.name[0].name",
                           "basin_map.knobs.sweep.permutations[0].sweep.permutations"}
    assert "did you mean 'ent_coef'" in issues["basin_map.knobs.ppo.ent_coeff[0].ppo.ent_coeff"].expected
    assert "fixed by the study" in issues["basin_map.knobs.name[0].name"].expected


def test_a_map_needs_an_env_whose_strategies_it_can_count() -> None:
    data = map_config({"ppo.ent_coef": [0.0, 0.01]})
    data["env"] = {"id": "CartPole-v1", "num_envs": 2}
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert [issue.path for issue in info.value.issues] == ["basin_map"]
    assert "names strategies" in info.value.issues[0].expected


def test_the_cli_rejects_a_bad_knob_before_writing_anything(tmp_path: Path) -> None:
    config = write_yaml(tmp_path / "map.yaml", map_config({"env.kwargs.code_length": [1, 99]}))
    result = CliRunner().invoke(app, ["map", str(config), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert "basin_map.knobs.env.kwargs.code_length[1]" in result.output
    assert not (tmp_path / "runs").exists()


# --------------------------------------------------------------------------- statistics


@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=40), st.floats(0.001, 0.2))
def test_committed_seeds_lean_their_way_significantly(seeds: list[tuple[float, float]], alpha: float) -> None:
    leans, p = [lean for lean, _ in seeds], [q for _, q in seeds]
    counts = committed_counts(leans, p, ["colour", "shape"], alpha)
    assert counts["colour"] == sum(x > 0.5 and q < alpha for x, q in seeds)
    assert counts["shape"] == sum(x < 0.5 and q < alpha for x, q in seeds)
    mirrored = committed_counts([1 - x for x in leans], p, ["colour", "shape"], alpha)
    assert mirrored == {"colour": counts["shape"], "shape": counts["colour"]}
    assert committed_counts([None, *leans], [None, *p], ["colour", "shape"], alpha) == counts  # undecided: neither


@given(st.integers(1, 5000))
def test_the_resolving_share_is_seen_with_95_percent_probability(n_seeds: int) -> None:
    share = resolving_share(n_seeds)
    assert 1 - (1 - share) ** n_seeds == pytest.approx(0.95)
    assert share > resolving_share(n_seeds + 1)


def test_resolving_power_at_32_seeds_is_about_nine_percent() -> None:
    assert resolving_share(32) == pytest.approx(0.0893, abs=1e-4)


def test_the_dip_test_tells_two_modes_from_one() -> None:
    rng = np.random.default_rng(0)
    two = np.r_[rng.uniform(0, 0.15, 32), rng.uniform(0.85, 1, 32)]
    one = rng.beta(5, 5, 64)
    assert bimodality(two)[1] < 0.01
    assert bimodality(one)[1] > 0.05
    assert bimodality(two)[0] > bimodality(one)[0]
    assert bimodality(np.array([0.2, 0.8, 0.5])) == (None, None)      # too few seeds
    assert bimodality(np.full(8, 0.5)) == (None, None)                 # no spread


# --------------------------------------------------------------------------- the map


def test_the_map_trains_each_point_once_and_measures_it(tmp_path: Path, monkeypatch) -> None:
    import rlbasins.train

    config = write_yaml(tmp_path / "map.yaml", map_config({"env.kwargs.code_length": [0], "ppo.learning_rate": [1e-3],
                                                           "ppo.ent_coef": [0.01]}))
    runs = tmp_path / "runs"
    batches = []  # the runs each call of train_together trained: one lockstep batch each
    real = rlbasins.train.train_together
    monkeypatch.setattr(rlbasins.train, "train_together",
                        lambda cfgs, *args, **kwargs: batches.append([c.name for c in cfgs]) or real(cfgs, *args,
                                                                                                     **kwargs))
    command = ["map", str(config), "--runs-dir", str(runs), "--no-progress"]
    first = CliRunner().invoke(app, command)
    assert first.exit_code == 0, first.output
    assert "resolving power" in first.output
    # the entropy point differs from the base in a per-seed PPO setting only: one batch; the env kwarg needs its own
    assert sorted(map(sorted, batches)) == [["bm-base", "bm-ppo.ent_coef-0.01"], ["bm-env.kwargs.code_length-0"]]
    result = json.loads((runs / "bm" / "basin_map.json").read_text())
    assert (runs / "bm" / "basin_map.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in runs.iterdir()) == ["bm", "bm-base", "bm-env.kwargs.code_length-0",
                                                      "bm-ppo.ent_coef-0.01"]
    assert result["strategies"] == ["colour", "shape"] and result["base_values"] == {  # code_length: TwoDoors' own
        "env.kwargs.code_length": 1, "ppo.learning_rate": 1e-3, "ppo.ent_coef": 0.0}      # default, unset in the base
    base, (code0, lr, ent) = result["base"], result["points"]
    assert (code0["knob"], code0["value"], lr["knob"], lr["value"]) == ("env.kwargs.code_length", 0,
                                                                        "ppo.learning_rate", 1e-3)
    assert lr["run_dir"] == base["run_dir"] and lr["leans"] == base["leans"]  # the base's value: the base point
    for point in (base, code0, ent):
        assert point["status"] == "trained" and point["n_seeds"] == 4 and point["probe_states"] == 104
        assert len(point["leans"]) == len(point["lean_p"]) == 4
        committed = point["committed"]
        assert committed["colour"]["seeds"] + committed["shape"]["seeds"] == point["committed_any"]["seeds"] <= 4
        for share in (*committed.values(), point["committed_any"], point["trained"]):
            assert share["ci"][0] - 1e-9 <= share["share"] <= share["ci"][1] + 1e-9
        assert 0 <= point["undecided"] <= 1 and point["undecided_ci"][0] <= point["undecided_ci"][1]
        assert sum(point["basin_sizes"]) == 4 and len(point["basin_sizes"]) == point["basins"]
        assert point["train_return_min"] <= point["train_return"] <= point["optimum"] == 1.0
        assert (runs / Path(point["run_dir"]).name / "analysis" / "behavior.json").exists()
        assert point["train_seconds"] > 0 and point["seconds"] > 0
    checkpoints = sorted(runs.glob("bm-*/seeds/*/ckpt/*.safetensors"))
    stamps = [path.stat().st_mtime_ns for path in checkpoints]

    again = CliRunner().invoke(app, command)  # finished points are reused, not trained again
    assert again.exit_code == 0, again.output
    result = json.loads((runs / "bm" / "basin_map.json").read_text())
    assert [result["base"]["status"], *(p["status"] for p in result["points"])] == ["reused"] * 4
    assert result["base"]["leans"] == base["leans"]
    assert result["base"]["train_seconds"] == base["train_seconds"]  # the training's time, read from the run
    assert [path.stat().st_mtime_ns for path in checkpoints] == stamps
