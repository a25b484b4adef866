"""CueConflict: go to the red square — by its colour or by its shape?

In training the rewarded object is always the red square and the distractor the blue
circle; held-out states offer a red circle and a blue square, equidistant and mirrored.
Labels: ``colour``, ``shape``, ``neither``. ``colour_salience`` / ``shape_salience`` scale the
value of the colour and shape planes (default 1 each: equal salience).

``informative`` plants a strategy (ground truth for basin studies): ``"colour"`` trains on a red
object (rewarded) and a blue one whose shapes are square/circle or circle/square at random, and
pays for reaching any red object; ``"shape"`` trains on a square (rewarded) and a circle of random
colours and pays for any square. ``"both"`` (default) is the red square above. ``mix`` (with a
planted cue) swaps the roles in that share of the training episodes: ``informative="colour",
mix=0.25`` pays for the square in a quarter of them (partial separation). Held-out states are the
same in every variant. ``nuisance`` (0 … 1) dims each object's colour and its shape by independent
random factors, so the colour planes no longer equal the shape planes in training (the default 0
keeps them equal: the documented control of the symmetry test).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from envs.grid import SHAPES, GridEnv, GridState, GridVectorEnv, paint_cell
from envs.two_cues import TwoCueCore

RED, BLUE = (213, 94, 0), (0, 114, 178)  # Okabe–Ito vermillion and blue


class CueConflictCore(TwoCueCore):
    labels = ("colour", "shape")
    channels = ("agent", "red", "blue", "square", "circle")
    description = ("Held-out CueConflict states: a red circle and a blue square at mirror-image positions "
                   "around the agent (equal distance, both orders), or with probe='adjacent' in two cells next to it.")

    def __init__(self, num_envs: int = 1, size: int = 5, max_steps: int | None = None,
                 device: torch.device | str = "cpu", colour_salience: float = 1.0, shape_salience: float = 1.0,
                 informative: Literal["both", "colour", "shape"] = "both", mix: float = 0.0,
                 nuisance: float | torch.Tensor = 0.0, probe: Literal["halfway", "adjacent"] = "halfway"):
        super().__init__(num_envs, size, max_steps, device, salience=(colour_salience, shape_salience),
                         informative=informative, mix=mix, nuisance=nuisance, probe=probe)

    def reward_of(self, outcome: torch.Tensor, state: GridState | None = None) -> torch.Tensor:
        # "both": the red square only, crossed objects earn nothing; planted: any object with that cue
        return self.informative_reward(outcome, state)

    def draw(self, canvas: np.ndarray, state: GridState) -> None:
        px = self.CELL_PX
        for (row, col), (red, square) in zip(state.objects[0].tolist(), state.attributes[0].tolist(), strict=True):
            mask = SHAPES["square"](px, 0.33) if square else SHAPES["disc"](px, 0.36)
            paint_cell(canvas, (row, col), px, mask, RED if red else BLUE)


class CueConflictEnv(GridEnv):
    core_class = CueConflictCore


class CueConflictVectorEnv(GridVectorEnv):
    core_class = CueConflictCore
