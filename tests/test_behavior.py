"""Held-out behaviour (:mod:`rlbasins.analysis.behavior`): stacked evaluation, divergence matrices and
per-seed strategy preferences."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlbasins.analysis.behavior import (
    BehaviorResult,
    _label_summary,
    argmax_agreement_matrix,
    resampled_total_variation,
    stacked_action_probs,
    strategy_distance_matrix,
    total_variation_matrix,
)
from rlbasins.core.heldout import distinct_state_groups
from rlbasins.core.policy import ActorCritic


def _policies(n: int, seed: int) -> list[ActorCritic]:
    torch.manual_seed(seed)
    return [ActorCritic(obs_shape=4, n_actions=3, hidden_sizes=[8, 8]) for _ in range(n)]


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 6), seed=st.integers(0, 1000))
def test_stacked_evaluation_equals_one_policy_at_a_time(n, seed) -> None:
    policies = _policies(n, seed)
    obs = torch.randn(17, 4)
    stacked = stacked_action_probs(policies, obs)
    assert stacked.shape == (n, 17, 3)
    for i, policy in enumerate(policies):
        assert torch.allclose(stacked[i], policy.action_probs(obs), atol=1e-6)


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 7), seed=st.integers(0, 1000), chunk=st.integers(1, 8))
def test_divergence_matrices_are_proper(n, seed, chunk) -> None:
    probs = stacked_action_probs(_policies(n, seed), torch.randn(9, 4) * 3)
    tv = total_variation_matrix(probs, chunk=chunk)
    agreement = argmax_agreement_matrix(probs)
    assert torch.allclose(tv, tv.T) and torch.all(tv.diagonal() == 0)
    assert torch.all((tv >= 0) & (tv <= 1 + 1e-6))
    assert torch.all(agreement.diagonal() == 1) and torch.allclose(agreement, agreement.T)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 7), states=st.integers(1, 12), seed=st.integers(0, 1000), chunk=st.integers(1, 8))
def test_a_resample_of_states_gives_the_matrix_recomputed_on_it(n, states, seed, chunk) -> None:
    probs = stacked_action_probs(_policies(n, seed), torch.randn(states, 4) * 3)
    distance_of = resampled_total_variation(probs, chunk=chunk)
    rng = np.random.default_rng(seed)
    for idx in (np.arange(states), rng.integers(states, size=states), rng.integers(states, size=2 * states + 1)):
        recomputed = total_variation_matrix(probs[:, idx]).numpy()
        np.testing.assert_allclose(distance_of(idx), recomputed, rtol=0, atol=1e-6)


def test_resampled_distances_beyond_the_memory_bound_are_recomputed(monkeypatch) -> None:
    import rlbasins.analysis.behavior as behavior

    probs = stacked_action_probs(_policies(3, 0), torch.randn(5, 4))
    monkeypatch.setattr(behavior, "RESAMPLE_MEMORY_ELEMENTS", 3 * 3 * 5 - 1)
    idx = np.array([4, 4, 0, 1, 3])
    assert np.array_equal(behavior.resampled_total_variation(probs)(idx), total_variation_matrix(probs[:, idx]).numpy())


def test_divergence_of_opposite_deterministic_policies_is_one() -> None:
    probs = torch.tensor([[[1.0, 0.0]] * 5, [[0.0, 1.0]] * 5])
    assert torch.allclose(total_variation_matrix(probs), torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    assert torch.equal(argmax_agreement_matrix(probs), torch.tensor([[1.0, 0.0], [0.0, 1.0]]))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 64), st.integers(0, 64)), min_size=1, max_size=12))
def test_a_seed_prefers_the_strategy_it_reaches_more_often_whatever_reaches_neither(counts) -> None:
    episodes = 64 * 2
    fractions = [{"colour": c / episodes, "shape": s / episodes, "neither": 1 - (c + s) / episodes} for c, s in counts]
    result = BehaviorResult(
        env_id="rlbasins/CueConflict-v0", suite="cue_conflict", seeds=list(range(len(counts))), steps=[0] * len(counts),
        train_return=[], heldout_return_greedy=[], heldout_return_sampled=[], heldout_return_greedy_std=[],
        total_variation=[], jensen_shannon=[], argmax_agreement=[], noise_total_variation=[], n_states=1,
        n_episodes=episodes, labels=["colour", "shape", "neither"], heldout_labels_greedy=fractions)
    expected = ["colour" if c > s else "shape" if s > c else "tie" for c, s in counts]
    assert result.preferred_strategies() == expected


# --------------------------------------------------------------------------- counting distinct states


def test_distinct_state_groups_ignore_the_nuisance_seed_and_number_states_by_first_appearance() -> None:
    from envs.cue_conflict import CueConflictCore

    every = CueConflictCore.enumerate_heldout(5)
    drawn = CueConflictCore.heldout_states(400, seed=1)                  # 400 > 144: drawn with replacement
    groups = distinct_state_groups(drawn)
    assert groups.max() + 1 == len(torch.unique(torch.as_tensor(groups))) <= len(every)
    assert groups[0] == 0 and all(groups[i] <= groups[:i].max() + 1 for i in range(1, len(groups)))
    same = groups[:, None] == groups[None]
    agents = drawn.agent.numpy()
    assert (agents[:, None] == agents[None]).all(-1)[same].all()        # one group: one layout
    assert len(set(distinct_state_groups(np.random.default_rng(0).normal(size=(50, 4))))) == 50  # CartPole rows


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), seeds=st.integers(1, 4), states=st.integers(1, 12), copies=st.integers(2, 5))
def test_repeating_each_state_changes_no_fraction_interval_or_count(seed: int, seeds: int, states: int,
                                                                     copies: int) -> None:
    rng = np.random.default_rng(seed)
    labels = ("colour", "shape")
    outcomes = rng.choice(np.array(["colour", "shape", None], dtype=object), size=(seeds, states))
    once = _label_summary(outcomes, labels, np.arange(states))
    repeated = _label_summary(np.repeat(outcomes, copies, axis=1), labels, np.repeat(np.arange(states), copies))
    for mine, theirs in zip(once[0] + once[1], repeated[0] + repeated[1], strict=True):  # fractions, intervals
        assert mine.keys() == theirs.keys() and all(np.allclose(mine[k], theirs[k]) for k in mine)
    assert np.allclose(once[2], repeated[2]) and np.allclose(once[3], repeated[3])
    assert np.allclose(once[4], repeated[4]) and once[4].shape == (seeds, states, 3)  # per distinct state
    assert np.allclose(once[4].mean(1), [[f[k] for k in ("colour", "shape", "neither")] for f in once[0]])
    # the counts are over the distinct states: at most one per state
    assert (once[2] + once[3] <= states + 1e-9).all()


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), seeds=st.integers(2, 6), states=st.integers(1, 10))
def test_the_strategy_distance_is_a_total_variation_between_strategy_shares(seed: int, seeds: int,
                                                                           states: int) -> None:
    shares = np.random.default_rng(seed).dirichlet(np.ones(3), size=(seeds, states))          # [S, D, 3]
    distances = strategy_distance_matrix(shares)
    assert np.allclose(distances, distances.T) and np.allclose(np.diag(distances), 0)
    assert (distances >= -1e-12).all() and (distances <= 1 + 1e-12).all()
    # which states a seed takes a strategy on does not matter, only how often: shuffled states, same distance
    shuffled = np.stack([s[np.random.default_rng(seed + i).permutation(states)] for i, s in enumerate(shares)])
    assert np.allclose(strategy_distance_matrix(shuffled), distances)
    pure = np.zeros((2, states, 3))
    pure[0, :, 0] = pure[1, :, 1] = 1  # always colour vs always shape
    assert strategy_distance_matrix(pure)[0, 1] == 1.0
