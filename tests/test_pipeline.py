"""The analysis pipeline end to end (`rlbasins analyze`) on trained runs: barriers, basins and tables on
five CueConflict seeds, and the training-length and basin-count studies on a planted run."""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from rlbasins.analysis import align, barriers, basins
from rlbasins.analysis.barriers import BarrierStudy, InterpolationPath
from rlbasins.analysis.basin_count import basin_count
from rlbasins.analysis.basins import BasinsResult
from rlbasins.analysis.pipeline import analyze_run, load_results
from rlbasins.cli import app
from rlbasins.core.checkpoints import load_policies
from rlbasins.core.config import BasinCountConfig, TrainingLengthConfig, load_config, parse_config
from rlbasins.core.results import to_json
from rlbasins.core.store import RunDir
from rlbasins.train import train_experiment

CUE = "rlbasins/CueConflict-v0"


# --------------------------------------------------------------------------- the pipeline on a trained run


def test_aligned_barriers_are_lower_than_naive_ones_on_trained_pairs(trained: RunDir) -> None:
    cfg = load_config(trained.config_path)
    template, policies, _ = load_policies(trained, list(range(5)))
    probe = barriers.make_probe(template, CUE, {}, n_episodes=8, n_states=128, seed=0)
    aligned = align.align_many(policies, reference="mean")
    pairs = list(itertools.combinations(range(5), 2))
    naive = barriers.barrier_matrix(policies, probe, pairs, points=cfg.analysis.barriers.points)
    after = barriers.barrier_matrix(aligned, probe, pairs, points=cfg.analysis.barriers.points)
    assert (after["loss"] <= naive["loss"]).all()  # measured: naive 0.17–0.38 nats, aligned 0–0.06
    assert after["loss"].mean() < 0.5 * naive["loss"].mean()


def test_analyze_writes_basins_connectivity_and_tables(trained: RunDir) -> None:
    result = CliRunner().invoke(app, ["analyze", str(trained.root), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "behavioural basin" in result.output
    found = json.loads((trained.analysis_dir / "basins.json").read_text())
    conn = json.loads((trained.analysis_dir / "connectivity.json").read_text())
    assert found["seeds"] == list(range(5))
    assert len(found["behaviour"]["clustering"]["labels"]) == 5
    assert sum(b["size"] for b in found["behaviour"]["basins"]) == 5
    stability = found["behaviour"]["stability"]
    assert 0 <= stability["same_k"] <= 1 and (stability["mean_ari"] is None or 0 <= stability["mean_ari"] <= 1)
    for variant in ("naive", "aligned", "aligned_repair"):
        matrix = np.array(conn["matrices"][variant]["loss"])
        assert matrix.shape == (5, 5) and np.allclose(matrix, matrix.T) and np.all(np.diag(matrix) == 0)
    metrics = ["train_return", "loss", "heldout_decided"]
    assert set(conn["matrices"]["aligned_repair"]) == set(metrics) and conn["barrier_metric"] == "train_return"
    assert set(conn["standard_error"]) == set(metrics) and all(v >= 0 for v in conn["standard_error"].values())
    # the weight-space basins read no state; every aligned barrier, with and without REPAIR, is a view beside them
    views = found["weights"]["views"]
    assert [(v["metric"], v["variant"]) for v in views] == [("input_weights", None)] + [
        (m, variant) for variant in ("aligned", "aligned_repair") for m in metrics]
    assert views[0]["reads"] == "no state" and views[0]["clustering"] == found["weights"]["clustering"]
    assert found["agreement"] == views[0]["agreement"]
    assert [v["reads"].split()[0] for v in views[1:4]] == ["training", "training", "held-out"]
    assert conn["paths"] and all(len(p["curves"]["aligned"]["alphas"]) == 5 for p in conn["paths"])
    rows = (trained.analysis_dir / "basins.csv").read_text().splitlines()
    assert rows[0].startswith("seed,behaviour_basin,weight_basin") and len(rows) == 6
    early = json.loads((trained.analysis_dir / "early.json").read_text())
    if early["n_classes"] < 2:  # one basin, and (target auto) one preferred strategy: nothing to predict
        what = "basin" if early["target"] == "basin" else "preferred strategy"
        assert early["skipped"].startswith(f"one {what}") and "early detection skipped" in result.output
    else:
        assert all(len(d["balanced_accuracy"]) == len(early["steps"]) for d in early["detectors"])
    loaded = load_results(trained)  # what the report reads: the typed results, equal to the files
    assert isinstance(loaded.basins, BasinsResult) and isinstance(loaded.barriers, BarrierStudy)
    assert to_json(loaded.basins) == found and loaded.barriers.matrix("naive", "loss").shape == (5, 5)
    assert isinstance(loaded.barriers.paths[0], InterpolationPath) and loaded.init_map is None
    # a two-cue env gets its symmetry test; this one has the duplicated cue planes, so it fails
    assert loaded.symmetry is not None and not loaded.symmetry.passed and "symmetry test — FAIL" in result.output


def test_analyze_an_earlier_checkpoint_or_refuse_a_missing_one(trained: RunDir, tmp_path: Path) -> None:
    ok = CliRunner().invoke(app, ["analyze", str(trained.root), "--no-progress", "--checkpoint", "15360"])
    assert ok.exit_code == 0, ok.output
    behavior = json.loads((trained.analysis_dir / "behavior.json").read_text())
    assert behavior["steps"] == [15360] * 5
    assert max(json.loads((trained.analysis_dir / "early.json").read_text())["steps"] or [0]) <= 15360
    missing = CliRunner().invoke(app, ["analyze", str(trained.root), "--no-progress", "--checkpoint", "123"])
    assert missing.exit_code == 2 and "no checkpoint at step 123" in missing.output


def test_beyond_max_pairwise_seeds_are_compared_to_the_basin_medoids(trained: RunDir) -> None:
    analysis = load_config(trained.config_path).analysis
    settings = analysis.model_copy(update={"barriers": analysis.barriers.model_copy(update={"max_pairwise": 4})})
    summary = analyze_run(trained, show_progress=False, settings=settings)
    conn = json.loads((trained.analysis_dir / "connectivity.json").read_text())
    found = json.loads((trained.analysis_dir / "basins.json").read_text())
    assert conn["mode"] == "to behavioural medoids"
    medoids = {b["medoid"] for b in found["behaviour"]["basins"]}
    matrix = np.array(conn["matrices"]["aligned"]["loss"], dtype=float)
    for i, j in itertools.product(range(5), repeat=2):  # filled exactly on the rows and columns of medoids
        assert np.isfinite(matrix[i, j]) == (i == j or i in medoids or j in medoids)
    # the input weights are measured for every pair at any seed count: the weight-space basins stay a clustering
    assert found["weights"]["clustering"]["method"] == "spectral"
    assert summary.weight_k == found["weights"]["clustering"]["k"]
    # a barrier view is each seed's nearest medoid, not a clustering of the barriers: no ARI for it
    for view in found["weights"]["views"][1:]:
        assert view["clustering"]["method"] == "nearest medoid" and view["clustering"]["k"] == len(medoids)
        assert view["agreement"] == {"ari": None, "low": None, "high": None, "undefined": basins.NEAREST_MEDOID}


def test_one_basin_gives_no_agreement_or_stability_ari(trained: RunDir) -> None:
    from rlbasins.report import write_report

    analyze_run(trained, show_progress=False)
    found = json.loads((trained.analysis_dir / "basins.json").read_text())
    k = found["behaviour"]["clustering"]["k"]
    stability = found["behaviour"]["stability"]
    assert 0 <= stability["same_k"] <= 1
    page = write_report(trained).read_text()
    assert "Symmetry test: could training tell colour from shape?" in page and "<b>FAIL</b>" in page
    behavior = json.loads((trained.analysis_dir / "behavior.json").read_text())
    # 24 held-out episodes drawn from 144 distinct states, without replacement: every interval rests on 24
    assert behavior["n_distinct_starts"] == 24 == behavior["preference_greedy"]["n_distinct_states"]
    assert "start from 24 distinct states" in page and "Fewer than 100 distinct states" in page
    if k == 1:  # five seeds of the standard CueConflict: measured one basin
        assert stability["mean_ari"] is None and stability["undefined"] == basins.ONE_BASIN
        assert found["agreement"]["ari"] is None and found["agreement"]["undefined"] == basins.ONE_BASIN
        assert "ARI not defined (one basin)" in page and "1.00</b>agreement" not in page
    else:
        assert stability["mean_ari"] is not None and "stability under resampled" in page


# --------------------------------------------------------------------------- both studies on a planted run


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory):
    """configs/planted_basins.yaml reduced to 8 seeds × 40,960 steps, checkpoints every 10,240, trained and
    analysed once (as tests/test_planted.py)."""
    from rlbasins.analysis.pipeline import analyze_run
    from rlbasins.core.config import load_config

    data = load_config("configs/planted_basins.yaml").model_dump(mode="json")
    data.update(name="planted-studies")
    data["ppo"]["total_timesteps"] = 40_960
    data["seeds"]["count"] = 8
    data["checkpoints"] = {"every": 10_240}
    data["analysis"]["early"] = {"detectors": []}
    run = train_experiment(parse_config(data), tmp_path_factory.mktemp("runs"), show_progress=False)
    summary = analyze_run(run, show_progress=False)
    return run, summary


@pytest.mark.slow
def test_both_studies_on_planted_basins(planted_run) -> None:
    from sklearn.metrics import adjusted_rand_score

    from rlbasins.core.store import read_json
    from rlbasins.report import study_figures, write_report

    run, summary = planted_run
    found = read_json(run.analysis_dir / "basins.json")
    final = found["behaviour"]["clustering"]["labels"]
    planted = [run.manifest()["seeds"][str(k)]["planted"] for k in found["seeds"]]
    assert found["behaviour"]["clustering"]["k"] == 2  # the planted design (tests/test_planted.py)

    trajectory = read_json(run.analysis_dir / "trajectory.json")
    assert asdict(summary.trajectory) == trajectory
    assert trajectory["skipped"] is None and trajectory["steps"] == [0, 10_240, 20_480, 30_720, 40_960]
    assert trajectory["fractions"] == [0.0, 0.25, 0.5, 0.75, 1.0] and trajectory["n_basins"] == 2
    assert all(sum(map(sum, m)) == 8 for m in trajectory["transitions"])
    assert all(sum(row) == pytest.approx(1.0) for row in trajectory["shares"])
    assert trajectory["late_transitions"] == np.sum(trajectory["transitions"][2:], axis=0).tolist()
    # at the last step every seed is nearest to its own basin's mean, and that is its planted group
    assert trajectory["final_agreement"] == 1.0 and trajectory["assignments"][-1] == final
    assert adjusted_rand_score(planted, trajectory["assignments"][-1]) == 1.0
    late = [f is not None and f > 0.5 for f in trajectory["last_switch"]]
    assert trajectory["late_share"] == sum(late) / 8
    assert trajectory["mean_distance"][-1] < trajectory["mean_distance"][0]

    counted = read_json(run.analysis_dir / "basin_count.json")
    assert asdict(summary.basin_count) == counted
    assert counted["skipped"] is None and counted["observed"] == 2 and counted["basin_sizes"] == [4, 4]
    rare = counted["rarefaction"]
    assert rare["sizes"] == [4, 8] and rare["found_mean"][-1] == 2 and rare["represented"][-1] == pytest.approx(2)
    assert counted["unseen"][0]["singletons"] == 0 and counted["unseen"][0]["chao1"] == 2
    res = counted["resolution"]
    assert res["clusters"][-1] == 1 and (np.diff(res["clusters"]) <= 0).all()
    assert all(low <= high for low, high in res["band"])

    page = write_report(run).read_text()
    for section in ('<section id="trajectory">', '<section id="basin-count">'):
        body = page.split(section)[1].split("</section>")[0]
        assert body.count('<img alt=') >= 2 and "Not measured" not in body and "not tracked" not in body
    assert set(study_figures(run)) == {"fig_drift", "fig_shares", "fig_transitions", "fig_switches",
                                       "fig_rarefaction", "fig_resolution"}
    # the basin-free part: behaviour reaches its final form (drift 0) and the two basins are there at the end
    assert trajectory["drift"][-1] == 0.0 and trajectory["drift"][0] > 0.1 and trajectory["clusters"][-1] == 2


@pytest.mark.slow
def test_studies_that_cannot_be_measured_say_why(planted_run) -> None:
    """One basin or one checkpoint: no trajectory; three seeds: no rarefaction. The report's sections say so."""
    from rlbasins.analysis.training_length import basin_trajectory
    from rlbasins.core.heldout import evaluation_sample, fingerprint_inputs
    from rlbasins.core.store import atomic_write_json, read_json
    from rlbasins.report import write_report

    run, _ = planted_run
    cfg = load_config(run.config_path)
    seeds = list(range(8))
    heldout_obs, _ = fingerprint_inputs(cfg, evaluation_sample(cfg))
    one = basin_trajectory(run, seeds, 40_960, [0] * 8, heldout_obs, TrainingLengthConfig(), show_progress=False)
    assert one.skipped.startswith("one behavioural basin") and one.transitions == [] and one.shares == []
    measured = read_json(run.analysis_dir / "trajectory.json")  # the basin-free part does not need basins
    assert one.steps == measured["steps"] and one.drift == pytest.approx(measured["drift"])
    assert one.clusters == measured["clusters"]
    single = basin_trajectory(run, seeds, 0, [0, 1] * 4, heldout_obs, TrainingLengthConfig(), show_progress=False)
    assert single.skipped == "a single checkpoint" and single.steps == [] and single.drift == []
    few = basin_count(seeds[:3], np.zeros((3, 3)), basins.Clustering("spectral", 1, [0, 0, 0], "eigengap", []),
                      BasinCountConfig(), 8)
    assert few.skipped and few.rarefaction is None and few.resolution is None
    saved = {name: read_json(run.analysis_dir / f"{name}.json") for name in ("trajectory", "basin_count")}
    try:
        atomic_write_json(run.analysis_dir / "trajectory.json", asdict(one))
        atomic_write_json(run.analysis_dir / "basin_count.json", asdict(few))
        page = write_report(run).read_text()
        body = page.split('<section id="trajectory">')[1].split("</section>")[0]
        assert f"Seeds not tracked through the final basins: {one.skipped}." in body and body.count("<img") == 1
        assert f"Not measured: {few.skipped}." in page.split('<section id="basin-count">')[1].split("</section>")[0]
        atomic_write_json(run.analysis_dir / "trajectory.json", asdict(single))
        page = write_report(run).read_text()
        assert "Not measured: a single checkpoint." in page.split('<section id="trajectory">')[1].split("</section>")[0]
    finally:
        for name, data in saved.items():
            atomic_write_json(run.analysis_dir / f"{name}.json", data)
