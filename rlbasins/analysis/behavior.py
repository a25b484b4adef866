"""Held-out behaviour of every seed: returns, strategies, action distributions, divergence.

For each seed's policy (its last checkpoint, or any checkpoint step):

- returns on the training start distribution and on held-out start states (the env's suite in
  :mod:`envs.suites`), with greedy and with sampled actions, all seeds in one batched rollout
  (:mod:`rlbasins.core.rollouts`);
- for envs that name the strategy an episode followed: the fraction of held-out states per
  strategy with Wilson 95% intervals (each distinct start state counted once, however often it was
  drawn), each seed's preference (share of strategy A among the
  decided episodes), and a test of how those preferences are distributed *across* seeds — many
  seeds each committed to one strategy (basins) versus every seed at one shared mixed rate;
- action distributions on ``n_states`` held-out states and on as many out-of-distribution noise
  inputs (a fingerprint of the function beyond the data), for all seeds in one batched call;
- pairwise divergence between seeds: total variation, Jensen–Shannon divergence, and the share
  of states where the greedy actions agree.

Results go to ``analysis/behavior.json``, ``analysis/seeds.csv`` and the action distributions to
``analysis/heldout_probs.npy`` / ``noise_probs.npy`` ([S, N, A] float32) for later stages.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from envs.suites import get_suite
from rlbasins.core.checkpoints import load_policies
from rlbasins.core.config import AnalysisConfig, load_config
from rlbasins.core.devices import resolve_device
from rlbasins.core.heldout import distinct_state_groups, evaluation_sample, fingerprint_inputs
from rlbasins.core.policy import ActorCritic
from rlbasins.core.progress import task_progress
from rlbasins.core.results import Result
from rlbasins.core.rollouts import action_probs, play, stack_state_dicts
from rlbasins.core.stats import PreferenceTest, preference_test, wilson_interval
from rlbasins.core.store import RunDir, atomic_write_bytes


@torch.no_grad()
def stacked_action_probs(policies: list[ActorCritic], obs: torch.Tensor) -> torch.Tensor:
    """Action probabilities of every policy on the same observations.

    obs [N, *obs_shape] → probs [S, N, n_actions] for S policies of one architecture, in one
    batched call over stacked parameters.
    """
    return action_probs(policies[0], stack_state_dicts([p.state_dict() for p in policies]), obs)


def _pairwise(probs: torch.Tensor, divergence, chunk: int, reduce=lambda d: d.mean(-1)) -> torch.Tensor:
    """probs [S, N, A] → [S, S] mean over the N states of ``divergence(p [c, 1, N, A], q [1, S, N, A])`` (or
    ``reduce`` of the [c, S, N] per-state values), computed in row chunks of ``c`` seeds so memory stays
    O(chunk · S · N · A)."""
    rows = [reduce(divergence(probs[i:i + chunk, None], probs[None])) for i in range(0, probs.shape[0], chunk)]
    return torch.cat(rows)


def _total_variation(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """½‖p − q‖₁ over the last (action) dim."""
    return 0.5 * (p - q).abs().sum(-1)


def total_variation_matrix(probs: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """probs [S, N, A] → [S, S] mean over states of ½‖p_i − p_j‖₁ (0 = same, 1 = disjoint)."""
    return _pairwise(probs, _total_variation, chunk)


RESAMPLE_MEMORY_ELEMENTS = 2**27
"""Up to this many per-state distances (S² · N, float64: 1 GiB) :func:`resampled_total_variation` keeps them."""


def resampled_total_variation(probs: torch.Tensor, chunk: int = 64) -> Callable[[np.ndarray], np.ndarray]:
    """For bootstrap resamples of the held-out states: state indices [N'] (repeats allowed) → the [S, S]
    :func:`total_variation_matrix` on those states, for probs [S, N, A].

    Each pair's distance on each state is computed once ([S, S, N], kept in float64 while S² · N ≤
    :data:`RESAMPLE_MEMORY_ELEMENTS`); a resample is then the mean weighted by how often it drew each state,
    one matrix-vector product instead of a new pass over S² · N' distributions (50 resamples of 512 seeds:
    ~1 s against ~25 s). It equals the recomputed matrix up to float rounding. Beyond the memory bound, each
    resample is recomputed."""
    seeds, states = probs.shape[:2]
    if seeds * seeds * states > RESAMPLE_MEMORY_ELEMENTS:
        return lambda idx: total_variation_matrix(probs[:, idx], chunk).numpy()
    per_state = _pairwise(probs, _total_variation, chunk, reduce=torch.Tensor.double).reshape(seeds * seeds, states)

    def distance_of(idx: np.ndarray) -> np.ndarray:
        weights = torch.bincount(torch.as_tensor(np.asarray(idx)), minlength=states).double() / len(idx)   # [N]
        return (per_state @ weights).reshape(seeds, seeds).numpy()

    return distance_of


def jensen_shannon_matrix(probs: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """probs [S, N, A] → [S, S] mean over states of the Jensen–Shannon divergence in bits (0 … 1)."""
    def kl_bits(a: torch.Tensor, m: torch.Tensor) -> torch.Tensor:  # 0 · log 0 = 0
        return torch.where(a > 0, a * (a.clamp_min(1e-30) / m.clamp_min(1e-30)).log2(), 0.0).sum(-1)

    def js(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        m = 0.5 * (p + q)
        return (0.5 * kl_bits(p, m) + 0.5 * kl_bits(q, m)).clamp_min(0.0)

    matrix = _pairwise(probs, js, chunk)
    return matrix.fill_diagonal_(0.0)


def strategy_distance_matrix(shares: np.ndarray) -> np.ndarray:
    """shares [S, D, L] (each seed's greedy share of each held-out label, strategies and ``neither``, on each of D
    distinct states) → [S, S] total variation between the seeds' label shares over the states: ½‖s̄_i − s̄_j‖₁,
    s̄ = the mean over states. 0: the same strategy mix; 1: no label in common. Blind to how a seed acts, it
    sees only which strategy it ends in, so undecided states do not drown a lean in action noise."""
    mean = np.asarray(shares, float).mean(1)                                           # [S, L]
    return 0.5 * np.abs(mean[:, None] - mean[None]).sum(-1)


def argmax_agreement_matrix(probs: torch.Tensor) -> torch.Tensor:
    """probs [S, N, A] → [S, S] fraction of states where the greedy actions coincide."""
    onehot = torch.nn.functional.one_hot(probs.argmax(-1), probs.shape[-1]).float()  # [S, N, A]
    return torch.einsum("ina,jna->ij", onehot, onehot) / probs.shape[1]


def mean_to_others(matrix: np.ndarray) -> np.ndarray:
    """[S, S] pairwise matrix with a zero diagonal → [S] each seed's mean over the other seeds."""
    return matrix.sum(1) / max(len(matrix) - 1, 1)


# --------------------------------------------------------------------------- the analysis


@dataclass
class BehaviorResult(Result):
    """Per-seed lists are aligned with ``seeds``; matrices are [S, S] in that order."""

    env_id: str
    suite: str
    seeds: list[int]
    steps: list[int]
    train_return: list[float]
    heldout_return_greedy: list[float]
    heldout_return_sampled: list[float]
    heldout_return_greedy_std: list[float]
    total_variation: list[list[float]]
    jensen_shannon: list[list[float]]
    argmax_agreement: list[list[float]]
    noise_total_variation: list[list[float]]
    """Total variation between action distributions on out-of-distribution noise inputs."""
    n_states: int
    n_episodes: int
    n_distinct_starts: int | None = None
    """The distinct held-out states among the ``n_episodes`` starts: what the label fractions, their
    intervals and the preference tests rest on (each distinct state counts once)."""
    labels: list[str] | None = None
    """Strategy names [A, B, "neither"] when the env labels behaviour; then the fields below are set."""
    heldout_labels_greedy: list[dict[str, float]] | None = None
    heldout_labels_sampled: list[dict[str, float]] | None = None
    heldout_labels_greedy_ci: list[dict[str, list[float]]] | None = None
    """Wilson 95% interval of each greedy label fraction, per seed, over ``n_distinct_starts`` states."""
    preference_greedy: PreferenceTest | None = None
    preference_sampled: PreferenceTest | None = None

    def dominant_labels(self) -> list[str] | None:
        """Each seed's most frequent greedy held-out label (None when the env names no strategies)."""
        if self.labels is None:
            return None
        return [max(self.labels, key=lambda name: fractions[name]) for fractions in self.heldout_labels_greedy]

    def preferred_strategies(self) -> list[str] | None:
        """Each seed's preferred strategy: the one of the env's two that its greedy held-out episodes reach
        more often ("tie" when equally often; None when the env names no strategies). Episodes reaching
        neither are ignored: where most held-out episodes reach neither object, the dominant label says
        only that, while the seed may still lean to one cue."""
        if self.labels is None:
            return None
        first, second = self.labels[:2]
        return [first if f[first] > f[second] else second if f[second] > f[first] else "tie"
                for f in self.heldout_labels_greedy]


def _label_summary(outcomes: np.ndarray, labels: tuple[str, str], groups: np.ndarray):
    """outcomes [S, E] of episodes from states in distinct-state ``groups`` [E] → (per-seed fractions,
    per-seed Wilson intervals, counts of A [S], counts of B [S], per-state shares [S, D, 3] of A, B, neither).

    Each distinct state counts once, as its copies' share of each label, so a state repeated (or
    resampled) does not narrow the intervals: the counts are over distinct states (equal to episode
    counts when every start differs)."""
    n_groups = int(groups.max()) + 1
    copies = np.bincount(groups, minlength=n_groups)                       # [D]
    counts, shares = {}, []
    for name in labels:
        per_state = np.zeros((len(outcomes), n_groups))
        np.add.at(per_state, (slice(None), groups), outcomes == name)
        shares.append(per_state / copies)                                  # [S, D] share of the state's copies
        counts[name] = shares[-1].sum(1)                                   # [S] effective count of states
    counts["neither"] = n_groups - counts[labels[0]] - counts[labels[1]]
    shares.append(1 - shares[0] - shares[1])
    fractions = [{name: float(counts[name][i] / n_groups) for name in counts} for i in range(len(outcomes))]
    intervals = [{name: wilson_interval(counts[name][i], n_groups).tolist() for name in counts}
                 for i in range(len(outcomes))]
    return fractions, intervals, counts[labels[0]], counts[labels[1]], np.stack(shares, -1)


def analyze_behavior(run: RunDir, step: int | None = None, show_progress: bool = True,
                     settings: AnalysisConfig | None = None) -> BehaviorResult:
    """Evaluate every finished seed of ``run`` (at checkpoint ``step``, default each seed's last) with
    the run's ``analysis`` settings or ``settings``; write ``analysis/behavior.json``, ``seeds.csv``
    and the action-distribution arrays."""
    manifest = run.manifest()  # first: names a directory that is not a run
    cfg = load_config(run.config_path)
    if settings is not None:
        cfg = cfg.model_copy(update={"analysis": settings})
    seeds = RunDir.seeds_with_status(manifest, "finished")
    if not seeds:
        raise RuntimeError(f"no finished seed in {run.root}; train it first (`rlbasins train`)")
    suite = get_suite(cfg.env.id)
    held = cfg.analysis.heldout
    sample = evaluation_sample(cfg)
    starts, eval_seed = sample.starts, sample.seed
    reset_seeds_heldout, reset_seeds_train = sample.reset_seeds_heldout, sample.reset_seeds_train
    device = resolve_device(cfg.device)

    template, state_dicts, steps = load_policies(run, seeds, step, show_progress)
    params = stack_state_dicts(state_dicts)
    common = dict(template=template, params=params, env_id=cfg.env.id, env_kwargs=cfg.env.kwargs,
                  action_seed=eval_seed, device=device)
    with task_progress("held-out evaluation", 3 * len(seeds), enabled=show_progress) as advance:
        train = play(reset_seeds=reset_seeds_train, greedy=True, on_chunk=advance, **common)
        greedy = play(reset_seeds=reset_seeds_heldout, starts=starts, suite=suite, greedy=True, on_chunk=advance,
                      **common)
        sampled = play(reset_seeds=reset_seeds_heldout, starts=starts, suite=suite, greedy=False, on_chunk=advance,
                       **common)
    heldout_obs, noise = fingerprint_inputs(cfg, sample)
    probs = action_probs(template, params, heldout_obs)                               # [S, N, A]
    noise_probs = action_probs(template, params, noise)                              # [S, N, A]

    labelled = suite.labels is not None
    groups = distinct_state_groups(starts)                                            # [E]
    result = BehaviorResult(
        env_id=cfg.env.id, suite=suite.description, seeds=seeds, steps=steps,
        train_return=train.returns.mean(1).tolist(),
        heldout_return_greedy=greedy.returns.mean(1).tolist(),
        heldout_return_sampled=sampled.returns.mean(1).tolist(),
        heldout_return_greedy_std=greedy.returns.std(1).tolist(),
        total_variation=total_variation_matrix(probs).tolist(),
        jensen_shannon=jensen_shannon_matrix(probs).tolist(),
        argmax_agreement=argmax_agreement_matrix(probs).tolist(),
        noise_total_variation=total_variation_matrix(noise_probs).tolist(),
        n_states=held.n_states, n_episodes=held.n_episodes, n_distinct_starts=int(groups.max()) + 1,
    )
    if labelled:
        fractions, intervals, count_a, count_b, shares = _label_summary(greedy.outcomes, suite.labels, groups)
        sampled_fractions, _, sampled_a, sampled_b, _ = _label_summary(sampled.outcomes, suite.labels, groups)
        result.labels = [*suite.labels, "neither"]
        result.heldout_labels_greedy, result.heldout_labels_greedy_ci = fractions, intervals
        result.heldout_labels_sampled = sampled_fractions
        result.preference_greedy = preference_test(count_a, count_b, result.n_distinct_starts)
        result.preference_sampled = preference_test(sampled_a, sampled_b, result.n_distinct_starts)
    run.analysis_dir.mkdir(parents=True, exist_ok=True)
    result.save(run.analysis_dir / "behavior.json")
    _write_array(run.analysis_dir / "heldout_probs.npy", probs)
    _write_array(run.analysis_dir / "noise_probs.npy", noise_probs)
    strategy_shares = run.analysis_dir / "heldout_strategy_shares.npy"
    if labelled:  # [S, D, 3] greedy share of each label per distinct state: the strategy distance, resampled
        _write_array(strategy_shares, torch.as_tensor(shares))
    else:
        strategy_shares.unlink(missing_ok=True)
    _write_seed_table(run.analysis_dir / "seeds.csv", result)
    return result


def _write_array(path: Path, tensor: torch.Tensor) -> None:
    buffer = io.BytesIO()
    np.save(buffer, tensor.float().cpu().numpy(), allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue())


def _write_seed_table(path: Path, result: BehaviorResult) -> None:
    mean_tv = mean_to_others(np.array(result.total_variation)).tolist()
    columns = {"seed": result.seeds, "step": result.steps, "train_return": result.train_return,
               "heldout_return_greedy": result.heldout_return_greedy,
               "heldout_return_sampled": result.heldout_return_sampled, "mean_tv_to_others": mean_tv}
    if result.labels is not None:
        for name in result.labels:
            columns[f"greedy_{name}"] = [f[name] for f in result.heldout_labels_greedy]
        columns["preference_greedy"] = [float("nan") if v is None else v for v in result.preference_greedy.preference]
    header = ",".join(columns) + "\n"
    body = "".join(",".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in row) + "\n"
                   for row in zip(*columns.values(), strict=True))
    atomic_write_bytes(path, (header + body).encode())
