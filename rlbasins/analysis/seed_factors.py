"""Seed factors: is a seed's basin decided by its initialisation or by its data stream?

On a seed grid (``seeds.grid: {init: I, data: D}``) seed k starts from initialisation k // D (its *row*)
and sees data stream k % D (its *column*: env resets, action sampling, minibatch order), so every row
shares step-0 weights and every column shares the data randomness exactly. Each seed's outcome is one
cell of an I × D table, and the table is split two ways:

- **Continuous outcomes** — each strategy label's share of the seed's greedy held-out episodes (from
  ``behavior.json``; e.g. colour, shape, neither) and its greedy held-out return: a balanced two-way
  ANOVA without replication. With grand mean m, row means r_i and column means c_j, the total sum of
  squares splits exactly into init SS = D Σ(r_i − m)², data SS = I Σ(c_j − m)² and residual SS =
  Σ(y_ij − r_i − c_j + m)² (interaction and noise, which one observation per cell cannot tell apart).
  ``ss_shares`` are these fractions of the total: descriptive, they sum to 1, but even without any
  effect a factor takes about (levels − 1)/(I·D − 1) of it. The reported *variance shares* are the
  random-effects (method-of-moments) components instead: σ²_init = (MS_init − MS_res)/D, σ²_data =
  (MS_data − MS_res)/I, σ²_res = MS_res, each over their sum — the fraction of the variance of a new
  seed's outcome due to its init, its data stream and the rest. They are unbiased, sum to 1, and are not
  truncated at 0: a negative share is an effect smaller than the noise. 95% intervals come from the
  two-way ("pigeonhole") bootstrap — rows and columns resampled independently with replacement (Owen
  2007), which is conservative (it counts the residual twice); p-values from permutations: values
  shuffled within each column test the init effect (column means and total stay fixed, so the init SS
  is a monotone function of the F statistic), within each row the data effect.
- **Behavioural basins** (the run's clustering): the mutual information between a seed's basin and its
  row, and between its basin and its column, each divided by the basin entropy H(basin) (1: the factor
  alone decides the basin; 0: it says nothing). **Small-sample bias:** the plug-in estimate is positive
  even without any dependence — about (B − 1)(levels − 1) / (2 · I·D · ln 2) bits for B basins — and on an
  8 × 8 grid that is a sizeable part of H(basin). So each value comes with a permutation null (basin
  labels shuffled within columns for the row information, within rows for the column information): its
  mean, its 95th percentile, the p-value, and the value minus the null mean. The bootstrap interval
  inherits the plug-in bias; read it against the null, not against 0.

- **Whole behaviour**: the mean total variation between the held-out action distributions of two seeds
  that share the init (same row), share the data stream (same column) or share neither — does a
  shared init or a shared data stream make two policies act more alike everywhere, not only in the
  strategy shares? 95% two-way bootstrap intervals (pairs of a seed with itself, which resampling
  creates, left out); p-values from the same within-column (init) and within-row (data) permutations,
  one-sided: sharing makes seeds closer.

A seed grid whose seeds did not all finish is not analysed (the balanced decomposition needs every
cell): the result says which seeds are missing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlbasins.core.results import Result

RESAMPLES = 1000
"""Two-way bootstrap resamples for the confidence intervals."""
PERMUTATIONS = 1000
"""Permutations for the p-values and the null of the basin information."""
FACTORS = ("init", "data", "residual")


@dataclass
class VarianceShares:
    """One continuous per-seed outcome on the I × D grid, split into init, data and residual."""

    outcome: str
    """What was measured, e.g. "share colour" (of the greedy held-out episodes) or "held-out return"."""
    grid: list[list[float]]
    """[I][D] the outcome of the seed in row (init) i and column (data stream) j."""
    mean: float
    shares: dict[str, float | None]
    """Variance-component shares of init, data and residual (sum 1; None when the outcome is constant)."""
    shares_ci: dict[str, list[float] | None]
    """95% two-way bootstrap interval [low, high] of each share (None when the outcome is constant)."""
    ss_shares: dict[str, float | None]
    """Sums of squares over the total (descriptive; sum 1; None when the outcome is constant)."""
    ss_shares_ci: dict[str, list[float] | None]
    p_values: dict[str, float | None]
    """Permutation p-values of the init and data effects (None when the outcome is constant)."""


@dataclass
class FactorInformation:
    """How much a factor (row or column) tells about the basin: I(basin; factor) / H(basin)."""

    factor: str
    normalised: float
    """Plug-in mutual information over the basin entropy (biased upwards, see the module)."""
    ci: list[float] | None
    """95% two-way bootstrap interval (resamples whose seeds are all in one basin are left out; None if all are)."""
    null_mean: float
    """Mean over permutations that keep the other factor's relation (labels shuffled within it)."""
    null_high: float
    """95th percentile of that null."""
    corrected: float
    """``normalised`` − ``null_mean``: the information beyond what chance alone gives at this size."""
    p_value: float


@dataclass
class BasinInformation:
    labels: list[list[int]]
    """[I][D] the behavioural basin of each seed."""
    n_basins: int
    entropy_bits: float
    """H(basin) in bits."""
    factors: list[FactorInformation] | None
    """Init, then data; None with a single basin (nothing to explain)."""


@dataclass
class PairDistances:
    """Mean behavioural distance (total variation on the held-out states) between two different seeds by what
    they share."""

    same_init: float
    """Mean over pairs in the same row (same initialisation, different data stream)."""
    same_data: float
    """Mean over pairs in the same column (same data stream, different initialisation)."""
    neither: float
    ci: dict[str, list[float]]
    """95% two-way bootstrap interval of each mean, keyed same_init, same_data, neither."""
    p_values: dict[str, float]
    """Permutation p-values that sharing the init (key init) or the data stream (key data) brings seeds closer."""


@dataclass
class SeedFactorStudy(Result):
    init: int
    """Rows of the grid (initialisations)."""
    data: int
    """Columns of the grid (data streams)."""
    seeds: list[list[int]]
    """[I][D] the seed index in each cell."""
    outcomes: list[VarianceShares]
    basins: BasinInformation | None
    distances: PairDistances | None
    """None when no distance matrix was given."""
    resamples: int
    permutations: int
    skipped: str | None = None
    """Why nothing was measured (a seed of the grid did not finish); then the parts are empty."""


# --------------------------------------------------------------------------- two-way decomposition


def two_way_anova(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Balanced two-way ANOVA without replication of y [..., I, D] (any leading batch axes).

    Returns (sums of squares [..., 3], variance components [..., 3]), both ordered init, data, residual;
    the sums of squares add up to the total sum of squares exactly.
    """
    y = np.asarray(y, float)
    rows, columns = y.shape[-2:]
    grand = y.mean((-2, -1), keepdims=True)
    row_means, column_means = y.mean(-1, keepdims=True), y.mean(-2, keepdims=True)
    ss = np.stack([columns * ((row_means - grand) ** 2).sum((-2, -1)),
                   rows * ((column_means - grand) ** 2).sum((-2, -1)),
                   ((y - row_means - column_means + grand) ** 2).sum((-2, -1))], axis=-1)
    mean_squares = ss / np.array([rows - 1, columns - 1, (rows - 1) * (columns - 1)])
    components = np.stack([(mean_squares[..., 0] - mean_squares[..., 2]) / columns,
                           (mean_squares[..., 1] - mean_squares[..., 2]) / rows,
                           mean_squares[..., 2]], axis=-1)
    return ss, components


def variance_shares(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """y [..., I, D] → (variance-component shares [..., 3], sum-of-squares shares [..., 3]), each init, data,
    residual; NaN where y is constant (nothing to split)."""
    y = np.asarray(y, float)
    ss, components = two_way_anova(y)
    varies = (np.ptp(y, axis=(-2, -1)) > 0)[..., None]

    def fractions(parts: np.ndarray) -> np.ndarray:
        total = parts.sum(-1, keepdims=True)
        usable = varies & (total > 0)  # a 2 × 2 grid with no row or column effect has no component total
        return np.where(usable, parts / np.where(usable, total, 1.0), np.nan)

    return fractions(components), fractions(ss)


def two_way_resamples(rows: int, columns: int, resamples: int, rng: np.random.Generator
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Row indices [R, rows] and column indices [R, columns], each drawn with replacement, independently."""
    return rng.integers(rows, size=(resamples, rows)), rng.integers(columns, size=(resamples, columns))


def permuted_within(values: np.ndarray, axis: int, permutations: int, rng: np.random.Generator) -> np.ndarray:
    """values [I, D] → [P, I, D], each copy with the values shuffled along ``axis`` (0: within each column,
    breaking the row relation; 1: within each row, breaking the column relation)."""
    order = rng.random((permutations, *values.shape)).argsort(axis=axis + 1)
    return np.take_along_axis(np.broadcast_to(values, order.shape), order, axis=axis + 1)


def _interval(draws: np.ndarray) -> list[float] | None:
    """95% percentile interval of ``draws`` (NaN draws — resamples with nothing to split — left out; None
    without any)."""
    draws = draws[np.isfinite(draws)]
    return np.percentile(draws, [2.5, 97.5]).tolist() if draws.size else None


def _p_value(observed: float, null: np.ndarray) -> float:
    """One-sided permutation p-value (observed included), ties counted as at least as extreme."""
    return float((1 + (null >= observed - 1e-9 * max(abs(observed), 1e-12)).sum()) / (1 + len(null)))


def decompose(y: np.ndarray, outcome: str, resamples: int = RESAMPLES, permutations: int = PERMUTATIONS,
              seed: int = 0) -> VarianceShares:
    """The init / data / residual split of one outcome y [I, D] with bootstrap CIs and permutation p-values."""
    y = np.asarray(y, float)
    rng = np.random.default_rng(seed)
    shares, ss_shares = variance_shares(y)
    row_index, column_index = two_way_resamples(*y.shape, resamples, rng)
    boot_shares, boot_ss = variance_shares(y[row_index[:, :, None], column_index[:, None, :]])
    constant = bool(np.isnan(shares).any())
    p_values: dict[str, float | None] = {"init": None, "data": None}
    if not constant:
        observed_ss = two_way_anova(y)[0]
        for axis, name in enumerate(("init", "data")):  # shuffling along rows (axis 0) breaks the init effect
            null_ss = two_way_anova(permuted_within(y, axis, permutations, rng))[0]
            p_values[name] = _p_value(float(observed_ss[axis]), null_ss[:, axis])

    def named(values: np.ndarray) -> dict[str, float | None]:
        return {f: None if np.isnan(v) else float(v) for f, v in zip(FACTORS, values, strict=True)}

    return VarianceShares(outcome, y.tolist(), float(y.mean()), named(shares),
                          {f: _interval(boot_shares[:, i]) for i, f in enumerate(FACTORS)}, named(ss_shares),
                          {f: _interval(boot_ss[:, i]) for i, f in enumerate(FACTORS)}, p_values)


# --------------------------------------------------------------------------- basin information


def entropy_bits(labels: np.ndarray) -> float:
    """Plug-in entropy in bits of the labels' empirical distribution."""
    p = np.unique(np.asarray(labels).ravel(), return_counts=True)[1] / np.asarray(labels).size
    return float(-(p * np.log2(p)).sum())


def information_with_rows(labels: np.ndarray) -> float:
    """labels [I, D] → plug-in I(label; row) / H(label) (NaN when every label is the same)."""
    labels = np.asarray(labels)
    total = entropy_bits(labels)
    if total == 0:
        return float("nan")
    conditional = np.mean([entropy_bits(row) for row in labels])  # rows have equal weight D / (I·D)
    return float((total - conditional) / total)


def factor_information(labels: np.ndarray, factor: str, resamples: int = RESAMPLES,
                       permutations: int = PERMUTATIONS, seed: int = 0) -> FactorInformation:
    """I(basin; factor) / H(basin) for labels [I, D], ``factor`` "init" (rows) or "data" (columns)."""
    oriented = np.asarray(labels) if factor == "init" else np.asarray(labels).T
    rng = np.random.default_rng(seed)
    observed = information_with_rows(oriented)
    null = np.array([information_with_rows(p) for p in permuted_within(oriented, 0, permutations, rng)])
    row_index, column_index = two_way_resamples(*oriented.shape, resamples, rng)
    boot = np.array([information_with_rows(oriented[np.ix_(r, c)]) for r, c in zip(row_index, column_index,
                                                                                   strict=True)])
    null_mean = float(null.mean())
    return FactorInformation(factor, observed, _interval(boot), null_mean, float(np.percentile(null, 95)),
                             observed - null_mean, _p_value(observed, null))


def basin_information(labels: np.ndarray, resamples: int = RESAMPLES, permutations: int = PERMUTATIONS,
                      seed: int = 0) -> BasinInformation:
    """The basin entropy and the information of the init and data factors about the basins of labels [I, D]."""
    labels = np.asarray(labels)
    n_basins = len(np.unique(labels))
    factors = None if n_basins < 2 else [factor_information(labels, f, resamples, permutations, seed)
                                         for f in ("init", "data")]
    return BasinInformation(labels.tolist(), n_basins, entropy_bits(labels), factors)


# --------------------------------------------------------------------------- whole behaviour


def _pair_means(distances: np.ndarray, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Mean distance [3] (same init, same data, neither) over pairs of different seeds, for the seeds whose
    original rows and columns are ``rows`` [N] and ``columns`` [N] (their order in ``distances`` [N, N])."""
    same_row, same_column = rows[:, None] == rows[None], columns[:, None] == columns[None]
    return np.array([distances[mask].mean() if mask.any() else np.nan
                     for mask in (same_row & ~same_column, same_column & ~same_row, ~same_row & ~same_column)])


def pair_distances(distances: np.ndarray, init: int, data: int, resamples: int = RESAMPLES,
                   permutations: int = PERMUTATIONS, seed: int = 0) -> PairDistances:
    """The mean distance between seeds sharing the init, the data stream or neither, for ``distances``
    [I·D, I·D] between the seeds of an ``init`` × ``data`` grid in grid order (row i, column j at i·D + j)."""
    d = np.asarray(distances, float)
    cells = np.arange(init * data).reshape(init, data)
    rows, columns = np.divmod(cells.ravel(), data)
    observed = _pair_means(d, rows, columns)
    rng = np.random.default_rng(seed)
    boot = []
    for row_pick, column_pick in zip(*two_way_resamples(init, data, resamples, rng), strict=True):
        picked = cells[np.ix_(row_pick, column_pick)].ravel()
        boot.append(_pair_means(d[np.ix_(picked, picked)], rows[picked], columns[picked]))
    boot = np.array(boot)
    p_values = {}
    for axis, name in enumerate(("init", "data")):  # seeds shuffled within columns (init) or rows (data)
        null = np.array([_pair_means(d[np.ix_(p.ravel(), p.ravel())], rows, columns)[axis]
                         for p in permuted_within(cells, axis, permutations, rng)])
        p_values[name] = _p_value(-observed[axis], -null)  # closer is more extreme
    keys = ("same_init", "same_data", "neither")
    return PairDistances(*map(float, observed), {k: _interval(boot[:, i]) for i, k in enumerate(keys)}, p_values)


# --------------------------------------------------------------------------- the study


def seed_factor_study(init: int, data: int, seeds: list[int], outcomes: dict[str, list[float]],
                      basin_labels: list[int] | None, distances: np.ndarray | None = None,
                      statuses: dict[int, str] | None = None, resamples: int = RESAMPLES,
                      permutations: int = PERMUTATIONS, seed: int = 0) -> SeedFactorStudy:
    """The study of a grid of ``init`` rows × ``data`` columns, where seed k sits in row k // data, column
    k % data. ``seeds`` [S] are the analysed seeds; ``outcomes`` maps a name to the values [S] in that order,
    ``basin_labels`` [S] are their behavioural basins (None: not clustered), ``distances`` [S, S] their
    behavioural distances (None: left out). A grid seed missing from ``seeds`` skips the study, naming it
    with its ``statuses`` entry (e.g. the manifest's "failed")."""
    cells = np.arange(init * data).reshape(init, data)
    missing = sorted(set(cells.ravel().tolist()) - set(seeds))
    if missing:
        listed = ", ".join(f"{k} ({(statuses or {}).get(k, 'not analysed')})" for k in missing)
        return SeedFactorStudy(init, data, cells.tolist(), [], None, None, resamples, permutations,
                               skipped=f"seed{'s' if len(missing) > 1 else ''} {listed} of the {init} × {data} "
                               "grid did not finish, and the balanced decomposition needs every cell (resume with "
                               "`rlbasins train --resume`, then analyse again)")
    position = [seeds.index(k) for k in cells.ravel()]  # grid order → position in ``seeds``

    def on_grid(values: list) -> np.ndarray:
        return np.asarray(values)[position].reshape(init, data)

    shares = [decompose(on_grid(values), name, resamples, permutations, seed) for name, values in outcomes.items()]
    information = basin_information(on_grid(basin_labels), resamples, permutations, seed) \
        if basin_labels is not None else None
    between = pair_distances(np.asarray(distances)[np.ix_(position, position)], init, data, resamples,
                             permutations, seed) if distances is not None else None
    return SeedFactorStudy(init, data, cells.tolist(), shares, information, between, resamples, permutations)
