"""Could training tell the two strategies' features apart? The symmetry test of a two-strategy env.

A seed can only settle on one strategy if the two strategies' input features get different
gradients in training. In a two-cue env (:class:`envs.two_cues.TwoCueCore`: CueConflict,
TaskOrProxy, TwoDoors) strategy A reads the cue-A planes and strategy B the cue-B planes. If those planes
are equal in every training state (CueConflict's default layout: the target is red *and*
square), the first layer's weights on them get identical gradients, Adam keeps their updates
identical, and what a policy does on a held-out conflict is fixed by its random initial
difference: no data stream can move it. That design must fail this test.

The test reads a trained run, no extra training: for each seed and each first layer (actor and
critic; a Linear over the flat planes or a Conv2d, both with the input channel on axis 1), the
weight change ΔW from step 0 to the last checkpoint, split into its cue-A block Δ_A and its
cue-B block Δ_B (matching planes: value 1 with value 1, value 0 with value 0). Its asymmetry is

    ‖Δ_A − Δ_B‖ / ‖(Δ_A + Δ_B) / 2‖       (Frobenius norms; 0: the cues trained as one)

which is of float rounding size (about 1e-6) when the planes coincide and of order 0.1–1 when
training treats them differently. A run passes when every seed's asymmetry is at least
``threshold`` (default 0.01, four orders of magnitude above rounding). This is a necessary
condition for natural basins, not a sufficient one: it says the data *can* break the tie.

GoalOrPlace's strategies read different planes of different structure: the goal strategy reads the
goal plane, the place strategy the agent's position. With the goal always in the corner
(``region: 1``) the goal plane is one fixed image, so its first-layer weights off the corner get no
gradient and the corner's weights move as a bias does: training cannot teach a policy to look at the
goal. The test there (:data:`GOAL_STATISTIC`) is the part of the goal plane's weight change that
differs between the cells the goal can occupy in training (its change minus the mean over those
cells: exactly 0 with ``region: 1``), relative to the agent plane's change. A Conv2d shares its
weights across cells, so this test needs a Linear first layer (an MLP policy).

Passing it says the goal is learned *inside* the region. Every held-out goal lies outside it, where the goal
plane is 0 in every training state unless ``random_percent`` puts training goals there: an MLP's first-layer
weights there then get no gradient and stay at their initial values, so the policy reads a held-out goal
through untrained weights. The result records the largest change of those weights per seed
(:attr:`SymmetryResult.heldout_goal_change`).
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

from rlbasins.core.checkpoints import load_policies
from rlbasins.core.config import ExperimentConfig
from rlbasins.core.results import Result
from rlbasins.core.store import RunDir

FIRST_LAYERS = ("actor.0.weight", "critic.0.weight")
"""The exchange-format names of the two trunks' first layers (Linear or Conv2d)."""

DEFAULT_THRESHOLD = 0.01
PAIRED_STATISTIC = "‖Δ_A − Δ_B‖ / ‖(Δ_A + Δ_B)/2‖"
"""The two-cue envs' asymmetry: Δ_A, Δ_B the first-layer weight changes on the two cues' matched planes."""
GOAL_STATISTIC = "‖Δ_goal − mean over region cells‖ / ‖Δ_agent‖"
"""GoalOrPlace's: Δ_goal the goal plane's weight change on the cells of the training goal's region,
Δ_agent the agent plane's (the place strategy's feature)."""


@dataclass(frozen=True)
class SymmetryResult(Result):
    """The symmetry test of one run (see the module docstring); saved as ``analysis/symmetry.json``."""

    env_id: str
    cue_labels: tuple[str, str]                             # strategy A, strategy B
    cue_channels: tuple[tuple[int, ...], tuple[int, ...]]   # input channels of cue A and of cue B
    seeds: list[int]
    steps: list[int]                                        # the checkpoint compared with step 0, per seed
    asymmetry: dict[str, list[float]]                       # first layer → per seed :attr:`statistic`
    shared_change: dict[str, list[float]]                   # first layer → per seed, the statistic's denominator
    threshold: float
    min_asymmetry: float                                    # over seeds and first layers
    passed: bool                                            # min_asymmetry ≥ threshold
    statistic: str = PAIRED_STATISTIC                       # PAIRED_STATISTIC or GOAL_STATISTIC
    heldout_goal_change: list[float] | None = None
    """GoalOrPlace: per seed, the largest |ΔW| of the first layers' goal-plane weights on cells outside the
    training region, where every held-out goal lies (0: held-out goals are read through untrained weights)."""

    @property
    def reads_goal_plane(self) -> bool:
        """GoalOrPlace's test (:data:`GOAL_STATISTIC`) rather than the two-cue envs'."""
        return self.statistic == GOAL_STATISTIC


def _core(env_id: str, env_kwargs: dict | None):
    """The batched gridworld core of ``env_id``, or None for an env without one."""
    env = gym.make(env_id, **(env_kwargs or {}))
    core = getattr(env.unwrapped, "core", None)
    env.close()
    return core


def _has_cue_planes(core) -> bool:
    return getattr(core, "cue_channels", None) is not None


def _reads_goal_region(core) -> bool:
    """Whether the goal strategy of ``core`` reads a goal plane in a region (GoalOrPlace)."""
    return getattr(core, "region", None) is not None


def _checked_core(env_id: str, env_kwargs: dict | None, goal_region: bool = False):
    """The core of ``env_id`` if it has paired cue planes (or, with ``goal_region``, reads a goal plane in a
    region); ValueError otherwise."""
    core = _core(env_id, env_kwargs)
    if not (_has_cue_planes(core) or (goal_region and _reads_goal_region(core))):
        raise ValueError(f"{env_id} has no paired cue planes, so it has no two-cue symmetry test; "
                         "it is defined for the two-cue envs (rlbasins/CueConflict-v0, rlbasins/TaskOrProxy-v0, "
                         "rlbasins/TwoDoors-v0) and, reading the goal plane cell by cell, rlbasins/GoalOrPlace-v0")
    return core


def cue_channels(env_id: str, env_kwargs: dict | None = None) -> tuple[tuple[str, str], tuple[tuple[int, ...], ...]]:
    """(strategy labels, (cue-A input channels, cue-B input channels)) of a two-cue env.

    Raises ValueError for an env without paired cue planes (CartPole, GoalOrPlace).
    """
    core = _checked_core(env_id, env_kwargs)
    return tuple(core.labels), core.cue_channels


def has_symmetry_test(cfg: ExperimentConfig) -> bool:
    """Whether the symmetry test is defined for ``cfg``: a two-cue env, or GoalOrPlace with an MLP policy."""
    core = _core(cfg.env.id, cfg.env.kwargs)
    return _has_cue_planes(core) or (_reads_goal_region(core) and cfg.policy.conv_channels is None)


def weight_asymmetry(initial: torch.Tensor, final: torch.Tensor, channels_a: tuple[int, ...],
                     channels_b: tuple[int, ...], obs_shape: tuple[int, ...]) -> tuple[float, float]:
    """(asymmetry, shared change) of one first layer: ``initial``/``final`` weights [out, C·H·W]
    (Linear) or [out, C, k, k] (Conv2d) of an input with ``obs_shape`` [C, H, W]."""
    delta = (final - initial).double()
    if delta.dim() == 2:                                     # Linear over the flattened planes
        delta = delta.reshape(delta.shape[0], *obs_shape)
    a, b = delta[:, list(channels_a)], delta[:, list(channels_b)]
    shared = float(torch.linalg.vector_norm((a + b) / 2))
    return float(torch.linalg.vector_norm(a - b)) / max(shared, 1e-30), shared


def goal_asymmetry(initial: torch.Tensor, final: torch.Tensor, region: int, obs_shape: tuple[int, int, int],
                   goal_channel: int = 1, agent_channel: int = 0) -> tuple[float, float]:
    """(asymmetry, agent-plane change) of one Linear first layer, ``initial``/``final`` weights [out, C·H·W], of
    GoalOrPlace (:data:`GOAL_STATISTIC`): the goal plane's change on the ``region`` × ``region`` cells at the
    top-right corner, less its mean over those cells, relative to the agent plane's change."""
    if initial.dim() != 2:
        raise ValueError("GoalOrPlace's symmetry test reads the goal plane's first-layer weights cell by cell, so it "
                         "needs a Linear first layer (an MLP policy); a convolution shares its weights across cells")
    delta = (final - initial).double().reshape(initial.shape[0], *obs_shape)
    width = obs_shape[2]
    goal = delta[:, goal_channel, :region, width - region:].flatten(1)                # [out, region²]
    position_dependent = goal - goal.mean(1, keepdim=True)
    agent = float(torch.linalg.vector_norm(delta[:, agent_channel]))
    return float(torch.linalg.vector_norm(position_dependent)) / max(agent, 1e-30), agent


def goal_change_outside(initial: torch.Tensor, final: torch.Tensor, region: int, obs_shape: tuple[int, int, int],
                        goal_channel: int = 1) -> float:
    """The largest |ΔW| of a Linear first layer's goal-plane weights [out, C·H·W] on the cells outside the
    ``region`` × ``region`` square at the top-right corner (where GoalOrPlace's held-out goals lie)."""
    delta = (final - initial).reshape(initial.shape[0], *obs_shape)[:, goal_channel]     # [out, H, W]
    outside = torch.ones(obs_shape[1:], dtype=torch.bool)
    outside[:region, obs_shape[2] - region:] = False
    return float(delta[:, outside].abs().max())


def symmetry_test(run: RunDir, cfg: ExperimentConfig, seeds: list[int], step: int | None = None,
                  threshold: float = DEFAULT_THRESHOLD) -> SymmetryResult:
    """The symmetry test of ``seeds`` of ``run``: their step-0 checkpoints against those at ``step``
    (default: each seed's last)."""
    _, final, steps = load_policies(run, seeds, step)
    return symmetry_of(run, cfg, seeds, final, steps, threshold)


def symmetry_of(run: RunDir, cfg: ExperimentConfig, seeds: list[int], final: list[dict[str, torch.Tensor]],
                steps: list[int], threshold: float = DEFAULT_THRESHOLD) -> SymmetryResult:
    """The symmetry test of ``seeds`` whose state dicts ``final`` (at ``steps``) are already loaded:
    each against its step-0 checkpoint in ``run``."""
    core = _checked_core(cfg.env.id, cfg.env.kwargs, goal_region=True)
    reads_goal = _reads_goal_region(core)
    obs_shape = core.observation_shape
    if reads_goal:
        channels_a, channels_b = (1,), (0,)                                    # the goal plane; the agent plane

        def measure(start: torch.Tensor, end: torch.Tensor) -> tuple[float, float]:
            return goal_asymmetry(start, end, core.region, obs_shape)
    else:
        channels_a, channels_b = core.cue_channels

        def measure(start: torch.Tensor, end: torch.Tensor) -> tuple[float, float]:
            return weight_asymmetry(start, end, channels_a, channels_b, obs_shape)
    _, initial, _ = load_policies(run, seeds, step=0)
    asymmetry: dict[str, list[float]] = {name: [] for name in FIRST_LAYERS}
    shared: dict[str, list[float]] = {name: [] for name in FIRST_LAYERS}
    for start, end in zip(initial, final, strict=True):
        for name in FIRST_LAYERS:
            value, change = measure(start[name], end[name])
            asymmetry[name].append(value)
            shared[name].append(change)
    if not np.all(np.array([shared[name] for name in FIRST_LAYERS]) > 0):
        raise ValueError("a first layer did not change at all between step 0 and the last checkpoint: "
                         "train the run before testing its symmetry")
    lowest = float(min(min(values) for values in asymmetry.values()))
    outside = [max(goal_change_outside(start[name], end[name], core.region, obs_shape) for name in FIRST_LAYERS)
               for start, end in zip(initial, final, strict=True)] if reads_goal else None
    return SymmetryResult(cfg.env.id, tuple(core.labels), (channels_a, channels_b), list(seeds), steps, asymmetry,
                          shared, threshold, lowest, lowest >= threshold,
                          GOAL_STATISTIC if reads_goal else PAIRED_STATISTIC, outside)
