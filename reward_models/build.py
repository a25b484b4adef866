"""One call from a recipe to a frozen, evaluated reward model on disk."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from reward_models.artifact import save_reward_model
from reward_models.config import RewardModelConfig
from reward_models.data import TEST, TRAIN, VAL, collect_preferences
from reward_models.evaluation import evaluate
from reward_models.training import train_reward_model
from rlbasins.core.store import atomic_write_bytes, sha256_bytes


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread inside: small nets train fastest so, and the floats do not depend on the
    machine's core count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def build_reward_model(cfg: RewardModelConfig, out: Path | str, data_dir: Path | str | None = None) -> dict[str, Any]:
    """Collect preferences, train, evaluate and write ``out`` (card; weights beside it); returns the card.

    The dataset's sha256 goes on the card; with ``data_dir`` the dataset itself is written there as
    ``<name>.data.safetensors`` (it is MBs, so it is not kept beside the model).
    """
    with one_thread():
        data = collect_preferences(cfg)
        result = train_reward_model(cfg, data)
        metrics = evaluate(result.model, data)
    data_bytes = data.to_bytes()
    data_file = None
    if data_dir is not None:
        data_file = Path(data_dir) / f"{Path(out).stem}.data.safetensors"
        atomic_write_bytes(data_file, data_bytes)
    extra = {
        "config": cfg.model_dump(mode="json"),
        "data": {"sha256": sha256_bytes(data_bytes), "file": str(data_file) if data_file else None,
                 "transitions": len(data.transitions.reward),
                 "pairs": {name: len(data.pairs_in(split)) for name, split in (("train", TRAIN), ("val", VAL),
                                                                               ("test", TEST))}},
        "training": {"best_epoch": result.best_epoch, "epochs_run": len(result.history),
                     "val_loss": result.history[result.best_epoch]["val_loss"],
                     "train_loss": result.history[result.best_epoch]["train_loss"]},
        "metrics": metrics,
    }
    return save_reward_model(result.model, out, extra)
