"""Reward nets r̂(s, a, s') and the frozen reward model (ensemble + normalisation).

Shapes: B transitions; observations [B, C, H, W] float32 planes; actions [B] int64. A *view*
selects what the net sees of an observation (``full``, or ``overseer``: the planes an
overseer sees, e.g. :meth:`envs.task_or_proxy.TaskOrProxyCore.overseer_view`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

import envs
from reward_models.config import RewardModelConfig, RewardNetConfig

FORMAT = "rlbasins.RewardModel/1"


def view_function(env_id: str, view: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """[B, C, H, W] observations → [B, C', H, W], the planes the reward net sees."""
    return envs.GRID_ENVS[env_id].overseer_view if view == "overseer" else (lambda obs: obs)


def _mlp(in_dim: int, hidden: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), nn.ReLU()]
        in_dim = width
    return nn.Sequential(*layers, nn.Linear(in_dim, 1))


class RewardNet(nn.Module):
    """One member: (planes [B, P, H, W], one-hot action [B, A] or None) → raw reward [B].

    ``P`` = the view's channels for each of obs / next_obs among the inputs (stacked). ``mlp``
    flattens the planes; ``cnn`` runs two 3×3 conv + ReLU layers first (same padding).
    """

    def __init__(self, cfg: RewardNetConfig, planes: int, height: int, width: int, n_actions: int):
        super().__init__()
        if cfg.arch == "mlp":
            self.encoder: nn.Module = nn.Flatten()
            features = planes * height * width
        else:
            self.encoder = nn.Sequential(nn.Conv2d(planes, cfg.channels, 3, padding=1), nn.ReLU(),
                                         nn.Conv2d(cfg.channels, cfg.channels, 3, padding=1), nn.ReLU(),
                                         nn.Flatten())
            features = cfg.channels * height * width
        self.head = _mlp(features + (n_actions if "action" in cfg.inputs else 0), list(cfg.hidden_sizes))

    def forward(self, planes: torch.Tensor, action: torch.Tensor | None) -> torch.Tensor:
        h = self.encoder(planes)
        if action is not None:
            h = torch.cat([h, action], dim=1)
        return self.head(h).squeeze(-1)


class RewardModel(nn.Module):
    """An ensemble of :class:`RewardNet` whose mean is normalised to mean 0, std 1 on the training data.

    ``forward(obs, action, next_obs)`` → reward [B] (float32); ``raw`` gives the members' outputs
    [M, B] before normalisation. ``next_obs`` of a step that ended an episode is that episode's
    last observation (not the next episode's first).
    """

    def __init__(self, cfg: RewardModelConfig, obs_shape: tuple[int, int, int], n_actions: int):
        super().__init__()
        self.cfg, self.obs_shape, self.n_actions = cfg, tuple(obs_shape), n_actions
        self.view = view_function(cfg.env_id, cfg.resolved_view)
        self.inputs = tuple(cfg.net.inputs)
        channels = self.view(torch.zeros(1, *obs_shape)).shape[1]
        planes = channels * sum(name in self.inputs for name in ("obs", "next_obs"))
        self.members = nn.ModuleList(RewardNet(cfg.net, planes, obs_shape[1], obs_shape[2], n_actions)
                                     for _ in range(cfg.net.ensemble))
        self.register_buffer("reward_mean", torch.zeros(()))
        self.register_buffer("reward_std", torch.ones(()))

    def metadata(self) -> dict[str, Any]:
        """Everything :meth:`from_metadata` needs (stored in the weights file's header)."""
        return {"format": FORMAT, "config": self.cfg.model_dump(mode="json"), "obs_shape": list(self.obs_shape),
                "n_actions": self.n_actions, "view": self.cfg.resolved_view}

    @classmethod
    def from_metadata(cls, meta: dict[str, Any]) -> RewardModel:
        return cls(RewardModelConfig.model_validate(meta["config"]), tuple(meta["obs_shape"]), meta["n_actions"])

    def raw(self, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """Members' unnormalised rewards [M, B]."""
        planes = torch.cat([self.view(x.float()) for name, x in (("obs", obs), ("next_obs", next_obs))
                            if name in self.inputs], dim=1)
        onehot = (nn.functional.one_hot(action.long(), self.n_actions).float() if "action" in self.inputs
                  else None)
        return torch.stack([member(planes, onehot) for member in self.members])

    def forward(self, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        return (self.raw(obs, action, next_obs).mean(0) - self.reward_mean) / self.reward_std
