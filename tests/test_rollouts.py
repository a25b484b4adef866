"""Playing stacked policies (:mod:`rlbasins.core.rollouts`): batch-independent episodes, and the batched
cores against their gymnasium views."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs
from envs.cartpole import CartPoleCore
from envs.suites import get_suite
from rlbasins.core.policy import ActorCritic, StackedPolicy
from rlbasins.core.rollouts import _play_core, _play_gym, play, stack_state_dicts
from tests.conftest import CUE_OBS_DIM, random_cue_policy

CUE = "rlbasins/CueConflict-v0"


# --------------------------------------------------------------------------- rollouts


@pytest.mark.parametrize("greedy", [True, False])
def test_a_policy_plays_the_same_episodes_whatever_else_is_in_the_batch(greedy: bool) -> None:
    policies = [random_cue_policy(s).state_dict() for s in range(3)]
    template = random_cue_policy(0)
    seeds = list(range(100, 124))
    together = play(template, stack_state_dicts(policies), CUE, {}, seeds, greedy=greedy, action_seed=5)
    alone = play(template, stack_state_dicts(policies[1:2]), CUE, {}, seeds, greedy=greedy, action_seed=5)
    np.testing.assert_array_equal(together.returns[1], alone.returns[0])
    np.testing.assert_array_equal(together.outcomes[1], alone.outcomes[0])


@pytest.mark.parametrize("env_id", [CUE, "CartPole-v1"])
@pytest.mark.parametrize("greedy", [True, False])
def test_batched_core_rollouts_match_the_gymnasium_view(env_id: str, greedy: bool) -> None:
    """Held-out episodes on the env's torch core and on its gymnasium environments are the same."""
    obs_dim, n_actions = (CUE_OBS_DIM, 4) if env_id == CUE else (4, 2)
    template = ActorCritic(obs_dim, n_actions, [16, 16])
    policies = [ActorCritic(obs_dim, n_actions, [16, 16]).state_dict() for _ in range(2)]
    suite = get_suite(env_id)
    env = gym.make(env_id)
    starts = suite.sample_states(env, np.random.default_rng(1), 12)
    seeds = list(range(12))
    core = play(template, stack_state_dicts(policies), env_id, {}, seeds, starts, suite, greedy=greedy, action_seed=9)
    stacked = StackedPolicy.from_params(template, stack_state_dicts(policies))
    view = _play_gym(stacked, env_id, {}, seeds, list(starts), suite, greedy, action_seed=9)
    np.testing.assert_array_equal(core.returns, view.returns)
    np.testing.assert_array_equal(core.outcomes, view.outcomes)




@pytest.mark.parametrize("env_id", sorted(envs.GRID_ENVS))
@pytest.mark.parametrize("heldout", [True, False])
def test_greedy_episodes_cut_at_a_cycle_end_as_if_played_out(env_id: str, heldout: bool) -> None:
    """A greedy episode that comes back to a state it was in would go round that cycle until the step limit:
    the core stops it there, and every episode's return and outcome are those of playing every step (random
    sharp policies, which cycle often; held-out and training starts; every gridworld)."""
    core_class = envs.GRID_ENVS[env_id]
    shape = core_class(num_envs=1).observation_shape
    template = ActorCritic(shape, core_class.n_actions, [16, 16])
    torch.manual_seed(0)
    policies = stack_state_dicts([{k: 3 * v for k, v in template.fresh_copy().state_dict().items()}
                                  for _ in range(12)])
    starts = core_class.heldout_states(20, seed=1) if heldout else None
    steps: list[int] = []                                     # envs stepped, per call

    class CountingCore(core_class):
        def step(self, actions, **kwargs):
            steps.append(len(actions))
            return super().step(actions, **kwargs)

    played = {}
    for stop in (False, True):
        policy = StackedPolicy.from_params(template, policies)
        played[stop] = (_play_core(policy, CountingCore, {}, list(range(20)), starts, True, 0, torch.device("cpu"),
                                   stop_cycles=stop), sum(steps))
        steps.clear()
    (full, full_steps), (cut, cut_steps) = played[False], played[True]
    np.testing.assert_array_equal(full.returns, cut.returns)
    np.testing.assert_array_equal(full.outcomes, cut.outcomes)
    assert (full.outcomes == "neither").mean() > 0.3          # many episodes time out ...
    assert cut_steps < 0.7 * full_steps                        # ... and most of their steps are saved


def test_cycles_are_played_out_where_a_step_pays() -> None:
    """Cutting a cycle keeps the return only when neither a step that does not end the episode nor a timeout
    pays anything; a core whose steps pay is played to the step limit."""
    core_class = envs.GRID_ENVS[CUE]

    class PayingCore(core_class):
        def reward_of(self, outcome, state=None):
            return super().reward_of(outcome, state) + 0.1

    template = random_cue_policy(0)
    stacked = stack_state_dicts([{k: 3 * v for k, v in template.state_dict().items()}])
    starts = core_class.heldout_states(8, seed=2)
    policy = StackedPolicy.from_params(template, stacked)
    episodes = _play_core(policy, PayingCore, {}, list(range(8)), starts, True, 0, torch.device("cpu"))
    timed_out = episodes.outcomes[0] == "neither"
    assert timed_out.any()
    np.testing.assert_allclose(episodes.returns[0][timed_out], 0.1 * PayingCore(num_envs=1).max_steps, rtol=1e-5)


def test_policies_that_finish_early_leave_the_batch_without_changing_anyones_episodes(monkeypatch) -> None:
    """Half the policies always push the cart left and end every episode within a dozen steps, the other
    half balance the pole (push towards where it falls); once the first half are done the batch shrinks to
    the others (the core rebuilt from their envs' states), and every policy's episodes stay those it plays
    alone."""
    built: list[int] = []

    class CountingCore(CartPoleCore):
        def __init__(self, num_envs: int = 1, **kwargs) -> None:
            built.append(num_envs)
            super().__init__(num_envs, **kwargs)

    monkeypatch.setitem(envs.BATCHED_CORES, "CartPole-v1", CountingCore)
    template = ActorCritic(4, 2, [16, 16])
    policies = []
    for i in range(8):
        sd = {name: torch.zeros_like(value) for name, value in template.state_dict().items()}
        if i % 2:  # balance: hidden unit 0 = tanh(θ + θ'), pushed right when it is positive
            sd["actor.0.weight"][0] = torch.tensor([0.0, 0.0, 1.0 + 0.1 * i, 1.0])
            sd["actor.2.weight"][0, 0] = 1.0
            sd["actor.4.weight"][:, 0] = torch.tensor([-20.0, 20.0])
        else:      # always left
            sd["actor.4.bias"] = torch.tensor([20.0, -20.0])
        policies.append(sd)
    seeds = list(range(6))
    for greedy in (True, False):
        built.clear()
        together = play(template, stack_state_dicts(policies), "CartPole-v1", {}, seeds, greedy=greedy,
                        action_seed=3)
        assert built[0] == 8 * len(seeds) and min(built) <= 4 * len(seeds)        # the batch did shrink
        for i, sd in enumerate(policies):
            alone = play(template, stack_state_dicts([sd]), "CartPole-v1", {}, seeds, greedy=greedy, action_seed=3)
            np.testing.assert_array_equal(together.returns[i], alone.returns[0])
        assert together.returns[::2].max() < together.returns[1::2].min()          # the left-pushers ended first
