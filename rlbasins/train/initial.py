"""Every seed's initial network: an ordinary draw, or a point of the init plane.

Without ``seeds.init_plane`` seed k's network is drawn from its ``init`` factor seed alone (torch's
default init, then SB3's orthogonal init when ``policy.ortho_init``, every weight matrix times
``policy.init_scale`` when set). With it, seed k = i·R + j of an
R × R grid starts from

    θ = θ0 + a_i·u + b_j·v,   a_i, b_j evenly spaced in [−span, span] (a_i = b_i),

where θ0 is the ordinary initialisation of init-factor index 0 and the directions u, v are drawn from
the master seed alone (every grid point shares them):

- ``inits`` (default): u = θ1 − θ0 and v = θ2 − θ0, with θ1, θ2 the ordinary initialisations of
  init-factor indices 1 and 2 (the networks seeds 1 and 2 of an ordinary run with the same master
  seed start from). The plane passes through three genuine initialisations, at (a, b) = (0, 0),
  (1, 0) and (0, 1): ``span`` is measured in "distances between two inits", the scale at which
  ordinary seeds differ, and the directions respect the architecture's per-layer scales (biases stay
  0, the 0.01-gain logits head stays small) without any choice of normalisation. Points other than
  those three are not draws from the init distribution: the midpoint of two orthogonal inits has
  about 1/√2 of their norm, a corner at span 1 about √3 times θ0's.
- ``filter_normalized``: Gaussian directions with each neuron's incoming weights (a row of a weight
  matrix) rescaled to the norm of that row of θ0 and biases 0, as in Li et al. 2018 ("Visualizing the
  loss landscape of neural nets"); a = 1 moves every neuron by its own weight norm. Drawn from the
  ``init_plane`` stream of the master seed.

Parameters are combined in float64 and rounded to float32 once. :func:`initial_state_dict` is the one
place an engine gets a seed's starting weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from rlbasins.core.config import ExperimentConfig, PolicyConfig
from rlbasins.core.init_plane import grid_point, plane_coordinates
from rlbasins.core.policy import ActorCritic
from rlbasins.core.seeding import factor_seed
from rlbasins.train.base import SeedTask

StateDict = dict[str, torch.Tensor]


def ordinary_state_dict(policy: PolicyConfig, init_seed: int, obs_shape: Sequence[int],
                        n_actions: int) -> StateDict:
    """The network an ordinary seed with ``init`` factor seed ``init_seed`` starts from."""
    torch.manual_seed(init_seed)
    module = ActorCritic.from_config(policy, obs_shape, n_actions)
    weights = (module.ortho_init_() if policy.ortho_init else module).state_dict()
    if policy.init_scale is None:
        return weights
    return {name: value * policy.init_scale if value.dim() >= 2 else value for name, value in weights.items()}


def _filter_normalized(reference: StateDict, seed: int) -> StateDict:
    """A Gaussian direction with each row of every weight matrix (each filter [in, 3, 3] of a convolution) at
    the norm of that row of ``reference``; biases 0 (Li et al. 2018)."""
    generator = torch.Generator().manual_seed(seed)
    direction = {}
    for name, value in reference.items():
        if value.dim() < 2:
            direction[name] = torch.zeros_like(value)
            continue
        noise = torch.randn(value.shape, generator=generator, dtype=torch.float64)
        rows = tuple(range(1, value.dim()))
        direction[name] = noise * (value.norm(dim=rows, keepdim=True) / noise.norm(dim=rows, keepdim=True))
    return direction


def plane_basis(cfg: ExperimentConfig, obs_shape: Sequence[int],
                n_actions: int) -> tuple[StateDict, StateDict, StateDict]:
    """(θ0, u, v) of ``cfg.seeds.init_plane`` in float64, each a state dict of the exchange format."""
    plane = cfg.seeds.init_plane

    def init(index: int) -> StateDict:
        weights = ordinary_state_dict(cfg.policy, factor_seed(cfg.seed, "init", index), obs_shape, n_actions)
        return {name: value.double() for name, value in weights.items()}

    origin = init(0)
    if plane.directions == "inits":
        first, second = init(1), init(2)
        return origin, {n: first[n] - origin[n] for n in origin}, {n: second[n] - origin[n] for n in origin}
    return origin, *(_filter_normalized(origin, factor_seed(cfg.seed, "init_plane", d)) for d in (0, 1))


def initial_state_dict(cfg: ExperimentConfig, task: SeedTask, obs_shape: Sequence[int],
                       n_actions: int) -> StateDict:
    """Seed ``task``'s initial weights (float32): its ordinary draw, or its point of ``seeds.init_plane``."""
    plane = cfg.seeds.init_plane
    if plane is None:
        return ordinary_state_dict(cfg.policy, task.seeds.init, obs_shape, n_actions)
    origin, u, v = plane_basis(cfg, obs_shape, n_actions)
    coordinates = plane_coordinates(plane)
    i, j = grid_point(plane, task.index)
    a, b = float(coordinates[i]), float(coordinates[j])
    return {name: (origin[name] + a * u[name] + b * v[name]).float() for name in origin}
