"""Plotting primitives shared by the training-time monitor and the report: a headless matplotlib, the palette,
figure → data URI, and held-out states drawn beside action distributions."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]


def to_data_uri(fig: plt.Figure) -> str:
    """PNG data URI of a figure (and close it), so the report is one self-contained file."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def states_with_actions(images: list[np.ndarray], probs: np.ndarray, names: list[str], actions: list[str],
                        title: str, size: tuple[float, float] = (7.5, 2.4), dpi: float = 100) -> plt.Figure:
    """States drawn on the left, each beside action distributions as grouped bars on the right.

    images: [states] RGB arrays; probs [states, groups, actions], one bar colour per group (``names``);
    ``size``: (width, height per state) in inches. The figure is not registered with pyplot, so one kept
    for redrawing (the TensorBoard monitor's) is freed with its owner rather than piling up in pyplot.
    """
    fig = Figure(figsize=(size[0], size[1] * len(images)), dpi=dpi)
    axes = fig.subplots(len(images), 2, squeeze=False)
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


MOVES = ["up", "right", "down", "left"]


def action_names(n_actions: int) -> list[str]:
    """Names of an env's actions for plots: the gridworlds' four moves then keys ("key 4", … as TwoDoors
    numbers them), CartPole's pushes, else the action indices."""
    if n_actions == 2:
        return ["push left", "push right"]
    if n_actions >= 4:
        return [*MOVES, *(f"key {k}" for k in range(4, n_actions))]
    return [str(a) for a in range(n_actions)]
