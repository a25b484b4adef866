"""The batched engine learns like SB3's PPO: same hyper-parameters, statistically the same result."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rliable.library import get_interval_estimates
from rliable.metrics import aggregate_iqm

from rlbasins.analysis.behavior import analyze_behavior
from rlbasins.config import load_config, parse_config
from rlbasins.train import train_experiment


def final_returns(engine: str, runs: Path, total_timesteps: int, seeds: int) -> np.ndarray:
    data = load_config("configs/cartpole.yaml").model_dump(mode="json")
    data.update(name=f"equivalence-{engine}", engine=engine)
    data["ppo"]["total_timesteps"] = total_timesteps
    data["seeds"]["count"] = seeds
    data["checkpoints"] = {"every": total_timesteps}
    run = train_experiment(parse_config(data), runs, show_progress=False)
    return np.array(analyze_behavior(run, show_progress=False).train_return)


@pytest.mark.slow
def test_batched_and_sb3_final_return_iqm_cis_overlap(tmp_path: Path) -> None:
    """Reduced scale (8 seeds × 20k CartPole steps, mid-way through learning); the note
    has the full-scale figures."""
    scores = {engine: final_returns(engine, tmp_path, 20_000, 8)[:, None] for engine in ("sb3", "batched")}
    point, interval = get_interval_estimates(scores, lambda x: np.array([aggregate_iqm(x)]), reps=2000)
    (sb3_low, sb3_high), (low, high) = interval["sb3"][:, 0], interval["batched"][:, 0]
    assert low <= sb3_high and sb3_low <= high, (point, interval)
    assert point["batched"][0] > 100  # and it does learn (random play scores about 20)
