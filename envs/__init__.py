"""Environments of rlbasins and their held-out state suites.

Importing this package registers, for gymnasium 1.x (``gym.make`` and ``gym.make_vec``):

- ``rlbasins/CueConflict-v0`` — colour vs shape (labels ``colour``, ``shape``, ``neither``)
- ``rlbasins/GoalOrPlace-v0`` — the goal vs where the goal used to be (``goal``, ``place``, ``neither``)
- ``rlbasins/TaskOrProxy-v0`` — the true task vs what the overseer sees (``task``, ``proxy``, ``neither``)
- ``rlbasins/TwoDoors-v0`` — two equally paid doors, each with its own code: the red one or the square one
  (``colour``, ``shape``, ``neither``); seeds can lock in to either

Each has a batched torch core (``envs.<module>.<Name>Core``), a ``gymnasium.Env`` view and a
``VectorEnv`` view over that core, training and held-out state generators, ``rgb_array``
rendering and ``label_behavior``. Held-out suites, keyed by gymnasium id, are in
:data:`envs.suites.HELDOUT_SUITES` (CartPole included).
"""

import gymnasium as gym

from envs.cartpole import CartPoleCore
from envs.cue_conflict import CueConflictCore
from envs.goal_or_place import GoalOrPlaceCore
from envs.grid import GridCore
from envs.suites import HELDOUT_SUITES, HeldOutSuite, get_suite, grid_suite
from envs.task_or_proxy import TaskOrProxyCore
from envs.two_doors import TwoDoorsCore

GRID_ENVS: dict[str, type[GridCore]] = {
    "rlbasins/CueConflict-v0": CueConflictCore,
    "rlbasins/GoalOrPlace-v0": GoalOrPlaceCore,
    "rlbasins/TaskOrProxy-v0": TaskOrProxyCore,
    "rlbasins/TwoDoors-v0": TwoDoorsCore,
}

BATCHED_CORES: dict[str, type] = {**GRID_ENVS, "CartPole-v1": CartPoleCore}
"""Env ids whose batched torch core the batched engine steps directly (others use a SyncVectorEnv)."""

for _env_id, _core in GRID_ENVS.items():
    _module, _name = _core.__module__, _core.__name__.removesuffix("Core")
    if _env_id not in gym.registry:
        gym.register(_env_id, entry_point=f"{_module}:{_name}Env", vector_entry_point=f"{_module}:{_name}VectorEnv")
    HELDOUT_SUITES[_env_id] = grid_suite(_core)

__all__ = ["BATCHED_CORES", "CartPoleCore", "GRID_ENVS", "HELDOUT_SUITES", "HeldOutSuite", "get_suite"]
