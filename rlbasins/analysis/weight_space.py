"""Weight-space views of the seeds: which distances between their weights separate them, and what each reads.

A view is a distance between seeds computed from their weights, clustered as the behaviour is
(:data:`~rlbasins.analysis.basins.CLUSTERERS`) and compared with the behavioural basins and, in planted runs,
with the planted groups (ARI with a bootstrap CI, not defined where either side is one basin):

- **input weights** (the weight-space basins of ``basins.json``; reads no state): each seed's input profile
  (:func:`input_profile`), the L2 norm of the actor's first-layer weights leaving each input feature,
  compared by Euclidean distance. It is invariant to hidden-unit permutations, so it needs no alignment,
  and it is measured for every pair of seeds at any seed count. It says which inputs a network reads,
  not what it does with them.
- **aligned barriers** on each metric of :mod:`~rlbasins.analysis.barriers`, without and with REPAIR: the
  training return and the expert loss read training states only; the held-out commitment reads the
  held-out states, as the behavioural basins do, so its agreement with them is partly the same
  measurement twice, and the report marks it so. Beyond ``max_pairwise`` seeds a barrier view is each
  seed's nearest behavioural medoid: it is not a clustering and gets no ARI.

Why not the plain distance between aligned weight vectors: on the planted CueConflict control (colour
group vs shape group, 32 seeds) it is 31.6 within and 32.2 across the groups, one basin; on 64 TwoDoors
seeds 12.2 vs 13.8 for the first layer and no split elsewhere — the initialisation's spread swamps what
training changed (docs/weight_space.md).
"""

from __future__ import annotations

import numpy as np
import torch

from rlbasins.analysis import basins
from rlbasins.analysis.barriers import METRIC_NAMES, BarrierStudy
from rlbasins.core.policy import ActorCritic

StateDict = dict[str, torch.Tensor]

READS = {"input_weights": "no state", "train_return": "training states", "loss": "training states",
         "heldout_decided": "held-out states (the probe the behavioural basins read)"}
"""What each view's distance is computed from."""
VARIANT_NAMES = {"aligned": "aligned", "aligned_repair": "aligned + REPAIR"}


def input_profile(template: ActorCritic, state_dict: StateDict) -> torch.Tensor:
    """[F] per input feature, the L2 norm of the actor's first-layer weights that leave it: the columns of
    a Linear layer's weight [H, D] (F = D), or a convolution's kernels [C', C, k, k] per input channel
    (F = C). Unchanged by any permutation of the hidden units."""
    first = next(name for name, module in template.actor.named_children()
                 if isinstance(module, torch.nn.Linear | torch.nn.Conv2d))
    weight = state_dict[f"actor.{first}.weight"].double()
    return weight.transpose(0, 1).reshape(weight.shape[1], -1).norm(dim=1)


def input_distances(template: ActorCritic, state_dicts: list[StateDict]) -> np.ndarray:
    """[S, S] Euclidean distances between the seeds' input profiles (:func:`input_profile`)."""
    profiles = torch.stack([input_profile(template, sd) for sd in state_dicts])               # [S, F]
    distances = torch.cdist(profiles, profiles).numpy()
    np.fill_diagonal(distances, 0.0)
    return distances


def _within_across(distances: np.ndarray, labels: list[int]) -> tuple[float | None, float | None]:
    labels = np.asarray(labels)
    same = labels[:, None] == labels[None]
    measured = np.isfinite(distances) & ~np.eye(len(labels), dtype=bool)
    within, across = distances[measured & same], distances[measured & ~same]
    return (float(within.mean()) if within.size else None), (float(across.mean()) if across.size else None)


def weight_view(metric: str, variant: str | None, distances: np.ndarray, pairwise: bool, anchors: list[int],
                behavior_labels: list[int], planted_codes: list[int] | None, method: str, max_k: int,
                seed: int = 0) -> basins.WeightView:
    """Cluster one distance matrix [S, S] (or, not ``pairwise``, assign each seed to the nearest of the
    behavioural medoids ``anchors``, whose rows and columns alone are measured) and compare it."""
    within, across = _within_across(distances, behavior_labels)
    name = "input weights" if variant is None else f"{VARIANT_NAMES[variant]} {METRIC_NAMES[metric]} barrier"
    if not pairwise:
        nearest = distances[:, anchors].argmin(1).tolist()
        clustering = basins.Clustering("nearest medoid", len(anchors), nearest, "behavioural medoids", [])
        no_ari = basins.Agreement.not_defined(basins.NEAREST_MEDOID)
        return basins.WeightView(name, metric, variant, READS[metric], clustering, within, across, no_ari,
                                 no_ari if planted_codes is not None else None)
    clustering = basins.CLUSTERERS[method](distances, max_k=max_k)
    return basins.WeightView(name, metric, variant, READS[metric], clustering, within, across,
                             basins.ari_with_ci(behavior_labels, clustering.labels, seed=seed),
                             basins.ari_with_ci(planted_codes, clustering.labels, seed=seed)
                             if planted_codes is not None else None)


def weight_views(inputs: np.ndarray, study: BarrierStudy, anchors: list[int], behavior_labels: list[int],
                 planted_codes: list[int] | None, method: str, max_k: int, seed: int = 0) -> list[basins.WeightView]:
    """The input-weights view (of :func:`input_distances` ``inputs`` [S, S]) first, then every aligned barrier
    matrix of ``study`` (each metric, without and with REPAIR where measured)."""
    common = dict(anchors=anchors, behavior_labels=behavior_labels, planted_codes=planted_codes, method=method,
                  max_k=max_k, seed=seed)
    views = [weight_view("input_weights", None, inputs, True, **common)]
    for variant in ("aligned", "aligned_repair"):
        for metric in study.matrices.get(variant, {}):
            views.append(weight_view(metric, variant, study.matrix(variant, metric), study.pairwise, **common))
    return views
