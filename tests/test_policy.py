"""The exchange policy (:mod:`rlbasins.core.policy`): an SB3 policy converts to an equivalent module; policies built
for evaluation act as the modules do."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from stable_baselines3 import PPO

from rlbasins.core.policy import ActorCritic, StackedPolicy, entries_layout, fast_tanh, sb3_to_exchange


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


@settings(max_examples=50, deadline=None)
@given(x=st.lists(st.floats(-1e4, 1e4, width=32), min_size=1, max_size=64))
def test_fast_tanh_is_within_2e_7_of_tanh_in_place_or_not(x) -> None:
    x = torch.tensor(x, dtype=torch.float32)
    exact = torch.tanh(x.double())
    out = fast_tanh(x)
    assert (out.double() - exact).abs().max() <= 2e-7
    assert torch.equal(fast_tanh(x.clone(), in_place=True), out)


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 5), seed=st.integers(0, 10_000))
def test_evaluation_policies_from_stacked_params_act_as_the_modules(n, seed) -> None:
    """``from_params`` (evaluation: tanh as ``fast_tanh`` on the CPU) gives each module's logits within 1e-6."""
    torch.manual_seed(seed)
    modules = [ActorCritic(obs_shape=5, n_actions=3, hidden_sizes=[8, 6]).ortho_init_() for _ in range(n)]
    params = {name: torch.stack([m.state_dict()[name] for m in modules]) for name in modules[0].state_dict()}
    obs = torch.randn(n, 7, 5) * 3
    logits = StackedPolicy.from_params(modules[0], params).logits(obs)
    for s, module in enumerate(modules):
        assert torch.allclose(logits[s], module(obs[s])[0], atol=1e-6)


@settings(max_examples=10, deadline=None)
@given(n=st.integers(1, 4), seed=st.integers(0, 10_000), binary=st.booleans())
def test_logits_of_observation_entries_are_the_logits_of_the_observations(n, seed, binary) -> None:
    """A sparse observation given as its entries (flat index, value) gives the logits of the dense observation;
    the first weight's table is rebuilt after the weight changes in place."""
    torch.manual_seed(seed)
    modules = [ActorCritic(obs_shape=30, n_actions=4, hidden_sizes=[8, 6]).ortho_init_() for _ in range(n)]
    params = {name: torch.stack([m.state_dict()[name] for m in modules]) for name in modules[0].state_dict()}
    index = torch.stack([torch.randperm(30)[:4] for _ in range(n * 7)]).view(n, 7, 4)
    values = torch.ones(n, 7, 4) if binary else torch.rand(n, 7, 4)
    obs = torch.zeros(n, 7, 30).scatter_(2, index, values)
    policy = StackedPolicy.from_params(modules[0], params)
    assert policy.reads_entries
    assert torch.allclose(policy.logits_of_entries(index, values), policy.logits(obs), atol=1e-6)
    params["actor.0.weight"].mul_(2)
    assert torch.allclose(policy.logits_of_entries(index, values), policy.logits(obs), atol=1e-6)
    columns = entries_layout(params)                       # stored column by column: the table is a view
    assert all(torch.equal(columns[k], params[k]) for k in params)
    assert columns["actor.0.weight"].transpose(1, 2).is_contiguous()
    assert torch.equal(StackedPolicy.from_params(modules[0], columns).logits_of_entries(index, values),
                       policy.logits_of_entries(index, values))
    cnn = ActorCritic(obs_shape=(2, 3, 5), n_actions=4, hidden_sizes=[8], conv_channels=[2])
    assert not StackedPolicy.from_params(cnn, {k: v[None] for k, v in cnn.state_dict().items()}).reads_entries
