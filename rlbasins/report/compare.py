"""``rlbasins compare A B``: a behavioural diff of two policies.

A and B name a seed of a run, optionally at a checkpoint step: ``RUN_DIR:SEED[@STEP]`` (default:
the seed's last checkpoint). They may come from one run or from two runs of the same env and
architecture. The diff: greedy-action agreement and total variation on held-out states, overall
and by type of held-out state; the held-out states where they disagree most, drawn with both
action distributions; side-by-side held-out episodes as image strips; each policy's strategy
on held-out episodes; and the naive and Git Re-Basin-aligned interpolation between them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import gymnasium as gym
import matplotlib.pyplot as plt
import numpy as np
import torch

import envs
from envs.grid import label_fractions
from envs.suites import get_suite
from rlbasins.analysis import align, barriers
from rlbasins.core.checkpoints import load_policy
from rlbasins.core.config import ConfigError, ConfigIssue, ExperimentConfig, load_config
from rlbasins.core.heldout import heldout_observations
from rlbasins.core.plotting import action_names
from rlbasins.core.policy import ActorCritic
from rlbasins.core.rollouts import action_probs, play, stack_state_dicts
from rlbasins.core.seeding import factor_seed
from rlbasins.core.store import RunDir, atomic_write_bytes
from rlbasins.report import METRIC_UNITS, figures, template

REF_PATTERN = re.compile(r"^(?P<run>.+?):(?P<seed>\d+)(?:@(?P<step>\d+))?$")


@dataclass
class PolicyRef:
    """One side of a comparison: a seed of a run, at a checkpoint step (None: its last)."""

    run: RunDir
    seed: int
    step: int | None

    @classmethod
    def parse(cls, text: str, argument: str) -> PolicyRef:
        match = REF_PATTERN.match(text)
        if match is None:
            expected = "RUN_DIR:SEED or RUN_DIR:SEED@STEP, e.g. runs/x:3@50000"
            raise ConfigError(argument, [ConfigIssue(path=argument, value=text, expected=expected)])
        step = match["step"]
        return cls(RunDir(match["run"]), int(match["seed"]), int(step) if step else None)

    def name(self, step: int) -> str:
        return f"{self.run.root.name}:{self.seed}@{step}"


@dataclass
class Side:
    ref: PolicyRef
    policy: ActorCritic
    step: int
    label: str
    strategy: dict[str, float] | None


def _state_types(cfg: ExperimentConfig, states) -> list[str]:
    """A coarse type per held-out state: for gridworlds the agent's distance to the objects."""
    if cfg.env.id not in envs.GRID_ENVS:
        return ["all"] * len(states)
    core = envs.GRID_ENVS[cfg.env.id](num_envs=len(states), **cfg.env.kwargs)
    target = core.strategy_target(states, 0)
    distance = (target - states.agent).abs().sum(-1)
    return [f"distance {int(d)}" for d in distance]


def _episode_strip(cfg: ExperimentConfig, policy: ActorCritic, state) -> np.ndarray:
    """Frames of one greedy held-out episode from ``state`` side by side: [H, W·T, 3] uint8."""
    core = envs.GRID_ENVS[cfg.env.id](num_envs=1, **cfg.env.kwargs)
    obs = core.reset_to(state)
    frames = [core.render(0)]
    with torch.no_grad():
        for _ in range(core.max_steps):
            step = core.step(policy.action_probs(obs).argmax(-1))
            frames.append(core.render(0))
            obs = step.obs
            if bool(step.terminated[0] | step.truncated[0]):
                break
    gap = np.full((frames[0].shape[0], 4, 3), 255, dtype=np.uint8)
    return np.concatenate([part for frame in frames for part in (frame, gap)][:-1], axis=1)


def _disagreement_figure(cfg: ExperimentConfig, states, indices: list[int], probs_a: np.ndarray,
                         probs_b: np.ndarray, names: tuple[str, str]) -> str:
    """The held-out states of largest disagreement, drawn, with both action distributions beside each."""
    n_actions = probs_a.shape[-1]
    actions = action_names(n_actions)
    drawn = cfg.env.id in envs.GRID_ENVS
    fig, axes = plt.subplots(len(indices), 2 if drawn else 1, figsize=(7 if drawn else 4, 2.4 * len(indices)),
                             squeeze=False)
    core = envs.GRID_ENVS[cfg.env.id](num_envs=len(states), **cfg.env.kwargs) if drawn else None
    x = np.arange(n_actions)
    for row, i in enumerate(indices):
        if drawn:
            axes[row, 0].imshow(core.render(i, states))
            axes[row, 0].set_axis_off()
            axes[row, 0].set_title(f"held-out state {i}", fontsize=9)
        bars = axes[row, -1]
        bars.bar(x - 0.2, probs_a[i], 0.4, color=figures.OKABE_ITO[0], label=names[0])
        bars.bar(x + 0.2, probs_b[i], 0.4, color=figures.OKABE_ITO[1], label=names[1])
        bars.set_xticks(x, actions, fontsize=8)
        bars.set(ylim=(0, 1), ylabel="action probability")
        bars.set_title(f"TV {0.5 * np.abs(probs_a[i] - probs_b[i]).sum():.2f}", fontsize=9)
        if row == 0:
            bars.legend(fontsize=7)
    fig.tight_layout()
    return figures.to_data_uri(fig)


def _strip_figure(strips: list[tuple[np.ndarray, np.ndarray]], names: tuple[str, str]) -> str:
    fig, axes = plt.subplots(2 * len(strips), 1, figsize=(10, 1.6 * 2 * len(strips)), squeeze=False)
    for k, (strip_a, strip_b) in enumerate(strips):
        for offset, (strip, name) in enumerate(((strip_a, names[0]), (strip_b, names[1]))):
            ax = axes[2 * k + offset, 0]
            ax.imshow(strip)
            ax.set_axis_off()
            ax.set_title(f"episode {k + 1}: {name}", fontsize=8, loc="left")
    fig.tight_layout()
    return figures.to_data_uri(fig)


@dataclass
class TypeDiff:
    """Agreement of two policies on one type of held-out state."""

    states: int
    agreement: float
    """Share of these states with the same greedy action."""
    total_variation: float
    """Mean total variation of the action distributions on these states."""


@dataclass
class Comparison:
    """The numbers of ``rlbasins compare A B`` (``a``, ``b``: the two policies' names)."""

    a: str
    b: str
    env_id: str
    n_states: int
    agreement: float
    """Share of the held-out states with the same greedy action."""
    total_variation: float
    """Mean total variation of the action distributions over the held-out states."""
    by_type: dict[str, TypeDiff]
    labels: dict[str, str]
    """Each policy's dominant held-out strategy ("–" when the env names none)."""
    strategies: dict[str, dict[str, float] | None]
    barriers: dict[str, dict[str, float]]
    """Per variant (naive, aligned), the barrier of each metric on the path from A to B."""
    metric: str


def compare(a: PolicyRef, b: PolicyRef, output: Path, n_strips: int = 3, n_top: int = 6) -> Comparison:
    """Write the diff of ``a`` and ``b`` to ``output`` (HTML) and return its numbers."""
    cfg = load_config(a.run.config_path)
    cfg_b = load_config(b.run.config_path)
    if (cfg.env.id, cfg.env.kwargs) != (cfg_b.env.id, cfg_b.env.kwargs):
        raise ConfigError("compare", [ConfigIssue(path="B", value=f"{cfg_b.env.id} {cfg_b.env.kwargs}",
                                                  expected=f"the env of A: {cfg.env.id} {cfg.env.kwargs}")])
    policies = []
    for ref in (a, b):
        policy, step = load_policy(ref.run, ref.seed, ref.step)
        policies.append((policy, step))
    (policy_a, step_a), (policy_b, step_b) = policies
    if policy_a.state_dict().keys() != policy_b.state_dict().keys() or any(
            policy_a.state_dict()[k].shape != policy_b.state_dict()[k].shape for k in policy_a.state_dict()):
        def architecture(policy: ActorCritic) -> str:
            return f"conv channels {policy.conv_channels or 'none'}, hidden sizes {policy.hidden_sizes}"

        raise ConfigError("compare", [ConfigIssue(path="B", value=architecture(policy_b),
                                                  expected=f"the architecture of A: {architecture(policy_a)}")])
    names = (a.name(step_a), b.name(step_b))
    suite = get_suite(cfg.env.id)
    rng = np.random.default_rng(factor_seed(cfg.seed, "compare", 0))
    probe_env = gym.make(cfg.env.id, **cfg.env.kwargs)
    states = suite.sample_states(probe_env, rng, cfg.analysis.heldout.n_states)
    starts = suite.sample_states(probe_env, rng, cfg.analysis.heldout.n_episodes)
    probe_env.close()
    obs = heldout_observations(cfg, suite, states)
    weights = [policy_a.state_dict(), policy_b.state_dict()]
    probs = action_probs(policy_a, stack_state_dicts(weights), obs).numpy()                   # [2, N, A]
    tv = 0.5 * np.abs(probs[0] - probs[1]).sum(-1)                                           # [N]
    agree = probs[0].argmax(-1) == probs[1].argmax(-1)                                       # [N]
    types = _state_types(cfg, states)
    by_type = {t: TypeDiff(int(sum(x == t for x in types)), float(agree[[x == t for x in types]].mean()),
                           float(tv[[x == t for x in types]].mean())) for t in sorted(set(types))}

    episodes = play(policy_a, stack_state_dicts(weights), cfg.env.id, cfg.env.kwargs,
                    rng.integers(2**31, size=len(starts)).tolist(), starts=starts, suite=suite, greedy=True)
    sides = []
    for k, (ref, (policy, step)) in enumerate(zip((a, b), policies, strict=True)):
        strategy = label_fractions(list(episodes.outcomes[k]), suite.labels) if suite.labels else None
        label = max(strategy, key=strategy.get) if strategy else "–"
        sides.append(Side(ref, policy, step, label, strategy))

    probe = barriers.make_probe(policy_a, cfg.env.id, cfg.env.kwargs, cfg.analysis.barriers.episodes,
                                cfg.analysis.barriers.n_states, seed=factor_seed(cfg.seed, "connectivity", 0),
                                suite=suite)
    aligned_b = align.weight_matching(weights[0], weights[1])
    paths = [barriers.InterpolationPath("A → B", names[0], names[1], {
        "naive": barriers.path_curves(weights[0], weights[1], probe, cfg.analysis.barriers.points),
        "aligned": barriers.path_curves(weights[0], aligned_b, probe, cfg.analysis.barriers.points)})]
    metric = probe.metrics[-1]

    top = [int(i) for i in np.argsort(-tv, kind="stable")[:n_top]]
    strip_starts = [int(i) for i in np.argsort(-tv, kind="stable")[:n_strips]]
    fig_strips = None
    if cfg.env.id in envs.GRID_ENVS:
        fig_strips = _strip_figure([(_episode_strip(cfg, policy_a, states[[i]]), _episode_strip(cfg, policy_b,
                                                                                                  states[[i]]))
                                    for i in strip_starts], names)
    result = Comparison(
        names[0], names[1], cfg.env.id, len(tv), float(agree.mean()), float(tv.mean()), by_type,
        labels={names[k]: sides[k].label for k in range(2)}, strategies={names[k]: sides[k].strategy for k in range(2)},
        barriers={variant: curves.barriers for variant, curves in paths[0].curves.items()}, metric=metric)
    html = template("compare.html.j2").render(
        result=result, names=names, sides=sides, generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        suite=suite.description, labels=[*suite.labels, "neither"] if suite.labels else None,
        fig_top=_disagreement_figure(cfg, states, top, probs[0], probs[1], names),
        fig_strips=fig_strips,
        fig_paths=figures.interpolation_paths(paths, metric, METRIC_UNITS[metric],
                                              [*suite.labels, "neither"] if suite.labels else None))
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(output, html.encode())
    return result


