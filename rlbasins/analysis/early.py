"""Early basin detection: can a seed's final basin be told from an early checkpoint?

At every checkpoint step t that all seeds have, each detector turns a seed's policy at t into a
feature vector; a classifier trained on *other* seeds' features at the same t predicts the seed's
final *class*: its behavioural basin (the clusters of :mod:`rlbasins.analysis.basins` at the last
checkpoint) or, when the seeds share one basin, its preferred strategy (the one of the env's two
its greedy held-out episodes reach more often — what steering by abort aims at; see
:func:`choose_target` and :meth:`~rlbasins.analysis.behavior.BehaviorResult.preferred_strategies`).
Stratified K-fold cross-validation makes every prediction out-of-fold.
Detectors:

- ``behaviour``: the held-out behaviour fingerprint — action distributions on the run's held-out
  states ([N · A] features, the same states the final basins are defined on);
- ``weights``: the nearest final class medoid (medoids taken among the training fold's seeds) by
  the L2 distance of the checkpoint's weights, Git Re-Basin weight-matched to each medoid, to that
  medoid's final weights — no classifier, so nothing is fit on features dominated by the medoid's
  own checkpoints;
- ``noise``: action distributions on out-of-distribution noise inputs ([M · A] features) — the
  function beyond the data, which the basin definition never sees.

The classifier of ``behaviour`` and ``noise`` is a class-balanced logistic regression on
standardised features (scikit-learn).

Beside them, always, the **baseline** every detector has to beat (envs with two named strategies):
``naive``, the sign of the seed's held-out strategy share so far — the greedy-move shares that the
training-time monitor logged at the checkpoint (``heldout/share_<label>`` in TensorBoard), mapped to
the final class the training fold's seeds of the same sign mostly end in. A detector counts as better
only where its interval clears the baseline's: ``first_beating_baseline``.
The score is balanced accuracy (chance = 1/B) with a 95% percentile bootstrap CI over seeds,
resampled within each class. :func:`early_detection` also names, per detector, the first training
fraction at which the balanced accuracy reaches the threshold (default 0.9) — and the first at
which even the CI's lower end does.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from rlbasins.analysis import align, basins
from rlbasins.analysis.align import StateDict
from rlbasins.core.checkpoints import load_policies
from rlbasins.core.config import EarlyDetectionConfig
from rlbasins.core.logs import read_scalars, share_tag
from rlbasins.core.progress import task_progress
from rlbasins.core.results import Result
from rlbasins.core.rollouts import action_probs, stack_state_dicts
from rlbasins.core.store import RunDir

DETECTORS = {
    "behaviour": "classifier on held-out action distributions",
    "weights": "nearest final class medoid by aligned weight distance",
    "noise": "classifier on action distributions on out-of-distribution noise inputs",
}
BASELINE = "naive"
BASELINE_DESCRIPTION = "baseline: the sign of the held-out strategy share so far"


@dataclass
class DetectorCurve:
    """One detector's out-of-fold score at every checkpoint (lists are [T], aligned with the steps)."""

    name: str
    description: str
    balanced_accuracy: list[float]
    ci: list[list[float]]
    """95% bootstrap interval [low, high] per step."""
    predictions: list[list[int]]
    """[T][S] out-of-fold predicted final class of each seed."""
    first_reaching: float | None
    """First training fraction whose balanced accuracy is ≥ the threshold (None: never)."""
    first_confident: float | None
    """First training fraction whose CI lower end is ≥ the threshold (None: never)."""
    first_beating_baseline: float | None = None
    """First training fraction whose CI lower end is above the baseline's CI upper end (None: never, or no
    baseline)."""


@dataclass
class EarlyDetection(Result):
    seeds: list[int]
    target: str
    """What is predicted: ``basin`` (final behavioural basin) or ``strategy`` (final preferred strategy)."""
    class_names: list[str]
    """[C] the names of the classes, e.g. ["basin 0", "basin 1"] or ["colour", "shape"]."""
    final_classes: list[int]
    """[S] each seed's class at its last checkpoint (an index into ``class_names``)."""
    steps: list[int]
    fractions: list[float]
    """[T] steps / last step."""
    n_classes: int
    chance: float
    folds: int
    threshold: float
    detectors: list[DetectorCurve]
    skipped: str | None = None
    """Why nothing was measured (one basin, too few checkpoints or seeds); then the lists are empty."""
    baseline: DetectorCurve | None = None
    """The ``naive`` detector (see the module docstring); None where the env names no strategies or the
    checkpoints have no held-out shares logged (``baseline_skipped`` says which)."""
    baseline_skipped: str | None = None


def _stratified_bootstrap(y: np.ndarray, predicted: np.ndarray, resamples: int, seed: int) -> list[float]:
    """95% percentile interval of the balanced accuracy, seeds resampled with replacement within each basin.

    Balanced accuracy is the mean over basins of the recall, so each basin's resampled recall is
    drawn on its own ([resamples] per basin) and the draws are averaged across basins."""
    rng = np.random.default_rng(seed)
    correct = predicted == y
    recalls = [correct[rng.choice(np.flatnonzero(y == c), size=(resamples, int((y == c).sum())))].mean(1)
               for c in np.unique(y)]
    return np.percentile(np.mean(recalls, axis=0), [2.5, 97.5]).tolist()


def _first_fraction(values: list[float], fractions: list[float], threshold: float) -> float | None:
    return next((f for v, f in zip(values, fractions, strict=True) if v >= threshold), None)


FoldPredictor = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(train indices, test indices) → predicted basins of the test seeds."""


def cross_validated_predictions(predict_fold: FoldPredictor, y: np.ndarray,
                                splits: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Out-of-fold predictions [S]: every seed predicted by ``predict_fold`` from a split it is a test seed of."""
    predicted = np.empty_like(y)
    for train, test in splits:
        predicted[test] = predict_fold(train, test)
    return predicted


def fit_classifier(features: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The detectors' classifier — a class-balanced logistic regression on standardised ``features``
    [S, F] — fit on (features, y); returns features [S', F] → predicted labels [S']."""
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced"))
    return model.fit(features, y).predict


def classifier_predictor(features: np.ndarray, y: np.ndarray) -> FoldPredictor:
    """:func:`fit_classifier` on the training seeds' ``features`` [S, F], applied to the test seeds."""
    def predict(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        return fit_classifier(features[train], y[train])(features[test])
    return predict


def medoid_predictor(checkpoints: list[StateDict], finals: list[StateDict], distances: np.ndarray, y: np.ndarray,
                     spec: align.PermutationSpec, seed: int = 0) -> FoldPredictor:
    """The nearest final basin medoid: each basin's medoid among the training seeds (by the final
    behavioural ``distances`` [S, S]), each test seed's checkpoint weight-matched to every medoid's
    final weights, the basin of the smallest (squared) L2 distance. Matchings are cached across folds."""
    cache: dict[tuple[int, int], float] = {}

    def distance(pair: tuple[int, int]) -> float:
        m, i = pair
        aligned = align.weight_matching(finals[m], checkpoints[i], spec, seed=seed)
        return float(sum(((aligned[k].double() - finals[m][k].double()) ** 2).sum() for k in aligned))

    def predict(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        medoids = [int(train[m]) for m in basins.medoids(distances[np.ix_(train, train)], y[train])]
        missing = [(m, int(i)) for i in test for m in medoids if (m, int(i)) not in cache]
        with ThreadPoolExecutor(align.MATCHING_THREADS) as pool:  # the assignments release the GIL
            cache.update(zip(missing, pool.map(distance, missing), strict=True))
        return np.array([np.argmin([cache[m, int(i)] for m in medoids]) for i in test])  # medoids in basin order
    return predict


def sign_predictor(lean: np.ndarray, y: np.ndarray) -> FoldPredictor:
    """The ``naive`` baseline: each test seed gets the final class most of the training seeds with the same
    sign of ``lean`` [S] (share of strategy A − share of strategy B) end in; a sign no training seed has
    gets the training seeds' most common class (ties: the lower class)."""
    signs = np.sign(lean)

    def predict(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        overall = np.bincount(y[train]).argmax()
        table = {s: np.bincount(y[train][signs[train] == s]).argmax() for s in np.unique(signs[train])}
        return np.array([table.get(signs[i], overall) for i in test])
    return predict


def logged_leans(run: RunDir, seeds: list[int], labels: list[str], steps: list[int]) -> np.ndarray | None:
    """[T, S] share of ``labels[0]`` − share of ``labels[1]`` that the training-time monitor logged at each
    of ``steps`` (``heldout/share_<label>``); None if a seed lacks one of them."""
    leans = np.empty((len(steps), len(seeds)))
    for i, k in enumerate(seeds):
        scalars = read_scalars(run.tb_dir / f"seed_{k}")
        curves = [scalars.get(share_tag(label)) for label in labels[:2]]
        if any(c is None for c in curves):
            return None
        by_step = [dict(zip(c[0].tolist(), c[1].tolist(), strict=True)) for c in curves]
        if any(step not in by_step[0] or step not in by_step[1] for step in steps):
            return None
        leans[:, i] = [by_step[0][step] - by_step[1][step] for step in steps]
    return leans


def choose_target(kind: str, basin_labels: list[int], strategy_labels: list[str] | None
                  ) -> tuple[str, list[str], list[int]]:
    """What early detection predicts: (``basin`` or ``strategy``, class names [C], each seed's class [S]).

    ``kind`` ``auto`` picks the basins when at least two of them hold two seeds or more, else the
    preferred strategies ``strategy_labels`` [S] (None when the env names no strategies:
    then the basins, which early detection will report as one)."""
    n_basins = int((np.bincount(basin_labels) >= 2).sum())
    if kind == "basin" or strategy_labels is None or (kind == "auto" and n_basins >= 2):
        return "basin", [f"basin {b}" for b in range(max(basin_labels) + 1)], list(basin_labels)
    names = sorted(set(strategy_labels))
    return "strategy", names, [names.index(label) for label in strategy_labels]


def early_detection(run: RunDir, seeds: list[int], final_step: int, target: str, class_names: list[str],
                    final_classes: list[int], distances: np.ndarray, heldout_obs: torch.Tensor,
                    noise_obs: torch.Tensor, settings: EarlyDetectionConfig, seed: int = 0,
                    show_progress: bool = True, labels: list[str] | None = None) -> EarlyDetection:
    """Score every detector of ``settings`` at every checkpoint step up to ``final_step`` all ``seeds`` have,
    and the ``naive`` baseline where the env names strategies (``labels``: the first two).

    target, class_names, final_classes: what is predicted (:func:`choose_target`); distances: [S, S]
    the behavioural distance the basins were clustered on (for the medoids); heldout_obs [N, ...] and
    noise_obs [M, ...]: the inputs of the fingerprints.
    """
    y = np.asarray(final_classes)
    counts = np.bincount(y, minlength=len(class_names))
    keep = np.flatnonzero(counts[y] >= 2)  # a class of one seed cannot be both trained on and predicted
    steps = sorted(step for step in set.intersection(*({e.step for e in run.seed(k).entries()} for k in seeds))
                   if step <= final_step)
    present = np.unique(y[keep])
    n_classes = int(present.size)
    empty = dict(seeds=seeds, target=target, class_names=class_names, final_classes=y.tolist(),
                 n_classes=n_classes, chance=1 / max(n_classes, 1), threshold=settings.threshold, detectors=[])
    if n_classes < 2:
        what = "basin" if target == "basin" else "preferred strategy"
        return EarlyDetection(steps=[], fractions=[], folds=0, **empty,
                              skipped=f"one {what} (of two seeds or more): there is nothing to predict")
    if len(steps) < 2:
        return EarlyDetection(steps=[], fractions=[], folds=0, **empty, skipped="a single checkpoint")
    kept_seeds = [seeds[i] for i in keep]
    class_names = [class_names[c] for c in present]
    y, distances = y[keep], np.asarray(distances)[np.ix_(keep, keep)]
    y = np.unique(y, return_inverse=True)[1]  # classes renumbered 0..C-1 after dropping singletons
    folds = int(min(settings.folds, np.bincount(y).min()))
    splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))
    fractions = [s / steps[-1] for s in steps]

    _, finals, _ = load_policies(run, kept_seeds, steps[-1])
    spec = align.infer_spec(finals[0])
    scores: dict[str, list[tuple[float, list[float], np.ndarray]]] = {name: [] for name in settings.detectors}
    with task_progress("early detection", len(steps), enabled=show_progress) as advance:
        for step in steps:
            template, state_dicts, _ = load_policies(run, kept_seeds, step)
            params = stack_state_dicts(state_dicts)
            for name in settings.detectors:
                if name == "weights":
                    predictor = medoid_predictor(state_dicts, finals, distances, y, spec, seed)
                else:
                    obs = heldout_obs if name == "behaviour" else noise_obs
                    predictor = classifier_predictor(action_probs(template, params, obs).flatten(1).numpy(), y)
                scores[name].append(_score(predictor, y, splits, settings.resamples, seed))
            advance()

    baseline, baseline_skipped = None, "the env names no strategies"
    if labels:
        leans = logged_leans(run, kept_seeds, labels, steps)
        baseline_skipped = None if leans is not None else "no held-out shares logged at every checkpoint"
        if leans is not None:
            per_step = [_score(sign_predictor(lean, y), y, splits, settings.resamples, seed) for lean in leans]
            baseline = _curve(BASELINE, BASELINE_DESCRIPTION, per_step, fractions, settings.threshold)
    curves = [_curve(name, DETECTORS[name], per_step, fractions, settings.threshold, baseline)
              for name, per_step in scores.items()]
    return EarlyDetection(kept_seeds, target, class_names, y.tolist(), steps, fractions, n_classes, 1 / n_classes,
                          folds, settings.threshold, curves, baseline=baseline, baseline_skipped=baseline_skipped)


def _score(predictor: FoldPredictor, y: np.ndarray, splits: list[tuple[np.ndarray, np.ndarray]], resamples: int,
           seed: int) -> tuple[float, list[float], np.ndarray]:
    """One detector at one step: out-of-fold balanced accuracy, its bootstrap CI, the predictions [S]."""
    predicted = cross_validated_predictions(predictor, y, splits)
    return float(balanced_accuracy_score(y, predicted)), _stratified_bootstrap(y, predicted, resamples, seed), predicted


def _curve(name: str, description: str, per_step: list[tuple[float, list[float], np.ndarray]],
           fractions: list[float], threshold: float, baseline: DetectorCurve | None = None) -> DetectorCurve:
    """A detector's :class:`DetectorCurve` from its (balanced accuracy, CI, predictions) per step."""
    accuracy = [a for a, _, _ in per_step]
    ci = [c for _, c, _ in per_step]
    beating = None
    if baseline is not None:
        clears = [low > base_high for (low, _), (_, base_high) in zip(ci, baseline.ci, strict=True)]
        beating = next((f for f, c in zip(fractions, clears, strict=True) if c), None)
    return DetectorCurve(name, description, accuracy, ci, [p.tolist() for _, _, p in per_step],
                         _first_fraction(accuracy, fractions, threshold),
                         _first_fraction([low for low, _ in ci], fractions, threshold), beating)
