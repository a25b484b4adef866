"""Training length: are the basins settled once training converges, or do seeds switch late?

At every checkpoint step t up to the analysed one, each seed's held-out fingerprint (its action
distributions on the run's held-out states, the states the final basins are defined on) is assigned
to the nearest *final* behavioural basin: the basin whose mean action distribution at the last step
is closest in total variation (mean over states of ½‖p − m‖₁). From these assignments:

- per step, each basin's share of the seeds with a 95% Wilson interval, and the mean total variation
  of the seeds to their assigned basin (how far from any final strategy they are) with a 95%
  percentile bootstrap interval over seeds;
- the basin transition count matrices between consecutive checkpoints (from-basin rows, to-basin
  columns), and their sum over the transitions that start at or after the ``late_fraction`` of
  training;
- per seed, the training fraction of its last switch (the first checkpoint from which its
  assignment never changes again; None when it never changes), and the share of seeds whose last
  switch comes after ``late_fraction``, with a Wilson interval.

At the last step the nearest-mean assignment need not equal the clustering's label (a seed at a
basin's edge can sit closer to another basin's mean): ``final_agreement`` says how often it does.

Whatever the number of final basins, and so also when there is one, every step also gets:

- ``drift``: the mean over seeds of the total variation between a seed's fingerprint at the step and
  its own final fingerprint (is behaviour still moving late in training?);
- ``spread``: the mean pairwise total variation between seeds at the step (do seeds become more
  alike or more different with training?);
- ``clusters``: the number of behavioural basins the run's clusterer finds among the seeds at that
  step alone (does the basin count itself depend on training length?).

Both means carry 95% percentile bootstrap intervals over seeds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from rlbasins.analysis import basins
from rlbasins.core.checkpoints import load_policies
from rlbasins.core.config import TrainingLengthConfig
from rlbasins.core.progress import task_progress
from rlbasins.core.results import Result
from rlbasins.core.rollouts import action_probs, stack_state_dicts
from rlbasins.core.stats import wilson_interval
from rlbasins.core.store import RunDir


@dataclass
class BasinTrajectory(Result):
    seeds: list[int]
    final_basins: list[int]
    """[S] the behavioural basin (clustering label) of each seed at the last step."""
    n_basins: int
    steps: list[int]
    fractions: list[float]
    """[T] steps / last step."""
    assignments: list[list[int]]
    """[T][S] the nearest final basin of each seed at each step."""
    distance_to_basins: list[list[list[float]]]
    """[T][S][B] total variation of each seed's fingerprint to each final basin's mean."""
    shares: list[list[float]]
    """[T][B] share of the seeds assigned to each basin."""
    share_ci: list[list[list[float]]]
    """[T][B] 95% Wilson interval [low, high] of each share."""
    mean_distance: list[float]
    """[T] mean over seeds of the total variation to the assigned basin."""
    mean_distance_ci: list[list[float]]
    """[T] 95% bootstrap interval over seeds of ``mean_distance``."""
    transitions: list[list[list[int]]]
    """[T−1][B][B] seeds in basin row at step t and in basin column at step t+1."""
    late_fraction: float
    late_transitions: list[list[int]]
    """[B][B] the transitions summed over those that start at a fraction ≥ ``late_fraction``."""
    switches_per_seed: list[int]
    """[S] number of basin changes of each seed over all checkpoints."""
    last_switch: list[float | None]
    """[S] training fraction of the checkpoint where each seed's assignment last changed (None: never)."""
    late_switchers: list[int]
    """Seeds whose last switch comes after ``late_fraction``."""
    late_share: float
    late_share_ci: list[float]
    """95% Wilson interval of ``late_share``."""
    final_agreement: float
    """Share of seeds whose nearest-mean basin at the last step is their clustering label."""
    drift: list[float]
    """[T] mean over seeds of the TV between a seed's fingerprint at the step and at the last step."""
    drift_ci: list[list[float]]
    spread: list[float]
    """[T] mean pairwise TV between the seeds at the step."""
    spread_ci: list[list[float]]
    clusters: list[int]
    """[T] behavioural basins the run's clusterer finds among the seeds at each step alone."""
    skipped: str | None = None
    """Why the seeds were not tracked through the final basins (one basin, a single checkpoint); then the
    basin fields are empty. ``drift``, ``spread`` and ``clusters`` are measured whenever ``steps`` is not empty."""


def basin_means(probs: np.ndarray, labels: list[int] | np.ndarray) -> np.ndarray:
    """probs [S, N, A] and basin labels [S] (0 … B−1) → each basin's mean action distribution [B, N, A]."""
    probs, labels = np.asarray(probs, float), np.asarray(labels)
    return np.stack([probs[labels == b].mean(0) for b in range(labels.max() + 1)])


def distances_to_basins(probs: np.ndarray, means: np.ndarray) -> np.ndarray:
    """probs [S, N, A], basin means [B, N, A] → [S, B] mean over states of ½‖p − m‖₁."""
    probs, means = np.asarray(probs, float), np.asarray(means, float)
    return 0.5 * np.abs(probs[:, None] - means[None]).sum(-1).mean(-1)


def nearest_basin(distances: np.ndarray) -> np.ndarray:
    """[S, B] distances → [S] the nearest basin (ties: the lower index, i.e. the larger basin)."""
    return np.asarray(distances).argmin(1)


def transition_counts(before: np.ndarray, after: np.ndarray, n_basins: int) -> np.ndarray:
    """Assignments [S] at two steps → [B, B] counts, row: basin before, column: basin after."""
    counts = np.zeros((n_basins, n_basins), dtype=int)
    np.add.at(counts, (np.asarray(before), np.asarray(after)), 1)
    return counts


def last_switches(assignments: np.ndarray, fractions: list[float]) -> list[float | None]:
    """assignments [T, S] → per seed the fraction of the first checkpoint from which its assignment never
    changes again (the checkpoint *after* its last switch), or None when it never changes."""
    assignments = np.asarray(assignments)
    out: list[float | None] = []
    for column in assignments.T:
        changed = np.flatnonzero(column[1:] != column[:-1])
        out.append(float(fractions[changed[-1] + 1]) if changed.size else None)
    return out


def _bootstrap_mean(values: np.ndarray, resamples: int, rng: np.random.Generator) -> list[float]:
    draws = values[rng.integers(len(values), size=(resamples, len(values)))].mean(1)
    return np.percentile(draws, [2.5, 97.5]).tolist()


def mean_pairwise(distances: np.ndarray) -> float:
    """Mean of the off-diagonal entries of an [S, S] distance matrix."""
    d = np.asarray(distances)
    return float(d[~np.eye(len(d), dtype=bool)].mean()) if len(d) > 1 else 0.0


def _bootstrap_pairwise(distances: np.ndarray, resamples: int, rng: np.random.Generator) -> list[float]:
    """95% interval of the mean pairwise distance, seeds resampled with replacement (pairs of one seed with a
    copy of itself left out)."""
    draws = []
    for idx in rng.integers(len(distances), size=(resamples, len(distances))):
        distinct = idx[:, None] != idx[None]
        draws.append(distances[np.ix_(idx, idx)][distinct].mean() if distinct.any() else 0.0)
    return np.percentile(draws, [2.5, 97.5]).tolist()


def pairwise_tv(probs: np.ndarray) -> np.ndarray:
    """probs [S, N, A] → [S, S] mean over states of ½‖p_i − p_j‖₁."""
    return distances_to_basins(probs, probs)


@dataclass
class Drift:
    drift: list[float]
    drift_ci: list[list[float]]
    spread: list[float]
    spread_ci: list[list[float]]
    clusters: list[int]


def drift_and_spread(probs: list[np.ndarray], method: str, max_k: int, resamples: int, seed: int = 0) -> Drift:
    """The basin-free part: every step's distance to the final fingerprints, spread, and basin count."""
    rng = np.random.default_rng(seed)
    out = Drift([], [], [], [], [])
    for p in probs:
        own = 0.5 * np.abs(p - probs[-1]).sum(-1).mean(-1)                         # [S]
        pairwise = pairwise_tv(p)
        out.drift.append(float(own.mean()))
        out.drift_ci.append(_bootstrap_mean(own, resamples, rng))
        out.spread.append(mean_pairwise(pairwise))
        out.spread_ci.append(_bootstrap_pairwise(pairwise, resamples, rng))
        out.clusters.append(int(basins.CLUSTERERS[method](pairwise, max_k=max_k).k) if len(p) > 2 else 1)
    return out


def summarize(seeds: list[int], final_basins: list[int], steps: list[int], probs: list[np.ndarray],
              settings: TrainingLengthConfig, method: str = "spectral", max_k: int = 8,
              seed: int = 0) -> BasinTrajectory:
    """The trajectory study from each step's held-out action distributions ``probs`` [T] × [S, N, A]
    (the last entry: the final step the basins ``final_basins`` [S] were clustered at, by ``method``)."""
    drift = drift_and_spread(probs, method, max_k, settings.resamples, seed)
    labels = np.asarray(final_basins)
    n_basins = int(labels.max()) + 1
    fractions = [s / steps[-1] if steps[-1] else 1.0 for s in steps]
    means = basin_means(probs[-1], labels)
    distances = np.stack([distances_to_basins(p, means) for p in probs])           # [T, S, B]
    assignments = distances.argmin(-1)                                             # [T, S]
    n = len(seeds)
    counts = np.stack([np.bincount(a, minlength=n_basins) for a in assignments])   # [T, B]
    assigned = np.take_along_axis(distances, assignments[..., None], -1)[..., 0]   # [T, S]
    rng = np.random.default_rng(seed)
    transitions = [transition_counts(a, b, n_basins) for a, b in zip(assignments[:-1], assignments[1:], strict=True)]
    late = sum((m for m, f in zip(transitions, fractions[:-1], strict=True) if f >= settings.late_fraction),
               np.zeros((n_basins, n_basins), dtype=int))
    last = last_switches(assignments, fractions)
    late_switchers = [k for k, f in zip(seeds, last, strict=True) if f is not None and f > settings.late_fraction]
    return BasinTrajectory(
        seeds=seeds, final_basins=labels.tolist(), n_basins=n_basins, steps=steps, fractions=fractions,
        assignments=assignments.tolist(), distance_to_basins=distances.tolist(), shares=(counts / n).tolist(),
        share_ci=wilson_interval(counts, n).tolist(), mean_distance=assigned.mean(1).tolist(),
        mean_distance_ci=[_bootstrap_mean(row, settings.resamples, rng) for row in assigned],
        transitions=[m.tolist() for m in transitions], late_fraction=settings.late_fraction,
        late_transitions=late.tolist(), switches_per_seed=(assignments[1:] != assignments[:-1]).sum(0).tolist(),
        last_switch=last, late_switchers=late_switchers, late_share=len(late_switchers) / n,
        late_share_ci=wilson_interval(len(late_switchers), n).tolist(),
        final_agreement=float((assignments[-1] == labels).mean()), **asdict(drift))


def _untracked(seeds: list[int], final_basins: list[int], steps: list[int], settings: TrainingLengthConfig,
               drift: Drift | None, reason: str) -> BasinTrajectory:
    """A study whose basin tracking was not measured (``reason``); the basin-free part when ``drift`` is given."""
    drift = drift or Drift([], [], [], [], [])
    return BasinTrajectory(
        seeds=seeds, final_basins=list(final_basins), n_basins=int(max(final_basins)) + 1,
        steps=steps if drift.drift else [], fractions=[s / steps[-1] for s in steps] if drift.drift else [],
        assignments=[], distance_to_basins=[], shares=[], share_ci=[], mean_distance=[], mean_distance_ci=[],
        transitions=[], late_fraction=settings.late_fraction, late_transitions=[], switches_per_seed=[],
        last_switch=[], late_switchers=[], late_share=0.0, late_share_ci=[0.0, 1.0], final_agreement=1.0,
        **asdict(drift), skipped=reason)


def basin_trajectory(run: RunDir, seeds: list[int], final_step: int, final_basins: list[int],
                     heldout_obs: torch.Tensor, settings: TrainingLengthConfig, method: str = "spectral",
                     max_k: int = 8, seed: int = 0, show_progress: bool = True) -> BasinTrajectory:
    """The study on every checkpoint step up to ``final_step`` that all ``seeds`` have; ``final_basins`` [S]
    are their behavioural basins at ``final_step`` (clustered by ``method``), ``heldout_obs`` [N, ...] the
    held-out observations."""
    steps = sorted(step for step in set.intersection(*({e.step for e in run.seed(k).entries()} for k in seeds))
                   if step <= final_step)
    if len(steps) < 2:
        return _untracked(seeds, final_basins, steps, settings, None, "a single checkpoint")
    probs = []
    with task_progress("basin trajectory", len(steps), enabled=show_progress) as advance:
        for step in steps:
            template, state_dicts, _ = load_policies(run, seeds, step)
            probs.append(action_probs(template, stack_state_dicts(state_dicts), heldout_obs).double().numpy())
            advance()
    if max(final_basins) < 1:
        return _untracked(seeds, final_basins, steps, settings,
                          drift_and_spread(probs, method, max_k, settings.resamples, seed),
                          "one behavioural basin: there is nothing to switch between")
    return summarize(seeds, list(final_basins), steps, probs, settings, method, max_k, seed)
