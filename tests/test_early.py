"""Early basin detection: detectors are scored out-of-fold, perfect signals score 1, no signal scores chance,
and the nearest-medoid detector sees through permutations of the hidden units."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.model_selection import StratifiedKFold

from rlbasins.analysis import align
from rlbasins.analysis.early import (
    _stratified_bootstrap,
    choose_target,
    classifier_predictor,
    cross_validated_predictions,
    medoid_predictor,
    sign_predictor,
)
from rlbasins.core.policy import ActorCritic


def splits_for(y: np.ndarray, folds: int = 4) -> list[tuple[np.ndarray, np.ndarray]]:
    return list(StratifiedKFold(folds, shuffle=True, random_state=0).split(np.zeros(len(y)), y))


def balanced_accuracy(y: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.mean([(predicted[y == c] == c).mean() for c in np.unique(y)]))


def test_every_seed_is_predicted_by_a_model_that_never_saw_it() -> None:
    y = np.repeat([0, 1, 2], 8)
    seen: dict[int, set[int]] = {}

    def spy(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        for i in test:
            seen[int(i)] = set(train.tolist())
        return y[test]

    predicted = cross_validated_predictions(spy, y, splits_for(y))
    assert (predicted == y).all()
    assert set(seen) == set(range(len(y))) and all(i not in train for i, train in seen.items())


def test_a_feature_that_encodes_the_basin_scores_one_and_noise_scores_near_chance() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 60)
    informative = rng.normal(size=(len(y), 20)) + 3.0 * y[:, None]
    noise = rng.normal(size=(len(y), 20))
    perfect = cross_validated_predictions(classifier_predictor(informative, y), y, splits_for(y, 5))
    chance = cross_validated_predictions(classifier_predictor(noise, y), y, splits_for(y, 5))
    assert balanced_accuracy(y, perfect) == 1.0
    assert 0.3 <= balanced_accuracy(y, chance) <= 0.7
    assert _stratified_bootstrap(y, perfect, 200, 0) == [1.0, 1.0]


def test_the_naive_baseline_maps_the_sign_of_the_lean_to_the_final_class_its_fold_saw() -> None:
    y = np.repeat([0, 1], 12)
    lean = np.where(y == 1, -0.4, 0.3)            # class 1 leans to strategy B, class 0 to strategy A
    assert balanced_accuracy(y, cross_validated_predictions(sign_predictor(lean, y), y, splits_for(y))) == 1.0
    flipped = cross_validated_predictions(sign_predictor(-lean, y), y, splits_for(y))  # only the mapping is learnt
    assert balanced_accuracy(y, flipped) == 1.0
    undecided = cross_validated_predictions(sign_predictor(np.zeros(len(y)), y), y, splits_for(y))
    assert balanced_accuracy(y, undecided) == 0.5   # no lean yet: every seed gets the fold's majority class
    # a sign the training fold never saw gets the training fold's majority class
    predict = sign_predictor(np.array([0.2, -0.5, -0.1, 0.0, 0.7]), np.array([0, 1, 1, 0, 0]))
    assert predict(np.array([0, 1, 2]), np.array([3, 4])).tolist() == [1, 0]


def test_the_target_is_the_basin_when_there_are_two_and_else_the_dominant_strategy() -> None:
    two_basins, one_basin = [0, 0, 1, 1, 0], [0, 0, 0, 0, 0]
    labels = ["shape", "colour", "shape", "shape", "colour"]
    assert choose_target("auto", two_basins, labels) == ("basin", ["basin 0", "basin 1"], two_basins)
    assert choose_target("auto", one_basin, labels) == ("strategy", ["colour", "shape"], [1, 0, 1, 1, 0])
    assert choose_target("basin", one_basin, labels)[0] == "basin"
    assert choose_target("strategy", two_basins, labels)[0] == "strategy"
    assert choose_target("auto", one_basin, None)[0] == "basin"  # no strategies named by the env
    # a basin of a single seed is not a second basin to predict
    assert choose_target("auto", [0, 0, 0, 0, 1], labels)[0] == "strategy"


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 2), min_size=6, max_size=40), st.integers(0, 2**16))
def test_bootstrap_interval_contains_the_balanced_accuracy(predicted: list[int], seed: int) -> None:
    y = np.arange(len(predicted)) % 3
    predicted = np.array(predicted)
    low, high = _stratified_bootstrap(y, predicted, 300, seed)
    assert 0.0 <= low <= balanced_accuracy(y, predicted) <= high <= 1.0


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**16))
def test_nearest_medoid_sees_through_permuted_hidden_units(seed: int) -> None:
    """Two basins of networks (a centre plus small noise); each seed's checkpoint is its final weights with
    the hidden units randomly permuted, so only weight matching can bring it next to its basin's medoid."""
    torch.manual_seed(seed)
    centres = [ActorCritic(obs_shape=6, n_actions=3, hidden_sizes=[16, 16]).state_dict() for _ in range(2)]
    y = np.repeat([0, 1], 6)
    finals = [{k: v + 0.05 * torch.randn_like(v) for k, v in centres[c].items()} for c in y]
    spec = align.infer_spec(finals[0])
    generator = torch.Generator().manual_seed(seed)
    checkpoints = [align.permute_state_dict(sd, spec, align.random_permutations(spec, sd, generator))
                   for sd in finals]
    flat = torch.stack([torch.cat([v.flatten() for v in sd.values()]) for sd in finals])
    distances = torch.cdist(flat, flat).numpy()  # the medoids: central members of each basin
    predicted = cross_validated_predictions(medoid_predictor(checkpoints, finals, distances, y, spec), y,
                                            splits_for(y, 3))
    assert (predicted == y).all()
