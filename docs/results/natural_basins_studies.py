"""Early detection, training length and basin count on the natural-basin runs → natural_basins_studies.json.

    .venv/bin/python docs/results/natural_basins_studies.py RUNS_DIR

Reads the runs that ``docs/results/natural_basins.py RUNS_DIR`` trains and analyses (``rlbasins run`` runs these
three analyses on every run with enough checkpoints): ``natural_basins_study`` (master seed 0),
``natural_basins_untried`` (3), ``natural_basins_replicate`` (1) and the no-key control ``natural_basins_control``.
Per run it keeps each early-detection curve (balanced accuracy of predicting a seed's final behavioural basin
from each checkpoint, 95% CI over seeds) and its first fractions, the basin trajectory (seeds that switch
basin after half of training, the fraction of training by which every seed has made its last switch), and the
basin count (found, rarefied to subsets, Chao1); and early detection once more with each seed's preferred
door as the target (the pipeline predicts the basins where two hold two seeds or more). Figures of the study
run (the report's own) go to ``docs/figures/natural_basins_*.png``. Apart from that second early detection,
this reads the runs' ``analysis/``.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from rlbasins.analysis.behavior import BehaviorResult
from rlbasins.analysis.early import EarlyDetection, choose_target, early_detection
from rlbasins.analysis.pipeline import load_results
from rlbasins.core.config import load_config
from rlbasins.core.heldout import evaluation_sample, fingerprint_inputs
from rlbasins.core.store import RunDir
from rlbasins.report import figures, study_figures

ROOT = Path(__file__).resolve().parents[2]
RUNS = ("study", "untried", "replicate", "control")


def strategy_detection(run: RunDir) -> EarlyDetection:
    """Early detection of each seed's preferred door (colour, shape or tie), whatever the basins: the pipeline
    predicts the basins where two hold two seeds or more, and a basin of two seeds drags balanced accuracy."""
    cfg = load_config(run.config_path)
    behavior = BehaviorResult.load(run.analysis_dir / "behavior.json")
    heldout_obs, noise_obs = fingerprint_inputs(cfg, evaluation_sample(cfg))
    target = choose_target("strategy", [0] * len(behavior.seeds), behavior.preferred_strategies())
    return early_detection(run, behavior.seeds, min(behavior.steps), *target, np.array(behavior.total_variation),
                           heldout_obs, noise_obs, cfg.analysis.early, seed=cfg.seed, show_progress=False,
                           labels=behavior.labels)


def curves(early: EarlyDetection) -> dict | None:
    return None if early.skipped else {
        "target": early.target, "classes": early.class_names, "chance": early.chance, "threshold": early.threshold,
        "final_class_sizes": np.bincount(early.final_classes, minlength=len(early.class_names)).tolist(),
        "detectors": {d.name: {"balanced_accuracy": d.balanced_accuracy, "ci": d.ci,
                               "first_reaching": d.first_reaching, "first_confident": d.first_confident}
                      for d in early.detectors},
        "baseline": None if early.baseline is None else {
            "description": early.baseline.description, "balanced_accuracy": early.baseline.balanced_accuracy,
            "first_reaching": early.baseline.first_reaching}}


def summary(run: RunDir) -> dict:
    results = load_results(run)
    early, trajectory, counted = results.early, results.training_length, results.basin_count
    switched = [f for f in trajectory.last_switch if f is not None] if trajectory and not trajectory.skipped else []
    return {
        "trained_at_commit": run.manifest()["git_commit"][:7], "seeds": len(early.seeds),
        "checkpoint_fractions": early.fractions,
        "early_detection": curves(early), "early_detection_of_the_door": curves(strategy_detection(run)),
        "training_length": None if trajectory is None or trajectory.skipped else {
            "basins": trajectory.n_basins, "late_fraction": trajectory.late_fraction,
            "late_switchers": len(trajectory.late_switchers), "late_share_ci": trajectory.late_share_ci,
            "seeds_that_ever_switch": len(switched), "last_switch_max": max(switched, default=None),
            "shares": trajectory.shares, "final_agreement": trajectory.final_agreement},
        "basin_count": None if counted is None or counted.skipped else {
            "observed": counted.observed, "basin_sizes": counted.basin_sizes,
            "rarefaction": None if counted.rarefaction is None else {
                "sizes": counted.rarefaction.sizes, "found_mean": counted.rarefaction.found_mean,
                "found_ci": counted.rarefaction.found_ci},
            "chao1": counted.unseen[0].chao1, "chao1_ci": counted.unseen[0].chao1_ci},
    }


def save_figures(run: RunDir) -> None:
    images = dict(study_figures(run))
    images["fig_early_detection"] = figures.early_detection(load_results(run).early)
    for name in ("fig_early_detection", "fig_shares", "fig_rarefaction"):
        path = ROOT / "docs" / "figures" / f"natural_basins_{name.removeprefix('fig_')}.png"
        path.write_bytes(base64.b64decode(images[name].split(",", 1)[1]))
        print(f"→ {path.relative_to(ROOT)}")


def main(runs_dir: str) -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=ROOT).stdout.strip()
    out = {"command": "python docs/results/natural_basins_studies.py RUNS_DIR", "summarised_at_commit": commit,
           "runs": {name: summary(RunDir(Path(runs_dir) / f"natural_basins_{name}")) for name in RUNS}}
    for name, line in out["runs"].items():
        detectors = line["early_detection_of_the_door"]["detectors"]
        print(f"{name}: door first ≥ 90% " + ", ".join(f"{k} {v['first_reaching']}" for k, v in detectors.items())
              + f"; late switchers {line['training_length'] and line['training_length']['late_switchers']}"
              + f"; basins {line['basin_count'] and line['basin_count']['observed']}")
    path = Path(__file__).with_suffix(".json")
    path.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    save_figures(RunDir(Path(runs_dir) / "natural_basins_study"))
    print(f"→ {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main(sys.argv[1])
