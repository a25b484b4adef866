"""Speed measurements that print numbers and ratios (never assertions).

``rlbasins bench envs``: batched env-core steps per second at several batch sizes, next to the
gymnasium single-env view of the same environment (the speed SB3 sees per environment).
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch


def _rate(run: Callable[[int], None], items_per_call: int, seconds: float, repeats: int) -> float:
    """Median items/s over ``repeats`` timed windows of about ``seconds`` each (after a warm-up)."""
    for i in range(5):
        run(i)
    rates = []
    for _ in range(repeats):
        calls, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            run(calls)
            calls += 1
        rates.append(calls * items_per_call / elapsed)
    return statistics.median(rates)


def batched_env_rate(core_class, num_envs: int, device: str, seconds: float, repeats: int) -> float:
    """Env-steps/s of a batched core stepping ``num_envs`` environments with autoreset."""
    core = core_class(num_envs=num_envs, device=device)
    core.reset(torch.arange(num_envs))
    actions = torch.randint(0, core.n_actions, (64, num_envs), generator=torch.Generator().manual_seed(0)).to(device)

    def step(i: int) -> None:
        core.step(actions[i % 64], autoreset=True)
        if device == "cuda":
            torch.cuda.synchronize()

    return _rate(step, num_envs, seconds, repeats)


def gymnasium_rate(env_id: str, seconds: float, repeats: int) -> float:
    """Env-steps/s of ``gym.make(env_id)`` stepped one action at a time (resets included)."""
    env = gym.make(env_id)
    env.reset(seed=0)
    actions = np.random.default_rng(0).integers(0, env.action_space.n, size=1024)

    def step(i: int) -> None:
        _, _, terminated, truncated, _ = env.step(int(actions[i % 1024]))
        if terminated or truncated:
            env.reset()

    return _rate(step, 1, seconds, repeats)


def bench_envs(env_ids: list[str], batch_sizes: list[int], device: str, seconds: float = 0.5,
               repeats: int = 5) -> dict:
    """Measure every env at every batch size; returns a JSON-able dict of results."""
    import envs

    rows = []
    for env_id in env_ids:
        single = gymnasium_rate(env_id, seconds, repeats)
        for num_envs in batch_sizes:
            rate = batched_env_rate(envs.GRID_ENVS[env_id], num_envs, device, seconds, repeats)
            rows.append({"env": env_id, "device": device, "num_envs": num_envs, "env_steps_per_s": rate,
                         "gymnasium_single_env_steps_per_s": single, "ratio_to_gymnasium": rate / single})
    return {"what": "envs", "torch": torch.__version__, "threads": torch.get_num_threads(),
            "machine": platform.machine(), "processor": platform.processor(), "results": rows}


def write_json(result: dict, path: Path | None) -> None:
    if path is not None:
        path.write_text(json.dumps(result, indent=2) + "\n")
