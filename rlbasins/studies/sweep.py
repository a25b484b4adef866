"""Scale and architecture sweep: the same experiment at several network widths, depths or activations — do
the seeds split into the same held-out strategies, in the same proportions, at every setting?

The study (``rlbasins sweep CONFIG``, the config's ``sweep`` section):

1. **Members.** Every setting is the config with its dotted overrides (``policy.hidden_sizes``,
   ``policy.conv_channels``, ``policy.activation``, ``ppo.total_timesteps``, …), a run of its own named
   ``<name>-<setting>``, trained (:func:`~rlbasins.train.train_runs`: on the batched engine, settings that
   differ only in PPO settings or init scale train together as one lockstep batch), analysed
   (:func:`~rlbasins.analysis.pipeline.analyze_run`) and reported (:func:`~rlbasins.report.write_report`)
   as any run. A finished member is reused (never
   retrained), an analysed one is not analysed again; an unfinished one continues with ``resume``.
2. **Per setting.** The number of behavioural basins; each held-out strategy label's share of the seeds
   (a seed counts for its *dominant* greedy label, ``behavior.json``) with Wilson 95% intervals, and —
   graded rather than by seed — its mean share of the seeds' held-out episodes with a bootstrap CI; the
   run's preference verdict; the majority label of each behavioural basin; the mean aligned barrier (the
   run's basin-defining metric) between seeds of the same basin and of different basins, with bootstrap
   CIs over seeds; and training success:
   the mean greedy return on training starts and the share of seeds that learned the training task (at
   least 80% of the optimum; the quickstart's seeds reach 82–86%).
3. **Across settings.** A chi-square test of homogeneity of the label shares (settings × labels). When
   expected counts are small (any below 1, or more than a fifth below 5: Cochran's rule) the asymptotic
   p-value is not trusted and the p-value comes from permuting seeds between settings (the exact
   Fisher–Freeman–Halton test is not in scipy); its Monte-Carlo error is given as a Wilson interval.
   The graded view: a Kruskal–Wallis test across settings of each label's share of the seeds' episodes.
   A trend with scale: for every label, Spearman's ρ between a seed's log₂ parameter count (its setting's
   network, actor and critic together; width and depth both count) and whether the seed has that label —
   a Cochran–Armitage-style test on seeds — with a bootstrap CI that resamples seeds within settings.
   Persistence: the labels that are a basin's majority label in every setting, and those that are not.

Limitations: shares are of seeds, so their intervals are wide at 8–16 seeds per setting; a label can be
present in a setting without forming a basin of its own (the clustering needs ≥ 2 similar seeds); MLP vs CNN
settings (``policy.conv_channels``) differ in more than size, so a trend with log₂ parameters across them mixes
architecture and scale. Writes ``runs-dir/<name>/sweep.json`` and
``sweep.html`` (links to every member's ``report.html``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from scipy import stats

from rlbasins.analysis.barriers import BarrierStudy
from rlbasins.analysis.basins import BasinsResult
from rlbasins.analysis.behavior import BehaviorResult
from rlbasins.core.config import ExperimentConfig, PolicyConfig, load_config
from rlbasins.core.results import Result
from rlbasins.core.stats import wilson_interval
from rlbasins.core.store import RunDir, StoreError

SUCCESS_FRACTION = 0.8
"""A seed learned the training task when its greedy training return is at least this fraction of the optimum."""


@dataclass
class SettingResult:
    """One setting's member run. Per-label dicts are keyed by the env's labels (strategies and "neither").
    ``sweep.json`` keeps the key ``behaviour_k`` for ``behavior_k``."""

    json_names: ClassVar[dict[str, str]] = {"behavior_k": "behaviour_k"}
    name: str
    run_dir: str
    overrides: dict[str, Any]
    hidden_sizes: list[int]
    conv_channels: list[int] | None
    """Channels of the policy's conv layers (None: an MLP)."""
    activation: str
    network: str
    """The architecture as the tables show it (:func:`network_name`)."""
    total_timesteps: int
    """Env steps per seed actually trained (whole rollouts)."""
    parameters: int
    """Parameters of one seed's network (actor and critic)."""
    n_seeds: int
    status: str
    """What this invocation did: trained (or resumed), analysed (a finished run analysed again), or reused."""
    behavior_k: int
    basin_labels: list[str | None]
    """Majority label of each behavioural basin, largest basin first."""
    basin_sizes: list[int]
    label_counts: dict[str, int]
    """Seeds whose dominant greedy held-out label is each label."""
    label_shares: dict[str, float]
    label_share_ci: dict[str, list[float]]
    """Wilson 95% interval of each share."""
    episode_shares: dict[str, float]
    """Mean over seeds of each label's share of the seed's greedy held-out episodes (graded, not by seed)."""
    episode_share_ci: dict[str, list[float]]
    """Bootstrap 95% CI over seeds."""
    seed_episode_shares: dict[str, list[float]]
    """Each label's share of every seed's greedy held-out episodes [seeds]."""
    preference_verdict: str | None
    """The run's preference verdict: basins, one shared strategy or graded (``behavior.PreferenceTest``)."""
    barrier_metric: str
    barrier_within: float | None
    """Mean aligned barrier between two seeds of the same behavioural basin (None: no such pair)."""
    barrier_within_ci: list[float] | None
    barrier_across: float | None
    """Mean aligned barrier between seeds of different behavioural basins (None: one basin)."""
    barrier_across_ci: list[float] | None
    train_return: float
    """Mean over seeds of the greedy return on training starts (env reward)."""
    train_return_ci: list[float]
    """Bootstrap 95% CI over seeds."""
    optimum: float | None
    """Best training return of the env (gridworlds: reaching the target); None when unknown."""
    trained_share: float | None
    """Share of seeds with training return ≥ SUCCESS_FRACTION × optimum."""
    trained_share_ci: list[float] | None


@dataclass
class Homogeneity:
    """Chi-square test that every setting has the same label shares (rows: settings, columns: labels seen)."""

    labels: list[str]
    table: list[list[int]]
    """[settings, labels] seed counts."""
    statistic: float | None
    dof: int | None
    p_asymptotic: float | None
    min_expected: float | None
    small_expected: bool
    """Cochran's rule fails (an expected count < 1, or > 20% below 5): the permutation p is the one to read."""
    p_permutation: float | None
    p_permutation_ci: list[float] | None
    """Wilson 95% interval of the Monte-Carlo permutation p-value."""
    permutations: int
    p: float | None
    """The p-value to read: permutation when expected counts are small, else asymptotic."""
    method: str
    note: str | None = None


@dataclass
class Trend:
    """Spearman's ρ between a seed's log₂ parameter count and whether its dominant label is ``label``."""

    label: str
    rho: float | None
    rho_ci: list[float] | None
    """Bootstrap 95% CI, seeds resampled within each setting."""
    p: float | None
    note: str | None = None


@dataclass
class GradedTest:
    """Kruskal–Wallis test that a label's share of each seed's held-out episodes has one distribution in every
    setting (the graded view: it sees shifts that leave every seed's dominant label as it was)."""

    label: str
    statistic: float | None
    p: float | None
    note: str | None = None


@dataclass
class SweepResult(Result):
    name: str
    env_id: str
    labels: list[str]
    settings: list[SettingResult]
    homogeneity: Homogeneity
    trends: list[Trend]
    graded: list[GradedTest]
    persistent_labels: list[str]
    """Labels that are the majority label of a basin in every setting."""
    intermittent_labels: list[str]
    """Labels that are a basin's majority label in some settings but not all."""
    success_fraction: float = SUCCESS_FRACTION
    """Training return, as a fraction of the optimum, from which a seed counts as trained."""


# --------------------------------------------------------------------------- statistics


def chi_square(table: np.ndarray) -> tuple[float, int, float, np.ndarray]:
    """Pearson's χ² of homogeneity of a [rows, columns] count table → (statistic, dof, asymptotic p, expected)."""
    statistic, p, dof, expected = stats.chi2_contingency(table, correction=False)
    return float(statistic), int(dof), float(p), expected


def homogeneity_test(table: np.ndarray, labels: list[str], permutations: int, seed: int = 0) -> Homogeneity:
    """Are the label shares the same in every row of ``table`` [settings, labels]? (see the module docstring)"""
    table = np.asarray(table, dtype=int)
    seen = table.sum(0) > 0
    rows = table[table.sum(1) > 0][:, seen]
    kept = [name for name, keep in zip(labels, seen, strict=True) if keep]
    if rows.shape[0] < 2 or rows.shape[1] < 2:
        why = "every seed has the same label" if rows.shape[1] < 2 else "fewer than 2 settings with seeds"
        return Homogeneity(kept, table.tolist(), None, None, None, None, False, None, None, permutations, 1.0,
                           "not tested", f"{why}: no difference to test")
    statistic, dof, p_asymptotic, expected = chi_square(rows)
    small = bool(expected.min() < 1 or (expected < 5).mean() > 0.2)
    # permute seeds between settings: row sizes and label totals, hence the expected counts, stay fixed
    setting_of = np.repeat(np.arange(rows.shape[0]), rows.sum(1))
    label_of = np.concatenate([np.repeat(np.arange(rows.shape[1]), row) for row in rows])
    rng = np.random.default_rng(seed)
    at_least = 0
    for _ in range(permutations):
        shuffled = np.zeros_like(rows)
        np.add.at(shuffled, (setting_of, rng.permutation(label_of)), 1)
        at_least += ((shuffled - expected) ** 2 / expected).sum() >= statistic * (1 - 1e-9)
    p_permutation = float((1 + at_least) / (1 + permutations))
    return Homogeneity(kept, table.tolist(), statistic, dof, p_asymptotic, float(expected.min()), small,
                       p_permutation, wilson_interval(1 + at_least, 1 + permutations).tolist(), permutations,
                       p_permutation if small else p_asymptotic,
                       "permutation (small expected counts)" if small else "asymptotic χ²")


def spearman_trend(scale: np.ndarray, has_label: np.ndarray, setting_of: np.ndarray, label: str, resamples: int,
                   seed: int = 0) -> Trend:
    """Spearman's ρ of ``scale`` [seeds] against ``has_label`` [seeds] (bool), with a bootstrap CI that
    resamples seeds within each setting (``setting_of`` [seeds])."""
    scale, has_label, setting_of = np.asarray(scale, float), np.asarray(has_label, bool), np.asarray(setting_of)
    if np.ptp(scale) == 0 or has_label.all() or not has_label.any():
        why = "every setting has the same size" if np.ptp(scale) == 0 else \
            f"{'every' if has_label.all() else 'no'} seed has this label"
        return Trend(label, None, None, None, f"{why}: no trend to measure")
    rho, p = stats.spearmanr(scale, has_label)
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(setting_of == s) for s in np.unique(setting_of)]
    values = []
    for _ in range(resamples):
        idx = np.concatenate([rng.choice(g, len(g)) for g in groups])
        if has_label[idx].all() or not has_label[idx].any():
            values.append(0.0)  # no variation in the resample: no association
            continue
        values.append(stats.spearmanr(scale[idx], has_label[idx])[0])
    return Trend(label, float(rho), np.percentile(values, [2.5, 97.5]).tolist(), float(p))


def graded_test(shares: list[list[float]], label: str) -> GradedTest:
    """Kruskal–Wallis H test across settings of per-seed episode shares (``shares``: one list per setting)."""
    values = np.concatenate(shares)
    if np.ptp(values) == 0:
        return GradedTest(label, None, 1.0, f"every seed has the same {label} share: no difference to test")
    statistic, p = stats.kruskal(*shares)
    return GradedTest(label, float(statistic), float(p))


def barrier_means(barrier: np.ndarray, basin_of: np.ndarray, resamples: int, seed: int = 0
                  ) -> dict[str, tuple[float | None, list[float] | None]]:
    """Mean barrier [S, S] (NaN where not measured) between seeds of the same basin and of different basins,
    each with a bootstrap CI over seeds (a resample keeps pairs of distinct seeds only)."""
    barrier, basin_of = np.asarray(barrier, float), np.asarray(basin_of)
    rng = np.random.default_rng(seed)
    n = len(basin_of)

    def means(idx: np.ndarray) -> tuple[float, float]:
        values = barrier[np.ix_(idx, idx)]
        distinct = (idx[:, None] != idx[None]) & np.isfinite(values)
        same = basin_of[idx][:, None] == basin_of[idx][None]
        within, across = values[distinct & same], values[distinct & ~same]
        return (within.mean() if within.size else np.nan, across.mean() if across.size else np.nan)

    point = means(np.arange(n))
    boot = np.array([means(rng.integers(0, n, n)) for _ in range(resamples)])   # [resamples, 2]
    out = {}
    for j, name in enumerate(("within", "across")):
        finite = boot[:, j][np.isfinite(boot[:, j])]
        ok = np.isfinite(point[j]) and finite.size
        out[name] = (float(point[j]), np.percentile(finite, [2.5, 97.5]).tolist()) if ok else (None, None)
    return out


def bootstrap_mean(values: np.ndarray, resamples: int, seed: int = 0) -> list[float]:
    """Percentile 95% bootstrap CI [low, high] of the mean of ``values`` [n]."""
    rng = np.random.default_rng(seed)
    means = rng.choice(values, (resamples, len(values))).mean(1)
    return np.percentile(means, [2.5, 97.5]).tolist()


# --------------------------------------------------------------------------- one setting


def optimum_return(cfg: ExperimentConfig) -> float | None:
    """The best training return: reaching the target in a gridworld (as ``rm ppo``), else None."""
    import torch

    import envs

    if cfg.env.id not in envs.GRID_ENVS:
        return None
    core = envs.GRID_ENVS[cfg.env.id](num_envs=1, **cfg.env.kwargs)
    return float(core.reward_of(torch.tensor([3]))[0])


def network_name(policy: PolicyConfig) -> str:
    """A policy's architecture in a few characters: "64×64 tanh", or "conv 16-16 · 64 tanh" with conv layers."""
    mlp = f"{'×'.join(map(str, policy.hidden_sizes))} {policy.activation}"
    return f"conv {'-'.join(map(str, policy.conv_channels))} · {mlp}" if policy.conv_channels else mlp


def _parameters(run: RunDir, seed: int) -> int:
    from rlbasins.core.checkpoints import load_policy

    policy, _ = load_policy(run, seed)
    return sum(p.numel() for p in policy.parameters())


def summarize_setting(name: str, overrides: dict[str, Any], run: RunDir, status: str, resamples: int,
                      seed: int = 0) -> SettingResult:
    """A finished, analysed member run → its :class:`SettingResult`."""
    cfg = load_config(run.config_path)
    behavior = BehaviorResult.load(run.analysis_dir / "behavior.json")
    found = BasinsResult.load(run.analysis_dir / "basins.json")
    conn = BarrierStudy.load(run.analysis_dir / "connectivity.json")
    n = len(behavior.seeds)
    dominant = behavior.dominant_labels()
    counts = {label: dominant.count(label) for label in behavior.labels}
    basin_of = np.array(found.behavior.clustering.labels)
    barrier = conn.matrix()
    means = barrier_means(barrier, basin_of, resamples, seed)
    train = np.array(behavior.train_return)
    episodes = {label: np.array([f[label] for f in behavior.heldout_labels_greedy]) for label in behavior.labels}
    optimum = optimum_return(cfg)
    trained = int((train >= SUCCESS_FRACTION * optimum).sum()) if optimum is not None else None
    return SettingResult(
        name=name, run_dir=str(run.root), overrides=overrides, hidden_sizes=list(cfg.policy.hidden_sizes),
        conv_channels=cfg.policy.conv_channels, activation=cfg.policy.activation, network=network_name(cfg.policy),
        total_timesteps=cfg.checkpoint_steps()[-1],
        parameters=_parameters(run, behavior.seeds[0]), n_seeds=n, status=status,
        behavior_k=found.behavior.clustering.k,
        basin_labels=[b.label for b in found.behavior.basins],
        basin_sizes=[b.size for b in found.behavior.basins],
        label_counts=counts, label_shares={k: c / n for k, c in counts.items()},
        label_share_ci={k: wilson_interval(c, n).tolist() for k, c in counts.items()},
        episode_shares={k: float(v.mean()) for k, v in episodes.items()},
        seed_episode_shares={k: v.tolist() for k, v in episodes.items()},
        episode_share_ci={k: bootstrap_mean(v, resamples, seed) for k, v in episodes.items()},
        preference_verdict=behavior.preference_greedy.verdict if behavior.preference_greedy else None,
        barrier_metric=conn.barrier_metric,
        barrier_within=means["within"][0], barrier_within_ci=means["within"][1],
        barrier_across=means["across"][0], barrier_across_ci=means["across"][1],
        train_return=float(train.mean()), train_return_ci=bootstrap_mean(train, resamples, seed),
        optimum=optimum, trained_share=trained / n if trained is not None else None,
        trained_share_ci=wilson_interval(trained, n).tolist() if trained is not None else None)


# --------------------------------------------------------------------------- the sweep


def _member_status(member: ExperimentConfig, run: RunDir, resume: bool) -> str:
    """What a member run needs: "train" (new or unfinished), "analyse" (finished, not analysed) or "reuse"."""
    if not run.exists():
        return "train"
    manifest = run.manifest()
    if manifest["config_hash"] != member.hash():
        raise StoreError(f"{run.root} holds a run of another config (hash {manifest['config_hash'][:12]}…, this "
                         f"setting {member.hash()[:12]}…); delete it or rename the sweep (`name`)")
    if manifest["status"] != "finished":
        if not resume:
            raise StoreError(f"{run.root} holds an unfinished member run; pass --resume to continue it")
        return "train"
    analysed = all((run.analysis_dir / name).exists() for name in ("behavior.json", "basins.json",
                                                                   "connectivity.json"))
    return "reuse" if analysed and run.report_path.exists() else "analyse"


def finish_member(run: RunDir, todo: str, show_progress: bool, report: Callable[[RunDir], Any]) -> str:
    """Analyse and ``report`` a trained member as needed (``todo`` from :func:`_member_status`); returns what
    was done."""
    from rlbasins.analysis.pipeline import analyze_run

    if todo != "reuse":
        analyze_run(run, show_progress=show_progress)
        report(run)
    return {"train": "trained", "analyse": "analysed", "reuse": "reused"}[todo]


def summarize_sweep(cfg: ExperimentConfig, members: list[tuple[RunDir, str]]) -> SweepResult:
    """Per-setting summaries of the analysed ``members`` [(run, status)] (in ``cfg.sweep.settings`` order) and the
    comparisons across settings."""
    sweep = cfg.sweep
    settings = [summarize_setting(s.name, s.overrides, run, status, sweep.bootstrap, cfg.seed)
                for s, (run, status) in zip(sweep.settings, members, strict=True)]
    labels = list(settings[0].label_counts)
    table = np.array([[s.label_counts[label] for label in labels] for s in settings])
    homogeneity = homogeneity_test(table, labels, sweep.permutations, cfg.seed)
    scale = np.concatenate([np.full(s.n_seeds, math.log2(s.parameters)) for s in settings])
    setting_of = np.repeat(np.arange(len(settings)), [s.n_seeds for s in settings])
    label_of = np.concatenate([np.repeat(labels, row) for row in table])
    trends = [spearman_trend(scale, label_of == label, setting_of, label, sweep.bootstrap, cfg.seed)
              for label in labels]
    graded = [graded_test([s.seed_episode_shares[label] for s in settings], label) for label in labels]
    basin_labels = [set(s.basin_labels) - {None} for s in settings]
    persistent = [label for label in labels if all(label in found for found in basin_labels)]
    intermittent = [label for label in labels if label not in persistent and any(label in f for f in basin_labels)]
    return SweepResult(cfg.name, cfg.env.id, labels, settings, homogeneity, trends, graded, persistent,
                       intermittent)


def run_sweep(cfg: ExperimentConfig, report: Callable[[RunDir], Any], runs_dir: Path | str = "runs", *,
              resume: bool = False, show_progress: bool = True, on_member: Any = None) -> SweepResult:
    """The whole study (see the module docstring): every member run, then ``runs_dir/<name>/sweep.json``.

    ``report(run)`` writes a member's report once it is analysed (the CLI passes
    :func:`rlbasins.report.write_report`: studies sit below the report, so they are handed it).
    ``on_member(setting_name, member_config)`` is called before each member starts (e.g. to print it).
    """
    from rlbasins.train import train_runs

    runs_dir = Path(runs_dir)
    configs = cfg.sweep_members()
    names = {member.name: setting.name for setting, member in zip(cfg.sweep.settings, configs, strict=True)}
    todo = {member.name: _member_status(member, RunDir(runs_dir / member.name), resume) for member in configs}
    for member in configs:
        if on_member is not None:
            on_member(names[member.name], member)
    # settings that differ only in PPO settings train together as one lockstep batch (the batched engine)
    train_runs([m for m in configs if todo[m.name] == "train"], runs_dir, resume, show_progress)
    members = [(RunDir(runs_dir / m.name), finish_member(RunDir(runs_dir / m.name), todo[m.name], show_progress,
                                                         report)) for m in configs]
    result = summarize_sweep(cfg, members)
    result.save(sweep_dir(cfg, runs_dir) / "sweep.json")
    return result


def sweep_dir(cfg: ExperimentConfig, runs_dir: Path | str) -> Path:
    """Where the sweep's own files go: ``runs_dir/<name>``."""
    folder = Path(runs_dir) / cfg.name
    folder.mkdir(parents=True, exist_ok=True)
    return folder
