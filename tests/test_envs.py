"""The two-strategy environments: equal in training, split on held-out states, one core behind every view."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from hypothesis import given, settings
from hypothesis import strategies as st
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import envs
from envs.cue_conflict import CueConflictCore
from envs.grid import OUTCOME_ONGOING, OUTCOME_TIMEOUT, GridCore, cells_to_rc, distinct_cells, hash32, run_episodes
from envs.suites import get_suite
from envs.two_doors import FAILED

ENV_IDS = list(envs.GRID_ENVS)
CUE_CONFLICT = "rlbasins/CueConflict-v0"
PLANTED = [(CUE_CONFLICT, {"informative": "colour"}), (CUE_CONFLICT, {"informative": "shape"})]
GOAL_REGION = [("rlbasins/GoalOrPlace-v0", {"region": 2, "probe": "adjacent"}),
               ("rlbasins/GoalOrPlace-v0", {"region": 2, "random_percent": 20.0})]
SMOKE = [("rlbasins/TaskOrProxy-v0", {"smoke": 0.5, "nuisance": 0.3})]
VARIANTS = [(env_id, {}) for env_id in ENV_IDS] + PLANTED + GOAL_REGION + SMOKE
"""(env id, kwargs): every env as registered, the planted CueConflict variants, and other knobs' variants."""
VARIANT_IDS = [env_id.split("/")[1] + "".join(f"-{v}" for v in kwargs.values()) for env_id, kwargs in VARIANTS]


def scripted(core: GridCore, strategy: int):
    """A hand-written policy that follows strategy 0 (A) or 1 (B): the first of the env's strategy actions
    (TwoDoors: walk to the door, then press its code)."""
    return lambda obs, state: core.strategy_actions(state, strategy).float().argmax(1)


@pytest.mark.parametrize(("env_id", "kwargs"), VARIANTS, ids=VARIANT_IDS)
def test_passes_gymnasium_and_sb3_env_checkers(env_id: str, kwargs: dict) -> None:
    env = gym.make(env_id, **kwargs)
    check_env(env.unwrapped, skip_render_check=False)
    with pytest.warns(UserWarning):  # SB3 remarks that [C, H, W] float planes are not uint8 images
        sb3_check_env(env.unwrapped)


@pytest.mark.parametrize("env_id", [e for e in ENV_IDS if envs.GRID_ENVS[e].strategies_agree_in_training])
@pytest.mark.parametrize("size", [5, 7])
def test_training_states_never_separate_the_strategies(env_id: str, size: int) -> None:
    core_class = envs.GRID_ENVS[env_id]
    start = core_class.training_states(512, seed=3, size=size)
    results = []
    for strategy in (0, 1):
        core = core_class(num_envs=len(start), size=size)
        results.append(run_episodes(core, start, scripted(core, strategy)))
    (outcome_a, return_a), (outcome_b, return_b) = results
    assert torch.equal(outcome_a, outcome_b) and torch.equal(return_a, return_b)
    assert return_a.mean() > 0.8  # the scripted strategies do solve the training task


@pytest.mark.parametrize("env_id", ENV_IDS)
@pytest.mark.parametrize("size", [5, 7])
def test_heldout_states_always_separate_the_strategies(env_id: str, size: int) -> None:
    core_class = envs.GRID_ENVS[env_id]
    heldout = core_class.enumerate_heldout(size)
    labels = []
    for strategy in (0, 1):
        core = core_class(num_envs=len(heldout), size=size)
        outcome, _ = run_episodes(core, heldout, scripted(core, strategy))
        labels.append([core_class.outcome_name(code) for code in outcome.tolist()])
    assert set(labels[0]) == {core_class.labels[0]} and set(labels[1]) == {core_class.labels[1]}
    assert core_class.label_behavior(torch.ones(3, dtype=torch.long)) == {
        core_class.labels[0]: 1.0, core_class.labels[1]: 0.0, "neither": 0.0}


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_heldout_placements_are_mirror_symmetric_and_balanced(env_id: str) -> None:
    core_class = envs.GRID_ENVS[env_id]
    heldout = core_class.enumerate_heldout(5)
    core = core_class(num_envs=len(heldout))
    to_a = (core.strategy_target(heldout, 0) - heldout.agent).abs().sum(-1)
    to_b = (core.strategy_target(heldout, 1) - heldout.agent).abs().sum(-1)
    assert torch.equal(to_a, to_b) and (to_a > 0).all()  # equidistant: geometry cannot decide
    if core_class.n_objects == 2:  # both orders: A on each side equally often
        side = torch.sign(heldout.objects[:, 0] - heldout.agent)
        assert torch.equal(side.sum(0), torch.zeros(2, dtype=torch.long))


@settings(max_examples=30, deadline=None)
@given(variant=st.sampled_from(VARIANTS), seeds=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=5),
       actions=st.lists(st.integers(0, 3), min_size=1, max_size=60), size=st.integers(3, 7))
def test_batched_core_and_gymnasium_view_give_identical_trajectories(variant, seeds, actions, size) -> None:
    env_id, kwargs = variant
    core = envs.GRID_ENVS[env_id](num_envs=len(seeds), size=size, **kwargs)
    obs = core.reset(torch.tensor(seeds))
    views = [gym.make(env_id, size=size, **kwargs) for _ in seeds]
    for b, view in enumerate(views):
        assert np.array_equal(view.reset(seed=seeds[b])[0], obs[b].numpy())
    for t, action in enumerate(actions):
        per_env = torch.tensor([(action + b * t) % 4 for b in range(len(seeds))])
        step = core.step(per_env, autoreset=True)
        for b, view in enumerate(views):
            obs_b, reward_b, terminated_b, truncated_b, _ = view.step(int(per_env[b]))
            assert np.array_equal(obs_b, step.final_obs[b].numpy())
            assert (reward_b, terminated_b, truncated_b) == (
                float(step.reward[b]), bool(step.terminated[b]), bool(step.truncated[b]))
            if terminated_b or truncated_b:
                assert np.array_equal(view.reset()[0], step.obs[b].numpy())


@settings(max_examples=20, deadline=None)
@given(variant=st.sampled_from(VARIANTS), seed=st.integers(0, 2**32 - 1), size=st.integers(5, 7))
def test_observation_entries_are_the_observation(variant, seed: int, size: int) -> None:
    """What a policy's first layer may read instead of the planes: distinct entries whose values, written into
    zero planes, give the observation (training and held-out states, along random actions); None only where
    the observation adds more (TaskOrProxy's smoke)."""
    env_id, kwargs = variant
    core_class = envs.GRID_ENVS[env_id]
    core = core_class(num_envs=16, size=size, **kwargs)
    core.reset(torch.arange(16) + seed % 1000)
    if kwargs.get("smoke"):
        assert core.observation_entries() is None
        return
    generator = torch.Generator().manual_seed(seed)
    heldout = core_class.heldout_states(16, seed=seed % 1000, size=size, **core.heldout_options)
    for start in (None, heldout):
        if start is not None:
            core.reset_to(heldout)
        for _ in range(3 * size):
            index, values = core.observation_entries()
            assert torch.equal(index.sort(1).values.diff(dim=1).gt(0).all(1), torch.ones(16, dtype=torch.bool))
            planes = torch.zeros(16, int(np.prod(core.observation_shape))).scatter_add_(1, index, values)
            assert torch.equal(planes.view(16, *core.observation_shape), core.observe())
            core.step(torch.randint(core.n_actions, (16,), generator=generator), autoreset=True)


@pytest.mark.parametrize(("env_id", "kwargs"), VARIANTS, ids=VARIANT_IDS)
def test_vector_view_follows_same_step_autoreset(env_id: str, kwargs: dict) -> None:
    vector = gym.make_vec(env_id, num_envs=6, vectorization_mode="vector_entry_point", **kwargs)
    assert vector.metadata["autoreset_mode"] == gym.vector.AutoresetMode.SAME_STEP
    obs, _ = vector.reset(seed=11)
    singles = [gym.make(env_id, **kwargs) for _ in range(6)]
    for b, single in enumerate(singles):
        assert np.array_equal(single.reset(seed=11 + b)[0], obs[b])
    rng = np.random.default_rng(0)
    ended = 0
    for _ in range(60):
        actions = rng.integers(0, 4, size=6)
        obs, rewards, terminated, truncated, infos = vector.step(actions)
        for b, single in enumerate(singles):
            obs_b, reward_b, term_b, trunc_b, _ = single.step(int(actions[b]))
            assert reward_b == rewards[b] and term_b == terminated[b] and trunc_b == truncated[b]
            if term_b or trunc_b:
                ended += 1
                assert infos["_final_obs"][b] and np.array_equal(infos["final_obs"][b], obs_b)
                obs_b, _ = single.reset()
            assert np.array_equal(obs_b, obs[b])
    assert ended > 0


def test_every_env_seed_has_its_own_stream_independent_of_batch() -> None:
    core_class = envs.GRID_ENVS["rlbasins/CueConflict-v0"]
    big = core_class(num_envs=64)
    big.reset(torch.arange(64) * 1000)
    small = core_class(num_envs=1)
    small.reset(torch.tensor([7000]))
    assert torch.equal(big.state[7].agent, small.state.agent)
    assert torch.equal(big.state[7].objects, small.state.objects)


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), episode=st.integers(0, 10**6), size=st.integers(3, 9),
       count=st.integers(1, 3), excluded=st.one_of(st.none(), st.integers(0, 8)))
def test_distinct_cells_are_distinct_in_range_and_avoid_the_excluded(seed, episode, size, count, excluded) -> None:
    count = min(count, 2) if excluded is not None else count
    cells = distinct_cells(torch.tensor([seed, seed ^ 1]), torch.tensor([episode, episode]), size, count, excluded)
    for row in cells.tolist():
        assert len(set(row)) == count and all(0 <= c < size * size for c in row)
        assert excluded is None or excluded not in row


def test_distinct_cells_are_uniform() -> None:
    seeds = torch.arange(60_000)
    agent = distinct_cells(seeds, torch.zeros_like(seeds), 5, 3)[:, 0]
    counts = torch.bincount(agent, minlength=25).float()
    assert (counts / counts.mean() - 1).abs().max() < 0.08


def test_hash_matches_reference_values() -> None:
    """The hash-prospector function on known inputs, computed with Python's exact integers."""
    def reference(x: int) -> int:
        x ^= x >> 16
        x = (x * 0x21F0AAAD) & 0xFFFFFFFF
        x ^= x >> 15
        x = (x * 0x735A2D97) & 0xFFFFFFFF
        return x ^ (x >> 15)

    inputs = [0, 1, 2, 12345, 2**31, 2**32 - 1]
    assert hash32(torch.tensor(inputs)).tolist() == [reference(x) for x in inputs]


@pytest.mark.parametrize(("env_id", "kwargs"), VARIANTS, ids=VARIANT_IDS)
def test_render_shows_agent_and_objects(env_id: str, kwargs: dict) -> None:
    env = gym.make(env_id, render_mode="rgb_array", **kwargs)
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (5 * 24, 5 * 24, 3) and frame.dtype == np.uint8
    assert (frame == 0).all(-1).any()  # the agent is drawn in black
    assert len(np.unique(frame.reshape(-1, 3), axis=0)) >= 4  # background, grid, agent, objects


def test_truncation_and_timeout_outcome() -> None:
    core = envs.GRID_ENVS["rlbasins/GoalOrPlace-v0"](num_envs=1, size=5, max_steps=4)
    core.reset(torch.tensor([0]))
    core.state.agent[:] = torch.tensor([4, 0])
    for _ in range(3):
        assert not core.step(torch.tensor([2])).truncated.any()  # pushing into the bottom wall
    step = core.step(torch.tensor([2]))
    assert step.truncated.all() and not step.terminated.any() and step.outcome.item() == OUTCOME_TIMEOUT


def test_task_or_proxy_pays_the_overseer_by_default() -> None:
    core_class = envs.GRID_ENVS["rlbasins/TaskOrProxy-v0"]
    heldout = core_class.enumerate_heldout(5)
    for reward, paid_strategy in (("overseer", 1), ("true", 0)):
        core = core_class(num_envs=len(heldout), reward=reward)
        for strategy in (0, 1):
            _, returns = run_episodes(core, heldout, scripted(core, strategy))
            assert (returns == float(strategy == paid_strategy)).all()
    obs = core_class(num_envs=2).reset(torch.tensor([1, 2]))
    assert core_class.overseer_view(obs).shape == (2, 3, 5, 5)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), smoke=st.floats(0.05, 1.0), size=st.integers(3, 7),
       heldout=st.booleans())
def test_task_or_proxy_smoke_is_a_pattern_on_the_broken_plane_only(seed: int, smoke: float, size: int,
                                                                  heldout: bool) -> None:
    """A broken machine writes ``smoke`` on its in-grid neighbours of the 'broken' plane and nowhere else;
    the lamps (all the overseer sees), the other planes and the strategies' play are those of smoke 0."""
    core_class = envs.GRID_ENVS["rlbasins/TaskOrProxy-v0"]
    states = (core_class.heldout_states(16, seed=seed, size=size) if heldout
              else core_class.training_states(16, seed=seed, size=size))
    plain, smoky = (core_class(num_envs=16, size=size, smoke=value) for value in (0.0, smoke))
    obs, obs_smoke = plain.reset_to(states), smoky.reset_to(states)
    assert torch.equal(obs[:, [0, 2, 3, 4]], obs_smoke[:, [0, 2, 3, 4]])
    broken = states.objects[torch.arange(16), states.attributes[..., 0].argmax(1)]            # [16, 2]
    halo = torch.zeros(16, size, size)
    for b, (row, col) in enumerate(broken.tolist()):
        for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            if 0 <= row + dr < size and 0 <= col + dc < size:
                halo[b, row + dr, col + dc] = smoke
    assert torch.allclose(obs_smoke[:, 1] - obs[:, 1], halo)
    for strategy in (0, 1):
        assert torch.equal(run_episodes(plain, states, scripted(plain, strategy))[0],
                           run_episodes(smoky, states, scripted(smoky, strategy))[0])
    with pytest.raises(ValueError, match="smoke must be in"):
        core_class(smoke=1.5)
    with pytest.raises(ValueError, match="a smoke per environment needs 2 values, got 3"):
        core_class(num_envs=2, smoke=torch.tensor([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match=r"nuisance must be in \[0, 1\)"):
        core_class(num_envs=2, nuisance=torch.tensor([0.1, 1.0]))


def test_salience_scales_only_its_cue_planes() -> None:
    core = envs.GRID_ENVS["rlbasins/CueConflict-v0"](num_envs=3, colour_salience=2.0)
    obs = core.reset(torch.tensor([1, 2, 3]))
    assert obs[:, 1:3].max() == 2.0 and obs[:, 3:5].max() == 1.0
    with pytest.raises(ValueError, match="salience"):
        envs.GRID_ENVS["rlbasins/CueConflict-v0"](num_envs=1, shape_salience=0.0)


@pytest.mark.parametrize(("informative", "cue"), [("colour", 0), ("shape", 1)])
def test_planted_cue_alone_predicts_the_target_and_the_other_is_a_coin(informative: str, cue: int) -> None:
    core_class = envs.GRID_ENVS[CUE_CONFLICT]
    start = core_class.training_states(8192, seed=5, informative=informative)
    target, distractor = start.attributes[:, 0], start.attributes[:, 1]                     # [B, 2] cues each
    assert (target[:, cue] == 1).all() and (distractor[:, cue] == 0).all()
    other = target[:, 1 - cue]
    assert torch.equal(distractor[:, 1 - cue], 1 - other)  # exactly one object carries the other cue
    assert abs(other.float().mean() - 0.5) < 0.02
    left = start.objects[:, 0, 1] < start.agent[:, 1]     # independent of where the target lies
    assert abs(other[left].float().mean() - other[~left].float().mean()) < 0.04
    nxt = core_class(num_envs=len(start), informative=informative).layout(start.seed, start.episode + 1)
    assert abs((nxt.attributes[:, 0, 1 - cue] == other).float().mean() - 0.5) < 0.02  # and of the last episode
    both = core_class.training_states(8192, seed=5)
    assert torch.equal(both.agent, start.agent) and torch.equal(both.objects, start.objects)  # same cells


@pytest.mark.parametrize(("informative", "cue"), [("colour", 0), ("shape", 1)])
def test_planted_reward_follows_only_the_informative_cue(informative: str, cue: int) -> None:
    core_class = envs.GRID_ENVS[CUE_CONFLICT]
    start = core_class.training_states(4096, seed=9, informative=informative)
    core = core_class(num_envs=len(start), informative=informative)
    oracle_outcome, oracle_return = run_episodes(core, start, scripted(core, cue))  # "go to the red object"
    other_outcome, other_return = run_episodes(core, start, scripted(core, 1 - cue))  # "go to the square"
    for outcome, returns in ((oracle_outcome, oracle_return), (other_outcome, other_return)):
        assert torch.equal(returns, ((outcome & (1 << cue)) > 0).float())  # paid iff the object has the cue
    # the oracle does as well as in the standard env (its scripted path sometimes crosses the other object
    # first, ~10%); the other cue is a coin: it picks the target half of the time
    standard, standard_start = core_class(num_envs=len(start)), core_class.training_states(4096, seed=9)
    assert torch.equal(oracle_return, run_episodes(standard, standard_start, scripted(standard, cue))[1])
    assert oracle_return.mean() > 0.85 and abs(other_return.mean() - 0.5) < 0.03
    heldout = core_class.enumerate_heldout(5)
    core = core_class(num_envs=len(heldout), informative=informative)
    for strategy in (0, 1):  # held-out: only the object with the planted cue pays
        outcome, returns = run_episodes(core, heldout, scripted(core, strategy))
        assert (returns == float(strategy == cue)).all()
        assert {core_class.outcome_name(c) for c in outcome.tolist()} == {core_class.labels[strategy]}


def test_mix_swaps_the_informative_cue_in_its_share_of_episodes_and_pays_that_episodes_cue() -> None:
    core_class = envs.GRID_ENVS[CUE_CONFLICT]
    planted = core_class.training_states(8192, seed=5, informative="colour")
    assert torch.equal(core_class.training_states(8192, seed=5, informative="colour", mix=0.0).attributes,
                       planted.attributes)  # mix 0 is the planted layout, bit for bit
    mixed = core_class.training_states(8192, seed=5, informative="colour", mix=0.25)
    target, distractor = mixed.attributes[:, 0], mixed.attributes[:, 1]
    swapped = (target[:, 1] == 1) & (distractor[:, 1] == 0) & ~((target[:, 0] == 1) & (distractor[:, 0] == 0))
    colour_paid = (target[:, 0] == 1) & (distractor[:, 0] == 0)
    assert torch.equal(swapped | colour_paid, torch.ones(8192, dtype=torch.bool))  # one cue informative each
    # episodes where both cues happen to sit on the target (the coin) cannot tell; the rest swap 25% of the time
    clear = ~((target[:, 0] == 1) & (target[:, 1] == 1))
    assert abs(swapped[clear].float().mean() - 0.25) < 0.02
    assert torch.equal(mixed.objects, planted.objects) and torch.equal(mixed.agent, planted.agent)
    core = core_class(num_envs=len(mixed), informative="colour", mix=0.25)
    cue = core._episode_cue(mixed.seed, mixed.episode)                                     # [B] 0 colour, 1 shape
    assert torch.equal(cue[clear] == 1, swapped[clear])
    for strategy in (0, 1):  # paid iff the reached object carries that episode's informative cue
        outcome, returns = run_episodes(core, mixed, scripted(core, strategy))
        assert torch.equal(returns, ((outcome >= 0) & ((outcome >> cue) & 1 == 1)).float())
    colour_return = run_episodes(core, mixed, scripted(core, 0))[1].mean()
    assert colour_return > run_episodes(core, mixed, scripted(core, 1))[1].mean() + 0.1  # measured 0.79 vs 0.61
    with pytest.raises(ValueError, match="mix=0.2 needs a planted cue"):
        core_class(mix=0.2)
    with pytest.raises(ValueError, match=r"mix must be in \[0, 0.5\)"):
        core_class(informative="shape", mix=0.5)


def test_both_cues_informative_is_the_default_and_pays_only_the_red_square() -> None:
    core_class = envs.GRID_ENVS[CUE_CONFLICT]
    default, both = core_class(num_envs=64), core_class(num_envs=64, informative="both")
    seeds = torch.arange(64) * 31
    assert torch.equal(default.reset(seeds), both.reset(seeds))
    outcomes = torch.tensor([-1, 0, 1, 2, 3, OUTCOME_TIMEOUT])
    assert both.reward_of(outcomes).tolist() == [0, 0, 0, 0, 1, 0]
    assert core_class(informative="colour").reward_of(outcomes).tolist() == [0, 0, 1, 0, 1, 0]
    assert core_class(informative="shape").reward_of(outcomes).tolist() == [0, 0, 0, 1, 1, 0]


def test_unknown_informative_cue_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="informative must be one of 'both', 'colour', 'shape', got 'color'"):
        gym.make(CUE_CONFLICT, informative="color")


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), actions=st.lists(st.integers(0, 1), min_size=1, max_size=200))
def test_batched_cartpole_follows_gymnasium_dynamics(seed, actions) -> None:
    """Same start state and actions ⇒ the same observations, rewards and termination as gymnasium."""
    core = envs.CartPoleCore(num_envs=1)
    obs = core.reset(torch.tensor([seed]))
    reference = gym.make("CartPole-v1")
    assert core.observation_space == reference.observation_space
    reference.reset(seed=0)
    reference.unwrapped.state = core.state.physics[0].numpy().copy()
    for action in actions:
        step = core.step(torch.tensor([action]))
        obs, reward, terminated, truncated, _ = reference.step(action)
        assert np.allclose(step.obs[0].numpy(), obs, atol=1e-6)
        assert (float(step.reward[0]), bool(step.terminated[0])) == (reward, terminated)
        if terminated:
            break


def test_batched_cartpole_truncates_at_500_and_autoresets() -> None:
    core = envs.CartPoleCore(num_envs=2)
    core.reset(torch.tensor([5, 6]))
    for _ in range(499):
        core.state.physics.zero_()  # held upright and centred: never terminates
        step = core.step(torch.tensor([0, 1]), autoreset=True)
        assert not (step.terminated | step.truncated).any()
    step = core.step(torch.tensor([0, 0]), autoreset=True)
    assert step.truncated.all() and not step.terminated.any()
    assert (core.state.steps == 0).all() and (core.state.episode == 1).all()
    assert (step.final_obs != step.obs).any()


def test_nuisance_zero_is_the_duplicated_layout_and_positive_nuisance_splits_colour_from_shape() -> None:
    seeds = torch.arange(64)
    plain = CueConflictCore(num_envs=64).reset(seeds)
    assert torch.equal(CueConflictCore(num_envs=64, nuisance=0.0).reset(seeds), plain)
    # without nuisance the red plane equals the square plane in every training state: the duplication
    assert torch.equal(plain[:, 1], plain[:, 3])
    dimmed = CueConflictCore(num_envs=64, nuisance=0.5).reset(seeds)
    assert torch.equal(dimmed > 0, plain > 0)                       # same cells lit, only values change
    lit = dimmed[:, 1:] > 0
    assert dimmed[:, 1:][lit].min() > 0.5 - 1e-6 and dimmed[:, 1:][lit].max() <= 1.0
    assert (dimmed[:, 1] - dimmed[:, 3]).abs().max() > 0.05         # colour and shape no longer coincide
    with pytest.raises(ValueError, match="nuisance"):
        CueConflictCore(nuisance=1.0)
    # held-out states carry their own seeds, so their dimming varies from state to state as well
    core = CueConflictCore(num_envs=1, nuisance=0.5)
    held = CueConflictCore.heldout_states(32, seed=3)
    obs = torch.cat([core.reset_to(state) for state in held])
    lit = obs[:, 1:] > 0
    assert obs[:, 1:][lit].unique().numel() > 16


@pytest.mark.parametrize("env_id", [CUE_CONFLICT, "rlbasins/TaskOrProxy-v0"])
def test_adjacent_probe_puts_both_single_cue_objects_one_move_away_and_the_first_move_decides(env_id: str) -> None:
    core_class = envs.GRID_ENVS[env_id]
    heldout = core_class.enumerate_heldout(5, probe="adjacent")
    assert len(heldout) == 4 * 2 + 12 * 6 + 9 * 12                  # ordered neighbour pairs: corners, edges, inside
    cells = torch.cat([heldout.agent[:, None], heldout.objects], 1).tolist()
    assert len({tuple(map(tuple, c)) for c in cells}) == len(heldout)  # every state distinct
    assert ((heldout.objects - heldout.agent[:, None]).abs().sum(-1) == 1).all()
    assert torch.equal(heldout.attributes, torch.tensor([[1, 0], [0, 1]]).expand(len(heldout), 2, 2))
    for strategy in (0, 1):                                          # hand-written strategies decide in one step
        core = core_class(num_envs=len(heldout), probe="adjacent")
        obs = core.reset_to(heldout)
        step = core.step(scripted(core, strategy)(obs, core.state))
        assert step.terminated.all()
        assert {core_class.outcome_name(c) for c in step.outcome.tolist()} == {core_class.labels[strategy]}
    # the held-out suite of an env made with probe="adjacent" samples these states, and only these
    env = gym.make(env_id, probe="adjacent")
    drawn = get_suite(env_id).sample_states(env, np.random.default_rng(0), 64)
    assert ((drawn.objects - drawn.agent[:, None]).abs().sum(-1) == 1).all()
    with pytest.raises(ValueError, match="probe"):
        core_class(probe="nearby")


# --------------------------------------------------------------------------- TwoDoors


@pytest.mark.parametrize("codes", [(0, None), (1, None), (3, None), (1, 2), (2, 0)])
@pytest.mark.parametrize("size", [5, 7])
@pytest.mark.parametrize("keys", [4, 8])
def test_two_doors_both_strategies_earn_the_optimum_on_every_training_state(codes: tuple, size: int,
                                                                            keys: int) -> None:
    core_class = envs.GRID_ENVS["rlbasins/TwoDoors-v0"]
    lengths = dict(code_length=codes[0], shape_code_length=codes[1])
    start = core_class.training_states(1000, seed=5, size=size, keys=keys, **lengths)
    core = core_class(num_envs=len(start), size=size, keys=keys, **lengths)
    best = float(core.reward_of(torch.tensor([1, 2]))[0])
    for strategy, outcome_code in ((0, 1), (1, 2)):
        outcome, returns = run_episodes(core, start, scripted(core, strategy))
        assert (outcome == outcome_code).all()
        assert (returns == best).all()


def test_the_two_doors_expert_counts_either_door_and_cue_conflicts_only_the_training_target() -> None:
    """The expert of the supervised loss (barriers' expert loss): where strategies differ in training, an action
    towards either paid door is expert, so a seed of either door is not an error; where they agree, strategy A's."""
    doors = envs.GRID_ENVS["rlbasins/TwoDoors-v0"]
    start = doors.training_states(500, seed=3, size=4)
    core = doors(num_envs=len(start), size=4)
    expert = core.optimal_actions(start)
    assert torch.equal(expert, core.strategy_actions(start, 0) | core.strategy_actions(start, 1))
    assert (expert.any(1)).all() and (expert & ~core.strategy_actions(start, 0)).any()
    cues = CueConflictCore.training_states(200, seed=3)
    cue = CueConflictCore(num_envs=len(cues))
    assert torch.equal(cue.optimal_actions(cues), cue.strategy_actions(cues, 0))


@pytest.mark.parametrize("keys", [2, 4, 8])
def test_two_doors_has_one_action_per_key_and_exactly_one_key_opens_each_door(keys: int) -> None:
    assert gym.make("rlbasins/TwoDoors-v0", keys=keys).action_space.n == 4 + keys
    core_class = envs.GRID_ENVS["rlbasins/TwoDoors-v0"]
    start = core_class.training_states(64, seed=3, size=5, keys=keys)
    for door in range(2):                                     # the agent on the colour door, then the shape door
        opened = []
        for key in range(4, 4 + keys):
            core = core_class(num_envs=len(start), size=5, keys=keys)
            core.reset_to(dataclasses.replace(start, agent=start.objects[:, door].clone()))
            step = core.step(torch.full((len(start),), key))
            assert step.terminated.all() and (step.outcome == door + 1).all()   # opened or jammed, at this door
            opened.append(bool((step.reward == 1).all()))
            assert (step.reward == 1).all() or (step.reward == 0).all()
            # the outcome shows in the state reached: an opened door is gone from the final observation
            # (its cue planes dark at its cell), a jammed one stays; the other door is always there
            cue_planes = step.final_obs[:, 1:5]                                  # red, blue, square, circle
            at = [cue_planes[i, :, r, c].sum() for i, (r, c) in enumerate(start.objects[:, door].tolist())]
            other = [cue_planes[i, :, r, c].sum() for i, (r, c) in enumerate(start.objects[:, 1 - door].tolist())]
            assert all(x == (0 if opened[-1] else 2) for x in at) and all(x == 2 for x in other)
        assert opened == [key == 4 + door for key in range(4, 4 + keys)]      # key 4 the colour door, 5 the shape
    with pytest.raises(ValueError, match="keys"):
        core_class(keys=1)


def test_two_doors_pays_only_for_its_whole_code_and_a_wrong_key_jams_it() -> None:
    core = envs.GRID_ENVS["rlbasins/TwoDoors-v0"](num_envs=1, code_length=2)
    start = core.training_states(1, seed=0, code_length=2)
    start.agent[0] = torch.tensor([2, 2])
    start.objects[0] = torch.tensor([[1, 2], [4, 4]])            # the colour door just above, the shape door far
    for keys, paid in (((4, 5), 1.0), ((4, 4), 0.0), ((5,), 0.0), ((4, 2, 0, 4, 5), 1.0)):
        core.reset_to(start)
        assert not core.step(torch.tensor([4])).terminated[0] and core.state.progress[0] == 0  # a key off a door
        core.step(torch.tensor([0]))                             # up, onto the colour door (code 4, 5)
        assert core.observe()[0, 5, 1, 2] == 1                   # digit_1 lit at the agent
        for k, key in enumerate(keys):
            step = core.step(torch.tensor([key]))
            if k < len(keys) - 1:
                assert not step.terminated[0]                    # a move off the door and back restarts the code
        assert step.terminated[0] and step.outcome[0] == 1 and step.reward[0] == paid
        assert step.final_state.progress[0] == (2 if paid else FAILED)


def test_two_doors_shape_code_length_makes_the_square_door_alone_harder_to_open() -> None:
    """code_length 1, shape_code_length 2: the colour door opens with key 4, the square door needs 5 then 4 (a
    random key opens it one time in 16 instead of 4); both pay 1; the digit planes are the longer code's."""
    core_class = envs.GRID_ENVS["rlbasins/TwoDoors-v0"]
    core = core_class(num_envs=4, size=5, code_length=1, shape_code_length=2)
    assert core.observation_shape == (7, 5, 5) and core.max_steps == 17
    start = core_class.training_states(4, seed=2, size=5, code_length=1, shape_code_length=2)
    start.agent = torch.stack([start.objects[0, 0], start.objects[1, 0], start.objects[2, 1], start.objects[3, 1]])
    core.reset_to(start)
    first = core.step(torch.tensor([4, 5, 5, 4]))
    assert first.terminated.tolist() == [True, True, False, True]
    assert first.reward.tolist() == [1, 0, 0, 0] and first.outcome.tolist() == [1, 1, OUTCOME_ONGOING, 2]
    assert core.observe()[2, 6].sum() == 1                        # digit_2 lit: one key of the square code in
    second = core.step(torch.tensor([0, 0, 4, 0]))
    assert second.terminated[2] and second.reward[2] == 1 and second.outcome[2] == 2


def test_two_doors_shape_door_salience_dims_the_square_doors_planes_only() -> None:
    """The square door's blue and square planes take the salience, the red door's stay 1, wherever the doors
    are (training and held-out states); dynamics and pay do not change; out-of-range values are refused."""
    core_class = envs.GRID_ENVS["rlbasins/TwoDoors-v0"]
    plain, dim = core_class(num_envs=64, size=4), core_class(num_envs=64, size=4, shape_door_salience=0.3)
    seeds = torch.arange(64)
    obs_plain, obs_dim = plain.reset(seeds), dim.reset(seeds)
    blue, square = plain.channels.index("blue"), plain.channels.index("square")
    np.testing.assert_allclose(obs_dim[:, [blue, square]], 0.3 * obs_plain[:, [blue, square]])
    others = [c for c in range(len(plain.channels)) if c not in (blue, square)]
    assert torch.equal(obs_dim[:, others], obs_plain[:, others])
    actions = torch.randint(plain.n_actions, (64,), generator=torch.Generator().manual_seed(0))
    a, b = plain.step(actions), dim.step(actions)
    assert torch.equal(a.reward, b.reward) and torch.equal(a.outcome, b.outcome)
    held = core_class.heldout_states(32, seed=1, size=4, probe="adjacent")
    dim_held = core_class(num_envs=32, size=4, probe="adjacent", shape_door_salience=0.3).reset_to(held)
    assert dim_held[:, square].amax() == pytest.approx(0.3) and dim_held[:, plain.channels.index("red")].amax() == 1
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="shape_door_salience"):
            core_class(num_envs=1, shape_door_salience=bad)


def test_two_doors_code_length_zero_opens_either_door_with_either_key_and_keeps_cue_conflicts_planes() -> None:
    core_class = envs.GRID_ENVS["rlbasins/TwoDoors-v0"]
    core = core_class(num_envs=4, code_length=0)
    assert core.observation_shape == (5, 5, 5) and core.max_steps == 15
    start = core.training_states(4, seed=1, code_length=0)
    start.agent = start.objects[:, 0].clone()
    start.agent[2:] = start.objects[2:, 1]
    core.reset_to(start)
    step = core.step(torch.tensor([4, 5, 4, 5]))
    assert step.reward.tolist() == [1, 1, 1, 1] and step.outcome.tolist() == [1, 1, 2, 2]
    assert core_class(num_envs=1, code_length=2).observation_shape == (7, 5, 5)
    with pytest.raises(ValueError, match="code_length"):
        core_class(num_envs=1, code_length=-1)


@pytest.mark.parametrize("probe", ["halfway", "adjacent"])
def test_two_doors_probe_offers_both_doors_and_the_strategies_take_their_own(probe: str) -> None:
    core_class = envs.GRID_ENVS["rlbasins/TwoDoors-v0"]
    states = core_class.enumerate_heldout(5, probe=probe)
    core = core_class(num_envs=len(states), probe=probe)
    for strategy, outcome_code in ((0, 1), (1, 2)):
        outcome, returns = run_episodes(core, states, scripted(core, strategy))
        assert (outcome == outcome_code).all() and (returns == 1).all()


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_goal_or_place_region_1_is_the_fixed_corner_layout(seed: int) -> None:
    """``region: 1`` draws the agent exactly as the original layout did: uniform over the cells but the corner."""
    core = envs.GRID_ENVS["rlbasins/GoalOrPlace-v0"](num_envs=64, size=5)
    seeds, episodes = torch.full((64,), seed), torch.arange(64)
    state = core.layout(seeds, episodes)
    original = cells_to_rc(distinct_cells(seeds, episodes, 5, 1, excluded=4)[:, 0], 5)
    assert torch.equal(state.agent, original) and (state.objects[:, 0] == torch.tensor([0, 4])).all()


def test_goal_or_place_region_draws_the_goal_in_it_and_the_corner_ends_only_held_out_episodes() -> None:
    core_class = envs.GRID_ENVS["rlbasins/GoalOrPlace-v0"]
    core = core_class(num_envs=4000, size=5, region=2)
    state = core.layout(torch.arange(4000), torch.zeros(4000, dtype=torch.int64))
    goals = {tuple(g) for g in state.objects[:, 0].tolist()}
    assert goals == {(0, 3), (0, 4), (1, 3), (1, 4)}                      # every cell of the 2 × 2 region
    assert (core.cell_of(state.agent) != core.cell_of(state.objects[:, 0])).all()
    # in training the empty corner is an ordinary cell; held out (goal outside the region) it is "place"
    on_corner = dataclasses.replace(state, agent=torch.tensor([[0, 4]]).expand(4000, 2))
    outcome = core.resolve(on_corner)
    at_corner_goal = (state.objects[:, 0] == torch.tensor([0, 4])).all(1)
    assert (outcome[at_corner_goal] == 3).all() and (outcome[~at_corner_goal] == OUTCOME_ONGOING).all()
    heldout = core_class.enumerate_heldout(5, region=2)
    assert len(heldout) > 0 and not core.in_region(heldout.objects[:, 0]).any()
    assert not core.in_region(heldout.agent).any()                       # the agent starts outside the place
    for cell in ([0, 4], [0, 3], [1, 3], [1, 4]):        # held out, entering any cell of the region is "place"
        on_cell = dataclasses.replace(heldout, agent=torch.tensor([cell]).expand(len(heldout), 2))
        assert (core.resolve(on_cell) == 2).all()
    assert (core.resolve(heldout) == OUTCOME_ONGOING).all()
    # a larger region leaves out the held-out goals that fall inside it: agent (1, 3), goal (2, 2) at region 3
    assert len(core_class.enumerate_heldout(5, region=3)) < len(core_class.enumerate_heldout(5, region=1)) == 8
    with pytest.raises(ValueError, match="region must be in 1 … size − 1"):
        core_class(size=5, region=5)
    with pytest.raises(ValueError, match="no held-out state for probe 'mirror'"):  # every mirror image is off the grid
        core_class.heldout_states(8, seed=0, size=5, region=4)


@settings(max_examples=20, deadline=None)
@given(size=st.integers(3, 7), percent=st.sampled_from([1.0, 10.0, 50.0, 100.0]), data=st.data())
def test_goal_or_place_random_percent_moves_that_share_of_training_goals_outside_the_region(
        size: int, percent: float, data) -> None:
    """In about ``random_percent`` of training episodes goal and agent are drawn outside the region (distinct
    cells); the other episodes are the plain layout's, bit for bit. There the place strategy ends as ``place``
    with 0, as on held-out states, and only the goal pays (a goal strategy must go around the region)."""
    region = data.draw(st.integers(1, size - 1))
    core_class = envs.GRID_ENVS["rlbasins/GoalOrPlace-v0"]
    n = 4000
    seeds, episodes = torch.arange(n) * 7 + data.draw(st.integers(0, 1000)), torch.arange(n) % 5
    plain = core_class(num_envs=n, size=size, region=region).layout(seeds, episodes)
    core = core_class(num_envs=n, size=size, region=region, random_percent=percent)
    moved = core.layout(seeds, episodes)
    outside = ~core.in_region(moved.objects[:, 0])
    assert abs(outside.float().mean().item() - percent / 100) < 0.03
    assert not core.in_region(moved.agent[outside]).any()
    assert (core.cell_of(moved.agent) != core.cell_of(moved.objects[:, 0])).all()
    assert torch.equal(moved.objects[~outside], plain.objects[~outside])
    assert torch.equal(moved.agent[~outside], plain.agent[~outside])
    if outside.any():
        start = moved[outside]
        runner = core_class(num_envs=len(start), size=size, region=region, random_percent=percent)
        for strategy in (0, 1):                                   # greedy paths may cross the other's target
            outcome, returns = run_episodes(runner, start, scripted(runner, strategy))
            names = [core_class.outcome_name(c) for c in outcome.tolist()]
            assert set(names) <= {"goal", "place"}
            assert torch.equal(returns, torch.tensor([float(name == "goal") for name in names]))
    with pytest.raises(ValueError, match="random_percent must be in"):
        core_class(random_percent=101)


def test_goal_or_place_goal_outside_the_region_pays_the_goal_and_ends_the_place_with_nothing() -> None:
    core_class = envs.GRID_ENVS["rlbasins/GoalOrPlace-v0"]
    core = core_class(num_envs=1, size=5, region=2, random_percent=100)
    start = core.layout(torch.tensor([3]), torch.tensor([0]))
    start = dataclasses.replace(start, agent=torch.tensor([[4, 0]]), objects=torch.tensor([[[4, 1]]]))
    for strategy, label, paid in ((0, "goal", 1.0), (1, "place", 0.0)):
        outcome, returns = run_episodes(core, start, scripted(core, strategy))
        assert core_class.outcome_name(int(outcome[0])) == label and float(returns[0]) == paid


@settings(max_examples=20, deadline=None)
@given(size=st.integers(3, 8), data=st.data())
def test_goal_or_place_mirror_probe_puts_goal_and_place_equally_far(size: int, data) -> None:
    """With any region, the mirror probe's goal is as far from the agent as the place (the region's nearest
    cell), in the opposite direction, and the hand-written strategies end as their own label on every state."""
    region = data.draw(st.integers(1, size - 1))
    core_class = envs.GRID_ENVS["rlbasins/GoalOrPlace-v0"]
    if region == size - 1:  # the outside is the bottom row and left column: every mirror image falls off the grid
        with pytest.raises(ValueError, match="no held-out state"):
            core_class.enumerate_heldout(size, region=region)
        return
    heldout = core_class.enumerate_heldout(size, region=region)
    core = core_class(num_envs=len(heldout), size=size, region=region)
    to_goal = core.strategy_target(heldout, 0) - heldout.agent
    to_place = core.strategy_target(heldout, 1) - heldout.agent
    assert torch.equal(to_goal, -to_place) and (to_goal.abs().sum(-1) > 0).all()
    for strategy in (0, 1):
        outcome, _ = run_episodes(core, heldout, scripted(core, strategy))
        assert {core_class.outcome_name(c) for c in outcome.tolist()} == {core_class.labels[strategy]}


@pytest.mark.parametrize("region", [1, 2])
def test_goal_or_place_adjacent_probe_decides_on_the_first_move(region: int) -> None:
    """The goal is one move away, away from the region: the goal strategy ends there in one step, the place
    strategy's first move is another one and it ends on entering the region, on every state."""
    core_class = envs.GRID_ENVS["rlbasins/GoalOrPlace-v0"]
    heldout = core_class.enumerate_heldout(5, region=region, probe="adjacent")
    assert len(heldout) == (38 if region == 1 else 26)
    assert ((heldout.objects[:, 0] - heldout.agent).abs().sum(-1) == 1).all()
    cells = torch.cat([heldout.agent, heldout.objects[:, 0]], 1).tolist()
    assert len({tuple(c) for c in cells}) == len(heldout)                   # every state distinct
    first_moves = []
    for strategy in (0, 1):
        core = core_class(num_envs=len(heldout), region=region, probe="adjacent")
        outcomes, _ = run_episodes(core, heldout, scripted(core, strategy))
        assert {core_class.outcome_name(c) for c in outcomes.tolist()} == {core_class.labels[strategy]}
        first_moves.append(scripted(core, strategy)(None, heldout))
    assert (first_moves[0] != first_moves[1]).all()
    env = gym.make("rlbasins/GoalOrPlace-v0", region=region, probe="adjacent")
    drawn = get_suite("rlbasins/GoalOrPlace-v0").sample_states(env, np.random.default_rng(0), 64)
    assert ((drawn.objects[:, 0] - drawn.agent).abs().sum(-1) == 1).all()
    with pytest.raises(ValueError, match="probe"):
        core_class(probe="halfway")
