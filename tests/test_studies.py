"""Training length (basins tracked through checkpoints) and basin count (rarefaction, unseen basins,
resolution): specifications of the pieces, and the whole of both studies on a planted run."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.cluster.hierarchy import fcluster

from rlbasins.analysis import basins
from rlbasins.analysis.basin_count import (
    average_linkage,
    basin_count,
    chao1,
    clusters_at,
    default_sizes,
    good_turing_coverage,
    persistent_count,
    rarefaction,
    represented_basins,
    resolution_curve,
    unseen_estimate,
)
from rlbasins.analysis.trajectory import (
    basin_means,
    distances_to_basins,
    last_switches,
    nearest_basin,
    summarize,
    transition_counts,
)
from rlbasins.config import BasinCountConfig, TrajectoryConfig


def random_probs(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.dirichlet(np.ones(shape[-1]), size=shape[:-1])


def blobs(sizes: list[int], spread: float = 0.02, gap: float = 0.6, seed: int = 0) -> np.ndarray:
    """A symmetric distance matrix of well-separated groups: ``spread`` within, ``gap`` between (± noise)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    d = np.where(labels[:, None] == labels[None], spread, gap) + rng.uniform(0, spread, (len(labels),) * 2)
    d = (d + d.T) / 2
    np.fill_diagonal(d, 0.0)
    return d


# --------------------------------------------------------------------------- training length


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 4), st.integers(0, 2**16))
def test_a_seed_acting_as_a_basin_mean_is_assigned_that_basin(n_basins: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = np.arange(12) % n_basins
    final = random_probs(rng, (12, 10, 4))
    means = basin_means(final, labels)
    assert means.shape == (n_basins, 10, 4) and np.allclose(means.sum(-1), 1.0)
    distances = distances_to_basins(means, means)  # each "seed" is exactly one basin's mean
    assert np.allclose(np.diag(distances), 0.0) and (distances >= 0).all() and (distances <= 1 + 1e-12).all()
    assert (nearest_basin(distances) == np.arange(n_basins)).all()


def test_total_variation_to_a_basin_is_half_the_l1_distance_averaged_over_states() -> None:
    seed_probs = np.array([[[1.0, 0.0], [0.5, 0.5]]])                    # [1 seed, 2 states, 2 actions]
    means = np.array([[[0.0, 1.0], [0.5, 0.5]], [[1.0, 0.0], [1.0, 0.0]]])
    assert np.allclose(distances_to_basins(seed_probs, means), [[0.5, 0.25]])


@given(st.lists(st.integers(0, 3), min_size=1, max_size=30))
def test_transitions_of_a_constant_assignment_are_diagonal(assignment: list[int]) -> None:
    counts = transition_counts(np.array(assignment), np.array(assignment), 4)
    assert (counts == np.diag(np.bincount(assignment, minlength=4))).all()


def test_transitions_count_each_seed_once_from_row_to_column() -> None:
    counts = transition_counts(np.array([0, 0, 1, 1, 1]), np.array([0, 1, 1, 0, 1]), 2)
    assert counts.tolist() == [[1, 1], [1, 2]]


def test_last_switch_is_the_first_checkpoint_of_the_final_assignment() -> None:
    fractions = [0.0, 0.25, 0.5, 0.75, 1.0]
    assignments = np.array([[0, 1, 1, 0],     # step 0
                            [0, 0, 1, 0],
                            [0, 0, 1, 1],
                            [0, 0, 1, 1],
                            [0, 0, 1, 0]])   # [T steps, S seeds]
    assert last_switches(assignments, fractions) == [None, 0.25, None, 1.0]


def test_summary_of_a_planted_trajectory() -> None:
    """8 seeds, two basins; seed 7 leaves basin 0 for basin 1 at 75% of training and the rest never move:
    the shares, transitions, last switches and late share follow."""
    rng = np.random.default_rng(0)
    templates = random_probs(rng, (2, 6, 3))
    templates[1] = templates[0][:, ::-1]  # the other basin prefers the other actions
    final = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    steps = [0, 100, 200, 300, 400]
    probs = []
    for t in range(len(steps)):
        where = final.copy()
        if t < 3:
            where[7] = 0
        probs.append(templates[where] + 0.0)
    out = summarize(list(range(8)), final.tolist(), steps, probs, TrajectoryConfig(late_fraction=0.5, resamples=200))
    assert out.skipped is None and out.n_basins == 2 and out.fractions == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert out.final_agreement == 1.0
    assert out.shares[0] == [5 / 8, 3 / 8] and out.shares[-1] == [0.5, 0.5]
    assert all(low <= share <= high for row, cis in zip(out.shares, out.share_ci, strict=True)
               for share, (low, high) in zip(row, cis, strict=True))
    assert out.transitions[2] == [[4, 1], [0, 3]] and out.transitions[0] == [[5, 0], [0, 3]]
    assert out.late_transitions == [[8, 1], [0, 7]]  # transitions from 0.5 and 0.75
    assert out.last_switch == [None] * 7 + [0.75] and out.switches_per_seed == [0] * 7 + [1]
    assert out.late_switchers == [7] and out.late_share == 1 / 8
    assert out.late_share_ci[0] < 1 / 8 < out.late_share_ci[1]
    assert out.mean_distance == [0.0] * 5 and out.mean_distance_ci == [[0.0, 0.0]] * 5
    # the basin-free part: only seed 7 moves, by the TV between the two basins' behaviours, until 75%
    between = float(distances_to_basins(templates[:1], templates[1:])[0, 0])
    assert out.drift == pytest.approx([between / 8] * 3 + [0.0, 0.0])
    assert out.drift_ci[-1] == [0.0, 0.0] and out.drift_ci[0][0] <= between / 8 <= out.drift_ci[0][1]
    assert out.spread[-1] == pytest.approx(between * 16 / 28)  # 4 × 4 cross-basin pairs of 28
    assert out.clusters == [2] * 5


# --------------------------------------------------------------------------- basin count


def test_rarefaction_with_all_seeds_finds_what_the_full_clustering_finds() -> None:
    d = blobs([6, 6, 4])
    for method in ("spectral", "agglomerative"):
        full = basins.CLUSTERERS[method](d, max_k=8)
        rare = rarefaction(d, full.labels, method, 8, default_sizes(len(d)), resamples=10)
        assert full.k == 3 and rare.sizes == [4, 8, 16]
        assert rare.found_mean[-1] == full.k and rare.found_ci[-1] == [3.0, 3.0]
        assert rare.represented[-1] == pytest.approx(3.0)
        assert all(low <= mean <= high for mean, (low, high) in zip(rare.found_mean, rare.found_ci, strict=True))


def test_represented_basins_is_hurlbert_rarefaction() -> None:
    assert represented_basins([3, 1], 1) == pytest.approx(1.0)
    assert represented_basins([3, 1], 4) == pytest.approx(2.0)
    assert represented_basins([3, 1], 2) == pytest.approx(1 + 0.5)  # the singleton is in half the pairs
    assert represented_basins([2, 2], 2) == pytest.approx(2 * (1 - 1 / 6))


def test_default_sizes_double_up_to_all_seeds() -> None:
    assert default_sizes(16) == [4, 8, 16] and default_sizes(64) == [4, 8, 16, 32, 64]
    assert default_sizes(20) == [4, 8, 16, 20] and default_sizes(4) == [4]


@given(st.lists(st.integers(3, 40), min_size=1, max_size=10))
def test_chao1_is_the_observed_count_without_singletons_or_doubletons(sizes: list[int]) -> None:
    assert chao1(sizes) == len(sizes) and good_turing_coverage(sizes) == 1.0


def test_chao1_and_coverage_of_known_counts() -> None:
    sizes = [1, 1, 1, 2, 5]                      # f1 = 3, f2 = 1
    assert chao1(sizes) == 5 + 3 * 2 / (2 * 2)
    assert good_turing_coverage(sizes) == 1 - 3 / 10
    assert chao1([1, 4]) == 2.0                  # one singleton: f1 (f1 − 1) = 0
    labels = np.repeat(np.arange(5), sizes)
    est = unseen_estimate(labels, "planted", bootstrap=300)
    assert (est.observed, est.singletons, est.doubletons, est.chao1) == (5, 3, 1, 6.5)
    assert est.chao1_ci[0] <= est.chao1_ci[1]


@settings(max_examples=40, deadline=None)
@given(st.integers(3, 20), st.integers(0, 2**16), st.lists(st.floats(0.0, 1.2), min_size=1, max_size=20))
def test_clusters_never_increase_with_the_cut_height(n: int, seed: int, heights: list[float]) -> None:
    rng = np.random.default_rng(seed)
    points = rng.uniform(size=(n, 3))
    d = np.abs(points[:, None] - points[None]).mean(-1)
    tree = average_linkage(d)
    heights = np.sort(heights)
    counts = clusters_at(tree, heights)
    assert (np.diff(counts) <= 0).all() and counts.min() >= 1 and counts.max() <= n
    for h, c in zip(heights, counts, strict=True):  # as scipy's own cut at that height
        assert c == len(np.unique(fcluster(tree, h, criterion="distance")))


def test_resolution_of_three_blobs() -> None:
    d = blobs([5, 5, 5])
    curve = resolution_curve(d, [d, d], max_k=8)
    assert curve.clusters[0] == 15 and curve.clusters[-1] == 1
    assert curve.persistent_k == 3 and curve.eigengap_k == 3
    assert curve.band == [[c, c] for c in curve.clusters]  # resamples identical to the matrix
    k, span = persistent_count(np.array([0.1, 0.1, 0.5, 0.55]))
    assert k == 3 and span == [0.1, 0.5]
    assert persistent_count(np.linspace(0.4, 0.6, 31)) == (None, None)  # evenly spaced merges: one diffuse cloud


def test_basin_count_study_of_two_blobs() -> None:
    d = blobs([8, 8])
    clustering = basins.spectral_basins(d)
    out = basin_count(list(range(16)), d, clustering, BasinCountConfig(resamples=10, bootstrap=200), 8,
                      distance_of=lambda idx: d, n_states=10)
    assert out.skipped is None and out.observed == 2 and out.basin_sizes == [8, 8]
    assert out.rarefaction.sizes == [4, 8, 16] and out.rarefaction.found_mean[-1] == 2
    assert out.unseen[0].chao1 == 2 and out.unseen[0].coverage == 1.0 and out.unseen[1].singletons == 0
    assert out.resolution.persistent_k == 2
    small = basin_count([0, 1, 2], d[:3, :3], basins.spectral_basins(d[:3, :3]), BasinCountConfig(), 8)
    assert small.skipped and small.rarefaction is None


def test_the_plateau_cut_shows_an_outlier_the_clusterer_folds_in() -> None:
    """Two basins of 8 seeds and one seed far from everyone: the clusterer allows no basin of one seed, so its
    Chao1 is its count; the tree cut at the widest plateau keeps the outlier alone (f1 = 1)."""
    d = blobs([8, 8])
    far = np.full(17, 0.45)
    far[16] = 0.0
    d = np.block([[d, far[:16, None]], [far[None, :16], np.zeros((1, 1))]])
    clustering = basins.agglomerative_basins(d)
    out = basin_count(list(range(17)), d, clustering, BasinCountConfig(resamples=10, bootstrap=200), 8)
    assert out.unseen[0].singletons == 0 and out.unseen[0].chao1 == out.observed == clustering.k
    plateau = out.unseen[2]
    assert out.resolution.persistent_k == 3 and plateau.partition.endswith("(widest plateau)")
    assert (plateau.observed, plateau.singletons, plateau.coverage) == (3, 1, 1 - 1 / 17)


# --------------------------------------------------------------------------- both studies on a planted run


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory):
    """configs/planted_basins.yaml reduced to 8 seeds × 40,960 steps, checkpoints every 10,240, trained and
    analysed once (as tests/test_planted.py)."""
    from rlbasins.analysis.pipeline import analyze_run
    from rlbasins.config import load_config, parse_config
    from rlbasins.train import train_experiment

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

    from rlbasins.report import study_figures, write_report
    from rlbasins.store import read_json

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
    from rlbasins.analysis.behavior import evaluation_sample, fingerprint_inputs
    from rlbasins.analysis.trajectory import basin_trajectory
    from rlbasins.report import write_report
    from rlbasins.store import atomic_write_json, read_json

    run, _ = planted_run
    cfg = run.load_config()
    seeds = list(range(8))
    heldout_obs, _ = fingerprint_inputs(cfg, evaluation_sample(cfg))
    one = basin_trajectory(run, seeds, 40_960, [0] * 8, heldout_obs, TrajectoryConfig(), show_progress=False)
    assert one.skipped.startswith("one behavioural basin") and one.transitions == [] and one.shares == []
    measured = read_json(run.analysis_dir / "trajectory.json")  # the basin-free part does not need basins
    assert one.steps == measured["steps"] and one.drift == pytest.approx(measured["drift"])
    assert one.clusters == measured["clusters"]
    single = basin_trajectory(run, seeds, 0, [0, 1] * 4, heldout_obs, TrajectoryConfig(), show_progress=False)
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
