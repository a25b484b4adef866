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


def _checkpoint_weights(run: RunDir, index: int, step: int | None) -> tuple[dict[str, torch.Tensor], dict, int]:
    """Seed ``index``'s exchange-format weights and metadata at ``step`` (default: its last checkpoint),
    hash-checked, and the step loaded."""
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
    return weights, meta, step


def load_policy(run: RunDir, index: int, step: int | None = None) -> tuple[ActorCritic, int]:
    """Seed ``index``'s policy at ``step`` (default: its last checkpoint), hash-checked."""
    weights, meta, step = _checkpoint_weights(run, index, step)
    policy = policy_template(weights, meta)
    policy.load_state_dict(weights)
    return policy.eval(), step


def load_policies(run: RunDir, seeds: list[int], step: int | None = None,
                  show_progress: bool = False) -> tuple[ActorCritic, list[dict[str, torch.Tensor]], list[int]]:
    """The policies of ``seeds`` at ``step`` (default: each seed's last checkpoint) as
    (a template module: the first seed's policy, exchange-format state dicts, the steps loaded).

    A module is built only for the first seed and for a seed whose weights do not fit it (names, shapes,
    dtypes) — building one per checkpoint cost more than reading it; the state dicts are the same either way."""
    template, expected = None, None
    state_dicts, steps = [], []
    with task_progress("loading checkpoints", len(seeds), enabled=show_progress) as advance:
        for k in seeds:
            weights, meta, loaded = _checkpoint_weights(run, k, step)
            fits = expected is not None and weights.keys() == expected.keys() and all(
                weights[n].shape == v.shape and weights[n].dtype == v.dtype for n, v in expected.items())
            if fits:
                state_dicts.append({name: weights[name] for name in expected})  # the module's key order
            else:
                policy = policy_template(weights, meta)
                policy.load_state_dict(weights)
                policy.eval()
                state_dicts.append(policy.state_dict())
                if template is None:
                    template, expected = policy, state_dicts[0]
            steps.append(loaded)
            advance()
    return template, state_dicts, steps
