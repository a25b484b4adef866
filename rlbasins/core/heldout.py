"""The held-out states a run is measured on: its evaluation sample, their observations, and noise inputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from envs.suites import HeldOutSuite, get_suite
from rlbasins.core.config import ExperimentConfig
from rlbasins.core.seeding import factor_seed


def distinct_state_groups(states) -> np.ndarray:
    """[n] index of each of ``n`` held-out states among the distinct ones (0 … D − 1, in order of first
    appearance). States are the same when they differ only in their ``seed`` field (a gridworld's
    nuisance draws): a layout repeated with other dimming is still the same question, so statistics
    that count it once are conservative. Array states (CartPole) are compared row by row."""
    if hasattr(states, "agent"):                      # a GridState batch: its layout, not its counters
        rows = np.concatenate([states.agent.cpu().numpy(), states.objects.flatten(1).cpu().numpy(),
                               states.attributes.flatten(1).cpu().numpy()], axis=1)
    else:
        rows = np.asarray(states).reshape(len(states), -1)
    _, first, inverse = np.unique(rows, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))               # relabel by first appearance
    return order[inverse.reshape(-1)]


def heldout_observations(cfg: ExperimentConfig, suite: HeldOutSuite, states) -> torch.Tensor:
    """Observations [N, *obs_shape] of N held-out states."""
    env = gym.make(cfg.env.id, **cfg.env.kwargs)
    env.reset(seed=0)
    obs = np.stack([suite.start_from(env, state) for state in states])
    env.close()
    return torch.as_tensor(obs)


def noise_observations(space: gym.spaces.Box, reference: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """``n`` out-of-distribution inputs shaped like the observations: uniform within the space's bounds
    where they are finite (e.g. gridworld planes with random values everywhere), otherwise Gaussian
    with three times the spread of the ``reference`` observations [M, ...] around their mean."""
    rng = np.random.default_rng(seed)
    low, high = np.broadcast_to(space.low, space.shape), np.broadcast_to(space.high, space.shape)
    ref = reference.double().numpy()
    centre, spread = ref.mean(0), 3 * ref.std(0) + 1e-3
    finite = np.isfinite(low) & np.isfinite(high)
    uniform = rng.uniform(np.where(finite, low, 0), np.where(finite, high, 1), size=(n, *space.shape))
    gaussian = centre + spread * rng.standard_normal((n, *space.shape))
    return torch.as_tensor(np.where(finite, uniform, gaussian), dtype=torch.float32)


@dataclass
class EvaluationSample:
    """What every seed of a run is evaluated on, drawn from the config's master seed alone."""

    states: Any                       # [n_states] held-out states for action distributions
    starts: Any                       # [n_episodes] held-out start states
    reset_seeds_heldout: list[int]    # [n_episodes]
    reset_seeds_train: list[int]      # [train_episodes]
    space: gym.spaces.Space           # the observation space
    seed: int                         # the evaluation seed (also the action seed of sampled episodes)


def evaluation_sample(cfg: ExperimentConfig) -> EvaluationSample:
    """The held-out states and episodes of ``analyze_behavior`` (the report redraws the same ones)."""
    suite = get_suite(cfg.env.id)
    held = cfg.analysis.heldout
    eval_seed = factor_seed(cfg.seed, "eval", 0)
    rng = np.random.default_rng(eval_seed)
    probe_env = gym.make(cfg.env.id, **cfg.env.kwargs)
    states = suite.sample_states(probe_env, rng, held.n_states)
    starts = suite.sample_states(probe_env, rng, held.n_episodes)
    space = probe_env.observation_space
    probe_env.close()
    return EvaluationSample(states, starts, rng.integers(2**31, size=held.n_episodes).tolist(),
                            rng.integers(2**31, size=cfg.analysis.train_episodes).tolist(), space, eval_seed)


def fingerprint_inputs(cfg: ExperimentConfig, sample: EvaluationSample) -> tuple[torch.Tensor, torch.Tensor]:
    """The inputs whose action distributions fingerprint a policy: observations of the sample's held-out
    states [N, ...] and as many out-of-distribution noise inputs [N, ...]."""
    heldout_obs = heldout_observations(cfg, get_suite(cfg.env.id), sample.states)
    noise = noise_observations(sample.space, heldout_obs, len(heldout_obs), factor_seed(cfg.seed, "noise", 0))
    return heldout_obs, noise
