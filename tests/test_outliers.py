"""Outliers (:mod:`rlbasins.analysis.outliers`), on synthetic seeds with known truth: a planted odd seed is
named, members of basins (big, or of two seeds) are not, and runs without outliers name none beyond chance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlbasins.analysis.behavior import total_variation_matrix
from rlbasins.analysis.outliers import holm, outlier_test


def seeds_like(strategies: list[int], n_states: int = 144, quirk: float = 0.4, seed: int = 0) -> np.ndarray:
    """The [S, S] held-out total variation of seeds whose action distributions [S, N, 4] follow strategy
    ``strategies[k]`` (its own logits per state) plus each seed's own consistent quirks (a seed-level
    perturbation of every state's logits, of random size: some seeds are quirkier than others)."""
    rng = np.random.default_rng(seed)
    strategy_logits = 2.0 * rng.standard_normal((max(strategies) + 1, n_states, 4))
    size = quirk * rng.uniform(0.7, 1.3, size=(len(strategies), 1, 1))
    logits = strategy_logits[strategies] + size * rng.standard_normal((len(strategies), n_states, 4))
    return total_variation_matrix(torch.softmax(torch.as_tensor(logits), -1)).numpy()


def test_a_planted_odd_seed_is_named_and_the_others_are_not() -> None:
    probs = seeds_like([0] * 47 + [1])
    result = outlier_test(probs, labels=[0] * 48, seeds=list(range(100, 148)))  # folded into one basin
    assert [o.seed for o in result.outliers] == [147]
    odd = result.outliers[0]
    assert odd.basin == 0 and odd.distance > 2 * odd.typical and odd.p_adjusted < 0.05
    assert odd.p_permutation == 1 / 48  # the farthest of 48: as far as exchangeability alone can say


def test_runs_without_outliers_name_none_beyond_chance() -> None:
    # one basin, and two basins of 24 clustered correctly: every seed has its basin's behaviour (with quirks)
    named = {}
    for strategies in ([0] * 48, [0] * 24 + [1] * 24):
        named[len(set(strategies))] = sum(bool(outlier_test(seeds_like(strategies, seed=seed), strategies,
                                                            list(range(48))).outliers) for seed in range(40))
    assert named[1] <= 4 and named[2] <= 4, named  # family-wise 5%: 2 of 40 runs expected, 6 exceeds 1 in 20


def test_a_basin_of_two_seeds_is_a_basin_not_two_outliers() -> None:
    strategies = [0] * 46 + [1] * 2
    result = outlier_test(seeds_like(strategies, seed=3), strategies, list(range(48)))
    assert result.outliers == [] and result.p_value[-1] is None and result.p_value[-2] is None  # not tested
    assert result.distance[-1] == result.distance[-2]  # each other's nearest neighbour


def test_holm_adjusts_step_down_and_keeps_order() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.5])
    assert holm(p).tolist() == pytest.approx([0.04, 0.09, 0.09, 0.5])


def test_basins_too_small_for_a_reliable_scale_are_not_tested() -> None:
    strategies = [0] * 36 + [1] * 12
    result = outlier_test(seeds_like(strategies, seed=4), strategies, list(range(48)))
    assert all(p is not None for p in result.p_value[:36]) and all(p is None for p in result.p_value[36:])
    assert all(d is not None for d in result.distance)  # every seed still gets its distance
