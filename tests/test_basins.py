"""Basin clustering (:mod:`rlbasins.analysis.basins`): planted clusters recovered with their number,
basin descriptions, and the preference test."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cdist

from rlbasins.analysis import basins
from rlbasins.core.stats import preference_test

# --------------------------------------------------------------------------- clustering


def _blobs(centres: list[tuple[float, float]], per: int, seed: int, dim: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Distances between seeds drawn around ``centres`` (in the first two of ``dim`` dimensions; seeds'
    fingerprints are high-dimensional, and in 2-D a dozen Gaussian points often look like two clusters)."""
    rng = np.random.default_rng(seed)
    points = np.concatenate([rng.normal(0, 0.3, size=(per, dim)) + np.pad(c, (0, dim - 2)) for c in centres])
    truth = np.repeat(np.arange(len(centres)), per)
    order = rng.permutation(len(points))  # members of a basin are not contiguous
    return cdist(points[order], points[order]), truth[order]


@pytest.mark.parametrize("method", ["spectral", "agglomerative"])
@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), n_basins=st.integers(1, 3))
def test_planted_clusters_are_recovered_with_their_number(method: str, seed: int, n_basins: int) -> None:
    distances, truth = _blobs([(0, 0), (4, 0), (0, 4)][:n_basins], per=12, seed=seed)
    found = basins.CLUSTERERS[method](distances)
    assert found.k == n_basins
    agreement = basins.ari_with_ci(truth.tolist(), found.labels)
    assert agreement.ari == 1.0 if n_basins > 1 else agreement.undefined == basins.ONE_BASIN


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), n_basins=st.integers(1, 2))
def test_stray_seeds_neither_hide_the_basins_nor_make_new_ones(seed: int, n_basins: int) -> None:
    # Two seeds far from every basin open eigengaps of their own; the basins must still be found whole.
    rng = np.random.default_rng(seed)
    blobs = [rng.normal(0, 0.3, size=(12, 10)) + np.pad(c, (0, 8)) for c in [(0.0, 0.0), (4.0, 0.0)][:n_basins]]
    strays = np.pad(np.array([[1.5, 3.0], [2.5, -3.0]]), ((0, 0), (0, 8)))
    points = np.concatenate([*blobs, strays])
    found = basins.spectral_basins(cdist(points, points))
    assert found.k == n_basins
    truth = np.repeat(np.arange(n_basins), 12).tolist()
    assert n_basins == 1 or basins.ari_with_ci(truth, found.labels[: 12 * n_basins]).ari == 1.0


def test_basins_too_far_apart_to_connect_are_found_without_a_warning() -> None:
    """Groups of seeds 0.01 apart within and 1 across (e.g. all-red against all-square seeds on the probe) get
    affinities that underflow to 0 across, so the affinity graph is disconnected: the cleanest split there
    is, found as two basins, and without sklearn's warning (a 64-seed run printed it once per k tried)."""
    group = np.repeat([0, 1], [12, 4])
    distances = np.where(group[:, None] == group, 0.01, 1.0) * (1 - np.eye(16))          # [16, 16]
    assert (basins.affinity(distances)[group == 0][:, group == 1] == 0).all()           # disconnected
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        found = basins.spectral_basins(distances)
    assert found.k == 2 and basins.ari_with_ci(group.tolist(), found.labels).ari == 1.0


def test_basins_are_described_by_size_share_label_and_medoid() -> None:
    distances, truth = _blobs([(0, 0), (4, 0)], per=6, seed=1)
    clustering = basins.spectral_basins(distances)
    labels = ["colour" if t == 0 else "shape" for t in truth]
    described = basins.describe_basins(clustering, list(range(100, 112)), distances, labels)
    assert [b.size for b in described] == [6, 6]
    assert {b.label for b in described} == {"colour", "shape"} and all(b.label_purity == 1 for b in described)
    for b in described:
        assert b.medoid in b.seeds and b.examples[0] == b.medoid
        assert b.share_ci[0] < b.share < b.share_ci[1]


def test_agreement_ci_contains_the_point_estimate() -> None:
    a = [0] * 10 + [1] * 10
    b = [0] * 9 + [1] * 11
    result = basins.ari_with_ci(a, b, resamples=200)
    assert result.low <= result.ari <= result.high and 0.5 < result.ari < 1 and result.undefined is None


@pytest.mark.parametrize("one", [[0] * 20, [1] * 20])
def test_agreement_with_a_single_basin_is_not_defined_rather_than_perfect(one: list[int]) -> None:
    # Two single-basin partitions have ARI 1.00 by convention: that is not evidence that two views agree.
    assert basins.ari_with_ci(one, one) == basins.Agreement(None, None, None, basins.ONE_BASIN)
    assert basins.ari_with_ci(one, [0] * 10 + [1] * 10).undefined == basins.ONE_BASIN


def test_stability_of_one_basin_gives_the_share_of_resamples_with_one_basin_and_no_ari() -> None:
    distances, _ = _blobs([(0, 0)], per=12, seed=3)
    reference = basins.spectral_basins(distances)
    result = basins.stability(lambda idx: distances, reference, n_states=10, resamples=5)
    assert reference.k == 1 and result.same_k == 1.0 and result.mean_ari is None and result.undefined
    two, _ = _blobs([(0, 0), (4, 0)], per=6, seed=3)
    split = basins.stability(lambda idx: two, basins.spectral_basins(two), n_states=10, resamples=5)
    assert split.mean_ari == 1.0 and split.same_k == 1.0 and split.undefined is None


def test_preference_test_tells_basins_from_one_shared_strategy() -> None:
    rng = np.random.default_rng(0)
    committed = np.array([40] * 8 + [0] * 8)
    split = preference_test(committed, 40 - committed)
    assert split.verdict == "basins" and split.committed_a == 8 and split.committed_b == 8
    shared = rng.binomial(40, 0.5, size=16)
    assert preference_test(shared, 40 - shared).verdict == "one shared strategy"




@given(a=st.integers(0, 60), b=st.integers(0, 60))
def test_preference_test_gives_each_seed_an_interval_around_its_lean_and_an_exact_binomial_p(a: int, b: int) -> None:
    result = preference_test(np.array([a, 30]), np.array([b, 30]))
    mirrored = preference_test(np.array([b, 30]), np.array([a, 30]))   # the same seed, strategies renamed
    (low, high), (even_low, even_high) = result.preference_ci
    if a + b:
        assert low - 1e-12 <= a / (a + b) <= high + 1e-12
        assert mirrored.preference_ci[0] == pytest.approx([1 - high, 1 - low])
        assert result.preference_p[0] == pytest.approx(mirrored.preference_p[0])
        if min(a, b) == 0 and a + b >= 6:                                  # 6 of 6 one way: p = 2/64
            assert result.preference_p[0] < 0.05 and not low <= 0.5 <= high
    else:
        assert (low, high) == (0.0, 1.0) and result.preference_p[0] is None
    assert even_low < 0.5 < even_high and result.preference_p[1] == 1.0    # 30 vs 30: no lean


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 70), k_a=st.integers(1, 5), k_b=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_resampled_ari_is_sklearns_ari_on_every_resample(n: int, k_a: int, k_b: int, seed: int) -> None:
    """One contingency-table computation for all resamples gives sklearn's adjusted Rand index on each,
    its conventions included (one cluster on both sides, or all singletons: 1.0)."""
    from sklearn.metrics import adjusted_rand_score

    rng = np.random.default_rng(seed)
    a = np.unique(rng.integers(k_a, size=n), return_inverse=True)[1]
    b = np.unique(rng.integers(k_b, size=n), return_inverse=True)[1]
    rows = rng.integers(n, size=(16, n))
    expected = [adjusted_rand_score(a[r], b[r]) for r in rows]
    np.testing.assert_allclose(basins.resampled_ari(a, b, rows), expected, rtol=0, atol=1e-12)
