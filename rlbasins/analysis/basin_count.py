"""Basin count: how many basins are there — do new ones keep appearing as seeds are added?

Three views of the final behavioural total-variation matrix D [S, S]:

- **Rarefaction.** For seed-subset sizes n (4, 8, 16, … and all S), ``resamples`` random subsets of n
  seeds (without replacement) are reclustered with the run's clusterer: the mean number of basins
  found with a 95% percentile interval. Alongside, the classical (Hurlbert) rarefaction of the final
  basins: the expected number of the S-seed basins that a random n-subset contains at all,
  Σ_b 1 − C(S − s_b, n) / C(S, n). A found-count still rising at n = S says more seeds would find
  more basins; one that sits below the represented count says small basins are missed by the
  clusterer, not by sampling.
- **Unseen basins.** The bias-corrected Chao1 estimate S_obs + f1(f1 − 1) / (2(f2 + 1)) from the
  basin sizes (f1, f2: basins of exactly one and two seeds), with a 95% percentile bootstrap
  interval over seeds (resampled with replacement, each keeping its basin), and the Good–Turing
  sample coverage 1 − f1 / S. **Limitation:** both clusterers reject partitions with a basin of one
  seed, so on their clustering f1 = 0 by construction and Chao1 = S_obs, coverage 1. The same
  estimates are therefore also given for two partitions that allow singletons: the average-linkage
  tree cut into as many clusters as the run found (at least two), and cut in the middle of its
  widest plateau (below). A seed alone there is an outlier the clusterer folded into a basin — a
  candidate basin seen once. Chao1 stays a lower-bound estimator built for species counts; with a
  handful of basins and f1, f2 ∈ {0, 1, 2} its interval says little beyond "no sign of" or "some
  sign of" unseen basins.
- **Resolution.** The number of clusters of average linkage on D as the cut height (a TV) sweeps
  from 0 to the largest merge, with a 95% band over ``resamples`` bootstrap resamples of the held-out
  states; the most persistent count of two or more (the widest range of heights it holds, if that is
  at least a quarter of the range of merge heights — in one diffuse cloud no count stands out); and
  the eigenvalues of the normalised graph Laplacian the spectral clusterer reads its eigengap from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.cluster.hierarchy import fcluster
from scipy.special import gammaln

from rlbasins.analysis import basins
from rlbasins.core.config import BasinCountConfig
from rlbasins.core.results import Result
from rlbasins.core.stats import average_linkage


@dataclass
class Rarefaction:
    sizes: list[int]
    found_mean: list[float]
    """[n] mean number of basins the clusterer finds in random subsets of each size."""
    found_ci: list[list[float]]
    """[n] 95% percentile interval [low, high] over the subsets."""
    represented: list[float]
    """[n] expected number of the final basins with at least one seed in a random subset (Hurlbert)."""
    resamples: int


@dataclass
class UnseenEstimate:
    partition: str
    """Which partition the basin sizes come from."""
    observed: int
    singletons: int
    doubletons: int
    chao1: float
    chao1_ci: list[float]
    """95% percentile bootstrap interval over seeds."""
    coverage: float
    """Good–Turing sample coverage 1 − f1 / S: the estimated share of seeds whose basin has been seen more than once."""


@dataclass
class ResolutionCurve:
    heights: list[float]
    """Cut heights (total variation) from 0 to just above the largest merge."""
    clusters: list[int]
    """[H] number of average-linkage clusters of the full matrix at each height."""
    band: list[list[float]]
    """[H] 95% interval [low, high] over bootstrap resamples of the held-out states."""
    merge_heights: list[float]
    """[S − 1] the heights where two clusters merge (ascending)."""
    persistent_k: int | None
    """The count of two clusters or more that holds over the widest range of heights, when that range is at least
    a quarter of the range of merge heights (None: no such plateau)."""
    persistent_range: list[float] | None
    laplacian_eigenvalues: list[float]
    """Smallest eigenvalues of the normalised Laplacian of the spectral clusterer's affinity."""
    eigengap_k: int


@dataclass
class BasinCount(Result):
    seeds: list[int]
    method: str
    observed: int
    """Basins of the run's clustering of all seeds."""
    basin_sizes: list[int]
    rarefaction: Rarefaction | None
    unseen: list[UnseenEstimate]
    """The run's clustering, the average-linkage cut at the same number of clusters (at least 2), and the cut
    in the middle of the widest plateau (when there is one)."""
    resolution: ResolutionCurve | None
    skipped: str | None = None
    """Why nothing was measured (fewer than 4 seeds); then the parts are empty."""


# --------------------------------------------------------------------------- rarefaction


def default_sizes(n_seeds: int) -> list[int]:
    """4, 8, 16, … below ``n_seeds``, then ``n_seeds``."""
    sizes = []
    size = 4
    while size < n_seeds:
        sizes.append(size)
        size *= 2
    return [*sizes, n_seeds]


def represented_basins(basin_sizes: list[int] | np.ndarray, n: int, units: int | None = None) -> float:
    """Expected number of basins with at least one seed in a random n-subset of the seeds (without
    replacement): Σ_b 1 − C(S − s_b, n) / C(S, n). With ``units``, the draws are of U units that may hold
    several seeds each (a base's branches, a population) and ``basin_sizes`` count the units holding each
    basin: Σ_b 1 − C(U − u_b, n) / C(U, n)."""
    total = int(sum(basin_sizes)) if units is None else int(units)

    def log_choose(a: int, b: int) -> float:
        return gammaln(a + 1) - gammaln(b + 1) - gammaln(a - b + 1)

    return float(sum(1.0 - (np.exp(log_choose(total - s, n) - log_choose(total, n)) if total - s >= n else 0.0)
                     for s in basin_sizes))


def rarefaction(distances: np.ndarray, labels: list[int], method: str, max_k: int, sizes: list[int],
                resamples: int, seed: int = 0) -> Rarefaction:
    """Recluster ``resamples`` random subsets of each size of ``distances`` [S, S] with ``method``; the full
    size is clustered once (every subset is all seeds)."""
    d = np.asarray(distances, float)
    n_seeds = len(d)
    rng = np.random.default_rng(seed)
    sizes = sorted({min(int(s), n_seeds) for s in sizes if s >= 2})
    cluster = basins.CLUSTERERS[method]
    found_mean, found_ci = [], []
    for n in sizes:
        subsets = [np.arange(n_seeds)] if n == n_seeds else \
            [np.sort(rng.choice(n_seeds, size=n, replace=False)) for _ in range(resamples)]
        counts = np.array([cluster(d[np.ix_(idx, idx)], max_k=max_k).k for idx in subsets], float)
        found_mean.append(float(counts.mean()))
        found_ci.append(np.percentile(counts, [2.5, 97.5]).tolist())
    sizes_of_basins = np.bincount(np.asarray(labels)).tolist()
    return Rarefaction(sizes, found_mean, found_ci, [represented_basins(sizes_of_basins, n) for n in sizes],
                       resamples)


# --------------------------------------------------------------------------- unseen basins


def chao1(basin_sizes: list[int] | np.ndarray) -> float:
    """Bias-corrected Chao1: S_obs + f1(f1 − 1) / (2(f2 + 1)) from the seeds per basin (zeros ignored)."""
    sizes = np.asarray(basin_sizes)
    sizes = sizes[sizes > 0]
    f1, f2 = int((sizes == 1).sum()), int((sizes == 2).sum())
    return float(len(sizes) + f1 * (f1 - 1) / (2 * (f2 + 1)))


def good_turing_coverage(basin_sizes: list[int] | np.ndarray) -> float:
    """1 − f1 / n: the share of seeds in basins seen more than once (1 when no basin is a singleton)."""
    sizes = np.asarray(basin_sizes)
    return float(1.0 - (sizes == 1).sum() / max(sizes.sum(), 1))


def unseen_estimate(labels: list[int] | np.ndarray, partition: str, bootstrap: int, seed: int = 0) -> UnseenEstimate:
    """Chao1 and coverage of a partition of the seeds, the Chao1 interval from resampling seeds with replacement."""
    labels = np.asarray(labels)
    sizes = np.bincount(labels)
    rng = np.random.default_rng(seed)
    draws = [chao1(np.bincount(labels[idx], minlength=len(sizes)))
             for idx in rng.integers(len(labels), size=(bootstrap, len(labels)))]
    return UnseenEstimate(partition, int((sizes > 0).sum()), int((sizes == 1).sum()), int((sizes == 2).sum()),
                          chao1(sizes), np.percentile(draws, [2.5, 97.5]).tolist(), good_turing_coverage(sizes))


# --------------------------------------------------------------------------- resolution


def clusters_at(tree: np.ndarray, heights: np.ndarray | list[float]) -> np.ndarray:
    """Number of clusters of a linkage ``tree`` cut at each height: S − (merges at or below the height)."""
    merges = np.sort(tree[:, 2])
    return len(merges) + 1 - np.searchsorted(merges, np.asarray(heights, float), side="right")


def tree_cut(tree: np.ndarray, k: int) -> np.ndarray:
    """Labels 0 … k−1 of a linkage tree cut into (at most) k clusters."""
    return np.unique(fcluster(tree, k, criterion="maxclust"), return_inverse=True)[1]


PLATEAU_SHARE = 0.25
"""A plateau counts when it spans at least this share of the range of merge heights."""


def persistent_count(merge_heights: np.ndarray, min_share: float = PLATEAU_SHARE
                     ) -> tuple[int | None, list[float] | None]:
    """The number of clusters ≥ 2 that holds over the widest range of cut heights, and that range — None when
    that range is less than ``min_share`` of the range of merge heights (no plateau stands out: merges come
    evenly, as in one diffuse cloud of seeds)."""
    merges = np.sort(np.asarray(merge_heights, float))
    n = len(merges) + 1
    best = None
    for i in range(len(merges) - 1):  # between merge i and merge i+1 there are n − 1 − i clusters
        width = merges[i + 1] - merges[i]
        if best is None or width > best[0]:
            best = (width, n - 1 - i, [float(merges[i]), float(merges[i + 1])])
    if best is None or best[0] <= 0 or best[0] < min_share * (merges[-1] - merges[0]):
        return None, None
    return best[1], best[2]


def laplacian_spectrum(distances: np.ndarray, max_k: int) -> np.ndarray:
    """The smallest eigenvalues of the normalised Laplacian of :func:`basins.affinity` (as the spectral clusterer)."""
    a = basins.affinity(distances)
    degree = a.sum(1)
    laplacian = np.eye(len(a)) - a / np.sqrt(np.outer(degree, degree))
    return np.sort(np.linalg.eigvalsh(laplacian))[: min(max_k, len(a) - 1) + 1]


def resolution_curve(distances: np.ndarray, resampled: list[np.ndarray], max_k: int, points: int = 60
                     ) -> ResolutionCurve:
    """Average-linkage cluster counts of ``distances`` [S, S] over cut heights; the band from the
    ``resampled`` distance matrices (e.g. over bootstrap resamples of the held-out states)."""
    tree = average_linkage(distances)
    top = max(float(tree[:, 2].max()), *(float(average_linkage(d)[:, 2].max()) for d in resampled)) \
        if resampled else float(tree[:, 2].max())
    heights = np.linspace(0.0, top * 1.02 + 1e-9, points)
    clusters = clusters_at(tree, heights)
    if resampled:
        curves = np.stack([clusters_at(average_linkage(d), heights) for d in resampled])
        band = np.percentile(curves, [2.5, 97.5], axis=0).T.tolist()
    else:
        band = [[float(c), float(c)] for c in clusters]
    merges = np.sort(tree[:, 2])
    k, span = persistent_count(merges)
    eigenvalues = laplacian_spectrum(distances, max_k)
    eigengap = int(np.argmax(np.diff(eigenvalues))) + 1 if len(eigenvalues) > 1 else 1
    return ResolutionCurve(heights.tolist(), clusters.tolist(), band, merges.tolist(), k, span,
                           eigenvalues.tolist(), eigengap)


# --------------------------------------------------------------------------- the study


def basin_count(seeds: list[int], distances: np.ndarray, clustering: basins.Clustering, settings: BasinCountConfig,
                max_k: int, distance_of=None, n_states: int = 0, seed: int = 0) -> BasinCount:
    """The three views for the run's ``clustering`` of ``distances`` [S, S]. ``distance_of(state_indices)``
    recomputes the distance matrix on a resample of the ``n_states`` held-out states (for the band)."""
    d = np.asarray(distances, float)
    sizes = np.bincount(np.asarray(clustering.labels)).tolist()
    if len(seeds) < 4:
        return BasinCount(seeds, clustering.method, clustering.k, sizes, None, [], None,
                          skipped=f"{len(seeds)} seeds: too few to subsample")
    rare = rarefaction(d, clustering.labels, clustering.method, max_k,
                       settings.sizes or default_sizes(len(seeds)), settings.resamples, seed)
    resampled = []
    if distance_of is not None and n_states:
        rng = np.random.default_rng(seed)
        resampled = [np.asarray(distance_of(rng.integers(n_states, size=n_states)), float)
                     for _ in range(settings.resamples)]
    resolution = resolution_curve(d, resampled, max_k)
    tree = average_linkage(d)
    k = max(clustering.k, 2)
    unseen = [unseen_estimate(clustering.labels, f"{clustering.method} clustering of the run", settings.bootstrap,
                              seed),
              unseen_estimate(tree_cut(tree, k), f"average linkage cut into {k} clusters", settings.bootstrap, seed)]
    if resolution.persistent_range:
        height = float(np.mean(resolution.persistent_range))
        unseen.append(unseen_estimate(np.unique(fcluster(tree, height, criterion="distance"), return_inverse=True)[1],
                                      f"average linkage cut at TV {height:.3f} (widest plateau)", settings.bootstrap,
                                      seed))
    return BasinCount(seeds, clustering.method, clustering.k, sizes, rare, unseen, resolution)
