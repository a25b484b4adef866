"""Ridge Rider's branches: the Hessian's most negative eigenvectors of a training loss, and a step along each.

Ridge Rider (Parker-Holder et al. 2020, "Ridge Rider: finding diverse solutions by following eigenvectors of
the Hessian") starts where the gradient picks no direction (a saddle) and follows the eigenvectors of the
loss's Hessian with negative eigenvalues, the *ridges*: descending along +e and along −e leads to different
minima. This module has the three pieces, for any loss over a dict of parameters:

- :func:`hessian_eigenpairs`: the ``k`` most negative eigenpairs of ∇²L(θ), by Lanczos
  (``scipy.sparse.linalg.eigsh`` on a ``LinearOperator``) over Hessian-vector products (``torch.func``:
  the forward-mode derivative of the gradient), in float64; it counts the products (the compute bill);
- :func:`line_search`: the step α, from a geometric grid, that minimises L(θ + α·d) along a unit direction d
  (ties: the smallest);
- :func:`surrogate_loss`: the loss of a policy's training data: PPO's clipped surrogate plus its entropy
  term, on a fixed rollout batch of the training env, as a function of the actor's parameters (the critic
  does not act). At the batch's own policy every probability ratio is 1, inside the clip, so the Hessian
  there is the unclipped surrogate's; along a branch the clip bounds the line search (moving ratios past
  1 ± clip gains nothing, and moving them the wrong way is charged in full).

What is a "training-distribution loss" matters for generalization basins: its inputs must be training
states only, never the held-out probe (the study checks and drops any probe state, see
:mod:`rlbasins.studies.diversity`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator, eigsh
from torch.func import functional_call, grad, jvp

from rlbasins.core.policy import ActorCritic

Params = dict[str, torch.Tensor]
Loss = Callable[[Params], torch.Tensor]

STEP_GRID = tuple(float(a) for a in np.geomspace(1e-3, 10.0, 25))
"""The steps :func:`line_search` tries by default (a unit direction; parameter-norm units)."""


def flatten(params: Params) -> torch.Tensor:
    """{name: tensor} → one float64 vector [P] (the names' order)."""
    return torch.cat([p.detach().reshape(-1).double() for p in params.values()])


def unflatten(vector: torch.Tensor, like: Params) -> Params:
    """[P] → {name: tensor} shaped like ``like`` (in ``vector``'s dtype)."""
    out, start = {}, 0
    for name, p in like.items():
        out[name] = vector[start:start + p.numel()].reshape(p.shape)
        start += p.numel()
    return out


@dataclass
class Eigenpairs:
    """The ``k`` most negative eigenpairs of a Hessian, most negative first."""

    values: np.ndarray         # [k]
    vectors: list[Params]      # [k] unit directions (float64), each signed so its largest entry is positive
    products: int              # Hessian-vector products spent


def hessian_eigenpairs(loss: Loss, params: Params, k: int, tol: float = 1e-6, seed: int = 0) -> Eigenpairs:
    """The ``k`` smallest-algebraic (most negative) eigenpairs of ∇²loss at ``params``, by Lanczos on
    Hessian-vector products in float64. ``seed`` draws Lanczos's start vector (deterministic results)."""
    x = flatten(params)
    size = x.numel()
    if not 0 < k < size:
        raise ValueError(f"k must be in 1 … {size - 1} (the parameters' count − 1), got {k}")

    def flat_loss(vector: torch.Tensor) -> torch.Tensor:
        return loss(unflatten(vector, params))

    gradient = grad(flat_loss)
    products = 0

    def matvec(v: np.ndarray) -> np.ndarray:
        nonlocal products
        products += 1
        tangent = torch.as_tensor(np.asarray(v, dtype=np.float64).reshape(-1))
        return jvp(gradient, (x,), (tangent,))[1].numpy()

    start = np.random.default_rng(seed).standard_normal(size)
    values, vectors = eigsh(LinearOperator((size, size), matvec=matvec, dtype=np.float64), k=k, which="SA",
                            v0=start, tol=tol)
    order = np.argsort(values)
    directions = []
    for i in order:
        v = vectors[:, i] / np.linalg.norm(vectors[:, i])
        v = v * np.sign(v[np.argmax(np.abs(v))])                 # eigsh's sign is arbitrary: fix one
        directions.append(unflatten(torch.as_tensor(v), params))
    return Eigenpairs(values[order], directions, products)


def random_directions(params: Params, k: int, seed: int) -> list[Params]:
    """``k`` unit directions drawn uniformly from the sphere of ``params``' space (float64): the control for
    eigenvectors (a branch of the same length that follows no ridge)."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(k):
        v = torch.randn(flatten(params).numel(), generator=generator, dtype=torch.float64)
        out.append(unflatten(v / v.norm(), params))
    return out


def moved(params: Params, direction: Params, step: float) -> Params:
    """θ + step·d, in ``params``' dtype (combined in float64)."""
    return {name: (p.double() + step * direction[name]).to(p.dtype) for name, p in params.items()}


def line_search(loss: Loss, params: Params, direction: Params, steps: tuple[float, ...] = STEP_GRID
                ) -> tuple[float, float]:
    """(α, loss there): the step of ``steps`` minimising loss(θ + α·d), the smallest on ties; the losses are
    evaluated in float64."""
    base = {name: p.double() for name, p in params.items()}
    with torch.no_grad():
        losses = [float(loss(moved(base, direction, a))) for a in steps]
    best = int(np.argmin(losses))
    return steps[best], losses[best]


@dataclass
class LossBatch:
    """A fixed rollout batch of one policy in the training env: N samples."""

    obs: torch.Tensor            # [N, *obs_shape]
    actions: torch.Tensor        # [N] int64
    old_log_probs: torch.Tensor  # [N]
    advantages: torch.Tensor     # [N] (GAE, as PPO computes them)


def actor_params(weights: Params) -> Params:
    """The actor's parameters of an exchange-format state dict (the ones that decide behaviour)."""
    return {name: value for name, value in weights.items() if name.startswith("actor.")}


def surrogate_loss(template: ActorCritic, batch: LossBatch, clip_range: float, ent_coef: float) -> Loss:
    """actor parameters → PPO's loss without the value term on ``batch``: −mean(min(r·Â, clip(r)·Â)) −
    ent_coef · mean entropy, with Â the batch's advantages normalised (SB3's ``normalize_advantage``) and
    r = π(a|s) / π_old(a|s). Computed in the parameters' dtype."""
    advantages = (batch.advantages - batch.advantages.mean()) / (batch.advantages.std() + 1e-8)

    def loss(params: Params) -> torch.Tensor:
        dtype = next(iter(params.values())).dtype
        obs = template.inputs(batch.obs).to(dtype)
        logits = functional_call(template.actor, {n.removeprefix("actor."): p for n, p in params.items()}, (obs,))
        log_softmax = torch.log_softmax(logits, -1)
        log_prob = log_softmax.gather(-1, batch.actions[:, None]).squeeze(-1)
        ratio = torch.exp(log_prob - batch.old_log_probs.to(dtype))
        adv = advantages.to(dtype)
        policy_loss = -torch.min(adv * ratio, adv * ratio.clamp(1 - clip_range, 1 + clip_range)).mean()
        entropy = -(log_softmax.exp() * log_softmax).sum(-1).mean()
        return policy_loss - ent_coef * entropy

    return loss
