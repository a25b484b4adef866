"""Where the seeds of an experiment train: on this machine, or as seed groups on a Ray cluster.

An executor receives the driver's :class:`~rlbasins.train.base.SeedTask` list and reports one
:class:`~rlbasins.train.base.SeedOutcome` per task through ``on_done``; the driver
(:func:`rlbasins.train.train_experiment`) keeps the run lock and is the only writer of
``manifest.json``. Seeds write only their own ``seeds/<k>/`` and ``tb/seed_<k>/`` through the
atomic store, so workers on other machines can share the run directory (a shared filesystem).

- ``local``: the configured engine, as it always ran (sb3: a process per seed; batched: this process).
- ``ray``: the seeds split into groups (:func:`seed_groups`), one Ray task per group with its
  CPUs, GPUs and retries. A group whose worker or node dies is re-run by Ray and resumes from
  its seeds' last checkpoints, as ``--resume`` would. A group trains in its worker process only
  (no child processes), so a killed worker leaves nothing behind that still writes its seeds.

The executor never changes results: a seed's checkpoints are the same bytes whichever executor,
group or worker trained it (on CPU).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from rlbasins.core.config import ExecutorConfig, ExperimentConfig
from rlbasins.core.store import RunDir, StoreError
from rlbasins.train.base import Engine, ProgressCallback, SeedOutcome, SeedTask

DoneCallback = Callable[[SeedOutcome], None]

POLL_SECONDS = 1.0
"""How often the Ray driver looks for finished groups and new checkpoints (progress)."""


class Executor(Protocol):
    """Trains ``tasks`` somewhere; calls ``on_progress(index, steps)`` as seeds advance and
    ``on_done(outcome)`` exactly once per task, in the driver's process."""

    def run(self, cfg: ExperimentConfig, tasks: list[SeedTask], on_progress: ProgressCallback,
            on_done: DoneCallback) -> None: ...


def get_executor(config: ExecutorConfig) -> Executor:
    """The executor ``config.kind`` names."""
    return RayExecutor(config) if config.kind == "ray" else LocalExecutor(config)


class LocalExecutor:
    """The configured engine on this machine, with up to ``max_workers`` processes (default: one per core)."""

    def __init__(self, config: ExecutorConfig):
        self.config = config

    def run(self, cfg: ExperimentConfig, tasks: list[SeedTask], on_progress: ProgressCallback,
            on_done: DoneCallback) -> None:
        get_engine(cfg.engine).train(cfg, tasks, self.config.max_workers or os.cpu_count() or 1, on_progress, on_done)


# --------------------------------------------------------------------------- ray


def seed_groups(cfg: ExperimentConfig, tasks: list[SeedTask], size: int | None) -> list[list[SeedTask]]:
    """The tasks in groups of at most ``size`` seeds, in seed order (``env.planted`` variants may share a group:
    each seed trains on its own variant). ``size`` None: one seed per group for the sb3 engine (it trains a
    group's seeds one after the other), every seed for the batched engine (it trains them in lockstep)."""
    ordered = sorted(tasks, key=lambda task: task.index)
    step = size or (1 if cfg.engine == "sb3" else len(ordered))
    return [ordered[i : i + step] for i in range(0, len(ordered), step)]


def train_in_this_process(cfg: ExperimentConfig, tasks: list[SeedTask], on_progress: ProgressCallback,
                          on_done: DoneCallback) -> None:
    """Train ``tasks`` in the calling process, starting no other process: sb3 seeds one after the
    other (:func:`~rlbasins.train.sb3.train_seed`), batched seeds with the batched engine."""
    if cfg.engine == "sb3":
        from rlbasins.train.sb3 import train_seed

        for task in tasks:
            on_done(train_seed(task))
    else:
        get_engine(cfg.engine).train(cfg, tasks, 1, on_progress, on_done)


def train_group(tasks: list[SeedTask], threads: int) -> list[SeedOutcome]:
    """The body of one Ray task: train a seed group with ``threads`` torch threads; one outcome per seed."""
    import torch

    torch.set_num_threads(threads)
    outcomes: list[SeedOutcome] = []
    train_in_this_process(ExperimentConfig.model_validate(tasks[0].config), tasks, lambda index, steps: None,
                          outcomes.append)
    return outcomes


def _lost_group_outcomes(group: list[SeedTask], error: Exception) -> list[SeedOutcome]:
    """Outcomes of a group whose Ray task raised: ``failed`` for an error of the training code (it
    would fail again), ``interrupted`` (resumable with ``--resume``) when the store could not read or
    write a file, or when Ray gave up (the worker or node died more than ``max_retries`` times)."""
    import ray.exceptions

    if isinstance(error, ray.exceptions.RayTaskError):
        status = "interrupted" if isinstance(error.cause, StoreError) else "failed"
        message = f"{type(error.cause).__name__}: {error.cause}"
    else:
        status = "interrupted"
        message = (f"{type(error).__name__} after executor.max_retries re-runs ({str(error).splitlines()[0]}); "
                   "`rlbasins train CONFIG --resume` continues from the last checkpoints")
    outcomes = []
    for task in group:
        last = RunDir(task.run_root).seed(task.index).last()
        outcomes.append(SeedOutcome(task.index, status, last.step if last else 0, message))
    return outcomes


class RayExecutor:
    """Seed groups as Ray tasks on the cluster at ``address``, or on a local Ray instance.

    Uses a Ray connection that already exists (``ray.init`` called by the caller); otherwise
    starts one for the run and shuts it down afterwards.
    """

    def __init__(self, config: ExecutorConfig):
        self.config = config

    def run(self, cfg: ExperimentConfig, tasks: list[SeedTask], on_progress: ProgressCallback,
            on_done: DoneCallback) -> None:
        import ray

        started = not ray.is_initialized()
        if started:
            ray.init(**self._init_kwargs())
        try:
            self._run_groups(cfg, tasks, on_progress, on_done)
        finally:
            if started:
                ray.shutdown()

    def _init_kwargs(self) -> dict[str, Any]:
        """``ray.init`` arguments: join ``address``, or a local instance with ``max_workers`` CPUs."""
        if self.config.address is not None:
            return {"address": self.config.address}
        return {"num_cpus": self.config.max_workers or os.cpu_count() or 1, "include_dashboard": False}

    def _run_groups(self, cfg: ExperimentConfig, tasks: list[SeedTask], on_progress: ProgressCallback,
                    on_done: DoneCallback) -> None:
        import ray

        ex = self.config
        remote = ray.remote(train_group).options(num_cpus=ex.cpus_per_group, num_gpus=ex.gpus_per_group,
                                                 max_retries=ex.max_retries, retry_exceptions=False)
        # workers elsewhere resolve paths on the shared filesystem, not in the driver's working directory
        tasks = [dataclasses.replace(task, run_root=str(Path(task.run_root).resolve())) for task in tasks]
        threads = max(1, int(ex.cpus_per_group))
        pending = {remote.remote(group, threads): group for group in seed_groups(cfg, tasks, ex.group_size)}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=len(pending), timeout=POLL_SECONDS)
            for ref in done:
                group = pending.pop(ref)
                try:
                    outcomes = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    outcomes = _lost_group_outcomes(group, exc)
                for outcome in outcomes:
                    on_done(outcome)
                    on_progress(outcome.index, outcome.last_step)
            _report_checkpoints([task for group in pending.values() for task in group], on_progress)


def _report_checkpoints(tasks: list[SeedTask], on_progress: ProgressCallback) -> None:
    """Progress of seeds still training elsewhere: the step of each one's last checkpoint."""
    for task in tasks:
        last = RunDir(task.run_root).seed(task.index).last()
        if last is not None:
            on_progress(task.index, last.step)


def get_engine(name: str) -> Engine:
    if name == "sb3":
        from rlbasins.train.sb3 import SB3Engine

        return SB3Engine()
    if name == "batched":
        from rlbasins.train.batched import BatchedEngine

        return BatchedEngine()
    raise ValueError(f"unknown engine {name!r}")
