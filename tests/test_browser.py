"""The report and the compare page in a real browser (headless Chromium): no console error, every
image decodes, the sections are there, and ``--screenshots`` writes PNGs.

Chromium and selenium are installed on first use where that can be done (root and a package
registry); elsewhere the test is skipped and says why.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rlbasins.cli import app
from rlbasins.core.config import parse_config
from rlbasins.core.store import RunDir
from rlbasins.train import train_experiment
from tests.conftest import tiny_cueconflict_config

pytestmark = pytest.mark.browser

INSTALL_TIMEOUT_S = 300
REPORT_SECTIONS = {"summary", "training", "heldout", "basins", "connectivity", "early", "seeds", "provenance"}
COMPARE_SECTIONS = {"summary", "by-type", "disagreement", "interpolation"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _install(command: list[str], what: str) -> None:
    """Run an install command quietly; skip the test with the reason if it cannot be done."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S,
                              env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"{what} is missing and `{' '.join(command)}` failed: {exc}")
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["no output"]
        pytest.skip(f"{what} is missing and `{' '.join(command)}` failed (exit {done.returncode}): {last[0]}")


@pytest.fixture(scope="module")
def browser() -> None:
    """selenium, chromium and chromedriver, installed here if missing; a skip with the reason otherwise."""
    if importlib.util.find_spec("selenium") is None:
        _install([sys.executable, "-m", "pip", "install", "--quiet", "selenium"], "the selenium package")
        importlib.invalidate_caches()
    from rlbasins.report.browser import BrowserUnavailable, find_chromium

    try:
        find_chromium()
    except BrowserUnavailable as missing:
        if shutil.which("apt-get") is None or os.geteuid() != 0:
            pytest.skip(f"{missing} (apt-get as root is not available here)")
        _install(["apt-get", "install", "-y", "-q", "chromium", "chromium-driver"], "chromium")
        find_chromium()


@pytest.fixture(scope="module")
def reported(tmp_path_factory) -> RunDir:
    """5 CueConflict seeds (as the `trained` fixture of test_connectivity_and_basins), analysed."""
    cfg = tiny_cueconflict_config()
    run = train_experiment(parse_config(cfg), tmp_path_factory.mktemp("runs"), show_progress=False)
    result = CliRunner().invoke(app, ["analyze", str(run.root), "--no-progress"])
    assert result.exit_code == 0, result.output
    return run


def _assert_renders(page: Path, shots: Path, sections: set[str]) -> None:
    from rlbasins.report.browser import open_in_browser

    check = open_in_browser(page, shots)
    assert check.console_errors == []
    assert check.images > 0 and check.broken_images == []
    assert sections <= set(check.section_ids)
    assert 0 < check.load_ms < 3000
    assert {p.name for p in check.screenshots} >= {f"{page.stem}.png"} | {f"{page.stem}_{s}.png" for s in sections}
    for shot in check.screenshots:
        assert shot.stat().st_size > 1000 and shot.read_bytes()[:8] == PNG_MAGIC, shot


def test_report_and_compare_render_in_chromium(browser, reported: RunDir, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["report", str(reported.root), "--screenshots", str(tmp_path / "cli")])
    assert result.exit_code == 0, result.output
    assert "loaded in" in result.output and (tmp_path / "cli" / "report_basins.png").stat().st_size > 0
    _assert_renders(reported.root / "report.html", tmp_path / "report", REPORT_SECTIONS)

    diff = tmp_path / "diff.html"
    result = runner.invoke(app, ["compare", f"{reported.root}:0", f"{reported.root}:1", "-o", str(diff)])
    assert result.exit_code == 0, result.output
    _assert_renders(diff, tmp_path / "compare", COMPARE_SECTIONS)


MANY_SEEDS = 256


@pytest.fixture(scope="module")
def reported_many(tmp_path_factory) -> RunDir:
    """256 TwoDoors seeds × 4,096 steps (barely trained: what is tested is the page, not the science), analysed
    with small samples and reported (about 2 minutes on 2 cores)."""
    data = {"name": "many", "seed": 0, "device": "cpu",
            "env": {"id": "rlbasins/TwoDoors-v0", "kwargs": {"size": 4, "code_length": 1, "probe": "adjacent"},
                    "num_envs": 8},
            "policy": {"hidden_sizes": [16, 16]},
            "ppo": {"total_timesteps": 4096, "n_steps": 64, "batch_size": 256, "n_epochs": 2},
            "seeds": {"count": MANY_SEEDS}, "engine": "batched", "checkpoints": {"every": 2048},
            "analysis": {"heldout": {"n_states": 104, "n_episodes": 26}, "train_episodes": 8,
                         "barriers": {"points": 3, "episodes": 4, "n_states": 32}, "basins": {"resamples": 10},
                         "early": {"detectors": []}, "training_length": {"enabled": False},
                         "basin_count": {"enabled": False}}}
    run = train_experiment(parse_config(data), tmp_path_factory.mktemp("runs"), show_progress=False)
    for command in (["analyze", str(run.root), "--no-progress"], ["report", str(run.root)]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 0, result.output
    return run


@pytest.mark.slow
def test_a_256_seed_report_stays_small_and_readable(reported_many: RunDir) -> None:
    html = reported_many.report_path.read_text()
    assert len(html.encode()) < 5_000_000
    assert "<details><summary>One row per seed (256;" in html  # the per-seed table starts collapsed


@pytest.mark.slow
def test_a_256_seed_report_loads_in_under_a_second(browser, reported_many: RunDir, tmp_path: Path) -> None:
    from rlbasins.report.browser import open_in_browser

    check = open_in_browser(reported_many.report_path, tmp_path)
    assert check.console_errors == [] and check.broken_images == []
    assert 0 < check.load_ms < 1000
