"""End-to-end training on tiny CartPole experiments: determinism, seed factors, resume, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from rlbasins.cli import app
from rlbasins.core.config import load_config, parse_config
from rlbasins.core.store import CorruptFileError, RunDir, StoreError, sha256_file
from rlbasins.train import train_experiment
from tests.conftest import lock_held_by_another_process, tiny_config, write_yaml

runner = CliRunner()


def _train(tmp_path: Path, name: str, **overrides) -> RunDir:
    cfg = parse_config(tiny_config(name=name, **overrides))
    return train_experiment(cfg, tmp_path / "runs", show_progress=False)


def _checkpoint_hashes(run: RunDir, k: int) -> dict[str, str]:
    return {path.name: sha256_file(path) for path in sorted(run.seed(k).ckpt_dir.glob("*.safetensors"))}


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> RunDir:
    return _train(tmp_path_factory.mktemp("reference"), "tiny")


def test_run_directory_layout(reference_run: RunDir) -> None:
    manifest = reference_run.manifest()
    assert manifest["status"] == "finished"
    assert all(s["status"] == "finished" and s["last_step"] == 2048 for s in manifest["seeds"].values())
    assert manifest["config_hash"] == parse_config(tiny_config()).hash()
    assert {"torch", "stable_baselines3", "gymnasium"} <= set(manifest["versions"])
    assert [e.step for e in reference_run.seed(0).entries()] == [0, 512, 1024, 1536, 2048]
    assert (reference_run.tb_dir / "seed_0").is_dir() and (reference_run.tb_dir / "aggregate").is_dir()
    assert parse_config(tiny_config()) == load_config(reference_run.config_path)


def test_same_config_gives_bit_identical_checkpoints(reference_run: RunDir, tmp_path: Path) -> None:
    again = _train(tmp_path, "tiny")
    for k in (0, 1):
        assert _checkpoint_hashes(again, k) == _checkpoint_hashes(reference_run, k)
    assert _checkpoint_hashes(reference_run, 0) != _checkpoint_hashes(reference_run, 1)


@pytest.mark.parametrize("engine", ["sb3", "batched"])
def test_until_step_pauses_every_seed_there_and_resuming_finishes_bit_identically(
        engine: str, reference_run: RunDir, tmp_path: Path) -> None:
    cfg = parse_config(tiny_config(engine=engine))
    paused = train_experiment(cfg, tmp_path / "runs", show_progress=False, until_step=1024)
    assert {(s["status"], s["last_step"]) for s in paused.manifest()["seeds"].values()} == {("interrupted", 1024)}
    assert [e.step for e in paused.seed(0).entries()] == [0, 512, 1024]
    train_experiment(cfg, tmp_path / "runs", resume=True, show_progress=False)
    whole = reference_run if engine == "sb3" else _train(tmp_path / "whole", "tiny", engine="batched")
    for k in (0, 1):
        assert _checkpoint_hashes(paused, k) == _checkpoint_hashes(whole, k)


def test_seeds_learn_something(reference_run: RunDir) -> None:
    first, _ = reference_run.seed(0).load_policy(0)
    last, _ = reference_run.seed(0).load_policy(2048)
    assert not torch.equal(first["actor.0.weight"], last["actor.0.weight"])


def _same_weights(run: RunDir, step: int) -> bool:
    """Whether seeds 0 and 1 of ``run`` have identical weights at ``step`` (headers name the seed)."""
    (a, _), (b, _) = run.seed(0).load_policy(step), run.seed(1).load_policy(step)
    return all(torch.equal(a[name], b[name]) for name in a)


def test_init_factor_alone_decides_the_initial_weights(tmp_path: Path) -> None:
    data_only = _train(tmp_path, "data", seeds__vary=["env", "action", "minibatch"])
    assert _same_weights(data_only, 0) and not _same_weights(data_only, 2048)
    init_only = _train(tmp_path, "init", seeds__vary=["init"])
    assert not _same_weights(init_only, 0)
    seeds = {k: s["factor_seeds"] for k, s in init_only.manifest()["seeds"].items()}
    assert seeds["0"]["init"] != seeds["1"]["init"]
    assert all(seeds["0"][f] == seeds["1"][f] for f in ("env", "action", "minibatch"))


def test_finished_run_is_not_overwritten_without_flag(reference_run: RunDir, tmp_path: Path) -> None:
    cfg = parse_config(tiny_config())
    before = _checkpoint_hashes(reference_run, 0)
    with pytest.raises(StoreError, match="finished run; pass --overwrite"):
        train_experiment(cfg, reference_run.root.parent, show_progress=False)
    with pytest.raises(StoreError, match="different config"):
        train_experiment(parse_config(tiny_config(ppo__gamma=0.9)), reference_run.root.parent, show_progress=False)
    assert _checkpoint_hashes(reference_run, 0) == before


def test_second_writer_is_refused_by_the_cli(reference_run: RunDir, tmp_path: Path) -> None:
    config = write_yaml(tmp_path / "tiny.yaml", tiny_config())
    with lock_held_by_another_process(reference_run.root):
        result = runner.invoke(app, ["train", str(config), "--runs-dir", str(reference_run.root.parent),
                                     "--overwrite", "--no-progress"])
        assert result.exit_code == 3 and "in use by another rlbasins process" in result.output
    assert reference_run.manifest()["status"] == "finished"


def test_truncated_checkpoint_is_named_by_analyze(tmp_path: Path) -> None:
    run = _train(tmp_path, "broken")
    path = run.seed(1).policy_path(2048)
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    result = runner.invoke(app, ["analyze", str(run.root), "--no-progress"])
    assert result.exit_code == 2
    assert "seeds/1/ckpt/2048.safetensors" in result.output and "corrupt" in result.output
    with pytest.raises(CorruptFileError):
        run.seed(1).load_policy(2048)


def test_cli_run_writes_analysis_and_a_self_contained_report(tmp_path: Path) -> None:
    config = write_yaml(tmp_path / "tiny.yaml", tiny_config(name="e2e"))
    result = runner.invoke(app, ["run", str(config), "--runs-dir", str(tmp_path / "runs"), "--no-progress"])
    assert result.exit_code == 0, result.output
    run = RunDir(tmp_path / "runs" / "e2e")
    assert str(run.report_path) in result.output.replace("\n", "")
    html = run.report_path.read_text()
    for section in ('id="summary"', 'id="training"', 'id="heldout"', 'id="basins"', 'id="connectivity"',
                    'id="seeds"', 'id="provenance"'):
        assert section in html
    # curves, returns, TV with dendrogram, MDS embedding, agreement, barriers, paths, drift through training
    assert html.count("data:image/png;base64,") == 8
    assert "http://" not in html and "https://" not in html  # opens offline
    rows = (run.analysis_dir / "seeds.csv").read_text().splitlines()
    assert rows[0].startswith("seed,step,train_return") and len(rows) == 3


def test_seed_with_non_finite_weights_is_marked_failed(tmp_path: Path, monkeypatch) -> None:
    """A seed whose weights go NaN stops at its last good checkpoint and reports why."""
    from rlbasins.core.seeding import experiment_seeds
    from rlbasins.train import sb3
    from rlbasins.train.base import SeedTask

    real = sb3.sb3_to_exchange

    def poisoned(state, n_hidden):
        weights = real(state, n_hidden)
        if poisoned.calls > 0:
            weights["actor.0.weight"][0, 0] = float("nan")
        poisoned.calls += 1
        return weights

    poisoned.calls = 0
    monkeypatch.setattr(sb3, "sb3_to_exchange", poisoned)
    cfg = parse_config(tiny_config())
    task = SeedTask(0, experiment_seeds(cfg.seed, 1, cfg.seeds.vary)[0], cfg.model_dump(mode="json"),
                    str(tmp_path / "run"))
    outcome = sb3.train_seed(task)
    assert outcome.status == "failed" and outcome.last_step == 0
    assert "non-finite weights at step 512" in outcome.error
    assert [e.step for e in RunDir(tmp_path / "run").seed(0).entries()] == [0]


def test_analyze_of_a_missing_run_directory_is_bad_input(tmp_path: Path) -> None:
    result = runner.invoke(app, ["analyze", str(tmp_path / "nothing"), "--no-progress"])
    assert result.exit_code == 2 and "not a run directory" in result.output


def test_gridworld_run_reports_strategy_labels(tmp_path: Path) -> None:
    config = write_yaml(tmp_path / "grid.yaml", tiny_config(name="grid", env={"id": "rlbasins/CueConflict-v0",
                                                                                 "num_envs": 2}))
    result = runner.invoke(app, ["run", str(config), "--runs-dir", str(tmp_path / "runs"), "--no-progress"])
    assert result.exit_code == 0, result.output
    run = RunDir(tmp_path / "runs" / "grid")
    from rlbasins.analysis.behavior import BehaviorResult

    behavior = BehaviorResult.load(run.analysis_dir / "behavior.json")
    assert behavior.labels == ["colour", "shape", "neither"]
    for fractions in behavior.heldout_labels_greedy + behavior.heldout_labels_sampled:
        assert set(fractions) == set(behavior.labels) and abs(sum(fractions.values()) - 1) < 1e-9
    html = run.report_path.read_text()
    assert "colour (held-out)" in html
    assert html.count("data:image/png;base64,") == 10  # + env frames and strategy shares


def test_sb3_engine_builds_each_seed_on_its_planted_env() -> None:
    from rlbasins.core.seeding import experiment_seeds
    from rlbasins.train.base import SeedTask
    from rlbasins.train.sb3 import build_model

    planted = [{"label": label, "kwargs": {"informative": label}} for label in ("colour", "shape")]
    cfg = parse_config(tiny_config(env={"id": "rlbasins/CueConflict-v0", "num_envs": 2, "planted": planted}))
    for k, factor_seeds in enumerate(experiment_seeds(cfg.seed, cfg.seeds.count, cfg.seeds.vary)):
        model = build_model(cfg, SeedTask(k, factor_seeds, cfg.model_dump(mode="json"), "unused"))
        assert {env.unwrapped.core.informative for env in model.env.envs} == {cfg.planted_label(k)}
