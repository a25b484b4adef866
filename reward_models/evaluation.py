"""What a reward model has learned: on the training distribution, and on held-out states.

- ``preference_accuracy``: on the test pairs (environments never trained on) whose true
  returns differ, the share the model orders like the true return; ``label_accuracy`` is the
  same against the (noisy) labels.
- ``correlation_train`` / ``correlation_heldout``: Pearson correlation of the model's reward
  with the environment's reward, per transition, on test-split transitions and on episodes
  started from every held-out state (the same policy mix, heading for strategy A or B);
  ``None`` where the true reward is constant there.
- ``cue_preference``: from every held-out state, the model's return for following strategy A
  vs strategy B (expert moves to that strategy's target, one episode): which one it rewards more.
"""

from __future__ import annotations

from typing import Any

import torch

import envs
from reward_models.data import TEST, PreferenceData, Transitions, play
from reward_models.nets import RewardModel


def pearson(x: torch.Tensor, y: torch.Tensor) -> float | None:
    """Pearson correlation of two [N] tensors; None when either is constant."""
    x, y = x.double() - x.double().mean(), y.double() - y.double().mean()
    denominator = (x.pow(2).sum() * y.pow(2).sum()).sqrt()
    return None if denominator < 1e-12 else float((x * y).sum() / denominator)


@torch.no_grad()
def reward_of(model: RewardModel, t: Transitions) -> torch.Tensor:
    return model(t.obs, t.actions, t.next_obs)


def heldout_episodes(model: RewardModel, epsilons: list[float], seed: int) -> tuple[Transitions, torch.Tensor, int]:
    """One episode from every held-out state × policy of the mix × strategy (A, B).

    Returns (transitions, first-episode mask, steps per env); env index = (state, policy, strategy).
    """
    cfg = model.cfg
    core_class = envs.GRID_ENVS[cfg.env_id]
    states = core_class.enumerate_heldout(cfg.env_kwargs.get("size", 5))
    n_policies = len(epsilons) * 2
    core = core_class(num_envs=len(states) * n_policies, **cfg.env_kwargs)
    core.reset_to(states[torch.arange(len(states)).repeat_interleave(n_policies)])
    epsilon = torch.tensor(epsilons, dtype=torch.float32).repeat_interleave(2).repeat(len(states))
    strategy = torch.arange(2).repeat(len(states) * len(epsilons))
    transitions, first = play(core, epsilon, strategy, core.max_steps, torch.Generator().manual_seed(seed))
    return transitions, first, core.max_steps


def evaluate(model: RewardModel, data: PreferenceData) -> dict[str, Any]:
    """The metrics of the module docstring, JSON-able."""
    cfg = model.cfg
    test = data.pairs_in(TEST)
    index = data.segment_index(test)
    predicted = reward_of(model, data.transitions[index.flatten()]).view(index.shape).sum(-1)   # [P, 2]
    true = data.true_returns()[test]
    decided = true[:, 0] != true[:, 1]
    model_prefers_first = predicted[:, 0] > predicted[:, 1]
    labels = data.labels[test]
    labelled = labels != 0.5
    test_transitions = data.transitions[data.split == TEST]

    # held-out: policy mix for the correlation; the pure experts (ε = 0) for the cue preference
    epsilons = cfg.data.epsilons if 0.0 in cfg.data.epsilons else [*cfg.data.epsilons, 0.0]
    heldout, first, steps = heldout_episodes(model, epsilons, cfg.seed)
    learned = reward_of(model, heldout) * first
    per_episode = learned.view(-1, len(epsilons), 2, steps).sum(-1)                      # [states, ε, strategy]
    true_per_episode = (heldout.reward * first).view(-1, len(epsilons), 2, steps).sum(-1)
    expert = epsilons.index(0.0)
    a, b = per_episode[:, expert, 0], per_episode[:, expert, 1]
    labels_ab = envs.GRID_ENVS[cfg.env_id].labels
    share_a, share_b = float((a > b).float().mean()), float((b > a).float().mean())
    return {
        "preference_accuracy": float((model_prefers_first == (true[:, 0] > true[:, 1]))[decided].float().mean()),
        "label_accuracy": float((model_prefers_first.float() == labels)[labelled].float().mean()),
        "test_pairs": len(test), "test_pairs_decided": int(decided.sum()),
        "correlation_train": pearson(reward_of(model, test_transitions), test_transitions.reward),
        "correlation_heldout": pearson(learned[first], heldout.reward[first]),
        "heldout_states": len(a),
        "cue_preference": {
            "prefers": labels_ab[0] if share_a > share_b else labels_ab[1] if share_b > share_a else "neither",
            "share_of_states": {labels_ab[0]: share_a, labels_ab[1]: share_b},
            "learned_return": {labels_ab[0]: float(a.mean()), labels_ab[1]: float(b.mean())},
            "true_return": {labels_ab[0]: float(true_per_episode[:, expert, 0].mean()),
                            labels_ab[1]: float(true_per_episode[:, expert, 1].mean())},
        },
    }
