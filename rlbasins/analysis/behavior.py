"""Held-out behaviour of every seed: returns, strategies, action distributions, divergence.

For each seed's policy (its last checkpoint, or any checkpoint step):

- returns on the training start distribution and on held-out start states (the env's suite in
  :mod:`envs.suites`), with greedy and with sampled actions, all seeds in one batched rollout
  (:mod:`rlbasins.analysis.rollouts`);
- for envs that name the strategy an episode followed: the fraction of held-out episodes per
  strategy with Wilson 95% intervals, each seed's preference (share of strategy A among the
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
import json
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from scipy import stats

from envs.grid import label_fractions
from envs.suites import HeldOutSuite, get_suite
from rlbasins.analysis.rollouts import action_probs, play, stack_state_dicts
from rlbasins.config import AnalysisConfig, ExperimentConfig
from rlbasins.devices import resolve_device
from rlbasins.policy import ActorCritic
from rlbasins.progress import task_progress
from rlbasins.seeding import factor_seed
from rlbasins.store import RunDir, atomic_write_bytes, atomic_write_json


def policy_template(weights: dict[str, torch.Tensor], meta: dict) -> ActorCritic:
    """An :class:`ActorCritic` shaped like exchange-format ``weights`` (their metadata names the rest).

    Checkpoints written before CNN policies have no ``obs_shape``: they are MLPs whose input size is
    their first weight's.
    """
    conv_channels = meta.get("conv_channels") or []
    obs_shape = meta.get("obs_shape") or [weights["actor.0.weight"].shape[1]]
    head = 2 * len(conv_channels) + bool(conv_channels) + 2 * len(meta["hidden_sizes"])  # Flatten after convs
    return ActorCritic(obs_shape, n_actions=weights[f"actor.{head}.weight"].shape[0],
                       hidden_sizes=meta["hidden_sizes"], activation=meta["activation"],
                       conv_channels=conv_channels)


def load_policy(run: RunDir, index: int, step: int | None = None) -> tuple[ActorCritic, int]:
    """Seed ``index``'s policy at ``step`` (default: its last checkpoint), hash-checked."""
    store = run.seed(index)
    if step is None:
        last = store.last()
        if last is None:
            raise FileNotFoundError(f"seed {index} of {run.root} has no checkpoint yet")
        step = last.step
    available = [e.step for e in store.entries()]
    if step not in available:
        raise FileNotFoundError(f"seed {index} of {run.root} has no checkpoint at step {step}; "
                                f"it has {available}")
    weights, meta = store.load_policy(step)
    policy = policy_template(weights, meta)
    policy.load_state_dict(weights)
    return policy.eval(), step


def load_policies(run: RunDir, seeds: list[int], step: int | None = None,
                  show_progress: bool = False) -> tuple[ActorCritic, list[dict[str, torch.Tensor]], list[int]]:
    """The policies of ``seeds`` at ``step`` (default: each seed's last checkpoint) as
    (a template module, exchange-format state dicts, the steps loaded)."""
    policies, steps = [], []
    with task_progress("loading checkpoints", len(seeds), enabled=show_progress) as advance:
        for k in seeds:
            policy, loaded = load_policy(run, k, step)
            policies.append(policy)
            steps.append(loaded)
            advance()
    return policies[0], [p.state_dict() for p in policies], steps


@torch.no_grad()
def stacked_action_probs(policies: list[ActorCritic], obs: torch.Tensor) -> torch.Tensor:
    """Action probabilities of every policy on the same observations.

    obs [N, *obs_shape] → probs [S, N, n_actions] for S policies of one architecture, in one
    batched call over stacked parameters.
    """
    return action_probs(policies[0], stack_state_dicts([p.state_dict() for p in policies]), obs)


def _pairwise(probs: torch.Tensor, divergence, chunk: int) -> torch.Tensor:
    """probs [S, N, A] → [S, S] mean over the N states of ``divergence(p [c, 1, N, A], q [1, S, N, A])``,
    computed in row chunks of ``c`` seeds so memory stays O(chunk · S · N · A)."""
    rows = [divergence(probs[i:i + chunk, None], probs[None]).mean(-1) for i in range(0, probs.shape[0], chunk)]
    return torch.cat(rows)


def total_variation_matrix(probs: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """probs [S, N, A] → [S, S] mean over states of ½‖p_i − p_j‖₁ (0 = same, 1 = disjoint)."""
    return _pairwise(probs, lambda p, q: 0.5 * (p - q).abs().sum(-1), chunk)


def jensen_shannon_matrix(probs: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """probs [S, N, A] → [S, S] mean over states of the Jensen–Shannon divergence in bits (0 … 1)."""
    def kl_bits(a: torch.Tensor, m: torch.Tensor) -> torch.Tensor:  # 0 · log 0 = 0
        return torch.where(a > 0, a * (a.clamp_min(1e-30) / m.clamp_min(1e-30)).log2(), 0.0).sum(-1)

    def js(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        m = 0.5 * (p + q)
        return (0.5 * kl_bits(p, m) + 0.5 * kl_bits(q, m)).clamp_min(0.0)

    matrix = _pairwise(probs, js, chunk)
    return matrix.fill_diagonal_(0.0)


def argmax_agreement_matrix(probs: torch.Tensor) -> torch.Tensor:
    """probs [S, N, A] → [S, S] fraction of states where the greedy actions coincide."""
    onehot = torch.nn.functional.one_hot(probs.argmax(-1), probs.shape[-1]).float()  # [S, N, A]
    return torch.einsum("ina,jna->ij", onehot, onehot) / probs.shape[1]


def mean_to_others(matrix: np.ndarray) -> np.ndarray:
    """[S, S] pairwise matrix with a zero diagonal → [S] each seed's mean over the other seeds."""
    return matrix.sum(1) / max(len(matrix) - 1, 1)


# --------------------------------------------------------------------------- strategies


def wilson_interval(successes: np.ndarray, trials: np.ndarray, z: float = 1.959964) -> np.ndarray:
    """95% Wilson score intervals [..., 2] for binomial proportions (well-behaved at 0, 1 and small n;
    (0, 1) when there are no trials)."""
    successes, trials = np.asarray(successes, float), np.asarray(trials, float)
    n = np.maximum(trials, 1e-12)
    phat = successes / n
    centre = (phat + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * np.sqrt(phat * (1 - phat) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    interval = np.stack([centre - half, centre + half], axis=-1).clip(0.0, 1.0)
    return np.where((trials > 0)[..., None], interval, np.array([0.0, 1.0]))


@dataclass
class PreferenceTest:
    """How per-seed preferences for strategy A (share of A among decided episodes) are spread across seeds.

    ``homogeneity_p``: chi-square test that every seed has the same preference (small p: seeds
    differ more than episode noise explains). ``bimodality_coefficient``: Sarle's b =
    (skew² + 1) / (excess kurtosis + 3(n−1)²/((n−2)(n−3))); above 5/9 ≈ 0.555 hints at two modes.
    ``committed``: seeds whose Wilson interval lies entirely above or below ½ (they prefer one
    strategy beyond episode noise). ``verdict``: "basins" (seeds differ and most are committed, or
    the distribution is bimodal), "one shared strategy" (no evidence that seeds differ), or "graded".
    """

    n_seeds: int
    preference: list[float | None]
    homogeneity_p: float | None
    bimodality_coefficient: float | None
    committed_a: int
    committed_b: int
    verdict: str


def preference_test(count_a: np.ndarray, count_b: np.ndarray) -> PreferenceTest:
    """Per-seed counts of held-out episodes that followed strategy A and B → :class:`PreferenceTest`."""
    count_a, count_b = np.asarray(count_a, float), np.asarray(count_b, float)
    decided = count_a + count_b
    has = decided > 0
    preference = np.where(has, count_a / np.maximum(decided, 1), np.nan)
    interval = wilson_interval(count_a, decided)
    committed_a = int(((interval[:, 0] > 0.5) & has).sum())
    committed_b = int(((interval[:, 1] < 0.5) & has).sum())
    table = np.stack([count_a[has], count_b[has]], axis=1)
    table = table[:, table.sum(0) > 0]  # a column of zeros (nobody ever chose B) has no expected counts
    homogeneity_p = None
    if table.shape[0] >= 2 and table.shape[1] == 2:
        homogeneity_p = float(stats.chi2_contingency(table, correction=False)[1])
    elif table.shape[0] >= 2:
        homogeneity_p = 1.0  # every seed chose the same single strategy
    values = preference[has]
    bimodality = None
    if len(values) >= 4 and values.std() > 0:
        n = len(values)
        skew, kurt = stats.skew(values, bias=False), stats.kurtosis(values, bias=False)
        bimodality = float((skew**2 + 1) / (kurt + 3 * (n - 1) ** 2 / ((n - 2) * (n - 3))))
    differ = homogeneity_p is not None and homogeneity_p < 0.01
    if differ and ((committed_a + committed_b) >= 0.5 * has.sum() or (bimodality or 0) > 5 / 9):
        verdict = "basins"
    elif not differ:
        verdict = "one shared strategy"
    else:
        verdict = "graded"
    return PreferenceTest(n_seeds=int(len(count_a)), preference=[None if np.isnan(v) else float(v) for v in preference],
                          homogeneity_p=homogeneity_p, bimodality_coefficient=bimodality,
                          committed_a=committed_a, committed_b=committed_b, verdict=verdict)


# --------------------------------------------------------------------------- inputs


def heldout_observations(cfg: ExperimentConfig, suite: HeldOutSuite, states) -> torch.Tensor:
    """Observations [N, *obs_shape] of N held-out states."""
    env = gym.make(cfg.env.id, **cfg.env.kwargs)
    env.reset(seed=0)
    obs = np.stack([suite.start_from(env, state) for state in states])
    env.close()
    return torch.as_tensor(obs)


def noise_observations(space: gym.spaces.Box, reference: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """``n`` out-of-distribution inputs shaped like the observations: uniform within the space's bounds
    where they are finite (e.g. gridworld planes with random values everywhere), otherwise Gaussian
    with three times the spread of the ``reference`` observations [M, ...] around their mean."""
    rng = np.random.default_rng(seed)
    low, high = np.broadcast_to(space.low, space.shape), np.broadcast_to(space.high, space.shape)
    ref = reference.double().numpy()
    centre, spread = ref.mean(0), 3 * ref.std(0) + 1e-3
    finite = np.isfinite(low) & np.isfinite(high)
    uniform = rng.uniform(np.where(finite, low, 0), np.where(finite, high, 1), size=(n, *space.shape))
    gaussian = centre + spread * rng.standard_normal((n, *space.shape))
    return torch.as_tensor(np.where(finite, uniform, gaussian), dtype=torch.float32)


# --------------------------------------------------------------------------- the analysis


@dataclass
class BehaviorResult:
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
    labels: list[str] | None = None
    """Strategy names [A, B, "neither"] when the env labels behaviour; then the fields below are set."""
    heldout_labels_greedy: list[dict[str, float]] | None = None
    heldout_labels_sampled: list[dict[str, float]] | None = None
    heldout_labels_greedy_ci: list[dict[str, list[float]]] | None = None
    """Wilson 95% interval of each greedy label fraction, per seed."""
    preference_greedy: PreferenceTest | None = None
    preference_sampled: PreferenceTest | None = None

    @classmethod
    def load(cls, path: Path) -> BehaviorResult:
        data = json.loads(path.read_text())
        missing = {f.name for f in fields(cls) if f.default is MISSING} - set(data)
        if missing:
            raise FileNotFoundError(f"{path} was written by an older rlbasins (no {', '.join(sorted(missing))}); "
                                    f"run `rlbasins analyze {path.parent.parent}` again")
        for key in ("preference_greedy", "preference_sampled"):
            if data.get(key) is not None:
                data[key] = PreferenceTest(**data[key])
        return cls(**data)

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


def _label_summary(outcomes: np.ndarray, labels: tuple[str, str]):
    """outcomes [S, E] → (per-seed fractions, per-seed Wilson intervals, counts of A [S], counts of B [S])."""
    fractions = [label_fractions(list(row), labels) for row in outcomes]
    counts = {name: np.array([(row == name).sum() for row in outcomes]) for name in labels}
    counts["neither"] = outcomes.shape[1] - counts[labels[0]] - counts[labels[1]]
    intervals = [{name: wilson_interval(counts[name][i], outcomes.shape[1]).tolist() for name in counts}
                 for i in range(len(outcomes))]
    return fractions, intervals, counts[labels[0]], counts[labels[1]]


@dataclass
class EvaluationSample:
    """What every seed of a run is evaluated on, drawn from the config's master seed alone."""

    states: Any                       # [n_states] held-out states for action distributions
    starts: Any                       # [n_episodes] held-out start states
    reset_seeds_heldout: list[int]    # [n_episodes]
    reset_seeds_train: list[int]      # [train_episodes]
    space: gym.spaces.Space           # the observation space
    seed: int                         # the evaluation seed (also the action seed of sampled episodes)


def evaluation_sample(cfg: ExperimentConfig) -> EvaluationSample:
    """The held-out states and episodes of ``analyze_behavior`` (the report redraws the same ones)."""
    suite = get_suite(cfg.env.id)
    held = cfg.analysis.heldout
    eval_seed = factor_seed(cfg.seed, "eval", 0)
    rng = np.random.default_rng(eval_seed)
    probe_env = gym.make(cfg.env.id, **cfg.env.kwargs)
    states = suite.sample_states(probe_env, rng, held.n_states)
    starts = suite.sample_states(probe_env, rng, held.n_episodes)
    space = probe_env.observation_space
    probe_env.close()
    return EvaluationSample(states, starts, rng.integers(2**31, size=held.n_episodes).tolist(),
                            rng.integers(2**31, size=cfg.analysis.train_episodes).tolist(), space, eval_seed)


def fingerprint_inputs(cfg: ExperimentConfig, sample: EvaluationSample) -> tuple[torch.Tensor, torch.Tensor]:
    """The inputs whose action distributions fingerprint a policy: observations of the sample's held-out
    states [N, ...] and as many out-of-distribution noise inputs [N, ...]."""
    heldout_obs = heldout_observations(cfg, get_suite(cfg.env.id), sample.states)
    noise = noise_observations(sample.space, heldout_obs, len(heldout_obs), factor_seed(cfg.seed, "noise", 0))
    return heldout_obs, noise


def analyze_behavior(run: RunDir, step: int | None = None, show_progress: bool = True,
                     settings: AnalysisConfig | None = None) -> BehaviorResult:
    """Evaluate every finished seed of ``run`` (at checkpoint ``step``, default each seed's last) with
    the run's ``analysis`` settings or ``settings``; write ``analysis/behavior.json``, ``seeds.csv``
    and the action-distribution arrays."""
    manifest = run.manifest()  # first: names a directory that is not a run
    cfg = run.load_config()
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
        n_states=held.n_states, n_episodes=held.n_episodes,
    )
    if labelled:
        fractions, intervals, count_a, count_b = _label_summary(greedy.outcomes, suite.labels)
        sampled_fractions, _, sampled_a, sampled_b = _label_summary(sampled.outcomes, suite.labels)
        result.labels = [*suite.labels, "neither"]
        result.heldout_labels_greedy, result.heldout_labels_greedy_ci = fractions, intervals
        result.heldout_labels_sampled = sampled_fractions
        result.preference_greedy = preference_test(count_a, count_b)
        result.preference_sampled = preference_test(sampled_a, sampled_b)
    run.analysis_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run.analysis_dir / "behavior.json", asdict(result))
    _write_array(run.analysis_dir / "heldout_probs.npy", probs)
    _write_array(run.analysis_dir / "noise_probs.npy", noise_probs)
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
