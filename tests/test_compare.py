"""`rlbasins compare` (:mod:`rlbasins.report.compare`): the behavioural diff of two policies."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from rlbasins.cli import app
from rlbasins.core.store import RunDir

# --------------------------------------------------------------------------- rlbasins compare


def test_compare_writes_a_behavioral_diff_of_two_seeds(trained: RunDir, tmp_path: Path) -> None:
    out = tmp_path / "diff.html"
    result = CliRunner().invoke(app, ["compare", f"{trained.root}:0", f"{trained.root}:3@15360", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "greedy agreement" in result.output and "aligned barrier" in result.output
    html = out.read_text()
    for section in ('id="summary"', 'id="by-type"', 'id="disagreement"', 'id="interpolation"'):
        assert section in html
    assert html.count("data:image/png;base64,") == 3 and "https://" not in html
    assert "cue:3@15360" in html


def test_a_policy_compared_with_itself_agrees_everywhere_without_barrier(trained: RunDir, tmp_path: Path) -> None:
    from rlbasins.report.compare import PolicyRef, compare

    result = compare(PolicyRef(trained, 2, None), PolicyRef(trained, 2, None), tmp_path / "self.html")
    assert result.agreement == 1.0 and result.total_variation == 0.0
    assert all(value == 0 for barriers in result.barriers.values() for value in barriers.values())
    assert all(row.agreement == 1.0 for row in result.by_type.values())


@pytest.mark.parametrize("b", ["{root}", "{root}:x", "{other}:0"])
def test_compare_refuses_bad_references_by_name(trained: RunDir, tmp_path: Path, b: str) -> None:
    result = CliRunner().invoke(app, ["compare", f"{trained.root}:0", b.format(root=trained.root, other=tmp_path),
                                      "-o", str(tmp_path / "x.html")])
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "x.html").exists()
