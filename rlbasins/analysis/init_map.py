"""Init-space map: which basin each initialisation of a 2-D plane leads to, and how rough the boundary is.

A run with ``seeds.init_plane`` trains one seed from every point θ0 + a_i·u + b_j·v of an R × R grid
(:mod:`rlbasins.train.initial`); everything else (env, action sampling, minibatch order) is shared, so
the grid is a picture of the map "initialisation → final behaviour", as Sohl-Dickstein (2024, "The
boundary of neural network trainability is fractal") drew "hyper-parameters → converges or diverges".

Maps ([R, R] images, row i ↔ a_i, column j ↔ b_j; seed k = i·R + j):

- **behavioural basin**: each seed's final basin from the run's clustering of the held-out
  total-variation matrix (the ``basins`` stage), named by its majority held-out strategy;
- **preferred strategy** (envs that name two strategies): the one of the two a seed's greedy held-out
  episodes reach more often ("tie" when equally often). Episodes that reach neither are ignored: on
  CueConflict most seeds reach neither object in most held-out episodes, so the most frequent label
  would be "neither" everywhere, while the preference between the two can still change over the plane.
  It can draw a boundary when the clustering finds one basin of mixed seeds — and a noisy one, since a
  seed near 50/50 flips with a few episodes (the outcome map's intervals show how close each seed is);
- **outcome** (continuous): each seed's greedy held-out share of the env's first strategy label (e.g.
  colour on CueConflict), with its 95% Wilson interval over held-out episodes.

Boundary and its box-counting dimension. A cell is a boundary cell when a 4-neighbour carries another
label (missing seeds have no label and are nobody's neighbour); the images show these. Box counting
marks one cell per boundary edge (the upper or left cell of each pair of differing neighbours, see
:func:`boundary_edges`). Boxes of side s = 1, 2, 4, … (powers of two up to the grid's side, aligned with
the grid's corner) are counted when they contain a marked cell;
the dimension is the least-squares slope of log N(s) against log(1/s), with a 95% interval from the
slope's standard error (t with n − 2 degrees of freedom; none with two sizes). "How it changes with
resolution": the same on the sub-grids of every 2nd and 4th point (R/2, R/4; down to 4 points a side),
i.e. as if the plane had been sampled more coarsely.

No-structure reference: the same labels shuffled over the grid (``SHUFFLES`` permutations, missing
cells kept in place) and box-counted again. A map whose dimension sits well below the shuffled ones has
spatial structure even when its boundary is rough; one inside the shuffled interval is indistinguishable
from labels scattered at random (e.g. label noise of seeds near 50/50).

What a 16 × 16 (or 32 × 32) grid can and cannot say. The fit has log2(R) + 1 points (5 at R = 16), all
within 1.2 decades, and the smallest boxes see the grid's own pixels: a smooth boundary gives ≈ 1
(exactly 1 for a straight one), a label
field that changes from cell to cell (or a boundary too fine for the grid) gives 2, one label gives no
boundary and no dimension. Values in between say the boundary is rough *at the scales sampled*; a
fractal needs the estimate to hold as the resolution grows (Sohl-Dickstein used up to 4096² points per
image), which here means comparing R with R/2 and R/4, not trusting one slope. The interval is the
regression's — it does not include the label noise of seeds near a basin edge (a seed's basin is itself
an estimate from finitely many held-out states), which by itself makes a boundary look rougher.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from rlbasins.analysis.basins import Basin
from rlbasins.analysis.behavior import BehaviorResult
from rlbasins.core.config import InitPlaneConfig
from rlbasins.core.init_plane import grid_point, plane_coordinates
from rlbasins.core.results import Result

MIN_SIDE = 4
"""Coarsest sub-grid whose dimension is estimated (3 box sizes: 1, 2, 4)."""
SHUFFLES = 200
"""Permutations of a map's labels over the grid for the no-structure reference."""


@dataclass
class BoxCounting:
    side: int
    """Grid points per side of this (sub-)grid."""
    stride: int
    """It takes every ``stride``-th point of the full grid (1: the full grid)."""
    boundary_cells: int
    """Cells of this grid with a 4-neighbour of another label."""
    box_sizes: list[int]
    """[n] box sides in cells of this grid: 1, 2, 4, … ≤ side."""
    box_counts: list[int]
    """[n] boxes of each size that contain a boundary edge (:func:`boundary_edges`)."""
    dimension: float | None
    """Slope of log N against log(1/size); None without a boundary."""
    dimension_ci: list[float] | None
    """95% interval [low, high] from the slope's standard error; None with fewer than three box sizes."""


@dataclass
class LabelMap:
    name: str
    """What the labels are: "behavioural basin" or "preferred strategy"."""
    names: list[str]
    """Name of each label code (e.g. "basin 0 (colour)")."""
    image: list[list[int]]
    """[R, R] label code per grid point; −1 where the seed has no result."""
    boundary: list[list[bool]]
    """[R, R] cells with a 4-neighbour of another label."""
    box_counting: list[BoxCounting]
    """The full grid first, then every 2nd, 4th, … point (down to 4 a side)."""
    shuffled_dimension: float | None
    """Full grid, the same labels shuffled over the labelled cells: the mean dimension of ``SHUFFLES``
    permutations — where a map with these label counts but no spatial structure sits (None without boundary)."""
    shuffled_dimension_ci: list[float] | None
    """Its 95% percentile interval over the permutations."""


@dataclass
class InitMap(Result):
    resolution: int
    span: float
    directions: str
    coordinates: list[float]
    """[R] a_i (rows) = b_j (columns), from −span to span."""
    seeds: list[int]
    """Grid seeds with a result; the others (failed) are −1 / None in the images."""
    maps: list[LabelMap]
    outcome_label: str | None
    """The strategy whose held-out share is mapped (None when the env names no strategies)."""
    outcome: list[list[float | None]] | None
    """[R, R] greedy held-out share of ``outcome_label``."""
    outcome_ci: list[list[list[float] | None]] | None
    """[R, R] its 95% Wilson interval over held-out episodes [low, high]."""
    skipped: str | None = None
    """Why no boundary dimension was measured: one label on the whole grid in every map."""


# --------------------------------------------------------------------------- boundary and box counting


def _differing_pairs(image: np.ndarray) -> list[tuple[tuple[slice, slice], tuple[slice, slice], np.ndarray]]:
    """For each axis: (index of the first cell, index of its next neighbour, whether both are labelled and
    differ) over all neighbour pairs along that axis."""
    image = np.asarray(image)
    pairs = []
    for first, second in (((slice(None, -1), slice(None)), (slice(1, None), slice(None))),
                          ((slice(None), slice(None, -1)), (slice(None), slice(1, None)))):
        a, b = image[first], image[second]
        pairs.append((first, second, (a != b) & (a >= 0) & (b >= 0)))
    return pairs


def boundary_cells(image: np.ndarray) -> np.ndarray:
    """[R, C] labels (−1: missing) → [R, C] bool: cells with a labelled 4-neighbour of another label."""
    boundary = np.zeros(np.shape(image), dtype=bool)
    for first, second, differ in _differing_pairs(image):
        boundary[first] |= differ
        boundary[second] |= differ
    return boundary


def boundary_edges(image: np.ndarray) -> np.ndarray:
    """[R, C] bool: cells whose lower or right neighbour carries another label — one cell per boundary edge.

    Box counting uses these rather than :func:`boundary_cells`: a boundary between two cells marks both, so
    counting cells would double N at the finest scale only, and by an amount that depends on where the
    boundary sits relative to the boxes (a straight boundary would come out anywhere from 1 to 1.3).
    """
    edges = np.zeros(np.shape(image), dtype=bool)
    for first, _, differ in _differing_pairs(image):
        edges[first] |= differ
    return edges


def box_counts(boundary: np.ndarray) -> tuple[list[int], list[int]]:
    """[R, C] bool → box sides 1, 2, 4, … ≤ the grid's longer side, and how many boxes of each (a partition
    aligned with cell (0, 0); partial boxes at the far edges count) contain a marked cell."""
    boundary = np.asarray(boundary, dtype=bool)
    sizes, counts = [], []
    size = 1
    while size <= max(boundary.shape):
        rows, cols = -(-boundary.shape[0] // size), -(-boundary.shape[1] // size)
        padded = np.zeros((rows * size, cols * size), dtype=bool)
        padded[: boundary.shape[0], : boundary.shape[1]] = boundary
        occupied = padded.reshape(rows, size, cols, size).any(axis=(1, 3))
        sizes.append(size)
        counts.append(int(occupied.sum()))
        size *= 2
    return sizes, counts


def dimension_fit(sizes: list[int], counts: list[int]) -> tuple[float | None, list[float] | None]:
    """Slope of log N against log(1/size) and its 95% t interval (None with fewer than three sizes);
    (None, None) when no box holds boundary."""
    if not any(counts):
        return None, None
    x, y = -np.log(np.asarray(sizes, float)), np.log(np.asarray(counts, float))
    if len(x) < 3:
        return float((y[-1] - y[0]) / (x[-1] - x[0])), None
    fit = stats.linregress(x, y)
    half = float(stats.t.ppf(0.975, len(x) - 2) * fit.stderr)
    return float(fit.slope), [float(fit.slope) - half, float(fit.slope) + half]


def box_counting(image: np.ndarray, stride: int = 1) -> BoxCounting:
    """Box counting of the boundary of the sub-grid ``image[::stride, ::stride]``."""
    sub = np.asarray(image)[::stride, ::stride]
    sizes, counts = box_counts(boundary_edges(sub))
    dimension, ci = dimension_fit(sizes, counts)
    return BoxCounting(sub.shape[0], stride, int(boundary_cells(sub).sum()), sizes, counts, dimension, ci)


def shuffled_dimensions(image: np.ndarray, shuffles: int = SHUFFLES, seed: int = 0) -> np.ndarray:
    """[shuffles] box-counting dimensions of ``image`` with its labels permuted over the labelled cells
    (missing cells stay missing); NaN where a permutation has no boundary."""
    image = np.asarray(image)
    labelled = image >= 0
    rng = np.random.default_rng(seed)
    dimensions = []
    for _ in range(shuffles):
        shuffled = image.copy()
        shuffled[labelled] = rng.permutation(image[labelled])
        dimensions.append(box_counting(shuffled).dimension)
    return np.array([np.nan if d is None else d for d in dimensions])


def label_map(name: str, names: list[str], image: np.ndarray, seed: int = 0) -> LabelMap:
    """A :class:`LabelMap` with box counting at full resolution and every 2nd, 4th, … point, and the
    no-structure reference from shuffled labels."""
    image = np.asarray(image)
    strides = [1]
    while image.shape[0] // (strides[-1] * 2) >= MIN_SIDE:
        strides.append(strides[-1] * 2)
    counted = [box_counting(image, stride) for stride in strides]
    mean = ci = None
    if counted[0].dimension is not None:
        shuffled = shuffled_dimensions(image, seed=seed)
        mean, ci = float(np.nanmean(shuffled)), np.nanpercentile(shuffled, [2.5, 97.5]).tolist()
    return LabelMap(name, names, image.tolist(), boundary_cells(image).tolist(), counted, mean, ci)


# --------------------------------------------------------------------------- the study


def init_map(plane: InitPlaneConfig, seeds: list[int], clustering_labels: list[int], behavior_basins: list[Basin],
             behavior: BehaviorResult, seed: int = 0) -> InitMap:
    """The maps of a run trained on ``plane``: ``seeds`` [S] with a result, their basin labels [S] (codes of
    ``behaviour_basins``) and held-out behaviour; ``seed`` draws the label permutations."""
    side = plane.resolution
    cells = [grid_point(plane, k) for k in seeds]

    def image_of(values, fill) -> np.ndarray:
        image = np.full((side, side), fill, dtype=object if fill is None else type(fill))
        for (i, j), value in zip(cells, values, strict=True):
            image[i, j] = value
        return image

    names = [f"basin {b.index}" + (f" ({b.label})" if b.label else "") for b in behavior_basins]
    maps = [label_map("behavioural basin", names, image_of(clustering_labels, -1), seed)]
    outcome_label = outcome = outcome_ci = None
    if behavior.labels is not None:
        first, second = behavior.labels[:2]
        names = [first, second, "tie"]
        preferred = [names.index(label) for label in behavior.preferred_strategies()]
        maps.append(label_map("preferred strategy", names, image_of(preferred, -1), seed))
        outcome_label = first
        outcome = image_of([f[outcome_label] for f in behavior.heldout_labels_greedy], None).tolist()
        outcome_ci = image_of([ci[outcome_label] for ci in behavior.heldout_labels_greedy_ci], None).tolist()
    skipped = None
    if all(m.box_counting[0].boundary_cells == 0 for m in maps):
        skipped = "one label on the whole grid in every map (" + "; ".join(
            f"{m.name}: {m.names[next(c for c in np.ravel(m.image) if c >= 0)]}" for m in maps) + "): no boundary"
    return InitMap(side, plane.span, plane.directions, plane_coordinates(plane).tolist(), list(seeds), maps,
                   outcome_label, outcome, outcome_ci, skipped)
