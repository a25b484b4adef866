"""The ``batched`` engine: N PPO seeds in lockstep in one process, on CPU or CUDA.

Every seed is an independent PPO run with SB3's semantics and hyper-parameter names; the
engine only makes them share tensor operations:

- policies: N single-seed :class:`~rlbasins.core.policy.ActorCritic` modules, their parameters
  stacked along a leading seed axis and evaluated with ``vmap(functional_call)``;
- environments: batched torch cores (the gridworlds, CartPole-v1) step all seeds' envs as one
  batch ([S·E] envs); other gymnasium envs fall back to a ``SyncVectorEnv``;
- randomness: counter-based hashes keyed by each seed's factor seeds (see
  :mod:`rlbasins.core.seeding`) — action sampling by (action seed, step, env), minibatch order by
  (minibatch seed, iteration, epoch), env resets by (env seed, env) — so no seed's stream
  depends on the others or on N, and resuming needs no generator state, only counters;
- updates: per-seed losses are summed (so gradients never mix), gradient norms are clipped
  per seed, Adam is applied per seed with its own step count, and target-KL early stopping
  and NaN freezing mask individual seeds;
- populations (``population``): the one exception to independence, on purpose: a DvD diversity bonus over
  each population's behaviour on noise inputs joins the summed loss (:mod:`rlbasins.train.population`);
- env variants (``env.planted``, or a grid over env kwargs): every seed steps its own variant's envs, the
  variants side by side in one batch (:class:`BatchedEnv`); a seed's result is the same as without the others.

Shapes: S seeds, E envs per seed, T = n_steps, N = T·E samples per seed per iteration,
M = batch_size, D = flattened observation size, A = number of actions.
"""

from __future__ import annotations

import inspect
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch

import envs
from envs.grid import draws
from rlbasins.core.config import ExperimentConfig, SeedsConfig
from rlbasins.core.devices import resolve_device
from rlbasins.core.logs import EPISODE_LENGTH_TAG, RETURN_TAG, TRUE_RETURN_TAG, SeedScalarLogger
from rlbasins.core.policy import ActorCritic, StackedPolicy
from rlbasins.core.store import RunDir
from rlbasins.train.base import ProgressCallback, SeedOutcome, SeedTask, policy_metadata, stop_step
from rlbasins.train.initial import initial_state_dict
from rlbasins.train.learned_reward import learned_reward
from rlbasins.train.population import PopulationBonus
from rlbasins.train.resume import decode, encode, restore_env, snapshot_env

if TYPE_CHECKING:
    from rlbasins.train.monitor import HeldoutMonitor

ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-5  # SB3's PPO optimizer (torch Adam with eps 1e-5)


def _seed_column(tasks: list[SeedTask], factor: str, device: torch.device) -> torch.Tensor:
    return torch.tensor([task.seeds.as_dict()[factor] for task in tasks], dtype=torch.int64, device=device)


def uniform(seeds: torch.Tensor, counter: int, count: int) -> torch.Tensor:
    """[S] seeds → [S, count] uniforms in (0, 1), a fresh draw for every value of ``counter``."""
    keys = draws(seeds, torch.full_like(seeds, counter), count)
    return (keys.double() + 0.5) / 2**32


# --------------------------------------------------------------------------- environments


class _EnvGroup:
    """The envs of the seeds that share one set of env kwargs: a batched torch core, or a ``SyncVectorEnv``."""

    def __init__(self, cfg: ExperimentConfig, env_kwargs: dict[str, Any], row_seeds: torch.Tensor,
                 device: torch.device, sync_free: bool, row_kwargs: dict[str, torch.Tensor] | None = None):
        self.device, self.kwargs = device, env_kwargs
        # CartPole's core reproduces the default CartPole-v1 only; with kwargs it goes through gymnasium
        core_class = envs.BATCHED_CORES.get(cfg.env.id) if cfg.env.id in envs.GRID_ENVS or not env_kwargs \
            else None
        if core_class is not None:   # row_kwargs: one value per row [n] of the core's ``row_kwargs``
            self.core = core_class(num_envs=len(row_seeds), device=device, **env_kwargs, **(row_kwargs or {}))
            self.core.sync_free = sync_free
            self.vector = None
            self.first_obs = self.core.reset(row_seeds.to(device))
            self.observation_space, self.n_actions = self.core.observation_space, int(self.core.n_actions)
        else:  # generic gymnasium env: a synchronous vector env, SAME_STEP autoreset like SB3
            self.core = None
            self.vector = gym.vector.SyncVectorEnv(
                [lambda: gym.make(cfg.env.id, **env_kwargs)] * len(row_seeds),
                autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
            obs, _ = self.vector.reset(seed=row_seeds.tolist())
            self.first_obs = torch.as_tensor(obs, dtype=torch.float32, device=device)
            self.observation_space = self.vector.single_observation_space
            self.n_actions = int(self.vector.single_action_space.n)

    def step(self, actions: torch.Tensor):
        """actions [n] → (obs, reward, terminated, truncated, final), ``final()`` building the observations
        before any autoreset [n, ...] only when asked for."""
        if self.core is not None:
            step = self.core.step(actions, autoreset=True)
            return step.obs, step.reward, step.terminated, step.truncated, lambda: step.final_obs
        obs, reward, terminated, truncated, infos = self.vector.step(actions.cpu().numpy())

        def final() -> torch.Tensor:
            last = obs.copy()
            for i in np.flatnonzero(infos.get("_final_obs", np.zeros(len(obs), bool))):
                last[i] = infos["final_obs"][i]
            return torch.as_tensor(last, dtype=torch.float32, device=self.device)

        def tensor(x, dtype):
            return torch.as_tensor(np.asarray(x), dtype=dtype, device=self.device)

        return (tensor(obs, torch.float32), tensor(reward, torch.float32), tensor(terminated, torch.bool),
                tensor(truncated, torch.bool), final)

    def state(self, rows: slice) -> tuple[dict[str, torch.Tensor], Any]:
        """The state of envs ``rows`` (of this group) as (tensors, JSON)."""
        if self.core is not None:
            return {f"env.{k}": v[rows] for k, v in self.core.state_dict().items()}, None
        return {}, [snapshot_env(env) for env in self.vector.envs[rows]]

    def restore(self, rows: slice, tensors: dict[str, torch.Tensor], meta: Any) -> None:
        if self.core is not None:
            state = {name: value.clone() for name, value in self.core.state_dict().items()}  # some are views
            for name, value in state.items():
                value[rows] = tensors[f"env.{name}"].to(value.device)
            self.core.load_state_dict(state)
        else:
            for env, snapshot in zip(self.vector.envs[rows], meta, strict=True):
                restore_env(env, snapshot)


class BatchedEnv:
    """S·E environments of one id, stepped together; observations as float32 tensors [S·E, ...].

    Seed ``s`` owns rows s·E … (s+1)·E − 1 and runs on ``env_kwargs[s]``: the seeds that share kwargs share one
    batched core (a group), and a step steps every group on its rows. A seed's envs are the same whichever
    others step beside them (every env's randomness is its own), so seeds of env variants (a grid over env
    kwargs, ``env.planted``) train in one lockstep batch. The groups must agree on the observation shape.
    """

    def __init__(self, cfg: ExperimentConfig, env_kwargs: list[dict[str, Any]], env_seeds: torch.Tensor,
                 device: torch.device, sync_free: bool = False):
        self.num_seeds, self.per_seed = len(env_seeds), cfg.env.num_envs
        if len(env_kwargs) != self.num_seeds:
            raise ValueError(f"{len(env_kwargs)} env kwargs for {self.num_seeds} seeds")
        self.sync_free = sync_free
        row_seeds = draws(env_seeds.cpu(), torch.zeros_like(env_seeds.cpu()), self.per_seed).reshape(-1)  # [S·E]
        # kwargs a core takes per row (GridCore.row_kwargs) do not split seeds into groups
        core_class = envs.GRID_ENVS.get(cfg.env.id)
        per_row = getattr(core_class, "row_kwargs", ())
        shared = [{k: v for k, v in kwargs.items() if k not in per_row} for kwargs in env_kwargs]
        variants = [dict(kwargs) for kwargs in {repr(sorted(k.items())): k for k in shared}.values()]
        self.groups: list[tuple[torch.Tensor, _EnvGroup]] = []          # (its rows [n] of the S·E, its envs)
        self._where: dict[int, tuple[int, int]] = {}                     # seed → (group, its place in the group)
        for g, kwargs in enumerate(variants):
            members = [s for s in range(self.num_seeds) if shared[s] == kwargs]
            self._where.update({s: (g, j) for j, s in enumerate(members)})
            rows = torch.tensor([s * self.per_seed + e for s in members for e in range(self.per_seed)])
            kwargs, by_row = self._row_values(core_class, per_row, kwargs, [env_kwargs[s] for s in members])
            self.groups.append((rows.to(device), _EnvGroup(cfg, kwargs, row_seeds[rows], device, sync_free, by_row)))
        shapes = {(tuple(group.first_obs.shape[1:]), group.n_actions) for _, group in self.groups}
        if len(shapes) > 1:
            raise ValueError("env variants trained in one batch must share the observation shape and the number "
                             f"of actions, got {sorted(shapes)}")
        self.first_obs = self._merge([group.first_obs for _, group in self.groups])
        # seed 0's (its group is the first): one env's observation space and action count
        self.observation_space, self.n_actions = self.groups[0][1].observation_space, self.groups[0][1].n_actions

    def _row_values(self, core_class: type | None, per_row: tuple[str, ...], kwargs: dict[str, Any],
                    members: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """A group's kwargs: a per-row kwarg that all ``members`` (their env kwargs) share is passed as it is (the
        core then is the one a lone seed gets); one that differs, as one value per row [n·E] (the core's default
        where a member does not set it)."""
        kwargs, by_row = dict(kwargs), {}
        for name in per_row:
            default = inspect.signature(core_class).parameters[name].default
            values = [member.get(name, default) for member in members]
            if len(set(values)) > 1:
                by_row[name] = torch.tensor(values, dtype=torch.float64).repeat_interleave(self.per_seed)
            elif any(name in member for member in members):
                kwargs[name] = values[0]
        return kwargs, by_row

    def _merge(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """Each group's rows [n_g, ...] → all rows [S·E, ...] in seed order."""
        if len(parts) == 1:
            return parts[0]
        out = parts[0].new_empty(self.num_seeds * self.per_seed, *parts[0].shape[1:])
        for (rows, _), part in zip(self.groups, parts, strict=True):
            out[rows] = part
        return out

    def step(self, actions: torch.Tensor, with_final: bool = False):
        """actions [S·E] → (obs, reward, terminated, truncated, final_obs or None) with autoreset.

        ``final_obs`` [S·E, ...] is every env's observation before any autoreset (the last one of
        each ended episode), needed to bootstrap truncated episodes and by a learned reward; it is
        ``None`` when no episode was truncated, unless ``with_final`` or ``sync_free`` (then finding
        out would wait for the device).
        """
        if len(self.groups) == 1:
            steps = [self.groups[0][1].step(actions)]
        else:
            steps = [group.step(actions[rows]) for rows, group in self.groups]
        obs, reward, terminated, truncated = (self._merge([step[i] for step in steps]) for i in range(4))
        needed = with_final or self.sync_free or bool(truncated.any())
        final = self._merge([step[4]() for step in steps]) if needed else None
        return obs, reward, terminated, truncated, final

    def seed_state(self, s: int) -> tuple[dict[str, torch.Tensor], Any]:
        """The state of seed ``s``'s E envs as (tensors, JSON)."""
        g, j = self._where[s]
        return self.groups[g][1].state(slice(j * self.per_seed, (j + 1) * self.per_seed))

    def restore_seed_state(self, s: int, tensors: dict[str, torch.Tensor], meta: Any) -> None:
        g, j = self._where[s]
        self.groups[g][1].restore(slice(j * self.per_seed, (j + 1) * self.per_seed), tensors, meta)


# --------------------------------------------------------------------------- policies


class SeedwiseAdam:
    """Adam over stacked parameters with a step count per seed, so masked seeds stay untouched.

    With ``sync_free`` False (the CPU) a step first asks whether every seed is active, and if so updates the
    moments and weights in place, skipping the masks: the same bits, about half the memory passes."""

    def __init__(self, params: dict[str, torch.Tensor], sync_free: bool = False):
        self.params, self.sync_free = params, sync_free
        first = next(iter(params.values()))
        self.step_count = torch.zeros(first.shape[0], device=first.device)
        self.m = {n: torch.zeros_like(p) for n, p in params.items()}
        self.v = {n: torch.zeros_like(p) for n, p in params.items()}

    @torch.no_grad()
    def step(self, lr: torch.Tensor, active: torch.Tensor) -> None:
        """One update of the seeds where ``active`` [S] is set, each at its learning rate ``lr`` [S] (same
        formula as ``torch.optim.Adam``)."""
        beta1, beta2 = ADAM_BETAS
        self.step_count += active.float()
        bias1 = 1 - beta1 ** self.step_count.clamp(min=1)                      # [S]
        bias2 = 1 - beta2 ** self.step_count.clamp(min=1)
        # lr / bias1 as PyTorch computes a Python float over a tensor (reciprocal, then multiply): a seed's
        # update has the same bits whether its learning rate is one float for all seeds or its own entry
        step_size = bias1.reciprocal() * lr                                    # [S]
        if not self.sync_free and bool(active.all()):
            self._step_all(step_size, bias2)
            return
        for name, param in self.params.items():
            shape = (-1,) + (1,) * (param.dim() - 1)
            mask = active.view(shape)
            grad = param.grad
            m = torch.where(mask, beta1 * self.m[name] + (1 - beta1) * grad, self.m[name])
            v = torch.where(mask, beta2 * self.v[name] + (1 - beta2) * grad * grad, self.v[name])
            denom = v.sqrt() / bias2.sqrt().view(shape) + ADAM_EPS            # torch.optim.Adam's order
            param.copy_(torch.where(mask, param - step_size.view(shape) * m / denom, param))
            self.m[name], self.v[name] = m, v

    def _step_all(self, step_size: torch.Tensor, bias2: torch.Tensor) -> None:
        """:meth:`step` when every seed is active: the same operations in the same order, in place."""
        beta1, beta2 = ADAM_BETAS
        for name, param in self.params.items():
            shape = (-1,) + (1,) * (param.dim() - 1)
            grad = param.grad
            m = self.m[name].mul_(beta1).add_((1 - beta1) * grad)
            v = self.v[name].mul_(beta2).add_((1 - beta2) * grad * grad)
            denom = v.sqrt().div_(bias2.sqrt().view(shape)).add_(ADAM_EPS)
            param.sub_((step_size.view(shape) * m).div_(denom))

    def seed_state(self, s: int) -> dict[str, torch.Tensor]:
        state = {f"adam.m.{n}": t[s].cpu().clone() for n, t in self.m.items()}    # copies: steps update in place
        state.update({f"adam.v.{n}": t[s].cpu().clone() for n, t in self.v.items()})
        state["adam.step"] = self.step_count[s:s + 1].cpu().clone()
        return state

    def restore_seed_state(self, s: int, tensors: dict[str, torch.Tensor]) -> None:
        for n in self.m:
            self.m[n][s] = tensors[f"adam.m.{n}"]
            self.v[n][s] = tensors[f"adam.v.{n}"]
        self.step_count[s] = tensors["adam.step"][0]


def clip_grad_norm_per_seed(params: dict[str, torch.Tensor], max_norm: float | torch.Tensor) -> torch.Tensor:
    """Scale each seed's gradient to norm ≤ ``max_norm`` (a float, or [S] float32: one per seed;
    ``clip_grad_norm_`` per seed); returns norms [S]."""
    norms = torch.sqrt(sum(p.grad.pow(2).flatten(1).sum(1) for p in params.values()))
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for p in params.values():
        p.grad.mul_(scale.view((-1,) + (1,) * (p.dim() - 1)))
    return norms


# --------------------------------------------------------------------------- training


LEARNED_REWARD_ROWS = 1024
"""Transitions a learned reward model scores per call: TwoDoors' 3-member CNN ensemble took 0.10 s for a rollout's
32,768 in calls of 1,024, 0.12–0.20 s in calls of 256 (one step of 32 seeds) and 0.17 s in one call (2 CPU cores)."""


SEEDWISE = ("learning_rate", "clip_range", "clip_range_vf", "ent_coef", "vf_coef", "gamma", "gae_lambda",
            "max_grad_norm", "target_kl")
"""The PPO settings that may differ between seeds trained in lockstep (:class:`SeedSettings`): everything that
does not change a tensor's shape. ``lr_schedule`` and ``clip_range_schedule`` may differ too."""


@dataclass
class SeedSettings:
    """Every seed's PPO settings as float64 columns [S, 1] (None on a seed: NaN), so that seeds with different
    settings train in one lockstep batch (a grid of settings, PureJaxRL-style). A value is computed in float64,
    as Python computes a config's float, and cast to the tensors' float32 where it is used: a seed's result
    is bit-identical whether its settings are shared by the batch or not."""

    values: dict[str, torch.Tensor]       # name → [S, 1] float64
    linear_lr: torch.Tensor               # [S, 1] bool: learning rate decays linearly to 0
    linear_clip: torch.Tensor             # [S, 1] bool: clip range decays linearly to 0

    @classmethod
    def of(cls, cfgs: list[ExperimentConfig], device: torch.device) -> SeedSettings:
        def column(values: list[Any], dtype=torch.float64) -> torch.Tensor:
            return torch.tensor(values, dtype=dtype, device=device)[:, None]

        values = {name: column([math.nan if (v := getattr(c.ppo, name)) is None else v for c in cfgs])
                  for name in SEEDWISE}
        return cls(values, column([c.ppo.lr_schedule == "linear" for c in cfgs], torch.bool),
                   column([c.ppo.clip_range_schedule == "linear" for c in cfgs], torch.bool))

    def __getattr__(self, name: str) -> torch.Tensor:
        """``settings.gamma`` → [S, 1] float64."""
        try:
            return self.__dict__["values"][name]
        except KeyError:
            raise AttributeError(name) from None

    def scheduled(self, progress_remaining: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(learning rate, clip range) [S, 1] float64 at ``progress_remaining`` (1 → 0)."""
        lr = torch.where(self.linear_lr, self.learning_rate * progress_remaining, self.learning_rate)
        clip = torch.where(self.linear_clip, self.clip_range * progress_remaining, self.clip_range)
        return lr, clip


def lockstep_key(cfg: ExperimentConfig) -> str:
    """Configs with equal keys can train in one lockstep batch: they differ at most in name, seeds, the
    :data:`SEEDWISE` settings and schedules, ``policy.init_scale`` (each seed's init is its own) and the env
    kwargs, as long as those keep the observation shape and the number of actions (each seed steps its own
    env variant, :class:`BatchedEnv`); the env id, architecture, rollout and minibatch shapes, checkpoint
    schedule, device, reward model and analysis settings are shared."""
    free = dict.fromkeys((*SEEDWISE, "lr_schedule", "clip_range_schedule"))
    shared = cfg.model_copy(update={"name": "-", "seeds": SeedsConfig(), "ppo": cfg.ppo.model_copy(update=free),
                                    "policy": cfg.policy.model_copy(update={"init_scale": None}),
                                    "env": cfg.env.model_copy(update={"kwargs": {}})})
    probe = gym.make(cfg.env.id, **cfg.env.kwargs)
    shapes = f"{tuple(probe.observation_space.shape)}:{probe.action_space.n}"
    probe.close()
    return f"{shared.hash()}:{shapes}"


@dataclass
class Rollout:
    """One iteration's samples of every seed."""

    obs: torch.Tensor         # [S, T, E, *obs_shape]
    actions: torch.Tensor     # [S, T, E] int64
    log_probs: torch.Tensor   # [S, T, E]
    values: torch.Tensor      # [S, T, E]
    rewards: torch.Tensor     # [S, T, E] (truncations already bootstrapped, as in SB3)
    starts: torch.Tensor      # [S, T, E] 1.0 where the sample is an episode's first


def gae(rollout: Rollout, last_values: torch.Tensor, last_starts: torch.Tensor, gamma: torch.Tensor,
        lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """SB3's ``compute_returns_and_advantage`` for all seeds: (advantages, returns), each [S, T, E]; ``gamma``
    and ``lam`` [S, 1] float64, one per seed (γ·λ is formed in float64, as SB3 forms it from two floats)."""
    gamma, decay = gamma.float(), (gamma * lam).float()
    advantages = torch.zeros_like(rollout.rewards)
    running = torch.zeros_like(last_values)
    steps = rollout.rewards.shape[1]
    for t in reversed(range(steps)):
        next_values = last_values if t == steps - 1 else rollout.values[:, t + 1]
        next_non_terminal = 1.0 - (last_starts if t == steps - 1 else rollout.starts[:, t + 1])
        delta = rollout.rewards[:, t] + gamma * next_values * next_non_terminal - rollout.values[:, t]
        running = delta + decay * next_non_terminal * running
        advantages[:, t] = running
    return advantages, advantages + rollout.values


class BatchedEngine:
    """Trains the tasks in this process, all seeds in lockstep, those of every env variant (``env.planted``
    groups) in one batch (``max_workers`` is not used)."""

    name = "batched"

    def train(self, cfg: ExperimentConfig, tasks: list[SeedTask], max_workers: int,
              on_progress: ProgressCallback, on_done) -> None:
        for outcome in BatchedTrainer(cfg, tasks).run(on_progress):
            on_done(outcome)


class BatchedTrainer:
    """PPO for the seeds of ``tasks`` in lockstep: rollout → GAE → epochs of minibatch updates.

    Every seed trains on its own config's env kwargs (``env_kwargs_for``: its ``env.planted`` variant, if any);
    seeds of different kwargs share the batch (:class:`BatchedEnv`).
    ``sync_free`` (default: on any device but the CPU) keeps PPO iterations free of host syncs: no
    value is read back from the device between checkpoints (truncations are bootstrapped whether
    or not any happened, failures are recorded on the device, TensorBoard scalars are copied
    without waiting). On the CPU a sync costs nothing and the checks it allows skip work; either
    way the results are bit-identical. The trainer's TensorBoard writers stay open until
    :meth:`run` ends or :meth:`close`. ``at_step`` starts from that checkpoint instead of the latest common
    one; ``log=False`` opens no TensorBoard file (a trainer that only looks, e.g. :meth:`rollout_samples`).
    """

    def __init__(self, cfg: ExperimentConfig, tasks: list[SeedTask], sync_free: bool | None = None,
                 at_step: int | None = None, log: bool = True):
        self.cfg, self.tasks = cfg, tasks
        # each task's own config: tasks of several runs (a grid of settings) may train together when their
        # configs share a lockstep_key; cfg stands for what they share
        self.task_cfgs = [ExperimentConfig.model_validate(task.config) for task in tasks]
        distinct = {c.hash(): c for c in (*self.task_cfgs, cfg)}.values()  # a run's seeds share one config
        if len({lockstep_key(c) for c in distinct}) > 1:
            raise ValueError("seeds trained in lockstep must share everything but the per-seed PPO settings "
                             f"({', '.join(SEEDWISE)}), their schedules and the init scale")
        # Batched matmuls over one matrix take a different BLAS path than over several, which
        # would make a lone seed's floats differ from the same seed among others; a lone seed
        # therefore runs beside a ghost copy of itself whose results are never kept.
        slots = tasks if len(tasks) > 1 else tasks * 2
        self.device = resolve_device(cfg.device)
        self.sync_free = self.device.type != "cpu" if sync_free is None else sync_free
        self.stores = [RunDir(task.run_root).seed(task.index) for task in tasks]
        slot_cfgs = self.task_cfgs * (len(slots) // len(tasks))
        self.settings = SeedSettings.of(slot_cfgs, self.device)
        self.any_vf_clip = any(c.ppo.clip_range_vf is not None for c in self.task_cfgs)
        self.any_target_kl = any(c.ppo.target_kl is not None for c in self.task_cfgs)
        self.action_seeds = _seed_column(slots, "action", self.device)
        self.minibatch_seeds = _seed_column(slots, "minibatch", self.device)
        env_kwargs = [c.env_kwargs_for(slot.index) for slot, c in zip(slots, slot_cfgs, strict=True)]
        self.env = BatchedEnv(cfg, env_kwargs, _seed_column(slots, "env", self.device), self.device, self.sync_free)
        self.obs = self.env.first_obs                                            # [S·E, ...]
        self.starts = torch.ones(len(slots) * cfg.env.num_envs, device=self.device)
        self.obs_shape, n_actions = tuple(self.env.observation_space.shape), self.env.n_actions
        self.population = None if cfg.population is None else PopulationBonus(
            cfg, [task.index for task in tasks], self.env.observation_space, self.obs)
        self.policy = StackedPolicy([self._initial_policy(task, task_cfg, self.obs_shape, n_actions)
                                     for task, task_cfg in zip(slots, slot_cfgs, strict=True)], self.device)
        self.adam = SeedwiseAdam(self.policy.params, self.sync_free)
        self.failed = torch.zeros(len(slots), dtype=torch.bool, device=self.device)
        self.failed_at = torch.zeros(len(slots), dtype=torch.int64, device=self.device)  # step of the first NaN
        self.slots = len(slots)
        self.num_timesteps = 0
        self.phase_seconds = {"collect": 0.0, "update": 0.0}  # host seconds in each, summed over iterations
        # with a reward model PPO trains on its reward; the env's own return is tracked beside it
        self.learned = learned_reward(cfg.reward_model, self.device) if cfg.reward_model else None
        self.episode_return = torch.zeros(len(self.starts), device=self.device)       # the reward trained on
        self.true_episode_return = torch.zeros(len(self.starts), device=self.device)  # the env's (with a model)
        self.episode_length = torch.zeros(len(self.starts), device=self.device)
        self.scalars = SeedScalarLogger([RunDir(task.run_root).tb_dir / f"seed_{task.index}" for task in tasks]
                                        if log else [])
        self._resume(at_step)

    @staticmethod
    def _initial_policy(task: SeedTask, task_cfg: ExperimentConfig, obs_shape: tuple[int, ...],
                        n_actions: int) -> ActorCritic:
        """Seed ``task``'s initial network: from its ``init`` factor seed alone, or its point of the init plane."""
        policy = ActorCritic.from_config(task_cfg.policy, obs_shape, n_actions)
        policy.load_state_dict(initial_state_dict(task_cfg, task, obs_shape, n_actions))
        return policy

    # ---- checkpoints

    def _save(self) -> None:
        for s, (task, task_cfg, store) in enumerate(zip(self.tasks, self.task_cfgs, self.stores, strict=True)):
            if self.failed[s]:
                continue
            rows = slice(s * self.cfg.env.num_envs, (s + 1) * self.cfg.env.num_envs)
            env_tensors, env_meta = self.env.seed_state(s)
            tensors = {**self.adam.seed_state(s), **env_tensors, "obs": self.obs[rows].cpu(),
                       "starts": self.starts[rows].cpu(), "episode_return": self.episode_return[rows].cpu(),
                       "episode_length": self.episode_length[rows].cpu()}
            if self.learned is not None:
                tensors["true_episode_return"] = self.true_episode_return[rows].cpu()
            meta = {"num_timesteps": self.num_timesteps, "envs": encode(env_meta)}
            store.save(self.num_timesteps, self.policy.seed_weights(s),
                       policy_metadata(task_cfg, task, self.num_timesteps, self.obs_shape), tensors, meta)

    def _checkpoint(self, monitors: list[tuple[HeldoutMonitor, list[int]]]) -> None:
        """Save every live seed and log its held-out behaviour: ``monitors`` (empty when the env names no
        strategies) pairs each run's env kwargs' monitor with the seeds (slots) that train on them."""
        self._save()
        for monitor, slots in monitors:
            live = [s for s in slots if not self.failed[s]]
            if live:
                monitor.log([self.scalars.writers[s] for s in live],
                            {name: p.detach()[live] for name, p in self.policy.params.items()}, self.num_timesteps)

    def _monitors(self) -> list[tuple[HeldoutMonitor, list[int]]]:
        """One held-out monitor per distinct run env kwargs among the seeds (those of a grid over env kwargs
        differ; ``env.planted`` variants share their run's), each with its seeds' slots."""
        from rlbasins.train.monitor import HeldoutMonitor  # imported here: it reaches this module through analysis

        groups: dict[str, tuple[ExperimentConfig, list[int]]] = {}
        for s, task_cfg in enumerate(self.task_cfgs):
            groups.setdefault(repr(sorted(task_cfg.env.kwargs.items())), (task_cfg, []))[1].append(s)
        monitors = [(HeldoutMonitor.for_config(task_cfg), slots) for task_cfg, slots in groups.values()]
        return [(monitor, slots) for monitor, slots in monitors if monitor is not None]

    def _resume(self, at_step: int | None = None) -> None:
        """Continue from the latest step that every seed has checkpointed (all seeds move together), or from
        ``at_step`` (0 without checkpoints: the start)."""
        common = set.intersection(*({e.step for e in store.entries()} for store in self.stores))
        if at_step is not None and at_step not in common | {0}:
            raise ValueError(f"not every seed has a checkpoint at step {at_step} (common steps: {sorted(common)})")
        if not common or at_step == 0:
            return
        step = max(common) if at_step is None else at_step
        rows_per_seed = self.cfg.env.num_envs
        with torch.no_grad():
            for s in range(self.slots):
                store = self.stores[s % len(self.stores)]  # a ghost slot mirrors its seed
                weights, _ = store.load_policy(step)
                tensors, meta = store.load_state(step)
                for name, p in self.policy.params.items():
                    p[s] = weights[name].to(self.device)
                self.adam.restore_seed_state(s, {k: v.to(self.device) for k, v in tensors.items()})
                self.env.restore_seed_state(s, tensors, decode(meta["envs"]))
                rows = slice(s * rows_per_seed, (s + 1) * rows_per_seed)
                self.obs[rows] = tensors["obs"].to(self.device)
                self.starts[rows] = tensors["starts"].to(self.device)
                self.episode_return[rows] = tensors["episode_return"].to(self.device)
                self.episode_length[rows] = tensors["episode_length"].to(self.device)
                if self.learned is not None:
                    self.true_episode_return[rows] = tensors["true_episode_return"].to(self.device)
        self.num_timesteps = step

    # ---- the loop

    def run(self, on_progress: ProgressCallback):
        """Train to the end of the checkpoint schedule, or to the tasks' common ``until_step`` (then the
        outcomes are ``interrupted`` there, resumable); yields one outcome per seed at the end."""
        cfg = self.cfg
        schedule = cfg.checkpoint_steps()
        end = schedule[-1]
        stops = {task.until_step for task in self.tasks}
        if len(stops) != 1:
            raise ValueError(f"seeds trained in lockstep must share until_step (got {sorted(map(str, stops))})")
        stop = stop_step(cfg, stops.pop())  # progress_remaining (schedules) still runs to `end`
        try:
            monitors = self._monitors()
            if self.num_timesteps == 0:  # the initialisation (rewritten identically after an early kill)
                self._checkpoint(monitors)
            pending = [step for step in schedule if step > self.num_timesteps]
            while self.num_timesteps < stop:
                self.train_iteration(progress_remaining=1.0 - self.num_timesteps / end)
                for task in self.tasks:
                    on_progress(task.index, self.num_timesteps)
                if pending and self.num_timesteps >= pending[0]:
                    self._checkpoint(monitors)
                    pending = [step for step in pending if step > self.num_timesteps]
        finally:  # the queued TensorBoard scalars are written even when training stops on an error
            self.close()
        failed_at = self.failed_at.tolist()
        for s, (task, store) in enumerate(zip(self.tasks, self.stores, strict=True)):
            last = store.last()
            if self.failed[s]:
                error = f"FloatingPointError: non-finite weights at step {failed_at[s]}"
                yield SeedOutcome(task.index, "failed", last.step if last else 0, error)
            else:
                yield SeedOutcome(task.index, "finished" if self.num_timesteps >= end else "interrupted",
                                  self.num_timesteps, None)

    def train_iteration(self, progress_remaining: float) -> None:
        """One PPO iteration of every seed: rollout, update, NaN check, TensorBoard scalars. Adds the host seconds
        of the rollout and of the rest to :attr:`phase_seconds` (on a GPU, work may still be queued when they end)."""
        start = time.perf_counter()
        rollout, last_values, episodes = self._collect()
        collected = time.perf_counter()
        self.num_timesteps += self.cfg.rollout_size
        stats = self._update(rollout, last_values, progress_remaining)
        self._check_finite()
        self.scalars.log(self.num_timesteps, self._scalars(episodes, stats))
        self.phase_seconds["collect"] += collected - start
        self.phase_seconds["update"] += time.perf_counter() - collected

    def close(self) -> None:
        """Write the TensorBoard scalars still queued and close the writers."""
        self.scalars.close()

    @torch.no_grad()
    def _collect(self):
        """n_steps of every env of every seed (SB3's ``collect_rollouts``). A learned reward scores the whole
        rollout after it, in batches of :data:`LEARNED_REWARD_ROWS` (no action depends on it)."""
        cfg = self.cfg
        S, E, T = self.slots, cfg.env.num_envs, cfg.ppo.n_steps
        learned = self.learned is not None
        obs_buf = torch.zeros(S, T, E, *self.obs.shape[1:], device=self.device)
        next_obs = torch.zeros_like(obs_buf) if learned else None   # each step's next obs (an ended episode's last)
        actions = torch.zeros(S, T, E, dtype=torch.int64, device=self.device)
        log_probs, values, train_rewards, bootstrap, starts, dones = (torch.zeros(S, T, E, device=self.device)
                                                                      for _ in range(6))
        bootstrapped = np.zeros(T, dtype=bool)                      # steps with a truncation to bootstrap
        finished_return, finished_true_return, finished_length, finished = (torch.zeros(S, device=self.device)
                                                                            for _ in range(4))
        for t in range(T):
            obs = self.obs.view(S, E, *self.obs.shape[1:])
            logits, value = self.policy(obs)                                           # [S, E, A], [S, E]
            probs = torch.softmax(logits, -1)
            u = uniform(self.action_seeds, self.num_timesteps // E + t, E).to(probs.dtype)
            action = (probs.cumsum(-1) < u[..., None]).sum(-1).clamp_(max=probs.shape[-1] - 1)
            following, env_reward, terminated, truncated, final_obs = self.env.step(action.reshape(-1),
                                                                                    with_final=learned)
            if final_obs is not None and (self.sync_free or bool(truncated.any())):  # bootstrap as SB3 does
                final_value = self.policy.values(final_obs.view(S, E, *final_obs.shape[1:]))
                bootstrap[:, t] = self.settings.gamma.float() * final_value * truncated.view(S, E)
                bootstrapped[t] = True
            obs_buf[:, t], actions[:, t] = obs, action
            if learned:
                next_obs[:, t] = final_obs.view(S, E, *final_obs.shape[1:])
            else:
                train_rewards[:, t] = env_reward.view(S, E)
            log_probs[:, t] = torch.log_softmax(logits, -1).gather(-1, action[..., None]).squeeze(-1)
            values[:, t], starts[:, t] = value, self.starts.view(S, E)
            done = (terminated | truncated).float()
            dones[:, t] = done.view(S, E)
            self.true_episode_return += env_reward
            self.episode_length += 1
            finished_true_return += (self.true_episode_return * done).view(S, E).sum(1)
            finished_length += (self.episode_length * done).view(S, E).sum(1)
            finished += done.view(S, E).sum(1)
            self.true_episode_return *= 1 - done
            self.episode_length *= 1 - done
            self.obs, self.starts = following, done
        if learned:
            train_rewards = self._learned_rewards(obs_buf, actions, next_obs)
        with_bootstrap = torch.as_tensor(bootstrapped, device=self.device)[None, :, None]  # [1, T, 1]
        rewards = torch.where(with_bootstrap, train_rewards + bootstrap, train_rewards)
        episode_return = self.episode_return.view(S, E)
        for t in range(T):  # the training return (the env's or the learned one), episode by episode
            episode_return += train_rewards[:, t]
            finished_return += (episode_return * dones[:, t]).sum(1)
            episode_return *= 1 - dones[:, t]
        last_values = self.policy.values(self.obs.view(S, E, *self.obs.shape[1:]))
        rollout = Rollout(obs_buf, actions, log_probs, values, rewards, starts)
        episodes = (finished_return, finished_true_return, finished_length, finished)
        return rollout, (last_values, self.starts.view(S, E)), episodes

    def _learned_rewards(self, obs: torch.Tensor, actions: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """The learned reward of every step of a rollout: obs, next_obs [S, T, E, ...], actions [S, T, E] →
        [S, T, E], scored :data:`LEARNED_REWARD_ROWS` transitions at a time (each row's reward does not depend on
        the batch it is scored in)."""
        flat = [x.reshape(-1, *x.shape[3:]) for x in (obs, actions, next_obs)]
        parts = [self.learned(*(x[i:i + LEARNED_REWARD_ROWS] for x in flat))
                 for i in range(0, len(flat[1]), LEARNED_REWARD_ROWS)]
        return torch.cat(parts).view(actions.shape)

    def _samples(self, rollout: Rollout, last: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A rollout as PPO's samples, each [S, N, ...]: obs, actions, old_log_probs, old_values, advantages
        (GAE) and returns."""
        advantages, returns = gae(rollout, *last, self.settings.gamma, self.settings.gae_lambda)
        n = rollout.actions[0].numel()

        def flat(x):  # [S, T, E, ...] → [S, N, ...]
            return x.reshape(self.slots, n, *x.shape[3:])

        return {"obs": flat(rollout.obs), "actions": flat(rollout.actions), "old_log_probs": flat(rollout.log_probs),
                "old_values": flat(rollout.values), "advantages": flat(advantages), "returns": flat(returns)}

    def rollout_samples(self) -> dict[str, torch.Tensor]:
        """The samples of one rollout of every seed from where the trainer stands ([S, N, ...] each, see
        :meth:`_samples`), without training: the batch PPO's next update would see (a fixed batch for a
        training loss). Advances the envs; nothing is saved."""
        rollout, last, _ = self._collect()
        return {name: value[:len(self.tasks)] for name, value in self._samples(rollout, last).items()}

    def _update(self, rollout: Rollout, last: tuple[torch.Tensor, torch.Tensor], progress_remaining: float):
        """n_epochs of minibatch PPO updates for every seed (SB3's ``PPO.train``)."""
        ppo = self.cfg.ppo
        S = self.slots
        settings = self.settings
        samples = self._samples(rollout, last)
        n = samples["actions"].shape[1]                                                # N samples per seed
        lr, clip = settings.scheduled(progress_remaining)                             # [S, 1] float64
        low, high, clip32 = (1 - clip).float(), (1 + clip).float(), clip.float()       # as SB3 forms them
        vf_clip = settings.clip_range_vf.nan_to_num(math.inf).float()                  # [S, 1]; inf: none
        kl_limit = (1.5 * settings.target_kl).float()[:, 0]                             # [S]; NaN: none
        ent_coef, vf_coef = settings.ent_coef.float()[:, 0], settings.vf_coef.float()[:, 0]
        max_grad_norm, lr32 = settings.max_grad_norm.float()[:, 0], lr.float()[:, 0]
        active = ~self.failed
        stats: dict[str, list[torch.Tensor]] = {k: [] for k in ("policy_loss", "value_loss", "entropy",
                                                                  "approx_kl", "clip_fraction")}
        if self.population is not None:
            stats["population_log_det"] = []
        iteration = self.num_timesteps // self.cfg.rollout_size
        first_row = torch.arange(S, device=self.device)[:, None] * n                    # [S, 1] seed s's first sample
        for epoch in range(ppo.n_epochs):
            counter = torch.full_like(self.minibatch_seeds, iteration * ppo.n_epochs + epoch)
            order = draws(self.minibatch_seeds, counter, n).argsort(dim=1, stable=True)  # [S, N] per-seed permutation
            rows = (first_row + order).view(-1)                                        # [S·N] into the flat samples
            # one gather per epoch, of flat rows (64 seeds' CueConflict obs: 2.7 ms, against 6.1 for x[seeds, order])
            shuffled = {name: x.reshape(S * n, *x.shape[2:]).index_select(0, rows).view(x.shape)
                        for name, x in samples.items()}
            for start in range(0, n, ppo.batch_size):
                mb = {name: x[:, start:start + ppo.batch_size] for name, x in shuffled.items()}  # [S, M, ...]
                logits, values = self.policy(mb["obs"])
                log_softmax = torch.log_softmax(logits, -1)
                log_prob = log_softmax.gather(-1, mb["actions"][..., None]).squeeze(-1)
                entropy = -(log_softmax.exp() * log_softmax).sum(-1)
                adv = mb["advantages"]
                if ppo.normalize_advantage and adv.shape[1] > 1:
                    adv = (adv - adv.mean(1, keepdim=True)) / (adv.std(1, keepdim=True) + 1e-8)
                log_ratio = log_prob - mb["old_log_probs"]
                ratio = torch.exp(log_ratio)
                policy_loss = -torch.min(adv * ratio, adv * ratio.clamp(low, high)).mean(1)  # [S]
                if self.any_vf_clip:  # a seed without value clipping keeps its values untouched
                    old_v = mb["old_values"]
                    clipped = old_v + (values - old_v).clamp(-vf_clip, vf_clip)
                    values = torch.where(vf_clip.isinf(), values, clipped)
                value_loss = (mb["returns"] - values).pow(2).mean(1)
                entropy_loss = -entropy.mean(1)
                with torch.no_grad():
                    log_ratio = log_ratio.detach()
                    approx_kl = ((ratio - 1) - log_ratio).mean(1)                       # [S]
                    if self.any_target_kl:  # NaN (no target) never stops a seed
                        active = active & ~(approx_kl > kl_limit)
                    stats["approx_kl"].append(approx_kl)
                    stats["clip_fraction"].append(((ratio - 1).abs() > clip32).float().mean(1))
                loss = policy_loss + ent_coef * entropy_loss + vf_coef * value_loss  # [S]
                for p in self.policy.params.values():
                    p.grad = None
                total = loss.sum()  # a sum of per-seed losses: gradients never mix seeds ...
                if self.population is not None:  # ... but through a population's diversity bonus
                    bonus, log_det = self.population.loss(self.policy, self.failed)
                    total = total + bonus
                    stats["population_log_det"].append(log_det)
                total.backward()
                clip_grad_norm_per_seed(self.policy.params, max_grad_norm)
                self.adam.step(lr32, active)
                stats["policy_loss"].append(policy_loss.detach())
                stats["value_loss"].append(value_loss.detach())
                stats["entropy"].append(-entropy_loss.detach())
        summary = {k: torch.stack(v).mean(0) for k, v in stats.items()}
        summary["learning_rate"], summary["clip_range"] = lr32, clip32[:, 0]
        return summary

    def _check_finite(self) -> None:
        """Freeze the seeds whose weights stopped being finite (on the device: no sync)."""
        finite = torch.stack([p.detach().flatten(1).isfinite().all(1) for p in self.policy.params.values()]).all(0)
        self.failed_at = torch.where(~finite & ~self.failed, self.num_timesteps, self.failed_at)
        self.failed |= ~finite

    def _scalars(self, episodes, stats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """This iteration's TensorBoard scalars, {tag: [S]}: episode means (NaN, so not written, for a
        seed that ended no episode) and the update's statistics."""
        finished_return, finished_true_return, finished_length, finished = episodes
        scalars = {RETURN_TAG: finished_return / finished, EPISODE_LENGTH_TAG: finished_length / finished}
        if self.learned is not None:  # ep_rew_mean is then the learned return
            scalars[TRUE_RETURN_TAG] = finished_true_return / finished
        return scalars | {f"train/{name}": values for name, values in stats.items()}
