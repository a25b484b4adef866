"""Seed-factor grid: the seed → (init row, data column) map, its config checks, the init / data / residual
decomposition on planted truths, and the whole study through the CLI on a tiny grid."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from rlbasins.analysis.seed_factors import (
    basin_information,
    decompose,
    information_with_rows,
    pair_distances,
    seed_factor_study,
    two_way_anova,
    variance_shares,
)
from rlbasins.core.config import SEED_FACTORS, ConfigError, SeedGrid, parse_config
from rlbasins.core.seeding import experiment_seeds, factor_indices, run_seeds
from tests.conftest import tiny_config, tiny_cueconflict_config

DATA_FACTORS = ("env", "action", "minibatch")


# --------------------------------------------------------------------------- seeds on the grid


@given(init=st.integers(2, 6), data=st.integers(2, 6), master=st.integers(0, 2**32))
def test_a_row_shares_the_init_seed_and_a_column_the_data_seeds(init: int, data: int, master: int) -> None:
    seeds = experiment_seeds(master, init * data, SEED_FACTORS, SeedGrid(init=init, data=data))
    for k, s in enumerate(seeds):
        row, column = divmod(k, data)
        assert s.init == seeds[row * data].init                      # same row: same initialisation
        assert all(getattr(s, f) == getattr(seeds[column], f) for f in DATA_FACTORS)  # same column: same data
    assert len({s.init for s in seeds}) == init
    assert len({(s.env, s.action, s.minibatch) for s in seeds}) == data


@given(master=st.integers(0, 2**32), count=st.integers(1, 12),
       vary=st.lists(st.sampled_from(SEED_FACTORS), unique=True))
def test_without_a_grid_every_seed_is_what_it_was_before_grids(master: int, count: int, vary: list[str]) -> None:
    """The pre-grid rule: factors in ``vary`` use the seed's index, the others 0 (tests/test_seeding.py)."""
    before = [run_seeds(master, {f: (k if f in vary else 0) for f in SEED_FACTORS}) for k in range(count)]
    assert experiment_seeds(master, count, vary) == before


def test_factors_left_out_of_vary_are_shared_on_the_grid_too() -> None:
    indices = [factor_indices(k, ["init", "env"], SeedGrid(init=2, data=3)) for k in range(6)]
    assert [i["init"] for i in indices] == [0, 0, 0, 1, 1, 1]
    assert [i["env"] for i in indices] == [0, 1, 2, 0, 1, 2]
    assert all(i["action"] == 0 and i["minibatch"] == 0 for i in indices)


def test_the_grid_is_part_of_the_config_hash() -> None:
    plain = parse_config(tiny_config(seeds={"count": 4}))
    grid = parse_config(tiny_config(seeds={"count": 4, "grid": {"init": 2, "data": 2}}))
    assert plain.hash() != grid.hash()


@pytest.mark.parametrize(("seeds", "env", "field"), [
    ({"count": 5, "grid": {"init": 2, "data": 3}}, None, "seeds.count"),
    ({"count": 6, "grid": {"init": 2, "data": 3}, "vary": ["env", "action"]}, None, "seeds.vary"),
    ({"count": 6, "grid": {"init": 2, "data": 3}, "vary": ["init"]}, None, "seeds.vary"),
    ({"count": 6, "grid": {"init": 2, "data": 3}},
     {"planted": [{"label": "a", "kwargs": {}}, {"label": "b", "kwargs": {}}]}, "seeds.grid"),
])
def test_an_inconsistent_grid_is_a_config_error_naming_the_field(seeds: dict, env: dict | None, field: str) -> None:
    data = tiny_config(seeds=seeds)
    if env:
        data["env"].update(env)
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert [issue.path for issue in caught.value.issues] == [field]
    assert "seeds.grid" in caught.value.issues[0].expected or field == "seeds.grid"


# --------------------------------------------------------------------------- the decomposition


def planted(effect_of_row: np.ndarray, effect_of_column: np.ndarray, noise: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return effect_of_row[:, None] + effect_of_column[None, :] + noise * rng.standard_normal(
        (len(effect_of_row), len(effect_of_column)))


def test_sums_of_squares_add_up_to_the_total() -> None:
    y = np.random.default_rng(1).normal(size=(5, 7))
    ss, _ = two_way_anova(y)
    assert ss.sum() == pytest.approx(((y - y.mean()) ** 2).sum())


@pytest.mark.parametrize("seed", range(3))
def test_an_outcome_set_by_the_row_is_all_init(seed: int) -> None:
    rng = np.random.default_rng(seed)
    result = decompose(planted(rng.uniform(0, 1, 8), np.zeros(8), noise=0.02, seed=seed), "planted", seed=seed)
    assert result.shares["init"] > 0.97 and abs(result.shares["data"]) < 0.02
    assert result.shares_ci["init"][0] > 0.9 and result.shares_ci["data"][1] < 0.1
    assert result.p_values["init"] < 0.01


@pytest.mark.parametrize("seed", range(3))
def test_an_outcome_set_by_the_column_is_all_data(seed: int) -> None:
    rng = np.random.default_rng(seed)
    result = decompose(planted(np.zeros(6), rng.uniform(0, 1, 9), noise=0.02, seed=seed), "planted", seed=seed)
    assert result.shares["data"] > 0.97 and abs(result.shares["init"]) < 0.02
    assert result.shares_ci["data"][0] > 0.9 and result.shares_ci["init"][1] < 0.1
    assert result.p_values["data"] < 0.01


@pytest.mark.parametrize("seed", range(5))
def test_pure_noise_gives_small_factor_shares_whose_intervals_cover_zero(seed: int) -> None:
    result = decompose(planted(np.zeros(8), np.zeros(8), noise=1.0, seed=seed), "noise", seed=seed)
    for factor in ("init", "data"):
        assert abs(result.shares[factor]) < 0.3
        assert result.shares_ci[factor][0] <= 0 <= result.shares_ci[factor][1]
    assert result.shares["residual"] > 0.5


def test_a_constant_outcome_has_nothing_to_split() -> None:
    result = decompose(np.full((3, 4), 0.25), "constant")
    assert result.shares == result.shares_ci == {"init": None, "data": None, "residual": None}
    assert result.p_values == {"init": None, "data": None}  # no NaN: the json stays standard


grids = arrays(np.float64, st.tuples(st.integers(2, 6), st.integers(2, 6)),
               elements=st.floats(-10, 10, allow_nan=False).map(lambda v: round(v, 3)))


@settings(max_examples=60, deadline=None)
@given(y=grids, order=st.randoms(use_true_random=False))
def test_shares_sum_to_one_and_ignore_the_order_of_rows_and_columns(y: np.ndarray, order) -> None:
    shares, ss_shares = variance_shares(y)
    rows, columns = list(range(y.shape[0])), list(range(y.shape[1]))
    order.shuffle(rows)
    order.shuffle(columns)
    shuffled, shuffled_ss = variance_shares(y[np.ix_(rows, columns)])
    for values, again in ((shares, shuffled), (ss_shares, shuffled_ss)):
        if np.isnan(values).any():  # constant (or, on 2 × 2, no component total): undefined either way
            assert np.isnan(again).all()
            continue
        assert values.sum() == pytest.approx(1.0)
        np.testing.assert_allclose(again, values, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(labels=arrays(np.int64, st.tuples(st.integers(2, 5), st.integers(2, 5)), elements=st.integers(0, 2)),
       order=st.randoms(use_true_random=False))
def test_basin_information_lies_in_0_1_and_ignores_row_order(labels: np.ndarray, order) -> None:
    rows = list(range(labels.shape[0]))
    order.shuffle(rows)
    value, shuffled = information_with_rows(labels), information_with_rows(labels[rows])
    if np.isnan(value):
        assert len(np.unique(labels)) == 1 and np.isnan(shuffled)
    else:
        assert -1e-12 <= value <= 1 + 1e-12 and shuffled == pytest.approx(value)


def test_basins_set_by_the_init_carry_all_information_about_the_row_none_about_the_column() -> None:
    labels = np.repeat(np.array([0, 1, 0, 1, 1, 0, 1, 0])[:, None], 8, axis=1)
    result = basin_information(labels, resamples=200, permutations=200)
    init, data = result.factors
    assert result.entropy_bits == pytest.approx(1.0) and result.n_basins == 2
    assert init.normalised == pytest.approx(1.0) and init.p_value < 0.01 and init.corrected > 0.8
    assert init.null_mean < 0.3  # the plug-in bias at 8 × 8: well above 0, well below 1
    assert data.normalised == pytest.approx(0.0) and data.p_value == 1.0


def test_one_basin_leaves_no_basin_variance() -> None:
    assert basin_information(np.zeros((3, 3), dtype=int)).factors is None


def test_seeds_that_act_by_their_init_are_closest_to_their_row() -> None:
    """Planted: a seed's behaviour is a point set by its row plus a little per-seed noise."""
    rng = np.random.default_rng(3)
    init, data = 6, 5
    points = rng.uniform(0, 1, init)[:, None] + 0.01 * rng.standard_normal((init, data))
    flat = points.ravel()
    result = pair_distances(np.abs(flat[:, None] - flat[None]), init, data, resamples=200, permutations=200)
    assert result.same_init < 0.05 < result.neither and result.same_data == pytest.approx(result.neither, rel=0.3)
    assert result.ci["same_init"][1] < result.ci["neither"][0]
    assert result.p_values["init"] < 0.01


def test_a_grid_with_an_unfinished_seed_is_skipped_naming_it() -> None:
    study = seed_factor_study(2, 2, seeds=[0, 1, 3], outcomes={"x": [0.1, 0.2, 0.3]}, basin_labels=[0, 0, 1],
                              statuses={0: "finished", 1: "finished", 2: "failed", 3: "finished"})
    assert study.outcomes == [] and study.basins is None
    assert "seed 2 (failed)" in study.skipped and "2 × 2" in study.skipped


def test_the_study_puts_each_seed_in_its_cell_whatever_the_order_of_seeds() -> None:
    seeds = [3, 0, 2, 1]                                         # analysed seeds in any order
    values = [float(k // 2) for k in seeds]                      # the outcome is the seed's row
    distances = np.abs(np.subtract.outer(values, values))  # [4, 4] in the order of ``seeds``
    study = seed_factor_study(2, 2, seeds, {"row": values}, basin_labels=[k // 2 for k in seeds],
                              distances=distances, resamples=50, permutations=50)
    assert study.seeds == [[0, 1], [2, 3]] and study.outcomes[0].grid == [[0.0, 0.0], [1.0, 1.0]]
    assert study.outcomes[0].shares["init"] == pytest.approx(1.0)
    assert study.basins.labels == [[0, 0], [1, 1]]
    assert study.distances.same_init == 0.0 and study.distances.same_data == study.distances.neither == 1.0


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_seed_factor_study_through_the_cli(tmp_path) -> None:
    """A 3 × 3 grid of tiny CueConflict seeds: `rlbasins run` writes the study and its report section, every
    row starts from the same weights; a seed marked failed makes `analyze` skip the study and say why."""
    import torch
    from typer.testing import CliRunner

    from rlbasins.cli import app
    from rlbasins.core.store import RunDir, read_json
    from tests.conftest import write_yaml

    data = tiny_cueconflict_config()
    data.update(name="grid", seeds={"count": 9, "grid": {"init": 3, "data": 3}})
    data["ppo"]["total_timesteps"] = 4096
    data["checkpoints"] = {"every": 2048}
    data["analysis"].update(early={"detectors": []}, training_length={"enabled": False}, basin_count={"enabled": False},
                            barriers={**data["analysis"]["barriers"], "repair": False, "max_pairwise": 2})
    config = write_yaml(tmp_path / "grid.yaml", data)
    result = CliRunner().invoke(app, ["run", str(config), "--runs-dir", str(tmp_path / "runs"), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "seed factors — 3 × 3 grid; variance of share colour: init" in result.output
    assert "held-out TV between seeds sharing the init" in result.output

    run = RunDir(tmp_path / "runs" / "grid")
    study = read_json(run.analysis_dir / "seed_factors.json")
    assert study["skipped"] is None and study["seeds"] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert set(study["distances"]["ci"]) == {"same_init", "same_data", "neither"}
    assert [o["outcome"] for o in study["outcomes"]] == ["share colour", "share shape", "share neither",
                                                         "held-out return"]
    section = run.report_path.read_text().split('<section id="seed-factors">')[1].split("</section>")[0]
    assert section.count("<img alt=") == 1 and "Not measured" not in section

    initial = [run.seed(k).load_policy(0)[0] for k in range(9)]
    factor_seeds = [run.manifest()["seeds"][str(k)]["factor_seeds"] for k in range(9)]
    for k in range(9):
        row, column = divmod(k, 3)
        assert all(torch.equal(initial[k][name], initial[3 * row][name]) for name in initial[k])
        assert factor_seeds[k]["env"] == factor_seeds[column]["env"]
    assert not torch.equal(initial[0]["actor.0.weight"], initial[3]["actor.0.weight"])

    manifest = run.manifest()
    manifest["seeds"]["4"]["status"] = "failed"
    run.write_manifest(manifest)
    again = CliRunner().invoke(app, ["analyze", str(run.root), "--no-progress"])
    assert again.exit_code == 0, again.output
    assert "seed factors skipped: seed 4 (failed) of the 3 × 3 grid" in again.output
    assert read_json(run.analysis_dir / "seed_factors.json")["skipped"].startswith("seed 4 (failed)")
