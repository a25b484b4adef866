"""CartPole-v1 as a batched torch core: gymnasium's dynamics for B environments at once.

The same equations, constants, termination rule, reward and 500-step limit as
``gymnasium.envs.classic_control.CartPoleEnv`` (Euler integration, float64 state), stepped as
tensors so that the batched engine does not have to step hundreds of Python environments.
Start states are uniform in ±0.05 like gymnasium's, drawn from the counter-based per-env
streams of :mod:`envs.grid` (so the same seed gives other start states than gymnasium's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

from envs.grid import OUTCOME_ONGOING, OUTCOME_TIMEOUT, Step, draws

GRAVITY, MASS_CART, MASS_POLE, HALF_LENGTH, FORCE, TAU = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02
TOTAL_MASS, POLE_MASS_LENGTH = MASS_CART + MASS_POLE, MASS_POLE * HALF_LENGTH
THETA_LIMIT, X_LIMIT = 12 * 2 * math.pi / 360, 2.4


@dataclass
class CartPoleState:
    """physics [B, 4] float64 (x, ẋ, θ, θ̇); steps, episode, seed [B] int64."""

    physics: torch.Tensor
    steps: torch.Tensor
    episode: torch.Tensor
    seed: torch.Tensor

    def as_dict(self) -> dict[str, torch.Tensor]:
        return dict(physics=self.physics, steps=self.steps, episode=self.episode, seed=self.seed)


class CartPoleCore:
    """B CartPole-v1 environments stepped together (CPU or CUDA)."""

    n_actions = 2
    observation_space = gym.spaces.Box(   # gymnasium's: twice the termination limits, unbounded velocities
        -(high := np.array([2 * X_LIMIT, np.inf, 2 * THETA_LIMIT, np.inf], dtype=np.float32)), high,
        dtype=np.float32)

    def __init__(self, num_envs: int = 1, max_steps: int = 500, device: torch.device | str = "cpu"):
        self.num_envs, self.max_steps, self.device = num_envs, max_steps, torch.device(device)
        zeros = torch.zeros(num_envs, dtype=torch.int64, device=self.device)
        self.state = CartPoleState(self._starts(zeros, zeros), zeros, zeros, zeros)

    def _starts(self, seed: torch.Tensor, episode: torch.Tensor) -> torch.Tensor:
        return draws(seed, episode, 4).double() / 2**32 * 0.1 - 0.05                # uniform(-0.05, 0.05)

    def observe(self, state: CartPoleState | None = None) -> torch.Tensor:
        return (self.state if state is None else state).physics.float()

    def reset(self, seeds: torch.Tensor) -> torch.Tensor:
        seeds = torch.as_tensor(seeds, dtype=torch.int64, device=self.device) & 0xFFFFFFFF
        zeros = torch.zeros_like(seeds)
        self.state = CartPoleState(self._starts(seeds, zeros), zeros, zeros.clone(), seeds)
        return self.observe()

    def reset_to(self, physics: torch.Tensor) -> torch.Tensor:
        """Start every environment from given (x, ẋ, θ, θ̇) states [B, 4] (e.g. held-out states)."""
        physics = torch.as_tensor(physics, dtype=torch.float64, device=self.device)
        if physics.shape != (self.num_envs, 4):
            raise ValueError(f"expected states of shape ({self.num_envs}, 4), got {tuple(physics.shape)}")
        zeros = torch.zeros(self.num_envs, dtype=torch.int64, device=self.device)
        self.state = CartPoleState(physics.clone(), zeros, zeros.clone(), zeros.clone())
        return self.observe()

    def step(self, actions: torch.Tensor, autoreset: bool = False) -> Step:
        x, x_dot, theta, theta_dot = self.state.physics.unbind(1)
        force = torch.where(actions.to(self.device) == 1, FORCE, -FORCE).double()
        cos, sin = torch.cos(theta), torch.sin(theta)
        temp = (force + POLE_MASS_LENGTH * theta_dot**2 * sin) / TOTAL_MASS
        theta_acc = (GRAVITY * sin - cos * temp) / (HALF_LENGTH * (4.0 / 3.0 - MASS_POLE * cos**2 / TOTAL_MASS))
        x_acc = temp - POLE_MASS_LENGTH * theta_acc * cos / TOTAL_MASS
        physics = torch.stack([x + TAU * x_dot, x_dot + TAU * x_acc, theta + TAU * theta_dot,
                               theta_dot + TAU * theta_acc], dim=1)
        state = CartPoleState(physics, self.state.steps + 1, self.state.episode, self.state.seed)
        terminated = (physics[:, 0].abs() > X_LIMIT) | (physics[:, 2].abs() > THETA_LIMIT)
        truncated = ~terminated & (state.steps >= self.max_steps)
        outcome = torch.where(truncated, OUTCOME_TIMEOUT, OUTCOME_ONGOING)
        self.state = state
        if autoreset:
            done = terminated | truncated
            episode = state.episode + done
            fresh = self._starts(state.seed, episode)
            self.state = CartPoleState(torch.where(done[:, None], fresh, physics), state.steps * ~done, episode,
                                       state.seed)
        reward = torch.ones(self.num_envs, device=self.device)  # every step, the terminating one included
        return Step(self.observe(), reward, terminated, truncated, outcome, state, self)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.state.as_dict()

    def load_state_dict(self, tensors: dict[str, torch.Tensor]) -> None:
        self.state = CartPoleState(**{k: v.to(self.device) for k, v in tensors.items()})
