"""The frozen artifact: ``<name>.safetensors`` (weights) + ``<name>.json`` (the card).

The weights file's header holds the recipe, observation shape and view, so the file alone
rebuilds the exact reward function and its sha256 covers all of it. The card, for people,
adds the dataset hash, training history, metrics and that sha256; :func:`load_reward_model`
refuses weights whose sha256 differs from the card's, naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reward_models.nets import FORMAT, RewardModel
from rlbasins.core.reward_card import CARD_FORMAT, card_path, load_verified_card
from rlbasins.core.store import (
    CorruptFileError,
    atomic_write_bytes,
    atomic_write_json,
    encode_tensors,
    sha256_bytes,
)


def save_reward_model(model: RewardModel, path: Path | str, extra: dict[str, Any]) -> dict[str, Any]:
    """Write the weights and the card (``extra``: data hash, metrics, ...) beside each other; returns the card."""
    card_file = card_path(path)
    data = encode_tensors(model.state_dict(), model.metadata())
    weights = card_file.with_suffix(".safetensors")
    atomic_write_bytes(weights, data)
    net = model.cfg.net
    card = {
        "format": CARD_FORMAT, "env_id": model.cfg.env_id, "env_kwargs": model.cfg.env_kwargs,
        "view": model.cfg.resolved_view, "inputs": list(net.inputs),
        "architecture": {"arch": net.arch, "hidden_sizes": list(net.hidden_sizes), "channels": net.channels,
                         "ensemble": net.ensemble, "obs_shape": list(model.obs_shape), "n_actions": model.n_actions,
                         "parameters": sum(p.numel() for p in model.parameters())},
        "weights": weights.name, "weights_sha256": sha256_bytes(data), **extra,
    }
    atomic_write_json(card_file, card)
    return card


@dataclass
class LoadedRewardModel:
    model: RewardModel      # in eval mode, parameters frozen
    card: dict[str, Any]
    sha256: str             # of the weights file


def load_reward_model(path: Path | str) -> LoadedRewardModel:
    """Load a frozen reward model from its card (or weights) path, refusing a sha256 mismatch."""
    card, weights, tensors, meta = load_verified_card(path)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CorruptFileError(weights, f"not a reward model (expected format {FORMAT} in its header)")
    if meta["config"]["env_id"] != card["env_id"]:
        raise CorruptFileError(card_path(path), f"the card names env {card['env_id']} but the weights were trained "
                                                f"on {meta['config']['env_id']}")
    model = RewardModel.from_metadata(meta)
    model.load_state_dict(tensors)
    model.eval().requires_grad_(False)
    return LoadedRewardModel(model, card, card["weights_sha256"])
