"""``rlbasins analyze``: the whole analysis of a run, from checkpoints to basins.

1. behaviour of every seed on held-out states (:mod:`~rlbasins.analysis.behavior`);
2. behavioural basins: clustering of the total-variation matrix, with stability under
   resampling of the held-out states;
3. Git Re-Basin alignment of all seeds into one unit order (:mod:`~rlbasins.analysis.align`);
4. barriers naive and aligned (and with REPAIR, for MLPs) between every pair of seeds (N ≤
   ``max_pairwise``) or from every seed to the behavioural basins' medoids
   (:mod:`~rlbasins.analysis.barriers`), plus full interpolation curves for representative
   pairs within and across basins;
5. weight-space basins from the aligned barrier matrix, their agreement with the behavioural
   basins (ARI with a bootstrap CI), and — for planted experiments — with the planted truth;
6. early detection: how well each seed's final behavioural basin (or, with one basin, its dominant
   held-out strategy) is predicted from its earlier checkpoints (:mod:`~rlbasins.analysis.early`);
7. training length: every seed's nearest final basin at every checkpoint, basin shares, transitions
   and last switches (:mod:`~rlbasins.analysis.training_length`);
8. basin count: rarefaction over seed subsets, unseen basins (Chao1) and the count across clustering
   resolutions (:mod:`~rlbasins.analysis.basin_count`);
9. init-space map (runs with ``seeds.init_plane``): each grid point's basin and held-out outcome as
   images, and the box-counting dimension of the basin boundary (:mod:`~rlbasins.analysis.init_map`);
10. seed factors (runs with ``seeds.grid``): the shares of the held-out outcomes and of the basins due to
    the init and to the data stream (:mod:`~rlbasins.analysis.seed_factors`).

Writes ``analysis/behavior.json``, ``seeds.csv``, ``connectivity.json``, ``basins.json``,
``basins.csv``, ``early.json``, ``trajectory.json``, ``basin_count.json``, ``init_map.json`` and
``seed_factors.json`` in the run directory.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from envs.suites import get_suite
from rlbasins.analysis import align, barriers, basins
from rlbasins.analysis.basin_count import BasinCount, basin_count
from rlbasins.analysis.behavior import BehaviorResult, analyze_behavior, total_variation_matrix
from rlbasins.analysis.early import EarlyDetection, choose_target, early_detection
from rlbasins.analysis.init_map import InitMap, init_map
from rlbasins.analysis.seed_factors import SeedFactorStudy, seed_factor_study
from rlbasins.analysis.training_length import BasinTrajectory, basin_trajectory
from rlbasins.core.checkpoints import load_policies
from rlbasins.core.config import AnalysisConfig, ExperimentConfig, load_config
from rlbasins.core.devices import resolve_device
from rlbasins.core.heldout import evaluation_sample, fingerprint_inputs
from rlbasins.core.progress import task_progress
from rlbasins.core.seeding import factor_seed
from rlbasins.core.store import RunDir, atomic_write_bytes, atomic_write_json, read_json


@dataclass
class AnalysisSummary:
    """What ``rlbasins analyze`` prints at the end."""

    n_seeds: int
    behaviour_k: int
    weight_k: int | None
    agreement_ari: float | None
    planted_ari: dict[str, float] | None
    verdict: str | None
    early: EarlyDetection | None
    seconds: dict[str, float]
    """Wall-clock seconds per stage."""
    trajectory: BasinTrajectory | None = None
    basin_count: BasinCount | None = None
    init_map: InitMap | None = None
    seed_factors: SeedFactorStudy | None = None


@contextmanager
def _timed(seconds: dict[str, float], stage: str):
    start = time.perf_counter()
    yield
    seconds[stage] = time.perf_counter() - start


def analyze_run(run: RunDir, step: int | None = None, show_progress: bool = True,
                settings: AnalysisConfig | None = None) -> AnalysisSummary:
    """Run every analysis stage on the finished seeds of ``run`` (at checkpoint ``step``, default the last),
    with the run's ``analysis`` settings or ``settings`` in their place."""
    manifest = run.manifest()  # first: names a directory that is not a run
    cfg = load_config(run.config_path)
    if settings is not None:
        cfg = cfg.model_copy(update={"analysis": settings})
    settings = cfg.analysis
    seconds: dict[str, float] = {}
    with _timed(seconds, "behaviour"):
        behavior = analyze_behavior(run, step=step, show_progress=show_progress, settings=settings)
        heldout_obs, noise_obs = fingerprint_inputs(cfg, evaluation_sample(cfg))
    seeds = behavior.seeds

    # ---- behavioural basins
    tv = np.array(behavior.total_variation)
    with _timed(seconds, "behavioural basins"):
        behavior_clusters = basins.CLUSTERERS[settings.basins.method](tv, max_k=settings.basins.max_k)
        probs = torch.as_tensor(np.load(run.analysis_dir / "heldout_probs.npy", allow_pickle=False))
        stable = basins.stability(lambda idx: total_variation_matrix(probs[:, idx]).numpy(), behavior_clusters,
                                  probs.shape[1], resamples=settings.basins.resamples, seed=cfg.seed)
    seed_labels = behavior.dominant_labels()
    behavior_basins = basins.describe_basins(behavior_clusters, seeds, tv, seed_labels)

    # ---- the studies that need only the behaviour, each optional: early detection, training length
    # (basins tracked back through every checkpoint), basin count, init-space map, seed factors
    def study(name: str, stage: str, enabled: bool, compute: Callable[[], Any]) -> Any:
        return _study_stage(run, seconds, name, stage, compute if enabled else None)

    final_step = min(behavior.steps)
    target = choose_target(settings.early.target, behavior_clusters.labels, behavior.preferred_strategies())
    early = study("early", "early detection", bool(settings.early.detectors), lambda: early_detection(
        run, seeds, final_step, *target, tv, heldout_obs, noise_obs, settings.early, seed=cfg.seed,
        show_progress=show_progress))
    trajectory = study("trajectory", "trajectory", settings.training_length.enabled, lambda: basin_trajectory(
        run, seeds, final_step, behavior_clusters.labels, heldout_obs, settings.training_length,
        settings.basins.method, settings.basins.max_k, seed=cfg.seed, show_progress=show_progress))
    counted = study("basin_count", "basin count", settings.basin_count.enabled, lambda: basin_count(
        seeds, tv, behavior_clusters, settings.basin_count, settings.basins.max_k,
        lambda idx: total_variation_matrix(probs[:, idx]).numpy(), probs.shape[1], seed=cfg.seed))
    mapped = study("init_map", "init map", cfg.seeds.init_plane is not None, lambda: init_map(
        cfg.seeds.init_plane, seeds, behavior_clusters.labels, behavior_basins, behavior, seed=cfg.seed))
    factors = study("seed_factors", "seed factors", cfg.seeds.grid is not None, lambda: _seed_factors(
        cfg, manifest, behavior, behavior_clusters.labels))

    # ---- alignment and barriers
    template, state_dicts, _ = load_policies(run, seeds, step)
    device = resolve_device(cfg.device)
    suite = get_suite(cfg.env.id)
    conn = settings.barriers
    probe = barriers.make_probe(template, cfg.env.id, cfg.env.kwargs, conn.episodes, conn.n_states,
                                    seed=factor_seed(cfg.seed, "connectivity", 0), device=device, suite=suite)
    with _timed(seconds, "alignment"):
        aligned = _align(cfg, template, state_dicts, heldout_obs, show_progress)
    pairwise = len(seeds) <= conn.max_pairwise
    if pairwise:
        pairs = list(itertools.combinations(range(len(seeds)), 2))
    else:  # every seed to the behavioural medoids
        anchors = basins.medoids(tv, behavior_clusters.labels)
        pairs = [(m, i) for m in anchors for i in range(len(seeds)) if i != m]
    metric = conn.barrier_metric if conn.barrier_metric != "auto" else probe.metrics[-1]
    if metric not in probe.metrics:
        raise ValueError(f"analysis.barriers.barrier_metric {metric!r} is not measured for {cfg.env.id} "
                         f"(available: {', '.join(probe.metrics)})")
    # Every barrier for the aligned policies (they define the weight-space basins); the naive and
    # REPAIR comparisons on the loss (no rollouts) where the env has an expert, else on ``metric``.
    comparison = ["loss"] if "loss" in probe.metrics else [metric]
    variants = {"naive": (state_dicts, False, comparison), "aligned": (aligned, False, probe.metrics)}
    repair_skipped = barriers.repair_unsupported(template) if conn.repair else None
    with_repair = conn.repair and repair_skipped is None
    if with_repair:
        variants["aligned_repair"] = (aligned, True, comparison)
    matrices: dict[str, dict[str, np.ndarray]] = {}
    with _timed(seconds, "barriers"), \
            task_progress("interpolation barriers", len(pairs) * len(variants), enabled=show_progress) as advance:
        for name, (models, repair_units, metrics) in variants.items():
            values = barriers.barrier_matrix(models, probe, pairs, conn.points, repair_units, metrics,
                                                 on_progress=advance)
            matrices[name] = {m: _to_matrix(v, pairs, len(seeds), pairwise) for m, v in values.items()}

    # ---- weight-space basins
    barrier = matrices["aligned"][metric]
    if pairwise:
        weight_clusters = basins.CLUSTERERS[settings.basins.method](barrier, max_k=settings.basins.max_k)
        weight_basins = basins.describe_basins(weight_clusters, seeds, barrier, seed_labels)
    else:  # nearest medoid by barrier
        nearest = barrier[:, anchors].argmin(1)
        weight_clusters = basins.Clustering("nearest medoid", len(anchors), nearest.tolist(), "behavioural medoids",
                                            [])
        weight_basins = None
    agreement = basins.ari_with_ci(behavior_clusters.labels, weight_clusters.labels, seed=cfg.seed)
    planted = [manifest["seeds"][str(k)].get("planted") for k in seeds]
    planted_ari = None
    if all(label is not None for label in planted):
        codes = [sorted(set(planted)).index(label) for label in planted]
        planted_ari = {"behaviour": basins.ari_with_ci(codes, behavior_clusters.labels, seed=cfg.seed),
                       "weights": basins.ari_with_ci(codes, weight_clusters.labels, seed=cfg.seed)}

    # ---- representative paths
    with _timed(seconds, "paths"):
        paths = _representative_paths(behavior_clusters, tv, seeds, state_dicts, aligned, probe, conn.points,
                                      with_repair)

    connectivity_out = {
        "mode": "pairwise" if pairwise else "to behavioural medoids", "points": conn.points,
        "episodes": conn.episodes, "n_states": conn.n_states, "metrics": list(probe.metrics),
        "barrier_metric": metric, "align": {"method": settings.align.method, "reference": settings.align.reference},
        "seeds": seeds, "matrices": {name: {m: v.tolist() for m, v in ms.items()} for name, ms in matrices.items()},
        "summary": {name: {m: _off_diagonal_summary(v, pairwise) for m, v in ms.items()}
                    for name, ms in matrices.items()},
        "paths": paths, "repair_skipped": repair_skipped,
    }
    atomic_write_json(run.analysis_dir / "connectivity.json", connectivity_out)
    basins_out = {
        "seeds": seeds, "planted": planted if planted_ari else None,
        "behaviour": {"distance": "total variation on held-out states", "clustering": asdict(behavior_clusters),
                      "basins": [asdict(b) for b in behavior_basins], "stability": stable},
        "weights": {"distance": f"aligned {metric} barrier", "clustering": asdict(weight_clusters),
                    "basins": [asdict(b) for b in weight_basins] if weight_basins else None},
        "agreement": agreement, "planted_ari": planted_ari,
        "preference_verdict": behavior.preference_greedy.verdict if behavior.preference_greedy else None,
        "seconds": seconds,
    }
    atomic_write_json(run.analysis_dir / "basins.json", basins_out)
    _write_basin_table(run, seeds, behavior_clusters, weight_clusters, planted, behavior)
    return AnalysisSummary(len(seeds), behavior_clusters.k, weight_clusters.k, agreement["ari"],
                           {k: v["ari"] for k, v in planted_ari.items()} if planted_ari else None,
                           basins_out["preference_verdict"], early, seconds, trajectory, counted, mapped, factors)


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


def _study_stage(run: RunDir, seconds: dict[str, float], name: str, stage: str,
                 compute: Callable[[], Any] | None) -> Any:
    """An optional study: ``compute()`` timed as ``stage`` and written to ``analysis/<name>.json``; None
    (the study is off for this run) removes that file, so a report never shows an earlier analysis's study."""
    path = run.analysis_dir / f"{name}.json"
    if compute is None:
        path.unlink(missing_ok=True)
        return None
    with _timed(seconds, stage):
        result = compute()
    atomic_write_json(path, asdict(result))
    return result


def _align(cfg: ExperimentConfig, template, state_dicts, heldout_obs: torch.Tensor, show_progress: bool):
    """All seeds in one unit order (Git Re-Basin), by weight or by activation matching (on the
    held-out observations [N, ...])."""
    settings = cfg.analysis.align
    reference = "mean" if settings.reference == "mean" else 0
    rounds = settings.rounds if reference == "mean" else 1
    match = None
    if settings.method == "activation":
        obs = heldout_obs.float()
        spec = align.infer_spec(state_dicts[0])
        target_module, other_module = template.fresh_copy(), template.fresh_copy()

        def match(target, other):
            target_module.load_state_dict({k: v.float() for k, v in target.items()})
            other_module.load_state_dict(other)
            return align.activation_matching(target_module, other_module, obs, spec)

    with task_progress("Git Re-Basin alignment", len(state_dicts) * rounds, enabled=show_progress) as advance:
        return align.align_many(state_dicts, reference=reference, rounds=rounds, seed=cfg.seed,
                                on_progress=advance, match=match)


def _to_matrix(values: np.ndarray, pairs, n: int, pairwise: bool) -> np.ndarray:
    """Pair barriers → [n, n] (pairwise) or [n, n] with only the medoid columns/rows filled (NaN elsewhere)."""
    if pairwise:
        return barriers.as_square(values, pairs, n)
    square = np.full((n, n), np.nan)
    np.fill_diagonal(square, 0.0)
    for value, (m, i) in zip(values, pairs, strict=True):
        square[i, m] = square[m, i] = value
    return square


def _off_diagonal_summary(matrix: np.ndarray, pairwise: bool) -> dict[str, float]:
    values = matrix[~np.eye(len(matrix), dtype=bool)]
    values = values[np.isfinite(values)]
    return {"mean": float(values.mean()), "median": float(np.median(values)), "max": float(values.max())} \
        if values.size else {}


def _representative_paths(clusters: basins.Clustering, tv: np.ndarray, seeds: list[int], state_dicts, aligned,
                          probe: barriers.PathProbe, points: int, with_repair: bool) -> list[dict[str, Any]]:
    """Full curves (naive, aligned, aligned + REPAIR) for: the two most central seeds of each of the two
    largest basins (within), and the two largest basins' medoids (across)."""
    labels = np.asarray(clusters.labels)
    chosen: list[tuple[str, int, int]] = []
    for c in range(min(2, clusters.k)):
        members = np.flatnonzero(labels == c)
        if len(members) >= 2:
            central = members[np.argsort(tv[np.ix_(members, members)].sum(1), kind="stable")[:2]]
            chosen.append((f"within basin {c}", int(central[0]), int(central[1])))
    if clusters.k >= 2:
        centre = basins.medoids(tv, clusters.labels)
        chosen.append(("across basins 0 and 1", centre[0], centre[1]))
    paths = []
    for kind, i, j in chosen:
        curves = {"naive": barriers.path_curves(state_dicts[i], state_dicts[j], probe, points),
                  "aligned": barriers.path_curves(aligned[i], aligned[j], probe, points)}
        if with_repair:
            curves["aligned_repair"] = barriers.path_curves(aligned[i], aligned[j], probe, points,
                                                                repair_units=True)
        paths.append({"kind": kind, "seed_a": seeds[i], "seed_b": seeds[j],
                      "curves": {name: asdict(c) for name, c in curves.items()}})
    return paths


def _write_basin_table(run: RunDir, seeds, behavior_clusters, weights, planted, behavior: BehaviorResult) -> None:
    dominant = behavior.dominant_labels() or [""] * len(seeds)
    rows = ["seed,behaviour_basin,weight_basin,dominant_label,planted"]
    rows += [f"{k},{b},{w},{d},{p or ''}" for k, b, w, d, p in
             zip(seeds, behavior_clusters.labels, weights.labels, dominant, planted, strict=True)]
    atomic_write_bytes(run.analysis_dir / "basins.csv", ("\n".join(rows) + "\n").encode())


def load_results(run: RunDir) -> dict[str, Any]:
    """``basins.json``, ``connectivity.json``, ``early.json``, ``trajectory.json``, ``basin_count.json``,
    ``init_map.json`` and ``seed_factors.json`` of an analysed run (empty dict for a missing file)."""
    names = ("basins", "connectivity", "early", "trajectory", "basin_count", "init_map", "seed_factors")
    return {name: read_json(run.analysis_dir / f"{name}.json") if (run.analysis_dir / f"{name}.json").exists()
            else {} for name in names}
