"""The 2-D init plane of ``seeds.init_plane``: its grid coordinates and the grid point of each seed.

Training (:mod:`rlbasins.train.initial`) builds each seed's initial weights at its point; the init-space
map (:mod:`rlbasins.analysis.init_map`) lays the seeds' outcomes out on the same grid."""

from __future__ import annotations

import numpy as np

from rlbasins.core.config import InitPlaneConfig


def plane_coordinates(plane: InitPlaneConfig) -> np.ndarray:
    """[R] the grid's coordinates a_0 … a_{R−1} (also b): evenly spaced from −span to span."""
    return np.linspace(-plane.span, plane.span, plane.resolution)


def grid_point(plane: InitPlaneConfig, index: int) -> tuple[int, int]:
    """Seed ``index`` → its grid cell (i, j): row i (coordinate a_i), column j (coordinate b_j)."""
    return divmod(index, plane.resolution)
