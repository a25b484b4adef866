"""Batched gridworld cores: many small gridworlds stepped together as tensors.

A *core* holds B environments as tensors on one device (CPU or CUDA) and steps them all with
a handful of tensor ops — no Python loop over environments. Randomness is counter-based: every
draw is a hash of (env seed, episode number, draw index), so each environment has its own
reproducible stream that does not depend on B, on the device or on the other environments,
and a gymnasium view over a one-environment core replays exactly the same episodes.

Every environment of this package has two strategies that are equally good in training and
disagree on held-out states. Each episode ends with an *outcome code* that says which
strategies the agent's final position satisfied:

    bit 0 set — strategy A (``labels[0]``) satisfied     bit 1 set — strategy B (``labels[1]``)
    OUTCOME_TIMEOUT — truncated without reaching anything ("neither")
    OUTCOME_ONGOING — the episode has not ended

In training states strategy A and B are always satisfied together (code 3); held-out states
cross them, so an ended held-out episode has code 1 (A), 2 (B) or OUTCOME_TIMEOUT.

Actions: 0 up, 1 right, 2 down, 3 left; moving into a wall leaves the agent where it is.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv

OUTCOME_ONGOING = -1
OUTCOME_TIMEOUT = 4

# --------------------------------------------------------------------------- counter-based randomness

_M32 = 0xFFFFFFFF


def hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer mixing function on int64 tensors in [0, 2³²), any device.

    Wellons' hash-prospector function ``[16 21f0aaad 15 735a2d97 15]``; both multipliers are
    below 2³¹, so every product stays below 2⁶³ and int64 arithmetic is exact.
    """
    x = x ^ (x >> 16)
    x = (x * 0x21F0AAAD) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x735A2D97) & _M32
    return x ^ (x >> 15)


def draws(seed: torch.Tensor, episode: torch.Tensor, count: int) -> torch.Tensor:
    """``count`` independent uint32 draws per environment for this episode: [B] → [B, count]."""
    base = hash32(hash32(seed) ^ (episode & _M32))
    return hash32(base[:, None] ^ (torch.arange(1, count + 1, device=seed.device) * 0x9E3779B9 & _M32))


# --------------------------------------------------------------------------- state


@dataclass
class GridState:
    """The complete state of B environments (all int64 tensors on one device).

    agent [B, 2] (row, col); objects [B, K, 2]; attributes [B, K, 2] (each object's two cue
    values, 0/1); steps [B] (steps taken this episode); episode [B]; seed [B] (uint32 values);
    progress [B] (an env's count within the episode, e.g. TwoDoors' code digits entered; zeros
    when not given, so states and checkpoints without it still load).
    """

    agent: torch.Tensor
    objects: torch.Tensor
    attributes: torch.Tensor
    steps: torch.Tensor
    episode: torch.Tensor
    seed: torch.Tensor
    progress: torch.Tensor | None = None

    def __post_init__(self):
        if self.progress is None:
            self.progress = torch.zeros_like(self.steps)

    def __len__(self) -> int:
        return self.agent.shape[0]

    def __getitem__(self, index) -> GridState:
        """Environments ``index`` (an int keeps a batch of one)."""
        index = [index] if isinstance(index, int) else index
        return GridState(**{f.name: getattr(self, f.name)[index] for f in dataclasses.fields(self)})

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def to(self, device: torch.device | str) -> GridState:
        return GridState(**{f.name: getattr(self, f.name).to(device) for f in dataclasses.fields(self)})

    def as_dict(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass
class Step:
    """What one batched step returns (all [B])."""

    obs: torch.Tensor | None   # [B, C, H, W] observation after the step (after the reset, if autoreset)
    reward: torch.Tensor       # float32
    terminated: torch.Tensor   # bool: an object / place was reached
    truncated: torch.Tensor    # bool: the step limit was hit first
    outcome: torch.Tensor      # int64 outcome code (see module docstring)
    final_state: Any           # the core's state before any autoreset
    core: Any                  # the core that made this step

    @property
    def final_obs(self) -> torch.Tensor:
        """[B, C, H, W] observations before any autoreset (built on demand: most steps never need it)."""
        return self.core.observe(self.final_state)


# --------------------------------------------------------------------------- the core


class GridCore:
    """B gridworlds of one kind. Subclasses define layout, outcomes, rewards, drawing.

    Args:
        num_envs: B.
        size: the grid is size × size.
        max_steps: truncation limit per episode (default 3 × size).
        device: where the tensors live.

    ``sync_free`` (default: on any device but the CPU) makes :meth:`step` never wait for the
    device; the results are the same either way (see :meth:`reset_done`).
    """

    labels: ClassVar[tuple[str, str]]
    """Names of strategy A and B; the third label is always ``"neither"``."""
    channels: ClassVar[tuple[str, ...]]
    """Names of the observation planes."""
    n_objects: ClassVar[int]
    n_actions: ClassVar[int] = 4
    description: ClassVar[str]
    row_kwargs: ClassVar[tuple[str, ...]] = ()
    """Keyword arguments that may be given one value per environment (a [B] tensor): the batched engine then
    steps env variants that differ only in them in one core (:class:`rlbasins.train.batched.BatchedEnv`). Only
    kwargs read on the whole batch qualify (by :meth:`observe` or :meth:`paint`), not those :meth:`layout`
    reads: on the CPU it draws the ended episodes' rows only."""
    strategies_agree_in_training: ClassVar[bool] = True
    """Whether the two strategies act alike on every training state (False: they are two equally paid
    ways through training, e.g. TwoDoors, and show in training behaviour too)."""

    def __init__(self, num_envs: int = 1, size: int = 5, max_steps: int | None = None,
                 device: torch.device | str = "cpu"):
        if size < 3:
            raise ValueError(f"size must be at least 3, got {size}")
        self.num_envs, self.size = num_envs, size
        self.max_steps = max_steps if max_steps is not None else 3 * size
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be positive, got {self.max_steps}")
        self.device = torch.device(device)
        self.sync_free = self.device.type != "cpu"
        self._agent_value = torch.ones(1, device=self.device)
        self.state = self.layout(torch.zeros(num_envs, dtype=torch.int64, device=self.device),
                                 torch.zeros(num_envs, dtype=torch.int64, device=self.device))

    # ---- to be defined by each environment

    def layout(self, seed: torch.Tensor, episode: torch.Tensor) -> GridState:
        """A training-distribution start state for each (seed, episode)."""
        raise NotImplementedError

    def resolve(self, state: GridState) -> torch.Tensor:
        """Outcome bits (0–3) of the agent's current cell, or OUTCOME_ONGOING: [B]."""
        raise NotImplementedError

    def reward_of(self, outcome: torch.Tensor, state: GridState | None = None) -> torch.Tensor:
        """Reward [B] (float32) for each outcome code; ``state``: the states that ended in it (for rewards
        that depend on the episode, e.g. CueConflict's ``mix``)."""
        raise NotImplementedError

    def paint(self, state: GridState) -> tuple[torch.Tensor, torch.Tensor]:
        """Where the objects of ``state`` appear: (flat plane indices [B, P] from :meth:`flat_index`,
        their values [P], or [B, P] when they vary by episode). Plane 0 (the agent) is drawn by :meth:`observe`."""
        raise NotImplementedError

    @classmethod
    def enumerate_heldout(cls, size: int, **options: Any) -> GridState:
        """Every held-out start state for a grid of this size (strategies crossed, nuisances balanced);
        ``options``: an env's choice of held-out layout (:attr:`heldout_options`)."""
        raise NotImplementedError

    @property
    def heldout_options(self) -> dict[str, Any]:
        """The keyword arguments of :meth:`enumerate_heldout` this env was made with (none by default)."""
        return {}

    def strategy_target(self, state: GridState, strategy: int) -> torch.Tensor:
        """The cell [B, 2] an agent following strategy 0 (A) or 1 (B) heads for in ``state``."""
        raise NotImplementedError

    def optimal_actions(self, state: GridState) -> torch.Tensor:
        """Actions [B, n_actions] (bool) that bring the agent closer to a training target — the expert for
        supervised losses: strategy A's, where both strategies agree in training; else either strategy's
        (both are paid ways through training, e.g. TwoDoors' two doors, and neither is the error)."""
        actions = self.strategy_actions(state, 0)
        return actions if self.strategies_agree_in_training else actions | self.strategy_actions(state, 1)

    def strategy_actions(self, state: GridState, strategy: int) -> torch.Tensor:
        """Actions [B, n_actions] (bool) that bring the agent closer to strategy ``strategy``'s target."""
        target = self.strategy_target(state, strategy)
        moved = (state.agent[:, None] + self.ACTION_DELTAS.to(state.agent.device)).clamp(0, self.size - 1)
        before = (target - state.agent).abs().sum(-1, keepdim=True)                # [B, 1]
        return (target[:, None] - moved).abs().sum(-1) < before                      # [B, A]

    # ---- shared machinery

    ACTION_DELTAS: ClassVar[torch.Tensor] = torch.tensor([[-1, 0], [0, 1], [1, 0], [0, -1]])
    """(row, col) move of actions 0–3: up, right, down, left."""

    plane_values: tuple[float, ...] = (1.0,)
    """Values written into the object planes (the observation's upper bound)."""

    @property
    def observation_shape(self) -> tuple[int, int, int]:
        return (len(self.channels), self.size, self.size)

    @property
    def observation_space(self) -> gym.spaces.Box:
        """One environment's observation space: [C, H, W] float32 planes in [0, max plane value]."""
        return gym.spaces.Box(0.0, max(1.0, *self.plane_values), self.observation_shape, np.float32)

    def observe(self, state: GridState | None = None) -> torch.Tensor:
        """Observation planes [B, C, H, W] (float32) of ``state`` (default: the current one)."""
        state = self.state if state is None else state
        index, values = GridCore.observation_entries(self, state)        # an override may add to these planes
        obs = torch.zeros(len(state), len(self.channels) * self.size * self.size, device=self.device)
        return obs.scatter_(1, index, values).view(len(state), *self.observation_shape)

    def observation_entries(self, state: GridState | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The observation of ``state`` (default: the current one) as the entries :meth:`observe` writes into
        zero planes: flat indices [B, K] into the flattened [C, H, W] observation (distinct in each row) and
        their values [B, K] float32, every other entry 0; a policy's first layer is then a sum of K weight
        columns. None for an env whose :meth:`observe` adds more than these entries."""
        state = self.state if state is None else state
        planes, values = self.paint(state)                                     # [B, P], [P] or [B, P]
        index = torch.cat([self.flat_index(0, state.agent)[:, None], planes], dim=1)
        values = torch.cat([self._agent_value.expand(len(state), 1), values.expand(len(state), -1)], dim=1)
        return index, values

    def recurrence_key(self, state: GridState) -> torch.Tensor:
        """[B] int64: what of ``state`` changes within an episode, the agent's cell and ``progress``. Two states of
        one episode with the same key look and act alike from then on (the objects, their cues and the episode's
        draws never change within an episode; ``steps`` only decides when the step limit cuts it), so a
        deterministic policy that meets a key again goes round that cycle until it times out. An env whose state
        changes in any other way within an episode must override this."""
        return self.cell_of(state.agent) + self.size * self.size * (state.progress + 1)

    def cell_of(self, rc: torch.Tensor) -> torch.Tensor:
        """Cell index row · size + col of positions rc [..., 2]."""
        return rc[..., 0] * self.size + rc[..., 1]

    def flat_index(self, channel: torch.Tensor | int, rc: torch.Tensor) -> torch.Tensor:
        """Index into a flattened [C, H, W] observation of plane ``channel`` at cells rc [..., 2]."""
        return (channel * self.size + rc[..., 0]) * self.size + rc[..., 1]

    def reset(self, seeds: torch.Tensor) -> torch.Tensor:
        """Start episode 0 of every environment from its seed ([B] ints); returns observations."""
        seeds = torch.as_tensor(seeds, dtype=torch.int64, device=self.device) & _M32
        self.state = self.layout(seeds, torch.zeros_like(seeds))
        return self.observe()

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The state as named tensors (for checkpoints)."""
        return self.state.as_dict()

    def load_state_dict(self, tensors: dict[str, torch.Tensor]) -> None:
        self.state = GridState(**{name: value.to(self.device) for name, value in tensors.items()})

    def reset_to(self, state: GridState) -> torch.Tensor:
        """Start every environment from a given state (e.g. held-out states); returns observations."""
        if len(state) != self.num_envs:
            raise ValueError(f"got {len(state)} states for {self.num_envs} environments")
        self.state = state.to(self.device)
        return self.observe()

    def reset_done(self, done: torch.Tensor) -> torch.Tensor:
        """Start the next training episode where ``done`` [B] is set; returns all observations.

        With ``sync_free`` the new layouts are computed for every env and selected (no host sync);
        else, as suits the CPU where a sync costs nothing, only the ended episodes' layouts.
        """
        state = self.state
        episode = state.episode + done
        if not self.sync_free:
            ended = done.nonzero().squeeze(1)
            fresh = self.layout(state.seed[ended], episode[ended])
            agent, objects, attributes = state.agent.clone(), state.objects.clone(), state.attributes.clone()
            agent[ended], objects[ended], attributes[ended] = fresh.agent, fresh.objects, fresh.attributes
        else:
            fresh = self.layout(state.seed, episode)
            keep = ~done

            def pick(old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
                return torch.where(keep.view(-1, *[1] * (old.dim() - 1)), old, new)

            agent, objects = pick(state.agent, fresh.agent), pick(state.objects, fresh.objects)
            attributes = pick(state.attributes, fresh.attributes)
        self.state = GridState(agent=agent, objects=objects, attributes=attributes, steps=state.steps * ~done,
                               episode=episode, seed=state.seed, progress=state.progress * ~done)
        return self.observe()

    def move(self, state: GridState, actions: torch.Tensor) -> GridState:
        """The state after ``actions`` [B] (before outcomes): every agent moves one cell, walls stop it."""
        delta = torch.stack([(actions == 2).long() - (actions == 0).long(),       # down − up
                             (actions == 1).long() - (actions == 3).long()], 1)  # right − left
        moved = (state.agent + delta).clamp_(0, self.size - 1)
        return dataclasses.replace(state, agent=moved, steps=state.steps + 1)

    def step(self, actions: torch.Tensor, autoreset: bool = False, observe: bool = True) -> Step:
        """Move every agent; with ``autoreset`` ended episodes restart in the same call (SAME_STEP). Without
        ``observe`` (and ``autoreset``) the step's ``obs`` is None, for a caller that reads
        :meth:`observation_entries` instead."""
        self.state = state = self.move(self.state, actions.to(self.device))
        outcome = self.resolve(state)
        terminated = outcome != OUTCOME_ONGOING
        truncated = ~terminated & (state.steps >= self.max_steps)
        outcome = torch.where(truncated, OUTCOME_TIMEOUT, outcome)
        obs = self.reset_done(terminated | truncated) if autoreset else self.observe() if observe else None
        return Step(obs, self.reward_of(outcome, state), terminated, truncated, outcome, state, self)

    @classmethod
    def heldout_states(cls, n: int, seed: int, size: int = 5, **options: Any) -> GridState:
        """``n`` held-out start states drawn (with replacement only if ``n`` exceeds them all), each with
        its own ``seed`` field, which draws what a layout leaves to chance (a two-cue env's ``nuisance``)."""
        every = cls.enumerate_heldout(size, **options)
        rng = np.random.default_rng(seed)
        picked = rng.choice(len(every), size=n, replace=n > len(every))
        states = every[torch.as_tensor(picked)]
        return dataclasses.replace(states, seed=torch.as_tensor(rng.integers(0, 2**32, size=n), dtype=torch.int64))

    @classmethod
    def training_states(cls, n: int, seed: int, size: int = 5, **core_kwargs: Any) -> GridState:
        """``n`` start states from the training distribution (of the variant ``core_kwargs`` select)."""
        seeds = torch.as_tensor(np.random.default_rng(seed).integers(0, 2**32, size=n), dtype=torch.int64)
        return cls(num_envs=n, size=size, **core_kwargs).layout(seeds, torch.zeros_like(seeds))

    @classmethod
    def outcome_name(cls, code: int) -> str:
        names = {1: cls.labels[0], 2: cls.labels[1], 3: "both", 0: "none", OUTCOME_TIMEOUT: "neither"}
        return names.get(int(code), "ongoing")

    @classmethod
    def label_behavior(cls, outcomes: torch.Tensor | np.ndarray | list[int]) -> dict[str, float]:
        """Fractions of held-out episodes that followed strategy A, strategy B, or neither.

        ``outcomes``: the outcome code of each ended held-out episode (see :func:`run_episodes`).
        Keys: ``labels[0]``, ``labels[1]``, ``"neither"`` (timeouts and anything else).
        """
        return label_fractions([cls.outcome_name(c) for c in np.asarray(outcomes).reshape(-1)], cls.labels)

    # ---- pictures

    CELL_PX: ClassVar[int] = 24

    def render(self, index: int = 0, state: GridState | None = None) -> np.ndarray:
        """RGB image [H·px, W·px, 3] (uint8) of environment ``index``."""
        state = (self.state if state is None else state)[index].to("cpu")
        px, n = self.CELL_PX, self.size
        canvas = np.full((n * px, n * px, 3), 245, dtype=np.uint8)
        canvas[::px, :] = canvas[:, ::px] = 200  # grid lines
        canvas[-1, :] = canvas[:, -1] = 200
        self.draw(canvas, state)
        row, col = state.agent[0].tolist()
        cell = canvas[row * px:(row + 1) * px, col * px:(col + 1) * px]
        cell[_disc(px, 0.22)] = (0, 0, 0)
        return canvas

    def draw(self, canvas: np.ndarray, state: GridState) -> None:
        """Draw the objects of a one-environment ``state`` onto ``canvas``."""
        raise NotImplementedError


def _disc(px: int, radius: float) -> np.ndarray:
    y, x = np.mgrid[:px, :px] + 0.5
    return (y - px / 2) ** 2 + (x - px / 2) ** 2 <= (radius * px) ** 2


def _square(px: int, half: float) -> np.ndarray:
    y, x = np.mgrid[:px, :px] + 0.5
    return (np.abs(y - px / 2) <= half * px) & (np.abs(x - px / 2) <= half * px)


SHAPES = {"disc": _disc, "square": _square}
"""Cell masks: ``SHAPES[name](cell_px, size_fraction)``."""


def paint_cell(canvas: np.ndarray, cell: tuple[int, int], px: int, mask: np.ndarray, rgb) -> None:
    """Colour the pixels ``mask`` [px, px] of grid cell (row, col) of an RGB ``canvas``."""
    row, col = cell
    canvas[row * px:(row + 1) * px, col * px:(col + 1) * px][mask] = rgb


def label_fractions(names: list[str | None], labels: tuple[str, str]) -> dict[str, float]:
    """Fractions of episodes whose outcome name is ``labels[0]``, ``labels[1]``, or anything else
    (``"neither"``: timeouts, dithering, episodes that ended some other way)."""
    if not names:
        raise ValueError("no episodes to label")
    a = sum(name == labels[0] for name in names) / len(names)
    b = sum(name == labels[1] for name in names) / len(names)
    return {labels[0]: a, labels[1]: b, "neither": 1.0 - a - b}


# --------------------------------------------------------------------------- layouts shared by envs


def distinct_cells(seed: torch.Tensor, episode: torch.Tensor, size: int, count: int,
                   excluded: int | None = None) -> torch.Tensor:
    """``count`` (≤ 3) distinct cell indices per env, uniform, avoiding cell ``excluded``: [B, count].

    Sequential sampling without replacement: the j-th draw picks among the cells still free
    and is shifted past the cells already taken, visited in increasing order.
    """
    if count > 3 or (excluded is not None and count > 2):
        raise ValueError("distinct_cells draws at most 3 cells (2 with an excluded cell)")
    taken: list[torch.Tensor] = [] if excluded is None else [torch.full_like(seed, excluded)]
    random = draws(seed, episode, count)
    picked = []
    for j in range(count):
        cell = (random[:, j] * (size * size - len(taken))) >> 32  # uniform in [0, free cells) (Lemire)
        ascending = taken if len(taken) < 2 else [torch.minimum(*taken), torch.maximum(*taken)]
        for blocked in ascending:
            cell = cell + (cell >= blocked)
        taken.append(cell)
        picked.append(cell)
    return torch.stack(picked, dim=1)


def row_values(value: float | torch.Tensor, num_envs: int, name: str, meaning: str, high: float,
               high_inclusive: bool = False) -> torch.Tensor:
    """A kwarg that may be one value or one per environment (:attr:`GridCore.row_kwargs`) as a float64 tensor,
    0-dim or [num_envs]; ValueError naming ``name`` (and its ``meaning``) when a value lies outside [0, high)
    ([0, high] with ``high_inclusive``) or the per-environment values are not ``num_envs``."""
    values = torch.as_tensor(value, dtype=torch.float64)
    below = values <= high if high_inclusive else values < high
    if not bool(((0 <= values) & below).all()):
        raise ValueError(f"{name} must be in [0, {high:g}{']' if high_inclusive else ')'} ({meaning}), got {value}")
    if values.dim() == 1 and len(values) != num_envs:
        raise ValueError(f"a {name} per environment needs {num_envs} values, got {len(values)}")
    return values


def cells_to_rc(cells: torch.Tensor, size: int) -> torch.Tensor:
    """Cell indices [...] → (row, col) [..., 2]."""
    rows = torch.div(cells, size, rounding_mode="floor")
    return torch.stack([rows, cells - rows * size], dim=-1)


# --------------------------------------------------------------------------- playing episodes


@torch.no_grad()
def run_episodes(core: GridCore, start: GridState, act) -> tuple[torch.Tensor, torch.Tensor]:
    """Play one episode from each start state with ``act(obs, state) → actions [B]``.

    Returns (outcome codes [B], returns [B]) of the first episode of every environment.
    """
    core.reset_to(start)
    obs = core.observe()
    outcome = torch.full((core.num_envs,), OUTCOME_ONGOING, dtype=torch.int64, device=core.device)
    returns = torch.zeros(core.num_envs, device=core.device)
    for _ in range(core.max_steps):
        step = core.step(act(obs, core.state))
        running = outcome == OUTCOME_ONGOING
        returns += torch.where(running, step.reward, torch.zeros_like(step.reward))
        outcome = torch.where(running & (step.terminated | step.truncated), step.outcome, outcome)
        obs = step.obs
        if not (outcome == OUTCOME_ONGOING).any():
            break
    return outcome, returns


# --------------------------------------------------------------------------- gymnasium views


class GridEnv(gym.Env):
    """The gymnasium view of one environment of a core (the same code steps it).

    ``reset(seed=s)`` starts the same episodes as environment ``b`` of a batched core reset
    with seed ``s``; ``reset(options={"state": grid_state})`` starts from a given (e.g.
    held-out) state. ``info["outcome"]`` names the outcome when an episode ends.
    """

    core_class: ClassVar[type[GridCore]]
    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, render_mode: str | None = None, **core_kwargs: Any):
        self.core = self.core_class(num_envs=1, device="cpu", **core_kwargs)
        self.render_mode = render_mode
        self.observation_space = self.core.observation_space
        self.action_space = gym.spaces.Discrete(self.core.n_actions)
        self._started = False

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if options and "state" in options:
            obs = self.core.reset_to(options["state"])
        elif seed is not None or not self._started:
            obs = self.core.reset(torch.tensor([seed if seed is not None else int(self.np_random.integers(2**32))]))
        else:
            obs = self.core.reset_done(torch.ones(1, dtype=torch.bool))
        self._started = True
        return obs[0].numpy(), {}

    def step(self, action):
        step = self.core.step(torch.as_tensor([int(action)]))
        terminated, truncated = bool(step.terminated[0]), bool(step.truncated[0])
        info = {"outcome": self.core.outcome_name(int(step.outcome[0]))} if terminated or truncated else {}
        return step.obs[0].numpy(), float(step.reward[0]), terminated, truncated, info

    def start_from(self, state: GridState) -> np.ndarray:
        """Held-out-suite hook: continue from ``state`` (one environment); returns its observation."""
        return self.reset(options={"state": state})[0]

    def render(self):
        return self.core.render(0)

    # exact resume (see rlbasins.train.resume): the core's tensors are the whole state
    def get_state(self) -> dict[str, np.ndarray]:
        return {name: t.cpu().numpy() for name, t in self.core.state.as_dict().items()}

    def set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.core.state = GridState(**{k: torch.as_tensor(v) for k, v in arrays.items()})


class GridVectorEnv(VectorEnv):
    """``num_envs`` environments of a core as a gymnasium ``VectorEnv`` (SAME_STEP autoreset).

    Ended episodes restart inside ``step``; the last observation of an ended episode is in
    ``infos["final_obs"]`` (masked by ``infos["_final_obs"]``), as gymnasium 1.x specifies.
    """

    core_class: ClassVar[type[GridCore]]
    metadata = {"render_modes": ["rgb_array"], "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, num_envs: int, device: str = "cpu", render_mode: str | None = None, **core_kwargs: Any):
        self.core = self.core_class(num_envs=num_envs, device=device, **core_kwargs)
        self.num_envs, self.render_mode = num_envs, render_mode
        self.single_observation_space = self.core.observation_space
        self.single_action_space = gym.spaces.Discrete(self.core.n_actions)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)

    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None):
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        seeds = list(seed) if isinstance(seed, (list, tuple)) else [seed + i for i in range(self.num_envs)]
        return self.core.reset(torch.tensor(seeds)).cpu().numpy(), {}

    def step(self, actions):
        step = self.core.step(torch.as_tensor(np.asarray(actions)), autoreset=True)
        done = (step.terminated | step.truncated).cpu().numpy()
        infos = {"final_obs": step.final_obs.cpu().numpy(), "_final_obs": done,
                 "outcome": step.outcome.cpu().numpy(), "_outcome": done}
        return (step.obs.cpu().numpy(), step.reward.cpu().numpy(), step.terminated.cpu().numpy(),
                step.truncated.cpu().numpy(), infos)

    def render(self):
        return self.core.render(0)
