"""Basins: clusters of seeds, from behaviour or from weight-space barriers, and how much to trust them.

- :func:`spectral_basins`: spectral clustering of the affinity exp(−D²/2σ²) of a distance
  matrix D (Juneja et al. 2023; σ from the data, so the units of D do not matter), with the
  number of basins chosen by the largest eigengap of the normalised graph Laplacian — k = 1 is a
  possible answer.
- :func:`agglomerative_basins`: average-linkage clustering of D with k chosen by the mean
  silhouette; k = 1 when no k reaches a silhouette of 0.5 (below it Kaufman & Rousseeuw call the
  structure weak and possibly artificial — a single Gaussian blob often scores 0.3–0.47); splits that
  leave a cluster of one seed are not considered.
- :func:`ari_with_ci`: agreement between two clusterings (adjusted Rand index) with a bootstrap
  CI over seeds, not defined where either is one basin; :func:`stability`: how often the clustering
  survives resampling the held-out states; :func:`describe_basins`: size, share with CI, majority
  label and example seeds.
- :class:`BasinsResult`: ``analysis/basins.json``, both kinds of basins of a run and their agreement.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy.cluster.hierarchy import fcluster
from sklearn.cluster import SpectralClustering
from sklearn.metrics import adjusted_rand_score, silhouette_score

from rlbasins.analysis.outliers import OutlierTest
from rlbasins.core.results import Result
from rlbasins.core.stats import average_linkage, wilson_interval

SILHOUETTE_FLOOR = 0.5


@dataclass
class Clustering:
    """Basin labels [S] (0 … k−1, ordered by size, largest first) and how k was chosen."""

    method: str
    k: int
    labels: list[int]
    criterion: str
    scores: list[float]
    """Eigenvalues of the normalised Laplacian (spectral) or silhouettes for k = 2, 3, … (agglomerative)."""


def _by_size(labels: np.ndarray) -> np.ndarray:
    """Relabel clusters 0, 1, … from the largest to the smallest (ties: by first member)."""
    order = sorted(set(labels.tolist()), key=lambda c: (-(labels == c).sum(), int(np.argmax(labels == c))))
    mapping = {c: i for i, c in enumerate(order)}
    return np.array([mapping[c] for c in labels.tolist()])


def affinity(distances: np.ndarray) -> np.ndarray:
    """[S, S] distances → affinities exp(−D² / 2σ²) with one scale σ: the median over seeds of the
    distance to their ⌈S/4⌉-th nearest other seed (so that the units of D do not matter, and σ is a
    within-basin distance as long as basins hold a quarter of the seeds or more), at least a tenth of
    the median positive distance."""
    d = np.asarray(distances, float)
    n = len(d)
    if n < 2:
        return np.ones((n, n))
    sigma = float(np.median(np.sort(d, axis=1)[:, min(max(1, n // 4), n - 1)]))
    positive = d[d > 0]
    # Floor: barriers and label shares are often exactly 0 within a basin, which would make σ = 0
    # and cut the graph into pieces of identical seeds.
    sigma = max(sigma, 0.1 * (float(np.median(positive)) if positive.size else 1.0), 1e-12)
    return np.exp(-(d**2) / (2 * sigma**2))


def _silhouette(distances: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette, or −1 for a partition into one cluster or with a cluster of one seed (an
    outlier split, not a basin — and one that inflates the silhouette)."""
    sizes = np.bincount(labels)
    if (sizes > 0).sum() < 2 or sizes[sizes > 0].min() < 2:
        return -1.0
    return float(silhouette_score(distances, labels, metric="precomputed"))


def spectral_basins(distances: np.ndarray, k: int | None = None, max_k: int = 8, seed: int = 0) -> Clustering:
    """Spectral clustering of a distance matrix; ``k=None`` picks k by the largest eigengap of the
    normalised Laplacian; when that partition's silhouette is below 0.5 (stray seeds far from every
    basin open eigengaps of their own), the k in 2…max_k whose partition has the best silhouette, if it
    reaches 0.5; else k = 1. Measured on synthetic blobs: 76 of 80 planted cluster counts found, every
    single blob kept whole; two blobs plus two stray seeds: 2 basins in 20 of 20 draws, where the
    eigengap alone fell back to one basin in 18 of 20."""
    d = np.asarray(distances, float)
    n = len(d)
    a = affinity(d)
    degree = a.sum(1)
    laplacian = np.eye(n) - a / np.sqrt(np.outer(degree, degree))
    eigenvalues = np.sort(np.linalg.eigvalsh(laplacian))[: min(max_k, n - 1) + 1]
    chosen = k if k is not None else (int(np.argmax(np.diff(eigenvalues))) + 1 if n > 2 else 1)
    labels = np.zeros(n, dtype=int)
    if chosen > 1:
        labels = _spectral_labels(a, chosen, seed)
        if k is None and _silhouette(d, labels) < SILHOUETTE_FLOOR:
            candidates = [(_silhouette(d, part), kk, part) for kk in range(2, min(max_k, n - 1) + 1)
                          if kk != chosen for part in [_spectral_labels(a, kk, seed)]]
            best = max(candidates, key=lambda c: c[0], default=(-1.0, 1, labels))
            chosen, labels = (best[1], best[2]) if best[0] >= SILHOUETTE_FLOOR else (1, np.zeros(n, dtype=int))
    return Clustering("spectral", int(chosen), _by_size(labels).tolist(), "eigengap", eigenvalues.tolist())


def _spectral_labels(affinities: np.ndarray, k: int, seed: int) -> np.ndarray:
    with warnings.catch_warnings():   # well-separated basins leave the affinity graph disconnected: expected here
        warnings.filterwarnings("ignore", message="Graph is not fully connected")
        return SpectralClustering(n_clusters=k, affinity="precomputed", random_state=seed,
                                  assign_labels="cluster_qr").fit_predict(affinities)


def agglomerative_basins(distances: np.ndarray, k: int | None = None, max_k: int = 8) -> Clustering:
    """Average-linkage clustering; ``k=None`` picks the k with the best silhouette (or 1, see module)."""
    d = np.asarray(distances, float)
    n = len(d)
    tree = average_linkage(d)
    silhouettes = []
    for candidate in range(2, min(max_k, n - 1) + 1):
        silhouettes.append(_silhouette(d, fcluster(tree, candidate, criterion="maxclust")))
    if k is None:
        best = int(np.argmax(silhouettes)) if silhouettes else -1
        k = best + 2 if best >= 0 and silhouettes[best] >= SILHOUETTE_FLOOR else 1
    labels = np.zeros(n, dtype=int) if k == 1 else fcluster(tree, k, criterion="maxclust")
    return Clustering("agglomerative", int(k), _by_size(labels).tolist(), "silhouette", silhouettes)


CLUSTERERS: dict[str, Callable[..., Clustering]] = {"spectral": spectral_basins,
                                                     "agglomerative": agglomerative_basins}


ONE_BASIN = "not defined (one basin)"
"""Why an ARI is not given: a partition into one basin agrees with anything or nothing by convention."""
NEAREST_MEDOID = "not defined (beyond max_pairwise seeds a barrier view is each seed's nearest behavioural medoid)"
"""Why a barrier view's ARIs are not given beyond ``max_pairwise`` seeds (it is not a clustering)."""


@dataclass
class Agreement:
    """Adjusted Rand index of two partitions of the same seeds, with a 95% percentile bootstrap CI over seeds;
    all three None, and ``undefined`` saying why, where an ARI would not mean agreement."""

    ari: float | None
    low: float | None
    high: float | None
    undefined: str | None = None

    @classmethod
    def not_defined(cls, why: str) -> Agreement:
        return cls(None, None, None, why)


def resampled_ari(a: np.ndarray, b: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The adjusted Rand index of labelings ``a`` and ``b`` [n] (ints ≥ 0) on each resample ``rows`` [R, m] of
    their indices: [R], all resamples as one contingency-table computation (sklearn's
    ``adjusted_rand_score`` per resample spends nearly all its time validating its inputs). A resample whose
    two sides are each one cluster, or each all singletons, gets 1.0, as in sklearn."""
    n_a, n_b = int(a.max()) + 1, int(b.max()) + 1
    resamples, m = rows.shape
    cells = (np.arange(resamples)[:, None] * n_a + a[rows]) * n_b + b[rows]                  # [R, m]
    table = np.bincount(cells.ravel(), minlength=resamples * n_a * n_b).reshape(resamples, n_a, n_b)

    def pairs(counts: np.ndarray) -> np.ndarray:
        return (counts * (counts - 1) / 2).reshape(resamples, -1).sum(1)
    together, rows_a, rows_b = pairs(table), pairs(table.sum(2)), pairs(table.sum(1))
    expected = rows_a * rows_b / (m * (m - 1) / 2)
    span = (rows_a + rows_b) / 2 - expected
    safe = np.where(span == 0, 1.0, span)
    return np.where(span == 0, 1.0, (together - expected) / safe)


def ari_with_ci(a: list[int], b: list[int], resamples: int = 1000, seed: int = 0) -> Agreement:
    """The :class:`Agreement` of two clusterings of the same seeds (seeds resampled with replacement for
    the CI); not defined when either is a single basin (ARI would print 1.00 for two single basins)."""
    a, b = np.unique(a, return_inverse=True)[1], np.unique(b, return_inverse=True)[1]
    if a.max() < 1 or b.max() < 1:
        return Agreement.not_defined(ONE_BASIN)
    rows = np.random.default_rng(seed).integers(len(a), size=(resamples, len(a)))             # [R, n]
    # a resample that misses a rare basin leaves one side a single basin: no ARI there either (it would
    # score 1.00 by convention and narrow the interval falsely), so such draws are left out
    both = (a[rows].min(1) != a[rows].max(1)) & (b[rows].min(1) != b[rows].max(1))
    draws = resampled_ari(a, b, rows[both])
    low, high = np.percentile(draws, [2.5, 97.5]) if draws.size else (np.nan, np.nan)
    return Agreement(float(adjusted_rand_score(a, b)), float(low), float(high))


@dataclass
class Stability:
    """How a clustering survives bootstrap resamples of the held-out states: ``same_k``, the share of the
    resamples clustered into as many basins as the reference; and the ARI with the reference, mean and 95%
    interval (None, with ``undefined``, when the reference is one basin)."""

    mean_ari: float | None
    low: float | None
    high: float | None
    resamples: int
    same_k: float | None = None
    """None in files written before it was measured."""
    undefined: str | None = None


def stability(distance_of: Callable[[np.ndarray], np.ndarray], reference: Clustering, n_states: int,
              resamples: int = 50, seed: int = 0) -> Stability:
    """Recluster (same method, k chosen afresh) the distance matrix recomputed on bootstrap resamples of the
    held-out states, and compare with ``reference``: see :class:`Stability`.

    ``distance_of(state_indices [n_states]) → [S, S]``.
    """
    rng = np.random.default_rng(seed)
    redone = [CLUSTERERS[reference.method](distance_of(rng.integers(n_states, size=n_states)))
              for _ in range(resamples)]
    same_k = float(np.mean([c.k == reference.k for c in redone]))
    if reference.k < 2:
        return Stability(None, None, None, resamples, same_k, ONE_BASIN)
    scores = [adjusted_rand_score(reference.labels, c.labels) for c in redone]
    low, high = np.percentile(scores, [2.5, 97.5])
    return Stability(float(np.mean(scores)), float(low), float(high), resamples, same_k)


def medoids(distances: np.ndarray, labels: list[int]) -> list[int]:
    """For each basin, the member with the smallest summed distance to the other members."""
    d, labels = np.asarray(distances), np.asarray(labels)
    out = []
    for c in range(labels.max() + 1):
        members = np.flatnonzero(labels == c)
        out.append(int(members[np.argmin(d[np.ix_(members, members)].sum(1))]))
    return out


@dataclass
class Basin:
    index: int
    size: int
    share: float
    share_ci: list[float]
    label: str | None
    """The majority held-out strategy of its seeds (None when the env names no strategies)."""
    label_purity: float | None
    seeds: list[int]
    medoid: int
    examples: list[int]
    """Up to three seeds closest to the medoid (the medoid first)."""


def describe_basins(clustering: Clustering, seeds: list[int], distances: np.ndarray,
                    seed_labels: list[str] | None) -> list[Basin]:
    """One :class:`Basin` per cluster; ``seed_labels`` [S] is each seed's dominant held-out strategy."""
    labels = np.asarray(clustering.labels)
    d = np.asarray(distances)
    out = []
    for c, medoid in enumerate(medoids(d, clustering.labels)):
        members = np.flatnonzero(labels == c)
        ranked = members[np.argsort(d[medoid, members], kind="stable")]
        label = purity = None
        if seed_labels is not None:
            label, count = Counter(seed_labels[i] for i in members).most_common(1)[0]
            purity = count / len(members)
        out.append(Basin(c, len(members), len(members) / len(labels),
                         wilson_interval(len(members), len(labels)).tolist(), label, purity,
                         [seeds[i] for i in members], seeds[medoid], [seeds[i] for i in ranked[:3]]))
    return out


def planted_codes(planted: list[str | None]) -> list[int] | None:
    """Each seed's planted group as 0, 1, … (by sorted group name); None unless every seed was planted."""
    if any(label is None for label in planted):
        return None
    return [sorted(set(planted)).index(label) for label in planted]


def planted_agreement(codes: list[int] | None, behavior_labels: list[int], weights: Agreement | None,
                      seed: int = 0) -> dict[str, Agreement] | None:
    """The :class:`Agreement` of the behavioural (``behaviour``) basins with the planted groups ``codes``
    (:func:`planted_codes`), beside the weight-space basins' (``weights``, already measured by their view);
    None when the run is not planted."""
    if codes is None:
        return None
    return {"behaviour": ari_with_ci(codes, behavior_labels, seed=seed), "weights": weights}


@dataclass
class WeightView:
    """One weight-space distance between seeds, clustered, and how its basins compare with the behavioural
    ones (:mod:`~rlbasins.analysis.weight_space`)."""

    name: str
    """``input weights``, ``aligned training return barrier``, ``aligned + REPAIR expert loss barrier``, …"""
    metric: str
    """``input_weights``, or the barrier's metric (``train_return``, ``loss``, ``heldout_decided``)."""
    variant: str | None
    """The barrier's policies, ``aligned`` or ``aligned_repair``; None for the input weights."""
    reads: str
    """What the distance is computed from: no state, training states, or the held-out states."""
    clustering: Clustering
    within: float | None
    """Mean distance between seeds of one behavioural basin (None: no such pair measured)."""
    across: float | None
    """Mean distance between seeds of different behavioural basins (None: one basin)."""
    agreement: Agreement
    """ARI with the behavioural basins."""
    planted: Agreement | None
    """ARI with the planted groups (planted runs only)."""


@dataclass
class BehaviorBasins:
    """The behavioural basins of a run: clusters of the seeds' held-out total variation."""

    distance: str
    clustering: Clustering
    basins: list[Basin]
    stability: Stability
    outliers: OutlierTest | None = None
    """Seeds that belong to no basin (:mod:`~rlbasins.analysis.outliers`); None in files written before."""


@dataclass
class WeightBasins:
    """The weight-space basins of a run: clusters of a distance between the seeds' weights that reads no state
    (``distance``), and every weight-space view beside it (:mod:`~rlbasins.analysis.weight_space`)."""

    distance: str
    clustering: Clustering
    basins: list[Basin] | None
    """None in files written before the input-weight distance, when a barrier beyond ``max_pairwise`` seeds
    defined the basins (each seed joined its nearest behavioural medoid)."""
    views: list[WeightView] | None = None
    """The input weights, then each aligned barrier without and with REPAIR; None in files written before."""


@dataclass
class BasinsResult(Result):
    """``analysis/basins.json``: both kinds of basins of a run, their agreement (ARI with CI), and for planted
    runs the ARI of each with the planted groups. The file keeps the key ``behaviour`` for ``behavior``."""

    json_names: ClassVar[dict[str, str]] = {"behavior": "behaviour"}
    seeds: list[int]
    planted: list[str] | None
    """Each seed's planted group (only when every seed was planted)."""
    behavior: BehaviorBasins
    weights: WeightBasins
    agreement: Agreement
    """Of the behavioural and the weight-space basins."""
    planted_ari: dict[str, Agreement] | None
    """``behaviour`` and ``weights``: each one's agreement with the planted groups."""
    preference_verdict: str | None
    seconds: dict[str, float]
    """Wall-clock seconds per analysis stage."""

    def basin_names(self) -> list[str]:
        """``basin 0 (colour)``, ``basin 1``, …: the behavioural basins as the report names them."""
        return [f"basin {b.index}" + (f" ({b.label})" if b.label else "") for b in self.behavior.basins]
