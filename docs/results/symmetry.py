"""The symmetry test of every two-strategy env: the two-cue envs with and without ``nuisance`` (TaskOrProxy also
with ``smoke``), TwoDoors, and GoalOrPlace with a fixed goal and a goal region → docs/results/symmetry.json
(see docs/symmetry.md).

    .venv/bin/python docs/results/symmetry.py RUNS_DIR

Trains each variant below (8 seeds × 20,480 env steps on the env's own reward, batched engine, master
seed 0) into RUNS_DIR and runs :func:`rlbasins.analysis.symmetry.symmetry_test` on it.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from pathlib import Path

from rlbasins.analysis.symmetry import symmetry_test
from rlbasins.core.config import parse_config
from rlbasins.train import train_experiment

MLP = {"hidden_sizes": [64, 64]}
CNN = {"conv_channels": [8], "hidden_sizes": [32]}
VARIANTS = {                                   # name → (env id, env kwargs, policy)
    "cue_conflict_mlp": ("rlbasins/CueConflict-v0", {}, MLP),
    "cue_conflict_cnn": ("rlbasins/CueConflict-v0", {}, CNN),
    "task_or_proxy_mlp": ("rlbasins/TaskOrProxy-v0", {}, MLP),
    "cue_conflict_nuisance0.1_mlp": ("rlbasins/CueConflict-v0", {"nuisance": 0.1}, MLP),
    "cue_conflict_nuisance0.5_mlp": ("rlbasins/CueConflict-v0", {"nuisance": 0.5}, MLP),
    "cue_conflict_nuisance0.5_cnn": ("rlbasins/CueConflict-v0", {"nuisance": 0.5}, CNN),
    "task_or_proxy_nuisance0.5_mlp": ("rlbasins/TaskOrProxy-v0", {"nuisance": 0.5}, MLP),
    "task_or_proxy_smoke0.5_mlp": ("rlbasins/TaskOrProxy-v0", {"smoke": 0.5}, MLP),
    "task_or_proxy_smoke0.5_cnn": ("rlbasins/TaskOrProxy-v0", {"smoke": 0.5}, CNN),
    "two_doors_mlp": ("rlbasins/TwoDoors-v0", {"size": 4, "code_length": 1}, MLP),
    "goal_or_place_mlp": ("rlbasins/GoalOrPlace-v0", {}, MLP),
    "goal_or_place_region2_mlp": ("rlbasins/GoalOrPlace-v0", {"region": 2}, MLP),
    "goal_or_place_region3_mlp": ("rlbasins/GoalOrPlace-v0", {"region": 3}, MLP),
}


def config(name: str, env_id: str, kwargs: dict, policy: dict):
    return parse_config({
        "name": name, "seed": 0, "device": "cpu", "engine": "batched",
        "env": {"id": env_id, "kwargs": kwargs, "num_envs": 8}, "policy": policy,
        "ppo": {"total_timesteps": 20480, "n_steps": 128, "batch_size": 256, "n_epochs": 4, "gamma": 0.95,
                "gae_lambda": 0.9, "learning_rate": 1e-3, "ent_coef": 0.01},
        "seeds": {"count": 8}, "checkpoints": {"every": 20480}, "analysis": {"enabled": False}})


def main(runs_dir: str) -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    results = {}
    for name, (env_id, kwargs, policy) in VARIANTS.items():
        cfg = config(name, env_id, kwargs, policy)
        start = time.perf_counter()
        run = train_experiment(cfg, Path(runs_dir), overwrite=True, show_progress=False)
        found = symmetry_test(run, cfg, list(range(cfg.seeds.count)))
        results[name] = {"env_id": env_id, "env_kwargs": kwargs, "policy": policy, "passed": found.passed,
                         "min_asymmetry": found.min_asymmetry, "threshold": found.threshold,
                         "statistic": found.statistic, "asymmetry": found.asymmetry,
                         "shared_change": found.shared_change,
                         "seconds": round(time.perf_counter() - start, 1)}
        print(f"{name}: {'PASS' if found.passed else 'FAIL'} min asymmetry {found.min_asymmetry:.2g}", flush=True)
    out = {"commit": commit, "hardware": f"2-core {platform.machine()} CPU, no GPU",
           "command": "python docs/results/symmetry.py RUNS_DIR", "seeds": 8, "env_steps": 20480,
           "variants": results}
    path = Path(__file__).with_suffix(".json")
    path.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"→ {path}")


if __name__ == "__main__":
    main(sys.argv[1])
