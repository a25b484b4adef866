"""Permutation alignment of policies: Git Re-Basin for the exchange format.

Ainsworth, Hayase & Srinivasa 2023, "Git Re-Basin: Merging Models modulo Permutation
Symmetries" (arXiv 2209.04836; JAX code ``samuela/git-re-basin``). Permuting the hidden units
of an MLP — the rows of one layer's weight and bias and the columns of the next layer's
weight — leaves its function unchanged; so does permuting the channels of a convolution (axis
0 of its weight [out, in, kh, kw] and its bias, axis 1 of the next convolution's weight, and
the blocks of H·W columns each channel owns in the Linear after a ``Flatten``). Before two
seeds' weights are compared or interpolated, one is permuted to look as much as possible like
the other:

- :func:`weight_matching` (data-free): maximise Σ_params ⟨W_ref, π(W_other)⟩ over the
  permutations π by coordinate descent, one linear assignment per permutation;
- :func:`activation_matching` (needs observations): match each layer's units by the
  correlation of their activations, one linear assignment per layer;
- :func:`align_many`: align N seeds to one reference, or to their iterated mean (after the
  paper's MergeMany).

A :class:`PermutationSpec` says which permutation acts on which axis of which parameter.
:func:`infer_spec` builds it from the parameter names of the exchange format
(:class:`rlbasins.core.policy.ActorCritic`, MLP or CNN), of a shared-trunk actor-critic and of a bare
``nn.Sequential``; for anything else pass a spec explicitly.

A permutation ``p`` (a LongTensor [n]) means: new unit ``i`` is old unit ``p[i]``, i.e.
``tensor.index_select(axis, p)`` on every axis it acts on — or, on an axis where each unit owns
a block of ``b`` consecutive entries, ``index_select`` of the entries of blocks ``p``.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from rlbasins.core.config import AlignConfig
from rlbasins.core.progress import task_progress

StateDict = dict[str, torch.Tensor]

ELEMENTWISE_ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.Tanh, nn.ReLU, nn.GELU, nn.ELU, nn.LeakyReLU, nn.Sigmoid, nn.SiLU, nn.Identity)
# Chains whose output feeds the actor and critic chains of a shared-trunk actor-critic.
TRUNK_PREFIXES = ("shared", "trunk")
HEAD_PREFIXES = ("actor", "critic")


@dataclass(frozen=True)
class PermutationSpec:
    """Which permutation acts on which axis of which parameter (as in git-re-basin).

    perm_to_axes: permutation name → the (parameter name, axis) pairs it acts on.
    axes_to_perm: parameter name → one entry per axis of the parameter: the name of the
        permutation acting on that axis, or None.
    block_sizes: (parameter name, axis) → how many consecutive entries of that axis each unit
        owns (absent: 1). The Linear after a ``Flatten`` of [C, H, W] has C·H·W inputs, channel
        c owning the block c·H·W … (c+1)·H·W − 1: block size H·W on axis 1.
    """

    perm_to_axes: dict[str, list[tuple[str, int]]]
    axes_to_perm: dict[str, tuple[str | None, ...]]
    block_sizes: dict[tuple[str, int], int] = field(default_factory=dict)

    @classmethod
    def from_axes_to_perm(cls, axes_to_perm: dict[str, tuple[str | None, ...]],
                          block_sizes: dict[tuple[str, int], int] | None = None) -> PermutationSpec:
        perm_to_axes: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for name, axis_perms in axes_to_perm.items():
            for axis, perm in enumerate(axis_perms):
                if perm is not None:
                    perm_to_axes[perm].append((name, axis))
        return cls(dict(perm_to_axes), dict(axes_to_perm), dict(block_sizes or {}))

    def perm_sizes(self, state_dict: StateDict) -> dict[str, int]:
        """Permutation name → number of units it permutes, read off ``state_dict``'s shapes."""
        return {p: state_dict[name].shape[axis] // self.block_sizes.get((name, axis), 1)
                for p, [(name, axis), *_] in self.perm_to_axes.items()}

    def entries(self, name: str, axis: int, perm: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        """The indices along ``axis`` of parameter ``name`` that unit permutation ``perm`` [n] selects:
        ``perm`` itself, or with blocks of b entries per unit [n·b] the entries of blocks ``perm``."""
        block = self.block_sizes.get((name, axis), 1)
        if block == 1:
            return perm
        offsets = np.arange(block) if isinstance(perm, np.ndarray) else torch.arange(block, device=perm.device)
        return (perm[:, None] * block + offsets).reshape(-1)


# ---------------------------------------------------------------------------------------------
# Spec inference
# ---------------------------------------------------------------------------------------------

def _layer_indices(state_dict: StateDict, prefix: str) -> list[int]:
    """Sorted indices ``i`` of the layers ``{prefix}.{i}`` (or ``{i}`` for prefix "")."""
    pattern = re.compile(rf"{re.escape(prefix + '.') if prefix else ''}(\d+)\.(weight|bias)")
    return sorted({int(m.group(1)) for key in state_dict if (m := pattern.fullmatch(key))})


Axes = dict[str, tuple[str | None, ...]]
Blocks = dict[tuple[str, int], int]


def sequential_spec(state_dict: StateDict, prefix: str, input_perm: str | None = None,
                    permute_output: bool = False) -> tuple[Axes, Blocks]:
    """The axes_to_perm and block_sizes entries of a chain ``{prefix}.0``, ``{prefix}.2``, ...: Conv2d
    layers (weight [out, in, kh, kw]), then Linear layers (weight [out, in]), with parameter-free
    layers (activations, a ``Flatten`` between the two) at the indices in between.

    Every layer's output but the last gets its own permutation ``"{prefix}.{i}"`` (the last's too
    when ``permute_output``, for a trunk that feeds other chains); biases follow their output
    units; the first layer's input axis gets ``input_perm`` (None: the observation, not
    permuted). The first Linear after a convolution reads the flattened channels: its input
    axis has C·k entries for the C channels, each channel a block of k = H·W. prefix "" is a
    bare ``nn.Sequential`` (keys ``0.weight``, ...).
    """
    indices = _layer_indices(state_dict, prefix)
    if not indices:
        raise ValueError(f"no layers named {prefix or '<index>'}.<i>.weight in the state dict")
    axes: Axes = {}
    blocks: Blocks = {}
    perm, width, after_conv = input_perm, None, False
    for k, i in enumerate(indices):
        name = f"{prefix}.{i}" if prefix else str(i)
        weight = state_dict.get(f"{name}.weight")
        if weight is None or weight.ndim not in (2, 4) or (weight.ndim == 4 and width is not None and not after_conv):
            raise ValueError(f"{name}.weight must be a Conv2d weight [out, in, kh, kw] (before any Linear) or a "
                             "Linear weight [out, in]; a spec must be passed explicitly")
        if width is not None and after_conv and weight.ndim == 2:  # flattened channels: a block of H·W each
            if weight.shape[1] % width:
                raise ValueError(f"{name}.weight has {weight.shape[1]} inputs, not a multiple of the {width} "
                                 "channels of the convolution before it")
            if weight.shape[1] > width and perm is not None:
                blocks[(f"{name}.weight", 1)] = weight.shape[1] // width
        elif width is not None and weight.shape[1] != width:
            raise ValueError(f"{name}.weight has {weight.shape[1]} inputs but the layer before it has {width} outputs")
        out_perm = name if k < len(indices) - 1 or permute_output else None
        axes[f"{name}.weight"] = (out_perm, perm) + (None,) * (weight.ndim - 2)  # kernel positions: not permuted
        bias = state_dict.get(f"{name}.bias")
        if bias is not None:
            if bias.shape != weight.shape[:1]:
                raise ValueError(f"{name}.bias has shape {tuple(bias.shape)}, expected ({weight.shape[0]},)")
            axes[f"{name}.bias"] = (out_perm,)
        perm, width, after_conv = out_perm, weight.shape[0], weight.ndim == 4
    return axes, blocks


def infer_spec(state_dict: StateDict) -> PermutationSpec:
    """The permutation spec of an MLP or CNN actor-critic, from its parameter names and shapes.

    Understood layouts (every hidden layer's units or channels get their own permutation):

    - ``actor.*`` and/or ``critic.*`` chains reading the observation (the exchange format,
      :class:`rlbasins.core.policy.ActorCritic`, with or without convolutions before its Linear
      layers): the two trunks are permuted independently;
    - the same (Linear layers only) fed by a shared Linear trunk ``shared.*`` or ``trunk.*``:
      the heads' first layers' input axis gets the trunk's last permutation;
    - a bare ``nn.Sequential`` of such layers (keys ``0.weight``, ``2.weight``, ...).

    Raises ValueError naming the first parameter that fits none of these (a norm layer, a
    3-D tensor, an unknown name, a convolutional shared trunk): a spec must then be passed
    explicitly.
    """
    head_pattern = re.compile(rf"({'|'.join(HEAD_PREFIXES + TRUNK_PREFIXES)})\.\d+\.(weight|bias)")
    bare_pattern = re.compile(r"\d+\.(weight|bias)")
    pattern = bare_pattern if all(bare_pattern.fullmatch(k) for k in state_dict) else head_pattern
    for key, tensor in state_dict.items():
        if not pattern.fullmatch(key) or tensor.ndim not in ((2, 4) if key.endswith(".weight") else (1,)):
            raise ValueError(f"cannot infer a permutation spec for parameter {key!r} (shape {tuple(tensor.shape)}): "
                             "only Conv2d and Linear layers in actor/critic/shared/trunk chains or a bare "
                             "nn.Sequential are understood; pass a PermutationSpec explicitly")
    if pattern is bare_pattern:
        return PermutationSpec.from_axes_to_perm(*sequential_spec(state_dict, ""))

    prefixes = {key.split(".", 1)[0] for key in state_dict}
    trunks = [p for p in TRUNK_PREFIXES if p in prefixes]
    heads = [p for p in HEAD_PREFIXES if p in prefixes]
    if len(trunks) > 1 or not heads:
        raise ValueError(f"expected actor/critic chains and at most one shared trunk, got {sorted(prefixes)}; "
                         "pass a PermutationSpec explicitly")
    axes: Axes = {}
    blocks: Blocks = {}
    input_perm = None
    if trunks:
        if any(v.ndim == 4 for k, v in state_dict.items() if k.startswith(f"{trunks[0]}.")):
            raise ValueError(f"a convolutional shared trunk {trunks[0]!r} is not understood (its heads would read "
                             "flattened channels); pass a PermutationSpec explicitly")
        axes, _ = sequential_spec(state_dict, trunks[0], permute_output=True)
        input_perm = axes[f"{trunks[0]}.{_layer_indices(state_dict, trunks[0])[-1]}.weight"][0]
    for head in heads:
        head_axes, head_blocks = sequential_spec(state_dict, head, input_perm=input_perm)
        axes |= head_axes
        blocks |= head_blocks
    return PermutationSpec.from_axes_to_perm(axes, blocks)


def spec_for_module(module: nn.Module) -> PermutationSpec:
    """:func:`infer_spec` of ``module``'s state dict, after checking that the module is built
    only of ``nn.Sequential`` chains of Conv2d (ungrouped), Flatten, Linear layers and
    elementwise activations (either the module itself or its direct children). The forward pass
    is assumed to compose the chains as their names say (trunk, then actor and critic)."""
    chains = [module] if isinstance(module, nn.Sequential) else list(module.children())
    for chain in chains:
        if not isinstance(chain, nn.Sequential):
            raise ValueError(f"{type(chain).__name__} is not an nn.Sequential; pass a PermutationSpec explicitly")
        for layer in chain:
            grouped = isinstance(layer, nn.Conv2d) and layer.groups != 1  # its channels mix only within groups
            if grouped or not isinstance(layer, (nn.Linear, nn.Conv2d, nn.Flatten, *ELEMENTWISE_ACTIVATIONS)):
                raise ValueError(f"{type(layer).__name__} is none of Linear, ungrouped Conv2d, Flatten or an "
                                 "elementwise activation; pass a PermutationSpec explicitly")
    return infer_spec(module.state_dict())


# ---------------------------------------------------------------------------------------------
# Applying permutations
# ---------------------------------------------------------------------------------------------

def _check_spec(spec: PermutationSpec, state_dict: StateDict) -> None:
    if set(spec.axes_to_perm) != set(state_dict):
        extra, missing = set(state_dict) - set(spec.axes_to_perm), set(spec.axes_to_perm) - set(state_dict)
        raise ValueError(f"spec and state dict disagree: not in the spec {sorted(extra)}, "
                         f"not in the state dict {sorted(missing)}")


def _check_same_shapes(reference: StateDict, other: StateDict) -> None:
    for k, v in reference.items():
        if v.shape != other[k].shape:
            raise ValueError(f"{k} has shape {tuple(v.shape)} in reference and {tuple(other[k].shape)} in other")


def permute_state_dict(state_dict: StateDict, spec: PermutationSpec, perms: dict[str, torch.Tensor]) -> StateDict:
    """New tensors: every parameter with its units permuted (new unit i = old unit ``perms[p][i]``).

    perms: permutation name → LongTensor [n] for every permutation of ``spec``.
    """
    _check_spec(spec, state_dict)
    permuted = {}
    for name, tensor in state_dict.items():
        for axis, p in enumerate(spec.axes_to_perm[name]):
            if p is not None:
                tensor = tensor.index_select(axis, spec.entries(name, axis, perms[p].to(tensor.device)))
        permuted[name] = tensor.clone()
    return permuted


def random_permutations(spec: PermutationSpec, state_dict: StateDict,
                        generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """A uniformly random permutation (LongTensor [n]) for every permutation of ``spec``."""
    return {p: torch.randperm(n, generator=generator) for p, n in spec.perm_sizes(state_dict).items()}


def inverse_permutations(perms: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The permutations that undo ``perms``."""
    return {p: torch.argsort(perm) for p, perm in perms.items()}


def matching_objective(reference: StateDict, other: StateDict, spec: PermutationSpec | None = None) -> float:
    """Σ_params ⟨W_ref, W_other⟩ (in float64) over the parameters of ``spec`` (default: all),
    the quantity weight matching maximises over ``other``'s permutations."""
    names = spec.axes_to_perm if spec is not None else reference
    ref, oth = _float64_arrays(reference), _float64_arrays(other)
    return float(sum(np.vdot(ref[k], oth[k]) for k in names))


# ---------------------------------------------------------------------------------------------
# Matching (in NumPy float64: tiny matrices, where torch's thread pool costs more than the maths)
# ---------------------------------------------------------------------------------------------

Arrays = dict[str, np.ndarray]


def _float64_arrays(state_dict: StateDict) -> Arrays:
    return {k: v.detach().to("cpu", torch.float64).numpy() for k, v in state_dict.items()}


def _permuted(spec: PermutationSpec, perms: Arrays, name: str, array: np.ndarray, except_axis: int) -> np.ndarray:
    """``array`` (parameter ``name``) with every permutation applied except the one on ``except_axis``."""
    for axis, p in enumerate(spec.axes_to_perm[name]):
        if p is not None and axis != except_axis:
            array = np.take(array, spec.entries(name, axis, perms[p]), axis=axis)
    return array


def _similarity(spec: PermutationSpec, perms: Arrays, ref: Arrays, other: Arrays, n: int,
                axes: list[tuple[str, int]]) -> np.ndarray:
    """A [n, n] = Σ over (param, axis) in ``axes`` of W_ref [n, rest] @ W_other [n, rest]^T: both
    moved to ``axis`` and flattened, W_other with ``perms`` applied on its other axes. A[i, j]
    is how much ``other``'s unit j looks like ``reference``'s unit i. ``rest`` holds every
    non-permuted entry: a convolution's kernel positions, the H·W columns of a channel's block."""
    similarity = np.zeros((n, n))
    for name, axis in axes:
        w_ref = np.swapaxes(ref[name], 0, axis).reshape(n, -1)
        w_other = np.swapaxes(_permuted(spec, perms, name, other[name], except_axis=axis), 0, axis).reshape(n, -1)
        similarity += w_ref @ w_other.T
    return similarity


def _assignment(similarity: np.ndarray) -> np.ndarray:
    """The permutation p [n] maximising Σ_i similarity[i, p[i]]."""
    return linear_sum_assignment(similarity, maximize=True)[1]


def _incoming_init(spec: PermutationSpec, ref: Arrays, other: Arrays, sizes: dict[str, int]) -> Arrays:
    """Permutations chosen one at a time in spec order, each from only the weights whose other
    axes are already settled: for an MLP spec (inputs before outputs) a layer's incoming
    weights and bias given the previous layer's permutation (plus the head's weights, for the
    last hidden layer). Exact for a permuted copy whose units are all distinct."""
    perms: Arrays = {}
    for p, axes in spec.perm_to_axes.items():
        settled = [(name, axis) for name, axis in axes
                   if all(q is None or q in perms for i, q in enumerate(spec.axes_to_perm[name]) if i != axis)]
        perms[p] = _assignment(_similarity(spec, perms, ref, other, sizes[p], settled))
    return perms


def weight_matching(reference_state_dict: StateDict, other_state_dict: StateDict, spec: PermutationSpec | None = None,
                    max_iter: int = 100, seed: int = 0, return_perms: bool = False,
                    init: Literal["incoming", "identity"] = "incoming",
                    ) -> StateDict | tuple[StateDict, dict[str, torch.Tensor]]:
    """``other`` permuted to be as close as possible to ``reference``, without data.

    Git Re-Basin's weight matching: coordinate descent on Σ_params ⟨W_ref, π(W_other)⟩. Each
    sweep visits the permutations in a random order (seeded by ``seed``); for permutation P
    of n units the similarity A [n, n] sums, over every (param, axis) P acts on,
    W_ref [n, rest] @ W_other[n, rest]^T — both moved to that axis and flattened, W_other with
    the current other permutations applied on its other axes — and
    ``linear_sum_assignment(A, maximize=True)`` gives the best P given the rest. A new P is
    kept only if it improves the objective (ties keep the current one); the descent stops
    after a sweep that improves nothing, or after ``max_iter`` sweeps. Computed in float64 on
    the CPU; the result has ``other``'s dtypes and devices and the same function as ``other``.

    init: where the descent starts. ``"identity"`` is the paper's algorithm; it stops in a
        coordinate-wise local optimum often enough that a permuted copy of a small random MLP
        is not recovered about one time in ten. ``"incoming"`` (default) starts from each
        layer matched on its incoming weights given the previous layer's permutation — exact
        for a permuted copy, and for independent networks the descent from there ends higher
        far more often than lower.
    spec: default :func:`infer_spec` of ``reference``.
    Returns the aligned state dict, and with ``return_perms`` also the permutations
    (name → LongTensor [n]) that produced it from ``other``.
    """
    spec = spec if spec is not None else infer_spec(reference_state_dict)
    _check_spec(spec, reference_state_dict)
    _check_spec(spec, other_state_dict)
    _check_same_shapes(reference_state_dict, other_state_dict)
    ref, other = _float64_arrays(reference_state_dict), _float64_arrays(other_state_dict)
    sizes = spec.perm_sizes(ref)
    if init == "incoming":
        perms = _incoming_init(spec, ref, other, sizes)
    else:
        perms = {p: np.arange(n) for p, n in sizes.items()}
    names = list(perms)
    rng = np.random.default_rng(seed)
    for _ in range(max_iter):
        improved = False
        for p in (names[i] for i in rng.permutation(len(names))):
            similarity = _similarity(spec, perms, ref, other, sizes[p], spec.perm_to_axes[p])
            candidate, rows = _assignment(similarity), np.arange(sizes[p])
            old, new = float(similarity[rows, perms[p]].sum()), float(similarity[rows, candidate].sum())
            if new > old + 1e-12 * abs(old):  # a relative tolerance, so rounding noise on ties is no progress
                perms[p], improved = candidate, True
        if not improved:
            break
    found = {p: torch.as_tensor(perm, dtype=torch.long) for p, perm in perms.items()}
    aligned = permute_state_dict(other_state_dict, spec, found)
    return (aligned, found) if return_perms else aligned


def _standardised(activations: torch.Tensor) -> np.ndarray:
    """[N, n] → each unit (column) centred and scaled to unit variance; constant units → 0."""
    x = activations.detach().to("cpu", torch.float64).numpy()
    constant = (x == x[:1]).all(axis=0)
    centred = x - x.mean(axis=0)
    return np.where(constant, 0.0, centred / np.where(constant, 1.0, centred.std(axis=0)))


def _record_activations(module: nn.Module, spec: PermutationSpec,
                        observations: torch.Tensor) -> dict[str, torch.Tensor]:
    """Permutation name → the post-activation outputs [N, n] of the units it permutes.

    A permutation's units are the outputs of the Linear (Conv2d) whose weight it permutes on axis
    0; a channel's outputs at every spatial position count as samples ([B·H·W, n]). A
    forward hook on that layer records them during one forward pass of ``module`` on
    ``observations``, passed through the elementwise activation that follows the Linear in its
    Sequential, if one does (applied in the hook, so an activation instance reused at several
    places in the network is no problem).
    """
    recorded: dict[str, torch.Tensor] = {}
    handles = []
    for p, axes in spec.perm_to_axes.items():
        producers = [name.removesuffix(".weight") for name, axis in axes if axis == 0 and name.endswith(".weight")]
        if len(producers) != 1:
            raise ValueError(f"permutation {p!r} must permute the outputs of exactly one layer, got {producers}")
        parent_name, _, index = producers[0].rpartition(".")
        parent = module.get_submodule(parent_name)
        in_sequential = isinstance(parent, nn.Sequential) and int(index) + 1 < len(parent)
        following = parent[int(index) + 1] if in_sequential else None
        activation = following if isinstance(following, ELEMENTWISE_ACTIVATIONS) else nn.Identity()
        producer = module.get_submodule(producers[0])
        channels = 1 if isinstance(producer, nn.Conv2d) else -1  # the units' axis of the layer's output

        def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor, p: str = p,
                 activation: nn.Module = activation, channels: int = channels) -> None:
            recorded[p] = activation(output).movedim(channels, -1).reshape(-1, output.shape[channels])

        handles.append(producer.register_forward_hook(hook))
    try:
        with torch.no_grad():
            module(observations.to(next(module.parameters()).device))
    finally:
        for handle in handles:
            handle.remove()
    return recorded


def activation_matching(reference: nn.Module, other: nn.Module, observations: torch.Tensor,
                        spec: PermutationSpec | None = None) -> StateDict:
    """``other``'s state dict permuted so that its hidden units match ``reference``'s on data.

    Git Re-Basin's activation matching: both modules run on the same ``observations``
    [N, *obs_shape]; for each permutation the units' post-activation outputs [N, n] (a conv
    channel's at all N·H·W positions) are
    standardised and ``linear_sum_assignment`` maximises the summed cross-correlation
    [n_ref, n_other] of matched units. Units that are constant on the data correlate 0 with
    everything (they cannot be told apart by activations). For a shared trunk the trunk's
    permutation comes from the trunk's activations. spec: default :func:`spec_for_module`.
    """
    spec = spec if spec is not None else spec_for_module(reference)
    _check_spec(spec, reference.state_dict())
    _check_spec(spec, other.state_dict())
    _check_same_shapes(reference.state_dict(), other.state_dict())
    ref_acts = _record_activations(reference, spec, observations)
    other_acts = _record_activations(other, spec, observations)
    perms = {}
    for p in spec.perm_to_axes:
        correlation = _standardised(ref_acts[p]).T @ _standardised(other_acts[p]) / ref_acts[p].shape[0]
        perms[p] = torch.as_tensor(_assignment(correlation), dtype=torch.long)
    return permute_state_dict(other.state_dict(), spec, perms)


def _mean_state_dict(state_dicts: list[StateDict]) -> StateDict:
    return {k: torch.stack([sd[k].detach().to("cpu", torch.float64) for sd in state_dicts]).mean(0)
            for k in state_dicts[0]}


MATCHING_THREADS = 2
"""Weight matchings run this many at a time (:func:`align_many`): scipy's assignment solver releases the GIL
(2,000 assignments of 64 units: 0.22 s on one thread, 0.12 s on two, on the 2-core development machine)."""


def align_many(state_dicts: list[StateDict], spec: PermutationSpec | None = None,
               reference: int | Literal["mean"] = 0, rounds: int = 3, seed: int = 0,
               on_progress: Callable[[int], None] | None = None,
               match: Callable[[StateDict, StateDict], StateDict] | None = None) -> list[StateDict]:
    """Every state dict permuted into one common unit order, with O(N) weight matchings per round.

    reference: an index — every model is weight-matched to ``state_dicts[reference]`` (which
        is returned as a copy); or ``"mean"`` — after the paper's MergeMany: the mean starts as
        ``state_dicts[0]``, then ``rounds`` times every model is matched to the current mean
        and the mean is recomputed from the aligned models. (MergeMany matches each model to
        the mean of the others; matching to the mean of all is N times cheaper to update.)
    on_progress: called with 1 after each aligned model (N calls, or rounds × N for "mean"),
        e.g. the ``advance`` of :func:`rlbasins.core.progress.task_progress`.
    match: ``(target, other) → other aligned to target``; default :func:`weight_matching` with
        ``spec`` and ``seed`` (pass e.g. a closure over :func:`activation_matching` instead).
    Returns the aligned state dicts in input order, each with its input's function.
    """
    if not state_dicts:
        return []
    if reference != "mean" and not 0 <= reference < len(state_dicts):
        raise ValueError(f"reference must be \"mean\" or an index in [0, {len(state_dicts)}), got {reference!r}")
    if reference == "mean" and rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    spec = spec if spec is not None else infer_spec(state_dicts[0])
    threads = MATCHING_THREADS if match is None else 1       # a caller's match may share state between calls
    if match is None:
        def match(target: StateDict, other: StateDict) -> StateDict:
            return weight_matching(target, other, spec, seed=seed)

    def align_all(target: StateDict, skip: int | None = None) -> list[StateDict]:
        def one(i: int) -> StateDict:
            return {k: v.clone() for k, v in state_dicts[i].items()} if i == skip else match(target, state_dicts[i])

        aligned = []
        with ThreadPoolExecutor(threads) as pool:
            for state_dict in pool.map(one, range(len(state_dicts))):
                aligned.append(state_dict)
                if on_progress is not None:
                    on_progress(1)
        return aligned

    if reference != "mean":
        return align_all(state_dicts[reference], skip=reference)
    mean = {k: v.detach().to("cpu", torch.float64) for k, v in state_dicts[0].items()}
    for _ in range(rounds):
        aligned = align_all(mean)
        mean = _mean_state_dict(aligned)
    return aligned


def align_seeds(settings: AlignConfig, template: nn.Module, state_dicts: list[StateDict], heldout_obs: torch.Tensor,
                seed: int = 0, show_progress: bool = True) -> list[StateDict]:
    """A run's seeds in one unit order, as ``analysis.align`` says: weight matching, or activation matching
    on the held-out observations [N, ...]; to the iterated mean (``rounds`` rounds) or to the first seed."""
    reference = "mean" if settings.reference == "mean" else 0
    rounds = settings.rounds if reference == "mean" else 1
    match = None
    if settings.method == "activation":
        obs = heldout_obs.float()
        spec = infer_spec(state_dicts[0])
        target_module, other_module = template.fresh_copy(), template.fresh_copy()

        def match(target, other):
            target_module.load_state_dict({k: v.float() for k, v in target.items()})
            other_module.load_state_dict(other)
            return activation_matching(target_module, other_module, obs, spec)

    with task_progress("Git Re-Basin alignment", len(state_dicts) * rounds, enabled=show_progress) as advance:
        return align_many(state_dicts, reference=reference, rounds=rounds, seed=seed, on_progress=advance, match=match)
