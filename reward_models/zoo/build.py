"""Rebuild the shipped reward models, deterministically, from their recipes.

    python -m reward_models.zoo.build [NAME ...]     # or: rlbasins rm build [NAME ...]

Each ``reward_models/zoo/<name>.yaml`` is a :class:`~reward_models.config.RewardModelConfig`;
building it writes ``<name>.safetensors`` and ``<name>.json`` beside it (and the dataset to
``runs/rm/``). On CPU the weights are bit-identical to the shipped ones. A card's ``ppo`` section
(written by ``rlbasins rm ppo``) is kept while the weights stay the same.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from reward_models.build import build_reward_model
from reward_models.config import load_rm_config
from rlbasins.core.store import atomic_write_json, read_json

ZOO_DIR = Path(__file__).resolve().parent


def zoo_names() -> list[str]:
    return sorted(path.stem for path in ZOO_DIR.glob("*.yaml"))


def build_zoo(names: list[str] | None = None, data_dir: Path | str = "runs/rm") -> dict[str, dict[str, Any]]:
    """Build the named zoo models (default: all); returns their cards."""
    unknown = set(names or []) - set(zoo_names())
    if unknown:
        raise FileNotFoundError(f"no zoo recipe {', '.join(sorted(unknown))}; the zoo has {', '.join(zoo_names())}")
    cards = {}
    for name in names or zoo_names():
        card_file = ZOO_DIR / f"{name}.json"
        old = read_json(card_file) if card_file.exists() else {}
        card = build_reward_model(load_rm_config(ZOO_DIR / f"{name}.yaml"), card_file, data_dir)
        if "ppo" in old and old.get("weights_sha256") == card["weights_sha256"]:
            card["ppo"] = old["ppo"]
            atomic_write_json(card_file, card)
        cards[name] = card
    return cards


if __name__ == "__main__":
    for name, card in build_zoo(sys.argv[1:] or None).items():
        print(f"{name}: weights sha256 {card['weights_sha256'][:12]}…, metrics {card['metrics']}")
