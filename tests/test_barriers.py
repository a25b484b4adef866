"""Interpolation barriers between seeds (:mod:`rlbasins.analysis.barriers`), as specifications: zero on
identical and permuted copies, REPAIR's invariants."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from envs.suites import get_suite
from rlbasins.analysis import align, barriers
from rlbasins.core.policy import StackedPolicy
from rlbasins.core.rollouts import stack_state_dicts
from tests.conftest import random_cue_policy

CUE = "rlbasins/CueConflict-v0"


@pytest.fixture(scope="module")
def probe() -> barriers.PathProbe:
    return barriers.make_probe(random_cue_policy(0), CUE, {}, n_episodes=8, n_states=64, seed=3,
                               suite=get_suite(CUE))


# --------------------------------------------------------------------------- barriers


def test_barrier_is_the_largest_gap_below_the_line() -> None:
    weights = np.linspace(0, 1, 5)
    assert barriers.barrier(np.array([1.0, 0.75, 0.5, 0.25, 0.0]), weights, higher_is_better=True) == 0
    dip = np.array([1.0, 0.5, 0.2, 0.5, 1.0])
    assert barriers.barrier(dip, weights, higher_is_better=True) == pytest.approx(0.8)
    assert barriers.barrier(dip, weights, higher_is_better=False) == 0  # a valley in a loss is no barrier
    assert barriers.barrier(-dip, weights, higher_is_better=False) == pytest.approx(0.8)


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 10_000), activation=st.sampled_from(["tanh", "relu"]))
def test_interpolating_a_policy_with_itself_has_zero_barrier(probe, seed: int, activation: str) -> None:
    policy = random_cue_policy(seed, activation=activation).state_dict()
    result = barriers.barrier_matrix([policy, policy], probe, [(0, 1)], points=5)
    assert set(result) == {"train_return", "loss", "heldout_decided"}
    assert all(values[0] == 0 for values in result.values())


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_a_permuted_copy_aligns_back_and_has_zero_aligned_barrier(probe, seed: int) -> None:
    policy = random_cue_policy(seed).state_dict()
    spec = align.infer_spec(policy)
    copy = align.permute_state_dict(policy, spec, align.random_permutations(spec, policy,
                                                                            torch.Generator().manual_seed(seed)))
    aligned = align.weight_matching(policy, copy)
    naive = barriers.barrier_matrix([policy, copy], probe, [(0, 1)], points=5)
    after = barriers.barrier_matrix([policy, aligned], probe, [(0, 1)], points=5)
    assert all(after[m][0] == 0 for m in after)
    assert all(after[m][0] <= naive[m][0] for m in after)


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 10_000), points=st.integers(3, 7))
def test_path_points_are_the_interpolation_of_their_endpoints_to_the_bit(seed: int, points: int) -> None:
    ends = stack_state_dicts([random_cue_policy(seed + s).state_dict() for s in range(4)])
    pairs = [(0, 1), (2, 0), (3, 2), (1, 3)]
    weights = barriers.alphas(points)
    left, right = (torch.tensor([pair[side] for pair in pairs]).repeat_interleave(points) for side in (0, 1))
    expected = barriers.interpolate({k: v[left] for k, v in ends.items()}, {k: v[right] for k, v in ends.items()},
                                    weights.repeat(len(pairs)))
    got = barriers.path_points(ends, pairs, weights)
    assert all(torch.equal(got[k], expected[k]) for k in expected)


def test_path_points_first_layer_and_validation_logits_come_from_the_endpoints(probe) -> None:
    """The first layer is linear in the weights: a path point's first-layer outputs are the interpolation of
    its endpoints', and logits (and the expert loss) computed from them are those of the interpolated policy
    up to float rounding."""
    ends = barriers.actor_part(stack_state_dicts([random_cue_policy(s).state_dict() for s in range(3)]))
    pairs, weights = [(0, 1), (2, 1)], barriers.alphas(5)
    params = barriers.path_points(ends, pairs, weights)
    left, right = (torch.tensor([pair[side] for pair in pairs]).repeat_interleave(5) for side in (0, 1))
    first = barriers.FirstLayer(barriers.first_layer_outputs(probe.template, ends, probe.validation_obs), left, right,
                                weights.repeat(len(pairs)))
    direct = barriers.first_layer_outputs(probe.template, params, probe.validation_obs)["actor"]
    assert torch.allclose(first.rows(slice(None))["actor"], direct, atol=1e-5)
    logits = probe.validation_logits(params, first)
    assert torch.allclose(logits, probe.validation_logits(params), atol=1e-5)
    np.testing.assert_allclose(probe.expert_loss(params, logits), probe.expert_loss(params), atol=1e-5)


def test_repair_gives_the_repaired_policies_outputs_from_the_same_pass(probe) -> None:
    seeds = stack_state_dicts([random_cue_policy(s).state_dict() for s in range(3)])
    left, right = torch.tensor([0, 0, 1, 2, 1]), torch.tensor([1, 2, 2, 0, 0])
    weights = torch.tensor([0.25, 0.5, 0.5, 0.75, 0.1])
    params = barriers.actor_part(barriers.interpolate({k: v[left] for k, v in seeds.items()},
                                                      {k: v[right] for k, v in seeds.items()}, weights))
    stats = barriers.unit_statistics(probe.template, seeds, probe.validation_obs, barriers.ACTOR)
    a, b = barriers.pick_statistics(stats, left), barriers.pick_statistics(stats, right)
    repaired, outputs = barriers.repair_with_outputs(probe.template, params, a, b, weights, probe.validation_obs,
                                                     barriers.ACTOR, outputs=True)
    assert all(torch.equal(repaired[k], v) for k, v in barriers.repair(probe.template, params, a, b, weights,
                                                                        probe.validation_obs, barriers.ACTOR).items())
    assert torch.allclose(outputs["actor"], probe.validation_logits(repaired), atol=1e-4)
    first = barriers.FirstLayer(barriers.first_layer_outputs(probe.template, barriers.actor_part(seeds),
                                                             probe.validation_obs), left, right, weights)
    from_ends, _ = barriers.repair_with_outputs(probe.template, params, a, b, weights, probe.validation_obs,
                                                barriers.ACTOR, first)
    assert all(torch.allclose(from_ends[k], repaired[k], rtol=1e-4, atol=1e-5) for k in repaired)


def test_barriers_with_and_without_repair_from_one_build_are_those_of_two(probe) -> None:
    seeds = [random_cue_policy(s).state_dict() for s in range(3)]
    pairs = [(0, 1), (0, 2), (1, 2)]
    both = barriers.barrier_matrices(seeds, probe, pairs, points=5, repairs=(False, True), pairs_per_chunk=2)
    for repaired in (False, True):
        alone = barriers.barrier_matrix(seeds, probe, pairs, points=5, repair_units=repaired)
        assert set(alone) == set(both[repaired])
        assert all(np.array_equal(alone[m], both[repaired][m]) for m in alone)
    loss_only = barriers.barrier_matrix(seeds, probe, pairs, points=5, metrics=["loss"])
    assert np.array_equal(loss_only["loss"], both[False]["loss"])


def endpoint_statistics(probe, a, b):
    """The unit statistics REPAIR interpolates, of stacked endpoints ``a`` and ``b``."""
    return (barriers.unit_statistics(probe.template, ends, probe.validation_obs) for ends in (a, b))


def test_repair_leaves_the_endpoints_unchanged(probe) -> None:
    a, b = (stack_state_dicts([random_cue_policy(s).state_dict()] * 2) for s in (1, 2))
    weights = torch.tensor([0.0, 1.0])
    params = barriers.interpolate(a, b, weights)
    repaired = barriers.repair(probe.template, params, *endpoint_statistics(probe, a, b), weights, probe.validation_obs)
    obs = probe.validation_obs.float().expand(2, *probe.validation_obs.shape)
    before = StackedPolicy.from_params(probe.template, params).logits(obs)
    after = StackedPolicy.from_params(probe.template, repaired).logits(obs)
    assert torch.allclose(before, after, atol=1e-4)


def test_repair_from_per_seed_statistics_equals_repair_from_the_endpoints(probe) -> None:
    """The barrier matrix computes each seed's unit statistics once and picks them per path point; that must
    renormalise exactly as computing them from the (repeated) endpoints of every point does."""
    seeds = stack_state_dicts([random_cue_policy(s).state_dict() for s in range(3)])
    left, right = torch.tensor([0, 0, 1, 2]), torch.tensor([1, 2, 2, 0])
    weights = torch.tensor([0.25, 0.5, 0.5, 0.75])
    a, b = ({k: v[rows] for k, v in seeds.items()} for rows in (left, right))
    params = barriers.interpolate(a, b, weights)
    stats = barriers.unit_statistics(probe.template, seeds, probe.validation_obs)
    picked = barriers.repair(probe.template, params, barriers.pick_statistics(stats, left),
                             barriers.pick_statistics(stats, right), weights, probe.validation_obs)
    direct = barriers.repair(probe.template, params, *endpoint_statistics(probe, a, b), weights, probe.validation_obs)
    assert all(torch.allclose(picked[k], direct[k], rtol=1e-5, atol=1e-6) for k in direct)


def test_paths_renormalise_the_actor_alone_as_full_repair_does_in_passes_of_any_size(probe, monkeypatch) -> None:
    """Barrier paths interpolate and REPAIR only the actor (no metric reads the critic) and pass over the
    validation states a few policies at a time: the actor's numbers are those of the whole network at once."""
    seeds = stack_state_dicts([random_cue_policy(s).state_dict() for s in range(3)])
    left, right = torch.tensor([0, 0, 1, 2, 1]), torch.tensor([1, 2, 2, 0, 0])
    weights = torch.tensor([0.25, 0.5, 0.5, 0.75, 0.1])
    a, b = ({k: v[rows] for k, v in seeds.items()} for rows in (left, right))
    params = barriers.interpolate(a, b, weights)
    stats = barriers.unit_statistics(probe.template, seeds, probe.validation_obs)
    full = barriers.repair(probe.template, params, barriers.pick_statistics(stats, left),
                           barriers.pick_statistics(stats, right), weights, probe.validation_obs)
    monkeypatch.setattr(barriers, "POLICIES_PER_PASS", 2)
    actor = barriers.actor_part(params)
    actor_stats = barriers.unit_statistics(probe.template, barriers.actor_part(seeds), probe.validation_obs,
                                           barriers.ACTOR)
    alone = barriers.repair(probe.template, actor, barriers.pick_statistics(actor_stats, left),
                            barriers.pick_statistics(actor_stats, right), weights, probe.validation_obs, barriers.ACTOR)
    assert set(alone) == set(actor) and all(name.startswith("actor.") for name in alone)
    assert all(torch.equal(alone[name], full[name]) for name in alone)
    assert np.array_equal(probe.expert_loss(alone), probe.expert_loss(full))


def test_repair_restores_the_variance_of_interpolated_units(probe) -> None:
    a, b = (stack_state_dicts([random_cue_policy(s).state_dict()]) for s in (1, 2))
    half = torch.tensor([0.5])
    mid = barriers.interpolate(a, b, half)
    repaired = barriers.repair(probe.template, mid, *endpoint_statistics(probe, a, b), half, probe.validation_obs)
    obs = probe.validation_obs.reshape(len(probe.validation_obs), -1).float()

    def first_layer_std(params):
        return (obs @ params["actor.0.weight"][0].T + params["actor.0.bias"][0]).std(0)

    target = 0.5 * (first_layer_std(a) + first_layer_std(b))
    assert torch.allclose(first_layer_std(repaired), target, rtol=1e-3)
    assert first_layer_std(mid).mean() < target.mean()  # independent inits: averaging shrinks the spread


