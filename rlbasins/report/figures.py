"""Report figures (matplotlib, rendered to inline PNG). Colour-blind-safe: Okabe–Ito lines, viridis maps."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from rliable.library import get_interval_estimates  # noqa: E402
from rliable.metrics import aggregate_iqm  # noqa: E402

from rlbasins.analysis.barriers import InterpolationPath  # noqa: E402
from rlbasins.analysis.basin_count import BasinCount  # noqa: E402
from rlbasins.analysis.early import EarlyDetection  # noqa: E402
from rlbasins.analysis.init_map import InitMap  # noqa: E402
from rlbasins.analysis.seed_factors import SeedFactorStudy  # noqa: E402
from rlbasins.analysis.training_length import BasinTrajectory  # noqa: E402
from rlbasins.core.plotting import OKABE_ITO, states_with_actions, to_data_uri  # noqa: E402
from rlbasins.core.stats import average_linkage  # noqa: E402

LEGEND_SEEDS = 16
"""Up to this many seeds a figure gives each seed its own line and legend entry; beyond, a band across seeds
and the highlighted seeds only (a legend of 256 entries covers the plot it explains)."""


def learning_curves(steps: np.ndarray, returns: np.ndarray, seeds: list[int], max_points: int = 40,
                    bootstrap_reps: int = 500, title: str = "Training return per seed",
                    highlight: dict[str, int] | None = None) -> str:
    """returns [S, T] training-episode return per seed: the IQM with a 95% stratified-bootstrap CI band
    computed at up to ``max_points`` steps and the mean; up to :data:`LEGEND_SEEDS` seeds a thin line per
    seed, beyond that the 10–90% band across seeds and the curves of ``highlight`` {label: row of returns}
    (the report passes each basin's medoid)."""
    fig, ax = plt.subplots(figsize=(8, 4.2))
    if len(seeds) <= LEGEND_SEEDS:
        for i, k in enumerate(seeds):
            ax.plot(steps, returns[i], lw=0.8, alpha=0.55, color=OKABE_ITO[i % len(OKABE_ITO)], label=f"seed {k}")
    else:
        low, high = np.percentile(returns, [10, 90], axis=0)
        ax.fill_between(steps, low, high, color=OKABE_ITO[5], alpha=0.25, lw=0,
                        label=f"10–90% of {len(seeds)} seeds")
        for j, (label, i) in enumerate((highlight or {}).items()):
            ax.plot(steps, returns[i], lw=1.2, color=OKABE_ITO[j % len(OKABE_ITO)], label=label)
    picked = np.unique(np.linspace(0, len(steps) - 1, min(max_points, len(steps))).astype(int))
    scores = {int(t): returns[:, t:t + 1] for t in picked}  # rliable: [runs, tasks] per step
    point, interval = get_interval_estimates(scores, lambda x: np.array([aggregate_iqm(x)]), reps=bootstrap_reps)
    iqm = np.array([point[int(t)][0] for t in picked])
    low, high = np.array([interval[int(t)][:, 0] for t in picked]).T
    ax.fill_between(steps[picked], low, high, color="black", alpha=0.15, label="IQM 95% CI")
    ax.plot(steps[picked], iqm, color="black", lw=2, label="IQM over seeds")
    ax.plot(steps, returns.mean(0), color="black", lw=1.2, ls="--", label="mean over seeds")
    ax.set(title=title, xlabel="environment steps per seed",
           ylabel="mean episode return (last 100 episodes)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2 if len(seeds) <= LEGEND_SEEDS else 1, loc="lower right")
    return to_data_uri(fig)


def _seed_ticks(seeds: list[int], order: list[int] | None = None, most: int = 32) -> tuple[list[int], list[str]]:
    """Tick positions and labels for a seed axis: every seed up to ``most``, else about ``most // 2`` of them."""
    order = list(range(len(seeds))) if order is None else order
    positions = list(range(len(order))) if len(order) <= most else list(range(0, len(order),
                                                                             -(-len(order) // (most // 2))))
    return positions, [str(seeds[order[i]]) for i in positions]


def seed_matrix(matrix: np.ndarray, seeds: list[int], title: str, colorbar_label: str,
                vmin: float = 0.0, vmax: float = 1.0) -> str:
    """A [S, S] seed-by-seed heatmap; values printed in cells when there are few seeds."""
    size = min(3 + 0.35 * len(seeds), 12)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    image = ax.imshow(matrix, cmap="viridis", vmin=vmin, vmax=vmax)
    ticks, names = _seed_ticks(seeds)
    ax.set_xticks(ticks, names, fontsize=7 if len(seeds) > 32 else None)
    ax.set_yticks(ticks, names, fontsize=7 if len(seeds) > 32 else None)
    ax.set(title=title, xlabel="seed", ylabel="seed")
    if len(seeds) <= 12:
        for i in range(len(seeds)):
            for j in range(len(seeds)):
                shade = (matrix[i, j] - vmin) / (vmax - vmin or 1)
                ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="black" if shade > 0.6 else "white")
    fig.colorbar(image, ax=ax, label=colorbar_label, fraction=0.046)
    return to_data_uri(fig)


def seed_returns(seeds: list[int], groups: dict[str, list[float]], threshold: float | None = None) -> str:
    """Grouped bars: per seed, mean return under each evaluation condition."""
    fig, ax = plt.subplots(figsize=(min(14, max(6, 0.5 * len(seeds) * len(groups))), 3.8))
    width = 0.8 / len(groups)
    x = np.arange(len(seeds))
    for g, (name, values) in enumerate(groups.items()):
        ax.bar(x + (g - (len(groups) - 1) / 2) * width, values, width, label=name, color=OKABE_ITO[g])
    if threshold is not None:
        ax.axhline(threshold, color="black", lw=0.8, ls="--", label="env's reward threshold")
    ax.set_xticks(*_seed_ticks(seeds))
    ax.set(title="Final policy: mean episode return by seed", xlabel="seed", ylabel="mean episode return")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    ax.grid(axis="y", alpha=0.3)
    return to_data_uri(fig)


def strategy_fractions(seeds: list[int], fractions: list[dict[str, float]], labels: list[str]) -> str:
    """Left: per seed, the share of held-out episodes following each strategy (stacked bars).
    Right: the distribution across seeds of the preference for strategy A among decided episodes —
    two peaks mean seeds commit to different strategies (basins), one central peak a shared mix."""
    fig, (bars, hist) = plt.subplots(1, 2, figsize=(11, min(12, max(3.2, 0.28 * len(seeds) + 1.2))),
                                     gridspec_kw={"width_ratios": [3, 2]})
    colours = [OKABE_ITO[0], OKABE_ITO[1], "#BBBBBB"]
    left = np.zeros(len(seeds))
    y = np.arange(len(seeds))
    for label, colour in zip(labels, colours, strict=True):
        share = np.array([f[label] for f in fractions])
        bars.barh(y, share, left=left, color=colour, label=label, height=0.8 if len(seeds) <= 64 else 1.0)
        left += share
    bars.set_yticks(*_seed_ticks(seeds, most=48), fontsize=7 if len(seeds) > 24 else 9)
    bars.invert_yaxis()
    bars.set(title="Strategy per seed on held-out states", xlabel="fraction of held-out episodes", ylabel="seed",
             xlim=(0, 1))
    bars.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, frameon=False)
    decided = [(f[labels[0]], f[labels[0]] + f[labels[1]]) for f in fractions]
    preference = [a / total for a, total in decided if total > 0]
    hist.hist(preference, bins=np.linspace(0, 1, 11), color=OKABE_ITO[0], edgecolor="white")
    hist.set(title=f"Preference for {labels[0]!r} across seeds",
             xlabel=f"{labels[0]} / ({labels[0]} + {labels[1]}) per seed", ylabel="seeds")
    if len(preference) < len(fractions):
        hist.text(0.5, 0.95, f"{len(fractions) - len(preference)} seed(s) never decided", ha="center",
                  va="top", transform=hist.transAxes, fontsize=8)
    fig.tight_layout()
    return to_data_uri(fig)


def barrier_matrices(panels: list[tuple[str, np.ndarray, str]], seeds: list[int], order: list[int]) -> str:
    """[S, S] barrier heatmaps side by side, (title, matrix, unit) each; panels with the same unit
    share one colour scale (naive vs aligned is then a fair comparison). Seeds in ``order``."""
    vmax = {}
    for _, matrix, unit in panels:
        finite = matrix[np.isfinite(matrix)]
        vmax[unit] = max(vmax.get(unit, 0.0), float(finite.max()) if finite.size else 0.0)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 4.4), squeeze=False)
    ticks, names = _seed_ticks(seeds, order)
    for ax, (title, matrix, unit) in zip(axes[0], panels, strict=True):
        image = ax.imshow(matrix[np.ix_(order, order)], cmap="viridis", vmin=0, vmax=vmax[unit] or 1.0)
        ax.set_xticks(ticks, names, fontsize=7)
        ax.set_yticks(ticks, names, fontsize=7)
        ax.set(title=title, xlabel="seed (by basin)", ylabel="seed (by basin)")
        fig.colorbar(image, ax=ax, label=f"barrier ({unit})", fraction=0.046, pad=0.03)
    fig.tight_layout()
    return to_data_uri(fig)


def interpolation_paths(paths: list[InterpolationPath], metric: str, unit: str, labels: list[str] | None) -> str:
    """One column per representative pair: top, ``metric`` along the path for each variant (naive,
    aligned, aligned + REPAIR); bottom (when the env names strategies), the held-out strategy shares
    along the aligned path — does the strategy switch between the endpoints?"""
    rows = 2 if labels else 1
    fig, axes = plt.subplots(rows, len(paths), figsize=(4.2 * len(paths), 3.3 * rows), squeeze=False)
    styles = {"naive": (OKABE_ITO[3], "--"), "aligned": (OKABE_ITO[0], "-"), "aligned_repair": (OKABE_ITO[2], ":")}
    for column, path in enumerate(paths):
        top = axes[0, column]
        for variant, curves in path.curves.items():
            colour, style = styles[variant]
            barrier = curves.barriers.get(metric, float("nan"))
            top.plot(curves.alphas, curves.values[metric], color=colour, ls=style, marker="o", ms=3,
                     label=f"{variant.replace('_', ' + ')} (barrier {barrier:.3g})")
        top.set(title=f"{path.kind}: seed {path.seed_a} → {path.seed_b}", xlabel="α (0 = first seed)",
                ylabel=f"{metric.replace('_', ' ')} ({unit})")
        top.grid(alpha=0.3)
        top.legend(fontsize=7)
        if labels:
            bottom = axes[1, column]
            aligned = path.curves["aligned"]
            for label, colour in zip(labels, [OKABE_ITO[0], OKABE_ITO[1], "#888888"], strict=True):
                bottom.plot(aligned.alphas, aligned.values.get(f"share:{label}", [0.0] * len(aligned.alphas)),
                            color=colour, marker="o", ms=3, label=label)
            bottom.set(xlabel="α (aligned path)", ylabel="share of held-out episodes", ylim=(-0.02, 1.02))
            bottom.grid(alpha=0.3)
            bottom.legend(fontsize=7)
    fig.tight_layout()
    return to_data_uri(fig)


def divergence_dendrogram(matrix: np.ndarray, seeds: list[int], basins: list[int] | None) -> str:
    """Average-linkage dendrogram of a [S, S] divergence matrix above the matrix in leaf order, with a
    strip that colours each seed by its basin."""
    from scipy.cluster.hierarchy import dendrogram

    size = min(4 + 0.18 * len(seeds), 11)
    fig = plt.figure(figsize=(size + 1.5, size + 1.8))
    grid = fig.add_gridspec(3, 2, height_ratios=[1.4, 0.25, size], width_ratios=[size, 0.3], hspace=0.02, wspace=0.05)
    tree_ax, strip_ax, heat_ax = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[2, 0])
    leaves = list(range(len(seeds)))
    if len(seeds) > 1:
        tree = dendrogram(average_linkage(matrix), ax=tree_ax,
                          color_threshold=0, above_threshold_color="#555555", no_labels=True)
        leaves = tree["leaves"]
    tree_ax.set_axis_off()
    tree_ax.set_title("Behavioural divergence on held-out states, seeds in dendrogram order")
    colours = [OKABE_ITO[(basins[i] if basins else 0) % len(OKABE_ITO)] for i in leaves]
    strip_ax.imshow([[matplotlib.colors.to_rgb(c) for c in colours]], aspect="auto")
    strip_ax.set_axis_off()
    image = heat_ax.imshow(matrix[np.ix_(leaves, leaves)], cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ticks, names = _seed_ticks(seeds, leaves, most=40)
    heat_ax.set_xticks(ticks, names, fontsize=7, rotation=90)
    heat_ax.set_yticks(ticks, names, fontsize=7)
    heat_ax.set(xlabel="seed", ylabel="seed")
    fig.colorbar(image, cax=fig.add_subplot(grid[2, 1]), label="mean total variation (0 same … 1 disjoint)")
    return to_data_uri(fig)


def seed_embedding(matrix: np.ndarray, seeds: list[int], behavior: list[int], weights: list[int] | None,
                   names: list[str]) -> str:
    """Seeds placed in 2-D by metric MDS of a [S, S] divergence matrix; colour = behavioural basin,
    marker = weight-space basin."""
    from sklearn.manifold import MDS

    if len(seeds) >= 3:
        points = MDS(n_components=2, metric="precomputed", init="classical_mds", random_state=0,
                     normalized_stress="auto").fit_transform(matrix)
    else:
        points = np.column_stack([np.arange(len(seeds), dtype=float), np.zeros(len(seeds))])
    markers = ["o", "s", "^", "D", "v", "P", "X", "*"]
    fig, ax = plt.subplots(figsize=(6.4, 5))
    for b in sorted(set(behavior)):
        for w in sorted(set(weights or [0])):
            pick = [i for i in range(len(seeds)) if behavior[i] == b and (weights or [0] * len(seeds))[i] == w]
            if pick:
                ax.scatter(points[pick, 0], points[pick, 1], s=50, color=OKABE_ITO[b % len(OKABE_ITO)],
                           marker=markers[w % len(markers)], edgecolor="black", linewidth=0.5,
                           label=f"{names[b]}" + (f" · weight basin {w}" if weights else ""))
    if len(seeds) <= 32:
        for i, k in enumerate(seeds):
            ax.annotate(str(k), points[i], fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set(title="Seeds by held-out behaviour (MDS of total variation)", xlabel="MDS 1", ylabel="MDS 2")
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    return to_data_uri(fig)


def basin_disagreement(images: list[np.ndarray], basin_probs: np.ndarray, names: list[str],
                       actions: list[str]) -> str:
    """Held-out states (drawn) where basins act most differently, each with every basin's mean action
    distribution: basin_probs [states, basins, actions]."""
    return to_data_uri(states_with_actions(images, basin_probs, names, actions,
                                           "Held-out states where the basins disagree most"))


def env_frames(frames: dict[str, np.ndarray]) -> str:
    """Rendered example states side by side, titled by their kind."""
    fig, axes = plt.subplots(1, len(frames), figsize=(2.6 * len(frames), 2.9), squeeze=False)
    for ax, (title, frame) in zip(axes[0], frames.items(), strict=True):
        ax.imshow(frame)
        ax.set_axis_off()
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return to_data_uri(fig)


def early_detection(early: EarlyDetection) -> str:
    """Balanced accuracy of each detector (out-of-fold, 95% bootstrap band) against the training fraction
    of the checkpoint it saw, with chance (1 / classes) and the threshold as reference lines."""
    fig, ax = plt.subplots(figsize=(8, 4.2))
    fractions = np.array(early.fractions)
    for detector, colour, marker in zip(early.detectors, OKABE_ITO, "osD^v", strict=False):
        low, high = np.array(detector.ci).T
        ax.fill_between(fractions, low, high, color=colour, alpha=0.15)
        first = detector.first_reaching
        ax.plot(fractions, detector.balanced_accuracy, color=colour, marker=marker, ms=4,
                label=f"{detector.name}: {detector.description} "
                      f"(≥ {early.threshold:.0%} from {first:.0%})" if first is not None else
                      f"{detector.name}: {detector.description} (never ≥ {early.threshold:.0%})")
    if early.baseline is not None:
        low, high = np.array(early.baseline.ci).T
        ax.fill_between(fractions, low, high, color="#888888", alpha=0.15)
        ax.plot(fractions, early.baseline.balanced_accuracy, color="#666666", ls="--", marker=".", ms=4,
                label=f"{early.baseline.name}: {early.baseline.description}")
    ax.axhline(early.chance, color="#888888", ls="--", lw=1, label=f"chance (1/{early.n_classes} classes)")
    ax.axhline(early.threshold, color="black", ls=":", lw=1, label=f"threshold {early.threshold:.0%}")
    what = "basin" if early.target == "basin" else "preferred strategy"
    ax.set(title=f"Predicting each seed's final {what} ({' / '.join(early.class_names)}) from an earlier "
                 f"checkpoint ({len(early.seeds)} seeds, "
                 f"{early.folds}-fold cross-validation)",
           xlabel="training fraction of the checkpoint (step / last step)", ylabel="balanced accuracy",
           ylim=(0, 1.03), xlim=(-0.02, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return to_data_uri(fig)


def basin_shares(trajectory: BasinTrajectory, names: list[str]) -> str:
    """Stacked share of the seeds nearest to each final basin against the training fraction (top; the error
    bars on each boundary between layers: 95% Wilson interval of the share below it), and the mean total
    variation of the seeds to their assigned basin's final mean with its bootstrap band (bottom)."""
    from rlbasins.core.stats import wilson_interval

    fractions = np.array(trajectory.fractions)
    shares = np.array(trajectory.shares)                                   # [T, B]
    n = len(trajectory.seeds)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5.6), sharex=True, height_ratios=[2, 1])
    colours = [OKABE_ITO[b % len(OKABE_ITO)] for b in range(shares.shape[1])]
    top.stackplot(fractions, shares.T, colors=colours, alpha=0.55, labels=names)
    cumulative = np.cumsum(shares, axis=1)
    for b in range(shares.shape[1] - 1):
        ci = wilson_interval(np.rint(cumulative[:, b] * n), n)                # [T, 2]
        top.errorbar(fractions, cumulative[:, b], yerr=np.abs(ci.T - cumulative[:, b]), color="black", lw=0.8,
                     capsize=2, fmt="none", label="95% Wilson CI of the share below" if b == 0 else None)
    top.axvline(trajectory.late_fraction, color="black", ls=":", lw=1)
    top.set(ylabel="share of seeds", ylim=(0, 1.0),
            title=f"Nearest final basin of {n} seeds at every checkpoint")
    top.legend(fontsize=7, loc="lower right", framealpha=0.9)
    low, high = np.array(trajectory.mean_distance_ci).T
    bottom.fill_between(fractions, low, high, color="black", alpha=0.15, label="95% bootstrap CI over seeds")
    bottom.plot(fractions, trajectory.mean_distance, color="black", marker="o", ms=3,
                label="mean TV to the assigned basin's final mean")
    bottom.axvline(trajectory.late_fraction, color="black", ls=":", lw=1)
    bottom.set(xlabel="training fraction of the checkpoint (step / last step)", ylabel="total variation",
               xlim=(0, 1.0), ylim=(0, None))
    bottom.grid(alpha=0.3)
    bottom.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return to_data_uri(fig)


def transition_matrices(trajectory: BasinTrajectory, names: list[str]) -> str:
    """Basin transition counts between consecutive checkpoints: summed over all of training, and over the
    transitions that start in the late part (from ``late_fraction`` on)."""
    total = np.sum(trajectory.transitions, axis=0)
    panels = [("all consecutive checkpoints", total),
              (f"from {trajectory.late_fraction:.0%} of training on", np.array(trajectory.late_transitions))]
    size = 2.2 + 0.7 * len(names)
    fig, axes = plt.subplots(1, 2, figsize=(2 * size + 1.5, size))
    for ax, (title, counts) in zip(axes, panels, strict=True):
        image = ax.imshow(counts, cmap="viridis")
        for i in range(counts.shape[0]):
            for j in range(counts.shape[1]):
                shade = counts[i, j] / (counts.max() or 1)
                ax.text(j, i, str(int(counts[i, j])), ha="center", va="center", fontsize=9,
                        color="black" if shade > 0.6 else "white")
        ticks = list(range(len(names)))
        ax.set_xticks(ticks, names, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(ticks, names, fontsize=8)
        ax.set(title=f"{title}\n({int(counts.sum())} seed-transitions, {int(np.trace(counts))} stay)",
               xlabel="basin at the next checkpoint", ylabel="basin at a checkpoint")
        fig.colorbar(image, ax=ax, fraction=0.046, label="seeds")
    fig.tight_layout()
    return to_data_uri(fig)


def last_switches(trajectory: BasinTrajectory, names: list[str]) -> str:
    """Each seed's training fraction of its last basin switch (a strip, coloured by final basin, seeds that
    never switch at 0), over a histogram of the same."""
    last = [f if f is not None else 0.0 for f in trajectory.last_switch]
    final = trajectory.assignments[-1]
    fig, ax = plt.subplots(figsize=(8, 3.2))
    bins = np.linspace(0, 1, 21)
    ax.hist(last, bins=bins, color="#BBBBBB", label="seeds per bin")
    jitter = np.random.default_rng(0).uniform(-0.25, 0.25, len(last))
    for b, name in enumerate(names):
        idx = [i for i, f in enumerate(final) if f == b]
        ax.scatter(np.array(last)[idx], -0.6 + jitter[idx], s=18, color=OKABE_ITO[b % len(OKABE_ITO)],
                   label=f"a seed now in {name}", zorder=3)
    ax.axvline(trajectory.late_fraction, color="black", ls=":", lw=1,
               label=f"{trajectory.late_share:.0%} of seeds switch last after {trajectory.late_fraction:.0%} "
                     f"(95% CI {trajectory.late_share_ci[0]:.0%}–{trajectory.late_share_ci[1]:.0%})")
    ax.set(title="When each seed last switched basin (0: never after the first checkpoint)",
           xlabel="training fraction of the checkpoint at the seed's last switch", ylabel="seeds",
           xlim=(-0.03, 1.03), ylim=(-1.1, None))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    return to_data_uri(fig)


def rarefaction_curve(counted: BasinCount) -> str:
    """Basins found by the run's clusterer in random seed subsets (mean, 95% interval) and the final basins
    such a subset contains (Hurlbert rarefaction), against the subset size."""
    rare = counted.rarefaction
    sizes = np.array(rare.sizes)
    low, high = np.array(rare.found_ci).T
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    ax.fill_between(sizes, low, high, color=OKABE_ITO[0], alpha=0.2, label="95% interval over subsets")
    ax.plot(sizes, rare.found_mean, color=OKABE_ITO[0], marker="o",
            label=f"basins found ({counted.method}, reclustered; {rare.resamples} subsets per size)")
    ax.plot(sizes, rare.represented, color=OKABE_ITO[1], marker="s", ls="--",
            label="final basins the subset contains (expected)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.set(title="Rarefaction: basins vs number of seeds", xlabel="seeds in the subset", ylabel="basins",
           ylim=(0, max(float(high.max()), max(rare.represented)) + 1))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return to_data_uri(fig)


def resolution_curve(counted: BasinCount) -> str:
    """Average-linkage cluster count against the cut height (with its band over resampled held-out states),
    and the normalised-Laplacian spectrum the spectral clusterer reads its eigengap from."""
    res = counted.resolution
    heights = np.array(res.heights)
    low, high = np.array(res.band).T
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), width_ratios=[3, 2])
    left.fill_between(heights, low, high, step="post", color=OKABE_ITO[2], alpha=0.2,
                      label="95% band, resampled held-out states")
    left.step(heights, res.clusters, where="post", color=OKABE_ITO[2], label="average linkage on TV")
    if res.persistent_range:
        left.axvspan(*res.persistent_range, color="#999999", alpha=0.25,
                     label=f"widest plateau ≥ 2: {res.persistent_k} clusters")
    left.set_yscale("log")
    left.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    left.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    left.set_yticks([t for t in (1, 2, 3, 4, 6, 8, 16, 32, 64, 128, 256) if t <= max(res.clusters)])
    left.set(title="Clusters vs resolution", xlabel="cut height (total variation)", ylabel="clusters")
    left.grid(alpha=0.3)
    left.legend(fontsize=7, loc="lower left")
    values = np.array(res.laplacian_eigenvalues)
    right.plot(np.arange(1, len(values) + 1), values, color=OKABE_ITO[0], marker="o")
    k = res.eigengap_k
    right.axvline(k + 0.5, color="black", ls=":", lw=1, label=f"largest gap: after eigenvalue {k} (k = {k})")
    right.legend(fontsize=7, loc="lower right")
    right.set(title="Normalised Laplacian spectrum", xlabel="eigenvalue index", ylabel="eigenvalue")
    right.grid(alpha=0.3)
    fig.tight_layout()
    return to_data_uri(fig)


def steering(result: Any) -> str:
    """Steering by abort (``result``: a :class:`~rlbasins.studies.steering.SteeringResult`): compute of steering
    vs no steering (left) and each started seed's fate (right)."""
    fig, (bars, strip) = plt.subplots(1, 2, figsize=(11, 3.2), gridspec_kw={"width_ratios": [1, 2]})
    base = result.baseline
    names, values, errors = ["steering"], [result.compute["steering_steps"]], [[0, 0]]
    measured = base.get("measured")
    if measured:
        names.append("none,\nsame\nseeds" + (" (≥)" if measured["lower_bound"] else ""))
        values.append(measured["steps"])
        errors.append([0, 0])
    for key, name in (("expected_from_run", "none,\nexpected\n(run p̂)"),
                      ("expected_from_calibration", "none,\nexpected\n(calib. p̂)")):
        e = base.get(key)
        if e and e["steps"]:
            high = e["steps_ci"][1] if e["steps_ci"][1] is not None else e["steps"]
            names.append(name)
            values.append(e["steps"])
            errors.append([e["steps"] - e["steps_ci"][0], high - e["steps"]])
    colours = ["tab:green"] + ["tab:grey"] * (len(names) - 1)
    bars.bar(range(len(names)), values, yerr=np.array(errors).T, color=colours, capsize=4)
    bars.set_xticks(range(len(names)), names, fontsize=7)
    bars.set_ylabel("env steps (all seeds)")
    bars.set_title(f"Compute to {result.k} '{result.target}' seeds", fontsize=9)
    fate_colour = {"continued": "tab:green", "aborted": "tab:red", "surplus": "tab:orange"}
    for i, seed in enumerate(result.seeds):
        colour = fate_colour.get(seed["decision"], "lightgrey")
        strip.barh(i, seed["steps"], color=colour, height=0.8)
        if seed["decision"] == "continued" and seed["final_label"] != result.target:
            strip.plot(seed["steps"], i, "kx")
        if seed.get("wrong_abort"):
            strip.plot(seed["steps"], i, marker="*", color="black")
    strip.axvline(result.check_step, color="black", lw=0.8, ls="--")
    strip.set_xlim(0, result.total_steps)
    strip.set_ylabel("seed (start order)")
    strip.set_xlabel("env steps trained (dashed: the check)")
    strip.set_title("green continued · red aborted · orange surplus · ★ wrong abort · × continued, missed target",
                    fontsize=8)
    strip.invert_yaxis()
    fig.tight_layout()
    return to_data_uri(fig)


def diversity(result: Any) -> str:
    """Diversity search (``result``: a :class:`~rlbasins.studies.diversity.DiversityResult`): expected basins
    found against env steps per method with bootstrap bands (left); each method's seeds by pooled basin (right)."""
    fig, (curves, shares) = plt.subplots(1, 2, figsize=(11, 3.6), gridspec_kw={"width_ratios": [3, 2]})
    for i, method in enumerate(result.methods):
        colour = OKABE_ITO[i % len(OKABE_ITO)]
        steps, ci = np.array(method.curve.steps), np.array(method.curve.found_ci)
        curves.step(steps, method.curve.found_mean, where="post", color=colour, label=method.method)
        curves.fill_between(steps, ci[:, 0], ci[:, 1], step="post", color=colour, alpha=0.15)
    for x, name in ((result.budget / 2, "B/2"), (result.budget, "B")):
        curves.axvline(x, color="black", lw=0.7, ls="--")
        curves.text(x, 0.02, name, transform=curves.get_xaxis_transform(), fontsize=7, ha="right")
    curves.set(xlabel="env steps (each search's own work counted in)", ylabel="expected basins found",
               title=f"Basins found ({result.basins} pooled)", ylim=(0, result.basins + 0.5))
    curves.legend(fontsize=8, loc="lower right")
    curves.grid(alpha=0.3)
    names = result.basin_strategies or [f"basin {b}" for b in range(result.basins)]
    bottom = np.zeros(len(result.methods))
    for b in range(result.basins):
        values = np.array([m.basin_shares[b] for m in result.methods])
        shares.bar(range(len(result.methods)), values, bottom=bottom, color=OKABE_ITO[(b + 4) % len(OKABE_ITO)],
                   label=f"{b}: {names[b]}" + (" (rarest)" if b == result.rarest_basin else ""))
        bottom += values
    shares.set_xticks(range(len(result.methods)), [f"{m.method}\n{len(m.seeds)} seeds" for m in result.methods],
                      fontsize=8)
    shares.set(ylabel="share of the method's seeds", title="Seeds by pooled basin", ylim=(0, 1))
    shares.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return to_data_uri(fig)


def behavior_drift(trajectory: BasinTrajectory) -> str:
    """Against the training fraction: how far each seed's held-out behaviour still is from its own final
    behaviour (drift) and how different the seeds are from each other (spread), with bootstrap bands (top);
    the number of basins the run's clusterer finds at each checkpoint alone (bottom)."""
    fractions = np.array(trajectory.fractions)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 4.8), sharex=True, height_ratios=[2, 1])
    for key, colour, label in (("drift", OKABE_ITO[3], "drift: mean TV of a seed to its own final behaviour"),
                               ("spread", OKABE_ITO[0], "spread: mean pairwise TV between seeds")):
        low, high = np.array(getattr(trajectory, f"{key}_ci")).T
        top.fill_between(fractions, low, high, color=colour, alpha=0.2)
        top.plot(fractions, getattr(trajectory, key), color=colour, marker="o", ms=3,
                 label=f"{label} (95% bootstrap CI)")
    top.axvline(trajectory.late_fraction, color="black", ls=":", lw=1)
    top.set(ylabel="total variation", ylim=(0, None),
            title=f"Held-out behaviour of {len(trajectory.seeds)} seeds through training")
    top.grid(alpha=0.3)
    top.legend(fontsize=7, loc="best")
    bottom.step(fractions, trajectory.clusters, where="mid", color="black", marker="o", ms=3)
    bottom.set(xlabel="training fraction of the checkpoint (step / last step)", ylabel="basins found",
               xlim=(0, 1.0), ylim=(0, max(trajectory.clusters) + 1))
    bottom.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    return to_data_uri(fig)


def _plane_axes(ax: plt.Axes, mapped: InitMap, title: str) -> list[float]:
    """Label a panel of the init plane (columns b, rows a) and mark θ0 — and θ1, θ2 for ``inits`` directions when
    they are on the grid; returns the image extent."""
    coordinates = np.array(mapped.coordinates)
    half = (coordinates[1] - coordinates[0]) / 2
    extent = [coordinates[0] - half, coordinates[-1] + half, coordinates[0] - half, coordinates[-1] + half]
    marks = {"θ0": (0.0, 0.0)}
    if mapped.directions == "inits" and mapped.span >= 1:
        marks.update({"θ1": (0.0, 1.0), "θ2": (1.0, 0.0)})  # (b, a): θ1 at a = 1, θ2 at b = 1
    for name, (b, a) in marks.items():
        ax.plot(b, a, marker="+", color="white", ms=10, mew=2.5)
        ax.plot(b, a, marker="+", color="black", ms=9, mew=1.2)
        ax.annotate(name, (b, a), xytext=(4, 4), textcoords="offset points", fontsize=8)
    ax.set(title=title, xlabel="b (along v)", ylabel="a (along u)")
    return extent


def init_maps(mapped: InitMap) -> str:
    """The init plane coloured by each label map (boundary cells dotted, legend naming every label) and by the
    continuous held-out outcome (colour bar); grey: seeds without a result."""
    panels = len(mapped.maps) + (mapped.outcome is not None)
    fig, axes = plt.subplots(1, panels, figsize=(4.6 * panels, 4.6), squeeze=False)
    for ax, label_map in zip(axes[0], mapped.maps, strict=False):
        image = np.array(label_map.image)
        extent = _plane_axes(ax, mapped, f"{label_map.name} per initialisation")
        colours = [OKABE_ITO[c % len(OKABE_ITO)] for c in range(len(label_map.names))]
        cmap = matplotlib.colors.ListedColormap(colours).with_extremes(bad="#bbbbbb")
        ax.imshow(np.ma.masked_less(image, 0), cmap=cmap, vmin=-0.5, vmax=len(colours) - 0.5, origin="lower",
                  extent=extent, interpolation="nearest")
        rows, cols = np.nonzero(np.array(label_map.boundary))
        coordinates = np.array(mapped.coordinates)
        ax.scatter(coordinates[cols], coordinates[rows], s=4, color="black", alpha=0.5)
        present = sorted(set(image[image >= 0].tolist()))
        handles = [matplotlib.patches.Patch(color=colours[c], label=label_map.names[c]) for c in present]
        ax.legend(handles=handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    if mapped.outcome is not None:
        ax = axes[0][-1]
        extent = _plane_axes(ax, mapped, f"held-out share of {mapped.outcome_label}")
        outcome = np.array([[np.nan if v is None else v for v in row] for row in mapped.outcome])
        cmap = plt.get_cmap("viridis").with_extremes(bad="#bbbbbb")
        image = ax.imshow(np.ma.masked_invalid(outcome), cmap=cmap, vmin=0, vmax=1, origin="lower", extent=extent,
                          interpolation="nearest")
        fig.colorbar(image, ax=ax, shrink=0.8, label=f"greedy held-out episodes reaching {mapped.outcome_label}")
    fig.tight_layout()
    return to_data_uri(fig)


def box_counting(mapped: InitMap) -> str:
    """log2 of the boxes holding boundary against log2(1 / box side), the side in cells of the full grid, for
    every map with a boundary and every (sub-)grid resolution, with the fitted slope (the dimension)."""
    shown = [m for m in mapped.maps if m.box_counting[0].dimension is not None]
    fig, axes = plt.subplots(1, max(len(shown), 1), figsize=(5.2 * max(len(shown), 1), 4), squeeze=False)
    for ax, label_map in zip(axes[0], shown, strict=False):
        for r, box in enumerate(label_map.box_counting):
            if box.dimension is None:
                continue
            counts = np.array(box.box_counts, float)
            keep = counts > 0
            x = -np.log2(np.array(box.box_sizes, float) * box.stride)
            ci = box.dimension_ci
            label = f"{box.side}² grid: D = {box.dimension:.2f}" + (
                f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else " (2 sizes, no CI)")
            colour = OKABE_ITO[r % len(OKABE_ITO)]
            ax.plot(x[keep], np.log2(counts[keep]), marker="o", ls="none", color=colour, label=label)
            intercept = np.mean(np.log2(counts[keep]) - box.dimension * x[keep])
            ax.plot(x, intercept + box.dimension * x, color=colour, lw=1)
        ax.set(title=f"Box counting: {label_map.name} boundary", xlabel="log2(1 / box side in full-grid cells)",
               ylabel="log2(boxes holding boundary)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    if not shown:
        axes[0][0].text(0.5, 0.5, "no boundary in any map", ha="center", va="center")
        axes[0][0].set_axis_off()
    fig.tight_layout()
    return to_data_uri(fig)


def _setting_ticks(sweep: Any) -> list[str]:
    """name / architecture / parameters per setting of a sweep."""
    return [f"{s.name}\n{s.network}\n{s.parameters:,} params" for s in sweep.settings]


def sweep_shares(sweep: Any) -> str:
    """``sweep``: a :class:`~rlbasins.studies.sweep.SweepResult` (the report layer reads it, never imports it).
    Against the setting (in config order): the share of seeds per dominant held-out label with Wilson 95%
    bands (left), and each label's mean share of the seeds' held-out episodes with bootstrap bands (right)."""
    x = np.arange(len(sweep.settings))
    fig, axes = plt.subplots(1, 2, figsize=(max(10, 2.4 * len(x) + 3), 3.8), sharey=True)
    panels = (("label_shares", "label_share_ci", "share of seeds (dominant label)", "95% Wilson CI"),
              ("episode_shares", "episode_share_ci", "mean share of held-out episodes", "95% bootstrap CI"))
    for ax, (key, ci_key, ylabel, band) in zip(axes, panels, strict=True):
        for i, label in enumerate(sweep.labels):
            shares = [getattr(s, key)[label] for s in sweep.settings]
            low, high = np.array([getattr(s, ci_key)[label] for s in sweep.settings]).T
            colour = OKABE_ITO[i % len(OKABE_ITO)]
            ax.fill_between(x, low, high, color=colour, alpha=0.15)
            ax.plot(x, shares, color=colour, marker="o", label=f"{label} (band: {band})")
        ax.set_xticks(x, _setting_ticks(sweep), fontsize=7)
        ax.set(ylabel=ylabel, ylim=(0, 1))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    axes[0].set_title("Seeds by their dominant held-out strategy")
    axes[1].set_title("Held-out episodes per strategy, mean over seeds")
    fig.tight_layout()
    return to_data_uri(fig)


def seed_factor_grid(study: SeedFactorStudy) -> str:
    """Left: the I × D grid of the first outcome, one cell per seed (rows: init, columns: data stream; colours
    span the seeds' range), each cell marked with its behavioural basin when there are several. Right: each
    outcome's variance shares (init, data, residual) with 95% two-way bootstrap whiskers."""
    head = study.outcomes[0]
    grid = np.array(head.grid)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4), width_ratios=[1, 1.3])
    image = left.imshow(grid, cmap="viridis")  # the seeds' own range: row or column stripes stay visible
    fig.colorbar(image, ax=left, fraction=0.046, label=head.outcome)
    basins = study.basins
    if basins is not None and basins.n_basins > 1 and grid.size <= 256:
        for (i, j), basin in np.ndenumerate(np.array(basins.labels)):
            left.text(j, i, str(basin), ha="center", va="center", fontsize=7,
                      color="white" if grid[i, j] < np.nanmean(grid) else "black")
    left.set(title=f"{head.outcome} per seed" + (" (numbers: basin)" if basins and basins.n_basins > 1
                                                    else ""), xlabel="data stream (column)", ylabel="init (row)")
    left.set_xticks(range(study.data))
    left.set_yticks(range(study.init))
    measured = [o for o in study.outcomes if o.shares["init"] is not None]
    width = 0.8 / 3
    for f, factor in enumerate(("init", "data", "residual")):
        x = np.arange(len(measured)) + (f - 1) * width
        values = np.array([o.shares[factor] for o in measured])
        low, high = np.array([o.shares_ci[factor] for o in measured]).reshape(-1, 2).T
        right.bar(x, values, width, color=OKABE_ITO[f], label=factor)
        # a percentile interval may sit a rounding error (or, in principle, more) off its point estimate
        yerr = np.maximum([values - low, high - values], 0)
        right.errorbar(x, values, yerr=yerr, fmt="none", color="black", lw=0.8, capsize=2)
    right.axhline(0, color="black", lw=0.6)
    right.set_xticks(range(len(measured)), [o.outcome for o in measured], fontsize=8)
    right.set(title="Share of the seeds' variance (95% two-way bootstrap CI)", ylabel="variance-component share",
              ylim=(min(-0.1, right.get_ylim()[0]), max(1.25, right.get_ylim()[1] + 0.15)))
    right.grid(alpha=0.3, axis="y")
    right.legend(fontsize=8, loc="upper center", ncol=3)
    fig.tight_layout()
    return to_data_uri(fig)


def sweep_stacked(sweep: Any) -> str:
    """Stacked shares of the dominant held-out labels per setting of a
    :class:`~rlbasins.studies.sweep.SweepResult`; the seed counts printed in each layer."""
    x = np.arange(len(sweep.settings))
    fig, ax = plt.subplots(figsize=(max(6.5, 1.4 * len(x) + 2), 3.8))
    bottom = np.zeros(len(x))
    for i, label in enumerate(sweep.labels):
        shares = np.array([s.label_shares[label] for s in sweep.settings])
        counts = [s.label_counts[label] for s in sweep.settings]
        ax.bar(x, shares, bottom=bottom, color=OKABE_ITO[i % len(OKABE_ITO)], label=label, width=0.6)
        for xi, share, base, count in zip(x, shares, bottom, counts, strict=True):
            if share >= 0.06:
                ax.text(xi, base + share / 2, str(count), ha="center", va="center", fontsize=8)
        bottom += shares
    ax.set_xticks(x, _setting_ticks(sweep), fontsize=7)
    ax.set(title="Seeds per held-out strategy (numbers: seeds)", ylabel="share of seeds", ylim=(0, 1))
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return to_data_uri(fig)


def basin_map(result: Any) -> str:
    """One panel per knob of a :class:`~rlbasins.studies.basin_map.BasinMapResult` (the report layer reads it,
    never imports it): against the knob's values, the share of seeds committed to each strategy and the share
    that learned the training task (Wilson 95% bars), and the mean undecided share of held-out states
    (bootstrap bars); above each point the number of behavioural basins (k), Sarle's coefficient (S) and the
    dip test's p."""
    knobs = list(result.knobs)
    columns = min(3, len(knobs))
    rows = -(-len(knobs) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.9 * rows), squeeze=False, sharey=True)
    for ax, knob in zip(axes.flat, knobs, strict=False):
        panel = result.panel(knob)
        x = np.arange(len(panel))
        series = [(f"committed: {label}", [p.committed[label] for p in panel], OKABE_ITO[i], "o", "-")
                  for i, label in enumerate(result.strategies)]
        if all(p.trained is not None for p in panel):
            series.append((f"trained (≥ {result.success:.0%} of optimum)", [p.trained for p in panel], "black",
                           "s", ":"))
        dodge = 0.06 * (np.arange(len(series) + 1) - len(series) / 2)  # bars side by side, not on top
        for (name, shares, colour, marker, style), dx in zip(series, dodge, strict=False):
            y = np.array([s.share for s in shares])
            low, high = np.array([s.ci for s in shares]).T
            ax.errorbar(x + dx, y, yerr=np.maximum([y - low, high - y], 0), color=colour, marker=marker, ls=style,
                        capsize=3, label=name)
        undecided = np.array([p.undecided for p in panel])
        low, high = np.array([p.undecided_ci for p in panel]).T
        ax.errorbar(x + dodge[-1], undecided, yerr=np.maximum([undecided - low, high - undecided], 0), color="grey",
                    marker="^", ls="--", capsize=3, label="undecided (mean share of held-out states)")
        for xi, p in zip(x, panel, strict=True):
            sarle = "–" if p.bimodality_coefficient is None else f"{p.bimodality_coefficient:.2f}"
            dip = "–" if p.dip_p is None else f"{p.dip_p:.2g}"
            ax.text(xi, 1.02, f"k={p.basins}\nS={sarle}\ndip p={dip}", ha="center", va="bottom", fontsize=7)
        base = result.base_values.get(knob)
        ticks = [f"{p.value if p.knob is not None else base}" + ("\n(base)" if p.run_dir == result.base.run_dir
                                                                 else "") for p in panel]
        ax.set_xticks(x, ticks, fontsize=8)
        ax.set_xlim(-0.5, len(panel) - 0.5)
        ax.set(xlabel=knob, ylim=(0, 1.22), yticks=np.linspace(0, 1, 6))
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(knobs):]:
        ax.set_axis_off()
    for ax in axes[:, 0]:
        ax.set_ylabel("share of seeds (undecided: of states)")
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(4, len(names)), fontsize=8, bbox_to_anchor=(0.5, -0.02))
    base = result.base
    fig.suptitle(f"Basin map {result.name} ({result.env_id}): {base.n_seeds} seeds × {base.total_timesteps:,} steps "
                 f"at the base; committed: exact binomial p < {result.alpha:g} over {base.probe_states} held-out "
                 "states", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 0.97))
    return to_data_uri(fig)
