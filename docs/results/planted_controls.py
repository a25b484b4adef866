"""Collect the planted controls' numbers into docs/results/planted_controls.json (see docs/planted_controls.md).

    .venv/bin/python docs/results/planted_controls.py RUNS_DIR

RUNS_DIR holds analysed runs of :data:`RUNS` (planted_rare, planted_partial, planted_partial45, planted_outlier,
planted_three); those it lacks keep their earlier entry. planted_partial and planted_partial45 were measured with the
first version of configs/planted_partial.yaml (mix 0.25); docs/results/planted_partial.py covers the current one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

RUNS = {"planted_rare": "configs/planted_rare.yaml",
        "planted_partial": "configs/planted_partial.yaml as of commit 5568d85 (mix 0.25)",
        "planted_partial45": "configs/planted_partial.yaml as of commit 5568d85 with mix 0.45, name planted_partial45",
        "planted_outlier": "configs/planted_rare.yaml with shares 47/48 and 1/48, name planted_outlier",
        "planted_three": "configs/planted_three.yaml"}


def control(run: Path, config: str) -> dict:
    found = json.loads((run / "analysis/basins.json").read_text())
    behavior = json.loads((run / "analysis/behavior.json").read_text())
    manifest = json.loads((run / "manifest.json").read_text())
    tv = np.array(behavior["total_variation"])
    group = np.array([manifest["seeds"][str(k)]["planted"] for k in behavior["seeds"]])
    same = (group[:, None] == group[None]) & ~np.eye(len(group), dtype=bool)
    shares = {}
    for name in sorted(set(group)):
        colour = [f["colour"] / (f["colour"] + f["shape"])
                  for f, g in zip(behavior["heldout_labels_greedy"], group, strict=True)
                  if g == name and f["colour"] + f["shape"] > 0]
        shares[name] = {"mean": round(float(np.mean(colour)), 3), "min": round(float(np.min(colour)), 3),
                        "max": round(float(np.max(colour)), 3)}
    return {
        "config": config, "seeds": len(group), "groups": {g: int((group == g).sum()) for g in sorted(set(group))},
        "small_groups": {g: [int(k) for k, h in zip(behavior["seeds"], group, strict=True) if h == g]
                         for g in sorted(set(group)) if (group == g).sum() < 5},
        "tv_within_groups": round(float(tv[same].mean()), 3),
        "tv_across_groups": round(float(tv[group[:, None] != group[None]].mean()), 3),
        "colour_share_of_decided_episodes_by_group": shares,
        "behavioural_basins": [{"size": b["size"], "label": b["label"], "share_ci": b["share_ci"]}
                               for b in found["behaviour"]["basins"]],
        "weight_basins": found["weights"]["clustering"]["k"], "agreement": found["agreement"],
        "planted_ari": found["planted_ari"], "stability": found["behaviour"]["stability"],
        "preference_verdict": found["preference_verdict"], "outliers": found["behaviour"]["outliers"]["outliers"],
    }


def main(runs_dir: str) -> None:
    """Summarise the runs of :data:`RUNS` found in ``runs_dir``; controls not found keep their entry from the
    JSON already written (each entry names the commit it was analysed at)."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    path = Path(__file__).with_suffix(".json")
    out = json.loads(path.read_text()) if path.exists() else {"hardware": "2-core x86-64 CPU, no GPU", "controls": {}}
    first = out.pop("commit", None)  # the first version named one commit for every control
    for entry in out["controls"].values():
        entry.setdefault("commit", first)
    out["controls"].update({name: {**control(Path(runs_dir) / name, config), "commit": commit}
                            for name, config in RUNS.items() if (Path(runs_dir) / name).exists()})
    path.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"→ {path}")


if __name__ == "__main__":
    main(*sys.argv[1:])
