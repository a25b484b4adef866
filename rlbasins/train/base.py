"""What every training engine receives and returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from rlbasins.config import ExperimentConfig
from rlbasins.seeding import SeedFactors

ProgressCallback = Callable[[int, int], None]
"""(seed index, env steps done by that seed)."""


@dataclass(frozen=True)
class SeedTask:
    """One seed to train (or resume) — plain data, so it can cross process boundaries."""

    index: int
    seeds: SeedFactors
    config: dict[str, Any]  # the resolved config, ``ExperimentConfig.model_dump(mode="json")``
    run_root: str


@dataclass(frozen=True)
class SeedOutcome:
    index: int
    status: Literal["finished", "failed", "interrupted"]
    last_step: int
    error: str | None


class Engine(Protocol):
    """Trains a set of seeds of one experiment, writing checkpoints to the run directory.

    Engines call ``on_progress(index, steps)`` as seeds advance and ``on_done(outcome)`` once per
    task; they must resume a seed from its last checkpoint when it has one.
    """

    name: str

    def train(self, cfg: ExperimentConfig, tasks: list[SeedTask], max_workers: int,
              on_progress: ProgressCallback, on_done: Callable[[SeedOutcome], None]) -> None: ...


def policy_metadata(cfg: ExperimentConfig, task: SeedTask, step: int) -> dict[str, Any]:
    """Header of an exchange-format checkpoint: enough to rebuild the module and trace its origin."""
    return {"format": "rlbasins.ActorCritic/1", "env_id": cfg.env.id, "hidden_sizes": list(cfg.policy.hidden_sizes),
            "activation": cfg.policy.activation, "step": step, "seed_index": task.index,
            "seeds": task.seeds.as_dict(), "config_hash": cfg.hash()}
