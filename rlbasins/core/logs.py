"""TensorBoard logs of a run: the tags, reading per-seed curves, and the end-of-training summaries.

Each seed logs to ``tb/seed_<k>/`` while it trains: ``rollout/*`` and ``train/*`` every PPO
iteration, and at every checkpoint its held-out behaviour (``heldout/*`` scalars and an image,
see :mod:`rlbasins.train.monitor`). After training, :func:`write_summaries` adds ``tb/aggregate/`` with
the mean, IQM, min and max across seeds of every per-seed scalar and the custom-scalars layout,
and each seed's hparams (its seeds and the key config values, with its final metrics).
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import struct
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.stats import trim_mean
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.util.tensor_util import make_ndarray

import envs
from rlbasins.core.config import ExperimentConfig

if TYPE_CHECKING:
    import torch
    from torch.utils.tensorboard import SummaryWriter

RETURN_TAG = "rollout/ep_rew_mean"
TRUE_RETURN_TAG = "rollout/true_ep_rew_mean"  # logged beside it when PPO trains on a reward model
EPISODE_LENGTH_TAG = "rollout/ep_len_mean"
BEHAVIOR_IMAGE_TAG = "heldout/behaviour"
AGGREGATE_SUFFIXES = ("_iqm", "_min", "_max")  # besides the mean, which keeps the seeds' tag
HPARAMS_SUFFIX = ".hparams"  # the event file holding a seed's hparams summaries (one per seed run)


def strategy_labels(env_id: str) -> tuple[str, ...]:
    """The strategies an env names on held-out states: (A, B) for the gridworlds of :mod:`envs`, else ()."""
    core_class = envs.GRID_ENVS.get(env_id)
    return tuple(core_class.labels) if core_class is not None else ()


def share_labels(env_id: str) -> list[str]:
    """Labels with a ``heldout/share_<label>`` tag: the strategies and ``"neither"`` (none for other envs)."""
    strategies = strategy_labels(env_id)
    return [*strategies, "neither"] if strategies else []


def share_tag(label: str) -> str:
    """Share of the held-out states where a seed's greedy action moves toward ``label``'s target."""
    return f"heldout/share_{label}"


def divergence_tag(label: str) -> str:
    """Mean total-variation distance from a seed's action distribution to strategy ``label``'s moves."""
    return f"heldout/divergence_to_{label}"


def event_records(path: Path) -> Iterator[bytes]:
    """The records of one TensorBoard event file (TFRecord: a little-endian uint64 length, its CRC, the
    data, the data's CRC).

    The CRCs are not checked: TensorBoard's own reader computes CRC-32C in pure Python when TensorFlow is
    absent, about a second per seed's log, which made reading the logs most of an analysis. A record cut
    off at the end (a writer killed mid-write) ends the file, as it does for TensorBoard.
    """
    data = Path(path).read_bytes()
    offset = 0
    while offset + 12 <= len(data):
        (length,) = struct.unpack_from("<Q", data, offset)
        start = offset + 12
        if start + length + 4 > len(data):
            return
        yield data[start:start + length]
        offset = start + length + 4


def read_scalars(run_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """All scalars of one TensorBoard run: tag → (steps [T], values [T]).

    Reads the run's event files in name order (TensorBoard's order: by creation time), scalars written as
    ``simple_value`` or as scalar tensors. A resumed seed may have logged some steps twice (after its last
    checkpoint and again after resuming); the later value wins. A run that logged nothing (no such folder:
    policies imported from elsewhere) has no scalars.
    """
    if not Path(run_dir).is_dir():
        return {}
    by_tag: dict[str, dict[int, float]] = {}
    tensor_scalars: set[str] = set()          # a writer may name a tag's plugin on its first value only
    for path in sorted(p for p in Path(run_dir).iterdir() if "tfevents" in p.name and p.is_file()):
        for record in event_records(path):
            event = Event.FromString(record)
            if event.WhichOneof("what") != "summary":
                continue
            for value in event.summary.value:
                kind = value.WhichOneof("value")
                if value.metadata.plugin_data.plugin_name == "scalars":
                    tensor_scalars.add(value.tag)
                if kind == "simple_value":
                    number = value.simple_value
                elif kind == "tensor" and value.tag in tensor_scalars:
                    number = float(make_ndarray(value.tensor))
                else:
                    continue
                by_tag.setdefault(value.tag, {})[event.step] = number
    curves = {}
    for tag, by_step in by_tag.items():
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


def write_scalars(writers: list[SummaryWriter], step: int, values: dict[str, list[float]]) -> None:
    """Log ``values`` {tag: one value per writer} at ``step``: one event per writer holding every
    finite value (a NaN, such as a mean over no finished episode, is left out). One event per
    writer rather than one ``add_scalar`` per value is about 7× faster (1,024 writers × 10 tags)."""
    from tensorboard.compat.proto.summary_pb2 import Summary

    for s, writer in enumerate(writers):
        entries = [Summary.Value(tag=tag, simple_value=per_writer[s]) for tag, per_writer in values.items()
                   if np.isfinite(per_writer[s])]
        if entries:
            writer._get_file_writer().add_summary(Summary(value=entries), step)


class SeedScalarLogger:
    """Per-seed TensorBoard scalars written beside a training loop instead of in it.

    :meth:`log` takes {tag: values [S]} on the loop's device, starts their copy to the host and
    returns: on CUDA the copy is ``non_blocking`` and an event marks its end, so the loop never
    waits for the device; a thread waits for the copy and writes (:func:`write_scalars`). Values
    beyond the S writers (the engine's ghost slot) are not written. ``writers`` [S] also serve
    other summaries (held-out images) from the loop's thread. :meth:`close` drains and closes.
    """

    def __init__(self, log_dirs: list[Path]):
        from torch.utils.tensorboard import SummaryWriter

        self.writers = [SummaryWriter(str(log_dir)) for log_dir in log_dirs]
        self._pending: queue.Queue = queue.Queue(maxsize=32)  # a writer that falls behind holds the loop back
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._write, name="tensorboard-scalars", daemon=True)
        self._thread.start()

    def log(self, step: int, scalars: dict[str, torch.Tensor]) -> None:
        import torch

        stacked = torch.stack([v[:len(self.writers)].float() for v in scalars.values()])  # [K, S]
        on_host = stacked.to("cpu", non_blocking=True)
        copied = None
        if stacked.is_cuda:
            copied = torch.cuda.Event()
            copied.record()
        self._pending.put((step, list(scalars), on_host, copied))

    def _write(self) -> None:
        while (item := self._pending.get()) is not None:
            step, tags, on_host, copied = item
            if self._error is not None:
                continue
            try:
                if copied is not None:
                    copied.synchronize()
                write_scalars(self.writers, step, dict(zip(tags, on_host.tolist(), strict=True)))
            except BaseException as error:  # re-raised by close(), in the training thread
                self._error = error

    def close(self) -> None:
        """Write everything logged, close the writers; re-raises an error of the writing thread."""
        if self._thread.is_alive():
            self._pending.put(None)
            self._thread.join()
        for writer in self.writers:
            writer.close()
        if self._error is not None:
            raise self._error


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
        statistics = (values.mean(0), trim_mean(values, 0.25, axis=0), values.min(0), values.max(0))
        stats = dict(zip(("", *AGGREGATE_SUFFIXES), statistics, strict=True))
        for suffix, series in stats.items():
            for step, value in zip(steps.tolist(), series.tolist(), strict=True):
                writer.add_scalar(tag + suffix, value, step)
    writer.close()


def _chart(*tags: str) -> list:
    """A custom-scalars multiline chart of ``tags`` in every run, the aggregate's statistics included."""
    suffixes = "|".join(AGGREGATE_SUFFIXES)
    return ["Multiline", [rf"^{re.escape(tag)}({suffixes})?$" for tag in tags]]


def custom_scalars_layout(cfg: ExperimentConfig) -> dict[str, dict[str, list]]:
    """The custom-scalars layout of a run: {category: {chart title: ["Multiline", [tag regexes]]}}."""
    training = {"Return (the reward PPO trains on)": _chart(RETURN_TAG)}
    if cfg.reward_model is not None:
        training["True return (the env's own reward)"] = _chart(TRUE_RETURN_TAG)
        training["Learned vs true return"] = ["Multiline", [rf"^{re.escape(RETURN_TAG)}$",
                                                            rf"^{re.escape(TRUE_RETURN_TAG)}$"]]
    training["Episode length"] = _chart(EPISODE_LENGTH_TAG)
    layout = {"Training": training}
    if share_labels(cfg.env.id):
        layout["Held-out behaviour"] = {f"Share of held-out states: greedy move toward {label}":
                                        _chart(share_tag(label)) for label in share_labels(cfg.env.id)}
        layout["Divergence to strategies"] = {f"Total variation to {label}": _chart(divergence_tag(label))
                                              for label in strategy_labels(cfg.env.id)}
    return layout


def seed_hparams(cfg: ExperimentConfig, manifest: dict[str, Any], k: int) -> dict[str, int | float | str]:
    """Seed ``k``'s hparams: its index, factor seeds, planted label (planted experiments only) and the
    config values that tell runs apart."""
    entry = manifest["seeds"][str(k)]
    values: dict[str, int | float | str] = {"seed": k, **{f"seed_{factor}": value
                                                         for factor, value in entry["factor_seeds"].items()}}
    if cfg.env.planted:
        values["planted"] = entry["planted"]
    sha256 = manifest["reward_model_sha256"]
    values.update(env_id=cfg.env.id, engine=cfg.engine, learning_rate=cfg.ppo.learning_rate,
                  hidden_sizes="x".join(str(width) for width in cfg.policy.hidden_sizes),
                  n_epochs=cfg.ppo.n_epochs, total_timesteps=cfg.ppo.total_timesteps,
                  reward_model=sha256[:12] if sha256 else "true reward")
    return values


def hparam_metrics(cfg: ExperimentConfig) -> list[str]:
    """The tags shown as hparams metrics: a seed's last value of each (all logged by every seed)."""
    returns = [RETURN_TAG, TRUE_RETURN_TAG] if cfg.reward_model is not None else [RETURN_TAG]
    return returns + [share_tag(label) for label in share_labels(cfg.env.id)]


def write_hparams(run_dir: Path, hparams: dict[str, int | float | str], metrics: list[str]) -> None:
    """Write one run's hparams summaries (experiment, session start and end) into its own directory.

    The metrics are tags the run already logs as scalars (the hparams plugin shows their last
    values). The summaries go to one event file named ``*.hparams`` that replaces any earlier one,
    so writing them again (a resumed run) leaves one hparams entry per run.
    """
    from torch.utils.tensorboard.summary import hparams as hparams_summaries
    from torch.utils.tensorboard.writer import FileWriter

    earlier = list(run_dir.glob(f"*{HPARAMS_SUFFIX}"))
    # written beside the run directory's tb/ (never seen by TensorBoard), then renamed into place
    with tempfile.TemporaryDirectory(dir=run_dir.parent.parent, prefix=".hparams-") as scratch:
        writer = FileWriter(scratch, filename_suffix=HPARAMS_SUFFIX)
        for summary in hparams_summaries(hparams, dict.fromkeys(metrics)):
            writer.add_summary(summary)
        writer.close()
        (written,) = Path(scratch).iterdir()
        os.replace(written, run_dir / written.name)
    for path in earlier:
        if path.name != written.name:
            path.unlink()


def write_summaries(tb_dir: Path, cfg: ExperimentConfig, manifest: dict[str, Any], seeds: list[int]) -> None:
    """End of training: ``tb/aggregate`` (statistics across ``seeds`` and the custom-scalars layout) and
    the hparams of every seed in ``seeds``."""
    from torch.utils.tensorboard import SummaryWriter

    write_aggregate(tb_dir, seeds)
    writer = SummaryWriter(str(tb_dir / "aggregate"))
    writer.add_custom_scalars(custom_scalars_layout(cfg))
    writer.close()
    for k in seeds:
        write_hparams(tb_dir / f"seed_{k}", seed_hparams(cfg, manifest, k), hparam_metrics(cfg))
