"""Steering by abort: train seeds until ``k`` of them finish in a target basin, aborting early the seeds a
detector predicts will land elsewhere — and measure what that saved against training without steering.

The study (``rlbasins steer CONFIG``, the config's ``steering`` section):

1. **Detector.** A finished, analysed *calibration* run of the same env / reward model / policy / PPO
   settings (another master seed) gives, per seed, its held-out fingerprint at the check step
   (action distributions on the held-out states, the ``behaviour`` detector of
   :mod:`rlbasins.analysis.early`) and its final preferred strategy (the one of the env's two its greedy
   held-out episodes reach more often, ``BehaviorResult.preferred_strategies``); a class-balanced logistic
   regression (:func:`~rlbasins.analysis.early.fit_classifier`) learns fingerprint → "ends in target".
   Its out-of-fold recall and precision on the calibration seeds are reported too.
2. **Waves.** New seed indices, continuing the sequence (seed k is always the same run, whatever
   else trains), are trained ``wave`` at a time in lockstep to the check step and stopped there
   (``train_experiment(..., until_step=check)``, an exact checkpoint).
3. **Decision.** Each checked seed predicted outside the target is ``aborted`` (manifest status, at
   the check step); each one predicted in the target waits at the check step as a *reserve*.
   Reserves are continued, lowest index first, as many as are still needed
   (k − finished target seeds − seeds being continued); continued seeds resume exactly from their
   checkpoint and train to the end together, in one lockstep batch. Then their final labels are
   measured (``analyze_behavior``) and the loop repeats until k continued seeds ended in the target
   or ``max_seeds`` seeds were started. Reserves left over at the end are aborted (reason
   ``surplus``, not a prediction error).

   "In place, same slot" of the issue is realised by batching: a lockstep batch holds seeds at one
   step, so the check-phase batch of a wave is its fresh seeds and the continuation batch is the
   continuing seeds; an aborted seed's place is taken by the next wave's fresh seed. The env steps
   trained are exactly those of in-place replacement; only the grouping into batches differs.
4. **Audit** (``audit: true``, not counted as steering compute). The aborted seeds are copied into
   ``<run>/audit/`` (a run directory of their own) and trained from their check checkpoint to the
   end, so every started seed has a final label: wrong aborts (aborted seeds that would have ended
   in the target) are counted exactly, and the **no-steering baseline** is measured on the same seed
   indices: train seeds 0, 1, 2, … to the end until k land in the target, compute = T · (index of
   the k-th target seed + 1).

Compute is counted in env steps per seed: an aborted seed costs the check step, a continued one T
(its ``last_step`` in the manifest; the sum of the manifest's ``last_step`` equals the total).
The full bill adds the calibration run's env steps: each baseline gets ``ratio_with_calibration`` and
``break_even_batches``, the number of steered batches that must share one calibration before steering
costs less than no steering. Everything goes to ``analysis/steering.json``; the report draws it (section ``steering``).
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rlbasins.core.config import ExperimentConfig, dump_config, load_config
from rlbasins.core.results import Result
from rlbasins.core.store import RunDir, StoreError, atomic_write_bytes, run_lock

AUDIT_DIR = "audit"
"""The audit's run directory, inside the steering run's."""


class SteeringError(ValueError):
    """The calibration run cannot calibrate this steering config."""


# --------------------------------------------------------------------------- the detector


@dataclass
class Calibration:
    run_dir: str
    seeds: list[int]
    target_share: float
    """Share of the calibration seeds whose final preferred strategy is the target."""
    target_share_ci: list[float]
    cv_recall: float | None
    """Out-of-fold share of target seeds predicted target (None: too few seeds of a class for 2 folds)."""
    cv_precision: float | None
    cv_folds: int
    steps: int | None = None
    """Env steps spent training the calibration run (its seeds' last steps, summed): part of steering's bill.
    None in results written before it was counted."""


class Detector:
    """Fingerprint at the check step → "ends in the target", fit on a calibration run."""

    def __init__(self, cfg: ExperimentConfig, calibration: RunDir):
        from sklearn.model_selection import StratifiedKFold

        from rlbasins.analysis.behavior import BehaviorResult
        from rlbasins.analysis.early import classifier_predictor, cross_validated_predictions, fit_classifier
        from rlbasins.core.heldout import evaluation_sample, fingerprint_inputs
        from rlbasins.core.stats import wilson_interval

        st = cfg.steering
        self.check = cfg.steering_check_step()
        cal_cfg = _check_calibration(cfg, calibration, self.check)
        behavior = BehaviorResult.load(calibration.analysis_dir / "behavior.json")
        labels = behavior.preferred_strategies()
        y = np.array([label == st.target for label in labels])
        if not y.any():
            raise SteeringError(f"no seed of the calibration run {calibration.root} ends in {st.target!r} "
                                f"(final labels: {sorted(set(labels))}): nothing to learn the target from")
        # the held-out states of the calibration's own analysis: the fingerprint the classifier knows
        self.inputs = fingerprint_inputs(cal_cfg, evaluation_sample(cal_cfg))[0]
        features = self._features(calibration, behavior.seeds)
        self.predict = fit_classifier(features, y) if not y.all() else (lambda x: np.ones(len(x), bool))
        folds = int(min(5, y.sum(), (~y).sum()))
        recall = precision = None
        if folds >= 2:
            splits = list(StratifiedKFold(folds, shuffle=True, random_state=0).split(features, y))
            out_of_fold = cross_validated_predictions(classifier_predictor(features, y), y, splits)
            recall = float(out_of_fold[y].mean())
            precision = float(y[out_of_fold].mean()) if out_of_fold.any() else None
        spent = sum(entry["last_step"] for entry in calibration.manifest()["seeds"].values())
        self.calibration = Calibration(str(calibration.root), behavior.seeds, float(y.mean()),
                                       wilson_interval(int(y.sum()), len(y)).tolist(), recall, precision, folds,
                                       spent)

    def _features(self, run: RunDir, seeds: list[int]) -> np.ndarray:
        from rlbasins.core.checkpoints import load_policies
        from rlbasins.core.rollouts import action_probs, stack_state_dicts

        template, state_dicts, _ = load_policies(run, seeds, self.check)
        return action_probs(template, stack_state_dicts(state_dicts), self.inputs).flatten(1).numpy()

    def predicts_target(self, run: RunDir, seeds: list[int]) -> list[bool]:
        """Whether each of ``seeds`` (at the check step in ``run``) is predicted to end in the target."""
        return [bool(p) for p in self.predict(self._features(run, seeds))]


def _check_calibration(cfg: ExperimentConfig, calibration: RunDir, check: int) -> ExperimentConfig:
    """The calibration run's config, after checking it can calibrate ``cfg``; else :class:`SteeringError`."""
    if not (calibration.analysis_dir / "behavior.json").exists():
        raise FileNotFoundError(f"calibration run {calibration.root} has no analysis/behavior.json; train and "
                                "analyse it first (`rlbasins run CONFIG`)")
    cal = load_config(calibration.config_path)
    for name in ("env", "policy", "ppo"):
        if getattr(cal, name) != getattr(cfg, name):
            raise SteeringError(f"calibration run {calibration.root} has other `{name}` settings than this config; "
                                "the detector only transfers between runs of the same setup")
    if cal.reward_model_sha256() != cfg.reward_model_sha256():
        raise SteeringError(f"calibration run {calibration.root} trained on another reward model")
    if cal.seed == cfg.seed and set(cal.seeds.vary) == set(cfg.seeds.vary):
        raise SteeringError(f"calibration run {calibration.root} has the same master seed ({cfg.seed}): its seeds "
                            "would be the steered seeds themselves; give this config another `seed`")
    if check not in cal.checkpoint_steps():
        raise SteeringError(f"calibration run {calibration.root} has no checkpoint at the check step {check} "
                            f"(steering.check_at {cfg.steering.check_at}); its schedule: {cal.checkpoint_steps()}")
    return cal


# --------------------------------------------------------------------------- the loop


@dataclass
class SteeringResult(Result):
    run_dir: str
    target: str
    k: int
    check_step: int
    check_fraction: float
    total_steps: int
    wave: int
    max_seeds: int
    reached: bool
    """Whether k continued seeds finished in the target."""
    seeds: list[dict[str, Any]]
    """Per started seed: index, decision (continued / aborted / surplus), predicted_target, steps,
    final_label (continued; aborted and surplus with the audit), wrong_abort."""
    calibration: dict[str, Any]
    compute: dict[str, Any]
    purity: dict[str, Any]
    wrong_aborts: dict[str, Any] | None
    baseline: dict[str, Any]
    audit_run_dir: str | None
    wall_seconds: dict[str, float] = field(default_factory=dict)
    note: str | None = None


def _labels(run: RunDir, show_progress: bool) -> dict[int, str | None]:
    """Final preferred strategy of every finished seed of ``run`` (``analyze_behavior``)."""
    from rlbasins.analysis.behavior import analyze_behavior

    result = analyze_behavior(run, show_progress=show_progress)
    return dict(zip(result.seeds, result.preferred_strategies(), strict=True))


def _mark(run: RunDir, decisions: dict[int, dict[str, Any]], abort: set[int], finish: bool = False) -> None:
    """Record steering decisions in the manifest; ``abort`` seeds become ``aborted`` at their last step."""
    with run_lock(run.root):
        manifest = run.manifest()
        for k, decision in decisions.items():
            entry = manifest["seeds"][str(k)]
            entry["steering"] = decision
            if k in abort:
                entry.update(status="aborted", error=None)
        statuses = {s["status"] for s in manifest["seeds"].values()}
        if finish and statuses <= {"finished", "failed", "aborted"}:
            manifest["status"] = "finished"
        run.write_manifest(manifest)


def steer(cfg: ExperimentConfig, runs_dir: Path | str = "runs", *, resume: bool = False, overwrite: bool = False,
          show_progress: bool = True, calibration: Path | str | None = None) -> SteeringResult:
    """Run the steering study of ``cfg.steering`` into ``runs_dir/<name>`` (see the module docstring).

    ``calibration`` overrides ``steering.calibration``. ``resume`` continues a killed study from its
    manifest (decisions are stored there, and the detector is deterministic).
    """
    from rlbasins.train import train_experiment

    if cfg.steering is None:
        raise SteeringError(f"{cfg.name}: the config has no `steering` section")
    st = cfg.steering
    schedule = cfg.checkpoint_steps()
    end, check = schedule[-1], cfg.steering_check_step()
    clock = {"calibration": 0.0, "train_check": 0.0, "train_continue": 0.0, "labels": 0.0, "audit": 0.0}
    t0 = time.perf_counter()
    detector = Detector(cfg, RunDir(calibration or st.calibration))
    clock["calibration"] += time.perf_counter() - t0
    run = RunDir(Path(runs_dir) / cfg.name)
    fresh_start = not run.exists() or overwrite
    if run.exists() and not (resume or overwrite):
        raise StoreError(f"{run.root} holds a steering run; pass --resume to continue it (or to redo its "
                         "audit and report) or --overwrite to start over")
    labels: dict[int, str | None] = {}

    def train(seeds: list[int], until: int | None, phase: str) -> None:
        nonlocal fresh_start
        t = time.perf_counter()
        train_experiment(cfg, runs_dir, resume=not fresh_start, overwrite=fresh_start and overwrite,
                         show_progress=show_progress, seeds=seeds, until_step=until)
        fresh_start = False
        clock[phase] += time.perf_counter() - t

    if run.exists() and not fresh_start and run.manifest()["seeds"]:
        t = time.perf_counter()
        if RunDir.seeds_with_status(run.manifest(), "finished"):
            labels = _labels(run, show_progress)
        clock["labels"] += time.perf_counter() - t
    while True:
        manifest = run.manifest() if run.exists() and not fresh_start else {"seeds": {}}
        entries = {int(k): e for k, e in manifest["seeds"].items()}
        decisions = {k: e["steering"] for k, e in entries.items() if "steering" in e}
        continued = [k for k, d in decisions.items() if d["decision"] == "continued"]
        running = [k for k in continued if entries[k]["status"] not in ("finished", "failed")]
        hits = sum(labels.get(k) == st.target for k in continued if entries[k]["status"] == "finished")
        if hits >= st.k:
            break
        need = st.k - hits - len(running)
        undecided = sorted(k for k, e in entries.items() if k not in decisions and e["last_step"] >= check)
        if undecided:  # a wave just reached the check: predict
            predicted = detector.predicts_target(run, undecided)
            new = {k: {"decision": "reserve" if p else "aborted", "predicted_target": p, "check_step": check}
                   for k, p in zip(undecided, predicted, strict=True)}
            _mark(run, new, {k for k, d in new.items() if d["decision"] == "aborted"})
            continue
        reserves = sorted(k for k, d in decisions.items() if d["decision"] == "reserve")
        if need > 0 and reserves:  # promote reserves, lowest index first
            _mark(run, {k: {**decisions[k], "decision": "continued"} for k in reserves[:need]}, set())
            continue
        if running and (need <= 0 or len(entries) >= st.max_seeds):
            train(running, None, "train_continue")
            t = time.perf_counter()
            labels = _labels(run, show_progress)
            clock["labels"] += time.perf_counter() - t
            continue
        if len(entries) >= st.max_seeds:
            break
        start = max(entries, default=-1) + 1
        train(list(range(start, min(start + st.wave, st.max_seeds))), check, "train_check")
    # leftover reserves: surplus, aborted at the check (not a prediction error)
    manifest = run.manifest()
    surplus = {int(k): {**e["steering"], "decision": "surplus"} for k, e in manifest["seeds"].items()
               if e.get("steering", {}).get("decision") == "reserve"}
    _mark(run, surplus, set(surplus), finish=True)
    reached = hits >= st.k

    audit_labels: dict[int, str | None] = {}
    audit_run = None
    if st.audit:
        t = time.perf_counter()
        audit_run, audit_labels = _audit(cfg, run, check, show_progress)
        clock["audit"] += time.perf_counter() - t
    result = _result(cfg, run, detector, labels, audit_labels, audit_run, reached, end, check)
    result.wall_seconds = {k: round(v, 1) for k, v in clock.items()}
    run.analysis_dir.mkdir(parents=True, exist_ok=True)
    result.save(run.analysis_dir / "steering.json")
    return result


def _audit(cfg: ExperimentConfig, run: RunDir, check: int, show_progress: bool) -> tuple[RunDir, dict[int, str]]:
    """Train the aborted seeds to the end in ``<run>/audit`` (copies of their checkpoints); their final labels."""
    from rlbasins.train import _new_manifest, train_experiment

    aborted = RunDir.seeds_with_status(run.manifest(), "aborted")
    audit_cfg = cfg.model_copy(update={"name": AUDIT_DIR, "steering": None})
    audit = RunDir(run.root / AUDIT_DIR)
    if not aborted:
        return audit, {}
    if audit.exists() and set(map(int, audit.manifest()["seeds"])) != set(aborted):
        shutil.rmtree(audit.root)  # a stale audit of another set of aborted seeds
    if not audit.exists():
        audit.root.mkdir(parents=True, exist_ok=True)
        for k in aborted:
            shutil.copytree(run.root / "seeds" / str(k), audit.root / "seeds" / str(k), dirs_exist_ok=True)
        atomic_write_bytes(audit.config_path, dump_config(audit_cfg).encode())
        manifest = _new_manifest(audit_cfg, aborted)
        for k in aborted:
            manifest["seeds"][str(k)].update(status="interrupted", last_step=check)
        manifest["status"] = "interrupted"
        audit.write_manifest(manifest)
    train_experiment(audit_cfg, run.root, resume=True, show_progress=show_progress)
    return audit, _labels(audit, show_progress)


def _interval(successes: int, trials: int) -> list[float]:
    from rlbasins.core.stats import wilson_interval

    return wilson_interval(successes, trials).tolist()


def _result(cfg: ExperimentConfig, run: RunDir, detector: Detector, labels: dict[int, str | None],
            audit_labels: dict[int, str | None], audit_run: RunDir | None, reached: bool, end: int,
            check: int) -> SteeringResult:
    st = cfg.steering
    manifest = run.manifest()
    seeds = []
    for k in sorted(int(i) for i in manifest["seeds"]):
        entry = manifest["seeds"][str(k)]
        decision = entry.get("steering", {}).get("decision", "unchecked")
        final = labels.get(k) if entry["status"] == "finished" else audit_labels.get(k)
        seeds.append({"index": k, "status": entry["status"], "decision": decision,
                      "predicted_target": entry.get("steering", {}).get("predicted_target"),
                      "steps": entry["last_step"], "final_label": final,
                      "wrong_abort": (decision == "aborted" and final == st.target) if final is not None else None})
    n = len(seeds)
    continued = [s for s in seeds if s["decision"] == "continued"]
    aborted = [s for s in seeds if s["decision"] == "aborted"]
    total = sum(s["steps"] for s in seeds)
    hits = sum(s["final_label"] == st.target for s in continued)
    compute = {"steering_steps": total, "check_phase_steps": n * check,
               "continue_phase_steps": sum(s["steps"] - check for s in continued),
               "seeds_started": n, "seeds_continued": len(continued), "seeds_aborted": len(aborted),
               "seeds_surplus": sum(s["decision"] == "surplus" for s in seeds),
               "steps_per_seed": end, "check_step": check, "calibration_steps": detector.calibration.steps,
               "with_calibration_steps": total + detector.calibration.steps}
    purity = {"target_finished": hits, "continued": len(continued),
              "value": hits / len(continued) if continued else None, "ci": _interval(hits, len(continued))}
    wrong = None
    audited = all(s["final_label"] is not None for s in seeds if s["status"] != "failed")
    if audit_run is not None or not aborted:
        n_wrong = sum(bool(s["wrong_abort"]) for s in aborted)
        targets = sum(s["final_label"] == st.target for s in seeds)
        wrong = {"count": n_wrong, "aborted": len(aborted), "rate": n_wrong / len(aborted) if aborted else None,
                 "ci": _interval(n_wrong, len(aborted)), "target_seeds_started": targets,
                 "share_of_target_seeds_lost": n_wrong / targets if targets else None}
    baseline = _baseline(seeds, st.target, st.k, end, total, audited, detector.calibration)
    return SteeringResult(
        run_dir=str(run.root), target=st.target, k=st.k, check_step=check, check_fraction=check / end,
        total_steps=end, wave=st.wave, max_seeds=st.max_seeds, reached=reached, seeds=seeds,
        calibration=asdict(detector.calibration), compute=compute, purity=purity, wrong_aborts=wrong,
        baseline=baseline, audit_run_dir=str(audit_run.root) if audit_run is not None else None,
        note=None if reached else f"stopped at max_seeds = {st.max_seeds} with {hits} of {st.k} target seeds")


def _baseline(seeds: list[dict[str, Any]], target: str, k: int, end: int, steering: int, audited: bool,
              calibration: Calibration) -> dict[str, Any]:
    """No steering on the same seed indices (measured with the audit), and its expectation K/p·T; each with
    the full bill (:func:`_full_bill`)."""
    out = _baselines(seeds, target, k, end, steering, audited, calibration)
    for entry in out.values():
        if entry is not None:
            entry.update(_full_bill(steering, calibration.steps, entry["steps"]))
    return out


def _full_bill(steering: int, calibration: int, baseline: float | None) -> dict[str, Any]:
    """Steering's ratio to ``baseline`` with the calibration run's compute counted, and the break-even: how
    many steered batches must share one calibration before steering costs less than no steering
    (ceil(calibration / (baseline − steering)); None where steering alone costs at least the baseline)."""
    if not baseline:
        return {"ratio_with_calibration": None, "break_even_batches": None}
    saving = baseline - steering
    return {"ratio_with_calibration": (steering + calibration) / baseline,
            "break_even_batches": math.ceil(calibration / saving) if saving > 0 else None}


def _baselines(seeds: list[dict[str, Any]], target: str, k: int, end: int, steering: int, audited: bool,
               calibration: Calibration) -> dict[str, Any]:
    out: dict[str, Any] = {"measured": None}
    if audited:
        is_target = [s["final_label"] == target for s in seeds]
        positions = np.flatnonzero(is_target)
        p_hits, n = len(positions), len(seeds)
        if p_hits >= k:
            steps = end * int(positions[k - 1] + 1)
            out["measured"] = {"steps": steps, "seeds_trained": int(positions[k - 1] + 1), "lower_bound": False,
                               "ratio": steering / steps}
        else:  # the started seeds hold fewer than k targets: the baseline would need more seeds than these
            out["measured"] = {"steps": end * n, "seeds_trained": n, "lower_bound": True, "ratio": steering / (end * n)}
        out["expected_from_run"] = _expected(p_hits, n, k, end, steering, "target share of the started seeds "
                                             "(audited)")
    cal = calibration
    cal_hits = round(cal.target_share * len(cal.seeds))
    out["expected_from_calibration"] = _expected(cal_hits, len(cal.seeds), k, end, steering,
                                                 "target share of the calibration seeds")
    return out


def _expected(hits: int, n: int, k: int, end: int, steering: int, what: str) -> dict[str, Any]:
    """Expected no-steering compute K/p·T (negative binomial mean) with p's Wilson CI, and steering's ratio to it."""
    low, high = _interval(hits, n)
    p = hits / n if n else 0.0

    def steps(q: float) -> float | None:
        return k / q * end if q > 0 else None

    expected, pessimistic, optimistic = steps(p), steps(low), steps(high)
    return {"p": p, "p_ci": [low, high], "n": n, "basis": what, "steps": expected,
            "steps_ci": [optimistic, pessimistic],
            "ratio": steering / expected if expected else None,
            "ratio_ci": [steering / pessimistic if pessimistic else 0.0, steering / optimistic if optimistic else None]}


def load(run: RunDir) -> SteeringResult | None:
    """``analysis/steering.json`` of ``run``, or None."""
    path = run.analysis_dir / "steering.json"
    return SteeringResult.load(path) if path.exists() else None
