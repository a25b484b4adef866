"""Bradley–Terry training of a reward model on labelled segment pairs (Christiano et al. 2017).

P[σ⁰ ≻ σ¹] = sigmoid(Σ r̂(σ⁰) − Σ r̂(σ¹)); the loss is the cross-entropy against the labels.
Ensemble members share the data but not their init; their losses are summed, so their
gradients never mix. Early stopping keeps the epoch with the lowest validation loss; the
ensemble's mean output is then normalised to mean 0, std 1 on the training transitions (the
reward is identified only up to an offset and, through the labeller's temperature, a scale).
Deterministic on CPU for a fixed seed and thread count.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch.nn import functional as F

import envs
from reward_models.config import RewardModelConfig
from reward_models.data import TRAIN, VAL, PreferenceData
from reward_models.nets import RewardModel


def bradley_terry_loss(model: RewardModel, data: PreferenceData, pairs: torch.Tensor) -> torch.Tensor:
    """Cross-entropy [M] of each member on ``pairs`` (indices into the dataset's pairs)."""
    index = data.segment_index(pairs)                                            # [P', 2, L]
    t = data.transitions[index.flatten()]
    returns = model.raw(t.obs, t.actions, t.next_obs).view(-1, *index.shape).sum(-1)  # [M, P', 2]
    logits = returns[..., 0] - returns[..., 1]
    targets = data.labels[pairs].expand_as(logits)
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(1)


@dataclass
class TrainingResult:
    model: RewardModel
    best_epoch: int
    history: list[dict[str, float]] = field(default_factory=list)  # per epoch: train_loss, val_loss


def train_reward_model(cfg: RewardModelConfig, data: PreferenceData) -> TrainingResult:
    """Fit a :class:`RewardModel` to ``data`` as ``cfg.training`` says; returns the best epoch's model."""
    t = cfg.training
    torch.manual_seed(cfg.seed)
    n_actions = envs.GRID_ENVS[cfg.env_id](num_envs=1, **cfg.env_kwargs).n_actions   # TwoDoors: from its keys
    model = RewardModel(cfg, tuple(data.transitions.obs.shape[1:]), n_actions)
    generator = torch.Generator().manual_seed(cfg.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=t.learning_rate, weight_decay=t.weight_decay)
    train, val = data.pairs_in(TRAIN), data.pairs_in(VAL)
    best_loss, best_epoch, best_state = float("inf"), -1, None
    result = TrainingResult(model, -1)
    for epoch in range(t.max_epochs):
        losses = []
        for batch in train[torch.randperm(len(train), generator=generator)].split(t.batch_size):
            loss = bradley_terry_loss(model, data, batch).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item() / cfg.net.ensemble)
        with torch.no_grad():
            val_loss = bradley_terry_loss(model, data, val).mean().item()
        result.history.append({"epoch": epoch, "train_loss": sum(losses) / len(losses), "val_loss": val_loss})
        if val_loss < best_loss:
            best_loss, best_epoch, best_state = val_loss, epoch, copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= t.patience:
            break
    model.load_state_dict(best_state)
    normalize_(model, data)
    result.best_epoch = best_epoch
    return result


@torch.no_grad()
def normalize_(model: RewardModel, data: PreferenceData) -> None:
    """Set the model's offset and scale so its reward has mean 0, std 1 on the training transitions.

    Bradley–Terry fixes the offset of the reward only by convention, and in episodic tasks the offset is
    an incentive: with a sparse task reward R paid on a share p of the training transitions, mean 0
    puts every other step at about −p·R (a living penalty — CueConflict's mix: p ≈ 0.17), which makes
    ending an episode early, e.g. on a distractor, cheaper than under the true reward. It is kept
    deliberately: anchoring ordinary steps at 0 instead turns any small positive error of the model
    into a loop worth more than the task (r / (1 − γ)): for the shipped CueConflict model the
    learned-optimal policy (γ = 0.95) then times out from 42% of training start states (0% as is).
    """
    t = data.transitions[data.split == TRAIN]
    raw = model.raw(t.obs, t.actions, t.next_obs).mean(0)
    model.reward_mean.copy_(raw.mean())
    model.reward_std.copy_(raw.std().clamp(min=1e-8))
