"""configs/natural_basins.yaml: with no planted groups, TwoDoors seeds commit to different doors."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlbasins.analysis.behavior import analyze_behavior
from rlbasins.core.config import load_config, parse_config
from rlbasins.train import train_experiment


@pytest.mark.slow
def test_seeds_alone_commit_to_both_doors(tmp_path: Path) -> None:
    """The shipped study reduced to 16 seeds × 204,800 steps, master seed 2 (docs/natural_basins.md measured
    master seeds 0, 5 and 1 at 819,200 steps: 64 of 64 seeds committed in each, 33, 34 and 31 of them to the
    square door). A lean counts when its exact binomial test over the 104 distinct probe states gives
    p < 0.01."""
    data = load_config("configs/natural_basins.yaml").model_dump(mode="json")
    data.update(name="natural-reduced", seed=2)
    data["ppo"]["total_timesteps"] = 204_800
    data["seeds"]["count"] = 16
    data["checkpoints"] = {"every": 204_800}
    run = train_experiment(parse_config(data), tmp_path, show_progress=False)
    test = analyze_behavior(run, show_progress=False).preference_greedy
    committed = [lean for lean, p in zip(test.preference, test.preference_p, strict=True) if p < 0.01]
    assert sum(lean > 0.5 for lean in committed) >= 1 and sum(lean < 0.5 for lean in committed) >= 1, test
    assert len(committed) >= 8 and test.verdict == "basins", test
