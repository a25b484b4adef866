"""Held-out state suites: start states the policies never saw in training.

A suite samples states from outside the training start distribution and puts a fresh
environment into one of them, so that a policy's behaviour there can be measured and
compared across seeds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np


@dataclass(frozen=True)
class HeldOutSuite:
    """How to sample held-out states of one environment and start an episode from one."""

    description: str
    sample_states: Callable[[gym.Env, np.random.Generator, int], Sequence]
    """(env, rng, n) → n states (env-specific: an array [n, state_dim], or a GridState batch)."""
    start_from: Callable[[gym.Env, Any], np.ndarray]
    """(env after reset, one state) → observation of that state; the env continues from it."""
    labels: tuple[str, str] | None = None
    """Names of the two strategies, when the env labels behaviour (``info["outcome"]`` at episode end)."""


# --------------------------------------------------------------------------- CartPole

_CARTPOLE_TRAIN_HALF_WIDTH = 0.05  # gymnasium CartPole resets every state variable in ±0.05
_CARTPOLE_HELDOUT_HALF_WIDTHS = np.array([0.5, 0.5, 0.15, 0.5])  # x, ẋ, θ, θ̇ (θ stays < 0.2095 rad)


def _cartpole_states(env: gym.Env, rng: np.random.Generator, n: int) -> np.ndarray:
    """Uniform in the wider box, rejecting states inside the training start box."""
    states = np.empty((0, 4))
    while len(states) < n:
        draw = rng.uniform(-1, 1, size=(2 * n, 4)) * _CARTPOLE_HELDOUT_HALF_WIDTHS
        outside = np.abs(draw).max(axis=1) > _CARTPOLE_TRAIN_HALF_WIDTH
        states = np.concatenate([states, draw[outside]])
    return states[:n]


def _cartpole_start_from(env: gym.Env, state: np.ndarray) -> np.ndarray:
    env.unwrapped.state = np.array(state, dtype=np.float64)
    return np.array(state, dtype=np.float32)


CARTPOLE = HeldOutSuite(
    description="CartPole start states outside the training range: x, ẋ, θ̇ in ±0.5 and θ in ±0.15 rad, "
    "excluding the training box (every variable in ±0.05).",
    sample_states=_cartpole_states,
    start_from=_cartpole_start_from,
)

HELDOUT_SUITES: dict[str, HeldOutSuite] = {"CartPole-v1": CARTPOLE, "CartPole-v0": CARTPOLE}


def grid_suite(core_class) -> HeldOutSuite:
    """The held-out suite of a gridworld core (``envs.grid.GridCore`` subclass)."""
    def sample(env: gym.Env, rng: np.random.Generator, n: int):
        core = env.unwrapped.core
        return core_class.heldout_states(n, seed=int(rng.integers(2**32)), size=core.size, **core.heldout_options)

    return HeldOutSuite(description=core_class.description, sample_states=sample,
                        start_from=lambda env, state: env.unwrapped.start_from(state), labels=core_class.labels)


def get_suite(env_id: str) -> HeldOutSuite:
    try:
        return HELDOUT_SUITES[env_id]
    except KeyError:
        raise KeyError(f"no held-out suite for {env_id!r}; suites exist for {', '.join(sorted(HELDOUT_SUITES))}") \
            from None
