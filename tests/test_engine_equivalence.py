"""The batched engine learns like SB3's PPO: same hyper-parameters, statistically the same result.

Reduced scale (8 seeds per engine, mid-way through learning); ``rlbasins bench equivalence
CONFIG --seeds 32`` gives the full-scale figures, which README.md lists per env.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rlbasins.bench import bench_equivalence

# config, env steps per seed, a final-return IQM that random play stays well below
CASES = {
    "CartPole-v1": ("configs/cartpole.yaml", 20_000, 100.0),        # random play scores about 20
    "GoalOrPlace": ("configs/goal_or_place.yaml", 4096, 0.5),      # about 0.17
    "CueConflict": ("configs/cue_conflict.yaml", 20_480, 0.4),     # about 0.25
    "TaskOrProxy": ("configs/task_or_proxy.yaml", 20_480, 0.4),    # about 0.25
}


@pytest.mark.slow
@pytest.mark.parametrize("env", list(CASES))
def test_batched_and_sb3_final_return_iqm_cis_overlap(tmp_path: Path, env: str) -> None:
    config, steps, learned = CASES[env]
    result = bench_equivalence(Path(config), seeds=8, steps=steps, runs_dir=tmp_path)
    assert result["cis_overlap"], result["engines"]
    assert result["engines"]["batched"]["iqm"] > learned, result["engines"]
