"""Git Re-Basin alignment: specs, permutations, weight and activation matching, align_many."""

from __future__ import annotations

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn

from rlbasins.analysis.align import (
    ELEMENTWISE_ACTIVATIONS,
    PermutationSpec,
    activation_matching,
    align_many,
    infer_spec,
    inverse_permutations,
    matching_objective,
    permute_state_dict,
    random_permutations,
    spec_for_module,
    weight_matching,
)
from rlbasins.core.policy import ActorCritic


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The matrices here are tiny: a thread pool costs more than it saves on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


architectures = st.fixed_dictionaries({
    "obs_shape": st.integers(1, 8),
    "n_actions": st.integers(2, 5),
    "hidden_sizes": st.lists(st.integers(2, 32), min_size=1, max_size=3),
    "activation": st.sampled_from(["tanh", "relu"]),
})


class SharedTrunk(nn.Module):
    """A shared-trunk actor-critic: both heads read the trunk's output."""

    def __init__(self, obs_dim: int = 5, n_actions: int = 3):
        super().__init__()
        self.shared = nn.Sequential(nn.Linear(obs_dim, 12), nn.Tanh(), nn.Linear(12, 10), nn.ReLU())
        self.actor = nn.Sequential(nn.Linear(10, 8), nn.Tanh(), nn.Linear(8, n_actions))
        self.critic = nn.Sequential(nn.Linear(10, 1))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.shared(obs)
        return self.actor(features), self.critic(features).squeeze(-1)


def _bare_sequential() -> nn.Sequential:
    return nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 2))


def _loaded(module: nn.Module, state_dict: dict) -> nn.Module:
    module.load_state_dict(state_dict)
    return module


def _outputs(module: nn.Module, obs: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        out = module(obs)
    return list(out) if isinstance(out, tuple) else [out]


def _same_function(a: nn.Module, b: nn.Module, obs: torch.Tensor) -> bool:
    return all(torch.allclose(x, y, atol=1e-5) for x, y in zip(_outputs(a, obs), _outputs(b, obs), strict=True))


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _permuted_copy(state_dict: dict, spec: PermutationSpec, seed: int) -> tuple[dict, dict]:
    perms = random_permutations(spec, state_dict, torch.Generator().manual_seed(seed))
    return permute_state_dict(state_dict, spec, perms), perms


def _units_distinguishable(policy: ActorCritic, obs: torch.Tensor) -> bool:
    """Every hidden unit varies on ``obs`` and no two units of a layer are perfectly correlated —
    else activation matching cannot tell them apart."""
    with torch.no_grad():
        for trunk in (policy.actor, policy.critic):
            x = obs
            for layer in trunk[:-1]:
                x = layer(x)
                if isinstance(layer, ELEMENTWISE_ACTIVATIONS):
                    if (x.std(0) < 1e-6).any():
                        return False
                    correlation = torch.corrcoef(x.T.double()) - 2 * torch.eye(x.shape[1], dtype=torch.float64)
                    if correlation.max() > 0.999:
                        return False
    return True


# ---------------------------------------------------------------------------------------------
# Specs and permutations
# ---------------------------------------------------------------------------------------------

def test_actor_critic_spec_permutes_each_hidden_layer_of_each_trunk_independently() -> None:
    spec = infer_spec(ActorCritic(obs_shape=3, n_actions=2, hidden_sizes=[4, 5]).state_dict())
    expected = {}
    for trunk in ("actor", "critic"):
        expected |= {f"{trunk}.0.weight": (f"{trunk}.0", None), f"{trunk}.0.bias": (f"{trunk}.0",),
                     f"{trunk}.2.weight": (f"{trunk}.2", f"{trunk}.0"), f"{trunk}.2.bias": (f"{trunk}.2",),
                     f"{trunk}.4.weight": (None, f"{trunk}.2"), f"{trunk}.4.bias": (None,)}
    assert spec == PermutationSpec.from_axes_to_perm(expected)
    assert spec.perm_to_axes["actor.2"] == [("actor.2.weight", 0), ("actor.2.bias", 0), ("actor.4.weight", 1)]


@settings(max_examples=20, deadline=None)
@given(arch=architectures, seed=st.integers(0, 10_000))
def test_permuting_then_inverse_permuting_is_the_identity(arch, seed) -> None:
    torch.manual_seed(seed)
    state_dict = ActorCritic(**arch).state_dict()
    spec = infer_spec(state_dict)
    permuted, perms = _permuted_copy(state_dict, spec, seed)
    assert _equal(permute_state_dict(permuted, spec, inverse_permutations(perms)), state_dict)


def test_shared_trunk_spec_links_the_trunk_output_to_both_heads() -> None:
    torch.manual_seed(0)
    model = SharedTrunk()
    spec = spec_for_module(model)
    assert set(spec.perm_to_axes) == {"shared.0", "shared.2", "actor.0"}
    assert ("actor.0.weight", 1) in spec.perm_to_axes["shared.2"]
    assert ("critic.0.weight", 1) in spec.perm_to_axes["shared.2"]
    assert spec.axes_to_perm["critic.0.weight"] == (None, "shared.2")

    permuted, _ = _permuted_copy(model.state_dict(), spec, seed=1)
    obs = torch.randn(64, 5)
    assert _same_function(model, _loaded(SharedTrunk(), permuted), obs)
    assert _equal(weight_matching(model.state_dict(), permuted), model.state_dict())
    assert _equal(activation_matching(model, _loaded(SharedTrunk(), permuted), obs), model.state_dict())


def test_bare_sequential_spec() -> None:
    torch.manual_seed(0)
    model = _bare_sequential()
    spec = spec_for_module(model)
    assert spec.axes_to_perm == {"0.weight": ("0", None), "0.bias": ("0",), "2.weight": ("2", "0"),
                                 "2.bias": ("2",), "4.weight": (None, "2"), "4.bias": (None,)}
    permuted, _ = _permuted_copy(model.state_dict(), spec, seed=2)
    obs = torch.randn(64, 3)
    assert _same_function(model, _loaded(_bare_sequential(), permuted), obs)
    assert _equal(weight_matching(model.state_dict(), permuted), model.state_dict())
    assert _equal(activation_matching(model, _loaded(_bare_sequential(), permuted), obs), model.state_dict())


@pytest.mark.parametrize("name, tensor", [
    ("actor.0.weight", torch.zeros(4, 3, 3)),      # a 1-D convolution kernel
    ("actor.1.weight", torch.zeros(4)),            # a norm layer's scale
    ("encoder.weight", torch.zeros(4, 3)),         # a chain infer_spec does not know
])
def test_unknown_parameters_are_named_in_the_error(name, tensor) -> None:
    state_dict = ActorCritic(obs_shape=3, n_actions=2, hidden_sizes=[4]).state_dict() | {name: tensor}
    with pytest.raises(ValueError, match=rf"{name}.*pass a PermutationSpec explicitly"):
        infer_spec(state_dict)


def test_layers_whose_permutations_are_not_understood_are_refused() -> None:
    grouped = nn.Sequential(nn.Conv2d(2, 4, 3, groups=2), nn.Flatten(), nn.Linear(16, 2))
    with pytest.raises(ValueError, match="Conv2d"):
        spec_for_module(grouped)
    conv_after_linear = {"0.weight": torch.zeros(4, 3), "2.weight": torch.zeros(4, 4, 3, 3)}
    with pytest.raises(ValueError, match=r"2\.weight must be a Conv2d weight .* \(before any Linear\)"):
        infer_spec(conv_after_linear)
    with pytest.raises(ValueError, match="LayerNorm"):
        spec_for_module(nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2)))


# ---------------------------------------------------------------------------------------------
# Matching
# ---------------------------------------------------------------------------------------------

@settings(max_examples=50, deadline=None)
@given(arch=architectures, seed=st.integers(0, 10_000))
def test_weight_matching_recovers_a_permuted_copy_exactly(arch, seed) -> None:
    torch.manual_seed(seed)
    state_dict = ActorCritic(**arch).state_dict()
    spec = infer_spec(state_dict)
    permuted, perms = _permuted_copy(state_dict, spec, seed)
    aligned, found = weight_matching(state_dict, permuted, return_perms=True)
    assert _equal(aligned, state_dict)
    assert _equal(found, inverse_permutations(perms))


@settings(max_examples=50, deadline=None)
@given(arch=architectures, seed=st.integers(0, 10_000))
def test_activation_matching_recovers_a_permuted_copy_exactly(arch, seed) -> None:
    torch.manual_seed(seed)
    policy = ActorCritic(**arch)
    obs = 2 * torch.randn(256, arch["obs_shape"])
    assume(_units_distinguishable(policy, obs))
    permuted, _ = _permuted_copy(policy.state_dict(), infer_spec(policy.state_dict()), seed)
    other = _loaded(ActorCritic(**arch), permuted)
    assert _equal(activation_matching(policy, other, obs), policy.state_dict())


@pytest.mark.parametrize("init", ["incoming", "identity"])
@settings(max_examples=20, deadline=None)
@given(arch=architectures, seed=st.integers(0, 10_000))
def test_weight_matching_keeps_the_function_and_raises_the_objective(init, arch, seed) -> None:
    torch.manual_seed(seed)
    reference, other = ActorCritic(**arch), ActorCritic(**arch)
    spec = infer_spec(reference.state_dict())
    aligned = weight_matching(reference.state_dict(), other.state_dict(), init=init)
    obs = torch.randn(64, arch["obs_shape"])
    assert _same_function(_loaded(ActorCritic(**arch), aligned), other, obs)
    before = matching_objective(reference.state_dict(), other.state_dict(), spec)
    assert matching_objective(reference.state_dict(), aligned, spec) >= before - 1e-9 * abs(before)


def test_activation_matching_keeps_the_function() -> None:
    torch.manual_seed(3)
    reference, other = ActorCritic(6, 3, [16, 16]), ActorCritic(6, 3, [16, 16])
    obs = torch.randn(128, 6)
    aligned = activation_matching(reference, other, obs)
    assert _same_function(_loaded(ActorCritic(6, 3, [16, 16]), aligned), other, obs)


def test_matching_is_deterministic_given_the_seed() -> None:
    torch.manual_seed(4)
    a, b = ActorCritic(4, 2, [24, 24]).state_dict(), ActorCritic(4, 2, [24, 24]).state_dict()
    assert _equal(weight_matching(a, b, seed=5), weight_matching(a, b, seed=5))


def test_mismatched_shapes_are_refused() -> None:
    a, b = ActorCritic(4, 2, [8]).state_dict(), ActorCritic(4, 2, [9]).state_dict()
    with pytest.raises(ValueError, match="actor.0.weight"):
        weight_matching(a, b)


# ---------------------------------------------------------------------------------------------
# Many models
# ---------------------------------------------------------------------------------------------

def test_align_many_to_a_reference_undoes_permutations() -> None:
    torch.manual_seed(6)
    state_dict = ActorCritic(4, 3, [16, 8]).state_dict()
    spec = infer_spec(state_dict)
    copies = [state_dict] + [_permuted_copy(state_dict, spec, seed)[0] for seed in range(4)]
    calls = []
    aligned = align_many(copies, reference=0, on_progress=calls.append)
    assert all(_equal(a, state_dict) for a in aligned)
    assert calls == [1] * len(copies)


def test_align_many_to_the_mean_keeps_every_function() -> None:
    torch.manual_seed(7)
    policies = [ActorCritic(4, 3, [16, 8]) for _ in range(4)]
    calls = []
    aligned = align_many([p.state_dict() for p in policies], reference="mean", rounds=2, on_progress=calls.append)
    obs = torch.randn(64, 4)
    for policy, state_dict in zip(policies, aligned, strict=True):
        assert _same_function(_loaded(ActorCritic(4, 3, [16, 8]), state_dict), policy, obs)
    assert len(calls) == 2 * len(policies)
