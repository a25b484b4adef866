"""The HTML report of a run: one self-contained file (figures inline), readable offline."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import gymnasium as gym
import numpy as np
from jinja2 import Environment, PackageLoader, select_autoescape

from rlbasins.analysis.behavior import BehaviorResult, mean_to_others
from rlbasins.analysis.pipeline import load_results
from rlbasins.config import dump_config
from rlbasins.logs import seed_curves
from rlbasins.report import figures
from rlbasins.store import RunDir, atomic_write_bytes

METRIC_UNITS = {"loss": "nats", "train_return": "return", "heldout_decided": "share of episodes"}
METRIC_NAMES = {"loss": "expert loss", "train_return": "training return", "heldout_decided": "held-out commitment"}
VARIANTS = ("naive", "aligned", "aligned_repair")
VARIANT_NAMES = {"naive": "naive", "aligned": "aligned", "aligned_repair": "aligned + REPAIR"}


def _barrier_panels(conn: dict) -> list[tuple[str, np.ndarray, str]]:
    """Every variant on the metric they share, then the aligned basin-defining metric if it differs."""
    shared = next(m for m in conn["matrices"]["naive"])
    panels = [(f"{VARIANT_NAMES[v]}: {METRIC_NAMES[shared]}", np.array(conn["matrices"][v][shared], dtype=float),
               METRIC_UNITS[shared]) for v in VARIANTS if v in conn["matrices"]]
    metric = conn["barrier_metric"]
    if metric != shared:
        panels.append((f"aligned: {METRIC_NAMES[metric]}", np.array(conn["matrices"]["aligned"][metric], dtype=float),
                       METRIC_UNITS[metric]))
    return panels


def write_report(run: RunDir) -> Path:
    """Render ``report.html`` from the run's manifest, TensorBoard logs and ``analysis/``."""
    manifest = run.manifest()  # first: names a directory that is not a run
    cfg = run.load_config()
    behavior_path = run.analysis_dir / "behavior.json"
    if not behavior_path.exists():
        raise FileNotFoundError(f"{behavior_path} is missing; run `rlbasins analyze {run.root}` first")
    behavior = BehaviorResult.load(behavior_path)
    seeds = behavior.seeds
    steps, returns = seed_curves(run.tb_dir, seeds)
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
    found, conn = results["basins"], results["connectivity"]
    order = list(range(len(seeds)))
    if found:  # seeds grouped by behavioural basin in every seed-by-seed figure
        order = sorted(order, key=lambda i: (found["behaviour"]["clustering"]["labels"][i], i))
    ordered = [seeds[i] for i in order]
    if conn:  # JSON objects come back with sorted keys: put the variants in reading order
        conn["summary"] = {name: conn["summary"][name] for name in VARIANTS if name in conn["summary"]}
        for path in conn["paths"]:
            path["curves"] = {name: path["curves"][name] for name in VARIANTS if name in path["curves"]}
    off_diagonal = tv[~np.eye(len(seeds), dtype=bool)]
    html = _template().render(
        cfg=cfg, manifest=manifest, config_yaml=dump_config(cfg), rows=rows, behavior=behavior,
        not_finished=not_finished, generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        summary=dict(n=len(seeds), train_mean=float(np.mean(behavior.train_return)),
                     solved=sum(r >= threshold for r in behavior.train_return) if threshold else None,
                     threshold=threshold, tv_mean=float(off_diagonal.mean()) if off_diagonal.size else 0.0,
                     tv_max=float(off_diagonal.max()) if off_diagonal.size else 0.0),
        fig_curves=figures.learning_curves(steps, returns, seeds),
        fig_returns=figures.seed_returns(seeds, {
            "training starts (greedy)": behavior.train_return,
            "held-out starts (greedy)": behavior.heldout_return_greedy,
            "held-out starts (sampled)": behavior.heldout_return_sampled}, threshold),
        fig_tv=figures.seed_matrix(tv[np.ix_(order, order)], ordered, "Behavioural divergence on held-out states"
                                   + (" (seeds by basin)" if found else ""),
                                   "mean total variation between action distributions"),
        labels=labels,
        fig_strategies=figures.strategy_fractions(seeds, behavior.heldout_labels_greedy, labels) if labels else None,
        fig_agreement=figures.seed_matrix(agreement[np.ix_(order, order)], ordered,
                                          "Greedy-action agreement on held-out states",
                                          "fraction of held-out states with the same greedy action"),
        found=found, conn=conn, metric_unit=METRIC_UNITS.get(conn.get("barrier_metric"), ""),
        metric_names=METRIC_NAMES,
        fig_barriers=figures.barrier_matrices(_barrier_panels(conn), seeds, order) if conn else None,
        fig_paths=figures.interpolation_paths(conn["paths"], conn["barrier_metric"],
                                              METRIC_UNITS[conn["barrier_metric"]], behavior.labels)
        if conn and conn["paths"] else None,
    )
    atomic_write_bytes(run.report_path, html.encode())
    return run.report_path


def _template():
    env = Environment(loader=PackageLoader("rlbasins.report", "templates"), autoescape=select_autoescape())
    return env.get_template("report.html.j2")
