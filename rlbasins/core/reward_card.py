"""The card of a frozen reward model (``<name>.json`` beside ``<name>.safetensors``): the small interface through
which the core checks a config's ``reward_model`` without importing :mod:`reward_models`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import torch

from rlbasins.core.store import CorruptFileError, load_verified, read_json

CARD_FORMAT = "rlbasins.RewardModelCard/1"


def card_path(path: Path | str) -> Path:
    """The card of a reward model given its card or its weights path."""
    path = Path(path)
    return path if path.suffix == ".json" else path.with_suffix(".json")


def read_card(path: Path | str) -> tuple[dict[str, Any], Path]:
    """(card, weights path) of a reward model; a missing or malformed card is named in the error."""
    card_file = card_path(path)
    if not card_file.is_file():
        raise FileNotFoundError(f"no reward-model card at {card_file}; build one with `rlbasins rm train` or "
                                "`rlbasins rm build`")
    card = read_json(card_file)
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT or not {"weights", "weights_sha256",
                                                                              "env_id"} <= set(card):
        raise CorruptFileError(card_file, f"not a reward-model card (expected format {CARD_FORMAT} with "
                                          "weights, weights_sha256 and env_id)")
    return card, card_file.parent / card["weights"]


class VerifiedCard(NamedTuple):
    card: dict[str, Any]
    weights: Path                       # the weights file the card names
    tensors: dict[str, torch.Tensor]    # its tensors
    meta: dict[str, Any]                # its header


def load_verified_card(path: Path | str) -> VerifiedCard:
    """A reward model's card and weights, loaded only when the weights file exists and has the card's sha256
    (else :class:`FileNotFoundError` / :class:`~rlbasins.core.store.CorruptFileError`, naming the file). The
    config's check reads the card; building the network is :func:`reward_models.artifact.load_reward_model`'s job."""
    card, weights = read_card(path)
    if not weights.is_file():
        raise FileNotFoundError(f"{card_path(path)} names weights {weights}, which do not exist")
    return VerifiedCard(card, weights, *load_verified(weights, card["weights_sha256"]))
