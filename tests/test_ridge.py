"""Ridge Rider's pieces (rlbasins.train.ridge): Lanczos eigenpairs of Hessian-vector products, the line search,
and branching from a saddle to different minima."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlbasins.core.policy import ActorCritic
from rlbasins.train.ridge import (
    STEP_GRID,
    LossBatch,
    actor_params,
    flatten,
    hessian_eigenpairs,
    line_search,
    moved,
    random_directions,
    surrogate_loss,
)


def double_well(params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Two symmetric minima at (x, y) = (±1.3, 0) and a saddle at the origin: (x² − 1.69)² + y²."""
    return (params["x"] ** 2 - 1.69).pow(2).sum() + params["y"].pow(2).sum()


def descend(loss, params: dict[str, torch.Tensor], steps: int = 2000, lr: float = 0.01) -> dict[str, torch.Tensor]:
    """Plain gradient descent."""
    params = {name: value.clone().requires_grad_() for name, value in params.items()}
    for _ in range(steps):
        grads = torch.autograd.grad(loss(params), list(params.values()))
        with torch.no_grad():
            for value, g in zip(params.values(), grads, strict=True):
                value -= lr * g
    return {name: value.detach() for name, value in params.items()}


def test_ridge_reaches_both_minima_of_a_double_well_from_its_saddle() -> None:
    saddle = {"x": torch.zeros(1, dtype=torch.float64), "y": torch.zeros(1, dtype=torch.float64)}
    # the gradient is 0 at the saddle: descent alone stays there
    assert descend(double_well, saddle)["x"].abs().item() == 0.0
    eigen = hessian_eigenpairs(double_well, saddle, k=1)
    assert eigen.values[0] == pytest.approx(-4 * 1.69)                     # ∂²/∂x² = 12x² − 4·1.69 at 0
    assert abs(eigen.vectors[0]["x"].item()) == pytest.approx(1.0)
    ends = []
    for sign in (1, -1):
        direction = {name: sign * value for name, value in eigen.vectors[0].items()}
        step, after = line_search(double_well, saddle, direction)
        assert after < double_well(saddle).item()
        ends.append(descend(double_well, moved(saddle, direction, step)))
    assert sorted(round(end["x"].item(), 4) for end in ends) == [-1.3, 1.3]
    assert all(abs(end["y"].item()) < 1e-6 for end in ends)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), size=st.integers(4, 12), k=st.integers(1, 3))
def test_lanczos_eigenpairs_are_those_of_the_dense_hessian(seed: int, size: int, k: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((size, size))
    hessian = torch.as_tensor(a + a.T)
    x0 = torch.as_tensor(rng.standard_normal(size))

    def quadratic(params):
        v = params["v"]
        return 0.5 * v @ hessian @ v + torch.sin(v).sum() * 0  # exactly quadratic: ∇² = hessian

    eigen = hessian_eigenpairs(quadratic, {"v": x0}, k=k)
    dense = np.linalg.eigvalsh(hessian.numpy())[:k]
    np.testing.assert_allclose(eigen.values, dense, atol=1e-6)
    for value, vector in zip(eigen.values, eigen.vectors, strict=True):
        v = vector["v"]
        assert float(v.norm()) == pytest.approx(1.0)
        np.testing.assert_allclose((hessian @ v).numpy(), value * v.numpy(), atol=1e-5)   # an eigenvector
        assert v[v.abs().argmax()] > 0                                                    # its sign fixed


def test_line_search_takes_the_grid_minimum_and_the_smallest_on_ties() -> None:
    def bowl(params):
        return (params["v"] - 0.5).pow(2).sum()

    zero = {"v": torch.zeros(1, dtype=torch.float64)}
    step, loss = line_search(bowl, zero, {"v": torch.ones(1, dtype=torch.float64)})
    best = min(STEP_GRID, key=lambda a: (a - 0.5) ** 2)
    assert step == best and loss == pytest.approx((best - 0.5) ** 2)
    step, _ = line_search(lambda p: p["v"].sum() * 0, zero, {"v": torch.ones(1, dtype=torch.float64)})
    assert step == STEP_GRID[0]                                                 # flat: the smallest step


def test_random_directions_are_unit_and_reproducible() -> None:
    params = {"a": torch.zeros(3, 4), "b": torch.zeros(5)}
    first, again = random_directions(params, 3, seed=1), random_directions(params, 3, seed=1)
    for d, e in zip(first, again, strict=True):
        assert float(flatten(d).norm()) == pytest.approx(1.0)
        assert torch.equal(flatten(d), flatten(e))
    assert not torch.equal(flatten(first[0]), flatten(random_directions(params, 1, seed=2)[0]))


def test_surrogate_loss_reads_the_actor_only_and_is_clipped() -> None:
    torch.manual_seed(0)
    policy = ActorCritic(6, 3, [8])
    obs = torch.randn(64, 6)
    with torch.no_grad():
        log_probs = torch.log_softmax(policy.actor(obs), -1)
    actions = torch.randint(3, (64,))
    batch = LossBatch(obs, actions, log_probs.gather(-1, actions[:, None]).squeeze(-1), torch.randn(64))
    loss = surrogate_loss(policy, batch, clip_range=0.2, ent_coef=0.0)
    actor = {name: value.double() for name, value in actor_params(policy.state_dict()).items()}
    assert set(actor) == {"actor.0.weight", "actor.0.bias", "actor.2.weight", "actor.2.bias"}
    assert float(loss(actor)) == pytest.approx(0.0, abs=1e-6)   # ratio 1 (float32 log-probs), advantages of mean 0
    # far along any direction the clipped surrogate stops paying: the loss is bounded below by −(1 + clip)·E[|Â|]
    far = moved(actor, random_directions(actor, 1, seed=0)[0], 100.0)
    adv = (batch.advantages - batch.advantages.mean()) / (batch.advantages.std() + 1e-8)
    assert float(loss(far)) >= -1.2 * float(adv.abs().mean()) - 1e-9
