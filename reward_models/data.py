"""Preference data from the training distribution: segments, pairs and synthetic labels.

Transitions come from a batched gridworld core stepping ``num_envs`` environments with
autoreset, each following one policy of a mix of ε-greedy experts (ε = 1: random, 0: expert;
where the two strategies differ in training, as in TwoDoors, half the experts follow each).
Environments — not pairs — are split into train / validation / test, so the test pairs come
from episodes the model never saw. A pair is two segments of ``segment_length`` consecutive
transitions of the same split; a synthetic Bradley–Terry labeller compares their true returns
(Christiano et al. 2017; ``imitation``'s ``SyntheticGatherer``).

Shapes: B envs, T steps per env, N = B·T transitions (env-major: index b·T + t), P pairs,
L = segment length, observations [C, H, W].
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import envs
from envs.grid import GridCore
from reward_models.config import RewardModelConfig
from rlbasins.core.store import atomic_write_bytes, encode_tensors, load_verified, sha256_bytes

FORMAT = "rlbasins.PreferenceData/1"
TRAIN, VAL, TEST = 0, 1, 2


@dataclass
class Transitions:
    """N transitions (s, a, s', r): ``next_obs`` of an episode's last step is its final observation."""

    obs: torch.Tensor        # [N, C, H, W] float32
    actions: torch.Tensor    # [N] int64
    next_obs: torch.Tensor   # [N, C, H, W] float32
    reward: torch.Tensor     # [N] float32, the environment's (true) reward

    def __getitem__(self, index) -> Transitions:
        return Transitions(self.obs[index], self.actions[index], self.next_obs[index], self.reward[index])


@torch.no_grad()
def play(core: GridCore, epsilon: torch.Tensor, strategy: torch.Tensor, steps: int,
         generator: torch.Generator) -> tuple[Transitions, torch.Tensor]:
    """``steps`` autoreset steps of every env of ``core`` from its current state (CPU).

    Env b takes, with probability ``epsilon[b]``, a uniform random action, else a uniform one
    among the moves towards strategy ``strategy[b]``'s target (0: A, 1: B; the same target in
    training states). Returns the B·T transitions (env-major) and a mask [B·T] of those in each
    env's first episode (for episodes started from given, e.g. held-out, states).
    """
    n, n_actions = core.num_envs, core.n_actions
    obs = core.observe()
    first = torch.ones(n, dtype=torch.bool)
    records: list[tuple[torch.Tensor, ...]] = []
    for _ in range(steps):
        towards = torch.where(strategy[:, None] == 0, core.strategy_actions(core.state, 0),
                              core.strategy_actions(core.state, 1))                # [B, A] bool
        expert = (torch.rand(n, n_actions, generator=generator) * towards).argmax(1)  # random among helpful moves
        random = torch.randint(n_actions, (n,), generator=generator)
        action = torch.where(torch.rand(n, generator=generator) < epsilon, random, expert)
        step = core.step(action, autoreset=True)
        records.append((obs, action, step.final_obs, step.reward, first.clone()))
        first &= ~(step.terminated | step.truncated)
        obs = step.obs
    obs_, actions, next_obs, reward, mask = (torch.stack(column, dim=1).flatten(0, 1) for column in zip(*records,
                                                                                                      strict=True))
    return Transitions(obs_, actions, next_obs, reward), mask


def bradley_terry_labels(returns: torch.Tensor, temperature: float, label_noise: float,
                         rng: np.random.Generator) -> torch.Tensor:
    """Labels [P] (float32, the probability that segment 0 is preferred as a target) for returns [P, 2].

    temperature > 0: a label is drawn from sigmoid((R⁰ − R¹) / temperature); 0: 1, 0 or ½ for ties.
    Then a share ``label_noise`` of the labels is replaced by a fair coin.
    """
    diff = (returns[:, 0] - returns[:, 1]).double().numpy()
    draw, coin, flips = rng.random(len(diff)), rng.random(len(diff)), rng.integers(0, 2, len(diff))
    if temperature == 0:
        labels = 0.5 * (1 + np.sign(diff))
    else:
        labels = (draw < 1 / (1 + np.exp(-diff / temperature))).astype(np.float64)
    labels = np.where(coin < label_noise, flips, labels)
    return torch.as_tensor(labels, dtype=torch.float32)


@dataclass
class PreferenceData:
    """Transitions, their split, and labelled pairs of segments."""

    transitions: Transitions
    split: torch.Tensor       # [N] int64: TRAIN, VAL or TEST (by environment)
    starts: torch.Tensor      # [P, 2] int64: first transition of each segment
    labels: torch.Tensor      # [P] float32 in [0, 1]
    segment_length: int
    meta: dict[str, Any]      # format, the recipe, env id

    def segment_index(self, pairs: torch.Tensor | slice = slice(None)) -> torch.Tensor:
        """Transition indices [P', 2, L] of the segments of ``pairs``."""
        return self.starts[pairs][..., None] + torch.arange(self.segment_length)

    def true_returns(self) -> torch.Tensor:
        """[P, 2] true returns of every pair's segments."""
        return self.transitions.reward[self.segment_index()].sum(-1)

    def pairs_in(self, split: int) -> torch.Tensor:
        """Indices of the pairs of one split."""
        return torch.nonzero(self.split[self.starts[:, 0]] == split).squeeze(1)

    def to_bytes(self) -> bytes:
        t = self.transitions
        return encode_tensors({"obs": t.obs, "actions": t.actions, "next_obs": t.next_obs, "reward": t.reward,
                               "split": self.split, "starts": self.starts, "labels": self.labels},
                              {**self.meta, "segment_length": self.segment_length})

    def save(self, path: Path) -> str:
        """Write atomically; returns the file's sha256 (the dataset hash on the card)."""
        data = self.to_bytes()
        atomic_write_bytes(path, data)
        return sha256_bytes(data)

    @classmethod
    def load(cls, path: Path, sha256: str | None = None) -> PreferenceData:
        """Read a saved dataset, checking its sha256 when one is given."""
        tensors, meta = load_verified(path, sha256)
        transitions = Transitions(tensors["obs"], tensors["actions"], tensors["next_obs"], tensors["reward"])
        return cls(transitions, tensors["split"], tensors["starts"], tensors["labels"], meta.pop("segment_length"),
                   meta)


def collect_preferences(cfg: RewardModelConfig) -> PreferenceData:
    """The labelled preference dataset of ``cfg`` (deterministic for a fixed ``cfg.seed``)."""
    d = cfg.data
    rng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(0,)))
    core = envs.GRID_ENVS[cfg.env_id](num_envs=d.num_envs, **cfg.env_kwargs)
    core.reset(torch.as_tensor(rng.integers(0, 2**32, d.num_envs)))
    epsilon = torch.tensor(d.epsilons, dtype=torch.float32)[torch.arange(d.num_envs) % len(d.epsilons)]
    # where the two strategies differ in training (TwoDoors), half the experts of each ε follow each one, so
    # the data favour neither; elsewhere the strategies agree and strategy A is the training target
    strategy = (torch.arange(d.num_envs) // len(d.epsilons)) % 2 * (not core.strategies_agree_in_training)
    generator = torch.Generator().manual_seed(cfg.seed)
    transitions, _ = play(core, epsilon, strategy, d.steps, generator)

    # envs split into blocks train | val | test; round-robin policies put every policy in every block
    n_val, n_test = max(1, round(d.num_envs * d.val_fraction)), max(1, round(d.num_envs * d.test_fraction))
    env_split = torch.full((d.num_envs,), TRAIN)
    env_split[d.num_envs - n_val - n_test:] = VAL
    env_split[d.num_envs - n_test:] = TEST
    starts = []
    for split, fraction in ((TRAIN, 1 - d.val_fraction - d.test_fraction), (VAL, d.val_fraction),
                            (TEST, d.test_fraction)):
        members = torch.nonzero(env_split == split).squeeze(1).numpy()
        n = max(1, round(d.pairs * fraction))
        env = rng.choice(members, size=(n, 2))
        offset = rng.integers(0, d.steps - d.segment_length + 1, size=(n, 2))
        starts.append(torch.as_tensor(env * d.steps + offset, dtype=torch.int64))
    data = PreferenceData(transitions, env_split.repeat_interleave(d.steps), torch.cat(starts),
                          torch.empty(0), d.segment_length,
                          {"format": FORMAT, "env_id": cfg.env_id, "config": cfg.model_dump(mode="json")})
    data.labels = bradley_terry_labels(data.true_returns(), d.temperature, d.label_noise, rng)
    return data
