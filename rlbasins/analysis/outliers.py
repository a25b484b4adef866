"""Outliers: which seeds belong to no basin?

A clusterer puts every seed in some basin, so a seed unlike all the others (Ramanauskas & Şimşek saw
about 1 in 500) is folded silently into the nearest one. Here every seed is tested against its basin.

- **Distance**: the seed's nearest-neighbour distance, the total variation on the held-out states to
  the most similar other member of its basin. A basin of two seeds is a basin: each has a twin.
- **Score**: how far that distance lies above the other members' nearest-neighbour distances — a robust
  z-score on the log scale, (log d − median) / (1.4826 · MAD), the median and MAD over the *other*
  members (Iglewicz & Hoaglin's modified z-score, leave-one-out, so an outlier cannot hide itself).
- **p-values**: ``p_value`` is the Student-t tail of the score (m − 2 degrees of freedom: the scale
  is estimated from the m − 1 others); Holm's step-down over all seeds gives
  ``p_adjusted``. A seed is an outlier when that is below ``alpha`` *and* its distance is at least
  ``MIN_RATIO`` times the members' median: trained seeds' nearest-neighbour distances have a heavier
  right tail than the t model, so significance alone named plain members. ``p_permutation`` is the exact
  p-value under exchangeable seeds (the rank of the seed's distance among its basin's, (1 + #members at
  least as far) / m). It needs no model, but it cannot go below 1/m: no seed of a basin of 48 can reach
  family-wise significance by rank alone, which is why the flag uses the score.

Why not a resampling null over held-out states: seeds differ from each other consistently across
states (each has its own quirks), and a null seed stitched together state by state from other members
averages those quirks away, so it sits closer to the members than real members do; on synthetic seeds
with quirks it named a plain member as an outlier in 3 of 10 runs. The score's reference is the
members themselves.

Measured on synthetic seeds with quirks of random size (``tests/test_outliers.py``'s model, 200 runs
of 48 seeds each): runs naming any outlier, one basin of 48: 0; two basins of 24: 0 (by significance
alone 6, 3%); a planted odd seed in a basin of 47: named, score 16.7, adjusted p 1e-19. On trained
CueConflict seeds (the planted controls of ``docs/results/planted_controls.json``): the planted single
shape seed among 47 colour seeds is 10.0 times as far from its nearest member as the members' median
(score 54.5); the plain members reach at most 1.17 times (score 3.65, which alone would pass Holm at
0.016).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import t as student_t

ALPHA = 0.05
"""Family-wise error rate of naming any outlier in a run that has none."""
MIN_RATIO = 1.5
"""An outlier is at least this many times as far from its nearest member as the members' median."""
MIN_REFERENCE = 19
"""Basins with fewer other members than this are not tested: with 11 others the median and MAD are too
noisy (synthetic basins of 12: a plain member named in 48 of 200 runs), with 23 they hold (6 of 200)."""


@dataclass
class Outlier:
    """A seed that belongs to no basin (``p_adjusted`` below ``alpha``, ``distance`` ≥ ``MIN_RATIO`` · ``typical``)."""

    seed: int
    basin: int
    """The basin the clusterer put it in."""
    distance: float
    """Total variation on the held-out states to its nearest other member of that basin."""
    typical: float
    """The median of that distance over the basin's other members, for scale."""
    score: float
    p_value: float
    p_adjusted: float
    p_permutation: float


@dataclass
class OutlierTest:
    """Every seed's test (lists [S], aligned with the run's seeds; None where not tested: a basin with fewer
    than ``MIN_REFERENCE`` other members); see the module docstring."""

    alpha: float
    distance: list[float | None]
    score: list[float | None]
    p_value: list[float | None]
    p_adjusted: list[float | None]
    p_permutation: list[float | None]
    outliers: list[Outlier]


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values [S] (family-wise error control)."""
    order = np.argsort(p_values, kind="stable")
    scaled = (len(p_values) - np.arange(len(p_values))) * p_values[order]
    adjusted = np.empty_like(p_values)
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted


def robust_scores(values: np.ndarray) -> np.ndarray:
    """[m] leave-one-out modified z-scores of ``values`` (> 0) on the log scale."""
    logs = np.log(np.maximum(values, 1e-12))
    scores = np.empty(len(logs))
    for i in range(len(logs)):
        others = np.delete(logs, i)
        centre = np.median(others)
        spread = 1.4826 * np.median(np.abs(others - centre))
        scores[i] = (logs[i] - centre) / max(spread, 1e-6)
    return scores


def outlier_test(distances: np.ndarray, labels: list[int], seeds: list[int], alpha: float = ALPHA) -> OutlierTest:
    """Test every seed of a clustering (``labels`` [S]) of the seeds' held-out distances [S, S]."""
    d, labels = np.asarray(distances, dtype=float), np.asarray(labels)
    n = len(labels)
    nearest, score, p, rank, typical = (np.full(n, np.nan) for _ in range(5))
    for basin in np.unique(labels):
        members = np.flatnonzero(labels == basin)
        if len(members) < 2:
            continue
        within = d[np.ix_(members, members)] + np.diag(np.full(len(members), np.inf))
        nearest[members] = within.min(1)
        if len(members) <= MIN_REFERENCE:
            continue
        score[members] = robust_scores(nearest[members])
        p[members] = student_t.sf(score[members], df=len(members) - 2)  # the scale is estimated from m − 1
        rank[members] = [(nearest[members] >= value).sum() / len(members) for value in nearest[members]]
        typical[members] = [np.median(np.delete(nearest[members], i)) for i in range(len(members))]
    tested = ~np.isnan(p)
    adjusted = np.full(n, np.nan)
    adjusted[tested] = holm(p[tested])
    named = tested & (adjusted < alpha) & (nearest >= MIN_RATIO * typical)
    found = [Outlier(seeds[i], int(labels[i]), float(nearest[i]), float(typical[i]), float(score[i]), float(p[i]),
                     float(adjusted[i]), float(rank[i])) for i in np.flatnonzero(named)]

    def listed(values: np.ndarray) -> list[float | None]:
        return [None if np.isnan(v) else float(v) for v in values]

    return OutlierTest(alpha, listed(nearest), listed(score), listed(p), listed(adjusted), listed(rank), found)
