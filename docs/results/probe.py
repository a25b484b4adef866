"""The adjacent held-out probe on trained policies → docs/results/probe.json (see docs/symmetry.md).

    .venv/bin/python docs/results/probe.py RUNS_DIR

Trains each run below (16 seeds × 61,440 env steps on CueConflict's own reward, batched engine, an MLP
[64, 64] or a CNN (conv [8], then [32]), master seed 0) into RUNS_DIR and evaluates every seed greedily
once on each of the 188 distinct held-out states of ``probe: adjacent`` (both single-cue objects next
to the agent), and on 188 states of the default ``halfway`` layout (the probe only changes the held-out states, not
training, so both are read from the same checkpoints):

- ``planted``: seeds alternate between training where only the colour pays and where only the shape
  pays (the known truth the probe must recover);
- ``nuisance0.5`` and ``duplicated``: every seed on the same reward, with and without the nuisance
  that breaks the symmetry of the two cues; ``cnn_*``: the same with a CNN policy.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from rlbasins.analysis.behavior import analyze_behavior
from rlbasins.core.config import parse_config
from rlbasins.core.store import RunDir, atomic_write_bytes
from rlbasins.train import train_experiment

N_STATES = 188                                 # every adjacent state once (CueConflict, size 5)
MLP = {"hidden_sizes": [64, 64]}
CNN = {"conv_channels": [8], "hidden_sizes": [32]}
RUNS = {                                       # name → (env kwargs, planted groups, policy)
    "planted": ({}, [{"label": "colour", "kwargs": {"informative": "colour"}},
                     {"label": "shape", "kwargs": {"informative": "shape"}}], MLP),
    "nuisance0.5": ({"nuisance": 0.5}, None, MLP),
    "duplicated": ({}, None, MLP),
    "cnn_nuisance0.5": ({"nuisance": 0.5}, None, CNN),
    "cnn_duplicated": ({}, None, CNN),
}


def config(name: str, kwargs: dict, planted: list | None, policy: dict, probe: str) -> dict:
    return {
        "name": name, "seed": 0, "device": "cpu", "engine": "batched",
        "env": {"id": "rlbasins/CueConflict-v0", "kwargs": {**kwargs, "probe": probe}, "num_envs": 8,
                "planted": planted},
        "policy": policy,
        "ppo": {"total_timesteps": 61440, "n_steps": 128, "batch_size": 256, "n_epochs": 4, "gamma": 0.95,
                "gae_lambda": 0.9, "learning_rate": 1e-3, "ent_coef": 0.01},
        "seeds": {"count": 16}, "checkpoints": {"every": 61440},
        "analysis": {"heldout": {"n_states": N_STATES, "n_episodes": N_STATES}, "train_episodes": 200}}


def summary(run: RunDir, planted: list | None) -> dict:
    behavior = analyze_behavior(run, show_progress=False)
    labels = behavior.labels[:2]
    test = behavior.preference_greedy
    undecided = [f["neither"] for f in behavior.heldout_labels_greedy]
    manifest = run.manifest()
    truth = [manifest["seeds"][str(k)].get("planted") for k in behavior.seeds] if planted else None
    preferred = behavior.preferred_strategies()
    return {
        "seeds": behavior.seeds, "train_return": behavior.train_return,
        "undecided_share": {"mean": float(np.mean(undecided)), "max": float(np.max(undecided)), "per_seed": undecided},
        f"{labels[0]}_share_of_decided": test.preference, f"{labels[0]}_share_ci": test.preference_ci,
        "binomial_p": test.preference_p,
        "significant_at_0.01": sum(p is not None and p < 0.01 for p in test.preference_p),
        "committed": {labels[0]: test.committed_a, labels[1]: test.committed_b, "of": test.n_seeds},
        "homogeneity_p": test.homogeneity_p, "bimodality_coefficient": test.bimodality_coefficient,
        "verdict": test.verdict,
        "lean_sd_across_seeds": float(np.std([p for p in test.preference if p is not None])),
        "preferred": preferred, "planted": truth,
        "planted_recovered": None if truth is None else sum(p == t for p, t in zip(preferred, truth, strict=True)),
    }


def main(runs_dir: str) -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    results = {}
    for name, (kwargs, planted, policy) in RUNS.items():
        start = time.perf_counter()
        cfg = parse_config(config(name, kwargs, planted, policy, "adjacent"))
        run = train_experiment(cfg, Path(runs_dir), overwrite=True, show_progress=False)
        results[name] = {"env_kwargs": kwargs, "policy": policy, "adjacent": summary(run, planted)}
        # the same checkpoints on the halfway layout: only the held-out states differ
        halfway = parse_config(config(name, kwargs, planted, policy, "halfway")).model_dump(mode="json")
        atomic_write_bytes(run.config_path, json.dumps(halfway).encode())      # JSON is valid YAML
        results[name]["halfway"] = summary(run, planted)
        results[name]["seconds"] = round(time.perf_counter() - start, 1)
        line = results[name]["adjacent"]
        print(f"{name}: undecided {line['undecided_share']['mean']:.1%} (halfway "
              f"{results[name]['halfway']['undecided_share']['mean']:.1%}), committed {line['committed']}, "
              f"planted recovered {line['planted_recovered']}", flush=True)
    out = {"commit": commit, "hardware": f"2-core {platform.machine()} CPU, no GPU",
           "command": "python docs/results/probe.py RUNS_DIR", "seeds": 16, "env_steps": 61440,
           "heldout_states": N_STATES, "runs": results}
    path = Path(__file__).with_suffix(".json")
    path.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"→ {path}")


if __name__ == "__main__":
    main(sys.argv[1])
