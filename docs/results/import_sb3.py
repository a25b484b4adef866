"""The worked example of docs/import.md: seeds trained by a plain SB3 script, imported, analysed, reported.

    .venv/bin/python docs/examples/train_sb3_seeds.py CartPole-v1 ZIPS/cartpole --seeds 8 --steps 100000
    .venv/bin/python docs/examples/train_sb3_seeds.py rlbasins/TwoDoors-v0 ZIPS/two_doors --seeds 8 --steps 204800
    .venv/bin/python docs/results/import_sb3.py ZIPS RUNS_DIR      # → docs/results/import_sb3.json

It runs ``rlbasins import-sb3``, ``analyze`` and ``report`` on each folder (TwoDoors with ``--config
configs/quickstart.yaml``, for the env's kwargs and the analysis settings), checks every imported policy's
action probabilities against SB3's own ``policy.get_distribution`` on the held-out states, and collects the
headline numbers.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import torch
from stable_baselines3 import PPO

from envs.suites import get_suite
from rlbasins.analysis.behavior import BehaviorResult
from rlbasins.analysis.pipeline import load_results
from rlbasins.core.checkpoints import load_policy
from rlbasins.core.config import load_config
from rlbasins.core.heldout import evaluation_sample, heldout_observations
from rlbasins.core.stats import wilson_interval
from rlbasins.core.store import RunDir

ALPHA = 0.05
RUNS = {"cartpole": ["--env", "CartPole-v1"], "two_doors": ["--config", "configs/quickstart.yaml"]}


def _cli(*args: str) -> float:
    """Run ``rlbasins ARGS`` and return its wall time in seconds."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "rlbasins", *args], check=True)
    return round(time.perf_counter() - start, 1)


def largest_probability_gap(run: RunDir) -> float:
    """max |rlbasins − SB3| action probability over every seed's last zip and every held-out state."""
    cfg = load_config(run.config_path)
    obs = heldout_observations(cfg, get_suite(cfg.env.id), evaluation_sample(cfg).states).float()
    gap = 0.0
    for k, seed in run.manifest()["seeds"].items():
        policy, _ = load_policy(run, int(k))
        model = PPO.load(seed["sources"][-1]["file"], device="cpu")  # SB3 itself, on our own files
        with torch.no_grad():
            ours, theirs = policy.action_probs(obs), model.policy.get_distribution(obs).distribution.probs
        gap = max(gap, float((ours - theirs).abs().max()))
    return gap


def summary(run: RunDir, seconds: dict[str, float]) -> dict:
    behavior = BehaviorResult.load(run.analysis_dir / "behavior.json")
    basins = load_results(run).basins
    n = len(behavior.seeds)
    out = {"seeds": n, "checkpoints_per_seed": len(run.seed(0).entries()), "seconds": seconds,
           "train_return": behavior.train_return, "heldout_return_greedy": behavior.heldout_return_greedy,
           "largest_probability_gap_vs_sb3": largest_probability_gap(run),
           "behaviour_basins": {"k": basins.behavior.clustering.k, "labels": basins.behavior.clustering.labels},
           "weight_basins": {"k": basins.weights.clustering.k, "labels": basins.weights.clustering.labels},
           "agreement_ari": {"ari": basins.agreement.ari, "ci": [basins.agreement.low, basins.agreement.high],
                             "undefined": basins.agreement.undefined}}
    test = behavior.preference_greedy
    if test is not None:  # an env with two strategies: each seed's lean on the probe
        lean, p = test.preference, test.preference_p
        committed = {side: [k for k, (x, q) in enumerate(zip(lean, p, strict=True))
                            if q is not None and q < ALPHA and (x > 0.5) == (side == "colour")]
                     for side in ("colour", "shape")}
        out["probe"] = {
            "states": test.n_distinct_states, "colour_share_of_decided": lean, "binomial_p": p,
            "undecided_mean": sum(f["neither"] for f in behavior.heldout_labels_greedy) / n,
            "committed": {side: {"seeds": len(m), "ci": wilson_interval(len(m), n).tolist()}
                          for side, m in committed.items()}, "alpha": ALPHA}
    return out


def main(zips: str, runs_dir: str) -> None:
    out = {}
    for name, env in RUNS.items():
        folders = sorted(str(p) for p in (Path(zips) / name).glob("seed*"))
        target = str(Path(runs_dir) / f"{name}_sb3")
        seconds = {"import": _cli("import-sb3", *folders, *env, "-o", target, "--overwrite"),
                   "analyze": _cli("analyze", target, "--no-progress"), "report": _cli("report", target)}
        out[name] = summary(RunDir(target), seconds)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    out.update(commit=commit, hardware="2-core x86-64 CPU, no GPU", alpha=ALPHA)
    path = Path(__file__).with_suffix(".json")
    path.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(json.dumps({k: (v if not isinstance(v, dict) else {kk: vv for kk, vv in v.items() if kk in (
        "behaviour_basins", "weight_basins", "probe", "largest_probability_gap_vs_sb3", "seconds")})
        for k, v in out.items()}, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:3])
