"""A population's diversity bonus (DvD: Parker-Holder et al. 2020, "Effective diversity in population based
reinforcement learning"): each population's log-determinant of a kernel over its members' behaviour.

Seeds k·M … (k+1)·M − 1 (by seed index) form population k. Member i's behavioural embedding φᵢ is its action
distribution on ``noise_inputs`` fixed out-of-distribution inputs [n, A] (uniform within the observation
space's bounds, drawn from the master seed's ``population`` stream: neither training states, where every basin
acts alike, nor the held-out probe, which is the test). The kernel is

    K_ij = exp(−d_ij / (2ℓ²)),   d_ij = mean over inputs of ‖φᵢ(x) − φⱼ(x)‖²,

and the trainer subtracts ``bonus`` · Σ_k log det(K_k + 10⁻⁶ I) from the sum of the members' PPO losses: the
gradient of a member's parameters is its own PPO gradient plus its share of its population's bonus (the
members' gradients mix through K, and only there). log det K is largest (0) when the members act
differently everywhere on the noise inputs and falls to −∞ as two become identical.
"""

from __future__ import annotations

import gymnasium as gym
import torch

from rlbasins.core.config import ExperimentConfig
from rlbasins.core.heldout import noise_observations
from rlbasins.core.policy import StackedPolicy
from rlbasins.core.seeding import factor_seed

JITTER = 1e-6


class PopulationBonus:
    """The log-determinant bonus of populations of ``cfg.population.size`` members, over the seeds of a
    lockstep batch given by their seed ``indices`` [S] (every population whole); ``reference``: training
    observations [B, ...] on the trainer's device."""

    def __init__(self, cfg: ExperimentConfig, indices: list[int], space: gym.spaces.Box, reference: torch.Tensor):
        pop = cfg.population
        if len(set(indices)) < len(indices):
            raise ValueError("a population's seeds train as one run, not in a grid of settings (seed indices repeat)")
        self.size, self.weight, self.length_scale = pop.size, pop.bonus, pop.length_scale
        groups: dict[int, list[int]] = {}
        for slot, index in enumerate(indices):
            groups.setdefault(index // pop.size, []).append(slot)
        broken = {k: len(v) for k, v in groups.items() if len(v) != pop.size}
        if broken:
            raise ValueError(f"populations train whole ({pop.size} members); incomplete: {broken} — train every "
                             "seed of a population together")
        device = reference.device
        self.slots = torch.tensor(list(groups.values()), device=device)              # [G, M] slot of each member
        # ``reference`` (training observations [B, ...]) sets the spread of unbounded dimensions (see the noise)
        self.inputs = noise_observations(space, reference.cpu(), pop.noise_inputs,
                                         factor_seed(cfg.seed, "population", 0)).to(device)   # [n, ...]

    def log_dets(self, policy: StackedPolicy, frozen: torch.Tensor) -> torch.Tensor:
        """[G] log det(K + jitter·I) of every population; members where ``frozen`` [S] is set (failed seeds) count
        with their behaviour detached and finite, so they neither move nor poison the others."""
        count = frozen.shape[0]
        probs = policy.logits(self.inputs.expand(count, *self.inputs.shape)).softmax(-1)       # [S, n, A]
        probs = torch.where(frozen[:, None, None], probs.detach().nan_to_num(), probs)
        members = probs[self.slots]                                                           # [G, M, n, A]
        distance = (members[:, :, None] - members[:, None, :]).pow(2).sum(-1).mean(-1)        # [G, M, M]
        kernel = torch.exp(-distance / (2 * self.length_scale ** 2))
        eye = torch.eye(self.size, device=kernel.device, dtype=kernel.dtype)
        return torch.linalg.slogdet(kernel + JITTER * eye)[1]

    def loss(self, policy: StackedPolicy, frozen: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the term added to the summed PPO losses: −weight · Σ log det, each slot's population log det [S])."""
        log_dets = self.log_dets(policy, frozen)
        per_slot = torch.empty(frozen.shape[0], device=log_dets.device, dtype=log_dets.dtype)
        per_slot[self.slots.reshape(-1)] = log_dets.repeat_interleave(self.size)
        return -self.weight * log_dets.sum(), per_slot.detach()


def forward_passes_per_env_step(cfg: ExperimentConfig) -> float:
    """The bonus's arithmetic per env step, in forward passes of one sample: a forward and a backward pass (three
    forward passes) over the noise inputs in every minibatch."""
    minibatches = cfg.ppo.n_epochs * -(-cfg.rollout_size // cfg.ppo.batch_size)
    return 3 * cfg.population.noise_inputs * minibatches / cfg.rollout_size
