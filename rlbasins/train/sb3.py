"""The ``sb3`` engine: one Stable-Baselines3 PPO per seed, seeds in parallel processes.

It is the reference implementation of PPO for rlbasins. Each seed runs in its own process
with one torch thread, its four factor seeds applied to the four places SB3 draws
randomness from:

- ``init``: the torch generator while the policy is built;
- ``action``: the torch generator afterwards (SB3 samples actions with torch);
- ``minibatch``: numpy's global generator (``RolloutBuffer.get`` permutes with it);
- ``env``: the vector env's reset seeds (``seed + i`` for sub-env ``i``).

Checkpoints are taken between PPO iterations, each with the seed's held-out behaviour logged to its
TensorBoard run (:mod:`rlbasins.train.monitor`); a resumed seed restores weights, Adam state,
RNGs and every sub-env's state, and continues bit-identically. With ``reward_model`` the vector
env is wrapped in :class:`~rlbasins.train.learned_reward.LearnedRewardVecEnv`: PPO trains on the
model's reward, ``rollout/ep_rew_mean`` is the learned return and ``rollout/true_ep_rew_mean``
the env's.
"""

from __future__ import annotations

import random
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger, TensorBoardOutputFormat
from stable_baselines3.common.logger import configure as configure_logger
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv
from torch.utils.tensorboard import SummaryWriter

import envs  # noqa: F401  (registers rlbasins/* env ids in the worker process)
from rlbasins.core.config import ExperimentConfig
from rlbasins.core.devices import resolve_device
from rlbasins.core.logs import TRUE_RETURN_TAG
from rlbasins.core.policy import ACTIVATIONS, sb3_to_exchange
from rlbasins.core.rollouts import stack_state_dicts
from rlbasins.core.store import RunDir, SeedStore, StoreWriteError
from rlbasins.train.base import ProgressCallback, SeedOutcome, SeedTask, policy_metadata, stop_step
from rlbasins.train.learned_reward import LearnedRewardVecEnv, learned_reward
from rlbasins.train.monitor import HeldoutMonitor
from rlbasins.train.resume import (
    decode,
    encode,
    flatten_optimizer,
    restore_env,
    restore_rngs,
    snapshot_env,
    snapshot_rngs,
    unflatten_optimizer,
)


def _schedule(initial: float, kind: str):
    """SB3 schedules take progress_remaining (1 → 0)."""
    return initial if kind == "constant" else (lambda progress_remaining: progress_remaining * initial)


def build_model(cfg: ExperimentConfig, task: SeedTask) -> PPO:
    """An SB3 PPO for one seed, with the seed factors applied (see the module docstring)."""
    seeds = task.seeds
    np.random.seed(seeds.minibatch)
    random.seed(seeds.minibatch)
    env_kwargs = cfg.env_kwargs_for(task.index)  # its planted variant, if any
    venv = DummyVecEnv([lambda: Monitor(gym.make(cfg.env.id, **env_kwargs)) for _ in range(cfg.env.num_envs)])
    venv.seed(seeds.env)
    if cfg.reward_model is not None:
        venv = LearnedRewardVecEnv(venv, learned_reward(cfg.reward_model))
    torch.manual_seed(seeds.init)
    model = ppo_model(cfg, venv, resolve_device(cfg.device))
    torch.manual_seed(seeds.action)
    return model


def ppo_model(cfg: ExperimentConfig, venv, device: torch.device) -> PPO:
    """An SB3 PPO ``MlpPolicy`` on ``venv`` with ``cfg``'s hyper-parameters and architecture (its weights drawn
    from torch's global generator as it stands)."""
    ppo = cfg.ppo
    return PPO(
        "MlpPolicy", venv, seed=None, device=device, verbose=0,
        learning_rate=_schedule(ppo.learning_rate, ppo.lr_schedule), n_steps=ppo.n_steps,
        batch_size=ppo.batch_size, n_epochs=ppo.n_epochs, gamma=ppo.gamma, gae_lambda=ppo.gae_lambda,
        clip_range=_schedule(ppo.clip_range, ppo.clip_range_schedule), clip_range_vf=ppo.clip_range_vf,
        normalize_advantage=ppo.normalize_advantage, ent_coef=ppo.ent_coef, vf_coef=ppo.vf_coef,
        max_grad_norm=ppo.max_grad_norm, target_kl=ppo.target_kl,
        policy_kwargs=dict(net_arch=dict(pi=list(cfg.policy.hidden_sizes), vf=list(cfg.policy.hidden_sizes)),
                           activation_fn=ACTIVATIONS[cfg.policy.activation],
                           ortho_init=cfg.policy.ortho_init),
    )


def _training_state(model: PPO) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Everything besides the config that decides how ``model.learn`` continues."""
    tensors = {f"sb3.{name}": t for name, t in model.policy.state_dict().items()}
    optim_tensors, optim_meta = flatten_optimizer(model.policy.optimizer.state_dict())
    rng_tensors, rng_meta = snapshot_rngs()
    meta = {
        "optimizer": optim_meta, "rng": rng_meta,
        "envs": [snapshot_env(env) for env in model.env.envs],
        "num_timesteps": model.num_timesteps, "n_updates": model._n_updates,
        "episode_num": model._episode_num,
        "last_obs": encode(model._last_obs), "last_episode_starts": encode(model._last_episode_starts),
        # wall-clock "t" is dropped so that checkpoints of identical runs are identical bytes
        "ep_info_buffer": [{"l": int(e["l"]), **{k: float(e[k]) for k in ("r", "true_r") if k in e}}
                           for e in (model.ep_info_buffer or [])],
    }
    if isinstance(model.env, LearnedRewardVecEnv):
        meta["learned_running"] = encode(model.env.running)
    return {**tensors, **optim_tensors, **rng_tensors}, meta


def _restore_training_state(model: PPO, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    model.policy.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("sb3.")})
    model.policy.optimizer.load_state_dict(unflatten_optimizer(tensors, meta["optimizer"]))
    for env, snapshot in zip(model.env.envs, meta["envs"], strict=True):
        restore_env(env, snapshot)
    model.num_timesteps, model._n_updates = meta["num_timesteps"], meta["n_updates"]
    model._episode_num = meta["episode_num"]
    model._last_obs = decode(meta["last_obs"])
    model._last_episode_starts = decode(meta["last_episode_starts"])
    model.ep_info_buffer = deque(meta["ep_info_buffer"], maxlen=model._stats_window_size)
    model.ep_success_buffer = deque(maxlen=model._stats_window_size)
    restore_rngs(tensors, meta["rng"])
    if isinstance(model.env, LearnedRewardVecEnv):
        model.env.running, model.env.last_obs = decode(meta["learned_running"]), model._last_obs.copy()


def _tensorboard_writer(logger: Logger) -> SummaryWriter:
    """The ``SummaryWriter`` of an SB3 logger configured with the "tensorboard" format."""
    return next(f.writer for f in logger.output_formats if isinstance(f, TensorBoardOutputFormat))


class _Checkpointer(BaseCallback):
    """Saves at scheduled steps (between iterations), logs the held-out behaviour of each checkpoint
    (``monitor``; None when the env names no strategies) and reports progress."""

    def __init__(self, cfg: ExperimentConfig, task: SeedTask, store: SeedStore, progress_queue,
                 monitor: HeldoutMonitor | None):
        super().__init__()
        self.cfg, self.task, self.store, self.queue, self.monitor = cfg, task, store, progress_queue, monitor
        last = store.last()
        self.pending = [s for s in cfg.checkpoint_steps() if s > (last.step if last else -1)]

    def save(self) -> None:
        step = self.model.num_timesteps
        policy = self.model.policy
        weights = sb3_to_exchange(policy.state_dict(), n_hidden=len(self.cfg.policy.hidden_sizes))
        if not all(torch.isfinite(t).all() for t in weights.values()):
            raise FloatingPointError(f"non-finite weights at step {step}")
        state_tensors, state_meta = _training_state(self.model)
        meta = policy_metadata(self.cfg, self.task, step, self.model.observation_space.shape)
        self.store.save(step, weights, meta, state_tensors, state_meta)
        if self.monitor is not None:
            self.monitor.log([_tensorboard_writer(self.logger)], stack_state_dicts([weights]), step)
        self.pending = [s for s in self.pending if s > step]

    def maybe_save(self) -> None:
        if self.pending and self.model.num_timesteps >= self.pending[0]:
            self.save()

    def _on_rollout_start(self) -> None:
        self.maybe_save()
        if self.queue is not None:
            self.queue.put((self.task.index, self.model.num_timesteps))

    def _on_rollout_end(self) -> None:
        true_returns = [e["true_r"] for e in self.model.ep_info_buffer if "true_r" in e]
        if true_returns:  # training on a reward model: SB3's ep_rew_mean is the learned return
            self.logger.record(TRUE_RETURN_TAG, float(np.mean(true_returns)))

    def _on_step(self) -> bool:
        # stop at ``until_step``: its checkpoint was saved at this rollout's start, before this step
        return self.task.until_step is None or self.model.num_timesteps <= self.task.until_step


def train_seed(task: SeedTask, progress_queue=None) -> SeedOutcome:
    """Train (or resume) one seed to the end of its schedule. Runs in a worker process."""
    torch.set_num_threads(1)  # one seed per core; also makes CPU results thread-count independent
    cfg = ExperimentConfig.model_validate(task.config)
    run = RunDir(task.run_root)
    store = run.seed(task.index)
    try:
        monitor = HeldoutMonitor.for_config(cfg)  # before build_model seeds the generators
        model = build_model(cfg, task)
        model.set_logger(configure_logger(str(run.tb_dir / f"seed_{task.index}"), ["tensorboard"]))
        last = store.last()
        if last is not None:
            _restore_training_state(model, *store.load_state(last.step))
        checkpointer = _Checkpointer(cfg, task, store, progress_queue, monitor)
        checkpointer.init_callback(model)
        checkpointer.maybe_save()  # step 0 (the initialisation) on a fresh run
        end = cfg.checkpoint_steps()[-1]
        stop = stop_step(cfg, task.until_step)
        if model.num_timesteps < stop:  # learn() to the end keeps the schedules; _on_step stops at `stop`
            model.learn(end - model.num_timesteps, callback=checkpointer, reset_num_timesteps=False)
        if stop < end:
            model.logger.close()
            last = store.last()
            return SeedOutcome(task.index, "interrupted", last.step if last else 0, None)
        checkpointer.maybe_save()
        model.logger.close()
        return SeedOutcome(task.index, "finished", model.num_timesteps, None)
    except (FloatingPointError, ValueError, RuntimeError) as exc:  # NaN weights/logits end in these
        last = store.last()
        return SeedOutcome(task.index, "failed", last.step if last else 0, f"{type(exc).__name__}: {exc}")
    except StoreWriteError as exc:  # e.g. disk full: nothing wrong with the seed, --resume continues it
        last = store.last()
        return SeedOutcome(task.index, "interrupted", last.step if last else 0, str(exc))


class SB3Engine:
    """Runs :func:`train_seed` for each task in up to ``max_workers`` processes."""

    name = "sb3"

    def train(self, cfg: ExperimentConfig, tasks: list[SeedTask], max_workers: int,
              on_progress: ProgressCallback, on_done) -> None:
        context = get_context("spawn")  # fork after torch/openmp initialised is unsafe
        with context.Manager() as manager:
            queue = manager.Queue()
            with ProcessPoolExecutor(max_workers=max(1, min(max_workers, len(tasks))),
                                     mp_context=context) as pool:
                futures = {pool.submit(train_seed, task, queue): task for task in tasks}
                pending = set(futures)
                while pending:
                    done, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
                    while not queue.empty():
                        on_progress(*queue.get())
                    for future in done:
                        task = futures[future]
                        try:
                            outcome = future.result()
                        except BrokenProcessPool as exc:  # killed worker: resumable
                            outcome = SeedOutcome(task.index, "interrupted", 0, f"worker died: {exc}")
                        except Exception as exc:  # a bug in one seed must not take the others down
                            outcome = SeedOutcome(task.index, "failed", 0, f"{type(exc).__name__}: {exc}")
                        on_done(outcome)
                        on_progress(task.index, outcome.last_step)
