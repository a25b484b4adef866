"""What every training engine receives and returns."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from rlbasins.core.config import ExperimentConfig
from rlbasins.core.seeding import SeedFactors

ProgressCallback = Callable[[int, int], None]
"""(seed index, env steps done by that seed)."""


@dataclass(frozen=True)
class SeedTask:
    """One seed to train (or resume) — plain data, so it can cross process boundaries."""

    index: int
    seeds: SeedFactors
    config: dict[str, Any]  # the resolved config, ``ExperimentConfig.model_dump(mode="json")``
    run_root: str
    until_step: int | None = None
    """Stop at this scheduled checkpoint step (outcome ``interrupted``, resumable); None: the end."""


@dataclass(frozen=True)
class SeedOutcome:
    index: int
    status: Literal["finished", "failed", "interrupted"]
    last_step: int
    error: str | None


class Engine(Protocol):
    """Trains a set of seeds of one experiment, writing checkpoints to the run directory.

    Engines call ``on_progress(index, steps)`` as seeds advance and ``on_done(outcome)`` once per
    task; they must resume a seed from its last checkpoint when it has one, and stop a task with an
    ``until_step`` at that checkpoint (saved; outcome ``interrupted`` with ``last_step`` = that step)
    without changing anything it computes (learning-rate schedules still run to the end).
    """

    name: str

    def train(self, cfg: ExperimentConfig, tasks: list[SeedTask], max_workers: int,
              on_progress: ProgressCallback, on_done: Callable[[SeedOutcome], None]) -> None: ...


def policy_metadata(cfg: ExperimentConfig, task: SeedTask, step: int, obs_shape: Sequence[int]) -> dict[str, Any]:
    """Header of an exchange-format checkpoint: enough to rebuild the module and trace its origin.

    ``obs_shape`` and ``conv_channels`` were added with CNN policies; a checkpoint without them is an MLP
    whose input size is its first weight's."""
    return {"format": "rlbasins.ActorCritic/1", "env_id": cfg.env.id, "hidden_sizes": list(cfg.policy.hidden_sizes),
            "activation": cfg.policy.activation, "obs_shape": [int(d) for d in obs_shape],
            "conv_channels": cfg.policy.conv_channels, "step": step, "seed_index": task.index,
            "seeds": task.seeds.as_dict(), "config_hash": cfg.hash()}


def stop_step(cfg: ExperimentConfig, until_step: int | None) -> int:
    """Where a task with ``until_step`` stops: that step, which must be a scheduled checkpoint; None: the end."""
    schedule = cfg.checkpoint_steps()
    if until_step is None:
        return schedule[-1]
    if until_step not in schedule:
        raise ValueError(f"until_step {until_step} is not a scheduled checkpoint step ({schedule})")
    return until_step
