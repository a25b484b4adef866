"""TwoDoors: a red door and a square door, equally paid, each opened by its own key code.

An environment where seeds can split by exploration lock-in rather than by their initial weights.
Every training episode has two doors at random cells: a red round door (the colour door) and a blue
square door (the shape door), the same two objects that CueConflict's held-out states cross. Besides
the four moves the agent has ``keys`` keys (default 4: actions 4–7). Standing on a door it opens it by
pressing that door's code, ``code_length`` keys (the colour door: key 4, key 5, key 4, …; the shape door:
key 5, key 4, …), so a key pressed at random opens a door one time in ``keys``. The whole code pays 1 and ends
the episode; a wrong key at a door jams it and ends the episode with 0. Walking over a door does
nothing (a move resets the code entered so far), and a key pressed away from a door is a wasted step.
Both doors pay the same, so "go to the red door" and "go to the square door" are equally good
strategies, and the env's reward (or a reward model trained on it) cannot tell them apart.

Why seeds can split: a door's code is a skill learned only by practising at that door. Whichever door
a seed happens to open more often early on, it learns that code first; that door then pays more, the
policy walks to it more, and the other door is visited less and less — and when it is, the practised
key is pressed there and jams it. That positive feedback (the reason mixtures of experts collapse onto
one expert) is absent with ``code_length`` 0, the control: then either key opens either door and there
is no door-specific skill to practise. (Seeds differ in the control too, by an idiosyncratic preference
for one door; the key code pushes more of them to always taking one door: docs/natural_basins.md.)

Two things differ from CueConflict by design. The two strategies' planes are never equal in training
(the red plane is lit on the colour door, the square plane on the shape door), so the symmetry test of
:mod:`rlbasins.analysis.symmetry` passes. And the strategies show in training too (which door a seed
walks to), not only on held-out states: held-out states (``probe``, as in CueConflict) control the
geometry, so that the choice is one observable act, but their objects are the training doors. Labels:
``colour``, ``shape``, ``neither`` (a timeout); an episode is labelled by the door at which a key was
pressed, whether or not it was the right code.

``shape_code_length`` (default: ``code_length``) gives the shape door a code of its own length, the one
asymmetry between the doors: with ``code_length`` 1 and ``shape_code_length`` 2 a random key opens the colour
door one time in four and the square door one time in sixteen, so fewer seeds happen on the square door's
skill first and its basin can be made rare, while both doors still pay 1 once their code is known.

``shape_door_salience`` (default 1) is the value of the square door's two planes (blue, square) where the red
door's are 1: a continuous asymmetry between the doors (the input a policy has to pick the door up from is
weaker, and so are the gradients on its first-layer weights), for basins of any share between the balanced
doors' and none. Both doors still pay 1.

Observation planes: agent, red, blue, square, circle (as CueConflict), then ``code_length`` planes
``digit_1 … digit_L`` (L the longer code's length): plane ``digit_k`` is lit at the agent's cell while it
stands on a door with k − 1 keys of its code entered. An opened door is gone from the episode's final
observation (a jammed one stays), so the outcome is visible in the state reached and a reward model of
``next_obs`` can read it, as in CueConflict; the policy never acts on a final observation. ``max_steps``
defaults to 3 × size + L.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch

from envs.cue_conflict import CueConflictCore
from envs.grid import OUTCOME_ONGOING, GridEnv, GridState, GridVectorEnv, cells_to_rc, distinct_cells

FAILED = -1
"""``GridState.progress`` of an agent that pressed a wrong key at a door (the episode ends)."""

FIRST_KEY = 4
"""Action index of the first key; actions 0–3 are the moves."""
CODES = ((4, 5), (5, 4))
"""Each door's code, cycled to ``code_length`` keys: the colour door 4, 5, 4, …; the shape door 5, 4, 5, …"""


class TwoDoorsCore(CueConflictCore):
    labels = ("colour", "shape")
    strategies_agree_in_training = False
    row_kwargs = ()                                   # it takes no nuisance
    description = ("Held-out TwoDoors states: the red door and the square door at mirror-image positions "
                   "around the agent (equal distance, both orders), or with probe='adjacent' in two cells next to it.")

    def __init__(self, num_envs: int = 1, size: int = 5, max_steps: int | None = None,
                 device: torch.device | str = "cpu", code_length: int = 1,
                 probe: Literal["halfway", "adjacent"] = "halfway", keys: int = 4,
                 shape_code_length: int | None = None, shape_door_salience: float = 1.0):
        if not 0 < shape_door_salience <= 1:
            raise ValueError(f"shape_door_salience must be in (0, 1] (the square door's plane value, the red "
                             f"door's being 1), got {shape_door_salience}")
        for name, value in (("code_length", code_length), ("shape_code_length", shape_code_length)):
            if value is not None and not 0 <= value <= 8:
                raise ValueError(f"{name} must be in 0 … 8 (keys to press at a door), got {value}")
        if not 2 <= keys <= 16:
            raise ValueError(f"keys must be in 2 … 16 (key actions besides the 4 moves), got {keys}")
        lengths = (int(code_length), int(code_length if shape_code_length is None else shape_code_length))
        self.code_length = max(lengths)                 # digit planes: the longer code's
        self.n_actions = FIRST_KEY + int(keys)
        self.ACTION_DELTAS = torch.tensor([[-1, 0], [0, 1], [1, 0], [0, -1], *[[0, 0]] * keys])
        """Moves up, right, down, left; the keys leave the agent where it is."""
        self.channels = (*CueConflictCore.channels, *(f"digit_{k + 1}" for k in range(self.code_length)))
        codes = [[CODES[door][k % 2] for k in range(self.code_length)] for door in range(2)]  # shorter: a prefix
        self._codes = torch.tensor(codes, dtype=torch.int64, device=device).reshape(2, self.code_length)
        self._lengths = torch.tensor(lengths, device=device)                     # [door] keys of its code
        self._presses = self._lengths.clamp(min=1)      # [door] keys that open it (length 0: any one key)
        self._doors = torch.tensor([[1, 0], [0, 1]], device=device)  # (red, square) of the colour door, shape door
        self.shape_door_salience = float(shape_door_salience)
        super().__init__(num_envs, size, 3 * size + self.code_length if max_steps is None else max_steps, device,
                         probe=probe)

    def layout(self, seed: torch.Tensor, episode: torch.Tensor) -> GridState:
        cells = cells_to_rc(distinct_cells(seed, episode, self.size, 3), self.size)  # agent, colour door, shape door
        return GridState(agent=cells[:, 0], objects=cells[:, 1:], attributes=self._doors.expand(len(seed), 2, 2),
                         steps=torch.zeros_like(seed), episode=episode, seed=seed)

    def _standing_on(self, state: GridState) -> torch.Tensor:
        """[B, K] bool: the door (object) the agent stands on."""
        return self.cell_of(state.objects) == self.cell_of(state.agent)[:, None]

    def _door_here(self, state: GridState) -> tuple[torch.Tensor, torch.Tensor]:
        """(on a door [B] bool, which kind of door [B]: 0 colour, 1 shape)."""
        hit = self._standing_on(state)                                               # [B, K]
        door = hit.long().argmax(1)
        return hit.any(1), state.attributes[torch.arange(len(state), device=door.device), door, 1]

    def move(self, state: GridState, actions: torch.Tensor) -> GridState:
        """Moves walk (and reset the code entered); a key at a door enters the next digit of its code, a
        wrong one sets ``progress`` to :data:`FAILED` (``code_length`` 0: any key opens); a key elsewhere
        does nothing."""
        walked = super().move(state, actions)
        on_door, kind = self._door_here(state)
        right = self._lengths[kind] == 0                                               # the control: any key
        if self.code_length:
            right = right | (actions == self._codes[kind, state.progress.clamp(0, self.code_length - 1)])
        keyed = torch.where(right, state.progress + 1, torch.full_like(state.progress, FAILED))
        progress = torch.where(actions >= FIRST_KEY, torch.where(on_door, keyed, state.progress),
                               torch.zeros_like(state.progress))
        return dataclasses.replace(walked, progress=progress)

    def resolve(self, state: GridState) -> torch.Tensor:
        on_door, kind = self._door_here(state)
        ended = on_door & ((state.progress == self._presses[kind]) | (state.progress == FAILED))
        return torch.where(ended, kind + 1, OUTCOME_ONGOING)    # outcome bit 0: colour door, bit 1: shape door

    def reward_of(self, outcome: torch.Tensor, state: GridState | None = None) -> torch.Tensor:
        """1 where a door was opened (its whole code pressed); a jammed door or a timeout earns 0.

        Without ``state``: what a door with outcome code ``outcome`` pays once opened (1 for any door,
        the best training return).
        """
        door = (outcome >= 1) & (outcome <= 3)
        if state is None:
            return door.float()
        return (door & (state.progress == self._presses[self._door_here(state)[1]])).float()

    def paint(self, state: GridState) -> tuple[torch.Tensor, torch.Tensor]:
        """The doors' cue planes, an opened door gone (only an episode's final observation shows one: the
        outcome is visible in the state reached, so a reward model can read it), and the digit plane."""
        index, values = super().paint(state)                                             # [B, 2 doors · 2 cues]
        here = self._standing_on(state)                                                  # [B, door]
        gone = here & (state.progress[:, None] == self._presses)                         # opened
        values = values.expand(len(state), -1) * (~gone).repeat_interleave(2, dim=1)     # a write of 0: nothing
        if self.shape_door_salience != 1:                                                # the square door dimmer
            square = state.attributes[:, :, 1] == 1                                      # [B, door]
            scale = torch.where(square, self.shape_door_salience, 1.0).repeat_interleave(2, dim=1)
            values = values * scale
        if not self.code_length:
            return index, values
        on_door, kind = self._door_here(state)
        entering = on_door & (state.progress >= 0) & (state.progress < self._lengths[kind])
        digit = 5 + state.progress.clamp(0, self.code_length - 1)
        # not entering: the digit plane gets the value 0 (a write of 0 into an empty cell changes nothing)
        digit_index = self.flat_index(digit, state.agent)[:, None]
        return torch.cat([index, digit_index], 1), torch.cat([values, entering.float()[:, None]], 1)

    def strategy_actions(self, state: GridState, strategy: int) -> torch.Tensor:
        """Moves towards the door of ``strategy``; standing on it, the next key of its code."""
        walking = super().strategy_actions(state, strategy)                       # [B, n_actions], keys never closer
        on_door, kind = self._door_here(state)
        key = torch.full_like(kind, FIRST_KEY)                                     # a door of length 0: any key
        if self.code_length:
            coded = self._codes[kind, state.progress.clamp(0, self.code_length - 1)]
            key = torch.where(self._lengths[kind] > 0, coded, key)
        keyed = torch.nn.functional.one_hot(key, self.n_actions).bool()
        return torch.where((on_door & (kind == strategy))[:, None], keyed, walking)


class TwoDoorsEnv(GridEnv):
    core_class = TwoDoorsCore


class TwoDoorsVectorEnv(GridVectorEnv):
    core_class = TwoDoorsCore
