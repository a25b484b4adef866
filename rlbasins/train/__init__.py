"""Training N seeds of an experiment into its run directory.

:func:`train_experiment` owns the run directory (lock, manifest, overwrite/resume rules) and
hands the seeds still to do to the configured executor (:mod:`rlbasins.train.executors`), which runs
an engine (:mod:`rlbasins.train.sb3`, :mod:`rlbasins.train.batched`) here or on a Ray cluster.
"""

from __future__ import annotations

import platform
import subprocess
import time
from collections.abc import Callable
from contextlib import ExitStack
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
        run.clear()
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
    return train_together([cfg], runs_dir, resume=resume, overwrite=overwrite, show_progress=show_progress,
                          seeds=seeds, until_step=until_step)[0]


def start_from(cfg: ExperimentConfig, runs_dir: Path | str, step: int,
               starts: dict[int, tuple[RunDir, int, dict[str, Any]]], overwrite: bool = False) -> RunDir:
    """A new run of ``cfg`` whose seeds start at checkpoint ``step`` from other seeds' training states with
    weights of their own — branches: ``starts`` maps each seed index k of the new run to (source run, source
    seed, weights). Seed k gets the source seed's optimiser, env and rollout state at ``step`` and the given
    weights; its manifest entry is ``interrupted`` at ``step``, so :func:`train_experiment` with ``resume``
    continues it from there with seed k's own factor seeds (the schedules still count from step 0). The
    directory must not hold a run (unless ``overwrite``)."""
    from rlbasins.train.base import policy_metadata

    run = RunDir(Path(runs_dir) / cfg.name)
    with run_lock(run.root):
        if run.exists() and not overwrite:
            raise StoreError(f"{run.root} already holds a run; pass --overwrite to branch again")
        if run.exists():
            run.clear()
        atomic_write_bytes(run.config_path, dump_config(cfg).encode())
        manifest = _new_manifest(cfg, list(starts))
        for k, (source, source_seed, weights) in starts.items():
            store = source.seed(source_seed)
            _, source_meta = store.load_policy(step)
            tensors, meta = store.load_state(step)
            task = SeedTask(k, seed_factors(cfg, k), {}, str(run.root))
            run.seed(k).save(step, weights, policy_metadata(cfg, task, step, source_meta["obs_shape"]), tensors, meta)
            manifest["seeds"][str(k)].update(status="interrupted", last_step=step)
        manifest["status"] = "interrupted"
        run.write_manifest(manifest)
    return run


def lockstep_issue(cfgs: list[ExperimentConfig]) -> str | None:
    """Why ``cfgs`` cannot train as one lockstep batch (:func:`train_together`), or None when they can."""
    from rlbasins.train.batched import SEEDWISE, lockstep_key

    if len({c.name for c in cfgs}) < len(cfgs):
        return "two of them have the same name (one run directory)"
    if any(c.engine != "batched" or c.executor.kind != "local" or c.env.planted for c in cfgs):
        return "a grid trains on the batched engine, local executor, without env.planted"
    if len({lockstep_key(c) for c in cfgs}) > 1:
        return (f"they differ in more than the per-seed PPO settings ({', '.join(SEEDWISE)}, the two schedules), "
                "policy.init_scale and env kwargs that keep the observation shape and the number of actions")
    return None


def train_together(cfgs: list[ExperimentConfig], runs_dir: Path | str = "runs", *, resume: bool = False,
                   overwrite: bool = False, show_progress: bool = True, seeds: list[int] | None = None,
                   until_step: int | None = None) -> list[RunDir]:
    """Train every seed of each config in ``cfgs`` into its own ``runs_dir/<name>`` (the rules of
    :func:`train_experiment` for each), all at once.

    One config trains on its engine and executor. Several (a grid of settings) train as one lockstep batch
    of the batched engine in this process, the PureJaxRL way: their seeds differ only in their PPO settings
    (:data:`~rlbasins.train.batched.SEEDWISE`) and init scale, held per seed as tensors, and in env kwargs
    that keep the observation shape, each seed stepping its own variant (:func:`lockstep_issue` says when
    configs do not qualify). Each seed's checkpoints are the same bytes as
    its run trained alone. Each run directory stays a run of its own config (analysis and reports read it
    unchanged).
    """
    from rlbasins.core.progress import training_progress

    if len(cfgs) > 1 and (issue := lockstep_issue(cfgs)) is not None:
        raise ValueError(f"{', '.join(c.name for c in cfgs)} cannot train together: {issue}")
    runs = [RunDir(Path(runs_dir) / cfg.name) for cfg in cfgs]
    stop = stop_step(cfgs[0], until_step)
    with ExitStack() as locks:
        for run in runs:
            locks.enter_context(run_lock(run.root))
        manifests, tasks = [], []
        for run, cfg in zip(runs, cfgs, strict=True):
            manifest = _prepare(run, cfg, resume, overwrite, seeds)
            for k in seeds or []:
                manifest["seeds"].setdefault(str(k), _seed_entry(cfg, k))
            todo = [k for k in RunDir.seeds_with_status(manifest, "pending", "running", "interrupted")
                    if (seeds is None or k in seeds) and _checkpointed_step(run, k) < stop]
            tasks.append([SeedTask(k, seed_factors(cfg, k), cfg.model_dump(mode="json"), str(run.root), until_step)
                          for k in todo])
            for task in tasks[-1]:
                manifest["seeds"][str(task.index)]["status"] = "running"
            run.write_manifest(manifest)
            manifests.append(manifest)

        def on_done(member: int, outcome: SeedOutcome) -> None:
            manifest = manifests[member]
            manifest["seeds"][str(outcome.index)].update(
                status=outcome.status, last_step=outcome.last_step, error=outcome.error)
            manifest["updated"] = utc_now()
            runs[member].write_manifest(manifest)

        if any(tasks):
            # one bar per seed of every run; seed indices need not be 0..n-1
            position = {key: i for i, key in enumerate((m, int(k)) for m, manifest in enumerate(manifests)
                                                        for k in manifest["seeds"])}
            with training_progress(len(position), cfgs[0].checkpoint_steps()[-1], enabled=show_progress) as bar:
                for (m, k) in position:
                    entry = manifests[m]["seeds"][str(k)]
                    if entry["status"] in ("finished", "failed", "aborted") or entry["last_step"] >= stop:
                        bar.advance_seed(position[m, k], entry["last_step"])
                if len(cfgs) == 1:
                    get_executor(cfgs[0].executor).run(
                        cfgs[0], tasks[0], lambda index, steps: bar.advance_seed(position[0, index], steps),
                        lambda outcome: on_done(0, outcome))
                else:
                    _train_lockstep(cfgs, tasks, bar, position, on_done)
        for run, cfg, manifest in zip(runs, cfgs, manifests, strict=True):
            statuses = {s["status"] for s in manifest["seeds"].values()}
            manifest["status"] = "finished" if statuses <= {"finished", "failed", "aborted"} else "interrupted"
            if manifest["status"] == "finished":
                write_summaries(run.tb_dir, cfg, manifest, RunDir.seeds_with_status(manifest, "finished"))
            manifest["updated"] = utc_now()
            run.write_manifest(manifest)
    return runs


def train_runs(cfgs: list[ExperimentConfig], runs_dir: Path | str, resume: bool, show_progress: bool,
               on_train: Callable[[ExperimentConfig], Any] | None = None) -> dict[str, tuple[RunDir, str, float]]:
    """The runs of a study (sweep settings, map points): each config trained unless its run is finished (then
    reused) → {name: (its run, "trained" or "reused", training seconds)}. Configs that may share a lockstep batch
    (:func:`lockstep_issue`: on the batched engine, those that differ only in PPO settings, init scale or
    shape-keeping env kwargs) train
    together (:func:`train_together`), their time shared equally. Refuses a directory that holds another
    config's run, or an unfinished one without ``resume``; ``on_train(cfg)`` is called before a config trains."""
    from rlbasins.train.batched import lockstep_key

    out: dict[str, tuple[RunDir, str, float]] = {}
    groups: dict[str, list[ExperimentConfig]] = {}
    for cfg in cfgs:
        run = RunDir(Path(runs_dir) / cfg.name)
        if run.exists():
            manifest = run.manifest()
            if manifest["config_hash"] != cfg.hash():
                raise StoreError(f"{run.root} holds a run of another config (hash {manifest['config_hash'][:12]}…, "
                                 f"this one {cfg.hash()[:12]}…); delete it or rename the study (`name`)")
            if manifest["status"] == "finished":
                out[cfg.name] = (run, "reused", 0.0)
                continue
            if not resume:
                raise StoreError(f"{run.root} holds an unfinished run; pass --resume to continue it")
        key = lockstep_key(cfg) if lockstep_issue([cfg]) is None else f"alone:{cfg.name}"
        groups.setdefault(key, []).append(cfg)
    for group in groups.values():
        for cfg in group:
            if on_train is not None:
                on_train(cfg)
        start = time.perf_counter()
        runs = train_together(group, runs_dir, resume=True, show_progress=show_progress)
        for cfg, run in zip(group, runs, strict=True):
            if run.manifest()["status"] != "finished":
                raise RuntimeError(f"{run.root}: not every seed finished; see its manifest.json")
            out[cfg.name] = (run, "trained", (time.perf_counter() - start) / len(group))
    return out


def _train_lockstep(cfgs: list[ExperimentConfig], tasks: list[list[SeedTask]], bar, position: dict,
                    on_done: Callable[[int, SeedOutcome], None]) -> None:
    """The seeds of several runs (``tasks[m]`` of ``cfgs[m]``) as one batched trainer."""
    from rlbasins.train.batched import BatchedTrainer

    members = [m for m, member_tasks in enumerate(tasks) for _ in member_tasks]
    flat = [task for member_tasks in tasks for task in member_tasks]
    trainer = BatchedTrainer(cfgs[members[0]], flat)

    def advance(index: int, steps: int) -> None:  # every seed moves in lockstep: each run's seed `index`
        for m in range(len(cfgs)):
            if (m, index) in position:
                bar.advance_seed(position[m, index], steps)

    for member, outcome in zip(members, trainer.run(advance), strict=True):
        on_done(member, outcome)
