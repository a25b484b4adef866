"""Per-run seeds, one per factor, derived from the experiment's master seed.

A PPO run draws randomness from four independent sources (*factors*):

- ``init``      — the network initialisation;
- ``env``       — environment resets and dynamics;
- ``action``    — action sampling during rollouts;
- ``minibatch`` — the order of samples in PPO's minibatches.

Each factor's seed comes from ``numpy.random.SeedSequence(master, spawn_key=(factor_key, index))``,
so it depends only on the master seed, the factor's name and that factor's own index. Varying
one factor's index leaves the other factors' seeds bit-identical — the basis of the
"same data, different init" experiments, and of the init × data grid (``seeds.grid``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from rlbasins.core.config import SEED_FACTORS, SeedGrid


def _factor_key(factor: str) -> int:
    """A stable 32-bit key for a factor name (stable across Python processes, unlike ``hash``)."""
    return int.from_bytes(hashlib.sha256(factor.encode()).digest()[:4], "little")


def factor_seed(master: int, factor: str, index: int) -> int:
    """The seed of stream ``factor`` for run ``index`` under ``master``; a uint32 for numpy and torch.

    ``factor`` is one of :data:`~rlbasins.core.config.SEED_FACTORS`, or the name of another stream
    that must not collide with them (e.g. ``"heldout"`` for the evaluation states).
    """
    sequence = np.random.SeedSequence(master, spawn_key=(_factor_key(factor), index))
    return int(sequence.generate_state(1, dtype=np.uint32)[0])


@dataclass(frozen=True)
class SeedFactors:
    """The four factor seeds of one PPO run."""

    init: int
    env: int
    action: int
    minibatch: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def run_seeds(master: int, indices: dict[str, int]) -> SeedFactors:
    """Seeds for one run given each factor's index, e.g. ``{"init": 3, "env": 0, ...}``."""
    return SeedFactors(**{f: factor_seed(master, f, indices[f]) for f in SEED_FACTORS})


def factor_indices(index: int, vary: Sequence[str], grid: SeedGrid | None = None) -> dict[str, int]:
    """Each factor's index for seed ``index`` — the one place a seed index becomes factor indices.

    Without a grid, factors in ``vary`` use ``index`` itself. On a ``grid`` of D data columns, seed k sits
    in row k // D and column k % D: ``init`` uses the row, env, action and minibatch the column (so a row
    shares one initialisation and a column one data stream). Factors not in ``vary`` use index 0 either way.
    """
    if grid is None:
        row = column = index
    else:
        row, column = divmod(index, grid.data)
    return {f: 0 if f not in vary else row if f == "init" else column for f in SEED_FACTORS}


def experiment_seeds(master: int, count: int, vary: Sequence[str], grid: SeedGrid | None = None
                     ) -> list[SeedFactors]:
    """Seeds for runs ``0..count-1`` (see :func:`factor_indices`)."""
    return [run_seeds(master, factor_indices(k, vary, grid)) for k in range(count)]
