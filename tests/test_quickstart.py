"""The shipped quickstart does what the README promises: every seed solves CartPole."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from rlbasins.analysis.behavior import BehaviorResult
from rlbasins.cli import app
from rlbasins.store import RunDir


@pytest.mark.slow
def test_quickstart_every_seed_solves_cartpole(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["run", "configs/quickstart.yaml", "--runs-dir", str(tmp_path), "--no-progress"])
    assert result.exit_code == 0, result.output
    run = RunDir(tmp_path / "quickstart")
    behavior = BehaviorResult.load(run.analysis_dir / "behavior.json")
    assert behavior.seeds == list(range(8))
    assert min(behavior.train_return) >= 475, behavior.train_return
    assert run.report_path.exists()
