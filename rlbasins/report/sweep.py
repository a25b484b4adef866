"""``sweep.html``: the scale and architecture sweep (:mod:`rlbasins.studies.sweep`) on one page, with links to
every member run's report."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rlbasins.core.store import atomic_write_bytes
from rlbasins.report import METRIC_NAMES, METRIC_UNITS, figures, template


def sweep_figures(sweep: Any) -> dict[str, str]:
    """The sweep's figures as PNG data URIs, by name (shares with CI bands, stacked shares)."""
    return {"fig_shares": figures.sweep_shares(sweep), "fig_stacked": figures.sweep_stacked(sweep)}


def write_sweep_report(sweep: Any, folder: Path) -> Path:
    """Render ``folder/sweep.html`` from a :class:`~rlbasins.studies.sweep.SweepResult` (the CLI passes it; the
    report layer never imports the studies)."""
    path = Path(folder) / "sweep.html"
    reports = {s.name: Path(os.path.relpath(Path(s.run_dir) / "report.html", path.parent)).as_posix()
               for s in sweep.settings}
    html = template("sweep.html.j2").render(
        sweep=sweep, reports=reports, metric_names=METRIC_NAMES, metric_units=METRIC_UNITS,
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), **sweep_figures(sweep))
    atomic_write_bytes(path, html.encode())
    return path
