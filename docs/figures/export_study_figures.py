"""Save the training-length, basin-count, init-map and seed-factor figures of an analysed run as PNG files
(for the docs pages).

    .venv/bin/python docs/figures/export_study_figures.py RUN_DIR PREFIX [OUT_DIR]

writes OUT_DIR/PREFIX_<figure>.png (OUT_DIR defaults to docs/figures) for every figure of these studies
that the run's analysis measured — the same images as the report's "Training length", "Basin count" and
"Init-space map" and "Seed factors" sections (rlbasins.report.study_figures).
"""

from __future__ import annotations

import base64
import sys
from pathlib import Path

from rlbasins.core.store import RunDir
from rlbasins.report import study_figures


def main(run_dir: str, prefix: str, out_dir: str = "docs/figures") -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, uri in study_figures(RunDir(Path(run_dir))).items():
        path = out / f"{prefix}_{name.removeprefix('fig_')}.png"
        path.write_bytes(base64.b64decode(uri.split(",", 1)[1]))
        print(f"{path} ({path.stat().st_size // 1024} kB)")


if __name__ == "__main__":
    main(*sys.argv[1:])
