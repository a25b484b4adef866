"""Episodes of many policies at once: every analysis that plays policies goes through here.

``P`` policies of one architecture (trained seeds, checkpoints, or points on an interpolation
path — to this module they are all just rows of stacked parameters) each play the same ``E``
episodes, in lockstep:

- on an env with a batched torch core (the gridworlds of :mod:`envs`, CartPole-v1), ``P·E``
  environments of the core step as tensors and the policies run as one batched model
  (:class:`rlbasins.train.batched.StackedPolicy`);
- on any other gymnasium env, ``P·E`` gymnasium environments step in a Python loop, and the
  policies are still evaluated in one batched call per step.

Sampled actions use common random numbers: the uniform draw for episode ``e`` at step ``t``
is the same for every policy, so a policy's episodes do not depend on which other policies
share the batch, and differences between policies are not blurred by sampling noise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import envs
from envs.grid import OUTCOME_ONGOING, OUTCOME_TIMEOUT, GridState, draws
from envs.suites import HeldOutSuite
from rlbasins.core.policy import ActorCritic, StackedPolicy, take_rows

MAX_ENVS_PER_CHUNK = 65_536
"""Policies are played in chunks of at most this many environments (bounds memory, ~32 MB of
gridworld observations per chunk)."""


@dataclass
class EpisodeBatch:
    """One episode per (policy, start): returns [P, E] (undiscounted env reward) and outcome names
    [P, E] (``info["outcome"]`` / the core's outcome name at the episode's end, None when the env
    names none)."""

    returns: np.ndarray
    outcomes: np.ndarray

    def __getitem__(self, rows) -> EpisodeBatch:
        return EpisodeBatch(self.returns[rows], self.outcomes[rows])


def stack_state_dicts(state_dicts: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """[P] exchange-format state dicts → {name: [P, ...]}."""
    return {name: torch.stack([sd[name] for sd in state_dicts]) for name in state_dicts[0]}


@torch.no_grad()
def action_probs(template: ActorCritic, params: dict[str, torch.Tensor], obs: torch.Tensor) -> torch.Tensor:
    """Action probabilities of P stacked policies on the same observations: obs [N, ...] → [P, N, A]."""
    count = len(next(iter(params.values())))
    return StackedPolicy.from_params(template, params).logits(obs.float().expand(count, *obs.shape)).softmax(-1)


def choose_actions(probs: torch.Tensor, greedy: bool, uniforms: torch.Tensor | None) -> torch.Tensor:
    """probs [P, E, A] → actions [P, E]: the argmax, or inverse-CDF sampling with uniforms [E]."""
    if greedy:
        return probs.argmax(-1)
    cdf = probs.cumsum(-1)
    actions = (cdf < uniforms.to(cdf.dtype)[None, :, None]).sum(-1)
    return actions.clamp_(max=probs.shape[-1] - 1)  # guards against a cdf that sums to 1 − ε


def step_uniforms(reset_seeds: torch.Tensor, action_seed: int, t: int) -> torch.Tensor:
    """[E] uniforms in (0, 1) for step ``t`` of every episode, shared by all policies."""
    keys = draws(reset_seeds ^ (action_seed & 0xFFFFFFFF), torch.full_like(reset_seeds, t), 1)[:, 0]
    return (keys.double() + 0.5) / 2**32


@torch.no_grad()
def play(template: ActorCritic, params: dict[str, torch.Tensor], env_id: str, env_kwargs: dict[str, Any],
         reset_seeds: Sequence[int], starts: Any | None = None, suite: HeldOutSuite | None = None,
         greedy: bool = True, action_seed: int = 0, device: torch.device | str = "cpu",
         on_chunk: Callable[[int], None] | None = None) -> EpisodeBatch:
    """Every policy plays one episode per reset seed (E of them), from the training start
    distribution or — with ``starts`` (E held-out states) and their ``suite`` — from the held-out
    states. ``params`` holds P stacked policies; ``on_chunk(n_policies)`` reports progress."""
    count = len(next(iter(params.values())))
    per_chunk = max(1, MAX_ENVS_PER_CHUNK // len(reset_seeds))
    parts = []
    for first in range(0, count, per_chunk):
        chunk = {name: value[first:first + per_chunk].to(device) for name, value in params.items()}
        policy = StackedPolicy.from_params(template, chunk)
        core_class = _core_for(env_id, env_kwargs)
        if core_class is not None:
            parts.append(_play_core(policy, core_class, env_kwargs, reset_seeds, starts, greedy, action_seed,
                                    torch.device(device)))
        else:
            parts.append(_play_gym(policy, env_id, env_kwargs, reset_seeds, starts, suite, greedy, action_seed))
        if on_chunk is not None:
            on_chunk(len(next(iter(chunk.values()))))
    return EpisodeBatch(np.concatenate([p.returns for p in parts]), np.concatenate([p.outcomes for p in parts]))


def _core_for(env_id: str, env_kwargs: dict[str, Any]) -> type | None:
    """The batched core that can play these episodes, or None (then gymnasium environments do).

    Every core starts from held-out states too (``reset_to``); CartPole's core reproduces default
    CartPole-v1 only (no kwargs)."""
    if env_id in envs.GRID_ENVS:
        return envs.GRID_ENVS[env_id]
    if env_id in envs.BATCHED_CORES and not env_kwargs:
        return envs.BATCHED_CORES[env_id]
    return None


def _play_core(policy: StackedPolicy, core_class: type, env_kwargs: dict[str, Any],
               reset_seeds: Sequence[int], starts: GridState | None, greedy: bool, action_seed: int,
               device: torch.device, stop_cycles: bool = True) -> EpisodeBatch:
    """Episodes on a batched core. Whenever a quarter or more of the policies in the batch have ended all
    their episodes, they leave it (the core keeps the others' envs, the policy their rows): a policy's
    episodes are the same either way, since a row never depends on the other rows.

    Greedy episodes on a core with a :meth:`~envs.grid.GridCore.recurrence_key` end as soon as they come back
    to a state they were in (with ``stop_cycles``): the policy and the env are deterministic, so the episode
    would go round that cycle until the step limit; it is recorded as that timeout, with the same return
    when neither a step that does not end an episode nor a timeout pays anything (checked on the start
    states, else cycles are played out). On a core with :meth:`~envs.grid.GridCore.observation_entries` an MLP
    reads each observation as its few nonzero entries (:meth:`StackedPolicy.logits_of_entries`) and the
    planes are never built."""
    count, n_episodes = len(next(iter(policy.params.values()))), len(reset_seeds)
    core = core_class(num_envs=count * n_episodes, device=device, **env_kwargs)
    seeds = torch.as_tensor(list(reset_seeds), dtype=torch.int64, device=device)
    if starts is None:
        obs = core.reset(seeds.repeat(count))
    else:
        starts = starts.to(device) if isinstance(starts, GridState) else torch.as_tensor(np.asarray(starts),
                                                                                          device=device)
        obs = core.reset_to(starts[torch.arange(count * n_episodes, device=device) % n_episodes])
    done = torch.zeros(count * n_episodes, dtype=torch.bool, device=device)          # [P·E], every episode
    outcome = torch.full((count * n_episodes,), OUTCOME_ONGOING, dtype=torch.int64, device=device)
    returns = torch.zeros(count * n_episodes, device=device)
    rows = torch.arange(count * n_episodes, device=device)                            # [P'·E] the core's envs
    playing = count                                                                   # P' policies in the batch
    if stop_cycles and greedy and _cycles_pay_nothing(core):
        seen = torch.empty(count * n_episodes, core.max_steps + 1, dtype=torch.int64, device=device)  # keys
        seen[:, 0] = core.recurrence_key(core.state)
    else:
        seen = None
    entries = policy.reads_entries and getattr(core, "observation_entries", lambda: None)() is not None
    for t in range(core.max_steps):
        if entries:   # observations as their few nonzero entries: the first layer sums weight columns
            index, values = core.observation_entries()
            logits = policy.logits_of_entries(index.view(playing, n_episodes, -1), values.view(playing, n_episodes, -1))
        else:
            logits = policy.logits(obs.view(playing, n_episodes, -1))
        probs = logits.softmax(-1)                                                     # [P', E, A]
        actions = choose_actions(probs, greedy, None if greedy else step_uniforms(seeds, action_seed, t))
        step = core.step(actions.reshape(-1), observe=False) if entries else core.step(actions.reshape(-1))
        before = done[rows]
        returns[rows] += torch.where(before, torch.zeros_like(step.reward), step.reward)
        ended, step_outcome = ~before & (step.terminated | step.truncated), step.outcome
        if seen is not None:
            key = core.recurrence_key(step.final_state)                                # [P'·E]
            cycled = ~before & ~ended & (seen[rows, :t + 1] == key[:, None]).any(1)
            seen[rows, t + 1] = key
            ended = ended | cycled
            step_outcome = torch.where(cycled, OUTCOME_TIMEOUT, step_outcome)
        outcome[rows] = torch.where(ended, step_outcome, outcome[rows])
        finished = (before | ended).view(playing, n_episodes).all(1)                  # [P']
        done[rows] = before | ended
        obs = step.obs
        n_finished = int(finished.sum())
        if n_finished == playing:
            break
        if 4 * n_finished >= playing:
            keep = (~finished).nonzero().squeeze(1)                                    # [P'']
            envs_kept = (keep[:, None] * n_episodes + torch.arange(n_episodes, device=device)).reshape(-1)
            rows, obs, playing = rows[envs_kept], None if obs is None else obs[envs_kept], len(keep)
            policy = StackedPolicy.from_params(policy.template,
                                               {k: take_rows(v, keep) for k, v in policy.params.items()})
            kept_state = {name: value[envs_kept] for name, value in core.state_dict().items()}
            core = core_class(num_envs=len(envs_kept), device=device, **env_kwargs)
            core.load_state_dict(kept_state)
    outcome = outcome.view(count, n_episodes).cpu().numpy()
    if hasattr(core_class, "outcome_name"):
        names = np.array([core_class.outcome_name(c) for c in range(-1, 5)], dtype=object)[outcome + 1]
    else:
        names = np.full(outcome.shape, None, dtype=object)
    return EpisodeBatch(returns.view(count, n_episodes).cpu().double().numpy(), names)


def _cycles_pay_nothing(core: Any) -> bool:
    """Whether a core's episodes may be cut at a cycle (:func:`_play_core`): it has a ``recurrence_key``, and on
    its current states a step that does not end the episode and a timeout both pay 0."""
    if not hasattr(core, "recurrence_key"):
        return False
    state = core.state
    return all(not core.reward_of(torch.full_like(state.steps, code), state).any()
               for code in (OUTCOME_ONGOING, OUTCOME_TIMEOUT))


def _play_gym(policy: StackedPolicy, env_id: str, env_kwargs: dict[str, Any], reset_seeds: Sequence[int],
              starts: Sequence | None, suite: HeldOutSuite | None, greedy: bool, action_seed: int) -> EpisodeBatch:
    count, n_episodes = len(next(iter(policy.params.values()))), len(reset_seeds)
    device = next(iter(policy.params.values())).device
    environments = [gym.make(env_id, **env_kwargs) for _ in range(count * n_episodes)]
    first = []
    for i, env in enumerate(environments):
        obs, _ = env.reset(seed=int(reset_seeds[i % n_episodes]))
        first.append(obs if starts is None else suite.start_from(env, starts[i % n_episodes]))
    obs = np.stack(first).astype(np.float32)
    returns = np.zeros(count * n_episodes)
    outcomes = np.full(count * n_episodes, None, dtype=object)
    active = np.ones(count * n_episodes, dtype=bool)
    seeds = torch.as_tensor(list(reset_seeds), dtype=torch.int64)
    t = 0
    while active.any():
        probs = policy.logits(torch.as_tensor(obs, device=device).view(count, n_episodes, -1)).softmax(-1)
        actions = choose_actions(probs, greedy, None if greedy else step_uniforms(seeds, action_seed, t).to(device))
        actions = actions.reshape(-1).cpu().numpy()
        for i in np.flatnonzero(active):
            next_obs, reward, terminated, truncated, info = environments[i].step(int(actions[i]))
            returns[i] += reward
            obs[i] = next_obs
            if terminated or truncated:
                active[i] = False
                outcomes[i] = info.get("outcome")
        t += 1
    for env in environments:
        env.close()
    return EpisodeBatch(returns.reshape(count, n_episodes), outcomes.reshape(count, n_episodes))
