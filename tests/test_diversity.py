"""Diversity search (rlbasins.studies.diversity): the config, the rarefaction counts, the probe kept out of the
objective, and the whole study through the CLI on a tiny TwoDoors experiment."""

from __future__ import annotations

import itertools
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from rlbasins.analysis.basin_count import represented_basins
from rlbasins.cli import app
from rlbasins.core.config import ConfigError, load_config, parse_config
from rlbasins.core.store import RunDir, read_json
from rlbasins.studies.diversity import (
    BRANCHES_FILE,
    RESULT_FILE,
    DiversityResult,
    off_probe,
    rarefaction_curve,
)
from tests.conftest import tiny_config, write_yaml


def diversity_config(**diversity) -> dict:
    """TwoDoors seeds of 4,096 steps (barely trained: the study's bookkeeping is tested, not its science)."""
    data = tiny_config(name="div", env={"id": "rlbasins/TwoDoors-v0", "kwargs": {"size": 4, "probe": "adjacent"},
                                        "num_envs": 4},
                       engine="batched", policy={"hidden_sizes": [8, 8]},
                       ppo={"total_timesteps": 4096, "n_steps": 64, "batch_size": 128, "n_epochs": 2,
                            "learning_rate": 1e-3},
                       seeds={"count": 8}, checkpoints={"every": 2048},
                       analysis={"heldout": {"n_states": 104, "n_episodes": 104}, "train_episodes": 8})
    data["diversity"] = {"directions": 2, "resamples": 100, "population": {"size": 4, "bonus": 0.5}, **diversity}
    return data


# --------------------------------------------------------------------------- config


def test_diversity_config_is_validated_and_outside_the_hash() -> None:
    data = diversity_config()
    cfg = parse_config(data)
    assert cfg.hash() == parse_config({k: v for k, v in data.items() if k != "diversity"}).hash()
    with pytest.raises(ConfigError) as info:
        parse_config(diversity_config(branch_at=1000, budget=100))
    assert {issue.path for issue in info.value.issues} == {"diversity.branch_at", "diversity.budget"}


# --------------------------------------------------------------------------- rarefaction


@settings(max_examples=40, deadline=None)
@given(units=st.lists(st.sets(st.integers(0, 3), min_size=1), min_size=1, max_size=7))
def test_rarefaction_over_units_is_the_mean_over_every_subset_of_units(units: list[set[int]]) -> None:
    """The closed form against brute force: the distinct basins of every n-subset of the units, averaged."""
    holding = np.array([sum(b in unit for unit in units) for b in range(4)])
    for n in range(1, len(units) + 1):
        brute = np.mean([len(set().union(*subset)) for subset in itertools.combinations(units, n)])
        assert represented_basins(holding, n, units=len(units)) == pytest.approx(brute)


@settings(max_examples=30, deadline=None)
@given(units=st.lists(st.lists(st.integers(0, 3), min_size=1, max_size=4), min_size=1, max_size=8))
def test_rarefaction_curve_rises_to_the_basins_present(units: list[list[int]]) -> None:
    """Units of several seeds (a base's branches): seed ids are made unique, each holding a basin 0 … 3."""
    seeds, basin_of = [], {}
    for basins in units:
        seeds.append([len(basin_of) + i for i in range(len(basins))])
        basin_of.update(zip(seeds[-1], basins, strict=True))
    curve = rarefaction_curve(seeds, basin_of, unit_steps=10.0, resamples=100)
    assert curve.steps == [10 * n for n in range(1, len(units) + 1)]
    assert np.all(np.diff(curve.found_mean) >= -1e-12)
    assert curve.found_mean[-1] == pytest.approx(len(set(basin_of.values())))
    assert curve.found_mean[0] == pytest.approx(np.mean([len(set(b)) for b in units]))
    assert all(low - 1e-9 <= mean <= high + 1e-9 for mean, (low, high) in zip(curve.found_mean, curve.found_ci,
                                                                              strict=True))


def test_off_probe_drops_exactly_the_rows_equal_to_a_probe_row() -> None:
    probe = torch.arange(12.0).reshape(4, 3)
    obs = torch.stack([probe[2], probe[0] + 0.5, probe[3], torch.zeros(3)])
    assert off_probe(obs, probe).tolist() == [False, True, False, True]


# --------------------------------------------------------------------------- the study


def _suite_observations(cfg, seed: int) -> torch.Tensor:
    """Observations of 2,048 held-out states drawn with ``seed``, independently of the study's own probe sample."""
    from envs.suites import get_suite
    from rlbasins.core.heldout import heldout_observations

    suite = get_suite(cfg.env.id)
    env = gym.make(cfg.env.id, **cfg.env.kwargs)
    states = suite.sample_states(env, np.random.default_rng(seed), 2048)
    env.close()
    obs = heldout_observations(cfg, suite, states)
    return obs.reshape(len(obs), -1).float()


@pytest.mark.slow
def test_diversify_branches_bases_keeps_the_probe_out_and_counts_basins(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import rlbasins.train.ridge as ridge

    seen: list[torch.Tensor] = []
    original = ridge.surrogate_loss

    def recording(template, batch, clip_range, ent_coef):
        seen.append(batch.obs.reshape(len(batch.obs), -1).float())
        return original(template, batch, clip_range, ent_coef)

    monkeypatch.setattr(ridge, "surrogate_loss", recording)
    config = write_yaml(tmp_path / "div.yaml", diversity_config())
    runs = tmp_path / "runs"
    command = ["diversify", str(config), "--runs-dir", str(runs), "--no-progress"]
    first = CliRunner().invoke(app, command)
    assert first.exit_code == 0, first.output
    cfg = load_config(config)
    result = DiversityResult.load(runs / "div" / RESULT_FILE)
    end = cfg.checkpoint_steps()[-1]

    # the held-out probe never entered the objective: no objective input equals a probe state
    assert len(seen) == 2 and sum(len(obs) for obs in seen) == result.probe["objective_samples"]
    probe = torch.cat([_suite_observations(cfg, seed) for seed in (11, 12)])
    assert not (~off_probe(torch.cat(seen), probe)).any()

    # budget 8 seeds: iid trains 8; 2 directions → 4 branches a base → 2 bases for ridge and random; 2 populations
    iid, ridge_m, random_m, population = (result.method(name) for name in ("iid", "ridge", "random", "population"))
    assert len(iid.seeds) == 8 and len(ridge_m.seeds) == len(random_m.seeds) == len(population.seeds) == 8
    assert population.units == [[0, 1, 2, 3], [4, 5, 6, 7]] and population.env_steps == 8 * end
    assert 0 < population.search_steps < population.env_steps                # the bonus's arithmetic, billed
    pop_manifest = RunDir(runs / "div" / "population").manifest()["seeds"]
    assert all(pop_manifest[k]["factor_seeds"] == entry["factor_seeds"]       # member k: iid seed k's streams
               for k, entry in RunDir(runs / "div").manifest()["seeds"].items())
    assert ridge_m.units == [[0, 2, 4, 6], [1, 3, 5, 7]]                     # seed j·B + b: branch j of base b
    assert ridge_m.env_steps == random_m.env_steps == 8 * end
    trained = sum(entry["last_step"] for entry in RunDir(runs / "div" / "ridge").manifest()["seeds"].values())
    assert trained == ridge_m.env_steps
    assert ridge_m.search_steps > 0 and ridge_m.hessian_products > 0 and random_m.search_steps == 0
    assert ridge_m.total_steps > result.budget >= random_m.total_steps    # the Hessian is billed on top
    assert ridge_m.pairs_split[1] == random_m.pairs_split[1] == 4            # 2 bases × 2 directions, ± each
    assert 0 <= ridge_m.pairs_split[0] <= 4 and iid.pairs_split is None

    # a branch is its base's state with the actor moved by α along ±eᵢ; random moves the same α
    iid_run, ridge_run = RunDir(runs / "div"), RunDir(runs / "div" / "ridge")
    manifest, iid_manifest = ridge_run.manifest(), iid_run.manifest()
    plan = read_json(ridge_run.root / BRANCHES_FILE)["branches"]
    random_plan = read_json(RunDir(runs / "div" / "random").root / BRANCHES_FILE)["branches"]
    for branch, control in zip(plan, random_plan, strict=True):
        assert control["step"] == branch["step"] and control["eigenvalue"] is None
        assert branch["eigenvalue"] < 0 and branch["loss_after"] <= branch["loss_before"]
        mine = manifest["seeds"][str(branch["seed"])]["factor_seeds"]
        base = iid_manifest["seeds"][str(branch["base"])]["factor_seeds"]
        assert {f: mine[f] for f in ("env", "action", "minibatch")} == {f: base[f] for f in ("env", "action",
                                                                                           "minibatch")}
        start, _ = ridge_run.seed(branch["seed"]).load_policy(0)
        origin, _ = iid_run.seed(branch["base"]).load_policy(0)
        moved_by = torch.sqrt(sum((start[n].double() - origin[n].double()).pow(2).sum() for n in start
                                  if n.startswith("actor.")))
        assert float(moved_by) == pytest.approx(branch["step"], rel=1e-4)
        assert all(torch.equal(start[n], origin[n]) for n in start if n.startswith("critic."))
        assert iid_run.seed(branch["base"]).load_state(0)[0]["obs"].equal(ridge_run.seed(branch["seed"])
                                                                          .load_state(0)[0]["obs"])

    # the pooled basins and the curves agree with each method's seeds
    assert sum(result.basin_sizes) == 32
    for method in result.methods:
        assert method.curve.found_mean[-1] == pytest.approx(len(set(method.basins)))
        assert sum(method.basin_shares) == pytest.approx(1.0)
    assert (runs / "div" / "report.html").read_text().count('id="diversity"') == 1

    # resumed: nothing trains again, the same counts come back
    again = CliRunner().invoke(app, [*command, "--resume"])
    assert again.exit_code == 0, again.output
    resumed = DiversityResult.load(runs / "div" / RESULT_FILE)
    assert [m.basins for m in resumed.methods] == [m.basins for m in result.methods]
    assert resumed.method("ridge").search_steps == ridge_m.search_steps

    # resumed with other branching settings: refused, naming the run whose branches they would contradict
    other = write_yaml(tmp_path / "div_other.yaml", diversity_config(lanczos_tol=1e-3))
    refused = CliRunner().invoke(app, ["diversify", str(other), "--runs-dir", str(runs), "--no-progress", "--resume"])
    assert refused.exit_code == 2 and "was branched with" in refused.output and "lanczos_tol" in refused.output


def test_diversify_refuses_seed_grids_it_would_overwrite(tmp_path: Path) -> None:
    data = diversity_config()
    data["seeds"] = {"count": 8, "grid": {"init": 2, "data": 4}}
    result = CliRunner().invoke(app, ["diversify", str(write_yaml(tmp_path / "div.yaml", data)), "--runs-dir",
                                      str(tmp_path / "runs"), "--no-progress"])
    assert result.exit_code == 2 and "seeds.grid" in result.output
    assert not (tmp_path / "runs").exists()


def test_diversify_names_a_budget_too_small_for_one_base(tmp_path: Path) -> None:
    config = write_yaml(tmp_path / "div.yaml", diversity_config(directions=8))
    result = CliRunner().invoke(app, ["diversify", str(config), "--runs-dir", str(tmp_path / "runs"),
                                      "--budget", "8192", "--no-progress"])
    assert result.exit_code == 2
    assert "cannot pay for one base's 16 branches" in result.output
    assert not (tmp_path / "runs").exists()
