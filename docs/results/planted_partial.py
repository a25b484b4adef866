"""Partial separation: which behavioural distance recovers planted groups whose leans differ but whose held-out
action distributions overlap? → docs/results/planted_partial.json (docs/planted_controls.md).

    .venv/bin/python docs/results/planted_partial.py RUNS_DIR

RUNS_DIR holds the analysed runs of :data:`RUNS`. For each, both behavioural distances are clustered here (the
same spectral clustering as the pipeline), whatever the run's own ``analysis.basins.distance``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from rlbasins.analysis.basins import ari_with_ci, spectral_basins
from rlbasins.analysis.behavior import strategy_distance_matrix

RUNS = {"planted_partial35": "configs/planted_partial.yaml with mix 0.35 in both groups, name planted_partial35",
        "planted_partial": "configs/planted_partial.yaml (mix 0.4)",
        "planted_partial45": "configs/planted_partial.yaml with mix 0.45 in both groups, name planted_partial45"}


def partial(run: Path, config: str) -> dict:
    behavior = json.loads((run / "analysis/behavior.json").read_text())
    manifest = json.loads((run / "manifest.json").read_text())
    group = np.array([manifest["seeds"][str(k)]["planted"] for k in behavior["seeds"]])
    codes = [sorted(set(group)).index(g) for g in group]
    same = (group[:, None] == group[None]) & ~np.eye(len(group), dtype=bool)
    across = group[:, None] != group[None]
    shares = np.load(run / "analysis/heldout_strategy_shares.npy", allow_pickle=False)
    distances = {"actions": np.array(behavior["total_variation"]), "strategies": strategy_distance_matrix(shares)}
    leans = {}
    for name in sorted(set(group)):
        colour = [f["colour"] / (f["colour"] + f["shape"]) for f, g in
                  zip(behavior["heldout_labels_greedy"], group, strict=True) if g == name and f["colour"] + f["shape"]]
        leans[name] = {"min": round(min(colour), 3), "max": round(max(colour), 3), "mean": round(np.mean(colour), 3)}
    out = {"config": config, "seeds": len(group), "distinct_states": shares.shape[1],
           "neither_share_mean": round(float(np.mean([f["neither"] for f in behavior["heldout_labels_greedy"]])), 3),
           "colour_share_of_decided_episodes_by_group": leans}
    for name, d in distances.items():
        found = spectral_basins(d)
        agreement = ari_with_ci(codes, found.labels)
        out[name] = {"within": round(float(d[same].mean()), 3), "across": round(float(d[across].mean()), 3),
                     "basins": found.k, "planted_ari": None if agreement.ari is None else round(agreement.ari, 3),
                     "planted_ari_ci": None if agreement.ari is None else [round(agreement.low, 3),
                                                                           round(agreement.high, 3)]}
    return out


def main(runs_dir: str) -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    out = {"commit": commit, "hardware": "2-core x86-64 CPU, no GPU",
           "runs": {name: partial(Path(runs_dir) / name, config) for name, config in RUNS.items()}}
    path = Path(__file__).with_suffix(".json")
    path.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"→ {path}")


if __name__ == "__main__":
    main(sys.argv[1])
