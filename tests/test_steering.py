"""Steering by abort (rlbasins.studies.steering): until-step training, the aborted status, the loop, the audit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rlbasins.core.config import ConfigError, load_config, parse_config
from rlbasins.core.store import RunDir, read_json


def _planted(name: str, seed: int = 0, count: int = 8) -> dict:
    """configs/planted_basins.yaml reduced as in tests/test_planted.py: the planted group (k % 2) decides the label."""
    data = load_config("configs/planted_basins.yaml").model_dump(mode="json")
    data.update(name=name, seed=seed)
    data["ppo"]["total_timesteps"] = 40_960
    data["seeds"]["count"] = count
    data["checkpoints"] = {"every": 10_240}
    data["analysis"]["heldout"] = {"n_states": 64, "n_episodes": 64}
    data["analysis"]["train_episodes"] = 16
    return data


def test_steering_config_is_validated_and_outside_the_hash() -> None:
    data = load_config("configs/steering.yaml").model_dump(mode="json")
    cfg = parse_config(data)
    assert cfg.steering_check_step() == 30_720
    without = parse_config({k: v for k, v in data.items() if k != "steering"})
    assert cfg.hash() == without.hash()  # steering decides which seeds train, not what they compute
    data["steering"] = {**data["steering"], "target": "size", "check_at": 0.999, "max_seeds": 4}
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    paths = {issue.path for issue in info.value.issues}
    assert paths == {"steering.target", "steering.check_at", "steering.max_seeds"}


@pytest.mark.slow
def test_steering_reaches_k_and_accounts_for_compute(tmp_path: Path) -> None:
    from rlbasins.analysis.behavior import analyze_behavior
    from rlbasins.studies.steering import steer
    from rlbasins.train import train_experiment

    calibration = train_experiment(parse_config(_planted("calibration")), tmp_path, show_progress=False)
    analyze_behavior(calibration, show_progress=False)
    data = _planted("steer", seed=1)
    data["steering"] = {"target": "shape", "k": 3, "check_at": 0.25, "calibration": str(calibration.root),
                        "wave": 4, "max_seeds": 16, "audit": True}
    cfg = parse_config(data)
    result = steer(cfg, tmp_path, show_progress=False)
    run = RunDir(tmp_path / "steer")
    end, check = 40_960, 10_240
    assert result.reached and result.check_step == check

    # the manifest: every started seed once, finished (continued) or aborted (at the check)
    manifest = run.manifest()
    assert manifest["status"] == "finished"
    entries = {int(k): e for k, e in manifest["seeds"].items()}
    assert sorted(entries) == list(range(len(entries))) == [s["index"] for s in result.seeds]
    for e in entries.values():
        decision = e["steering"]["decision"]
        assert (e["status"], e["last_step"]) == (("finished", end) if decision == "continued" else ("aborted", check))
    # compute: the manifest's steps add up to the reported total
    c = result.compute
    assert c["steering_steps"] == sum(e["last_step"] for e in entries.values())
    assert c["steering_steps"] == c["check_phase_steps"] + c["continue_phase_steps"]
    assert c["seeds_started"] == c["seeds_continued"] + c["seeds_aborted"] + c["seeds_surplus"]
    # the full bill: the calibration run's training counts too, and the break-even says when that pays
    spent = sum(e["last_step"] for e in calibration.manifest()["seeds"].values())
    assert c["calibration_steps"] == spent == 8 * end and c["with_calibration_steps"] == c["steering_steps"] + spent
    measured = result.baseline["measured"]
    assert measured["ratio_with_calibration"] == (c["steering_steps"] + spent) / measured["steps"]
    saving = measured["steps"] - c["steering_steps"]
    if saving > 0:  # n batches of steering and one calibration cost no more than n batches without steering
        n = measured["break_even_batches"]
        assert n * c["steering_steps"] + spent <= n * measured["steps"] < (n - 1) * c["steering_steps"] + spent + \
            measured["steps"]
    else:
        assert measured["break_even_batches"] is None
    # purity and wrong aborts agree with the audited final labels (the planted group decides them)
    continued = [s for s in result.seeds if s["decision"] == "continued"]
    assert result.purity["target_finished"] == sum(s["final_label"] == "shape" for s in continued) >= 3
    assert all(s["final_label"] is not None for s in result.seeds)
    assert result.wrong_aborts["count"] == sum(s["decision"] == "aborted" and s["final_label"] == "shape"
                                               for s in result.seeds)
    assert {s["final_label"] for s in result.seeds if s["index"] % 2} == {"shape"}
    target_positions = [s["index"] for s in result.seeds if s["final_label"] == "shape"]
    assert result.baseline["measured"]["steps"] == end * (target_positions[2] + 1)
    assert read_json(run.analysis_dir / "steering.json")["compute"] == c

    # continued seeds are bit-identical to the same seeds trained without interruption
    straight = train_experiment(cfg.model_copy(update={"name": "straight", "steering": None}), tmp_path,
                                seeds=[s["index"] for s in continued], show_progress=False)
    for s in continued:
        for load in ("load_policy", "load_state"):
            a, _ = getattr(run.seed(s["index"]), load)(end)
            b, _ = getattr(straight.seed(s["index"]), load)(end)
            assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a), (s["index"], load)

    from rlbasins.report import write_report
    from rlbasins.studies.steering import load as load_steering

    assert 'id="steering"' in write_report(run, steering=load_steering(run)).read_text()
    assert 'id="steering"' not in write_report(run).read_text()
