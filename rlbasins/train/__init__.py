"""Training N seeds of an experiment into its run directory.

:func:`train_experiment` owns the run directory (lock, manifest, overwrite/resume rules) and
hands the seeds still to do to the configured executor (:mod:`rlbasins.train.executors`), which runs
an engine (:mod:`rlbasins.train.sb3`, :mod:`rlbasins.train.batched`) here or on a Ray cluster.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rlbasins import __version__
from rlbasins.core.config import ExperimentConfig, dump_config
from rlbasins.core.devices import resolve_device
from rlbasins.core.logs import write_summaries
from rlbasins.core.seeding import SeedFactors, factor_indices, run_seeds
from rlbasins.core.store import RunDir, StoreError, atomic_write_bytes, run_lock
from rlbasins.train.base import SeedOutcome, SeedTask, stop_step
from rlbasins.train.executors import get_executor


def software_versions() -> dict[str, str]:
    """Versions of rlbasins and of the libraries that decide its results (recorded in every manifest)."""
    import gymnasium
    import numpy
    import stable_baselines3
    import torch

    return {"rlbasins": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "stable_baselines3": stable_baselines3.__version__, "gymnasium": gymnasium.__version__,
            "numpy": numpy.__version__}


def git_commit() -> str | None:
    """The rlbasins source commit (suffixed ``-dirty`` with local changes), when installed from git."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def seed_factors(cfg: ExperimentConfig, index: int) -> SeedFactors:
    """Seed ``index``'s factor seeds (from the master seed and ``index`` alone; any index ≥ 0)."""
    return run_seeds(cfg.seed, factor_indices(index, cfg.seeds.vary, cfg.seeds.grid))


def _seed_entry(cfg: ExperimentConfig, index: int) -> dict[str, Any]:
    return {"status": "pending", "last_step": 0, "error": None, "factor_seeds": seed_factors(cfg, index).as_dict(),
            "planted": cfg.planted_label(index)}


def _new_manifest(cfg: ExperimentConfig, indices: list[int] | None = None) -> dict[str, Any]:
    """A fresh manifest listing seeds ``0..seeds.count-1``, or only ``indices``."""
    indices = range(cfg.seeds.count) if indices is None else sorted(indices)
    return {
        "experiment": cfg.name, "status": "running", "created": utc_now(), "updated": utc_now(),
        "config_hash": cfg.hash(), "reward_model_sha256": cfg.reward_model_sha256(), "engine": cfg.engine,
        "device": str(resolve_device(cfg.device)), "versions": software_versions(), "git_commit": git_commit(),
        "seeds": {str(k): _seed_entry(cfg, k) for k in indices},
    }


def _prepare(run: RunDir, cfg: ExperimentConfig, resume: bool, overwrite: bool,
             indices: list[int] | None = None) -> dict[str, Any]:
    """Apply the overwrite/resume rules; return the manifest to continue with. Caller holds the lock."""
    if run.exists() and overwrite:
        for child in run.root.iterdir():
            if child.name != ".lock":
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    elif run.exists():
        manifest = run.manifest()
        if manifest["config_hash"] != cfg.hash():
            raise StoreError(f"{run.root} holds a run of a different config (hash {manifest['config_hash'][:12]}…, "
                             f"this config {cfg.hash()[:12]}…); pass --overwrite to replace it or change `name`")
        if manifest["status"] == "finished" and not resume:
            raise StoreError(f"{run.root} holds a finished run; pass --overwrite to train it again")
        if manifest["status"] != "finished" and not resume:
            raise StoreError(f"{run.root} holds an unfinished run; pass --resume to continue it from its "
                             "last checkpoints or --overwrite to start over")
        return manifest
    atomic_write_bytes(run.config_path, dump_config(cfg).encode())
    manifest = _new_manifest(cfg, indices)
    run.write_manifest(manifest)
    return manifest


def _checkpointed_step(run: RunDir, index: int) -> int:
    """The step of seed ``index``'s last checkpoint on disk (the truth a resume starts from), 0 without one."""
    last = run.seed(index).last()
    return last.step if last else 0


def train_experiment(cfg: ExperimentConfig, runs_dir: Path | str = "runs", *, resume: bool = False,
                     overwrite: bool = False, show_progress: bool = True, seeds: list[int] | None = None,
                     until_step: int | None = None) -> RunDir:
    """Train every seed of ``cfg`` into ``runs_dir/<name>``, resuming unfinished seeds if asked.

    ``seeds``: train only these seed indices (any index ≥ 0; seed k is the same run whatever the
    others); a new run's manifest then lists only them, and an existing one gains those it lacks.
    ``until_step``: stop every trained seed at this scheduled checkpoint step, leaving it
    ``interrupted`` there (resumable exactly, by a later call or ``--resume``); seeds already
    there are left alone. Seeds whose status is ``aborted`` (see :mod:`rlbasins.studies.steering`)
    are never trained.

    Raises :class:`~rlbasins.core.store.StoreError` when the directory is locked by another process,
    holds a finished run (without ``overwrite``), or an unfinished one (without ``resume``).
    """
    from rlbasins.core.progress import training_progress

    run = RunDir(Path(runs_dir) / cfg.name)
    stop = stop_step(cfg, until_step)
    with run_lock(run.root):
        manifest = _prepare(run, cfg, resume, overwrite, seeds)
        for k in seeds or []:
            manifest["seeds"].setdefault(str(k), _seed_entry(cfg, k))
        todo = [k for k in RunDir.seeds_with_status(manifest, "pending", "running", "interrupted")
                if (seeds is None or k in seeds) and _checkpointed_step(run, k) < stop]
        tasks = [SeedTask(k, seed_factors(cfg, k), cfg.model_dump(mode="json"), str(run.root), until_step)
                 for k in todo]
        end = cfg.checkpoint_steps()[-1]

        def on_done(outcome: SeedOutcome) -> None:
            manifest["seeds"][str(outcome.index)].update(
                status=outcome.status, last_step=outcome.last_step, error=outcome.error)
            manifest["updated"] = utc_now()
            run.write_manifest(manifest)

        for task in tasks:
            manifest["seeds"][str(task.index)]["status"] = "running"
        run.write_manifest(manifest)
        if tasks:
            position = {int(k): i for i, k in enumerate(manifest["seeds"])}  # seed indices need not be 0..n-1
            with training_progress(len(position), end, enabled=show_progress) as progress:
                def advance(index: int, steps: int) -> None:
                    progress.advance_seed(position[index], steps)

                for k, s in manifest["seeds"].items():
                    if s["status"] in ("finished", "failed", "aborted") or s["last_step"] >= stop:
                        advance(int(k), s["last_step"])
                get_executor(cfg.executor).run(cfg, tasks, advance, on_done)
        statuses = {s["status"] for s in manifest["seeds"].values()}
        manifest["status"] = "finished" if statuses <= {"finished", "failed", "aborted"} else "interrupted"
        if manifest["status"] == "finished":
            write_summaries(run.tb_dir, cfg, manifest, RunDir.seeds_with_status(manifest, "finished"))
        manifest["updated"] = utc_now()
        run.write_manifest(manifest)
    return run
