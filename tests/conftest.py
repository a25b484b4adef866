"""Shared fixtures: tiny experiments that train in seconds on a CPU."""

from __future__ import annotations

import copy
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml


def tiny_config(**overrides) -> dict:
    """A valid experiment dict: 2 CartPole seeds × 2048 steps, checkpoints every 512 steps."""
    cfg = {
        "name": "tiny", "seed": 7, "device": "cpu",
        "env": {"id": "CartPole-v1", "num_envs": 2},
        "ppo": {"total_timesteps": 2048, "n_steps": 64, "batch_size": 64, "n_epochs": 2},
        "seeds": {"count": 2},
        "checkpoints": {"every": 512},
        "analysis": {"heldout": {"n_states": 32, "n_episodes": 4}, "train_episodes": 4},
    }
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split("__")
        node = cfg
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return copy.deepcopy(cfg)


def tiny_cueconflict_config() -> dict:
    """5 CueConflict seeds that reach success 1.0 on training states in about 7 s (batched engine),
    with analysis settings small enough for tests."""
    return tiny_config(name="cue", env={"id": "rlbasins/CueConflict-v0", "num_envs": 8}, engine="batched",
                       policy={"hidden_sizes": [32, 32]},
                       ppo={"total_timesteps": 30720, "n_steps": 64, "batch_size": 256, "n_epochs": 4,
                            "learning_rate": 1e-3, "gamma": 0.95, "gae_lambda": 0.9, "ent_coef": 0.01},
                       seeds={"count": 5}, checkpoints={"every": 15360},
                       analysis={"heldout": {"n_states": 48, "n_episodes": 24}, "train_episodes": 16,
                                 "barriers": {"points": 5, "episodes": 8, "n_states": 64},
                                 "basins": {"resamples": 10}})


def batched_trainer(data: dict, root: Path, **kwargs):
    """A :class:`~rlbasins.train.batched.BatchedTrainer` over every seed of the config ``data``, writing under
    ``root`` (``kwargs``: the trainer's own, e.g. ``sync_free``)."""
    from rlbasins.core.config import parse_config
    from rlbasins.train import seed_factors
    from rlbasins.train.base import SeedTask
    from rlbasins.train.batched import BatchedTrainer

    cfg = parse_config(data)
    tasks = [SeedTask(k, seed_factors(cfg, k), cfg.model_dump(mode="json"), str(root)) for k in range(cfg.seeds.count)]
    return BatchedTrainer(cfg, tasks, **kwargs)


def write_yaml(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def tiny_yaml(tmp_path: Path) -> Path:
    return write_yaml(tmp_path / "tiny.yaml", tiny_config())


@contextmanager
def lock_held_by_another_process(root: Path) -> Iterator[subprocess.Popen]:
    """Another Python process holds ``run_lock(root)`` inside the block; it is killed after it."""
    holder = subprocess.Popen([sys.executable, "-c", (
        "import time; from pathlib import Path; from rlbasins.core.store import run_lock\n"
        f"with run_lock(Path({str(root)!r})):\n    print('locked', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        holder.kill()
        holder.wait()


# --------------------------------------------------------------------------- fault-injection counts

FAULT_COUNTS: Counter[str] = Counter()
"""What the fault-injection suite (tests/test_faults.py) survived, caught and checked; printed at the end."""

_FAULT_COUNT_ORDER = ("kills survived", "corruptions caught", "configs rejected", "seeds checked", "seeds lost",
                      "seeds duplicated")


@pytest.fixture(scope="session")
def fault_counts() -> Counter[str]:
    """The session's fault-injection counters; tests add what they injected and verified."""
    return FAULT_COUNTS


def pytest_terminal_summary(terminalreporter) -> None:
    """Print the fault-injection counts when the suite ran."""
    if FAULT_COUNTS:
        terminalreporter.section("fault injection")
        terminalreporter.write_line(", ".join(f"{FAULT_COUNTS[name]} {name}" for name in _FAULT_COUNT_ORDER))


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """5 CueConflict seeds trained to success 1.0 on training states (about 7 s); shared by the pipeline
    and compare tests (tests/test_pipeline.py, tests/test_compare.py)."""
    from rlbasins.core.config import parse_config
    from rlbasins.train import train_experiment

    return train_experiment(parse_config(tiny_cueconflict_config()), tmp_path_factory.mktemp("runs"),
                            show_progress=False)


CUE_OBS_DIM = 5 * 5 * 5
"""CueConflict's flattened observation at its default size 5."""


def random_cue_policy(seed: int, hidden=(16, 16), activation="tanh"):
    """An untrained MLP actor-critic for CueConflict (4 actions), SB3-style orthogonal init from ``seed``."""
    import torch

    from rlbasins.core.policy import ActorCritic

    torch.manual_seed(seed)
    return ActorCritic(CUE_OBS_DIM, 4, list(hidden), activation).ortho_init_()
