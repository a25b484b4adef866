"""Basin map: where do seeds split? The same experiment at every value of a few knobs (env kwargs such as a
cue's learnability, training knobs such as the learning rate, the entropy coefficient, the init or the width),
one knob at a time around a base config, with the seeds' commitment measured at every point.

The study (``rlbasins map CONFIG``, the config's ``basin_map`` section):

1. **Points.** The base config and, per knob, the config with each of its values (:meth:`~rlbasins.core.config.
   ExperimentConfig.map_points`); each a run of its own (``<name>-base``, ``<name>-<knob>-<value>``), trained
   on the config's engine (:func:`~rlbasins.train.train_runs`). On the batched engine the points that differ only in PPO
   settings or init scale (learning rate, entropy coefficient, …) train together as one lockstep batch in one
   process, each seed's checkpoints the same bytes as its point trained alone; env kwargs and width need
   points of their own. A finished point is reused, an unfinished one continues with ``resume``.
2. **Per point**, from the seeds' greedy play on every held-out state (:func:`~rlbasins.analysis.behavior.
   analyze_behavior`, which also writes the point's ``analysis/behavior.json``):

   - each seed's *lean*: its share of strategy A among its decided held-out states, and the exact binomial
     p of "A and B equally likely" over those distinct states; a seed is **committed** to a strategy when
     p < ``alpha``. The share of seeds committed to each strategy, and to either, with Wilson 95% intervals;
   - the share of held-out states a seed's greedy episode decides nothing on (**undecided**), mean over seeds
     with a bootstrap CI;
   - bimodality of the leans across seeds: Sarle's coefficient (> 5/9 hints at two modes) and Hartigan's dip
     test (the ``diptest`` package; small p: not unimodal);
   - the **number of behavioural basins**: the run's clustering of the held-out total-variation matrix
     (``analysis.basins``; k = 1 possible), with the basins' sizes;
   - **training**: the mean and smallest greedy training return over seeds, and the share of seeds that
     reach ``success`` × the optimum, with a Wilson interval;
   - the **resolving power**: the smallest basin share that the point's seeds would show at least one seed
     of with 95% probability, 1 − 0.05^(1/n) (8.9% at 32 seeds).

Writes ``runs-dir/<name>/basin_map.json`` (:class:`BasinMapResult`); the CLI draws ``basin_map.png`` from it
(:func:`rlbasins.report.figures.basin_map`). Limitations: knobs are varied one at a time, so interactions
between knobs are not mapped; commitment is read from greedy play on the env's held-out suite, so a suite with
few distinct states resolves few leans (each point records how many states its tests rest on).
"""

from __future__ import annotations

import dataclasses
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import diptest
import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import load_env_creator

import envs
from rlbasins.analysis.basins import CLUSTERERS
from rlbasins.analysis.behavior import analyze_behavior
from rlbasins.core.config import ExperimentConfig, load_config
from rlbasins.core.results import Result
from rlbasins.core.stats import wilson_interval
from rlbasins.core.store import RunDir
from rlbasins.studies.sweep import bootstrap_mean, optimum_return


@dataclass
class Share:
    """``seeds`` of ``of`` seeds, their share and its Wilson 95% interval."""

    seeds: int
    of: int
    share: float
    ci: list[float]

    @classmethod
    def of_seeds(cls, seeds: int, of: int) -> Share:
        return cls(int(seeds), int(of), seeds / of if of else 0.0, wilson_interval(seeds, of).tolist())


@dataclass
class MapPoint:
    """One point of the map: the base (``knob`` None) or one knob at one value. Per-seed lists are in seed order."""

    knob: str | None
    value: Any
    run_dir: str
    status: str
    """What this invocation did: trained (or resumed) or reused (a finished run)."""
    n_seeds: int
    total_timesteps: int
    """Env steps per seed actually trained (whole rollouts)."""
    probe_states: int
    """Distinct held-out states every seed's lean and test rest on."""
    leans: list[float | None]
    """Each seed's share of the first strategy among its decided held-out states (None: none decided)."""
    lean_p: list[float | None]
    """Exact binomial p of each seed's lean against ½."""
    committed: dict[str, Share]
    """Seeds committed (p < alpha) to each strategy, by label."""
    committed_any: Share
    undecided: float
    """Mean over seeds of the share of held-out states on which the greedy episode follows neither strategy."""
    undecided_ci: list[float]
    """Bootstrap 95% CI over seeds."""
    bimodality_coefficient: float | None
    """Sarle's coefficient of the leans (None: fewer than 4 decided seeds, or all equal)."""
    dip: float | None
    """Hartigan's dip statistic of the leans (None as for Sarle)."""
    dip_p: float | None
    homogeneity_p: float | None
    """Chi-square test that every seed has the same lean (behaviour analysis)."""
    basins: int
    """Behavioural basins: clusters of the held-out total-variation matrix (k = 1 possible)."""
    basin_sizes: list[int]
    train_return: float
    """Mean over seeds of the greedy training return."""
    train_return_ci: list[float]
    train_return_min: float
    optimum: float | None
    """Best training return of the env (None: unknown, then ``trained`` is None)."""
    trained: Share | None
    """Seeds whose greedy training return is at least ``success`` × the optimum."""
    resolving_share: float
    """Smallest basin share of which these seeds show at least one seed with 95% probability."""
    seconds: float
    """Wall-clock seconds of this invocation for the point (training, if done, and measuring)."""
    train_seconds: float | None = None
    """Wall-clock seconds from the run's creation to its last update (its manifest): the training time, also
    of a reused point (longer where it was interrupted and resumed)."""
    trained_at_commit: str | None = None
    """The rlbasins git commit the point was trained at (its manifest)."""


@dataclass
class BasinMapResult(Result):
    name: str
    env_id: str
    strategies: list[str]
    """The env's two strategy labels; a seed's lean is its share of the first."""
    alpha: float
    success: float
    knobs: dict[str, list[Any]]
    """As configured: dotted field → values."""
    base_values: dict[str, Any]
    """Each knob's value in the base config; an env kwarg it leaves unset: the env's default (None if it has none)."""
    base: MapPoint
    points: list[MapPoint]
    """Every knob value, in config order (a value equal to the base's repeats the base point)."""

    def panel(self, knob: str) -> list[MapPoint]:
        """The points of one knob, in config order, with the base added first when none of its values is the
        base's."""
        mine = [p for p in self.points if p.knob == knob]
        return mine if any(p.run_dir == self.base.run_dir for p in mine) else [self.base, *mine]


def resolving_share(n_seeds: int, power: float = 0.95) -> float:
    """The smallest share s of seeds in a basin for which n seeds include at least one with probability
    ``power``: 1 − (1 − power)^(1/n)."""
    return float(1 - (1 - power) ** (1 / n_seeds))


def committed_counts(leans: list[float | None], p: list[float | None], strategies: list[str], alpha: float
                     ) -> dict[str, int]:
    """Seeds committed to each of the two ``strategies``: lean (share of the first) above ½ with p < ``alpha``
    for the first, below ½ for the second; seeds with no decided state (None) count for neither."""
    significant = [q is not None and q < alpha for q in p]
    first, second = strategies
    return {first: sum(s and x > 0.5 for s, x in zip(significant, leans, strict=True)),
            second: sum(s and x < 0.5 for s, x in zip(significant, leans, strict=True))}


def bimodality(leans: np.ndarray) -> tuple[float | None, float | None]:
    """Hartigan's dip statistic and its p-value (``diptest``, interpolated from its null tables) of the
    values [n]; (None, None) with fewer than 4 values or no spread."""
    if len(leans) < 4 or np.ptp(leans) == 0:
        return None, None
    dip, p = diptest.diptest(np.asarray(leans, float))
    return float(dip), float(p)


def measure_point(knob: str | None, value: Any, run: RunDir, status: str, alpha: float, success: float,
                  seconds: float, show_progress: bool = True, resamples: int = 2000, seed: int = 0) -> MapPoint:
    """A finished point's run → :class:`MapPoint` (measures its held-out behaviour; see the module docstring)."""
    start = time.perf_counter()
    behavior = analyze_behavior(run, show_progress=show_progress)
    cfg = load_config(run.config_path)
    manifest = run.manifest()
    if behavior.labels is None:
        raise ValueError(f"{cfg.env.id}: its held-out suite names no strategies, so no seed can commit to one")
    test = behavior.preference_greedy
    n = len(behavior.seeds)
    counts = committed_counts(test.preference, test.preference_p, behavior.labels[:2], alpha)
    leans = np.array([x for x in test.preference if x is not None])
    dip, dip_p = bimodality(leans)
    undecided = np.array([f["neither"] for f in behavior.heldout_labels_greedy])
    clustering = CLUSTERERS[cfg.analysis.basins.method](np.array(behavior.total_variation),
                                                        max_k=cfg.analysis.basins.max_k)
    train = np.array(behavior.train_return)
    optimum = optimum_return(cfg)
    return MapPoint(
        knob=knob, value=value, run_dir=str(run.root), status=status, n_seeds=n,
        total_timesteps=cfg.checkpoint_steps()[-1], probe_states=int(test.n_distinct_states),
        leans=test.preference, lean_p=test.preference_p,
        committed={label: Share.of_seeds(c, n) for label, c in counts.items()},
        committed_any=Share.of_seeds(sum(counts.values()), n),
        undecided=float(undecided.mean()), undecided_ci=bootstrap_mean(undecided, resamples, seed),
        bimodality_coefficient=test.bimodality_coefficient, dip=dip, dip_p=dip_p,
        homogeneity_p=test.homogeneity_p, basins=clustering.k,
        basin_sizes=np.bincount(clustering.labels).tolist(),
        train_return=float(train.mean()), train_return_ci=bootstrap_mean(train, resamples, seed),
        train_return_min=float(train.min()), optimum=optimum,
        trained=None if optimum is None else Share.of_seeds(int((train >= success * optimum).sum()), n),
        resolving_share=resolving_share(n), seconds=seconds + time.perf_counter() - start,
        train_seconds=(datetime.fromisoformat(manifest["updated"]) - datetime.fromisoformat(manifest["created"])
                       ).total_seconds(),
        trained_at_commit=(manifest.get("git_commit") or "")[:7] or None)


def _dotted(data: dict[str, Any], knob: str) -> Any:
    for part in knob.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def _env_default(env_id: str, knob: str) -> Any:
    """What the env uses for an ``env.kwargs.<name>`` knob that the config leaves unset: the registration's
    kwargs, else the default of the env's batched core (or of its constructor); None when it has none."""
    prefix = "env.kwargs."
    if not knob.startswith(prefix):
        return None
    name = knob[len(prefix):]
    spec = gym.spec(env_id)
    if name in spec.kwargs:
        return spec.kwargs[name]
    target = envs.GRID_ENVS.get(env_id) or load_env_creator(spec.entry_point)
    parameter = inspect.signature(target).parameters.get(name)
    return None if parameter is None or parameter.default is inspect.Parameter.empty else parameter.default


def run_basin_map(cfg: ExperimentConfig, runs_dir: Path | str = "runs", *, resume: bool = False,
                  show_progress: bool = True, on_point: Callable[[str | None, Any, ExperimentConfig], Any] | None = None
                  ) -> BasinMapResult:
    """The whole map (see the module docstring): every point trained (or reused) and measured, then
    ``runs_dir/<name>/basin_map.json``. ``on_point(knob, value, member)`` is called before each new point."""
    from rlbasins.train import train_runs

    runs_dir = Path(runs_dir)
    settings = cfg.basin_map
    where: dict[str, tuple[str | None, Any]] = {}  # a member's first (knob, value)
    members: dict[str, ExperimentConfig] = {}
    for knob, value, member in cfg.map_points():
        where.setdefault(member.name, (knob, value))
        members.setdefault(member.name, member)
    trained = train_runs(list(members.values()), runs_dir, resume, show_progress,
                         None if on_point is None else lambda member: on_point(*where[member.name], member))
    measured: dict[str, MapPoint] = {}
    points = []
    for knob, value, member in cfg.map_points():
        if member.name in measured:  # a knob value equal to the base's: the base point, under this knob
            points.append(dataclasses.replace(measured[member.name], knob=knob, value=value))
            continue
        run, status, seconds = trained[member.name]
        measured[member.name] = measure_point(knob, value, run, status, settings.alpha, settings.success,
                                              seconds, show_progress, seed=cfg.seed)
        points.append(measured[member.name])
    base = cfg.model_dump(mode="json")
    result = BasinMapResult(
        name=cfg.name, env_id=cfg.env.id, strategies=list(points[0].committed),
        alpha=settings.alpha, success=settings.success, knobs=dict(settings.knobs),
        base_values={knob: value if (value := _dotted(base, knob)) is not None else _env_default(cfg.env.id, knob)
                     for knob in settings.knobs}, base=points[0], points=points[1:])
    folder = runs_dir / cfg.name
    folder.mkdir(parents=True, exist_ok=True)
    result.save(folder / "basin_map.json")
    return result
