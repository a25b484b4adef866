"""Basin count (:mod:`rlbasins.analysis.basin_count`): rarefaction, unseen basins and resolution, as
specifications."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.cluster.hierarchy import fcluster

from rlbasins.analysis import basins
from rlbasins.analysis.basin_count import (
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
from rlbasins.core.config import BasinCountConfig
from rlbasins.core.stats import average_linkage


def blobs(sizes: list[int], spread: float = 0.02, gap: float = 0.6, seed: int = 0) -> np.ndarray:
    """A symmetric distance matrix of well-separated groups: ``spread`` within, ``gap`` between (± noise)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    d = np.where(labels[:, None] == labels[None], spread, gap) + rng.uniform(0, spread, (len(labels),) * 2)
    d = (d + d.T) / 2
    np.fill_diagonal(d, 0.0)
    return d


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


