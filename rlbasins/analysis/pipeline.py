"""``rlbasins analyze``: the whole analysis of a run, from checkpoints to basins.

The analysis is :data:`STAGES`, an ordered list of :class:`Stage`; each reads what the stages before it
left on a :class:`RunAnalysis` and is timed under its name:

1. behaviour of every seed on held-out states (:mod:`~rlbasins.analysis.behavior`);
2. behavioural basins: clustering of the total-variation matrix of held-out action distributions (or,
   with ``analysis.basins.distance: strategies``, of the seeds' held-out strategy shares), with stability
   under resampling of the held-out states (:mod:`~rlbasins.analysis.basins`), and the seeds that belong to
   none of them (:mod:`~rlbasins.analysis.outliers`);
3. the optional studies that need only the behaviour, each written to its own file:
   early detection (:mod:`~rlbasins.analysis.early`), training length
   (:mod:`~rlbasins.analysis.training_length`), basin count (:mod:`~rlbasins.analysis.basin_count`),
   the init-space map for runs with ``seeds.init_plane`` (:mod:`~rlbasins.analysis.init_map`) and seed
   factors for runs with ``seeds.grid`` (:mod:`~rlbasins.analysis.seed_factors`); and, for a two-cue
   env, the symmetry test of its first layers from step 0 (:mod:`~rlbasins.analysis.symmetry`);
4. Git Re-Basin alignment of all seeds into one unit order (:mod:`~rlbasins.analysis.align`);
5. barriers naive, aligned and aligned with REPAIR between every pair of seeds (N ≤ ``max_pairwise``) or
   from every seed to the behavioural basins' medoids (:mod:`~rlbasins.analysis.barriers`);
6. weight-space basins from the seeds' input weights, which read no state, and every aligned barrier
   clustered beside them as another view (:mod:`~rlbasins.analysis.weight_space`);
7. full interpolation curves for representative pairs within and across basins.

Then the agreement of the two kinds of basins (ARI with a bootstrap CI) and, for planted experiments,
of each with the planted truth. Writes ``analysis/behavior.json``, ``seeds.csv``, ``connectivity.json``,
``basins.json``, ``basins.csv``, ``early.json``, ``trajectory.json``, ``basin_count.json``,
``init_map.json``, ``seed_factors.json`` and ``symmetry.json`` in the run directory.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from envs.suites import get_suite
from rlbasins.analysis import align, barriers, basins, weight_space
from rlbasins.analysis.basin_count import BasinCount, basin_count
from rlbasins.analysis.behavior import (
    BehaviorResult,
    analyze_behavior,
    resampled_total_variation,
    strategy_distance_matrix,
)
from rlbasins.analysis.early import EarlyDetection, choose_target, early_detection
from rlbasins.analysis.init_map import InitMap, init_map
from rlbasins.analysis.outliers import OutlierTest, outlier_test
from rlbasins.analysis.seed_factors import SeedFactorStudy, seed_factor_study
from rlbasins.analysis.symmetry import SymmetryResult, has_symmetry_test, symmetry_of
from rlbasins.analysis.training_length import BasinTrajectory, basin_trajectory
from rlbasins.core.checkpoints import load_policies
from rlbasins.core.config import AnalysisConfig, ExperimentConfig, load_config
from rlbasins.core.devices import resolve_device
from rlbasins.core.heldout import evaluation_sample, fingerprint_inputs
from rlbasins.core.seeding import factor_seed
from rlbasins.core.store import RunDir, atomic_write_bytes

BEHAVIOURAL_DISTANCES = {"actions": "total variation on held-out states",
                         "strategies": "total variation between greedy held-out strategy shares"}
"""What the behavioural basins cluster, by ``analysis.basins.distance``."""
INPUT_WEIGHTS = "input weights (per input, the norm of the actor's first-layer weights; reads no state)"
"""The distance between seeds that defines the weight-space basins (:mod:`~rlbasins.analysis.weight_space`)."""


@dataclass
class AnalysisSummary:
    """What ``rlbasins analyze`` prints at the end."""

    n_seeds: int
    behavior_k: int
    weight_k: int
    agreement: basins.Agreement
    """Of the behavioural and the weight-space basins."""
    planted_ari: dict[str, basins.Agreement] | None
    verdict: str | None
    early: EarlyDetection | None
    seconds: dict[str, float]
    """Wall-clock seconds per stage."""
    trajectory: BasinTrajectory | None = None
    basin_count: BasinCount | None = None
    init_map: InitMap | None = None
    seed_factors: SeedFactorStudy | None = None
    outliers: list[int] | None = None
    """Seeds named as outliers of their behavioural basin (:mod:`~rlbasins.analysis.outliers`)."""
    symmetry: SymmetryResult | None = None


@dataclass
class RunAnalysis:
    """What the stages of one ``rlbasins analyze`` share: each reads what the stages before it set."""

    run: RunDir
    cfg: ExperimentConfig
    manifest: dict[str, Any]
    step: int | None
    show_progress: bool
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall-clock seconds per timed stage (written to ``basins.json``)."""
    behavior: BehaviorResult | None = None
    heldout_obs: torch.Tensor | None = None     # [N, *obs_shape] the held-out observations
    noise_obs: torch.Tensor | None = None       # [M, *obs_shape] out-of-distribution noise inputs
    distances: np.ndarray | None = None         # [S, S] the behavioural distance the basins cluster
    distance_of: Callable[[np.ndarray], np.ndarray] | None = None
    """The behavioural distance on a resample of its held-out units (indices [n_units]) → [S, S]."""
    n_units: int | None = None                  # held-out states (actions) or distinct states (strategies)
    behavior_clusters: basins.Clustering | None = None
    stability: basins.Stability | None = None
    behavior_basins: list[basins.Basin] | None = None
    outliers: OutlierTest | None = None
    studies: dict[str, Any] = field(default_factory=dict)
    """The optional studies' results by file name (``early``, ``trajectory``, …); None when off."""
    template: Any = None
    state_dicts: list[dict[str, torch.Tensor]] | None = None
    aligned: list[dict[str, torch.Tensor]] | None = None
    probe: barriers.PathProbe | None = None
    anchors: list[int] | None = None             # the behavioural basins' medoids (seed indices)
    barrier_study: barriers.BarrierStudy | None = None
    weight_views: list[basins.WeightView] | None = None   # the input weights first (they define the basins)
    weight_basins: list[basins.Basin] | None = None

    @property
    def settings(self) -> AnalysisConfig:
        return self.cfg.analysis

    @property
    def seeds(self) -> list[int]:
        return self.behavior.seeds


@dataclass(frozen=True)
class Stage:
    """One step of the analysis: ``run(analysis)`` timed as ``name`` (None: not timed). A stage with
    ``writes`` is an optional study: when ``enabled(analysis)`` is false its ``analysis/<writes>.json`` is
    removed (so a report never shows an earlier analysis's study), else ``run`` returns the result saved there."""

    name: str | None
    run: Callable[[RunAnalysis], Any]
    writes: str | None = None
    enabled: Callable[[RunAnalysis], bool] = lambda analysis: True


def _behavior(a: RunAnalysis) -> None:
    a.behavior = analyze_behavior(a.run, step=a.step, show_progress=a.show_progress, settings=a.settings)
    a.heldout_obs, a.noise_obs = fingerprint_inputs(a.cfg, evaluation_sample(a.cfg))


def _behavioural_distance(a: RunAnalysis) -> None:
    """The distance the behavioural basins cluster (``analysis.basins.distance``), and how to recompute it on a
    resample of its held-out units (for stability and the basin count)."""
    if a.settings.basins.distance == "strategies":
        shares = np.load(a.run.analysis_dir / "heldout_strategy_shares.npy", allow_pickle=False)  # [S, D, 3]
        a.distance_of, a.n_units = (lambda idx: strategy_distance_matrix(shares[:, idx])), shares.shape[1]
        a.distances = strategy_distance_matrix(shares)
    else:
        probs = torch.as_tensor(np.load(a.run.analysis_dir / "heldout_probs.npy", allow_pickle=False))  # [S, N, A]
        a.distance_of, a.n_units = resampled_total_variation(probs), probs.shape[1]
        a.distances = np.array(a.behavior.total_variation)


def _behavior_basins(a: RunAnalysis) -> None:
    settings = a.settings.basins
    _behavioural_distance(a)
    a.behavior_clusters = basins.CLUSTERERS[settings.method](a.distances, max_k=settings.max_k)
    a.stability = basins.stability(a.distance_of, a.behavior_clusters, a.n_units, resamples=settings.resamples,
                                   seed=a.cfg.seed)
    a.behavior_basins = basins.describe_basins(a.behavior_clusters, a.seeds, a.distances,
                                               a.behavior.dominant_labels())
    a.outliers = outlier_test(a.distances, a.behavior_clusters.labels, a.seeds)


def _final_step(a: RunAnalysis) -> int:
    return min(a.behavior.steps)


def _early(a: RunAnalysis) -> EarlyDetection:
    target = choose_target(a.settings.early.target, a.behavior_clusters.labels, a.behavior.preferred_strategies())
    return early_detection(a.run, a.seeds, _final_step(a), *target, a.distances, a.heldout_obs, a.noise_obs,
                           a.settings.early, seed=a.cfg.seed, show_progress=a.show_progress, labels=a.behavior.labels)


def _training_length(a: RunAnalysis) -> BasinTrajectory:
    return basin_trajectory(a.run, a.seeds, _final_step(a), a.behavior_clusters.labels, a.heldout_obs,
                            a.settings.training_length, a.settings.basins.method, a.settings.basins.max_k,
                            seed=a.cfg.seed, show_progress=a.show_progress)


def _basin_count(a: RunAnalysis) -> BasinCount:
    return basin_count(a.seeds, a.distances, a.behavior_clusters, a.settings.basin_count, a.settings.basins.max_k,
                       a.distance_of, a.n_units, seed=a.cfg.seed)


def _init_map(a: RunAnalysis) -> InitMap:
    return init_map(a.cfg.seeds.init_plane, a.seeds, a.behavior_clusters.labels, a.behavior_basins, a.behavior,
                    seed=a.cfg.seed)


def _policies_and_probe(a: RunAnalysis) -> None:
    a.template, a.state_dicts, _ = load_policies(a.run, a.seeds, a.step)
    conn = a.settings.barriers
    a.probe = barriers.make_probe(a.template, a.cfg.env.id, a.cfg.env.kwargs, conn.episodes, conn.n_states,
                                  seed=factor_seed(a.cfg.seed, "connectivity", 0),
                                  device=resolve_device(a.cfg.device), suite=get_suite(a.cfg.env.id))


def _alignment(a: RunAnalysis) -> None:
    a.aligned = align.align_seeds(a.settings.align, a.template, a.state_dicts, a.heldout_obs, seed=a.cfg.seed,
                                  show_progress=a.show_progress)


def _barriers(a: RunAnalysis) -> None:
    a.anchors = basins.medoids(a.distances, a.behavior_clusters.labels)  # used beyond max_pairwise seeds
    a.barrier_study = barriers.barrier_study(a.template, a.state_dicts, a.aligned, a.probe, a.seeds, a.anchors,
                                             a.settings.barriers, a.settings.align, a.cfg.env.id, a.show_progress)


def _weight_basins(a: RunAnalysis) -> None:
    inputs = weight_space.input_distances(a.template, a.state_dicts)
    a.weight_views = weight_space.weight_views(
        inputs, a.barrier_study, a.anchors, a.behavior_clusters.labels, _planted_codes(a),
        a.settings.basins.method, a.settings.basins.max_k, seed=a.cfg.seed)
    a.weight_basins = basins.describe_basins(a.weight_views[0].clustering, a.seeds, inputs,
                                             a.behavior.dominant_labels())


def _planted(a: RunAnalysis) -> list[str | None]:
    return [a.manifest["seeds"][str(k)].get("planted") for k in a.seeds]


def _planted_codes(a: RunAnalysis) -> list[int] | None:
    return basins.planted_codes(_planted(a))


def _paths(a: RunAnalysis) -> None:
    a.barrier_study.paths = barriers.representative_paths(
        a.behavior_clusters, a.distances, a.seeds, a.state_dicts, a.aligned, a.probe, a.settings.barriers.points,
        "aligned_repair" in a.barrier_study.matrices)


def _initialised(a: RunAnalysis) -> bool:
    """Every seed has its step-0 checkpoint (policies imported from elsewhere may not): the symmetry test
    compares each seed's first layers with their initialisation."""
    return all(0 in {e.step for e in a.run.seed(k).entries()} for k in a.seeds)


STAGES: list[Stage] = [
    Stage("behaviour", _behavior),
    Stage("behavioural basins", _behavior_basins),
    Stage("early detection", _early, "early", lambda a: bool(a.settings.early.detectors)),
    Stage("trajectory", _training_length, "trajectory", lambda a: a.settings.training_length.enabled),
    Stage("basin count", _basin_count, "basin_count", lambda a: a.settings.basin_count.enabled),
    Stage("init map", _init_map, "init_map", lambda a: a.cfg.seeds.init_plane is not None),
    Stage("seed factors", lambda a: _seed_factors(a.cfg, a.manifest, a.behavior, a.behavior_clusters.labels),
          "seed_factors", lambda a: a.cfg.seeds.grid is not None),
    Stage(None, _policies_and_probe),
    Stage("symmetry", lambda a: symmetry_of(a.run, a.cfg, a.seeds, a.state_dicts, a.behavior.steps), "symmetry",
          lambda a: a.step != 0 and has_symmetry_test(a.cfg) and _initialised(a)),
    Stage("alignment", _alignment),
    Stage("barriers", _barriers),
    Stage(None, _weight_basins),
    Stage("paths", _paths),
]
"""The analysis, in order (see the module docstring); ``basins.json`` and the tables are written after."""


def analyze_run(run: RunDir, step: int | None = None, show_progress: bool = True,
                settings: AnalysisConfig | None = None) -> AnalysisSummary:
    """Run every analysis stage on the finished seeds of ``run`` (at checkpoint ``step``, default the last),
    with the run's ``analysis`` settings or ``settings`` in their place."""
    manifest = run.manifest()  # first: names a directory that is not a run
    cfg = load_config(run.config_path)
    if settings is not None:
        cfg = cfg.model_copy(update={"analysis": settings})
    a = RunAnalysis(run, cfg, manifest, step, show_progress)
    for stage in STAGES:
        _run_stage(a, stage)
    a.barrier_study.save(run.analysis_dir / "connectivity.json")
    return _write_basins(a)


def _run_stage(a: RunAnalysis, stage: Stage) -> None:
    if stage.writes is not None:
        path = a.run.analysis_dir / f"{stage.writes}.json"
        if not stage.enabled(a):
            path.unlink(missing_ok=True)
            a.studies[stage.writes] = None
            return
    start = time.perf_counter()
    result = stage.run(a)
    if stage.name is not None:
        a.seconds[stage.name] = time.perf_counter() - start
    if stage.writes is not None:
        result.save(path)
        a.studies[stage.writes] = result


def _write_basins(a: RunAnalysis) -> AnalysisSummary:
    """``basins.json`` (both kinds of basins, their agreement, the planted truth's) and ``basins.csv``."""
    seeds, inputs = a.seeds, a.weight_views[0]
    planted = _planted(a)
    planted_ari = basins.planted_agreement(_planted_codes(a), a.behavior_clusters.labels, inputs.planted,
                                           a.cfg.seed)
    found = basins.BasinsResult(
        seeds, planted if planted_ari else None,
        basins.BehaviorBasins(BEHAVIOURAL_DISTANCES[a.settings.basins.distance or "actions"], a.behavior_clusters,
                              a.behavior_basins, a.stability, a.outliers),
        basins.WeightBasins(INPUT_WEIGHTS, inputs.clustering, a.weight_basins, a.weight_views),
        inputs.agreement, planted_ari, a.behavior.preference_greedy.verdict if a.behavior.preference_greedy else None,
        a.seconds)
    found.save(a.run.analysis_dir / "basins.json")
    _write_basin_table(a.run, seeds, a.behavior_clusters, inputs.clustering, planted, a.behavior)
    return AnalysisSummary(len(seeds), a.behavior_clusters.k, inputs.clustering.k, inputs.agreement, planted_ari,
                           found.preference_verdict, a.studies["early"], a.seconds, a.studies["trajectory"],
                           a.studies["basin_count"], a.studies["init_map"], a.studies["seed_factors"],
                           [o.seed for o in a.outliers.outliers], a.studies["symmetry"])


def _seed_factors(cfg: ExperimentConfig, manifest: dict[str, Any], behavior: BehaviorResult,
                  basin_labels: list[int]) -> SeedFactorStudy:
    """The seed-factor study of a grid run: each strategy's share of the greedy held-out episodes (when the env
    names strategies) and the greedy held-out return, the behavioural basins, and the total variation between
    the seeds' held-out action distributions."""
    outcomes = {f"share {name}": [f[name] for f in behavior.heldout_labels_greedy] for name in behavior.labels or []}
    outcomes["held-out return"] = behavior.heldout_return_greedy
    statuses = {int(k): entry["status"] for k, entry in manifest["seeds"].items()}
    return seed_factor_study(cfg.seeds.grid.init, cfg.seeds.grid.data, behavior.seeds, outcomes, basin_labels,
                             np.array(behavior.total_variation), statuses, seed=cfg.seed)


def _write_basin_table(run: RunDir, seeds, behavior_clusters, weights, planted, behavior: BehaviorResult) -> None:
    dominant = behavior.dominant_labels() or [""] * len(seeds)
    rows = ["seed,behaviour_basin,weight_basin,dominant_label,planted"]
    rows += [f"{k},{b},{w},{d},{p or ''}" for k, b, w, d, p in
             zip(seeds, behavior_clusters.labels, weights.labels, dominant, planted, strict=True)]
    atomic_write_bytes(run.analysis_dir / "basins.csv", ("\n".join(rows) + "\n").encode())


@dataclass
class RunResults:
    """The saved results of an analysed run, each None when its file is missing (not analysed, or not measured)."""

    basins: basins.BasinsResult | None
    barriers: barriers.BarrierStudy | None
    early: EarlyDetection | None
    training_length: BasinTrajectory | None
    basin_count: BasinCount | None
    init_map: InitMap | None
    seed_factors: SeedFactorStudy | None
    symmetry: SymmetryResult | None = None


RESULT_FILES: dict[str, tuple[str, type]] = {
    "basins": ("basins.json", basins.BasinsResult), "barriers": ("connectivity.json", barriers.BarrierStudy),
    "early": ("early.json", EarlyDetection), "training_length": ("trajectory.json", BasinTrajectory),
    "basin_count": ("basin_count.json", BasinCount), "init_map": ("init_map.json", InitMap),
    "seed_factors": ("seed_factors.json", SeedFactorStudy), "symmetry": ("symmetry.json", SymmetryResult)}
"""Each field of :class:`RunResults`: the file in ``analysis/`` that holds it, and its type."""


def load_results(run: RunDir) -> RunResults:
    """The results in ``run``'s ``analysis/`` (a file from an older rlbasins that lacks a field is refused
    by name, with the command that writes it again: :class:`~rlbasins.core.results.StaleResultError`)."""
    paths = {name: (run.analysis_dir / file, kind) for name, (file, kind) in RESULT_FILES.items()}
    return RunResults(**{name: kind.load(path) if path.exists() else None for name, (path, kind) in paths.items()})
