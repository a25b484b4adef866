"""Scale and architecture sweep: the config's settings, the tests across settings on planted counts, and the
whole study through the CLI on two tiny settings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from typer.testing import CliRunner

from rlbasins.cli import app
from rlbasins.core.config import ConfigError, dump_config, parse_config
from rlbasins.studies.sweep import barrier_means, graded_test, homogeneity_test, spearman_trend
from tests.conftest import tiny_cueconflict_config, write_yaml
from tests.test_escaping import ESCAPED, SCRIPT, write_sweep_with_a_hostile_setting_name

LABELS = ["colour", "shape", "neither"]


def sweep_config(settings: list[dict], **sweep) -> dict:
    """The conftest's tiny CueConflict experiment with a ``sweep`` of ``settings``, analysis cut to what the
    sweep reads."""
    data = tiny_cueconflict_config()
    data.update(name="sw", seeds={"count": 4})
    data["ppo"]["total_timesteps"] = 4096
    data["checkpoints"]["every"] = 2048
    data["analysis"].update(early={"detectors": []}, training_length={"enabled": False}, basin_count={"enabled": False})
    data["sweep"] = {"settings": settings, **sweep}
    return data


# --------------------------------------------------------------------------- config


def test_settings_become_member_configs_outside_the_hash() -> None:
    data = sweep_config([{"name": "narrow", "policy.hidden_sizes": [8]},
                         {"name": "wide", "policy.hidden_sizes": [16, 16], "policy.activation": "relu",
                          "ppo.total_timesteps": 2048}])
    cfg = parse_config(data)
    narrow, wide = cfg.sweep_members()
    assert (narrow.name, wide.name) == ("sw-narrow", "sw-wide")
    assert narrow.policy.hidden_sizes == [8] and narrow.ppo == cfg.ppo and narrow.sweep is None
    assert wide.policy.hidden_sizes == [16, 16] and wide.policy.activation == "relu"
    assert wide.ppo.total_timesteps == 2048 and wide.ppo.n_epochs == cfg.ppo.n_epochs
    without = parse_config({k: v for k, v in data.items() if k != "sweep"})
    assert cfg.hash() == without.hash()  # the sweep decides which runs exist, not what a seed computes
    assert len({cfg.hash(), narrow.hash(), wide.hash()}) == 3


def test_bad_overrides_are_named_by_setting_and_field() -> None:
    data = sweep_config([{"name": "ok", "policy.hidden_sizes": [8]},
                         {"name": "zero", "policy.hidden_sizes": [0]},
                         {"name": "typo", "polcy.activation": "relu", "policy.activation": "sigmoid"},
                         {"name": "ok", "sweep.permutations": 100, "name_": 1}])
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    issues = {issue.path: issue for issue in info.value.issues}
    assert set(issues) == {"sweep.settings[1].policy.hidden_sizes[0]", "sweep.settings[2].polcy",
                           "sweep.settings[2].policy.activation", "sweep.settings[3].name",
                           "sweep.settings[3].sweep.permutations"}
    assert "did you mean 'policy'" in issues["sweep.settings[2].polcy"].expected
    assert "no other setting" in issues["sweep.settings[3].name"].expected


def test_a_grid_is_a_product_of_settings_read_once() -> None:
    data = sweep_config([{"name": "narrow", "policy.hidden_sizes": [8]}],
                        grid={"ppo.learning_rate": [3e-4, 1e-3], "ppo.ent_coef": [0.0, 0.01]})
    cfg = parse_config(data)
    assert [s.name for s in cfg.sweep.settings] == [
        "narrow", "learning_rate-0.0003_ent_coef-0.0", "learning_rate-0.0003_ent_coef-0.01",
        "learning_rate-0.001_ent_coef-0.0", "learning_rate-0.001_ent_coef-0.01"]
    assert cfg.sweep.settings[4].overrides == {"ppo.learning_rate": 1e-3, "ppo.ent_coef": 0.01}
    assert cfg.sweep.grid is None  # expanded: the resolved config lists the settings, so reading it again adds none
    assert [s.name for s in parse_config(yaml.safe_load(dump_config(cfg))).sweep.settings] == \
        [s.name for s in cfg.sweep.settings]
    members = cfg.sweep_members()
    assert (members[4].ppo.learning_rate, members[4].ppo.ent_coef) == (1e-3, 0.01)

    with pytest.raises(ConfigError) as info:  # a bad value is named where it lands
        parse_config(sweep_config([], grid={"ppo.learning_rate": [-1.0, 1e-3]}))
    assert [issue.path for issue in info.value.issues] == ["sweep.settings[0].ppo.learning_rate"]


def test_sweep_needs_two_settings_and_a_labelled_env() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(sweep_config([{"name": "only"}]))
    assert [issue.path for issue in info.value.issues] == ["sweep.settings"]
    data = sweep_config([{"name": "a"}, {"name": "b", "policy.hidden_sizes": [8]}])
    data["env"] = {"id": "CartPole-v1", "num_envs": 8}  # a held-out suite without strategy labels
    data.pop("engine")
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert [issue.path for issue in info.value.issues] == ["sweep"]


def test_cli_rejects_a_bad_override_before_writing_anything(tmp_path: Path) -> None:
    config = write_yaml(tmp_path / "sweep.yaml", sweep_config([{"name": "a", "policy.hidden_sizes": [8]},
                                                               {"name": "b", "policy.hidden_sizes": [-4]}]))
    result = CliRunner().invoke(app, ["sweep", str(config), "--runs-dir", str(tmp_path / "runs"), "--no-progress"])
    assert result.exit_code == 2
    assert "sweep.settings[1].policy.hidden_sizes[0]" in result.output
    assert not (tmp_path / "runs").exists()


# --------------------------------------------------------------------------- tests across settings


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 12), min_size=2, max_size=3).filter(lambda row: sum(v > 0 for v in row) >= 2),
       st.lists(st.integers(1, 4), min_size=2, max_size=5))
def test_identical_label_shares_are_homogeneous(row: list[int], multiples: list[int]) -> None:
    table = np.array([[m * v for v in row] for m in multiples])      # every setting: the same shares
    test = homogeneity_test(table, LABELS[:len(row)], permutations=200)
    assert test.statistic == pytest.approx(0.0, abs=1e-9)
    assert test.p_asymptotic == pytest.approx(1.0) and test.p_permutation == 1.0 and test.p == pytest.approx(1.0)


def test_opposite_label_shares_are_not_homogeneous() -> None:
    test = homogeneity_test(np.array([[12, 0, 0], [0, 12, 0], [6, 6, 0]]), LABELS, permutations=2000)
    assert test.labels == ["colour", "shape"]  # a label no seed has is no column of the test
    assert test.p < 1e-3 and test.p_permutation_ci[1] < 0.01


def test_small_expected_counts_fall_back_to_a_permutation_test_that_matches_fisher() -> None:
    table = np.array([[5, 1], [1, 5]])                                # expected counts 3: Cochran's rule fails
    test = homogeneity_test(table, LABELS[:2], permutations=20_000)
    assert test.small_expected and test.method.startswith("permutation") and test.p == test.p_permutation
    fisher = stats.fisher_exact(table)[1]                             # equal row totals: the same ordering
    low, high = test.p_permutation_ci
    assert low <= fisher <= high


def test_one_label_everywhere_has_nothing_to_test() -> None:
    test = homogeneity_test(np.array([[0, 8, 0], [0, 12, 0]]), LABELS, permutations=100)
    assert test.statistic is None and test.p == 1.0 and "same label" in test.note


def test_a_share_rising_with_scale_has_a_positive_trend() -> None:
    setting_of = np.repeat(np.arange(4), 12)
    scale = np.log2([1_000, 4_000, 16_000, 64_000])[setting_of]
    has_label = np.concatenate([np.arange(12) < n for n in (1, 4, 8, 11)])   # shares 1/12 … 11/12
    trend = spearman_trend(scale, has_label, setting_of, "shape", resamples=500)
    assert trend.rho > 0.5 and trend.rho_ci[0] > 0 and trend.p < 1e-3
    flat = spearman_trend(scale, np.zeros(48, bool), setting_of, "neither", resamples=100)
    assert flat.rho is None and "no seed" in flat.note


def test_graded_shares_that_shift_between_settings_differ() -> None:
    rng = np.random.default_rng(0)
    same = [rng.uniform(0.6, 0.8, 12).tolist() for _ in range(3)]
    shifted = [*same[:2], (np.array(same[2]) - 0.3).tolist()]
    assert graded_test(same, "neither").p > 0.01
    assert graded_test(shifted, "neither").p < 1e-3
    assert graded_test([[0.0] * 4, [0.0] * 5], "shape").statistic is None


def test_barrier_means_split_pairs_by_basin() -> None:
    basin_of = np.array([0, 0, 0, 1, 1, 1, 1])
    barrier = np.where(basin_of[:, None] == basin_of[None], 0.1, 0.8)
    np.fill_diagonal(barrier, 0.0)
    means = barrier_means(barrier, basin_of, resamples=300)
    assert means["within"][0] == pytest.approx(0.1) and means["across"][0] == pytest.approx(0.8)
    assert means["within"][1] == pytest.approx([0.1, 0.1]) and means["across"][1] == pytest.approx([0.8, 0.8])
    assert barrier_means(barrier, np.zeros(7, int), resamples=100)["across"] == (None, None)


# --------------------------------------------------------------------------- the whole study


@pytest.mark.slow
def test_sweep_trains_each_setting_once_and_compares_them(tmp_path: Path) -> None:
    config = write_yaml(tmp_path / "sweep.yaml", sweep_config(
        [{"name": "w8", "policy.hidden_sizes": [8]}, {"name": "w16", "policy.hidden_sizes": [16]}],
        permutations=200, bootstrap=200))
    runs = tmp_path / "runs"
    command = ["sweep", str(config), "--runs-dir", str(runs), "--no-progress"]
    first = CliRunner().invoke(app, command)
    assert first.exit_code == 0, first.output
    summary = json.loads((runs / "sw" / "sweep.json").read_text())
    assert [s["name"] for s in summary["settings"]] == ["w8", "w16"]
    assert [s["status"] for s in summary["settings"]] == ["trained", "trained"]
    assert summary["settings"][0]["parameters"] < summary["settings"][1]["parameters"]
    for s in summary["settings"]:
        assert s["n_seeds"] == 4 and sum(s["label_counts"].values()) == 4
        assert sum(s["label_shares"].values()) == pytest.approx(1.0)
        assert sum(s["episode_shares"].values()) == pytest.approx(1.0)
        assert all(lo - 1e-9 <= s["label_shares"][k] <= hi + 1e-9 for k, (lo, hi) in s["label_share_ci"].items())
        assert s["behaviour_k"] == len(s["basin_labels"]) and sum(s["basin_sizes"]) == 4
    html = (runs / "sw" / "sweep.html").read_text()
    assert 'href="../sw-w8/report.html"' in html and 'href="../sw-w16/report.html"' in html
    assert html.count("data:image/png;base64,") == 2
    checkpoints = sorted((runs / "sw-w8" / "seeds").rglob("*.safetensors")) + \
        sorted((runs / "sw-w16" / "seeds").rglob("*.safetensors"))
    assert checkpoints and (runs / "sw-w8" / "report.html").exists() and (runs / "sw-w16" / "report.html").exists()
    stamps = [path.stat().st_mtime_ns for path in checkpoints]
    hostile = write_sweep_with_a_hostile_setting_name(runs / "sw" / "sweep.json", tmp_path / "hostile")
    assert ESCAPED in hostile and SCRIPT not in hostile  # setting names are text, not markup

    again = CliRunner().invoke(app, command)  # finished members are reused, not trained again
    assert again.exit_code == 0, again.output
    summary = json.loads((runs / "sw" / "sweep.json").read_text())
    assert [s["status"] for s in summary["settings"]] == ["reused", "reused"]
    assert [path.stat().st_mtime_ns for path in checkpoints] == stamps
