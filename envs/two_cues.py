"""Two objects, each with two binary cues; the target has both cues in training.

The base of CueConflict (colour vs shape) and TaskOrProxy (true state vs appearance). In
training the target object carries cue A *and* cue B (reward 1 on reaching it) and the
distractor neither (episode ends, reward 0), so "follow cue A" and "follow cue B" are the
same policy. Held-out states cross the cues — one object has only cue A, the other only cue
B — placed mirror-symmetrically around the agent, so both are equally far and on opposite
sides; every placement appears in both orders. With ``probe="adjacent"`` the two objects are
instead in two different cells next to the agent (all ordered pairs), so one move reaches either
and the episode's first step is the decision: a probe that leaves a policy little room to dither.

``informative`` plants one strategy instead: with ``informative=labels[j]`` only cue j predicts
the target in training. The target has cue j and the distractor not; the other cue is 1 on the
target and 0 on the distractor or the other way round, 50/50 per episode (an extra counter-based
draw), so it carries no information. Held-out states are unchanged. The default ``"both"`` is
the layout above, bit for bit.

``mix`` (with a planted cue) makes the separation partial: in that share of the training episodes
(a 5th draw) the *other* cue is the informative one — the target carries it, the planted cue is the
coin, and reaching an object pays when it carries that episode's informative cue. ``mix`` 0 (the
default) is the planted layout above, bit for bit; 0.5 would make the two cues equally informative.

Observation planes: agent, cue A = 1, cue A = 0, cue B = 1, cue B = 0. Cue A and cue B get the
same number of planes and the same values (``salience``, default 1 each), so neither cue is
easier to see unless an experiment asks for it.

``nuisance`` breaks the duplication of the two cues. Without it the cue-A planes equal the cue-B
planes in every training state, so their input weights get identical gradients and only their
random initial difference decides a held-out conflict (see :mod:`rlbasins.analysis.symmetry`).
With ``nuisance`` ν > 0 each object's cue-A value and cue-B value are scaled by independent
factors 1 − ν·u (u uniform in [0, 1), four more draws per episode: one per object and cue), as a
shade and a size would vary in a picture: both cues stay perfectly predictive, their inputs no
longer coincide, and the data stream decides how much each is used. Held-out states draw the
same factors from their own ``seed`` field. ``nuisance`` 0 (the default) is the layout above, bit
for bit. A core may take one ``nuisance`` per environment (a [B] tensor, :attr:`TwoCueCore.row_kwargs`),
so that the batched engine steps seeds of several nuisance values in one core; each row is then what
a core of its own value would give, bit for bit.
"""

from __future__ import annotations

import itertools
from typing import Any, ClassVar, Literal

import torch

from envs.grid import OUTCOME_ONGOING, GridCore, GridState, cells_to_rc, distinct_cells, draws, row_values

PROBES = ("halfway", "adjacent")
"""Held-out layouts (:meth:`TwoCueCore.enumerate_heldout`)."""


class TwoCueCore(GridCore):
    """Two-cue gridworlds; ``informative`` is ``"both"`` or one of :attr:`labels` (see the module docstring)."""

    n_objects: ClassVar[int] = 2
    cue_channels: ClassVar[tuple[tuple[int, ...], tuple[int, ...]]] = ((1, 2), (3, 4))
    """Input channels of cue A (value 1, value 0) and of cue B, matched plane by plane (see :meth:`paint`)."""
    row_kwargs: ClassVar[tuple[str, ...]] = ("nuisance",)

    def __init__(self, num_envs: int = 1, size: int = 5, max_steps: int | None = None,
                 device: torch.device | str = "cpu", salience: tuple[float, float] = (1.0, 1.0),
                 informative: str = "both", mix: float = 0.0, nuisance: float | torch.Tensor = 0.0,
                 probe: Literal["halfway", "adjacent"] = "halfway"):
        if probe not in PROBES:
            raise ValueError(f"probe must be one of {', '.join(map(repr, PROBES))}, got {probe!r}")
        self.probe = probe
        if min(salience) <= 0:
            raise ValueError(f"salience values must be positive, got {salience}")
        choices = ("both", *self.labels)
        if informative not in choices:
            raise ValueError(f"informative must be one of {', '.join(map(repr, choices))}, got {informative!r}")
        if not 0 <= mix < 0.5:
            raise ValueError(f"mix must be in [0, 0.5) (the share of episodes in which the other cue pays), got {mix}")
        if mix and informative == "both":
            raise ValueError(f"mix={mix} needs a planted cue: informative must be one of {self.labels}")
        values = row_values(nuisance, num_envs, "nuisance", "the largest share by which a cue's value is dimmed", 1)
        # one float, or one per environment [B, 1] float32 (the batched engine's env variants in one core)
        self.nuisance = float(values) if values.dim() == 0 else values.to(device, torch.float32)[:, None]
        self.informative = informative
        self.mix = float(mix)
        self._mix_threshold = int(self.mix * 2**32)             # a uint32 draw below it swaps the cues
        self._informative_cue = None if informative == "both" else self.labels.index(informative)
        # outcome bits an object must carry to pay: both cues (3), or the planted cue's bit
        self._paid_bits = 3 if self._informative_cue is None else 1 << self._informative_cue
        self.plane_values = tuple(float(s) for s in salience)
        self._cue_index = torch.arange(2, device=device)
        self._cue_values = torch.tensor(self.plane_values * self.n_objects, device=device)  # per (object, cue)
        self._training_attributes = torch.tensor([[1, 1], [0, 0]], device=device)         # target, distractor
        super().__init__(num_envs, size, max_steps, device)

    def layout(self, seed: torch.Tensor, episode: torch.Tensor) -> GridState:
        cells = cells_to_rc(distinct_cells(seed, episode, self.size, 3), self.size)  # agent, target, distractor
        if self._informative_cue is None:
            attributes = self._training_attributes.expand(len(seed), 2, 2)
        else:
            attributes = self._planted_attributes(seed, episode)
        return GridState(agent=cells[:, 0], objects=cells[:, 1:], attributes=attributes,
                         steps=torch.zeros_like(seed), episode=episode, seed=seed)

    def _episode_cue(self, seed: torch.Tensor, episode: torch.Tensor) -> torch.Tensor:
        """[B] the informative cue of each (seed, episode) with a planted cue: the planted one, or with
        probability ``mix`` the other (a 5th draw, below ``mix`` · 2³²)."""
        cue = torch.full_like(seed, self._informative_cue)
        if not self.mix:
            return cue
        swapped = draws(seed, episode, 5)[:, 4] < self._mix_threshold
        return torch.where(swapped, 1 - cue, cue)

    def _planted_attributes(self, seed: torch.Tensor, episode: torch.Tensor) -> torch.Tensor:
        """[B, 2, 2] cues of (target, distractor) when only the episode's cue (:meth:`_episode_cue`) is
        informative.

        The other cue is s on the target and 1 − s on the distractor, s a fair coin per episode:
        the top bit of a 4th draw (the first three place agent and objects, so the cells are
        those of ``"both"``).
        """
        coin = draws(seed, episode, 4)[:, 3] >> 31                                 # [B] in {0, 1}
        other = torch.stack([coin, 1 - coin], dim=1)                               # [B, 2] per object
        informative = self._training_attributes[:, 0].expand(len(seed), 2)        # target 1, distractor 0
        first = (self._episode_cue(seed, episode) == 0)[:, None]                   # [B, 1] cue 0 informative
        return torch.stack([torch.where(first, informative, other), torch.where(first, other, informative)], -1)

    def informative_reward(self, outcome: torch.Tensor, state: GridState | None = None) -> torch.Tensor:
        """Reward [B] (float32): 1 where the reached object carries the informative cue(s).

        ``"both"``: the target of training states only (outcome 3); a planted cue j: any object
        with cue j (outcome bit j), crossed held-out objects included; with ``mix``, the cue of the
        ``state``'s episode (without a state: the planted cue).
        """
        paid = self._paid_bits
        if self.mix and state is not None:
            paid = 1 << self._episode_cue(state.seed, state.episode)
        return ((outcome >= 0) & ((outcome & paid) == paid)).float()

    def resolve(self, state: GridState) -> torch.Tensor:
        hit = self.cell_of(state.objects) == self.cell_of(state.agent)[:, None]  # [B, K]
        code = state.attributes[..., 0] + 2 * state.attributes[..., 1]        # [B, K] outcome bits
        return torch.where(hit.any(1), (code * hit).sum(1), OUTCOME_ONGOING)

    def paint(self, state: GridState) -> tuple[torch.Tensor, torch.Tensor]:
        planes = 1 + 2 * self._cue_index + (1 - state.attributes)              # [B, K, 2]: cue j value v
        index = self.flat_index(planes, state.objects[:, :, None, :])          # [B, K, 2]
        if isinstance(self.nuisance, float) and not self.nuisance:
            return index.flatten(1), self._cue_values
        u = (draws(state.seed, state.episode, 9)[:, 5:].double() / 2**32).float()  # [B, 4] per (object, cue)
        return index.flatten(1), self._cue_values * (1 - self.nuisance * u)

    @property
    def heldout_options(self) -> dict[str, Any]:
        return {"probe": self.probe}

    @classmethod
    def enumerate_heldout(cls, size: int, probe: str = "halfway") -> GridState:
        """Every held-out state: a cue-A-only and a cue-B-only object around the agent.

        ``"halfway"``: at agent + d and agent − d for any offset d, so the agent starts halfway between
        them. ``"adjacent"``: in two different cells next to the agent (every ordered pair of its
        neighbours; 188 states at size 5), so the first move that reaches an object decides the episode.
        """
        agents, objects = [], []
        if probe == "adjacent":
            steps = ((-1, 0), (1, 0), (0, -1), (0, 1))
            for r, c in itertools.product(range(size), repeat=2):
                near = [(r + dr, c + dc) for dr, dc in steps if 0 <= r + dr < size and 0 <= c + dc < size]
                for a, b in itertools.permutations(near, 2):
                    agents.append((r, c))
                    objects.append((a, b))
        else:
            offsets = [d for d in itertools.product(range(-size + 1, size), repeat=2) if d != (0, 0)]
            for r, c in itertools.product(range(size), repeat=2):
                for dr, dc in offsets:
                    a, b = (r + dr, c + dc), (r - dr, c - dc)
                    if all(0 <= v < size for v in (*a, *b)):
                        agents.append((r, c))
                        objects.append((a, b))
        n = len(agents)
        return GridState(agent=torch.tensor(agents), objects=torch.tensor(objects),
                         attributes=torch.tensor([[1, 0], [0, 1]]).expand(n, 2, 2).clone(),
                         steps=torch.zeros(n, dtype=torch.int64), episode=torch.zeros(n, dtype=torch.int64),
                         seed=torch.zeros(n, dtype=torch.int64))

    def strategy_target(self, state: GridState, strategy: int) -> torch.Tensor:
        """Where an agent following strategy 0 (cue A) or 1 (cue B) heads: the nearest object with
        that cue (in training the target; on held-out states the object carrying only that cue)."""
        has_cue = state.attributes[..., strategy] == 1                       # [B, K]
        distance = (state.objects - state.agent[:, None]).abs().sum(-1)      # [B, K]
        pick = torch.where(has_cue, distance, torch.full_like(distance, 10**6)).argmin(1)
        return state.objects[torch.arange(len(state), device=pick.device), pick]

