"""TensorBoard logs of a run: reading per-seed curves and writing the aggregate run.

Each seed logs to ``tb/seed_<k>/`` while it trains (SB3's TensorBoard logger). After training,
:func:`write_aggregate` adds ``tb/aggregate/`` with the mean, IQM, min and max across seeds of
every per-seed scalar, so that TensorBoard shows the population next to the individuals.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from scipy.stats import trim_mean
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

RETURN_TAG = "rollout/ep_rew_mean"
TRUE_RETURN_TAG = "rollout/true_ep_rew_mean"  # logged beside it when PPO trains on a reward model


def read_scalars(run_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """All scalars of one TensorBoard run: tag → (steps [T], values [T]).

    A resumed seed may have logged some steps twice (after its last checkpoint and again after
    resuming); the later value wins.
    """
    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    curves = {}
    for tag in accumulator.Tags()["scalars"]:
        by_step = {event.step: event.value for event in accumulator.Scalars(tag)}
        steps = np.array(sorted(by_step), dtype=np.int64)
        curves[tag] = (steps, np.array([by_step[s] for s in steps], dtype=np.float64))
    return curves


def _on_common_steps(curves: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """[(steps, values)] per seed → (common steps [T], values [S, T])."""
    common = sorted(set.intersection(*(set(steps.tolist()) for steps, _ in curves)))
    values = np.stack([np.interp(common, steps, vals) for steps, vals in curves])
    return np.array(common, dtype=np.int64), values


def seed_curves(tb_dir: Path, seeds: list[int], tag: str = RETURN_TAG) -> tuple[np.ndarray, np.ndarray]:
    """One tag for many seeds on their common steps: (steps [T], values [S, T])."""
    curves = [read_scalars(tb_dir / f"seed_{k}").get(tag) for k in seeds]
    missing = [k for k, c in zip(seeds, curves, strict=True) if c is None]
    if missing:
        raise FileNotFoundError(f"no {tag!r} logged for seeds {missing} in {tb_dir}")
    return _on_common_steps(curves)


def write_aggregate(tb_dir: Path, seeds: list[int]) -> None:
    """Write ``tb/aggregate``: for every scalar all seeds logged, its mean across seeds under the same
    tag (so it overlays the seeds' curves) and ``<tag>_iqm``, ``_min``, ``_max``."""
    from torch.utils.tensorboard import SummaryWriter

    per_seed = [read_scalars(tb_dir / f"seed_{k}") for k in seeds]
    tags = set.intersection(*(set(curves) for curves in per_seed)) if per_seed else set()
    shutil.rmtree(tb_dir / "aggregate", ignore_errors=True)  # rewritten whole, never appended to
    writer = SummaryWriter(str(tb_dir / "aggregate"))
    for tag in sorted(tags):
        steps, values = _on_common_steps([curves[tag] for curves in per_seed])
        # IQM as rliable defines it: the mean of the middle 50% (25% trimmed from each end)
        stats = {"": values.mean(0), "_iqm": trim_mean(values, 0.25, axis=0),
                 "_min": values.min(0), "_max": values.max(0)}
        for suffix, series in stats.items():
            for step, value in zip(steps.tolist(), series.tolist(), strict=True):
                writer.add_scalar(tag + suffix, value, step)
    writer.close()
