"""Report figures stay readable at any seed count: a legend entry per seed only while there are few."""

from __future__ import annotations

import numpy as np
import pytest

from rlbasins.report import figures


@pytest.fixture
def captured(monkeypatch) -> list:
    """The matplotlib figures the report functions draw, kept instead of encoded."""
    kept = []
    monkeypatch.setattr(figures, "to_data_uri", lambda fig: kept.append(fig) or "data:image/png;base64,")
    return kept


@pytest.mark.parametrize("n_seeds", [4, 16, 256])
def test_training_curves_name_seeds_only_while_they_are_few(captured: list, n_seeds: int) -> None:
    rng = np.random.default_rng(0)
    steps, returns = np.arange(0, 2000, 100), rng.random((n_seeds, 20))
    figures.learning_curves(steps, returns, list(range(n_seeds)), bootstrap_reps=20,
                            highlight={"basin A: medoid, seed 3": 3, "basin B: medoid, seed 1": 1})
    legend = [t.get_text() for t in captured[0].axes[0].get_legend().get_texts()]
    per_seed = [t for t in legend if t.startswith("seed ")]
    if n_seeds <= figures.LEGEND_SEEDS:
        assert len(per_seed) == n_seeds
    else:
        assert per_seed == [] and len(legend) == 6  # the band, two medoids, the IQM, its CI and the mean
        assert f"10–90% of {n_seeds} seeds" in legend and "basin A: medoid, seed 3" in legend


@pytest.mark.parametrize("n_seeds", [8, 256])
def test_seed_axes_are_thinned_and_figures_bounded(captured: list, n_seeds: int) -> None:
    seeds = list(range(n_seeds))
    figures.seed_returns(seeds, {"train": [1.0] * n_seeds, "held-out": [0.5] * n_seeds})
    figures.strategy_fractions(seeds, [{"colour": 0.5, "shape": 0.3, "neither": 0.2}] * n_seeds,
                               ["colour", "shape", "neither"])
    figures.seed_matrix(np.zeros((n_seeds, n_seeds)), seeds, "agreement", "share")
    returns, strategies, matrix = captured
    seed_axes = [returns.axes[0].get_xticks(), strategies.axes[0].get_yticks(), matrix.axes[0].get_xticks(),
                 matrix.axes[0].get_yticks()]
    for ticks in seed_axes:
        assert len(ticks) == n_seeds if n_seeds <= 32 else 8 <= len(ticks) <= 24
    for fig in captured:
        width, height = fig.get_size_inches()
        assert width <= 14 and height <= 13.2
