"""The policy exchange format: one seed's actor-critic as a plain ``nn.Module``.

Every engine saves, and every analysis reads, the state dict of :class:`ActorCritic`::

    actor.0.weight  [h1, obs_dim]   actor.0.bias [h1]      (Linear, then activation)
    actor.2.weight  [h2, h1]        ...
    actor.{2L}.weight [n_actions, hL]                      (logits head)
    critic.*        the same with a [1, hL] value head

Both trunks are ``nn.Sequential`` of ``Linear`` and elementwise activations, which is all the
permutation-alignment code needs to know. Observations are flattened.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from rlbasins.config import PolicyConfig

ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU}


def _mlp(in_dim: int, hidden: list[int], out_dim: int, activation: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), ACTIVATIONS[activation]()]
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class ActorCritic(nn.Module):
    """Separate actor and critic MLPs (SB3 ``MlpPolicy`` layout) for a discrete action space."""

    def __init__(self, obs_dim: int, n_actions: int, hidden_sizes: list[int], activation: str = "tanh"):
        super().__init__()
        self.obs_dim, self.n_actions = obs_dim, n_actions
        self.hidden_sizes, self.activation = list(hidden_sizes), activation
        self.actor = _mlp(obs_dim, hidden_sizes, n_actions, activation)
        self.critic = _mlp(obs_dim, hidden_sizes, 1, activation)

    def fresh_copy(self) -> ActorCritic:
        """A new module of the same architecture (parameters freshly initialised)."""
        return ActorCritic(self.obs_dim, self.n_actions, self.hidden_sizes, self.activation)

    @classmethod
    def from_config(cls, cfg: PolicyConfig, obs_dim: int, n_actions: int) -> ActorCritic:
        return cls(obs_dim, n_actions, list(cfg.hidden_sizes), cfg.activation)

    def ortho_init_(self) -> ActorCritic:
        """SB3's initialisation: orthogonal weights with gain √2 in the trunks, 0.01 on the logits
        head and 1 on the value head; zero biases."""
        for trunk, head_gain in ((self.actor, 0.01), (self.critic, 1.0)):
            linears = [m for m in trunk if isinstance(m, nn.Linear)]
            for i, layer in enumerate(linears):
                nn.init.orthogonal_(layer.weight, gain=head_gain if i == len(linears) - 1 else math.sqrt(2))
                nn.init.zeros_(layer.bias)
        return self

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """obs [B, *obs_shape] → (logits [B, n_actions], value [B])."""
        flat = obs.reshape(obs.shape[0], -1).float()
        return self.actor(flat), self.critic(flat).squeeze(-1)

    def action_probs(self, obs: torch.Tensor) -> torch.Tensor:
        """obs [B, *obs_shape] → action probabilities [B, n_actions]."""
        return torch.softmax(self.actor(obs.reshape(obs.shape[0], -1).float()), dim=-1)


def sb3_to_exchange(sb3_state: dict[str, torch.Tensor], n_hidden: int) -> dict[str, torch.Tensor]:
    """Rename an SB3 ``ActorCriticPolicy`` (MlpPolicy, separate pi/vf nets) state dict to ours."""
    renames = {"action_net.": f"actor.{2 * n_hidden}.", "value_net.": f"critic.{2 * n_hidden}.",
               "mlp_extractor.policy_net.": "actor.", "mlp_extractor.value_net.": "critic."}
    out = {}
    for name, tensor in sb3_state.items():
        prefix = next((p for p in renames if name.startswith(p)), None)
        if prefix is None:
            raise KeyError(f"unexpected SB3 policy parameter {name!r}: only MlpPolicy with separate "
                           "actor and critic networks converts to the exchange format")
        out[renames[prefix] + name[len(prefix):]] = tensor.detach().cpu().clone()
    return out
