"""One experiment, one YAML file: the schema, its validation and its hash.

Loading goes through :func:`load_config`, which parses with ``yaml.safe_load`` semantics
(plus a refusal of duplicate keys), validates with pydantic and then runs the checks that
need more than one field or the outside world (env registry, files, CUDA). Every problem is
reported at once as ``field.path: value — expected ...`` in a :class:`ConfigError`; the CLI
turns it into exit code 2 before anything is written.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import importlib.util
import itertools
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

SEED_FACTORS: tuple[str, ...] = ("init", "env", "action", "minibatch")
"""The independent sources of randomness of one PPO run (see :mod:`rlbasins.core.seeding`)."""


class ConfigIssue(BaseModel):
    """One problem in a config: where, what was there, what was expected."""

    path: str
    value: Any = None
    expected: str

    def __str__(self) -> str:
        shown = "<missing>" if self.value is _MISSING else repr(self.value)
        return f"{self.path}: {shown} — {self.expected}"


_MISSING = "<missing>"


class ConfigError(Exception):
    """An experiment config that cannot be run; ``issues`` names every bad field."""

    def __init__(self, source: str, issues: list[ConfigIssue]):
        self.source = source
        self.issues = issues
        lines = "\n".join(f"  {issue}" for issue in issues)
        noun = "problem" if len(issues) == 1 else "problems"
        super().__init__(f"{source} is not a valid experiment config ({len(issues)} {noun}):\n{lines}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PlantedGroup(_Strict):
    """Seeds that train on an env variant: ``env.kwargs`` updated with ``kwargs``."""

    label: str = Field(min_length=1, description="Name of the group, recorded per seed in the manifest.")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Overrides of env.kwargs for training.")
    share: float | None = Field(None, gt=0, le=1, description="Share of the seeds in this group (every group "
                                "gives one, summing to 1; seeds are assigned in proportion, interleaved). "
                                "null in every group: round-robin, seed k in group k % len(planted).")


def planted_counts(shares: tuple[float, ...], count: int) -> list[int]:
    """Seeds per planted group: ``count`` split in proportion to ``shares`` by largest remainder (ties to the
    earlier group)."""
    exact = [share * count for share in shares]
    counts = [int(x) for x in exact]
    by_remainder = sorted(range(len(shares)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in by_remainder[: count - sum(counts)]:
        counts[i] += 1
    return counts


@functools.lru_cache(maxsize=64)
def planted_assignment(shares: tuple[float, ...], count: int) -> tuple[int, ...]:
    """Each seed index's planted group, :func:`planted_counts` of each, interleaved by smooth weighted
    round-robin (2 of 48: seeds 12 and 36): every prefix of the seeds holds each group's share within
    about one seed (measured: at most 0.5 with 2 groups, 1.03 with 5, over 20,000 random cases).
    Deterministic: the same shares and count give the same assignment."""
    counts = planted_counts(shares, count)
    current = [0] * len(counts)
    groups = []
    for _ in range(count):
        current = [c + n for c, n in zip(current, counts, strict=True)]
        chosen = max(range(len(counts)), key=lambda i: (current[i], -i))
        current[chosen] -= count
        groups.append(chosen)
    return tuple(groups)


class EnvConfig(_Strict):
    id: str = Field(description="Gymnasium id, e.g. CartPole-v1 or rlbasins/CueConflict-v0.")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Passed to gymnasium.make.")
    num_envs: int = Field(8, gt=0, le=65536, description="Parallel environments per seed.")
    planted: list[PlantedGroup] | None = Field(
        None, description="Planted basins: seed k trains on {**env.kwargs, **planted[g].kwargs}, its group g "
        "round-robin (g = k % len(planted)) or, with planted[i].share, in proportion to the shares; at least 2 "
        "groups with unique labels; evaluation and analysis use env.kwargs. "
        "E.g. [{label: colour, kwargs: {informative: colour}}, {label: shape, kwargs: {informative: shape}}] "
        "for CueConflict. null: every seed trains on env.kwargs.")


class PolicyConfig(_Strict):
    hidden_sizes: list[PositiveInt] = Field([64, 64], min_length=1, description="Hidden widths of actor and critic.")
    conv_channels: list[PositiveInt] | None = Field(
        None, min_length=1, description="Output channels of 3×3 conv layers (padding 1, stride 1), each followed by "
        "the activation, before hidden_sizes; image observations [C, H, W] and the batched engine only. "
        "null: an MLP on the flattened observation.")
    activation: Literal["tanh", "relu"] = "tanh"
    ortho_init: bool = Field(True, description="Orthogonal init as in SB3 (gain √2, 0.01 policy head).")
    init_scale: float | None = Field(None, gt=0, description="Multiply every initial weight matrix (not the biases) "
                                     "by this: below 1 a smaller init, above 1 a larger one; the batched engine "
                                     "only. null: 1, the init as it is.")

    @field_validator("init_scale")
    @classmethod
    def _scale_one_is_none(cls, value: float | None) -> float | None:
        """1 is the init as it is: stored as null, so that it is the same config (and hash) as leaving it out."""
        return None if value == 1 else value


class PPOConfig(_Strict):
    """PPO hyper-parameters, named as in Stable-Baselines3."""

    total_timesteps: int = Field(100_000, gt=0, description="Env steps per seed (all envs together).")
    n_steps: int = Field(2048, gt=0, description="Steps per env per rollout.")
    batch_size: int = Field(64, gt=0, description="Minibatch size; at most n_steps × env.num_envs.")
    n_epochs: int = Field(10, gt=0)
    gamma: float = Field(0.99, gt=0, le=1)
    gae_lambda: float = Field(0.95, ge=0, le=1)
    learning_rate: float = Field(3e-4, gt=0)
    lr_schedule: Literal["constant", "linear"] = Field("constant", description="linear: decays to 0.")
    clip_range: float = Field(0.2, gt=0)
    clip_range_schedule: Literal["constant", "linear"] = "constant"
    clip_range_vf: float | None = Field(None, gt=0, description="Value clipping; null disables it.")
    normalize_advantage: bool = True
    ent_coef: float = Field(0.0, ge=0)
    vf_coef: float = Field(0.5, ge=0)
    max_grad_norm: float = Field(0.5, gt=0)
    target_kl: float | None = Field(None, gt=0)


class InitPlaneConfig(_Strict):
    """A 2-D grid of initialisations θ0 + a·u + b·v (see :mod:`rlbasins.train.initial`): seed k = i·R + j starts
    at a = a_i, b = b_j, both evenly spaced in [−span, span]."""

    resolution: int = Field(ge=2, le=256, description="Grid points per side R; seeds.count must be R × R.")
    span: float = Field(gt=0, description="Half-width of the grid in units of the directions: with directions: "
                        "inits, span 1 reaches the ordinary initialisations θ1 (a = 1) and θ2 (b = 1); with "
                        "filter_normalized, a = 1 moves every neuron's weights by their own norm.")
    directions: Literal["inits", "filter_normalized"] = Field(
        "inits", description="inits: u = θ1 − θ0, v = θ2 − θ0, the ordinary initialisations of init-factor "
        "indices 0, 1, 2 (the plane through three inits); filter_normalized: Gaussian directions with each "
        "neuron's incoming weights rescaled to θ0's norm and biases 0 (Li et al. 2018).")


class SeedGrid(_Strict):
    """Seeds on an init × data grid: seed k has init index k // data and env = action = minibatch index
    k % data, so a row shares one initialisation and a column one data stream (the seed-factor study)."""

    init: int = Field(gt=1, le=10_000, description="Rows: distinct initialisations (init factor indices 0 … init-1).")
    data: int = Field(gt=1, le=10_000, description="Columns: distinct data streams (env, action and minibatch "
                      "factor indices 0 … data-1).")


class SeedsConfig(_Strict):
    count: int = Field(8, gt=0, le=100_000, description="Number of PPO runs (seeds).")
    vary: list[Literal["init", "env", "action", "minibatch"]] = Field(
        list(SEED_FACTORS),
        description="Factors that differ between seeds; the others are shared by all seeds. With a grid: init and "
        "the data factors that differ between columns (those left out are shared by every seed).",
    )
    init_plane: InitPlaneConfig | None = Field(
        None, description="Init-space map: seeds start on a 2-D grid of initialisations instead of their own "
        "draws (batched engine; seeds.count = resolution², seeds.vary: [init]); null: ordinary initialisations.")
    grid: SeedGrid | None = Field(
        None, description="Seed-factor grid {init: I, data: D} (count must be I × D): seed k gets init index "
        "k // D and data-stream index k % D; the analysis splits the seeds' outcomes into init, data and residual "
        "shares (analysis/seed_factors.json). null: every factor in vary uses the seed's own index.")


class CheckpointConfig(_Strict):
    every: int = Field(20_000, gt=0, description="Env steps between checkpoints (per seed).")
    also_at: list[NonNegativeInt] = Field(default_factory=list, description="Extra checkpoint steps, e.g. early ones.")


class HeldOutConfig(_Strict):
    n_states: int = Field(256, gt=0, description="Held-out states for action distributions.")
    n_episodes: int = Field(32, gt=0, description="Held-out episodes per seed.")


class AlignConfig(_Strict):
    method: Literal["weight", "activation"] = Field(
        "weight", description="Git Re-Basin matcher: weight matching (data-free) or activation matching "
        "(correlations of hidden units on held-out states).")
    reference: Literal["mean", "first"] = Field(
        "mean", description="Align every seed to the iterated mean of all (MergeMany) or to the first seed.")
    rounds: int = Field(3, gt=0, le=20, description="Rounds of align-to-mean (reference: mean).")


class BarriersConfig(_Strict):
    """Loss barriers along linear paths between seeds, naive and after alignment (:mod:`rlbasins.analysis.barriers`)."""

    points: int = Field(11, ge=3, le=101, description="Points on each interpolation path, endpoints included.")
    episodes: int = Field(16, gt=0, description="Training episodes per path point (sampled actions) for the "
                          "return barrier; also the held-out episodes of the representative paths.")
    n_states: int = Field(256, gt=0, description="Validation states for the supervised-loss barrier.")
    repair: bool = Field(True, description="Also measure aligned barriers after REPAIR renormalisation (every "
                         "metric; MLP units and conv channels).")
    max_pairwise: int = Field(64, ge=2, description="Up to this many seeds: every pair; beyond: each seed to the "
                              "behavioural basins' medoids.")
    barrier_metric: Literal["auto", "heldout_decided", "loss", "train_return"] = Field(
        "auto", description="The barrier the report plots and the sweep compares (every metric is measured and "
        "clustered as a weight-space view); auto: the training return, which reads no held-out state.")


class BasinsConfig(_Strict):
    method: Literal["spectral", "agglomerative"] = Field(
        "spectral", description="spectral (k by eigengap) or agglomerative (k by silhouette); k = 1 allowed.")
    distance: Literal["actions", "strategies"] | None = Field(
        None, description="What the behavioural basins cluster. null or actions: the total variation between the "
        "seeds' held-out action distributions; strategies: the total variation between their greedy held-out "
        "strategy shares (envs that name strategies), where a lean stays visible when many held-out states are "
        "undecided (partial separation), but two ways of acting that end in the same strategy look alike.")
    max_k: int = Field(8, ge=2, description="Most basins considered.")
    resamples: int = Field(50, ge=10, description="Bootstrap resamples of held-out states for cluster stability.")


class EarlyDetectionConfig(_Strict):
    detectors: list[Literal["behaviour", "weights", "noise"]] = Field(
        ["behaviour", "weights", "noise"],
        description="Predictors of each seed's final basin from its earlier checkpoints; [] skips the study.")
    target: Literal["auto", "basin", "strategy"] = Field(
        "auto", description="What is predicted. basin: the seed's final behavioural basin; strategy: its final "
        "preferred strategy (the one of the env's two, e.g. colour or shape, its greedy held-out episodes reach "
        "more often; what steering aims at); auto: basin when "
        "there are two basins of two seeds or more, else strategy.")
    folds: int = Field(5, ge=2, le=20, description="Cross-validation folds (fewer when a class has fewer seeds).")
    threshold: float = Field(0.9, gt=0, le=1,
                             description="Balanced accuracy whose first training fraction is reported.")
    resamples: int = Field(1000, ge=100, description="Bootstrap resamples of seeds for the confidence intervals.")


class TrainingLengthConfig(_Strict):
    """Every seed's basin through its checkpoints (:mod:`rlbasins.analysis.training_length`)."""

    enabled: bool = Field(True, description="Track every seed's basin through its checkpoints (training length).")
    late_fraction: float = Field(0.5, gt=0, lt=1, description="A seed whose last basin switch comes after this "
                                 "training fraction is a late switcher; transitions from here on are summed.")
    resamples: int = Field(1000, ge=100, description="Bootstrap resamples of seeds for the mean-distance CIs.")


class BasinCountConfig(_Strict):
    enabled: bool = Field(True, description="Basins found vs seeds (rarefaction), unseen basins (Chao1) and the "
                          "count across clustering resolutions.")
    resamples: int = Field(50, ge=10, description="Random seed subsets per rarefaction size; also resamples of "
                           "held-out states for the resolution curve's band.")
    sizes: list[PositiveInt] | None = Field(None, description="Seed-subset sizes of the rarefaction curve; null: "
                                            "4, 8, 16, … below the number of seeds, and all of them.")
    bootstrap: int = Field(1000, ge=100, description="Bootstrap resamples of seeds for the Chao1 CI.")


RENAMED_ANALYSIS_KEYS = {"connectivity": "barriers", "trajectory": "training_length"}
"""Old ``analysis`` keys → their names after the questions they answer. The old ones still load (with a
:class:`FutureWarning`), and the config hash keeps them, so runs made before the rename resume."""


class AnalysisConfig(_Strict):
    enabled: bool = True
    heldout: HeldOutConfig = HeldOutConfig()
    train_episodes: int = Field(20, gt=0, description="Episodes from the training start distribution.")
    align: AlignConfig = AlignConfig()
    barriers: BarriersConfig = BarriersConfig()
    basins: BasinsConfig = BasinsConfig()
    early: EarlyDetectionConfig = EarlyDetectionConfig()
    training_length: TrainingLengthConfig = TrainingLengthConfig()
    basin_count: BasinCountConfig = BasinCountConfig()

    @model_validator(mode="before")
    @classmethod
    def _renamed_keys(cls, data: Any) -> Any:
        """``connectivity`` → ``barriers``, ``trajectory`` → ``training_length`` (deprecated, still read)."""
        if not isinstance(data, dict) or not set(data) & set(RENAMED_ANALYSIS_KEYS):
            return data
        data = dict(data)
        for old, new in RENAMED_ANALYSIS_KEYS.items():
            if old not in data:
                continue
            if new in data:
                raise ValueError(f"analysis.{old} and analysis.{new} are both given; {old} is the old name of "
                                 f"{new}: keep analysis.{new} only")
            warnings.warn(f"analysis.{old} is deprecated: call it analysis.{new} (same fields)", FutureWarning,
                          stacklevel=2)
            data[new] = data.pop(old)
        return data


class SteeringConfig(_Strict):
    """Steering by abort (``rlbasins steer``, :mod:`rlbasins.studies.steering`): train seeds in waves to
    the check step, abort those a detector (fit on a finished calibration run) predicts outside the
    ``target`` basin, continue the rest, until ``k`` seeds end in the target. Outside the config hash:
    it decides which seeds train and how far, never what a seed computes."""

    target: str = Field(min_length=1, description="The wanted strategy: a label of the env's held-out suite "
                        "(e.g. colour or shape on CueConflict).")
    k: int = Field(16, gt=0, description="Seeds that must finish in the target basin.")
    check_at: float = Field(0.1, gt=0, lt=1, description="Training fraction of the check; the check step is the "
                            "first scheduled checkpoint at or after it (it must be before the end).")
    calibration: str = Field(min_length=1, description="A finished, analysed run (`rlbasins run`) of the same env, "
                             "reward model, policy and PPO settings with a checkpoint at the check step and a "
                             "different master seed; relative to this file.")
    wave: int = Field(16, gt=0, description="New seed indices trained to the check step per wave (in lockstep).")
    max_seeds: int = Field(256, gt=0, description="Give up after this many seeds were started.")
    audit: bool = Field(True, description="Afterwards train the aborted seeds to the end too (not counted as "
                        "steering compute): measures wrong aborts and the no-steering baseline exactly.")


class PopulationConfig(_Strict):
    """A population trained jointly (DvD, Parker-Holder et al. 2020): seeds k·size … (k+1)·size − 1 form
    population k, and each member's PPO loss gets −bonus · log det K over its population, K the RBF kernel of
    the members' action distributions on fixed noise inputs (not training states, not the held-out probe).
    In the config hash: it changes what every seed computes, and its members are not independent seeds."""

    size: int = Field(8, ge=2, le=64, description="Members per population (seeds.count must be a multiple).")
    bonus: float = Field(0.1, ge=0, description="Weight of the log-determinant diversity bonus in each "
                         "member's loss.")
    noise_inputs: int = Field(32, gt=0, le=4096, description="Out-of-distribution inputs (uniform within the "
                              "observation bounds) the members' action distributions are compared on.")
    length_scale: float = Field(0.5, gt=0, description="RBF kernel length scale, in the root-mean-square "
                                "difference of action probabilities per input.")


class DiversityConfig(_Strict):
    """Diversity search (``rlbasins diversify``, :mod:`rlbasins.studies.diversity`): Ridge Rider branches, and
    a control, against i.i.d. seeds at equal compute. Outside the config hash: it decides which seeds train
    and where they start, in run directories of their own."""

    directions: int = Field(4, gt=0, le=64, description="ridge: Hessian eigenvectors per base seed, the most "
                            "negative first; each gives two branches (+ and −).")
    branch_at: NonNegativeInt = Field(0, description="ridge: the env step the base seeds branch at (a scheduled "
                                      "checkpoint before the end; 0: their initialisation).")
    budget: int | None = Field(None, gt=0, description="Env steps each method may spend (ridge's Hessian work "
                               "counted in); null: seeds.count × ppo.total_timesteps.")
    lanczos_tol: float = Field(1e-6, gt=0, lt=1, description="ridge: relative tolerance of the Lanczos "
                               "eigenvalues.")
    resamples: int = Field(1000, ge=100, description="Bootstrap resamples of the rarefaction curves' intervals.")
    population: PopulationConfig = Field(PopulationConfig(), description="population: the populations trained "
                                         "(their size, the bonus weight, the noise inputs).")


_RAY_FIELDS: tuple[str, ...] = ("address", "group_size", "cpus_per_group", "gpus_per_group", "max_retries")
"""The ``executor`` fields that only ``kind: ray`` reads."""


class ExecutorConfig(_Strict):
    """Where the seeds train; never what they compute (``executor`` is outside the config hash).

    ``local``: on this machine (the sb3 engine in up to ``max_workers`` processes, the batched engine
    in this process). ``ray``: seed groups as Ray tasks, each with its resource request and retries,
    writing to the same run directory (see docs/ray.md).
    """

    kind: Literal["local", "ray"] = Field("local", description="local: this machine; ray: seed groups as Ray "
                                          "tasks (needs `pip install -e '.[ray]'`).")
    max_workers: int | None = Field(None, gt=0, description="local: processes of the sb3 engine; ray without "
                                    "address: CPUs of the local Ray instance. Default: the number of cores.")
    address: str | None = Field(None, min_length=1, description="ray: the cluster to join ('auto', "
                                "'ray://head:10001'); null: start a local Ray instance.")
    group_size: int | None = Field(None, gt=0, description="ray: seeds per Ray task, in seed order; null: 1 for "
                                   "the sb3 engine, every seed for batched.")
    cpus_per_group: float = Field(1.0, gt=0, description="ray: CPUs each Ray task reserves (and torch threads).")
    gpus_per_group: float = Field(0.0, ge=0, description="ray: GPUs each Ray task reserves (fractions share one).")
    max_retries: int = Field(3, ge=0, description="ray: re-runs of a group whose worker or node died; a re-run "
                             "resumes from its seeds' last checkpoints.")


SWEEP_FIXED_FIELDS: tuple[str, ...] = ("name", "sweep", "basin_map")
"""Top-level fields a sweep setting or a basin-map knob may not override (a member's name is
``<name>-<setting>``; the study sections describe members, they are not part of one)."""


class SweepSetting(BaseModel):
    """One setting of a sweep: its ``name`` and, as every other key, a dotted override of this config,
    e.g. ``{name: wide, policy.hidden_sizes: [256, 256], ppo.total_timesteps: 600000}``."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                      description="Setting name; its member run is <name>-<setting> in the runs directory.")

    @property
    def overrides(self) -> dict[str, Any]:
        """Dotted field path → value, in the order written."""
        return dict(self.model_extra or {})


class SweepConfig(_Strict):
    """Scale and architecture sweep (``rlbasins sweep``, :mod:`rlbasins.studies.sweep`): the same experiment
    once per setting, then basin shares compared across settings. Outside the config hash: each member
    run has its own config (with the setting's overrides), and that is what its hash covers."""

    settings: list[SweepSetting] = Field(
        min_length=2, description="At least 2 settings with unique names, each overriding fields of this config "
        "by dotted path (policy.hidden_sizes, policy.activation, ppo.total_timesteps, …).")
    grid: dict[str, list[Any]] | None = Field(
        None, description="A product of values, {dotted field: [values]}: one setting per combination, named "
        "<field>-<value>_… by the fields' last parts, appended to settings when the config is read (the resolved "
        "config lists them). E.g. {ppo.learning_rate: [3e-4, 1e-3], ppo.ent_coef: [0, 0.01]}: 4 settings. "
        "Settings that differ only in PPO settings train as one lockstep batch (the batched engine).")
    permutations: int = Field(10_000, ge=100, description="Permutations of the chi-square homogeneity test "
                              "(used when expected counts are small).")
    bootstrap: int = Field(2000, ge=100, description="Bootstrap resamples of seeds for the CIs of the trend and "
                           "of the barrier means.")

    @model_validator(mode="before")
    @classmethod
    def _grid_to_settings(cls, data: Any) -> Any:
        """``grid`` becomes settings (once: the resolved config keeps the settings and ``grid: null``)."""
        if not isinstance(data, dict) or not isinstance(data.get("grid"), dict) or not data["grid"]:
            return data
        grid = data["grid"]
        if not all(isinstance(values, list) and values for values in grid.values()):
            return data  # the field's own validation names the bad entry
        combos = [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]
        named = [{"name": "_".join(f"{knob.rsplit('.', 1)[-1]}-{point_slug(v)}" for knob, v in combo.items()),
                  **combo} for combo in combos]
        return {**data, "settings": [*(data.get("settings") or []), *named], "grid": None}


class BasinMapConfig(_Strict):
    """Basin map (``rlbasins map``, :mod:`rlbasins.studies.basin_map`): this config is the base point; every
    knob is a dotted field with the values to try, one at a time, the other knobs at the base's values. Each
    point is a run of its own, ``<name>-<knob>-<value>`` (the base: ``<name>-base``), trained and its held-out
    behaviour measured. Outside the config hash, like ``sweep``."""

    knobs: dict[str, list[Any]] = Field(
        min_length=1, description="Dotted config field → values to try (one panel of the map per knob), e.g. "
        "env.kwargs.code_length: [0, 1, 2], ppo.ent_coef: [0.001, 0.01], policy.hidden_sizes: [[32, 32]]. A value "
        "equal to the base's is the base point (trained once).")
    alpha: float = Field(0.01, gt=0, lt=0.5, description="A seed is committed to a strategy when the exact binomial "
                         "test of its decided held-out choices rejects 'both strategies equally likely' at this "
                         "level.")
    success: float = Field(0.95, gt=0, le=1, description="A seed learned the training task when its greedy training "
                           "return is at least this fraction of the optimum.")


class ExperimentConfig(_Strict):
    """The complete description of one experiment."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="Run directory name.")
    seed: int = Field(0, ge=0, description="Master seed; every per-run seed derives from it.")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    env: EnvConfig
    reward_model: str | None = Field(
        None, description="A frozen reward model (its card .json or weights .safetensors; relative to the config "
        "file) whose reward every seed trains on instead of the env's; null: the env's reward.")
    policy: PolicyConfig = PolicyConfig()
    ppo: PPOConfig = PPOConfig()
    seeds: SeedsConfig = SeedsConfig()
    engine: Literal["sb3", "batched"] = Field(
        "sb3", description="sb3: one SB3 PPO per seed in parallel processes; batched: all seeds in lockstep "
        "in one process (CPU or CUDA).")
    checkpoints: CheckpointConfig = CheckpointConfig()
    analysis: AnalysisConfig = AnalysisConfig()
    executor: ExecutorConfig = ExecutorConfig()
    steering: SteeringConfig | None = Field(None, description="Steering by abort (`rlbasins steer`); null: none.")
    sweep: SweepConfig | None = Field(None, description="Scale and architecture sweep (`rlbasins sweep`); "
                                      "null: none.")
    basin_map: BasinMapConfig | None = Field(None, description="Basin map over knobs (`rlbasins map`); null: none.")
    diversity: DiversityConfig | None = Field(None, description="Diversity search (`rlbasins diversify`); "
                                              "null: its defaults.")
    population: PopulationConfig | None = Field(None, description="Train the seeds as populations with a "
                                                "diversity bonus (DvD; batched engine); null: independent seeds.")

    def planted_group(self, index: int) -> PlantedGroup | None:
        """Seed ``index``'s planted group (None without ``env.planted``): round-robin, or by the groups'
        shares (:func:`planted_assignment`)."""
        planted = self.env.planted
        if not planted:
            return None
        if planted[0].share is None:
            return planted[index % len(planted)]
        return planted[planted_assignment(tuple(g.share for g in planted), self.seeds.count)[index]]

    def env_kwargs_for(self, index: int) -> dict[str, Any]:
        """The env kwargs seed ``index`` trains with: ``env.kwargs``, updated by its planted group if any."""
        group = self.planted_group(index)
        return {**self.env.kwargs, **(group.kwargs if group else {})}

    def planted_label(self, index: int) -> str | None:
        """The label of seed ``index``'s planted group (None without ``env.planted``)."""
        group = self.planted_group(index)
        return group.label if group else None

    @property
    def rollout_size(self) -> int:
        """Samples per PPO iteration per seed."""
        return self.ppo.n_steps * self.env.num_envs

    def checkpoint_steps(self) -> list[int]:
        """Scheduled checkpoint steps, snapped up to rollout boundaries; always 0 and the end.

        A checkpoint can only be taken between PPO iterations, i.e. at multiples of
        :attr:`rollout_size`; training stops at the first boundary ≥ ``total_timesteps``.
        """
        size = self.rollout_size
        end = -(-self.ppo.total_timesteps // size) * size
        wanted = {0, end, *range(0, end, self.checkpoints.every), *self.checkpoints.also_at}
        return sorted({min(-(-step // size) * size, end) for step in wanted})

    def steering_check_step(self) -> int:
        """The step of ``steering.check_at``: the first scheduled checkpoint at or after that fraction."""
        schedule = self.checkpoint_steps()
        return next(step for step in schedule if step >= self.steering.check_at * schedule[-1])

    def reward_model_sha256(self) -> str | None:
        """sha256 of the reward model's weights file (None without one); reads the file."""
        if self.reward_model is None:
            return None
        from rlbasins.core.reward_card import read_card
        from rlbasins.core.store import sha256_file

        return sha256_file(read_card(self.reward_model)[1])

    def sweep_members(self) -> list[ExperimentConfig]:
        """One validated config per ``sweep`` setting: this config with the setting's overrides, named
        ``<name>-<setting>``, without ``sweep`` (raises :class:`ConfigError` like :func:`parse_config`)."""
        members = []
        for i, setting in enumerate(self.sweep.settings):
            issues, member = _member(self, f"sweep.settings[{i}]", setting.name, setting.overrides)
            if issues:
                raise ConfigError(f"sweep.settings[{i}]", issues)
            members.append(member)
        return members

    def map_points(self) -> list[tuple[str | None, Any, ExperimentConfig]]:
        """The basin map's points as (knob, value, member config): first the base, ``(None, None, <name>-base)``,
        then every knob value in the order written, its member this config with that one override, named
        ``<name>-<knob>-<value>`` — or the base member itself where the override changes nothing (raises
        :class:`ConfigError` like :func:`parse_config`)."""
        base = self.model_copy(update={"name": f"{self.name}-base", "sweep": None, "basin_map": None})
        points: list[tuple[str | None, Any, ExperimentConfig]] = [(None, None, base)]
        for knob, values in self.basin_map.knobs.items():
            for j, value in enumerate(values):
                where = f"basin_map.knobs.{knob}[{j}]"
                issues, member = _member(self, where, f"{knob}-{point_slug(value)}", {knob: value})
                if issues:
                    raise ConfigError(where, issues)
                same = member.model_copy(update={"name": base.name}).hash() == base.hash()
                points.append((knob, value, base if same else member))
        return points

    def hash(self) -> str:
        """sha256 of everything that determines results (``executor`` only decides where they run).

        A reward model counts by the sha256 of its weights, not its path: moving it keeps the hash,
        retraining it changes the hash. Unset optional fields (None) are left out, so that a new
        optional feature leaves the hashes of existing runs alone.
        """
        science = self.model_dump(mode="json", exclude={"executor", "steering", "sweep", "basin_map", "diversity"},
                                  exclude_none=True)
        old_names = {new: old for old, new in RENAMED_ANALYSIS_KEYS.items()}
        science["analysis"] = {old_names.get(key, key): value for key, value in science["analysis"].items()}
        if self.reward_model is not None:
            science["reward_model"] = {"sha256": self.reward_model_sha256()}
        return hashlib.sha256(json.dumps(science, sort_keys=True).encode()).hexdigest()


# --------------------------------------------------------------------------- loading


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate keys instead of keeping the last one."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The config model of a field annotated ``Model``, ``list[Model]`` or ``list[Model] | None``; else None."""
    if get_origin(annotation) is None and isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next(filter(None, map(_model_in, get_args(annotation))), None)


def _field_names(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names allowed at ``loc`` (for 'did you mean' hints on unknown keys)."""
    for part in loc:
        if isinstance(part, int):  # an item of a list of models: same model
            continue
        field = model.model_fields.get(part)
        inner = _model_in(field.annotation) if field else None
        if inner is None:
            return list(model.model_fields)
        model = inner
    return list(model.model_fields)


def _issues_from_pydantic(error: ValidationError) -> list[ConfigIssue]:
    issues = []
    for err in error.errors():
        loc = tuple(err["loc"])
        path = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in loc).replace(".[", "[")
        if err["type"] == "extra_forbidden":
            allowed = _field_names(ExperimentConfig, loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            issues.append(ConfigIssue(path=path, value=err["input"],
                                      expected=f"unknown key{hint} (allowed: {', '.join(allowed)})"))
        elif err["type"] == "missing":
            issues.append(ConfigIssue(path=path, value=_MISSING, expected="required field"))
        else:
            issues.append(ConfigIssue(path=path, value=err["input"], expected=err["msg"]))
    return issues


def _semantic_issues(cfg: ExperimentConfig, base_dir: Path) -> list[ConfigIssue]:
    """Checks that span fields or look outside the file: sizes, env registry, files, devices."""
    import gymnasium as gym
    import torch

    import envs  # noqa: F401  (registers the rlbasins/* environments)
    from envs.suites import HELDOUT_SUITES

    issues: list[ConfigIssue] = []
    if cfg.ppo.batch_size > cfg.rollout_size:
        issues.append(ConfigIssue(
            path="ppo.batch_size", value=cfg.ppo.batch_size,
            expected=f"at most the rollout size ppo.n_steps × env.num_envs = {cfg.rollout_size}"))
    if cfg.device == "cuda" and not torch.cuda.is_available():
        issues.append(ConfigIssue(path="device", value="cuda",
                                  expected="auto or cpu: CUDA is not available on this machine"))
    if cfg.env.id not in gym.registry:
        close = difflib.get_close_matches(cfg.env.id, list(gym.registry), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        issues.append(ConfigIssue(path="env.id", value=cfg.env.id,
                                  expected=f"a registered gymnasium environment id{hint}"))
    else:
        env_issues = _env_issues(cfg.env.id, cfg.env.kwargs, "env.kwargs")
        issues.extend(env_issues)
        if cfg.env.planted and not env_issues:  # each group's kwargs, once the standard env itself is fine
            for i, group in enumerate(cfg.env.planted):
                issues.extend(_env_issues(cfg.env.id, {**cfg.env.kwargs, **group.kwargs}, f"env.planted[{i}].kwargs",
                                          shown=group.kwargs))
        if cfg.analysis.enabled and cfg.env.id not in HELDOUT_SUITES:
            issues.append(ConfigIssue(
                path="env.id", value=cfg.env.id,
                expected=f"an env with a held-out suite ({', '.join(sorted(HELDOUT_SUITES))}), "
                "or analysis.enabled: false"))
        elif cfg.analysis.basins.distance == "strategies" and HELDOUT_SUITES[cfg.env.id].labels is None:
            named = sorted(env for env, suite in HELDOUT_SUITES.items() if suite.labels is not None)
            issues.append(ConfigIssue(
                path="analysis.basins.distance", value="strategies",
                expected=f"actions: {cfg.env.id} names no strategies (strategies needs one of {', '.join(named)})"))
        if cfg.policy.conv_channels is not None and not env_issues:
            issues.extend(_conv_issues(cfg))
    if cfg.policy.init_scale is not None and cfg.engine != "batched":
        issues.append(ConfigIssue(path="policy.init_scale", value=cfg.policy.init_scale,
                                  expected="null with engine: sb3 (SB3 draws its own init); set engine: batched"))
    if cfg.env.planted is not None:
        issues.extend(_planted_issues(cfg))
    if cfg.reward_model is not None:
        issues.extend(_reward_model_issues(cfg, base_dir / cfg.reward_model))
    issues.extend(_executor_issues(cfg))
    if cfg.seeds.init_plane is not None:
        issues.extend(_init_plane_issues(cfg))
    if cfg.steering is not None:
        issues.extend(_steering_issues(cfg))
    if cfg.seeds.grid is not None:
        issues.extend(_grid_issues(cfg))
    if cfg.diversity is not None:
        issues.extend(_diversity_issues(cfg))
    if cfg.population is not None:
        issues.extend(_population_issues(cfg))
    if cfg.sweep is not None and not issues:  # members are checked once the base config itself is fine
        issues.extend(_sweep_issues(cfg, base_dir))
    if cfg.basin_map is not None and not issues:
        issues.extend(_basin_map_issues(cfg, base_dir))
    return issues


def _conv_issues(cfg: ExperimentConfig) -> list[ConfigIssue]:
    """Convolutions need image observations [C, H, W] and the batched engine (SB3's MlpPolicy has none)."""
    import gymnasium as gym

    env = gym.make(cfg.env.id, **cfg.env.kwargs)
    shape = tuple(env.observation_space.shape)
    env.close()
    issues = []
    if len(shape) != 3:
        issues.append(ConfigIssue(path="policy.conv_channels", value=cfg.policy.conv_channels,
                                  expected=f"null for {cfg.env.id}: its observations have shape {list(shape)}, "
                                  "convolutions need images [C, H, W] (e.g. rlbasins/CueConflict-v0)"))
    if cfg.engine != "batched":
        issues.append(ConfigIssue(path="policy.conv_channels", value=cfg.policy.conv_channels,
                                  expected=f"null with engine: {cfg.engine} (it trains SB3's MlpPolicy), or set "
                                  "engine: batched"))
    return issues


def _grid_issues(cfg: ExperimentConfig) -> list[ConfigIssue]:
    """A seed grid fills every cell once, varies init across rows and some data factor across columns."""
    grid, seeds, issues = cfg.seeds.grid, cfg.seeds, []
    if seeds.count != grid.init * grid.data:
        issues.append(ConfigIssue(path="seeds.count", value=seeds.count,
                                  expected=f"seeds.grid.init × seeds.grid.data = {grid.init} × {grid.data} = "
                                  f"{grid.init * grid.data} (one seed per cell), or change seeds.grid"))
    data_factors = [f for f in seeds.vary if f != "init"]
    if "init" not in seeds.vary or not data_factors:
        issues.append(ConfigIssue(path="seeds.vary", value=list(seeds.vary),
                                  expected="init and at least one of env, action, minibatch with seeds.grid "
                                  "(rows differ in init, columns in the data factors); e.g. the default, all four"))
    if cfg.env.planted is not None:
        issues.append(ConfigIssue(path="seeds.grid", value=grid.model_dump(),
                                  expected="null with env.planted (planted groups would confound the grid's "
                                  "columns)"))
    return issues


def point_slug(value: Any) -> str:
    """A knob value as part of a run name: JSON without spaces, lists joined by "x", other characters "_"."""
    text = "x".join(map(str, value)) if isinstance(value, list) else str(value)
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


def _member(cfg: ExperimentConfig, where: str, suffix: str, overrides: dict[str, Any], base_dir: Path | None = None
            ) -> tuple[list[ConfigIssue], ExperimentConfig | None]:
    """``cfg`` with dotted ``overrides``, named ``<name>-<suffix>``, without the study sections; or the issues
    of the overrides named ``<where>.<field>`` (relative paths in ``cfg`` are relative to ``base_dir``)."""
    data = cfg.model_dump(mode="json", exclude={"sweep", "basin_map"})
    data["name"] = f"{cfg.name}-{suffix}"
    issues = []
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        if parts[0] == "analysis" and len(parts) > 1 and parts[1] in RENAMED_ANALYSIS_KEYS:  # the old name
            parts[1] = RENAMED_ANALYSIS_KEYS[parts[1]]
        if parts[0] in SWEEP_FIXED_FIELDS:
            issues.append(ConfigIssue(path=f"{where}.{dotted}", value=value,
                                      expected=f"a field other than {', '.join(SWEEP_FIXED_FIELDS)} (fixed by "
                                      "the study)"))
            continue
        node = data
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):  # an unknown section: pydantic names it below
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
    if issues:
        return issues, None
    try:
        return [], parse_config(data, source=where, base_dir=base_dir)
    except ConfigError as exc:  # the member's own field paths, under the setting's
        return [issue.model_copy(update={"path": f"{where}.{issue.path}"}) for issue in exc.issues], None


def _sweep_issues(cfg: ExperimentConfig, base_dir: Path) -> list[ConfigIssue]:
    """Unique setting names; labelled held-out strategies to share out; every setting a valid config."""
    issues: list[ConfigIssue] = []
    seen: set[str] = set()
    for i, setting in enumerate(cfg.sweep.settings):
        if setting.name in seen:
            issues.append(ConfigIssue(path=f"sweep.settings[{i}].name", value=setting.name,
                                      expected="a name no other setting has"))
        seen.add(setting.name)
    issues.extend(_labelled_suite_issues(cfg, "sweep", "the sweep compares the strategies' shares"))
    for i, setting in enumerate(cfg.sweep.settings):
        issues.extend(_member(cfg, f"sweep.settings[{i}]", setting.name, setting.overrides, base_dir)[0])
    return issues


def _labelled_suite_issues(cfg: ExperimentConfig, section: str, why: str) -> list[ConfigIssue]:
    """A study that shares out strategies needs an env whose held-out suite names them, and the analysis."""
    from envs.suites import HELDOUT_SUITES

    suite = HELDOUT_SUITES.get(cfg.env.id)
    if cfg.analysis.enabled and suite is not None and suite.labels is not None:
        return []
    return [ConfigIssue(path=section, value=f"<{cfg.env.id}>", expected="an env whose held-out suite names "
                        f"strategies (e.g. rlbasins/TwoDoors-v0) and analysis.enabled: true; {why}")]


def _basin_map_issues(cfg: ExperimentConfig, base_dir: Path) -> list[ConfigIssue]:
    """Labelled strategies to commit to; every knob a non-empty list of values, each a valid config."""
    issues = _labelled_suite_issues(cfg, "basin_map", "the map counts the seeds committed to each")
    for knob, values in cfg.basin_map.knobs.items():
        if not values:
            issues.append(ConfigIssue(path=f"basin_map.knobs.{knob}", value=values, expected="at least one value"))
        for j, value in enumerate(values):
            issues.extend(_member(cfg, f"basin_map.knobs.{knob}[{j}]", f"{knob}-{point_slug(value)}",
                                  {knob: value}, base_dir)[0])
    return issues


def _population_issues(cfg: ExperimentConfig) -> list[ConfigIssue]:
    """A population trains whole, in one lockstep batch of the batched engine."""
    size, issues = cfg.population.size, []
    if cfg.seeds.count % size:
        issues.append(ConfigIssue(path="population.size", value=size,
                                  expected=f"a divisor of seeds.count ({cfg.seeds.count}): populations are whole"))
    if cfg.engine != "batched" or cfg.executor.kind != "local" or cfg.env.planted is not None:
        issues.append(ConfigIssue(path="population", value=cfg.population.model_dump(),
                                  expected="null unless engine: batched, executor: local and no env.planted (a "
                                  "population's members train together, in one batch)"))
    return issues


def _diversity_issues(cfg: ExperimentConfig) -> list[ConfigIssue]:
    """The branch step is a checkpoint before the end; the budget pays for at least one seed."""
    div, schedule, issues = cfg.diversity, cfg.checkpoint_steps(), []
    if div.branch_at not in schedule[:-1]:
        issues.append(ConfigIssue(path="diversity.branch_at", value=div.branch_at,
                                  expected="a scheduled checkpoint before the end "
                                  f"({', '.join(map(str, schedule[:-1]))})"))
    if div.budget is not None and div.budget < schedule[-1]:
        issues.append(ConfigIssue(path="diversity.budget", value=div.budget,
                                  expected=f"at least one seed's training ({schedule[-1]:,} env steps)"))
    return issues


def _steering_issues(cfg: ExperimentConfig) -> list[ConfigIssue]:
    """The target is a label of the env's suite; the check is a checkpoint before the end; sizes fit."""
    from envs.suites import get_suite

    st, issues = cfg.steering, []
    try:
        labels = get_suite(cfg.env.id).labels
    except KeyError:
        labels = None
    if labels is None:
        issues.append(ConfigIssue(path="steering.target", value=st.target,
                                  expected=f"an env whose held-out suite names strategies ({cfg.env.id} names none)"))
    elif st.target not in labels:
        issues.append(ConfigIssue(path="steering.target", value=st.target, expected=f"one of {', '.join(labels)}"))
    schedule = cfg.checkpoint_steps()
    if cfg.steering_check_step() >= schedule[-1]:
        issues.append(ConfigIssue(path="steering.check_at", value=st.check_at,
                                  expected=f"a fraction with a scheduled checkpoint after it and before the end "
                                  f"(checkpoints at {', '.join(f'{s / schedule[-1]:.3g}' for s in schedule)})"))
    if st.max_seeds < st.k:
        issues.append(ConfigIssue(path="steering.max_seeds", value=st.max_seeds,
                                  expected=f"at least steering.k ({st.k})"))
    return issues


def _init_plane_issues(cfg: ExperimentConfig) -> list[ConfigIssue]:
    """One seed per grid point, differing from the others in its initialisation alone, on the batched engine."""
    plane, issues = cfg.seeds.init_plane, []
    cells = plane.resolution ** 2
    if cfg.seeds.count != cells:
        issues.append(ConfigIssue(path="seeds.count", value=cfg.seeds.count,
                                  expected=f"{cells} = seeds.init_plane.resolution² (one seed per grid point); "
                                  f"set count: {cells} or change the resolution"))
    if cfg.seeds.vary != ["init"]:
        issues.append(ConfigIssue(path="seeds.vary", value=cfg.seeds.vary,
                                  expected="[init] with seeds.init_plane: only the initialisation may differ "
                                  "between grid points (env, action and minibatch streams are shared)"))
    if cfg.engine != "batched":
        issues.append(ConfigIssue(path="engine", value=cfg.engine,
                                  expected="batched with seeds.init_plane (the sb3 engine draws its own "
                                  "initialisation), or remove seeds.init_plane"))
    if cfg.env.planted is not None:
        issues.append(ConfigIssue(path="env.planted", value=[g.model_dump() for g in cfg.env.planted],
                                  expected="null with seeds.init_plane (planted groups would make grid points "
                                  "differ in their training env, not only their initialisation)"))
    return issues


def _ray_installed() -> bool:
    """Whether ``import ray`` would find Ray (without importing it: that takes seconds)."""
    return importlib.util.find_spec("ray") is not None


def _executor_issues(cfg: ExperimentConfig) -> list[ConfigIssue]:
    """The executor can run here: Ray settings only with ``kind: ray``, Ray installed, and resource
    requests a local Ray instance can grant (an unsatisfiable request would wait forever)."""
    import torch

    ex = cfg.executor
    if ex.kind == "local":  # a resolved config lists every field, so only values other than the default count
        return [ConfigIssue(path=f"executor.{name}", value=getattr(ex, name),
                            expected="only read with executor.kind: ray; remove it or set kind: ray")
                for name in _RAY_FIELDS if getattr(ex, name) != ExecutorConfig.model_fields[name].default]
    issues = []
    if not _ray_installed():
        issues.append(ConfigIssue(path="executor.kind", value="ray", expected="local, or install Ray first: "
                                  "pip install -e '.[ray]' (Ray is an optional extra)"))
    if ex.address is not None and ex.max_workers is not None:
        issues.append(ConfigIssue(path="executor.max_workers", value=ex.max_workers,
                                  expected="null with executor.address (the cluster has its own CPUs)"))
    if ex.gpus_per_group > 0 and cfg.device == "cpu":
        issues.append(ConfigIssue(path="executor.gpus_per_group", value=ex.gpus_per_group,
                                  expected="0 with device: cpu (reserved GPUs would sit idle), or device: auto"))
    if ex.address is None:  # a local Ray instance: its resources are this machine's
        cpus = ex.max_workers or os.cpu_count() or 1
        if ex.cpus_per_group > cpus:
            issues.append(ConfigIssue(path="executor.cpus_per_group", value=ex.cpus_per_group,
                                      expected=f"at most the {cpus} CPUs of the local Ray instance "
                                      "(executor.max_workers), or no group could ever start"))
        gpus = torch.cuda.device_count()
        if ex.gpus_per_group > gpus:
            issues.append(ConfigIssue(path="executor.gpus_per_group", value=ex.gpus_per_group,
                                      expected=f"at most the {gpus} GPUs of this machine (local Ray instance), "
                                      "or executor.address of a cluster with GPUs"))
    return issues


def _reward_model_issues(cfg: ExperimentConfig, path: Path) -> list[ConfigIssue]:
    """The reward model exists, its card and weights are intact (sha256), and it fits ``env``."""
    import gymnasium as gym

    from rlbasins.core.reward_card import card_path, load_verified_card
    from rlbasins.core.store import CorruptFileError

    def issue(expected: str) -> list[ConfigIssue]:
        return [ConfigIssue(path="reward_model", value=cfg.reward_model, expected=expected)]

    if not path.is_file() or not card_path(path).is_file():
        return issue(f"an existing reward-model file (looked for {path} and its card {card_path(path).name})")
    try:
        card = load_verified_card(path).card
    except (CorruptFileError, FileNotFoundError) as exc:
        return issue(f"an intact reward model ({exc}); rebuild it with `rlbasins rm build` or `rlbasins rm train`")
    if card["env_id"] != cfg.env.id:
        return issue(f"a reward model of env.id {cfg.env.id} (this one was trained on {card['env_id']})")
    try:
        env = gym.make(cfg.env.id, **cfg.env.kwargs)
    except Exception:  # an unknown id or bad kwargs: reported on env.* already
        return []
    shape, n_actions = list(env.observation_space.shape), int(env.action_space.n)
    env.close()
    if shape != card["architecture"]["obs_shape"]:
        return issue(f"a reward model for observations of shape {shape} (env.kwargs give that; the model "
                     f"takes {card['architecture']['obs_shape']})")
    if n_actions != card["architecture"]["n_actions"]:
        return issue(f"a reward model for {n_actions} actions (env.kwargs give that; the model takes "
                     f"{card['architecture']['n_actions']})")
    return []


def _env_issues(env_id: str, kwargs: dict[str, Any], path: str,
                shown: dict[str, Any] | None = None) -> list[ConfigIssue]:
    """Whether ``env_id`` accepts ``kwargs`` (if not: reported at ``path`` with value ``shown``, default
    ``kwargs``) and has the spaces the engines support."""
    import gymnasium as gym

    try:
        env = gym.make(env_id, **kwargs)
    except Exception as exc:  # the env's own constructor decides what kwargs mean
        return [ConfigIssue(path=path, value=kwargs if shown is None else shown,
                            expected=f"arguments {env_id} accepts ({type(exc).__name__}: {exc})")]
    try:
        if not isinstance(env.action_space, gym.spaces.Discrete):
            return [ConfigIssue(path="env.id", value=env_id,
                                expected="an env with a Discrete action space (others not supported yet)")]
        if not isinstance(env.observation_space, gym.spaces.Box):
            return [ConfigIssue(path="env.id", value=env_id, expected="an env with a Box observation space")]
    finally:
        env.close()
    return []


def _planted_issues(cfg: ExperimentConfig) -> list[ConfigIssue]:
    """Planted groups: at least two, unique labels, and a seed for each (their kwargs: :func:`_env_issues`)."""
    planted = cfg.env.planted
    issues = []
    if len(planted) < 2:
        issues.append(ConfigIssue(path="env.planted", value=[g.model_dump() for g in planted],
                                  expected="at least 2 groups (with one, put its kwargs in env.kwargs), or null"))
    seen: set[str] = set()
    for i, group in enumerate(planted):
        if group.label in seen:
            issues.append(ConfigIssue(path=f"env.planted[{i}].label", value=group.label,
                                      expected="a label no other group has"))
        seen.add(group.label)
    if cfg.seeds.count < len(planted):
        issues.append(ConfigIssue(path="seeds.count", value=cfg.seeds.count,
                                  expected=f"at least the number of env.planted groups ({len(planted)}), "
                                  "so that every group trains"))
        return issues
    shares = [group.share for group in planted]
    if any(share is None for share in shares) and any(share is not None for share in shares):
        first = next(i for i, share in enumerate(shares) if share is None)
        issues.append(ConfigIssue(path=f"env.planted[{first}].share", value=None,
                                  expected="a share in every group (they sum to 1), or in none (round-robin)"))
    elif shares[0] is not None:
        if abs(sum(shares) - 1) > 1e-6:
            issues.append(ConfigIssue(path="env.planted", value=[g.model_dump() for g in planted],
                                      expected=f"shares that sum to 1 (these sum to {sum(shares):.6g})"))
        else:
            for i, n in enumerate(planted_counts(tuple(shares), cfg.seeds.count)):
                if n == 0:
                    issues.append(ConfigIssue(
                        path=f"env.planted[{i}].share", value=shares[i],
                        expected=f"at least one of the {cfg.seeds.count} seeds (share × seeds.count = "
                                 f"{shares[i] * cfg.seeds.count:.2f} rounds to 0): raise the share or seeds.count"))
    return issues


def parse_config(data: Any, source: str = "<config>", base_dir: Path | None = None) -> ExperimentConfig:
    """Validate an already-parsed YAML document; raise :class:`ConfigError` naming every bad field."""
    if not isinstance(data, dict):
        raise ConfigError(source, [ConfigIssue(path="<top level>", value=type(data).__name__,
                                               expected="a mapping of config fields")])
    try:
        cfg = ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, _issues_from_pydantic(exc)) from None
    base_dir = base_dir or Path.cwd()
    issues = _semantic_issues(cfg, base_dir)
    if issues:
        raise ConfigError(source, issues)
    if cfg.reward_model is not None:  # absolute, so that the run's stored config and workers find it too
        cfg = cfg.model_copy(update={"reward_model": str((base_dir / cfg.reward_model).resolve())})
    if cfg.steering is not None:  # absolute, like the reward model
        steering = cfg.steering.model_copy(update={"calibration": str((base_dir / cfg.steering.calibration).resolve())})
        cfg = cfg.model_copy(update={"steering": steering})
    return cfg


def load_config(path: str | Path) -> ExperimentConfig:
    """Read, parse and validate an experiment YAML file.

    Relative paths inside the file (``reward_model``) are resolved against the file's folder.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(str(path), [ConfigIssue(path="<file>", value=str(path),
                                                  expected=f"a readable YAML file ({exc.strerror})")]) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "<file>"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(str(path), [ConfigIssue(path=where, value=None,
                                                  expected=f"valid YAML ({problem})")]) from None
    return parse_config(data, source=str(path), base_dir=path.parent)


def dump_config(cfg: ExperimentConfig) -> str:
    """The resolved config (every default filled in) as YAML."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def json_schema() -> dict:
    """JSON schema of the experiment file, for editors (e.g. yaml-language-server)."""
    return ExperimentConfig.model_json_schema()
