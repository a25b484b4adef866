"""Speed measurements that print numbers and ratios (never assertions).

``rlbasins bench envs``: batched env-core steps per second at several batch sizes, next to the
gymnasium single-env view of the same environment (the speed SB3 sees per environment).
``rlbasins bench ppo``: SB3 on every core vs the batched engine, the compute floor, memory; with
``--reward-model``, the engine on a frozen reward model vs on the env's own reward.
``rlbasins bench grid``: a grid of settings in one lockstep batch vs as many seeds of one setting.
``rlbasins bench analysis``: seconds per stage of the full analysis of N seeds.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch

if TYPE_CHECKING:
    from rlbasins.core.config import ExperimentConfig


def _rate(run: Callable[[int], None], items_per_call: int, seconds: float, repeats: int) -> float:
    """Median items/s over ``repeats`` timed windows of about ``seconds`` each (after a warm-up)."""
    for i in range(5):
        run(i)
    rates = []
    for _ in range(repeats):
        calls, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            run(calls)
            calls += 1
        rates.append(calls * items_per_call / elapsed)
    return statistics.median(rates)


def batched_env_rate(core_class, num_envs: int, device: str, seconds: float, repeats: int) -> float:
    """Env-steps/s of a batched core stepping ``num_envs`` environments with autoreset."""
    core = core_class(num_envs=num_envs, device=device)
    core.reset(torch.arange(num_envs))
    actions = torch.randint(0, core.n_actions, (64, num_envs), generator=torch.Generator().manual_seed(0)).to(device)

    def step(i: int) -> None:
        core.step(actions[i % 64], autoreset=True)
        if device == "cuda":
            torch.cuda.synchronize()

    return _rate(step, num_envs, seconds, repeats)


def gymnasium_rate(env_id: str, seconds: float, repeats: int) -> float:
    """Env-steps/s of ``gym.make(env_id)`` stepped one action at a time (resets included)."""
    env = gym.make(env_id)
    env.reset(seed=0)
    actions = np.random.default_rng(0).integers(0, env.action_space.n, size=1024)

    def step(i: int) -> None:
        _, _, terminated, truncated, _ = env.step(int(actions[i % 1024]))
        if terminated or truncated:
            env.reset()

    return _rate(step, 1, seconds, repeats)


def bench_envs(env_ids: list[str], batch_sizes: list[int], device: str, seconds: float = 0.5,
               repeats: int = 5) -> dict:
    """Measure every env at every batch size; returns a JSON-able dict of results."""
    import envs

    rows = []
    for env_id in env_ids:
        single = gymnasium_rate(env_id, seconds, repeats)
        for num_envs in batch_sizes:
            rate = batched_env_rate(envs.GRID_ENVS[env_id], num_envs, device, seconds, repeats)
            rows.append({"env": env_id, "device": device, "num_envs": num_envs, "env_steps_per_s": rate,
                         "gymnasium_single_env_steps_per_s": single, "ratio_to_gymnasium": rate / single})
    return {"what": "envs", "torch": torch.__version__, "threads": torch.get_num_threads(),
            "machine": platform.machine(), "processor": platform.processor(), "results": rows}


def resized(cfg: ExperimentConfig, seeds: int, steps: int, **top_level: Any) -> ExperimentConfig:
    """``cfg`` with ``seeds`` seeds × ``steps`` env steps, one checkpoint at the end, and the
    ``top_level`` keys (name, engine, device, …) replaced."""
    from rlbasins.core.config import parse_config

    data = cfg.model_dump(mode="json") | top_level
    data["ppo"]["total_timesteps"] = steps
    data["seeds"]["count"] = seeds
    data["checkpoints"] = {"every": steps}
    return parse_config(data)


def write_json(result: dict, path: Path | None) -> None:
    if path is not None:
        path.write_text(json.dumps(result, indent=2) + "\n")


# --------------------------------------------------------------------------- PPO engines


def bench_config(env_id: str, n_epochs: int, seeds: int, device: str, total_timesteps: int, n_steps: int = 128,
                 batch_size: int = 256, hidden: tuple[int, ...] = (64, 64), env_kwargs: dict | None = None,
                 reward_model: str | None = None):
    """The PPO settings every engine is measured with: 8 envs × ``n_steps``, minibatch ``batch_size``, tanh actor
    and critic of widths ``hidden``; the env's own reward, or the frozen model whose card is ``reward_model``."""
    from rlbasins.core.config import parse_config

    return parse_config({
        "name": "bench", "device": device, "engine": "batched",
        "env": {"id": env_id, "num_envs": 8, "kwargs": env_kwargs or {}}, "reward_model": reward_model,
        "policy": {"hidden_sizes": list(hidden)},
        "ppo": {"total_timesteps": total_timesteps, "n_steps": n_steps, "batch_size": batch_size,
                "n_epochs": n_epochs},
        "seeds": {"count": seeds}, "checkpoints": {"every": total_timesteps}, "analysis": {"enabled": False}})


def _trainer(cfgs: list[ExperimentConfig], seeds: int, root: str):
    """One :class:`~rlbasins.train.batched.BatchedTrainer` over ``seeds`` seeds of each config (trained in one
    lockstep batch), its run directories under ``root``."""
    from rlbasins.core.seeding import experiment_seeds
    from rlbasins.train.base import SeedTask
    from rlbasins.train.batched import BatchedTrainer

    tasks = []
    for cfg in cfgs:
        factor_seeds = experiment_seeds(cfg.seed, seeds, cfg.seeds.vary, cfg.seeds.grid)
        tasks += [SeedTask(k, factor_seeds[k], cfg.model_dump(mode="json"), f"{root}/{cfg.name}")
                  for k in range(seeds)]
    return BatchedTrainer(cfgs[0], tasks)


def alternating_rates(trainers: dict[str, Any], env_steps: int, iterations: int, device: str) -> dict[str, float]:
    """Env-steps/s of each trainer ({name: BatchedTrainer}, each ``env_steps`` env steps per PPO iteration): their
    iterations alternate (so that the machine's drifts hit all of them alike), after one warm-up iteration each;
    the median of ``iterations`` timed iterations per trainer. Each trainer's ``phase_seconds`` then holds the
    timed iterations' alone."""
    seconds: dict[str, list[float]] = {name: [] for name in trainers}
    for i in range(iterations + 1):
        for name, trainer in trainers.items():
            start = time.perf_counter()
            trainer.train_iteration(progress_remaining=1.0)
            if device == "cuda":
                torch.cuda.synchronize()
            if i:
                seconds[name].append(time.perf_counter() - start)
            else:
                trainer.phase_seconds = dict.fromkeys(trainer.phase_seconds, 0.0)
    for trainer in trainers.values():
        trainer.close()
    return {name: env_steps / statistics.median(s) for name, s in seconds.items()}


def _sb3_worker(args: tuple[str, int, int, int, int, tuple[int, ...]]) -> None:
    env_id, n_epochs, steps, n_steps, batch_size, hidden = args
    import torch as th

    th.set_num_threads(1)
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    import envs  # noqa: F401

    model = PPO("MlpPolicy", make_vec_env(env_id, n_envs=8, seed=0), n_steps=n_steps, batch_size=batch_size,
                n_epochs=n_epochs, device="cpu", seed=0,
                policy_kwargs={"net_arch": {"pi": list(hidden), "vf": list(hidden)}})
    model.learn(steps)


def sb3_rate(env_id: str, n_epochs: int, steps_per_process: int, processes: int, n_steps: int,
             batch_size: int, hidden: tuple[int, ...] = (64, 64)) -> float:
    """Aggregate env-steps/s of SB3 PPO with one process per core (startup excluded by a warm pool)."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    with ProcessPoolExecutor(processes, mp_context=get_context("spawn")) as pool:
        warm_up, timed = ((env_id, n_epochs, steps, n_steps, batch_size, hidden) for steps in (8 * n_steps,
                                                                                               steps_per_process))
        list(pool.map(_sb3_worker, [warm_up] * processes))
        start = time.perf_counter()
        list(pool.map(_sb3_worker, [timed] * processes))
        return processes * steps_per_process / (time.perf_counter() - start)


def batched_rate(env_id: str, n_epochs: int, seeds: int, device: str, n_steps: int, batch_size: int,
                 hidden: tuple[int, ...] = (64, 64), iterations: int = 3) -> tuple[float, int, float]:
    """(env-steps/s, host syncs per iteration, share of the time in collection) of the batched engine for
    ``seeds`` seeds: the median over ``iterations`` timed PPO iterations, TensorBoard logging included; the
    share is the rollouts' (policy forward passes, sampling, env steps) of those iterations' time.

    The syncs are counted in a warm-up iteration (:class:`~rlbasins.core.devices.HostSyncCounter`).
    """
    import tempfile

    from rlbasins.core.devices import HostSyncCounter

    cfg = bench_config(env_id, n_epochs, seeds, device, 10**9, n_steps, batch_size, hidden)
    with tempfile.TemporaryDirectory() as root:
        trainer = _trainer([cfg], seeds, root)
        with HostSyncCounter() as syncs:
            trainer.train_iteration(progress_remaining=1.0)
        rate = alternating_rates({"engine": trainer}, seeds * cfg.rollout_size, iterations, device)["engine"]
        return rate, syncs.total, trainer.phase_seconds["collect"] / sum(trainer.phase_seconds.values())


def _batched_worker(args: tuple) -> dict:
    """Runs in a fresh process: speed, host syncs, collection share and peak memory of one batched measurement,
    and right after it, in the same process, the compute floor (:func:`floor_rate`)."""
    import resource

    import envs  # noqa: F401  (registers the rlbasins/* ids)

    rate, syncs, collect_share = batched_rate(*args)
    env_id, seeds, device, batch_size, hidden = args[0], args[2], args[3], args[5], args[6]
    env = gym.make(env_id)
    obs_shape, n_actions = tuple(env.observation_space.shape), int(env.action_space.n)
    env.close()
    return {"env_steps_per_s": rate, "host_syncs_per_iteration": syncs, "collect_share": collect_share,
            "floor_samples_per_s": floor_rate(obs_shape, n_actions, seeds, batch_size, device, hidden),
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,  # Linux reports KiB
            "peak_device_bytes": torch.cuda.max_memory_allocated() if device == "cuda" else None}


def batched_rate_and_memory(env_id: str, n_epochs: int, seeds: int, device: str, n_steps: int,
                            batch_size: int, hidden: tuple[int, ...] = (64, 64), iterations: int = 3) -> dict:
    """:func:`batched_rate` in a fresh process, so that its peak memory is its own (host, and on
    CUDA the device's ``max_memory_allocated``)."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(_batched_worker, (env_id, n_epochs, seeds, device, n_steps, batch_size, hidden,
                                                iterations)).result()


def floor_rate(obs_shape: tuple[int, ...], n_actions: int, seeds: int, samples: int, device: str,
               hidden: tuple[int, ...] = (64, 64)) -> float:
    """Samples/s of the compute floor: the engine's own stacked model (tanh actor and critic of widths ``hidden``,
    :class:`~rlbasins.train.batched.StackedPolicy`, same memory layout and kernels) doing forward,
    backward and a fused ``torch.optim.Adam`` step on ``samples`` random observations per seed,
    and nothing else: no env, no sampling, no PPO loss terms, no per-seed masking."""
    from rlbasins.core.policy import ActorCritic, StackedPolicy

    generator = torch.Generator().manual_seed(0)
    modules = [ActorCritic(obs_shape, n_actions, list(hidden), "tanh") for _ in range(seeds)]
    policy = StackedPolicy(modules, torch.device(device))
    optimizer = torch.optim.Adam(list(policy.params.values()), lr=3e-4, foreach=True)
    obs = torch.randn(seeds, samples, *obs_shape, generator=generator).to(device)

    def step(_: int) -> None:
        logits, values = policy(obs)
        loss = logits.square().mean() + values.square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()

    return _rate(step, seeds * samples, seconds=1.0, repeats=5)


def bench_ppo(env_id: str, seed_counts: list[int], n_epochs: int, device: str, sb3_steps: int,
              n_steps: int = 128, batch_size: int = 256, hidden: tuple[int, ...] = (64, 64),
              iterations: int = 3) -> dict:
    """SB3 on every core vs the batched engine at several seed counts, with the floor for each."""
    import os

    import envs  # noqa: F401  (registers the rlbasins/* ids)

    cores = os.cpu_count() or 1
    sb3 = sb3_rate(env_id, n_epochs, sb3_steps, cores, n_steps, batch_size, hidden)
    rows = []
    for seeds in seed_counts:
        row = {"seeds": seeds, **batched_rate_and_memory(env_id, n_epochs, seeds, device, n_steps, batch_size,
                                                         hidden, iterations)}
        floor = row["floor_samples_per_s"] / n_epochs                              # env-steps/s bound
        rows.append(row | {"ratio_to_sb3": row["env_steps_per_s"] / sb3, "floor_env_steps_per_s": floor,
                           "fraction_of_floor": row["env_steps_per_s"] / floor})
    smallest = min(rows, key=lambda row: row["seeds"])
    for row in rows:  # what each extra seed costs, over the smallest run (process, libraries, buffers)
        extra = row["seeds"] - smallest["seeds"]
        for memory in ("rss", "device"):
            grown = (row[f"peak_{memory}_bytes"] or 0) - (smallest[f"peak_{memory}_bytes"] or 0)
            row[f"{memory}_bytes_per_extra_seed"] = grown / extra if extra and row[f"peak_{memory}_bytes"] else None
    return {"what": "ppo", "env": env_id, "device": device, "n_epochs": n_epochs, "n_steps": n_steps,
            "batch_size": batch_size, "hidden_sizes": list(hidden), "num_envs": 8, "cores": cores,
            "torch": torch.__version__, "sb3_all_cores_env_steps_per_s": sb3, "batched": rows}


def _seconds_per_rollout_reward(trainer, device: str) -> float:
    """Seconds a trainer's learned reward takes to score one rollout of every seed as the engine does
    (:meth:`~rlbasins.train.batched.BatchedTrainer._learned_rewards`), on its current observations repeated."""
    S, E, T = trainer.slots, trainer.cfg.env.num_envs, trainer.cfg.ppo.n_steps
    obs = trainer.obs.view(S, 1, E, *trainer.obs.shape[1:]).expand(S, T, E, *trainer.obs.shape[1:]).contiguous()
    actions = torch.zeros(S, T, E, dtype=torch.int64, device=obs.device)

    def call(_: int) -> None:
        trainer._learned_rewards(obs, actions, obs)
        if device == "cuda":
            torch.cuda.synchronize()

    return 1 / _rate(call, 1, seconds=0.5, repeats=5)


def bench_learned_reward(card: Path, seed_counts: list[int], n_epochs: int, device: str, n_steps: int = 128,
                         batch_size: int = 256, hidden: tuple[int, ...] = (64, 64), iterations: int = 5) -> dict:
    """The batched engine on a frozen reward model (its ``card``: the model's env and env kwargs) against the same
    config on the env's own reward, at each seed count: their PPO iterations alternate in one process
    (:func:`alternating_rates`). Also where a learned iteration's time goes: the seconds the model's forward passes
    take alone to score one rollout (as the engine calls them), and their share of the learned iteration."""
    import tempfile

    from rlbasins.core.reward_card import read_card

    card_data, _ = read_card(card)
    env_id, env_kwargs = card_data["env_id"], card_data.get("env_kwargs") or {}
    rows = []
    for seeds in seed_counts:
        configs = {name: bench_config(env_id, n_epochs, seeds, device, 10**9, n_steps, batch_size, hidden,
                                      env_kwargs, model) for name, model in (("env", None),
                                                                             ("learned", str(Path(card).resolve())))}
        with tempfile.TemporaryDirectory() as root:
            trainers = {name: _trainer([cfg], seeds, f"{root}/{name}") for name, cfg in configs.items()}
            rates = alternating_rates(trainers, seeds * configs["env"].rollout_size, iterations, device)
            model_s = _seconds_per_rollout_reward(trainers["learned"], device)        # per iteration, in the model
        learned_s = seeds * configs["env"].rollout_size / rates["learned"]
        rows.append({"seeds": seeds, "env_reward_env_steps_per_s": rates["env"],
                     "learned_reward_env_steps_per_s": rates["learned"], "slowdown": rates["env"] / rates["learned"],
                     "model_seconds_per_iteration": model_s, "model_share_of_learned_iteration": model_s / learned_s})
    return {"what": "learned_reward", "card": str(card), "env": env_id, "env_kwargs": env_kwargs, "device": device,
            "n_epochs": n_epochs, "n_steps": n_steps, "batch_size": batch_size, "hidden_sizes": list(hidden),
            "num_envs": 8, "threads": torch.get_num_threads(), "torch": torch.__version__, "rows": rows}


# --------------------------------------------------------------------------- a grid of settings


GRID_LEARNING_RATES = (1e-4, 2e-4, 3e-4, 5e-4, 7e-4, 1e-3, 2e-3, 3e-3)
GRID_ENTROPY = (0.0, 0.003, 0.01, 0.03)
GRID_NUISANCE = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
"""CueConflict's ``nuisance``: the env kwarg ``bench grid --vary env`` gives each setting (TwoCueCore envs)."""


def bench_grid(env_id: str, settings: int, seeds: int, n_epochs: int, device: str, n_steps: int = 128,
               batch_size: int = 256, iterations: int = 5, vary: str = "ppo") -> dict:
    """Env-steps/s of ``settings`` × ``seeds`` seeds trained as one lockstep batch, each setting its own learning
    rate and entropy coefficient (``vary`` "ppo") or its own env variant (``vary`` "env": the ``nuisance`` of a
    two-cue env, a per-row kwarg, so one batched core steps them all) (:func:`rlbasins.train.train_together`),
    against ``settings × seeds`` seeds of one setting in the same process: PPO iterations of the two alternate,
    the median of ``iterations`` each."""
    import tempfile

    base = bench_config(env_id, n_epochs, seeds, device, 10**9, n_steps, batch_size)

    def member(i: int) -> ExperimentConfig:
        if vary == "env":
            env = base.env.model_copy(update={"kwargs": {"nuisance": GRID_NUISANCE[i % len(GRID_NUISANCE)]}})
            return base.model_copy(update={"name": f"bench-{i}", "env": env})
        return base.model_copy(update={"name": f"bench-{i}", "ppo": base.ppo.model_copy(update={
            "learning_rate": GRID_LEARNING_RATES[i % len(GRID_LEARNING_RATES)],
            "ent_coef": GRID_ENTROPY[i % len(GRID_ENTROPY)]})})

    members = [member(i) for i in range(settings)]
    plain = bench_config(env_id, n_epochs, settings * seeds, device, 10**9, n_steps, batch_size)
    with tempfile.TemporaryDirectory() as root:
        trainers = {"one setting": _trainer([plain], settings * seeds, root), "grid": _trainer(members, seeds, root)}
        rates = alternating_rates(trainers, settings * seeds * plain.rollout_size, iterations, device)
    return {"what": "grid", "env": env_id, "vary": vary, "device": device, "settings": settings,
            "seeds_per_setting": seeds,
            "n_epochs": n_epochs, "n_steps": n_steps, "batch_size": batch_size, "threads": torch.get_num_threads(),
            "torch": torch.__version__, "env_steps_per_s": rates,
            "grid_over_one_setting": rates["grid"] / rates["one setting"]}


# --------------------------------------------------------------------------- engine equivalence


def bench_equivalence(config: Path, seeds: int, steps: int, runs_dir: Path, reps: int = 2000) -> dict:
    """Train ``config`` with ``seeds`` seeds × ``steps`` env steps on both engines (identical
    hyper-parameters) and compare the final greedy training returns: IQM with rliable's 95%
    stratified-bootstrap interval per engine, whether the intervals overlap, and each engine's wall time."""
    from rliable.library import get_interval_estimates
    from rliable.metrics import aggregate_iqm

    from rlbasins.analysis.behavior import analyze_behavior
    from rlbasins.core.config import load_config
    from rlbasins.train import train_experiment

    base = load_config(config)
    engines = {}
    for engine in ("sb3", "batched"):
        cfg = resized(base, seeds, steps, name=f"{base.name}-equivalence-{engine}", engine=engine)
        start = time.perf_counter()
        run = train_experiment(cfg, runs_dir, overwrite=True, show_progress=False)
        seconds = time.perf_counter() - start
        returns = np.array(analyze_behavior(run, show_progress=False).train_return)
        engines[engine] = {"final_returns": returns.tolist(), "train_seconds": seconds, "run": str(run.root)}
    scores = {engine: np.array(row["final_returns"])[:, None] for engine, row in engines.items()}
    point, interval = get_interval_estimates(scores, lambda x: np.array([aggregate_iqm(x)]), reps=reps)
    for engine, row in engines.items():
        row["iqm"] = float(point[engine][0])
        row["iqm_ci95"] = [float(interval[engine][0, 0]), float(interval[engine][1, 0])]
    (sb3_low, sb3_high), (low, high) = engines["sb3"]["iqm_ci95"], engines["batched"]["iqm_ci95"]
    return {"what": "equivalence", "config": str(config), "env": base.env.id, "seeds": seeds, "steps": steps,
            "torch": torch.__version__, "threads": torch.get_num_threads(), "engines": engines,
            "cis_overlap": bool(low <= sb3_high and sb3_low <= high),
            "speedup": engines["sb3"]["train_seconds"] / engines["batched"]["train_seconds"]}


# --------------------------------------------------------------------------- analysis

ANALYSIS_TARGETS_S = {64: 10.0, 512: 120.0}
"""Seeds → the goal for the full analysis on 2 CPU cores (512 seeds: barriers to the medoids only)."""


def bench_analysis(seeds: int, steps: int, run_dir: Path | None = None, device: str = "cpu") -> dict:
    """Wall-clock seconds of every stage of ``rlbasins analyze`` on a run of ``seeds`` seeds.

    Without ``run_dir``, first trains CueConflict (the shipped config's hyper-parameters, batched
    engine, ``steps`` env steps per seed) into a temporary directory; that training is timed
    separately and not counted.
    """
    import tempfile

    from rlbasins.analysis.pipeline import analyze_run
    from rlbasins.core.config import load_config
    from rlbasins.core.store import RunDir
    from rlbasins.train import train_experiment

    with tempfile.TemporaryDirectory() as root:
        trained_s = None
        if run_dir is None:
            shipped = load_config(Path(__file__).resolve().parent.parent / "configs" / "cue_conflict.yaml")
            cfg = resized(shipped, seeds, steps, name="bench_analysis", device=device, engine="batched")
            start = time.perf_counter()
            run = train_experiment(cfg, root, show_progress=False)
            trained_s = time.perf_counter() - start
        else:
            run = RunDir(run_dir)
        start = time.perf_counter()
        summary = analyze_run(run, show_progress=False)
        total = time.perf_counter() - start
    target_seeds = min((n for n in ANALYSIS_TARGETS_S if n >= summary.n_seeds), default=max(ANALYSIS_TARGETS_S))
    target = ANALYSIS_TARGETS_S[target_seeds]
    return {"machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "seeds": summary.n_seeds, "train_seconds": trained_s, "stages": summary.seconds, "total_seconds": total,
            "target_seconds": target, "target_seeds": target_seeds, "fraction_of_target": total / target,
            "behaviour_k": summary.behavior_k, "weight_k": summary.weight_k}
