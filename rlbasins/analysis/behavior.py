"""Held-out behaviour of every seed: returns, action distributions and pairwise divergence.

For each seed's final policy:

- returns on the training start distribution and on held-out start states (the env's suite
  in :mod:`envs.suites`), with greedy and with sampled actions, and — for envs that name
  the strategy an episode followed — the fraction of held-out episodes per strategy;
- action distributions on ``n_states`` held-out states, computed for all seeds at once
  (stacked parameters, ``torch.func.vmap``);
- pairwise divergence between seeds: mean total variation between action distributions and
  the fraction of states where their greedy actions agree.

Results go to ``analysis/behavior.json`` and ``analysis/seeds.csv``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch.func import functional_call, stack_module_state, vmap

from envs.grid import label_fractions
from envs.suites import HeldOutSuite, get_suite
from rlbasins.config import ExperimentConfig
from rlbasins.policy import ActorCritic
from rlbasins.progress import task_progress
from rlbasins.seeding import factor_seed
from rlbasins.store import RunDir, atomic_write_bytes, atomic_write_json


def load_policy(run: RunDir, index: int, step: int | None = None) -> tuple[ActorCritic, int]:
    """Seed ``index``'s policy at ``step`` (default: its last checkpoint), hash-checked."""
    store = run.seed(index)
    if step is None:
        last = store.last()
        if last is None:
            raise FileNotFoundError(f"seed {index} of {run.root} has no checkpoint yet")
        step = last.step
    weights, meta = store.load_policy(step)
    n_hidden = len(meta["hidden_sizes"])
    policy = ActorCritic(obs_dim=weights["actor.0.weight"].shape[1],
                         n_actions=weights[f"actor.{2 * n_hidden}.weight"].shape[0],
                         hidden_sizes=meta["hidden_sizes"], activation=meta["activation"])
    policy.load_state_dict(weights)
    return policy.eval(), step


@torch.no_grad()
def stacked_action_probs(policies: list[ActorCritic], obs: torch.Tensor) -> torch.Tensor:
    """Action probabilities of every policy on the same observations.

    obs [N, *obs_shape] → probs [S, N, n_actions] for S policies of one architecture, in one
    vmapped call over stacked parameters.
    """
    params, buffers = stack_module_state(policies)
    template = policies[0]

    def probs_of(p, b):
        return functional_call(template, (p, b), (obs,), strict=True, tie_weights=True)[0].softmax(-1)

    return vmap(probs_of)(params, buffers)


def total_variation_matrix(probs: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """probs [S, N, A] → [S, S] mean over states of ½‖p_i − p_j‖₁, computed in row chunks."""
    rows = [0.5 * (probs[i:i + chunk, None] - probs[None]).abs().sum(-1).mean(-1)
            for i in range(0, probs.shape[0], chunk)]
    return torch.cat(rows)


def mean_to_others(matrix: np.ndarray) -> np.ndarray:
    """[S, S] pairwise matrix with a zero diagonal → [S] each seed's mean over the other seeds."""
    return matrix.sum(1) / max(len(matrix) - 1, 1)


def argmax_agreement_matrix(probs: torch.Tensor) -> torch.Tensor:
    """probs [S, N, A] → [S, S] fraction of states where the greedy actions coincide."""
    onehot = torch.nn.functional.one_hot(probs.argmax(-1), probs.shape[-1]).float()  # [S, N, A]
    return torch.einsum("ina,jna->ij", onehot, onehot) / probs.shape[1]


@dataclass
class Episodes:
    returns: np.ndarray          # [E] undiscounted env-reward returns
    outcomes: list[str | None]   # [E] ``info["outcome"]`` at each episode's end, when the env names it


@torch.no_grad()
def play_episodes(policy: ActorCritic, cfg: ExperimentConfig, reset_seeds: list[int],
                  starts: Sequence | None, suite: HeldOutSuite | None, greedy: bool, action_seed: int) -> Episodes:
    """One episode of one policy per reset seed, all in lockstep.

    ``starts`` (E states) puts episode ``e`` into held-out state ``e`` (via ``suite``) after
    its reset; ``None`` keeps the training start distribution.
    """
    generator = torch.Generator().manual_seed(action_seed)
    envs = [gym.make(cfg.env.id, **cfg.env.kwargs) for _ in reset_seeds]
    obs = []
    for e, (env, seed) in enumerate(zip(envs, reset_seeds, strict=True)):
        first, _ = env.reset(seed=seed)
        obs.append(first if starts is None else suite.start_from(env, starts[e]))
    obs = np.stack(obs)
    returns = np.zeros(len(envs))
    outcomes: list[str | None] = [None] * len(envs)
    active = np.ones(len(envs), dtype=bool)
    while active.any():
        probs = policy.action_probs(torch.as_tensor(obs[active]))
        actions = probs.argmax(-1) if greedy else torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        for e, action in zip(np.flatnonzero(active), actions.tolist(), strict=True):
            next_obs, reward, terminated, truncated, info = envs[e].step(action)
            returns[e] += reward
            obs[e] = next_obs
            if terminated or truncated:
                active[e] = False
                outcomes[e] = info.get("outcome")
    for env in envs:
        env.close()
    return Episodes(returns, outcomes)


def heldout_observations(cfg: ExperimentConfig, suite: HeldOutSuite, states) -> torch.Tensor:
    """Observations [N, *obs_shape] of N held-out states."""
    env = gym.make(cfg.env.id, **cfg.env.kwargs)
    env.reset(seed=0)
    obs = np.stack([suite.start_from(env, state) for state in states])
    env.close()
    return torch.as_tensor(obs)


@dataclass
class BehaviorResult:
    """Per-seed arrays are aligned with ``seeds`` (the seeds that finished training)."""

    env_id: str
    suite: str
    seeds: list[int]
    steps: list[int]
    train_return: list[float]
    heldout_return_greedy: list[float]
    heldout_return_sampled: list[float]
    heldout_return_greedy_std: list[float]
    total_variation: list[list[float]]
    argmax_agreement: list[list[float]]
    n_states: int
    n_episodes: int
    labels: list[str] | None = None
    """Strategy names [A, B, "neither"] when the env labels behaviour; then the two fields below are set."""
    heldout_labels_greedy: list[dict[str, float]] | None = None
    heldout_labels_sampled: list[dict[str, float]] | None = None

    @classmethod
    def load(cls, path: Path) -> BehaviorResult:
        return cls(**json.loads(path.read_text()))


def analyze_behavior(run: RunDir, show_progress: bool = True) -> BehaviorResult:
    """Evaluate every finished seed of ``run``; write ``analysis/behavior.json`` and ``seeds.csv``."""
    manifest = run.manifest()  # first: names a directory that is not a run
    cfg = run.load_config()
    seeds = RunDir.seeds_with_status(manifest, "finished")
    if not seeds:
        raise RuntimeError(f"no finished seed in {run.root}; train it first (`rlbasins train`)")
    suite = get_suite(cfg.env.id)
    held = cfg.analysis.heldout
    eval_seed = factor_seed(cfg.seed, "eval", 0)
    rng = np.random.default_rng(eval_seed)
    probe_env = gym.make(cfg.env.id, **cfg.env.kwargs)
    states = suite.sample_states(probe_env, rng, held.n_states)
    starts = suite.sample_states(probe_env, rng, held.n_episodes)
    probe_env.close()
    reset_seeds_heldout = rng.integers(2**31, size=held.n_episodes).tolist()
    reset_seeds_train = rng.integers(2**31, size=cfg.analysis.train_episodes).tolist()

    policies, steps = [], []
    train, greedy, sampled = [], [], []
    with task_progress("held-out evaluation", len(seeds), enabled=show_progress) as advance:
        for k in seeds:
            policy, step = load_policy(run, k)
            policies.append(policy)
            steps.append(step)
            train.append(play_episodes(policy, cfg, reset_seeds_train, None, None, True, eval_seed))
            greedy.append(play_episodes(policy, cfg, reset_seeds_heldout, starts, suite, True, eval_seed))
            sampled.append(play_episodes(policy, cfg, reset_seeds_heldout, starts, suite, False, eval_seed))
            advance()
    probs = stacked_action_probs(policies, heldout_observations(cfg, suite, states))
    labelled = suite.labels is not None
    result = BehaviorResult(
        env_id=cfg.env.id, suite=suite.description, seeds=seeds, steps=steps,
        train_return=[float(e.returns.mean()) for e in train],
        heldout_return_greedy=[float(e.returns.mean()) for e in greedy],
        heldout_return_sampled=[float(e.returns.mean()) for e in sampled],
        heldout_return_greedy_std=[float(e.returns.std()) for e in greedy],
        total_variation=total_variation_matrix(probs).tolist(),
        argmax_agreement=argmax_agreement_matrix(probs).tolist(),
        n_states=held.n_states, n_episodes=held.n_episodes,
        labels=[*suite.labels, "neither"] if labelled else None,
        heldout_labels_greedy=[label_fractions(e.outcomes, suite.labels) for e in greedy] if labelled else None,
        heldout_labels_sampled=[label_fractions(e.outcomes, suite.labels) for e in sampled] if labelled else None,
    )
    atomic_write_json(run.analysis_dir / "behavior.json", asdict(result))
    _write_seed_table(run.analysis_dir / "seeds.csv", result)
    return result


def _write_seed_table(path: Path, result: BehaviorResult) -> None:
    mean_tv = mean_to_others(np.array(result.total_variation)).tolist()
    rows = zip(result.seeds, result.steps, result.train_return, result.heldout_return_greedy,
               result.heldout_return_sampled, mean_tv, strict=True)
    header = "seed,step,train_return,heldout_return_greedy,heldout_return_sampled,mean_tv_to_others\n"
    body = "".join(",".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in row) + "\n" for row in rows)
    atomic_write_bytes(path, (header + body).encode())
