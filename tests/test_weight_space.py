"""Weight-space views (:mod:`rlbasins.analysis.weight_space`), as specifications: the input-weight profile
ignores hidden-unit permutations, separates networks that read different inputs, and a barrier view beyond
``max_pairwise`` seeds is nearest medoids without an ARI."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlbasins.analysis import align, basins, weight_space
from rlbasins.core.policy import ActorCritic
from tests.conftest import random_cue_policy

CUE_SHAPE = (5, 5, 5)  # CueConflict: planes agent, red, blue, square, circle; 5 × 5 cells each
CELLS = 25


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), conv=st.booleans())
def test_the_input_profile_ignores_any_permutation_of_hidden_units(seed: int, conv: bool) -> None:
    torch.manual_seed(seed)
    policy = ActorCritic(CUE_SHAPE, 4, [16, 8], conv_channels=[4, 6] if conv else None).ortho_init_()
    spec = align.spec_for_module(policy)
    state = policy.state_dict()
    permuted = align.permute_state_dict(state, spec, align.random_permutations(
        spec, state, torch.Generator().manual_seed(seed)))
    assert not all(torch.equal(state[k], permuted[k]) for k in state)
    profile = weight_space.input_profile(policy, state)
    assert profile.shape == ((5,) if conv else (125,))  # a conv's input channels, an MLP's input features
    assert torch.allclose(weight_space.input_profile(policy, permuted), profile)


def _reading(seed: int, cue: str) -> dict[str, torch.Tensor]:
    """A random MLP whose first layers read no plane of the other cue (colour: red/blue; shape: square/circle)."""
    policy = random_cue_policy(seed)
    state = {k: v.clone() for k, v in policy.state_dict().items()}
    ignored = (3, 4) if cue == "colour" else (1, 2)
    for trunk in ("actor", "critic"):
        for plane in ignored:
            state[f"{trunk}.0.weight"][:, plane * CELLS:(plane + 1) * CELLS] = 0
    return state


def test_input_weights_separate_networks_that_read_different_cues() -> None:
    """Known truth: 6 random networks blind to shape, 6 blind to colour (alternating). Their weights are as
    far apart as any two random inits, yet the input-weights view finds the two groups."""
    cues = ["colour", "shape"] * 6
    states = [_reading(seed, cue) for seed, cue in enumerate(cues)]
    truth = [cues.index(c) for c in cues]
    distances = weight_space.input_distances(random_cue_policy(0), states)
    assert distances.shape == (12, 12) and np.allclose(distances, distances.T) and (np.diag(distances) == 0).all()
    view = weight_space.weight_view("input_weights", None, distances, True, [], truth, truth, "spectral", 8)
    assert view.name == "input weights" and view.reads == "no state"
    assert view.clustering.k == 2 and view.agreement.ari == 1.0 and view.planted.ari == 1.0
    assert view.within < view.across


def test_a_barrier_view_beyond_max_pairwise_is_nearest_medoids_without_an_ari() -> None:
    labels = [0, 0, 0, 1, 1, 1]
    distances = np.full((6, 6), np.nan)
    np.fill_diagonal(distances, 0.0)
    anchors = [0, 3]
    for m in anchors:  # only the medoids' rows and columns are measured
        distances[m] = distances[:, m] = [0.1 if labels[i] == labels[m] else 0.9 for i in range(6)]
        distances[m, m] = 0.0
    view = weight_space.weight_view("train_return", "aligned_repair", distances, False, anchors, labels, None,
                                    "spectral", 8)
    assert view.name == "aligned + REPAIR training return barrier" and view.reads == "training states"
    assert view.clustering.method == "nearest medoid" and view.clustering.labels == labels
    assert view.agreement.ari is None and view.agreement.undefined == basins.NEAREST_MEDOID
    assert view.planted is None and view.within == 0.1 and view.across == 0.9
