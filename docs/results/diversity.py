"""Diversity search on a shipped config → docs/results/diversity_<OUT>.json and docs/figures/diversity_<OUT>.png
(see docs/diversity.md).

    .venv/bin/python docs/results/diversity.py CONFIG RUNS_DIR OUT [--budget N] [--method M ...]

Runs ``rlbasins diversify CONFIG`` (resuming what RUNS_DIR already holds: finished runs are reused, so adding
a method later keeps the others' seeds) and writes its ``diversity.json`` with what a reader needs to trust it:
the command, the commit, the machine, the training seconds per method, each method's basins found by half and
by all of the budget, and whether it beats iid.
"""

from __future__ import annotations

import argparse
import base64
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

from rlbasins.core.config import load_config
from rlbasins.core.results import to_json
from rlbasins.report import figures
from rlbasins.studies.diversity import METHODS, diversify

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("runs_dir", type=Path)
    parser.add_argument("out")
    parser.add_argument("--budget", type=int)
    parser.add_argument("--method", action="append", choices=METHODS)
    args = parser.parse_args()
    started = time.perf_counter()
    result = diversify(load_config(args.config), args.runs_dir, methods=tuple(args.method or METHODS),
                       budget=args.budget, resume=True, show_progress=False)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    summary = {m.method: {"seeds": len(m.seeds), "env_steps": m.env_steps, "search_steps": m.search_steps,
                          "found_by_half_budget": result.found_at(m.method, result.budget / 2),
                          "found_by_budget": result.found_at(m.method, result.budget),
                          "beats_iid": result.beats_iid(m.method) if m.method != "iid" else None,
                          "rarest_basin_share": m.basin_shares[result.rarest_basin],
                          "rarest_basin_share_ci": m.basin_share_ci[result.rarest_basin],
                          "trained": m.trained, "pairs_split": m.pairs_split, "train_seconds": m.train_seconds}
               for m in result.methods}
    out = {"command": " ".join(["python", "docs/results/diversity.py", *sys.argv[1:]]), "commit": commit,
           "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, torch threads: 2 cores",
           "date": time.strftime("%Y-%m-%d"), "seconds_this_invocation": round(time.perf_counter() - started),
           "summary": summary, "result": to_json(result)}
    (ROOT / "docs" / "results" / f"diversity_{args.out}.json").write_text(json.dumps(out, indent=1) + "\n")
    image = figures.diversity(result).split(",", 1)[1]
    (ROOT / "docs" / "figures" / f"diversity_{args.out}.png").write_bytes(base64.b64decode(image))
    for name, line in summary.items():
        print(name, line)


if __name__ == "__main__":
    main()
