"""Training length (:mod:`rlbasins.analysis.training_length`): basins tracked through checkpoints, as
specifications."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlbasins.analysis.training_length import (
    basin_means,
    distances_to_basins,
    last_switches,
    nearest_basin,
    summarize,
    transition_counts,
)
from rlbasins.core.config import TrainingLengthConfig


def random_probs(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.dirichlet(np.ones(shape[-1]), size=shape[:-1])


# --------------------------------------------------------------------------- training length


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 4), st.integers(0, 2**16))
def test_a_seed_acting_as_a_basin_mean_is_assigned_that_basin(n_basins: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = np.arange(12) % n_basins
    final = random_probs(rng, (12, 10, 4))
    means = basin_means(final, labels)
    assert means.shape == (n_basins, 10, 4) and np.allclose(means.sum(-1), 1.0)
    distances = distances_to_basins(means, means)  # each "seed" is exactly one basin's mean
    assert np.allclose(np.diag(distances), 0.0) and (distances >= 0).all() and (distances <= 1 + 1e-12).all()
    assert (nearest_basin(distances) == np.arange(n_basins)).all()


def test_total_variation_to_a_basin_is_half_the_l1_distance_averaged_over_states() -> None:
    seed_probs = np.array([[[1.0, 0.0], [0.5, 0.5]]])                    # [1 seed, 2 states, 2 actions]
    means = np.array([[[0.0, 1.0], [0.5, 0.5]], [[1.0, 0.0], [1.0, 0.0]]])
    assert np.allclose(distances_to_basins(seed_probs, means), [[0.5, 0.25]])


@given(st.lists(st.integers(0, 3), min_size=1, max_size=30))
def test_transitions_of_a_constant_assignment_are_diagonal(assignment: list[int]) -> None:
    counts = transition_counts(np.array(assignment), np.array(assignment), 4)
    assert (counts == np.diag(np.bincount(assignment, minlength=4))).all()


def test_transitions_count_each_seed_once_from_row_to_column() -> None:
    counts = transition_counts(np.array([0, 0, 1, 1, 1]), np.array([0, 1, 1, 0, 1]), 2)
    assert counts.tolist() == [[1, 1], [1, 2]]


def test_last_switch_is_the_first_checkpoint_of_the_final_assignment() -> None:
    fractions = [0.0, 0.25, 0.5, 0.75, 1.0]
    assignments = np.array([[0, 1, 1, 0],     # step 0
                            [0, 0, 1, 0],
                            [0, 0, 1, 1],
                            [0, 0, 1, 1],
                            [0, 0, 1, 0]])   # [T steps, S seeds]
    assert last_switches(assignments, fractions) == [None, 0.25, None, 1.0]


def test_summary_of_a_planted_trajectory() -> None:
    """8 seeds, two basins; seed 7 leaves basin 0 for basin 1 at 75% of training and the rest never move:
    the shares, transitions, last switches and late share follow."""
    rng = np.random.default_rng(0)
    templates = random_probs(rng, (2, 6, 3))
    templates[1] = templates[0][:, ::-1]  # the other basin prefers the other actions
    final = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    steps = [0, 100, 200, 300, 400]
    probs = []
    for t in range(len(steps)):
        where = final.copy()
        if t < 3:
            where[7] = 0
        probs.append(templates[where] + 0.0)
    settings = TrainingLengthConfig(late_fraction=0.5, resamples=200)
    out = summarize(list(range(8)), final.tolist(), steps, probs, settings)
    assert out.skipped is None and out.n_basins == 2 and out.fractions == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert out.final_agreement == 1.0
    assert out.shares[0] == [5 / 8, 3 / 8] and out.shares[-1] == [0.5, 0.5]
    assert all(low <= share <= high for row, cis in zip(out.shares, out.share_ci, strict=True)
               for share, (low, high) in zip(row, cis, strict=True))
    assert out.transitions[2] == [[4, 1], [0, 3]] and out.transitions[0] == [[5, 0], [0, 3]]
    assert out.late_transitions == [[8, 1], [0, 7]]  # transitions from 0.5 and 0.75
    assert out.last_switch == [None] * 7 + [0.75] and out.switches_per_seed == [0] * 7 + [1]
    assert out.late_switchers == [7] and out.late_share == 1 / 8
    assert out.late_share_ci[0] < 1 / 8 < out.late_share_ci[1]
    assert out.mean_distance == [0.0] * 5 and out.mean_distance_ci == [[0.0, 0.0]] * 5
    # the basin-free part: only seed 7 moves, by the TV between the two basins' behaviours, until 75%
    between = float(distances_to_basins(templates[:1], templates[1:])[0, 0])
    assert out.drift == pytest.approx([between / 8] * 3 + [0.0, 0.0])
    assert out.drift_ci[-1] == [0.0, 0.0] and out.drift_ci[0][0] <= between / 8 <= out.drift_ci[0][1]
    assert out.spread[-1] == pytest.approx(between * 16 / 28)  # 4 × 4 cross-basin pairs of 28
    assert out.clusters == [2] * 5


