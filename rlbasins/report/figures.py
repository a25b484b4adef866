"""Report figures (matplotlib, rendered to inline PNG). Colour-blind-safe: Okabe–Ito lines, viridis maps."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from rliable.library import get_interval_estimates  # noqa: E402
from rliable.metrics import aggregate_iqm  # noqa: E402

OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]


def to_data_uri(fig: plt.Figure) -> str:
    """PNG data URI of a figure (and close it), so the report is one self-contained file."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def learning_curves(steps: np.ndarray, returns: np.ndarray, seeds: list[int], max_points: int = 40,
                    bootstrap_reps: int = 500, title: str = "Training return per seed") -> str:
    """returns [S, T] training-episode return per seed: thin lines per seed, the mean, and the IQM
    with a 95% stratified-bootstrap CI band computed at up to ``max_points`` steps."""
    fig, ax = plt.subplots(figsize=(8, 4.2))
    for i, k in enumerate(seeds):
        ax.plot(steps, returns[i], lw=0.8, alpha=0.55, color=OKABE_ITO[i % len(OKABE_ITO)], label=f"seed {k}")
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
    ax.legend(fontsize=7, ncol=2 if len(seeds) <= 16 else 1, loc="lower right")
    return to_data_uri(fig)


def seed_matrix(matrix: np.ndarray, seeds: list[int], title: str, colorbar_label: str,
                vmin: float = 0.0, vmax: float = 1.0) -> str:
    """A [S, S] seed-by-seed heatmap; values printed in cells when there are few seeds."""
    size = min(3 + 0.35 * len(seeds), 12)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    image = ax.imshow(matrix, cmap="viridis", vmin=vmin, vmax=vmax)
    ticks = range(len(seeds)) if len(seeds) <= 32 else range(0, len(seeds), max(1, len(seeds) // 16))
    ax.set_xticks(list(ticks), [str(seeds[i]) for i in ticks])
    ax.set_yticks(list(ticks), [str(seeds[i]) for i in ticks])
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
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(seeds) * len(groups)), 3.8))
    width = 0.8 / len(groups)
    x = np.arange(len(seeds))
    for g, (name, values) in enumerate(groups.items()):
        ax.bar(x + (g - (len(groups) - 1) / 2) * width, values, width, label=name, color=OKABE_ITO[g])
    if threshold is not None:
        ax.axhline(threshold, color="black", lw=0.8, ls="--", label="env's reward threshold")
    ax.set_xticks(x, [str(k) for k in seeds])
    ax.set(title="Final policy: mean episode return by seed", xlabel="seed", ylabel="mean episode return")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    ax.grid(axis="y", alpha=0.3)
    return to_data_uri(fig)


def strategy_fractions(seeds: list[int], fractions: list[dict[str, float]], labels: list[str]) -> str:
    """Left: per seed, the share of held-out episodes following each strategy (stacked bars).
    Right: the distribution across seeds of the preference for strategy A among decided episodes —
    two peaks mean seeds commit to different strategies (basins), one central peak a shared mix."""
    fig, (bars, hist) = plt.subplots(1, 2, figsize=(11, max(3.2, 0.28 * len(seeds) + 1.2)),
                                     gridspec_kw={"width_ratios": [3, 2]})
    colours = [OKABE_ITO[0], OKABE_ITO[1], "#BBBBBB"]
    left = np.zeros(len(seeds))
    y = np.arange(len(seeds))
    for label, colour in zip(labels, colours, strict=True):
        share = np.array([f[label] for f in fractions])
        bars.barh(y, share, left=left, color=colour, label=label, height=0.8)
        left += share
    bars.set_yticks(y, [str(k) for k in seeds], fontsize=7 if len(seeds) > 24 else 9)
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
    ticks = list(range(0, len(order), max(1, len(order) // 16)))
    for ax, (title, matrix, unit) in zip(axes[0], panels, strict=True):
        image = ax.imshow(matrix[np.ix_(order, order)], cmap="viridis", vmin=0, vmax=vmax[unit] or 1.0)
        ax.set_xticks(ticks, [str(seeds[order[i]]) for i in ticks], fontsize=7)
        ax.set_yticks(ticks, [str(seeds[order[i]]) for i in ticks], fontsize=7)
        ax.set(title=title, xlabel="seed (by basin)", ylabel="seed (by basin)")
        fig.colorbar(image, ax=ax, label=f"barrier ({unit})", fraction=0.046, pad=0.03)
    fig.tight_layout()
    return to_data_uri(fig)


def interpolation_paths(paths: list[dict], metric: str, unit: str, labels: list[str] | None) -> str:
    """One column per representative pair: top, ``metric`` along the path for each variant (naive,
    aligned, aligned + REPAIR); bottom (when the env names strategies), the held-out strategy shares
    along the aligned path — does the strategy switch between the endpoints?"""
    rows = 2 if labels else 1
    fig, axes = plt.subplots(rows, len(paths), figsize=(4.2 * len(paths), 3.3 * rows), squeeze=False)
    styles = {"naive": (OKABE_ITO[3], "--"), "aligned": (OKABE_ITO[0], "-"), "aligned_repair": (OKABE_ITO[2], ":")}
    for column, path in enumerate(paths):
        top = axes[0, column]
        for variant, curves in path["curves"].items():
            colour, style = styles[variant]
            barrier = curves["barriers"].get(metric, float("nan"))
            top.plot(curves["alphas"], curves["values"][metric], color=colour, ls=style, marker="o", ms=3,
                     label=f"{variant.replace('_', ' + ')} (barrier {barrier:.3g})")
        top.set(title=f"{path['kind']}: seed {path['seed_a']} → {path['seed_b']}", xlabel="α (0 = first seed)",
                ylabel=f"{metric.replace('_', ' ')} ({unit})")
        top.grid(alpha=0.3)
        top.legend(fontsize=7)
        if labels:
            bottom = axes[1, column]
            aligned = path["curves"]["aligned"]
            for label, colour in zip(labels, [OKABE_ITO[0], OKABE_ITO[1], "#888888"], strict=True):
                bottom.plot(aligned["alphas"], aligned["values"].get(f"share:{label}", [0.0] * len(aligned["alphas"])),
                            color=colour, marker="o", ms=3, label=label)
            bottom.set(xlabel="α (aligned path)", ylabel="share of held-out episodes", ylim=(-0.02, 1.02))
            bottom.grid(alpha=0.3)
            bottom.legend(fontsize=7)
    fig.tight_layout()
    return to_data_uri(fig)


def divergence_dendrogram(matrix: np.ndarray, seeds: list[int], basins: list[int] | None) -> str:
    """Average-linkage dendrogram of a [S, S] divergence matrix above the matrix in leaf order, with a
    strip that colours each seed by its basin."""
    from scipy.cluster.hierarchy import dendrogram, linkage
    from scipy.spatial.distance import squareform

    size = min(4 + 0.18 * len(seeds), 11)
    fig = plt.figure(figsize=(size + 1.5, size + 1.8))
    grid = fig.add_gridspec(3, 2, height_ratios=[1.4, 0.25, size], width_ratios=[size, 0.3], hspace=0.02, wspace=0.05)
    tree_ax, strip_ax, heat_ax = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[2, 0])
    leaves = list(range(len(seeds)))
    if len(seeds) > 1:
        tree = dendrogram(linkage(squareform(matrix, checks=False), method="average"), ax=tree_ax,
                          color_threshold=0, above_threshold_color="#555555", no_labels=True)
        leaves = tree["leaves"]
    tree_ax.set_axis_off()
    tree_ax.set_title("Behavioural divergence on held-out states, seeds in dendrogram order")
    colours = [OKABE_ITO[(basins[i] if basins else 0) % len(OKABE_ITO)] for i in leaves]
    strip_ax.imshow([[matplotlib.colors.to_rgb(c) for c in colours]], aspect="auto")
    strip_ax.set_axis_off()
    image = heat_ax.imshow(matrix[np.ix_(leaves, leaves)], cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ticks = range(len(leaves)) if len(leaves) <= 40 else range(0, len(leaves), max(1, len(leaves) // 20))
    heat_ax.set_xticks(list(ticks), [str(seeds[leaves[i]]) for i in ticks], fontsize=7, rotation=90)
    heat_ax.set_yticks(list(ticks), [str(seeds[leaves[i]]) for i in ticks], fontsize=7)
    heat_ax.set(xlabel="seed", ylabel="seed")
    fig.colorbar(image, cax=fig.add_subplot(grid[2, 1]), label="mean total variation (0 same … 1 disjoint)")
    return to_data_uri(fig)


def seed_embedding(matrix: np.ndarray, seeds: list[int], behaviour: list[int], weights: list[int] | None,
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
    for b in sorted(set(behaviour)):
        for w in sorted(set(weights or [0])):
            pick = [i for i in range(len(seeds)) if behaviour[i] == b and (weights or [0] * len(seeds))[i] == w]
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


def states_with_actions(images: list[np.ndarray], probs: np.ndarray, names: list[str], actions: list[str],
                        title: str, size: tuple[float, float] = (7.5, 2.4), dpi: float = 100) -> plt.Figure:
    """States drawn on the left, each beside action distributions as grouped bars on the right.

    images: [states] RGB arrays; probs [states, groups, actions], one bar colour per group (``names``);
    ``size``: (width, height per state) in inches. The caller renders and closes the figure.
    """
    fig, axes = plt.subplots(len(images), 2, figsize=(size[0], size[1] * len(images)), squeeze=False, dpi=dpi)
    x = np.arange(len(actions))
    width = 0.8 / len(names)
    for row, image in enumerate(images):
        axes[row, 0].imshow(image)
        axes[row, 0].set_axis_off()
        bars = axes[row, 1]
        for b, name in enumerate(names):
            bars.bar(x + (b - (len(names) - 1) / 2) * width, probs[row, b], width, label=name,
                     color=OKABE_ITO[b % len(OKABE_ITO)])
        bars.set_xticks(x, actions, fontsize=8)
        bars.set(ylim=(0, 1), ylabel="action probability")
        if row == 0:
            bars.legend(fontsize=7)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


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


def early_detection(early: dict) -> str:
    """Balanced accuracy of each detector (out-of-fold, 95% bootstrap band) against the training fraction
    of the checkpoint it saw, with chance (1 / basins) and the threshold as reference lines."""
    fig, ax = plt.subplots(figsize=(8, 4.2))
    fractions = np.array(early["fractions"])
    for detector, colour, marker in zip(early["detectors"], OKABE_ITO, "osD^v", strict=False):
        low, high = np.array(detector["ci"]).T
        ax.fill_between(fractions, low, high, color=colour, alpha=0.15)
        first = detector["first_reaching"]
        ax.plot(fractions, detector["balanced_accuracy"], color=colour, marker=marker, ms=4,
                label=f"{detector['name']}: {detector['description']} "
                      f"(≥ {early['threshold']:.0%} from {first:.0%})" if first is not None else
                      f"{detector['name']}: {detector['description']} (never ≥ {early['threshold']:.0%})")
    ax.axhline(early["chance"], color="#888888", ls="--", lw=1, label=f"chance (1/{early['n_basins']} basins)")
    ax.axhline(early["threshold"], color="black", ls=":", lw=1, label=f"threshold {early['threshold']:.0%}")
    ax.set(title=f"Predicting each seed's final basin from an earlier checkpoint ({len(early['seeds'])} seeds, "
                 f"{early['folds']}-fold cross-validation)",
           xlabel="training fraction of the checkpoint (step / last step)", ylabel="balanced accuracy",
           ylim=(0, 1.03), xlim=(-0.02, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return to_data_uri(fig)
