"""Loading trained policies back from a run's checkpoints (weights only: safetensors, never pickle)."""

from __future__ import annotations

import torch

from rlbasins.core.policy import ActorCritic
from rlbasins.core.progress import task_progress
from rlbasins.core.store import RunDir


def policy_template(weights: dict[str, torch.Tensor], meta: dict) -> ActorCritic:
    """An :class:`ActorCritic` shaped like exchange-format ``weights`` (their metadata names the rest).

    Checkpoints written before CNN policies have no ``obs_shape``: they are MLPs whose input size is
    their first weight's.
    """
    conv_channels = meta.get("conv_channels") or []
    obs_shape = meta.get("obs_shape") or [weights["actor.0.weight"].shape[1]]
    head = 2 * len(conv_channels) + bool(conv_channels) + 2 * len(meta["hidden_sizes"])  # Flatten after convs
    return ActorCritic(obs_shape, n_actions=weights[f"actor.{head}.weight"].shape[0],
                       hidden_sizes=meta["hidden_sizes"], activation=meta["activation"],
                       conv_channels=conv_channels)


def load_policy(run: RunDir, index: int, step: int | None = None) -> tuple[ActorCritic, int]:
    """Seed ``index``'s policy at ``step`` (default: its last checkpoint), hash-checked."""
    store = run.seed(index)
    if step is None:
        last = store.last()
        if last is None:
            raise FileNotFoundError(f"seed {index} of {run.root} has no checkpoint yet")
        step = last.step
    available = [e.step for e in store.entries()]
    if step not in available:
        raise FileNotFoundError(f"seed {index} of {run.root} has no checkpoint at step {step}; "
                                f"it has {available}")
    weights, meta = store.load_policy(step)
    policy = policy_template(weights, meta)
    policy.load_state_dict(weights)
    return policy.eval(), step


def load_policies(run: RunDir, seeds: list[int], step: int | None = None,
                  show_progress: bool = False) -> tuple[ActorCritic, list[dict[str, torch.Tensor]], list[int]]:
    """The policies of ``seeds`` at ``step`` (default: each seed's last checkpoint) as
    (a template module, exchange-format state dicts, the steps loaded)."""
    policies, steps = [], []
    with task_progress("loading checkpoints", len(seeds), enabled=show_progress) as advance:
        for k in seeds:
            policy, loaded = load_policy(run, k, step)
            policies.append(policy)
            steps.append(loaded)
            advance()
    return policies[0], [p.state_dict() for p in policies], steps
