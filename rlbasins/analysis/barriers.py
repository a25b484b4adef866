"""Linear mode connectivity between policies: interpolation paths and loss barriers.

A path between policies θ_A and θ_B is θ(α) = (1 − α)·θ_A + α·θ_B at K evenly spaced α (11
by default, Juneja et al. 2023 use 10). Along it we measure (all path points of all pairs are
just more policies to the batched rollouts of :mod:`rlbasins.core.rollouts`):

- ``train_return``: expected return on the training start distribution (sampled actions,
  common random numbers across points, so the curve is smooth in α);
- ``loss``: a supervised loss on validation states from the training distribution — the
  negative log-probability that the policy picks an expert action (one that brings the agent
  closer to its training target; envs with a batched gridworld core provide the expert);
- ``heldout_decided`` (envs that name two strategies): the share of held-out episodes (greedy)
  that commit to one of them — a policy halfway between a colour seed and a shape seed may
  dither between the two pulls, a dip that training-distribution metrics cannot see because
  there both strategies act alike;
- held-out strategy shares (greedy): does the strategy switch along the path?

The barrier of a metric is the largest gap between the straight line joining the endpoint
values and the path (Entezari et al. 2022; Juneja et al. 2023): ``max_α [m(α) − line(α)]`` for
a loss, ``max_α [line(α) − m(α)]`` for a return. It is 0 when the path is never worse than the
line, so self-interpolation has barrier 0.

With ``repair=True`` each interpolated policy's hidden pre-activations are renormalised, per
unit (a Linear layer's output, a convolution's channel pooled over positions), to the interpolation
of the endpoints' means and standard deviations on the validation states (REPAIR, Jordan et al.
2022, arXiv 2211.08403) — so that variance collapse of the averaged network is not mistaken for a
barrier between basins. Only the actor is renormalised on a path: no metric reads the critic.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import envs
from envs.suites import HeldOutSuite
from rlbasins.analysis.basins import Clustering, medoids
from rlbasins.core.config import AlignConfig, BarriersConfig
from rlbasins.core.policy import ActorCritic, StackedPolicy, activation_function, entries_layout
from rlbasins.core.progress import task_progress
from rlbasins.core.results import Result
from rlbasins.core.rollouts import play

StateDict = dict[str, torch.Tensor]
Params = dict[str, torch.Tensor]  # stacked: {name: [P, ...]}

METRICS = ("train_return", "loss", "heldout_decided")
HIGHER_IS_BETTER = {"train_return": True, "loss": False, "heldout_decided": True}
METRIC_NAMES = {"loss": "expert loss", "train_return": "training return", "heldout_decided": "held-out commitment"}
REPAIR_EPS = 1e-5
POLICIES_PER_PASS = 64
"""Passes over the validation states (REPAIR, the loss) take this many policies at a time: their activations
[64, 256 states, 64 units] stay in the CPU's cache (64-seed CueConflict loss: 58 ms per 576 policies against 77 ms
in one pass). Each policy's numbers are the same either way."""


def alphas(points: int = 11) -> torch.Tensor:
    """[K] evenly spaced interpolation weights from 0 (policy A) to 1 (policy B)."""
    if points < 3:
        raise ValueError(f"an interpolation path needs at least 3 points, got {points}")
    return torch.linspace(0.0, 1.0, points, dtype=torch.float64)


def interpolate(a: Params, b: Params, weights: torch.Tensor) -> Params:
    """Stacked endpoints a, b {name: [P, ...]} and weights [P] → (1 − w)·a + w·b, row by row."""
    out = {}
    for name, start in a.items():
        w = weights.to(start.dtype).view(-1, *[1] * (start.dim() - 1))
        out[name] = start + w * (b[name] - start)
    return out


def path_points(ends: Params, pairs: Sequence[tuple[int, int]], weights: torch.Tensor) -> Params:
    """The points at ``weights`` [K] of the paths between ``pairs`` of stacked policies ``ends`` {name: [S, ...]}:
    {name: [len(pairs)·K, ...]}, pair by pair. The numbers of :func:`interpolate` on the gathered endpoints, with
    each pair's difference computed once and one temporary the size of the result instead of four (twice as
    fast on 576 CueConflict points)."""
    first, second = (torch.tensor([pair[side] for pair in pairs]) for side in (0, 1))
    left, pair_of = first.repeat_interleave(len(weights)), torch.arange(len(pairs)).repeat_interleave(len(weights))
    out = {}
    for name, value in ends.items():
        w = weights.to(value.dtype).repeat(len(pairs)).view(-1, *[1] * (value.dim() - 1))
        out[name] = (value[second] - value[first])[pair_of].mul_(w).add_(value[left])
    return out


def barrier(values: np.ndarray, weights: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Path values [..., K] at interpolation weights [K] (first 0, last 1) → barriers [...] (≥ 0)."""
    line = values[..., :1] * (1 - weights) + values[..., -1:] * weights
    gap = line - values if higher_is_better else values - line
    return gap.max(-1)


# --------------------------------------------------------------------------- REPAIR


Layer = tuple[str, str, Any]
"""One layer of a trunk as REPAIR walks it: (kind, child name, the Conv2d module or activation function)."""


def _repair_layers(trunk: Any, fast_tanh: bool = False) -> list[Layer] | None:
    """The layers of a trunk as REPAIR walks it, kind ``linear``, ``conv``, ``flatten`` or ``activation`` (its
    function, in place; ``fast_tanh``: tanh as :func:`~rlbasins.core.policy.fast_tanh`, as evaluation runs it on the
    CPU); None when the trunk holds any other kind of layer."""
    if not isinstance(trunk, torch.nn.Sequential):
        return None
    layers: list[Layer] = []
    for name, layer in trunk.named_children():
        if isinstance(layer, torch.nn.Linear):
            layers.append(("linear", name, None))
        elif isinstance(layer, torch.nn.Conv2d) and layer.groups == 1 and layer.padding_mode == "zeros":
            layers.append(("conv", name, layer))
        elif isinstance(layer, torch.nn.Flatten):
            layers.append(("flatten", name, None))
        elif (function := activation_function(layer, in_place=True, fast=fast_tanh)) is not None:
            layers.append(("activation", name, function))
        else:
            return None
    return layers


def repair_unsupported(template: ActorCritic) -> str | None:
    """Why REPAIR cannot renormalise ``template``'s architecture, or None when it can: Sequential trunks of
    Linear, Conv2d, Flatten and Tanh/ReLU layers (every actor-critic rlbasins builds)."""
    for trunk in ("actor", "critic"):
        if _repair_layers(getattr(template, trunk, None)) is None:
            return (f"REPAIR renormalises Sequential trunks of Linear, Conv2d, Flatten and Tanh/ReLU layers, and this "
                    f"policy's {trunk} holds another kind of layer")
    return None


def _stacked_layer(layer: Layer, prefix: str, params: Params, h: torch.Tensor) -> torch.Tensor:
    """A Linear (h [P, N, in] → [P, N, out]) or Conv2d (h [P, N, C, H, W] → [P, N, C', H', W']) layer of P
    stacked policies; a convolution runs as one grouped convolution over the P policies."""
    kind, name, conv = layer
    weight, bias = params[f"{prefix}.{name}.weight"].float(), params[f"{prefix}.{name}.bias"].float()
    if kind == "linear":
        return torch.baddbmm(bias[:, None], h, weight.transpose(1, 2))
    count, n = h.shape[:2]
    merged = h.transpose(0, 1).reshape(n, count * h.shape[2], *h.shape[3:])                  # [N, P·C, H, W]
    out = torch.nn.functional.conv2d(merged, weight.reshape(-1, *weight.shape[2:]), bias.reshape(-1),
                                     stride=conv.stride, padding=conv.padding, dilation=conv.dilation, groups=count)
    return out.reshape(n, count, -1, *out.shape[2:]).transpose(0, 1)                          # [P, N, C', H', W']


UnitStats = dict[str, tuple[torch.Tensor, torch.Tensor]]
"""Per hidden layer (``"actor.0"``, …) of P stacked policies: their units' pre-activation (mean, std), each
[P, units]."""


def _pooled(pre: torch.Tensor) -> tuple[int, ...]:
    """The dims a unit's statistics pool over: the states, and the positions for a convolution."""
    return (1, *range(3, pre.dim()))


def _std_mean(pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each unit's (std, mean) [P, units] of pre-activations ``pre`` (Bessel-corrected std, pooled over
    :func:`_pooled`), in two passes: the mean, then the mean squared deviation. ``torch.std_mean`` (Welford) gives
    the same up to float rounding but took 6.4 ms against 0.34 ms on [64 policies, 256 states, 64 units]."""
    dims = _pooled(pre)
    mean = pre.mean(dims, keepdim=True)
    deviation = pre - mean
    count = math.prod(pre.shape[d] for d in dims)
    variance = deviation.mul_(deviation).sum(dims) / (count - 1)
    return variance.sqrt_(), mean.reshape(variance.shape)


TRUNKS = ("actor", "critic")
ACTOR = ("actor",)
"""What every barrier metric reads: the actor alone (action probabilities), so paths renormalise only it."""


def actor_part(params: Params) -> Params:
    """The actor's entries of stacked (or single) parameters: all a path's metrics read. Interpolating only them
    halves the work; a fallback ``vmap(functional_call)`` policy takes the template's own critic for the rest."""
    return {name: value for name, value in params.items() if name.split(".")[0] in ACTOR}


def _walk(template: ActorCritic, params: Params, obs: torch.Tensor, visit: Callable[[str, torch.Tensor], torch.Tensor],
          trunks: Sequence[str] = TRUNKS, first: dict[str, torch.Tensor] | None = None,
          outputs: bool = False) -> dict[str, torch.Tensor]:
    """Run ``trunks`` of P stacked policies ``params`` on ``obs`` [N, ...], calling ``visit(layer, pre)`` on every
    hidden Linear or Conv2d pre-activation ([P, N, units] or [P, N, C, H, W]; layer "actor.0", …) and going on
    with what it returns (the activation then runs on it in place). ``params`` is read layer by layer, so
    ``visit`` may replace the current layer's entries. ``first``: each trunk's first layer's outputs, already
    computed (:class:`FirstLayer`; the walk may overwrite them). With ``outputs`` the walk goes on through the
    output layers and returns their outputs {trunk: [P, N, out]}, else {}. ValueError for an architecture REPAIR
    cannot walk."""
    unsupported = repair_unsupported(template)
    if unsupported is not None:
        raise ValueError(f"{unsupported}; set analysis.barriers.repair: false")
    count, device = len(next(iter(params.values()))), next(iter(params.values())).device
    inputs = template.inputs(obs).to(device)
    results = {}
    for trunk in trunks:
        layers = _repair_layers(getattr(template, trunk), fast_tanh=device.type == "cpu")
        weighted = [i for i, layer in enumerate(layers) if layer[0] in ("linear", "conv")]
        h, fresh = inputs.expand(count, *inputs.shape), False   # fresh: h is a layer's own output
        for i, layer in enumerate(layers if outputs else layers[:weighted[-1]]):
            kind, name, fn = layer
            if kind == "activation":
                h = fn(h if fresh else h.clone())
            elif kind == "flatten":
                h = h.flatten(2)
            else:
                h = first[trunk] if first is not None and i == weighted[0] else _stacked_layer(layer, trunk, params, h)
                h, fresh = visit(f"{trunk}.{name}", h) if i != weighted[-1] else h, True
        if outputs:
            results[trunk] = h
    return results


def first_layer_outputs(template: ActorCritic, params: Params, obs: torch.Tensor,
                        trunks: Sequence[str] = ACTOR) -> dict[str, torch.Tensor]:
    """{trunk: [P, N, units] or [P, N, C, H, W]} the first Linear or Conv2d layer's outputs of P stacked policies
    on ``obs`` [N, ...] (architectures REPAIR can walk)."""
    count, device = len(next(iter(params.values()))), next(iter(params.values())).device
    inputs = template.inputs(obs).to(device)
    out = {}
    for trunk in trunks:
        out[trunk] = _stacked_layer(_first_layer(template, trunk), trunk, params, inputs.expand(count, *inputs.shape))
    return out


def _first_layer(template: ActorCritic, trunk: str) -> Layer:
    """The first Linear or Conv2d layer of ``trunk`` (architectures REPAIR can walk)."""
    return next(layer for layer in _repair_layers(getattr(template, trunk)) if layer[0] in ("linear", "conv"))


@dataclass
class FirstLayer:
    """The first layer's outputs of P interpolated policies on the validation states, from their endpoints'.

    A Linear or Conv2d layer is linear in its weights, so the outputs of (1 − w)·θ_A + w·θ_B are (1 − w) times
    A's plus w times B's: computing them once per seed (``features``, :func:`first_layer_outputs` of S seeds)
    spares every path point its largest matmul (the same numbers up to float rounding). ``left``, ``right``
    [P]: each point's endpoints (rows of ``features``); ``weights`` [P]: its interpolation weight."""

    features: dict[str, torch.Tensor]
    left: torch.Tensor
    right: torch.Tensor
    weights: torch.Tensor

    def rows(self, part: slice) -> dict[str, torch.Tensor]:
        """{trunk: [P', N, ...]} the outputs of the points ``part`` (fresh tensors)."""
        left, right, weights = self.left[part], self.right[part], self.weights[part]
        return {trunk: torch.lerp(f.index_select(0, left), f.index_select(0, right),
                                  weights.to(f).view(-1, *[1] * (f.dim() - 1)))
                for trunk, f in self.features.items()}


@torch.no_grad()
def unit_statistics(template: ActorCritic, params: Params, obs: torch.Tensor,
                    trunks: Sequence[str] = TRUNKS) -> UnitStats:
    """The (mean, std) [P, units] of every hidden unit of ``trunks`` (pre-activations) of P stacked policies
    ``params`` on ``obs`` [N, ...] (what REPAIR interpolates). Computed once per seed, they serve every path
    from it."""
    stats: UnitStats = {}

    def record(layer: str, pre: torch.Tensor) -> torch.Tensor:
        std, mean = _std_mean(pre)
        stats[layer] = (mean, std)
        return pre

    _walk(template, params, obs, record, trunks)
    return stats


def pick_statistics(stats: UnitStats, rows: torch.Tensor | slice) -> UnitStats:
    """The statistics of the policies ``rows`` ([P'] indices, or a slice) of ``stats``."""
    return {layer: (mean[rows], std[rows]) for layer, (mean, std) in stats.items()}


@torch.no_grad()
def repair(template: ActorCritic, params: Params, stats_a: UnitStats, stats_b: UnitStats, weights: torch.Tensor,
           obs: torch.Tensor, trunks: Sequence[str] = TRUNKS) -> Params:
    """Rescale the hidden units of P interpolated policies so that, on ``obs`` [N, ...], each unit's
    pre-activation mean and std equal the interpolation (by ``weights`` [P]) of the endpoints'.

    A unit is a Linear layer's output or a convolution's output channel (its statistics pooled over the
    states and the positions, as REPAIR does for convolutions). ``params``: stacked {name: [P, ...]};
    ``stats_a``, ``stats_b``: the endpoints' :func:`unit_statistics`, one row per interpolated policy (see
    :func:`pick_statistics`); returns new stacked params, renormalised in ``trunks`` (the others' entries
    as they were; the statistics must cover ``trunks``). Raises ValueError for an architecture it cannot repair
    (:func:`repair_unsupported`).
    """
    return repair_with_outputs(template, params, stats_a, stats_b, weights, obs, trunks)[0]


@torch.no_grad()
def repair_with_outputs(template: ActorCritic, params: Params, stats_a: UnitStats, stats_b: UnitStats,
                        weights: torch.Tensor, obs: torch.Tensor, trunks: Sequence[str] = TRUNKS,
                        first: FirstLayer | None = None, outputs: bool = False
                        ) -> tuple[Params, dict[str, torch.Tensor]]:
    """:func:`repair`, and with ``outputs`` the repaired policies' outputs on ``obs`` from the same pass
    ({trunk: [P, N, out]}, the renormalised walk run on through the output layers; else {}). ``first``: the
    first layer's outputs, from the endpoints'. Policies go through in passes of :data:`POLICIES_PER_PASS`."""
    out = {name: torch.empty_like(value) for name, value in params.items()}   # keeps each one's memory layout
    results: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(weights), POLICIES_PER_PASS):
        part = slice(start, start + POLICIES_PER_PASS)
        repaired, walked = _repair_pass(template, {k: v[part] for k, v in params.items()},
                                        pick_statistics(stats_a, part), pick_statistics(stats_b, part),
                                        weights[part], obs, trunks, None if first is None else first.rows(part),
                                        outputs)
        for trunk, value in walked.items():
            results.setdefault(trunk, []).append(value)
        for name, value in repaired.items():
            out[name][part] = value
    return out, {trunk: torch.cat(values) for trunk, values in results.items()}


def _repair_pass(template: ActorCritic, params: Params, stats_a: UnitStats, stats_b: UnitStats,
                 weights: torch.Tensor, obs: torch.Tensor, trunks: Sequence[str], first: dict[str, torch.Tensor] | None,
                 outputs: bool) -> tuple[Params, dict[str, torch.Tensor]]:
    """One pass of :func:`repair_with_outputs` over a few policies (their activations stay in the cache)."""
    out = dict(params)
    w = weights.float().to(next(iter(params.values())).device).view(-1, 1)

    def renormalise(layer: str, pre: torch.Tensor) -> torch.Tensor:
        (mean_a, std_a), (mean_b, std_b) = stats_a[layer], stats_b[layer]
        target_mean, target_std = (1 - w) * mean_a + w * mean_b, (1 - w) * std_a + w * std_b     # [P, units]
        std, mean = _std_mean(pre)
        scale = target_std / (std + REPAIR_EPS)
        weight, bias = out[f"{layer}.weight"], out[f"{layer}.bias"]
        out[f"{layer}.weight"] = weight * scale.view(*scale.shape, *[1] * (weight.dim() - 2)).to(weight.dtype)
        out[f"{layer}.bias"] = ((bias - mean) * scale + target_mean).to(bias.dtype)
        shape = (len(w), 1, -1, *[1] * (pre.dim() - 3))                 # [P, units] → over states and positions
        return pre.sub_(mean.view(shape)).mul_(scale.view(shape)).add_(target_mean.view(shape))  # pre is fresh

    return out, _walk(template, out, obs, renormalise, trunks, first, outputs)


# --------------------------------------------------------------------------- what a path is measured on


@dataclass
class PathProbe:
    """The fixed episodes and states every path point is measured on (shared by all pairs, so that
    points and pairs are comparable)."""

    template: ActorCritic
    env_id: str
    env_kwargs: dict[str, Any]
    train_seeds: list[int]                  # [E] training-distribution episodes (sampled actions)
    validation_obs: torch.Tensor            # [N, ...] training-distribution states
    expert: torch.Tensor | None             # [N, A] bool: expert actions on them (None: env has no expert)
    action_seed: int
    device: torch.device
    heldout_starts: Any = None              # [H] held-out states, for strategy shares along a path
    heldout_seeds: list[int] | None = None
    suite: HeldOutSuite | None = None

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metrics this probe can measure (the loss needs an expert, held-out commitment named strategies)."""
        available = {"train_return": True, "loss": self.expert is not None,
                     "heldout_decided": self.heldout_starts is not None}
        return tuple(m for m in METRICS if available[m])

    @torch.no_grad()
    def measure(self, params: Params, metrics: Sequence[str] | None = None, heldout: bool = False,
                validation_logits: torch.Tensor | None = None) -> dict[str, np.ndarray]:
        """``metrics`` (default all of :attr:`metrics`) of P stacked policies: {metric: [P]}; with
        ``heldout`` also the greedy share of each held-out outcome name ({"share:<name>": [P]}).
        ``validation_logits``: the policies' logits on the validation states [P, N, A], when already computed."""
        return {name: values.mean(1)
                for name, values in self.samples(params, metrics, heldout, validation_logits).items()}

    def standard_errors(self, params: Params, metrics: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """{metric: [P]} the standard error of each policy's measured value: its samples' (episodes' or
        states') standard deviation over √(samples). A barrier of a few of them is within noise."""
        return {name: values.std(1, ddof=1) / np.sqrt(values.shape[1])
                for name, values in self.samples(params, metrics).items()}

    @torch.no_grad()
    def samples(self, params: Params, metrics: Sequence[str] | None = None, heldout: bool = False,
                validation_logits: torch.Tensor | None = None) -> dict[str, np.ndarray]:
        """What :meth:`measure` averages: {metric: [P, episodes or states]} (and {"share:<name>": [P, H]})."""
        metrics = self.metrics if metrics is None else metrics
        out = {}
        if "train_return" in metrics:
            episodes = play(self.template, params, self.env_id, self.env_kwargs, self.train_seeds, greedy=False,
                            action_seed=self.action_seed, device=self.device)
            out["train_return"] = episodes.returns
        if "loss" in metrics:
            out["loss"] = self.expert_loss(params, validation_logits)
        if self.heldout_starts is not None and (heldout or "heldout_decided" in metrics):
            held = play(self.template, params, self.env_id, self.env_kwargs, self.heldout_seeds,
                        starts=self.heldout_starts, suite=self.suite, greedy=True, device=self.device)
            outcomes = held.outcomes.astype(str)
            if "heldout_decided" in metrics:
                out["heldout_decided"] = np.isin(outcomes, self.suite.labels).astype(float)
            if heldout:
                for name in sorted(set(outcomes.reshape(-1))):
                    out[f"share:{name}"] = (outcomes == name).astype(float)
        return out

    @torch.no_grad()
    def validation_logits(self, params: Params, first: FirstLayer | None = None) -> torch.Tensor:
        """[P, N, A] the logits of P stacked policies on the validation states, in passes of
        :data:`POLICIES_PER_PASS` policies; ``first``: their first layer's outputs from their endpoints'."""
        count = len(next(iter(params.values())))
        obs = self.validation_obs.to(self.device).float()
        parts = []
        for start in range(0, count, POLICIES_PER_PASS):
            part = {k: v[start:start + POLICIES_PER_PASS].to(self.device) for k, v in params.items()}
            if first is not None:
                rows = {k: v.to(self.device) for k, v in first.rows(slice(start, start + POLICIES_PER_PASS)).items()}
                parts.append(_walk(self.template, part, obs, lambda _, pre: pre, ACTOR, rows, outputs=True)["actor"])
            else:
                parts.append(StackedPolicy.from_params(self.template, part).logits(
                    obs.expand(min(POLICIES_PER_PASS, count - start), *obs.shape)))
        return torch.cat(parts)

    def expert_loss(self, params: Params, logits: torch.Tensor | None = None) -> np.ndarray:
        """[P, N] on each validation state, −log Σ_{expert a} π(a | s); ``logits``: the policies'
        :meth:`validation_logits`, when already computed."""
        logits = self.validation_logits(params) if logits is None else logits
        expert = self.expert.to(logits.device)
        parts = [-chunk.log_softmax(-1).masked_fill_(~expert, float("-inf")).logsumexp(-1)
                 for chunk in logits.split(POLICIES_PER_PASS)]
        return torch.cat(parts).double().cpu().numpy()


def make_probe(template: ActorCritic, env_id: str, env_kwargs: dict[str, Any], n_episodes: int, n_states: int,
               seed: int, device: torch.device | str = "cpu", suite: HeldOutSuite | None = None) -> PathProbe:
    """Draw the probe's episodes and validation states from ``seed``."""
    rng = np.random.default_rng(seed)
    train_seeds = rng.integers(2**31, size=n_episodes).tolist()
    heldout_starts = heldout_seeds = None
    if env_id in envs.GRID_ENVS:
        core_class = envs.GRID_ENVS[env_id]
        core = core_class(num_envs=n_states, **env_kwargs)
        states = core_class.training_states(n_states, seed=int(rng.integers(2**32)), size=core.size)
        validation_obs, expert = core.observe(states), core.optimal_actions(states)
    else:  # no expert: the validation states are the first states of training episodes
        env = gym.make(env_id, **env_kwargs)
        validation_obs = torch.as_tensor(np.stack([env.reset(seed=int(s))[0] for s in
                                                   rng.integers(2**31, size=n_states)]))
        env.close()
        expert = None
    if suite is not None and suite.labels is not None:  # strategy shares along paths need named strategies
        env = gym.make(env_id, **env_kwargs)
        heldout_starts = suite.sample_states(env, rng, n_episodes)
        env.close()
        heldout_seeds = rng.integers(2**31, size=n_episodes).tolist()
    return PathProbe(template, env_id, dict(env_kwargs), train_seeds, validation_obs, expert, int(seed),
                     torch.device(device), heldout_starts, heldout_seeds, suite)


# --------------------------------------------------------------------------- paths and barrier matrices


@dataclass
class PathCurves:
    """One path: interpolation weights [K] and, per metric (and held-out share), values [K]."""

    alphas: list[float]
    values: dict[str, list[float]]
    barriers: dict[str, float]


@dataclass
class InterpolationPath:
    """A representative path between two seeds (``kind``: within or across basins), each variant's curves
    (``naive``, ``aligned``, ``aligned_repair``) by name."""

    kind: str
    seed_a: int | str
    seed_b: int | str
    """Seeds of a run, or the names of two compared policies (``rlbasins compare``)."""
    curves: dict[str, PathCurves]


def path_curves(a: StateDict, b: StateDict, probe: PathProbe, points: int = 11, repair_units: bool = False,
                heldout: bool = True) -> PathCurves:
    """The full path from ``a`` to ``b`` (already aligned, or not) with every metric."""
    weights = alphas(points)
    a, b = actor_part(a), actor_part(b)
    stacked_a = {k: v[None].expand(points, *v.shape) for k, v in a.items()}
    stacked_b = {k: v[None].expand(points, *v.shape) for k, v in b.items()}
    params = interpolate(stacked_a, stacked_b, weights)
    if repair_units:
        ends = unit_statistics(probe.template, {k: torch.stack([a[k], b[k]]) for k in a}, probe.validation_obs,
                               ACTOR)
        first, second = torch.zeros(points, dtype=torch.long), torch.ones(points, dtype=torch.long)
        params = repair(probe.template, params, pick_statistics(ends, first), pick_statistics(ends, second),
                        weights, probe.validation_obs, ACTOR)
    measured = probe.measure(params, heldout=heldout)
    barriers = {m: float(barrier(measured[m], weights.numpy(), HIGHER_IS_BETTER[m])) for m in probe.metrics}
    return PathCurves(weights.tolist(), {k: v.tolist() for k, v in measured.items()}, barriers)


def barrier_matrix(state_dicts: Sequence[StateDict], probe: PathProbe, pairs: Sequence[tuple[int, int]],
                   points: int = 11, repair_units: bool = False, metrics: Sequence[str] | None = None,
                   pairs_per_chunk: int = 64, on_progress: Callable[[int], None] | None = None
                   ) -> dict[str, np.ndarray]:
    """Barriers between the given pairs of policies: {metric: [len(pairs)]} for ``metrics`` (default all).

    Endpoint values are measured once per policy; the K − 2 interior points of ``pairs_per_chunk``
    pairs at a time form one batch of policies. ``on_progress(n)`` reports pairs done.
    """
    return barrier_matrices(state_dicts, probe, pairs, points, (repair_units,), metrics, pairs_per_chunk,
                            on_progress)[repair_units]


def barrier_matrices(state_dicts: Sequence[StateDict], probe: PathProbe, pairs: Sequence[tuple[int, int]],
                     points: int = 11, repairs: Sequence[bool] = (False, True), metrics: Sequence[str] | None = None,
                     pairs_per_chunk: int = 64, on_progress: Callable[[int], None] | None = None
                     ) -> dict[bool, dict[str, np.ndarray]]:
    """:func:`barrier_matrix` without and with REPAIR (``repairs``), {repair: {metric: [len(pairs)]}}, from one
    build of each chunk's path points and one measurement of the endpoints (which REPAIR leaves as they are).
    ``on_progress(n)`` reports pairs done, once per variant."""
    weights = alphas(points)
    ends = actor_part({name: torch.stack([sd[name] for sd in state_dicts]) for name in state_dicts[0]})
    metrics = probe.metrics if metrics is None else metrics
    endpoint_values = probe.measure(ends, metrics)
    seed_stats = unit_statistics(probe.template, ends, probe.validation_obs, ACTOR) if any(repairs) else None
    validation = any(repairs) or "loss" in metrics                 # passes over the validation states
    features = first_layer_outputs(probe.template, ends, probe.validation_obs) \
        if validation and repair_unsupported(probe.template) is None else None
    if features is not None and not any(repairs) and set(metrics) == {"loss"}:
        first_name = f"actor.{_first_layer(probe.template, 'actor')[1]}."    # the loss alone takes it from features
        ends = {k: v for k, v in ends.items() if not k.startswith(first_name)}
    else:
        ends = entries_layout(ends)                              # what the rollouts of the path points read
    interior = weights[1:-1]
    out = {repaired: {m: np.empty(len(pairs)) for m in metrics} for repaired in repairs}
    for first in range(0, len(pairs), pairs_per_chunk):
        chunk = pairs[first:first + pairs_per_chunk]
        left = torch.tensor([i for i, _ in chunk]).repeat_interleave(len(interior))
        right = torch.tensor([j for _, j in chunk]).repeat_interleave(len(interior))
        w = interior.repeat(len(chunk))
        points_params = path_points(ends, chunk, interior)
        first_layer = None if features is None else FirstLayer(features, left, right, w)
        for repaired in repairs:
            params, logits = points_params, None
            if repaired:
                params, outputs = repair_with_outputs(probe.template, params, pick_statistics(seed_stats, left),
                                                      pick_statistics(seed_stats, right), w, probe.validation_obs,
                                                      ACTOR, first_layer, outputs="loss" in metrics)
                logits = outputs.get("actor")
            elif "loss" in metrics:
                logits = probe.validation_logits(params, first_layer)
            measured = probe.measure(params, metrics, validation_logits=logits)
            for m in metrics:
                path = measured[m].reshape(len(chunk), len(interior))
                full = np.concatenate([endpoint_values[m][[i for i, _ in chunk], None], path,
                                       endpoint_values[m][[j for _, j in chunk], None]], axis=1)
                out[repaired][m][first:first + len(chunk)] = barrier(full, weights.numpy(), HIGHER_IS_BETTER[m])
            if on_progress is not None:
                on_progress(len(chunk))
    return out


def as_square(values: np.ndarray, pairs: Sequence[tuple[int, int]], n: int) -> np.ndarray:
    """Barriers of all pairs i < j [n(n−1)/2] → a symmetric [n, n] matrix with a zero diagonal."""
    square = np.zeros((n, n))
    for value, (i, j) in zip(values, pairs, strict=True):
        square[i, j] = square[j, i] = value
    return square


# --------------------------------------------------------------------------- the barrier study of a run


PAIRWISE = "pairwise"
"""``BarrierStudy.mode`` when every pair of seeds was measured."""


@dataclass
class BarrierStudy(Result):
    """``analysis/connectivity.json``: barriers naive, aligned and aligned + REPAIR between every pair of
    seeds (``mode`` pairwise) or from every seed to the behavioural basins' medoids; matrices [S, S] per
    variant and metric (NaN where not measured), their off-diagonal summaries, and representative paths."""

    mode: str
    points: int
    episodes: int
    n_states: int
    metrics: list[str]
    barrier_metric: str
    """The aligned barrier that defines the weight-space basins."""
    align: dict[str, str]
    seeds: list[int]
    matrices: dict[str, dict[str, list[list[float]]]]
    summary: dict[str, dict[str, dict[str, float]]]
    paths: list[InterpolationPath]
    repair_skipped: str | None
    standard_error: dict[str, float] | None = None
    """Per metric, the median over seeds of the standard error of a seed's measured value (episodes or states:
    :meth:`PathProbe.standard_errors`): the resolution of its barriers. None in files written before."""

    @property
    def pairwise(self) -> bool:
        """Every pair of seeds was measured (else every seed to each behavioural medoid)."""
        return self.mode == PAIRWISE

    def matrix(self, variant: str = "aligned", metric: str | None = None) -> np.ndarray:
        """One barrier matrix [S, S] (default: the aligned one on ``barrier_metric``)."""
        return np.array(self.matrices[variant][metric or self.barrier_metric], dtype=float)


def barrier_pairs(n: int, max_pairwise: int, anchors: list[int]) -> tuple[list[tuple[int, int]], bool]:
    """The seed pairs to measure: every pair (n ≤ ``max_pairwise``), else every seed to each anchor
    (the behavioural medoids); and whether that is pairwise."""
    if n <= max_pairwise:
        return list(itertools.combinations(range(n), 2)), True
    return [(m, i) for m in anchors for i in range(n) if i != m], False


def barrier_study(template: ActorCritic, state_dicts: list[StateDict], aligned: list[StateDict], probe: PathProbe,
                  seeds: list[int], anchors: list[int], settings: BarriersConfig, align_settings: AlignConfig,
                  env_id: str, show_progress: bool = True) -> BarrierStudy:
    """Barrier matrices for the naive, aligned and (``settings.repair``) aligned + REPAIR policies, without
    the representative paths (:func:`representative_paths` adds them).

    Every metric for the aligned policies, with and without REPAIR (each is a weight-space view:
    :mod:`~rlbasins.analysis.weight_space`); the naive comparison on the loss (no rollouts) where the env
    has an expert, else on ``barrier_metric`` (auto: the training return, which reads no held-out state)."""
    pairs, pairwise = barrier_pairs(len(seeds), settings.max_pairwise, anchors)
    metric = settings.barrier_metric if settings.barrier_metric != "auto" else "train_return"
    if metric not in probe.metrics:
        raise ValueError(f"analysis.barriers.barrier_metric {metric!r} is not measured for {env_id} "
                         f"(available: {', '.join(probe.metrics)})")
    comparison = ["loss"] if "loss" in probe.metrics else [metric]
    repair_skipped = repair_unsupported(template) if settings.repair else None
    repairs = {"aligned": False, "aligned_repair": True} if settings.repair and repair_skipped is None \
        else {"aligned": False}
    ends = {name: torch.stack([sd[name] for sd in aligned]) for name in aligned[0]}
    standard_error = {m: float(np.median(v)) for m, v in probe.standard_errors(ends).items()}
    with task_progress("interpolation barriers", len(pairs) * (1 + len(repairs)), enabled=show_progress) as advance:
        values = {"naive": barrier_matrix(state_dicts, probe, pairs, settings.points, False, comparison,
                                          on_progress=advance)}
        both = barrier_matrices(aligned, probe, pairs, settings.points, tuple(repairs.values()), probe.metrics,
                                on_progress=advance)        # one build of each path point for both
        values.update({name: both[repaired] for name, repaired in repairs.items()})
        matrices = {name: {m: _to_matrix(v, pairs, len(seeds), pairwise) for m, v in by_metric.items()}
                    for name, by_metric in values.items()}
    return BarrierStudy(
        mode=PAIRWISE if pairwise else "to behavioural medoids", points=settings.points,
        episodes=settings.episodes, n_states=settings.n_states, metrics=list(probe.metrics), barrier_metric=metric,
        align={"method": align_settings.method, "reference": align_settings.reference}, seeds=seeds,
        matrices={name: {m: v.tolist() for m, v in ms.items()} for name, ms in matrices.items()},
        summary={name: {m: _off_diagonal_summary(v) for m, v in ms.items()} for name, ms in matrices.items()},
        paths=[], repair_skipped=repair_skipped, standard_error=standard_error)


def representative_paths(clusters: Clustering, tv: np.ndarray, seeds: list[int], state_dicts, aligned,
                         probe: PathProbe, points: int, with_repair: bool) -> list[InterpolationPath]:
    """Full curves (naive, aligned, aligned + REPAIR) for: the two most central seeds (by total variation
    ``tv`` [S, S]) of each of the two largest behavioural basins (within), and the two largest basins'
    medoids (across)."""
    labels = np.asarray(clusters.labels)
    chosen: list[tuple[str, int, int]] = []
    for c in range(min(2, clusters.k)):
        members = np.flatnonzero(labels == c)
        if len(members) >= 2:
            central = members[np.argsort(tv[np.ix_(members, members)].sum(1), kind="stable")[:2]]
            chosen.append((f"within basin {c}", int(central[0]), int(central[1])))
    if clusters.k >= 2:
        centre = medoids(tv, clusters.labels)
        chosen.append(("across basins 0 and 1", centre[0], centre[1]))
    paths = []
    for kind, i, j in chosen:
        curves = {"naive": path_curves(state_dicts[i], state_dicts[j], probe, points),
                  "aligned": path_curves(aligned[i], aligned[j], probe, points)}
        if with_repair:
            curves["aligned_repair"] = path_curves(aligned[i], aligned[j], probe, points, repair_units=True)
        paths.append(InterpolationPath(kind, seeds[i], seeds[j], curves))
    return paths


def _to_matrix(values: np.ndarray, pairs, n: int, pairwise: bool) -> np.ndarray:
    """Pair barriers → [n, n] (pairwise) or [n, n] with only the medoid columns/rows filled (NaN elsewhere)."""
    if pairwise:
        return as_square(values, pairs, n)
    square = np.full((n, n), np.nan)
    np.fill_diagonal(square, 0.0)
    for value, (m, i) in zip(values, pairs, strict=True):
        square[i, m] = square[m, i] = value
    return square


def _off_diagonal_summary(matrix: np.ndarray) -> dict[str, float]:
    values = matrix[~np.eye(len(matrix), dtype=bool)]
    values = values[np.isfinite(values)]
    return {"mean": float(values.mean()), "median": float(np.median(values)), "max": float(values.max())} \
        if values.size else {}
