"""Statistics shared by the analyses and the report: binomial intervals, the two-strategy preference test,
and average linkage."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats
from scipy.cluster.hierarchy import linkage
from scipy.spatial.distance import squareform


def wilson_interval(successes: np.ndarray, trials: np.ndarray, z: float = 1.959964) -> np.ndarray:
    """95% Wilson score intervals [..., 2] for binomial proportions (well-behaved at 0, 1 and small n;
    (0, 1) when there are no trials)."""
    successes, trials = np.asarray(successes, float), np.asarray(trials, float)
    n = np.maximum(trials, 1e-12)
    phat = successes / n
    centre = (phat + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * np.sqrt(phat * (1 - phat) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    interval = np.stack([centre - half, centre + half], axis=-1).clip(0.0, 1.0)
    return np.where((trials > 0)[..., None], interval, np.array([0.0, 1.0]))


@dataclass
class PreferenceTest:
    """How per-seed preferences for strategy A (share of A among decided episodes) are spread across seeds.

    ``homogeneity_p``: chi-square test that every seed has the same preference (small p: seeds
    differ more than episode noise explains). ``bimodality_coefficient``: Sarle's b =
    (skew² + 1) / (excess kurtosis + 3(n−1)²/((n−2)(n−3))); above 5/9 ≈ 0.555 hints at two modes.
    ``committed``: seeds whose Wilson interval lies entirely above or below ½ (they prefer one
    strategy beyond episode noise). ``verdict``: "basins" (seeds differ and most are committed, or
    the distribution is bimodal), "one shared strategy" (no evidence that seeds differ), or "graded".
    Per seed: ``preference_ci``, the Wilson 95% interval of its preference, and ``preference_p``, the
    two-sided exact binomial test of "A and B equally likely" on its decided episodes (None: none
    decided). Both treat the counts as independent trials, so pass counts over distinct states
    (greedy episodes from one state repeat each other), as the behaviour analysis does.
    """

    n_seeds: int
    preference: list[float | None]
    homogeneity_p: float | None
    bimodality_coefficient: float | None
    committed_a: int
    committed_b: int
    verdict: str
    preference_ci: list[list[float]] = field(default_factory=list)
    preference_p: list[float | None] = field(default_factory=list)
    n_distinct_states: int | None = None
    """The distinct held-out states the counts rest on (None: not recorded)."""


def preference_test(count_a: np.ndarray, count_b: np.ndarray, n_distinct_states: int | None = None) -> PreferenceTest:
    """Per-seed counts of held-out episodes (or of distinct states, possibly fractional: a state's
    share of its copies) that followed strategy A and B → :class:`PreferenceTest`."""
    count_a, count_b = np.asarray(count_a, float), np.asarray(count_b, float)
    decided = count_a + count_b
    has = decided > 0
    preference = np.where(has, count_a / np.maximum(decided, 1), np.nan)
    interval = wilson_interval(count_a, decided)
    committed_a = int(((interval[:, 0] > 0.5) & has).sum())
    committed_b = int(((interval[:, 1] < 0.5) & has).sum())
    table = np.stack([count_a[has], count_b[has]], axis=1)
    table = table[:, table.sum(0) > 0]  # a column of zeros (nobody ever chose B) has no expected counts
    homogeneity_p = None
    if table.shape[0] >= 2 and table.shape[1] == 2:
        homogeneity_p = float(stats.chi2_contingency(table, correction=False)[1])
    elif table.shape[0] >= 2:
        homogeneity_p = 1.0  # every seed chose the same single strategy
    values = preference[has]
    bimodality = None
    if len(values) >= 4 and values.std() > 0:
        n = len(values)
        skew, kurt = stats.skew(values, bias=False), stats.kurtosis(values, bias=False)
        bimodality = float((skew**2 + 1) / (kurt + 3 * (n - 1) ** 2 / ((n - 2) * (n - 3))))
    differ = homogeneity_p is not None and homogeneity_p < 0.01
    if differ and ((committed_a + committed_b) >= 0.5 * has.sum() or (bimodality or 0) > 5 / 9):
        verdict = "basins"
    elif not differ:
        verdict = "one shared strategy"
    else:
        verdict = "graded"
    return PreferenceTest(n_seeds=int(len(count_a)), preference=[None if np.isnan(v) else float(v) for v in preference],
                          homogeneity_p=homogeneity_p, bimodality_coefficient=bimodality,
                          committed_a=committed_a, committed_b=committed_b, verdict=verdict,
                          preference_ci=interval.tolist(),
                          preference_p=[float(stats.binomtest(round(a), round(n)).pvalue) if round(n) else None
                                        for a, n in zip(count_a, decided, strict=True)],
                          n_distinct_states=n_distinct_states)


def average_linkage(distances: np.ndarray) -> np.ndarray:
    """The average-linkage tree (scipy's [S − 1, 4] linkage matrix) of a symmetric [S, S] distance matrix."""
    return linkage(squareform(np.asarray(distances, float), checks=False), method="average")
