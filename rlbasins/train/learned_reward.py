"""Training on a frozen learned reward model instead of the environment's reward.

- batched engine: :func:`learned_reward` returns a function (obs, actions, next_obs) → rewards,
  all [B] rows at once on the engine's device;
- sb3 engine: :class:`LearnedRewardVecEnv` wraps the vector env SB3 steps.

Both give the model the episode's *final* observation as ``next_obs`` of a step that ended it
(not the next episode's first). The environment's own return stays visible: the batched engine
logs it as ``rollout/true_ep_rew_mean`` beside ``rollout/ep_rew_mean`` (the learned return), and
the wrapper keeps it in ``info["episode"]["true_r"]`` for the SB3 engine to log the same way.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from reward_models.artifact import load_reward_model

RewardFunction = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def learned_reward(path: str, device: torch.device | str = "cpu") -> RewardFunction:
    """The hash-checked reward model at ``path`` as (obs [B, ...], actions [B], next_obs [B, ...]) → rewards [B]."""
    model = load_reward_model(path).model.to(device)

    @torch.no_grad()
    def reward(obs: torch.Tensor, actions: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        return model(obs, actions, next_obs)

    return reward


class LearnedRewardVecEnv(VecEnvWrapper):
    """Replaces a VecEnv's rewards by a reward model's (``imitation``'s ``RewardVecEnvWrapper``).

    At an episode's end, ``info["episode"]`` (from ``Monitor``) gets the learned return as ``r``
    (what SB3 logs as ``rollout/ep_rew_mean``) and keeps the env's own return as ``true_r``.
    ``running`` [num_envs] is the learned return of the episodes in progress (resume state).
    """

    def __init__(self, venv: VecEnv, reward: RewardFunction):
        super().__init__(venv)
        self.reward = reward
        self.last_obs: np.ndarray | None = None
        self.running = np.zeros(venv.num_envs)

    def reset(self) -> np.ndarray:
        self.last_obs = self.venv.reset()
        self.running[:] = 0
        return self.last_obs

    def step_async(self, actions: np.ndarray) -> None:
        self.actions = actions
        self.venv.step_async(actions)

    def step_wait(self):
        obs, _, dones, infos = self.venv.step_wait()
        next_obs = obs.copy()
        for i in np.flatnonzero(dones):  # DummyVecEnv has already reset; the episode's last obs is in info
            next_obs[i] = infos[i]["terminal_observation"]
        rewards = self.reward(*(torch.as_tensor(x) for x in (self.last_obs, np.asarray(self.actions), next_obs)))
        rewards = rewards.cpu().numpy().astype(np.float32)
        self.running += rewards
        for i in np.flatnonzero(dones):
            if "episode" in infos[i]:
                infos[i]["episode"] = {**infos[i]["episode"], "r": float(self.running[i]),
                                       "true_r": infos[i]["episode"]["r"]}
            self.running[i] = 0
        self.last_obs = obs
        return obs, rewards, dones, infos
