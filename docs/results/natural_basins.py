"""The natural-basin study and its controls → docs/results/natural_basins.json (see docs/natural_basins.md).

    .venv/bin/python docs/results/natural_basins.py RUNS_DIR [NAME ...]

Runs ``configs/natural_basins.yaml`` (TwoDoors, no planted groups, the env's own reward) as shipped,
again with two other master seeds (``replicate``: 1; ``untried``: 5, a seed not tried while the config
was chosen), as the control with ``code_length: 0`` (either key opens either door, so there is no
door-specific skill to lock in to), and ``configs/natural_basins_rm.yaml`` (``rm``: PPO on a frozen learned
reward model, ``reward_models/below_bar/two_doors.yaml``), each through the whole pipeline (``rlbasins run``:
training, held-out behaviour, basins, barriers, symmetry test), and collects per run:

- training: each seed's greedy return on 200 training episodes (the optimum is 1: open a door);
- the probe: each seed's share of colour-door choices among its decided greedy episodes on every
  distinct held-out state once, its Wilson 95% interval and exact binomial p, and the undecided share;
- the basins: seeds significantly committed to each door (p < 0.01), their shares with Wilson CIs,
  the behavioural clustering, the weight-space clustering and their agreement (ARI with CI); the
  pipeline's weight-space distance here is the aligned barrier of the held-out decided share, which reads
  the probe, so the script also clusters the aligned barriers of the *training* return, which does not;
- the symmetry test of the colour and shape planes;
- greedy play on 500 training states per seed: the red-door share, the share of episodes that walk to
  the farther door where the doors' distances differ (0 for a policy that takes the nearer door), and why
  episodes fail: timeouts (no door opened in time) or jams (a wrong key).

Run names (default all): ``study``, ``replicate``, ``untried``, ``control``, ``rm``, ``quickstart``
(``configs/quickstart.yaml`` as shipped, 32 seeds). A run already trained and
analysed in RUNS_DIR is summarised as it is (its ``seconds`` then count the summary only).
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from envs.grid import OUTCOME_TIMEOUT, run_episodes
from envs.two_doors import TwoDoorsCore
from rlbasins.analysis.basins import ari_with_ci, spectral_basins
from rlbasins.analysis.behavior import BehaviorResult
from rlbasins.analysis.pipeline import analyze_run, load_results
from rlbasins.core.checkpoints import load_policy
from rlbasins.core.config import parse_config
from rlbasins.core.stats import wilson_interval
from rlbasins.core.store import RunDir
from rlbasins.train import train_experiment

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
ALPHA = 0.01
RUNS = {                                  # name → changes to the shipped config
    "study": {},
    "replicate": {"seed": 1},
    "untried": {"seed": 5},               # a master seed not tried while the config was chosen
    "control": {"env_kwargs": {"code_length": 0}},
    "rm": {"config": "natural_basins_rm.yaml"},   # the same on the learned reward model (run name natural_basins_rm)
    "quickstart": {"config": "quickstart.yaml"},  # make demo's 32-seed, 2.5-minute version
}


def config(name: str, changes: dict) -> dict:
    raw = yaml.safe_load((CONFIGS / changes.get("config", "natural_basins.yaml")).read_text())
    raw["name"] = f"natural_basins_{name}"
    raw["seed"] = changes.get("seed", raw["seed"])
    raw["env"]["kwargs"] = {**raw["env"]["kwargs"], **changes.get("env_kwargs", {})}
    return raw


@torch.no_grad()
def training_behaviour(run: RunDir, kwargs: dict, seeds: list[int], n: int = 500) -> dict:
    """Greedy play of ``seeds`` on ``n`` training states: per seed the red-door share of the episodes that
    reached a door, and the share that went to the *farther* door where the two differ in distance (a policy
    that just walks to the nearer door scores 0 there); over seeds, the mean share of episodes that time
    out and that jam a door."""
    states = TwoDoorsCore.training_states(n, 777, **kwargs)
    core = TwoDoorsCore(num_envs=n, **kwargs)
    distance = (states.objects - states.agent[:, None]).abs().sum(-1)             # [n, 2]: red door, square door
    unequal = distance[:, 0] != distance[:, 1]
    farther = 1 + (distance[:, 1] > distance[:, 0]).long()                       # outcome code of the farther door
    red, past, timeouts, jams = [], [], [], []
    for k in seeds:
        policy, _ = load_policy(run, k)
        outcome, returns = run_episodes(core, states, lambda obs, state, policy=policy: policy(obs)[0].argmax(-1))
        door = outcome != OUTCOME_TIMEOUT
        red.append(float((outcome[door] == 1).float().mean()))
        past.append(float((outcome[unequal & door] == farther[unequal & door]).float().mean()))
        timeouts.append(float((~door).float().mean()))
        jams.append(float((door & (returns == 0)).float().mean()))
    return {"red_door_share": red, "farther_door_share": past, "training_states": n,
            "unequal_distance_states": int(unequal.sum()),
            "failures": {"timeouts": float(np.mean(timeouts)), "jams": float(np.mean(jams))}}


def training_return_basins(run: RunDir, behaviour_labels: list[int]) -> dict:
    """Weight-space basins that do not read the held-out probe: spectral clustering of the aligned pairwise
    barriers of the *training* return (greedy, on ``episodes`` training episodes per path point, so barriers
    move in steps of 1/episodes), their agreement with the behavioural basins (ARI, CI over seeds), and the
    mean barrier within and across behavioural basins."""
    connectivity = json.loads((run.analysis_dir / "connectivity.json").read_text())
    barrier = np.array(connectivity["matrices"]["aligned"]["train_return"], dtype=float)     # [S, S]
    clustering = spectral_basins(barrier)
    agreement = ari_with_ci(behaviour_labels, clustering.labels)
    labels = np.asarray(behaviour_labels)
    upper = np.triu_indices(len(labels), 1)
    same = (labels[:, None] == labels[None])[upper]
    return {"k": clustering.k, "sizes": np.bincount(clustering.labels).tolist(), "labels": clustering.labels,
            "episodes_per_point": connectivity["episodes"],
            "ari_with_behaviour": {"ari": agreement.ari, "ci": [agreement.low, agreement.high],
                                   "undefined": agreement.undefined},
            "mean_barrier": {"within_behaviour_basins": float(barrier[upper][same].mean()) if same.any() else None,
                             "across": float(barrier[upper][~same].mean()) if (~same).any() else None}}


def summary(run: RunDir, kwargs: dict) -> dict:
    results = load_results(run)
    behavior = BehaviorResult.load(run.analysis_dir / "behavior.json")
    basins, symmetry = results.basins, results.symmetry
    test = behavior.preference_greedy
    lean, p = test.preference, test.preference_p
    significant = [(k, x) for k, (x, q) in enumerate(zip(lean, p, strict=True)) if q is not None and q < ALPHA]
    colour, shape = [k for k, x in significant if x > 0.5], [k for k, x in significant if x < 0.5]
    n = len(lean)
    undecided = [f["neither"] for f in behavior.heldout_labels_greedy]

    def share(members: list[int]) -> dict:
        return {"seeds": len(members), "share": len(members) / n, "ci": wilson_interval(len(members), n).tolist()}

    def clusters(clustering, described) -> dict:
        out = {"k": clustering.k, "criterion": clustering.criterion, "labels": clustering.labels}
        if described:
            out["basins"] = [{"size": b.size, "share": b.share, "share_ci": b.share_ci, "label": b.label,
                              "label_purity": b.label_purity} for b in described]
        return out

    agreement = basins.agreement
    return_basins = training_return_basins(run, basins.behavior.clustering.labels)
    return {
        "seeds": n, "train_return": behavior.train_return,
        "train_return_min": float(min(behavior.train_return)),
        "seeds_at_95pct_of_optimum": int(sum(r >= 0.95 for r in behavior.train_return)),
        "probe_states": test.n_distinct_states,
        "undecided": {"mean": float(np.mean(undecided)), "max": float(np.max(undecided))},
        "colour_share_of_decided": lean, "colour_share_ci": test.preference_ci, "binomial_p": p,
        "committed": {"colour": share(colour), "shape": share(shape),
                      "either": share(colour + shape), "alpha": ALPHA},
        "lean_histogram": np.histogram([x for x in lean if x is not None], bins=10, range=(0, 1))[0].tolist(),
        "bimodality_coefficient": test.bimodality_coefficient, "homogeneity_p": test.homogeneity_p,
        "preference_verdict": test.verdict,
        "behaviour_basins": clusters(basins.behavior.clustering, basins.behavior.basins),
        "weight_basins": {"distance": basins.weights.distance,
                          **clusters(basins.weights.clustering, basins.weights.basins)},
        "agreement_ari": {"ari": agreement.ari, "ci": [agreement.low, agreement.high],
                          "undefined": agreement.undefined},
        "training_return_basins": return_basins,
        "symmetry": None if symmetry is None else {"passed": symmetry.passed, "min_asymmetry": symmetry.min_asymmetry},
        "greedy_training_play": training_behaviour(run, kwargs, behavior.seeds),
    }


def main(runs_dir: str, names: list[str]) -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=ROOT).stdout.strip()
    path = Path(__file__).with_suffix(".json")
    out = json.loads(path.read_text()) if path.exists() else {"runs": {}}
    for name in names or list(RUNS):
        start = time.perf_counter()
        cfg = parse_config(config(name, RUNS[name]), base_dir=CONFIGS)   # base_dir: the reward model's path
        run = RunDir(Path(runs_dir) / cfg.name)
        analysed = (run.analysis_dir / "basins.json").exists() and run.manifest()["status"] == "finished"
        if not analysed:                  # a finished and analysed run is summarised again as it is
            run = train_experiment(cfg, Path(runs_dir), overwrite=True, show_progress=False)
            analyze_run(run, show_progress=False)
        line = summary(run, cfg.env.kwargs)
        line.update(config=config(name, RUNS[name]), trained_at_commit=run.manifest()["git_commit"][:7],
                    summarised_at_commit=commit, seconds=round(time.perf_counter() - start),
                    hardware=f"2-core {platform.machine()} CPU, no GPU",
                    command=f"python docs/results/natural_basins.py RUNS_DIR {name}")
        out["runs"][name] = line
        c = line["committed"]
        print(f"{name}: train return ≥ 0.95 for {line['seeds_at_95pct_of_optimum']}/{line['seeds']} (min "
              f"{line['train_return_min']:.2f}); undecided {line['undecided']['mean']:.1%}; committed colour "
              f"{c['colour']['seeds']}, shape {c['shape']['seeds']}; behaviour k={line['behaviour_basins']['k']}, "
              f"weights k={line['weight_basins']['k']}, ARI {line['agreement_ari']}", flush=True)
        path.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"→ {path}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
