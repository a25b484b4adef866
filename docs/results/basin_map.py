"""The basin map of docs/basin_map.md → docs/results/basin_map.json and docs/figures/basin_map.png.

    .venv/bin/python docs/results/basin_map.py RUNS_DIR [CONFIG]

Runs ``rlbasins map`` on ``configs/basin_map.yaml`` (or CONFIG) into RUNS_DIR — points already finished
there are reused, so the map can be extended knob by knob — and commits its result with the command, the
commit, the hardware and the wall-clock seconds. Run directories are recorded by name only (they live in
RUNS_DIR, which is not part of the repository).
"""

from __future__ import annotations

import base64
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from rlbasins.core.config import load_config
from rlbasins.core.results import to_json
from rlbasins.report.figures import basin_map
from rlbasins.studies.basin_map import run_basin_map

ROOT = Path(__file__).resolve().parents[2]


def main(runs_dir: str, config: str = str(ROOT / "configs" / "basin_map.yaml")) -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=ROOT).stdout.strip()
    cfg = load_config(config)
    start = time.perf_counter()
    result = run_basin_map(cfg, runs_dir)
    data = to_json(result)
    for point in (data["base"], *data["points"]):
        point["run_dir"] = Path(point["run_dir"]).name
    name = Path(config).stem
    out = {"command": f"python docs/results/basin_map.py RUNS_DIR configs/{Path(config).name}",
           "commit": commit, "hardware": f"{os.cpu_count()}-core {platform.machine()} CPU, no GPU",
           "seconds": round(time.perf_counter() - start),
           "train_seconds": round(sum(p["train_seconds"] or 0 for p in (data["base"], *data["points"])
                                      if p["knob"] is None or p["run_dir"] != data["base"]["run_dir"])),
           "map": data}
    path = ROOT / "docs" / "results" / f"{name}.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    figure = ROOT / "docs" / "figures" / f"{name}.png"
    figure.write_bytes(base64.b64decode(basin_map(result).split(",", 1)[1]))
    print(f"{path}\n{figure}")


if __name__ == "__main__":
    main(*sys.argv[1:])
