"""Reports are HTML built from text that users and files control (seed errors, run names, setting
names): every template escapes it, so a ``<script>`` in it shows as text and never runs."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from typer.testing import CliRunner

from rlbasins.cli import app
from rlbasins.core.store import RunDir

SCRIPT = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


def test_a_seed_error_with_a_script_shows_as_text_in_the_report(trained: RunDir, tmp_path: Path) -> None:
    run = RunDir(shutil.copytree(trained.root, tmp_path / "cue"))
    manifest = run.manifest()
    manifest["seeds"]["4"].update(status="failed", error=f"RuntimeError: {SCRIPT}")
    run.write_manifest(manifest)
    for command in (["analyze", str(run.root), "--no-progress"], ["report", str(run.root)]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 0, result.output
    html = run.report_path.read_text()
    assert f"RuntimeError: {ESCAPED}" in html and SCRIPT not in html


def test_a_run_name_with_a_script_shows_as_text_in_the_comparison(trained: RunDir, tmp_path: Path) -> None:
    hostile = tmp_path / "<script>alert(1)"  # a directory name may hold any character but "/"
    hostile.symlink_to(trained.root, target_is_directory=True)
    out = tmp_path / "diff.html"
    result = CliRunner().invoke(app, ["compare", f"{hostile}:0", f"{trained.root}:1", "-o", str(out)])
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert "&lt;script&gt;alert(1):0@" in html and "<script>alert" not in html


def write_sweep_with_a_hostile_setting_name(sweep_json: Path, folder: Path) -> str:
    """The sweep report of ``sweep_json``'s result with its first setting renamed to a script (used by the
    sweep study's test, which has the only sweep result at hand)."""
    from rlbasins.report.sweep import write_sweep_report
    from rlbasins.studies.sweep import SweepResult

    result = SweepResult.load(sweep_json)
    hostile = dataclasses.replace(result, settings=[dataclasses.replace(result.settings[0], name=SCRIPT),
                                                   *result.settings[1:]])
    return write_sweep_report(hostile, folder).read_text()
