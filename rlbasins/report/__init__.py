"""The HTML report of a run: one self-contained file (figures inline), readable offline."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from jinja2 import Environment, PackageLoader, Template

import envs
from rlbasins.analysis import weight_space
from rlbasins.analysis.barriers import METRIC_NAMES, BarrierStudy
from rlbasins.analysis.basin_count import BasinCount
from rlbasins.analysis.basins import BasinsResult, medoids
from rlbasins.analysis.behavior import BehaviorResult, mean_to_others
from rlbasins.analysis.init_map import InitMap
from rlbasins.analysis.pipeline import load_results
from rlbasins.analysis.seed_factors import SeedFactorStudy
from rlbasins.analysis.training_length import BasinTrajectory
from rlbasins.core.config import dump_config, load_config
from rlbasins.core.heldout import evaluation_sample
from rlbasins.core.logs import TRUE_RETURN_TAG, seed_curves
from rlbasins.core.plotting import action_names
from rlbasins.core.store import RunDir, atomic_write_bytes
from rlbasins.report import figures

METRIC_UNITS = {"loss": "nats", "train_return": "return", "heldout_decided": "share of episodes"}
VARIANTS = ("naive", "aligned", "aligned_repair")
VARIANT_NAMES = {"naive": "naive", **weight_space.VARIANT_NAMES}


def _barrier_panels(conn: BarrierStudy) -> list[tuple[str, np.ndarray, str]]:
    """Every variant on the naive comparison's metric, then the aligned ones on the plotted metric if it differs."""
    shared = next(m for m in conn.matrices["naive"])
    panels = [(f"{VARIANT_NAMES[v]}: {METRIC_NAMES[shared]}", conn.matrix(v, shared), METRIC_UNITS[shared])
              for v in VARIANTS if v in conn.matrices]
    metric = conn.barrier_metric
    if metric != shared:
        panels += [(f"{VARIANT_NAMES[v]}: {METRIC_NAMES[metric]}", conn.matrix(v, metric), METRIC_UNITS[metric])
                   for v in VARIANTS[1:] if metric in conn.matrices.get(v, {})]
    return panels


def write_report(run: RunDir, steering: Any = None, diversity: Any = None) -> Path:
    """Render ``report.html`` from the run's manifest, TensorBoard logs and ``analysis/``; ``steering`` and
    ``diversity``: the results of those studies (:func:`rlbasins.studies.steering.load`,
    :func:`rlbasins.studies.diversity.load`), drawn when given (the CLI passes them)."""
    manifest = run.manifest()  # first: names a directory that is not a run
    cfg = load_config(run.config_path)
    behavior_path = run.analysis_dir / "behavior.json"
    if not behavior_path.exists():
        raise FileNotFoundError(f"{behavior_path} is missing; run `rlbasins analyze {run.root}` first")
    behavior = BehaviorResult.load(behavior_path)
    seeds = behavior.seeds
    imported = manifest.get("imported")  # trained elsewhere (rlbasins.train.interop): no training logs
    tv = np.array(behavior.total_variation)
    agreement = np.array(behavior.argmax_agreement)
    threshold = gym.spec(cfg.env.id).reward_threshold
    mean_tv = mean_to_others(tv).tolist()
    labels = behavior.labels
    rows = [dict(seed=k, step=behavior.steps[i], factor_seeds=manifest["seeds"][str(k)]["factor_seeds"],
                 strategy=behavior.heldout_labels_greedy[i] if labels else None,
                 train=behavior.train_return[i], greedy=behavior.heldout_return_greedy[i],
                 greedy_std=behavior.heldout_return_greedy_std[i], sampled=behavior.heldout_return_sampled[i],
                 mean_tv=mean_tv[i]) for i, k in enumerate(seeds)]
    not_finished = {k: s for k, s in manifest["seeds"].items() if s["status"] != "finished"}
    results = load_results(run)
    found, conn, early = results.basins, results.barriers, results.early
    trajectory, counted = results.training_length, results.basin_count
    basin_labels = found.behavior.clustering.labels if found else None
    order = list(range(len(seeds)))
    if found:  # seeds grouped by behavioural basin in every seed-by-seed figure
        order = sorted(order, key=lambda i: (basin_labels[i], i))
    ordered = [seeds[i] for i in order]
    if conn:  # JSON objects come back with sorted keys: put the variants in reading order
        conn.summary = {name: conn.summary[name] for name in VARIANTS if name in conn.summary}
        for path in conn.paths:
            path.curves = {name: path.curves[name] for name in VARIANTS if name in path.curves}
    off_diagonal = tv[~np.eye(len(seeds), dtype=bool)]
    basin_names = found.basin_names() if found else []
    for i, row in enumerate(rows):
        row["basin"] = basin_names[basin_labels[i]] if found else None
    rows = [rows[i] for i in order]  # the table grouped by basin, as the figures
    # many seeds: each behavioural basin's medoid stands for it in the training curves
    highlight = {f"{name}: medoid, seed {seeds[i]}": i
                 for name, i in zip(basin_names, medoids(tv, basin_labels), strict=True)} if found else None
    html = template("report.html.j2").render(
        cfg=cfg, manifest=manifest, config_yaml=dump_config(cfg), rows=rows, behavior=behavior,
        not_finished=not_finished, generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        summary=dict(n=len(seeds), train_mean=float(np.mean(behavior.train_return)),
                     solved=sum(r >= threshold for r in behavior.train_return) if threshold else None,
                     threshold=threshold, tv_mean=float(off_diagonal.mean()) if off_diagonal.size else 0.0,
                     tv_max=float(off_diagonal.max()) if off_diagonal.size else 0.0),
        imported=imported,
        fig_curves=None if imported else figures.learning_curves(
            *seed_curves(run.tb_dir, seeds), seeds, highlight=highlight,
            title="Training return per seed" + (" (the learned reward PPO trains on)" if cfg.reward_model else "")),
        fig_true_curves=figures.learning_curves(*seed_curves(run.tb_dir, seeds, TRUE_RETURN_TAG), seeds,
                                                highlight=highlight,
                                                title="True return per seed (the env's reward, not seen by PPO)")
        if cfg.reward_model else None,
        fig_returns=figures.seed_returns(seeds, {
            "training starts (greedy)": behavior.train_return,
            "held-out starts (greedy)": behavior.heldout_return_greedy,
            "held-out starts (sampled)": behavior.heldout_return_sampled}, threshold),
        fig_tv=figures.divergence_dendrogram(tv, seeds, basin_labels),
        fig_embedding=figures.seed_embedding(tv, seeds, basin_labels, found.weights.clustering.labels, basin_names)
        if found and len(seeds) >= 2 else None,
        fig_basin_states=_basin_states_figure(run, cfg, found, basin_names) if found else None,
        fig_frames=_frames_figure(cfg),
        labels=labels,
        fig_strategies=figures.strategy_fractions(seeds, behavior.heldout_labels_greedy, labels) if labels else None,
        fig_agreement=figures.seed_matrix(agreement[np.ix_(order, order)], ordered,
                                          "Greedy-action agreement on held-out states",
                                          "fraction of held-out states with the same greedy action"),
        early=early, fig_early=figures.early_detection(early) if early and not early.skipped else None,
        **_steering_context(steering),
        diversity=diversity, fig_diversity=figures.diversity(diversity) if diversity else None,
        trajectory=trajectory, **_trajectory_figures(trajectory, basin_names),
        counted=counted, **_basin_count_figures(counted),
        mapped=results.init_map, **_init_map_figures(results.init_map),
        seed_factors=results.seed_factors, **_seed_factor_figures(results.seed_factors),
        symmetry=results.symmetry,
        found=found, conn=conn, metric_unit=METRIC_UNITS[conn.barrier_metric] if conn else "",
        metric_names=METRIC_NAMES,
        fig_barriers=figures.barrier_matrices(_barrier_panels(conn), seeds, order) if conn else None,
        fig_paths=figures.interpolation_paths(conn.paths, conn.barrier_metric, METRIC_UNITS[conn.barrier_metric],
                                              behavior.labels)
        if conn and conn.paths else None,
    )
    atomic_write_bytes(run.report_path, html.encode())
    return run.report_path


def _steering_context(steering: Any) -> dict:
    """The steering study (``analysis/steering.json``, written by ``rlbasins steer``) and its figure."""
    return dict(steering=steering, fig_steering=figures.steering(steering) if steering else None)


def _trajectory_figures(trajectory: BasinTrajectory | None, names: list[str]) -> dict[str, str | None]:
    """The training-length study's figures (None each when it was not measured)."""
    if not trajectory or not trajectory.steps:
        return dict(fig_drift=None, fig_shares=None, fig_transitions=None, fig_switches=None)
    if trajectory.skipped:
        return dict(fig_drift=figures.behavior_drift(trajectory), fig_shares=None, fig_transitions=None,
                    fig_switches=None)
    names = names if len(names) == trajectory.n_basins else [f"basin {b}" for b in range(trajectory.n_basins)]
    return dict(fig_drift=figures.behavior_drift(trajectory), fig_shares=figures.basin_shares(trajectory, names),
                fig_transitions=figures.transition_matrices(trajectory, names),
                fig_switches=figures.last_switches(trajectory, names))


def _basin_count_figures(counted: BasinCount | None) -> dict[str, str | None]:
    """The basin-count study's figures (None each when it was not measured)."""
    if not counted or counted.skipped:
        return dict(fig_rarefaction=None, fig_resolution=None)
    return dict(fig_rarefaction=figures.rarefaction_curve(counted), fig_resolution=figures.resolution_curve(counted))


def _init_map_figures(mapped: InitMap | None) -> dict[str, str | None]:
    """The init-space map's figures (None each when the run has no init plane)."""
    if not mapped:
        return dict(fig_init_maps=None, fig_box_counting=None)
    return dict(fig_init_maps=figures.init_maps(mapped), fig_box_counting=figures.box_counting(mapped))


def _seed_factor_figures(study: SeedFactorStudy | None) -> dict[str, str | None]:
    """The seed-factor study's figure (None when it was not measured)."""
    return dict(fig_seed_factors=figures.seed_factor_grid(study) if study and not study.skipped else None)


def study_figures(run: RunDir) -> dict[str, str]:
    """The training-length, basin-count, init-map and seed-factor figures of an analysed run as PNG data
    URIs, by name (e.g. to save them for the docs); the studies that were not measured are left out."""
    results = load_results(run)
    names = results.basins.basin_names() if results.basins else []
    made = {**_trajectory_figures(results.training_length, names), **_basin_count_figures(results.basin_count),
            **_init_map_figures(results.init_map), **_seed_factor_figures(results.seed_factors)}
    return {name: uri for name, uri in made.items() if uri is not None}


def _frames_figure(cfg) -> str | None:
    """A training and a held-out start state of a gridworld, drawn (None for other envs)."""
    if cfg.env.id not in envs.GRID_ENVS:
        return None
    core_class = envs.GRID_ENVS[cfg.env.id]
    core = core_class(num_envs=1, **cfg.env.kwargs)
    return figures.env_frames({"a training state": core.render(0, core_class.training_states(1, 0, core.size)),
                               "a held-out state": core.render(0, core_class.heldout_states(1, 0, core.size,
                                                                                        **core.heldout_options))})


def _basin_states_figure(run: RunDir, cfg, found: BasinsResult, names: list[str], count: int = 4) -> str | None:
    """The held-out states where the behavioural basins' mean action distributions differ most (largest
    total variation between any two basins), drawn, with each basin's distribution."""
    labels = np.asarray(found.behavior.clustering.labels)
    if labels.max() < 1 or cfg.env.id not in envs.GRID_ENVS:
        return None
    probs = np.load(run.analysis_dir / "heldout_probs.npy", allow_pickle=False)            # [S, N, A]
    basin_probs = np.stack([probs[labels == b].mean(0) for b in range(labels.max() + 1)], axis=1)  # [N, B, A]
    gaps = 0.5 * np.abs(basin_probs[:, :, None] - basin_probs[:, None]).sum(-1).max(axis=(1, 2))   # [N]
    top = np.argsort(-gaps, kind="stable")[:count]
    states = evaluation_sample(cfg).states
    core = envs.GRID_ENVS[cfg.env.id](num_envs=len(states), **cfg.env.kwargs)
    n_actions = probs.shape[-1]
    return figures.basin_disagreement([core.render(int(i), states) for i in top], basin_probs[top], names,
                                      action_names(n_actions))


def template(name: str) -> Template:
    """The report template ``name`` (e.g. ``report.html.j2``), with every ``{{ value }}`` HTML-escaped: seed
    error strings, config text and run names come from users and files, and must show as text.
    (``select_autoescape()`` matches file names ending in ``.html``, not ``.html.j2``, so it is not used.)"""
    return Environment(loader=PackageLoader("rlbasins.report", "templates"), autoescape=True).get_template(name)
