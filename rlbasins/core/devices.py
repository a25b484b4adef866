"""Choosing the torch device from a config's ``device: auto|cpu|cuda``, and counting host syncs."""

from __future__ import annotations

from collections import Counter

import torch
from torch.overrides import TorchFunctionMode


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: cuda was requested but CUDA is not available; use auto or cpu")
    return torch.device(name)


# Tensor methods and torch functions that make the host wait for the device: reading values
# (item, bool(), int(), float(), indexing a Python sequence with a tensor, numpy conversion),
# copies to the host, and ops whose output size depends on the data.
_SYNCING = frozenset({"item", "tolist", "numpy", "cpu", "__bool__", "__int__", "__float__", "__index__", "__array__",
                      "nonzero", "argwhere", "masked_select", "unique", "unique_consecutive", "equal", "allclose"})


def _bool_index(index: object) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(part, torch.Tensor) and part.dtype == torch.bool for part in parts)


class HostSyncCounter(TorchFunctionMode):
    """Counts the calls in its ``with`` block that would stall the host on a GPU.

    On the CPU these calls cost nothing, so a loop can be full of them and still be fast; on CUDA
    each one waits for every queued kernel. Counting them on a CPU machine therefore tests a
    loop's GPU readiness without a GPU (``counts``: op name → calls; ``total``). Seen: value reads
    (``item``, ``bool()``, ``int()``, ``float()``, ``tolist``, ``numpy``), copies to the host
    (``cpu``), data-dependent shapes (``nonzero``, ``unique``, boolean-mask indexing). Not seen:
    ``to("cpu")`` (on a CPU machine it cannot be told from ``to(device)``) and the calls inside
    torch's own ops.
    """

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in ("__getitem__", "__setitem__"):  # x[mask] and x[mask] = tensor (a scalar fill does not sync)
            syncs = _bool_index(args[1]) and (name == "__getitem__" or isinstance(args[2], torch.Tensor))
            name += " with a boolean mask"
        else:
            syncs = name in _SYNCING
        if syncs:
            self.counts[name] += 1
        return func(*args, **kwargs)
