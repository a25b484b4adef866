"""Does PPO trained on a reward model do the true task? Greedy true return on training states.

The acceptance measure of a shipped model: every seed of a run trained with ``reward_model``
plays one greedy episode from each of ``n_states`` training-distribution start states; its mean
*environment* return is compared with the true-reward optimum: the reward of reaching the training
target (outcome 3, both strategies satisfied), which every training start state allows within
the step limit (the target is at most 2·(size − 1) steps away, plus 2 to step around the
distractor, < 3·size).
"""

from __future__ import annotations

from typing import Any

import torch

import envs
from envs.grid import run_episodes
from rlbasins.core.config import load_config
from rlbasins.core.store import RunDir


@torch.no_grad()
def true_return_of_run(run: RunDir, n_states: int = 1000, seed: int = 12345) -> dict[str, Any]:
    """Per-seed greedy true return on ``n_states`` training start states vs the optimum (JSON-able)."""
    from rlbasins.core.checkpoints import load_policy

    cfg = load_config(run.config_path)
    core_class = envs.GRID_ENVS[cfg.env.id]
    states = core_class.training_states(n_states, seed, **cfg.env.kwargs)
    core = core_class(num_envs=n_states, **cfg.env.kwargs)
    best = float(core.reward_of(torch.tensor([3]))[0])
    manifest = run.manifest()
    per_seed = []
    for k in RunDir.seeds_with_status(manifest, "finished"):
        policy, _ = load_policy(run, k)
        _, returns = run_episodes(core, states, lambda obs, state, policy=policy: policy(obs)[0].argmax(-1))
        per_seed.append(float(returns.mean()))
    return {"run": str(run.root), "env_id": cfg.env.id, "engine": cfg.engine, "seeds": len(per_seed),
            "total_timesteps": cfg.checkpoint_steps()[-1], "n_states": n_states, "optimum": best,
            "true_return_per_seed": per_seed, "fraction_of_optimum_mean": sum(per_seed) / len(per_seed) / best,
            "fraction_of_optimum_min": min(per_seed) / best}
