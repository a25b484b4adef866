"""The exchange policy (:mod:`rlbasins.core.policy`): an SB3 policy converts to an equivalent module."""

from __future__ import annotations

import torch
from stable_baselines3 import PPO

from rlbasins.core.policy import ActorCritic, sb3_to_exchange


def test_sb3_policy_converts_to_an_equivalent_exchange_module() -> None:
    torch.manual_seed(0)
    model = PPO("MlpPolicy", "CartPole-v1", device="cpu",
                policy_kwargs=dict(net_arch=dict(pi=[32, 16], vf=[32, 16])))
    ours = ActorCritic(obs_shape=4, n_actions=2, hidden_sizes=[32, 16])
    ours.load_state_dict(sb3_to_exchange(model.policy.state_dict(), n_hidden=2))
    obs = torch.randn(50, 4)
    with torch.no_grad():
        distribution = model.policy.get_distribution(obs).distribution
        logits, value = ours(obs)
        assert torch.allclose(torch.softmax(logits, -1), distribution.probs, atol=1e-6)
        assert torch.allclose(value, model.policy.predict_values(obs).squeeze(-1), atol=1e-6)
