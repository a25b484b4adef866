"""Collect the weight-space views of analysed runs into docs/results/weight_space.json (docs/weight_space.md).

    .venv/bin/python docs/results/weight_space.py RUNS_DIR

RUNS_DIR holds the runs of :data:`RUNS`, trained and analysed (``rlbasins run`` analyses; ``rlbasins analyze``
again after an upgrade). Besides each run's views (analysis/basins.json) it measures the negative control the
views replace: the Euclidean distance between whole weight vectors, naive and after Git Re-Basin alignment.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from rlbasins.analysis import align
from rlbasins.analysis.barriers import BarrierStudy
from rlbasins.analysis.basins import BasinsResult, spectral_basins
from rlbasins.core.checkpoints import load_policies
from rlbasins.core.config import load_config
from rlbasins.core.heldout import evaluation_sample, fingerprint_inputs
from rlbasins.core.store import RunDir

RUNS = {"planted_basins": "configs/planted_basins.yaml (MLP [64, 64], 32 seeds)",
        "planted_cnn": "configs/planted_basins.yaml with policy {conv_channels: [8], hidden_sizes: [32]}, "
                       "seeds.count 16, name planted_cnn",
        "natural_basins": "configs/natural_basins.yaml (TwoDoors, MLP [32, 32], 64 seeds)",
        "natural_basins_untried": "configs/natural_basins.yaml with seed: 3",
        "natural_basins_replicate": "configs/natural_basins.yaml with seed: 1",
        "natural_basins_control": "configs/natural_basins.yaml with env.kwargs.code_length: 0 (control)",
        "natural_basins_rm": "configs/natural_basins_rm.yaml (the second TwoDoors reward model)",
        "quickstart": "configs/quickstart.yaml (TwoDoors, MLP [16, 16], 32 seeds)"}


def _within_across(distances: np.ndarray, groups: list) -> dict[str, float]:
    groups = np.asarray(groups)
    same = (groups[:, None] == groups[None]) & ~np.eye(len(groups), dtype=bool)
    across = distances[groups[:, None] != groups[None]]
    return {"within": round(float(distances[same].mean()), 4),
            "across": round(float(across.mean()), 4) if across.size else None}


def whole_vector_distances(run: RunDir, seeds: list[int], groups: list) -> dict[str, dict]:
    """Euclidean distance between whole weight vectors, naive and aligned, within and across ``groups``, and
    the basins spectral clustering finds in it."""
    cfg = load_config(run.config_path)
    template, state_dicts, _ = load_policies(run, seeds)
    heldout_obs, _ = fingerprint_inputs(cfg, evaluation_sample(cfg))
    aligned = align.align_seeds(cfg.analysis.align, template, state_dicts, heldout_obs, seed=cfg.seed,
                                show_progress=False)
    out = {}
    for name, models in (("naive", state_dicts), ("aligned", aligned)):
        vectors = torch.stack([torch.cat([v.flatten().double() for v in sd.values()]) for sd in models])
        distances = torch.cdist(vectors, vectors).numpy()
        np.fill_diagonal(distances, 0.0)
        out[name] = {**_within_across(distances, groups), "basins": spectral_basins(distances).k}
    return out


def _agreement(a) -> dict | None:
    if a is None:
        return None
    return {"ari": None if a.ari is None else round(a.ari, 3), "ci": None if a.ari is None else
            [round(a.low, 3), round(a.high, 3)], "undefined": a.undefined}


def summarise(run: RunDir, config: str) -> dict:
    found = BasinsResult.load(run.analysis_dir / "basins.json")
    conn = BarrierStudy.load(run.analysis_dir / "connectivity.json")
    groups = found.planted or found.behavior.clustering.labels
    return {
        "config": config, "seeds": len(found.seeds), "truth": "planted groups" if found.planted else
        "behavioural basins", "behavioural_basins": found.behavior.clustering.k,
        "barrier_standard_error": {m: round(v, 4) for m, v in (conn.standard_error or {}).items()},
        "barrier_episodes": conn.episodes, "barrier_states": conn.n_states,
        "views": [{"view": v.name, "reads": v.reads, "basins": v.clustering.k,
                   "within": None if v.within is None else round(v.within, 4),
                   "across": None if v.across is None else round(v.across, 4),
                   "ari_behaviour": _agreement(v.agreement), "ari_planted": _agreement(v.planted)}
                  for v in found.weights.views],
        "whole_weight_vector": whole_vector_distances(run, found.seeds, groups),
        "analysis_seconds": {k: round(v, 1) for k, v in found.seconds.items()},
    }


def main(runs_dir: str) -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    out = {"commit": commit, "hardware": "2-core x86-64 CPU, no GPU",
           "runs": {name: summarise(RunDir(Path(runs_dir) / name), config) for name, config in RUNS.items()
                    if (Path(runs_dir) / name).exists()}}
    path = Path(__file__).with_suffix(".json")
    path.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"→ {path}")


if __name__ == "__main__":
    main(sys.argv[1])
