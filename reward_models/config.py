"""Hyper-parameters of one reward model: environment, preference data, network, training.

One :class:`RewardModelConfig` describes a reward model completely; with its ``seed`` it
determines the dataset and the weights bit for bit on CPU. It is written as YAML
(``reward_models/zoo/*.yaml``) and copied onto the model's card.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, model_validator

from rlbasins.core.config import ConfigError, ConfigIssue

Input = Literal["obs", "action", "next_obs"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PreferenceDataConfig(_Strict):
    """Segments from the training distribution and their synthetic Bradley–Terry labels."""

    num_envs: int = Field(384, ge=8, description="Environments stepped together; each follows one policy of the "
                          "mix (round-robin), and envs, not pairs, are split into train / validation / test.")
    steps: int = Field(48, gt=0, description="Steps per environment (episodes restart automatically).")
    epsilons: list[float] = Field(
        [1.0, 0.5, 0.2, 0.0], min_length=1,
        description="The policy mix: ε-greedy experts (GridCore.strategy_actions; half follow each strategy "
        "where the two differ in training). ε = 1 is the random policy, "
        "ε = 0 the expert, values between stand in for partially trained policies.")
    segment_length: int = Field(8, gt=0, description="Transitions per segment (may span episode boundaries).")
    pairs: int = Field(12000, gt=0, description="Labelled segment pairs in all three splits together.")
    val_fraction: float = Field(0.1, gt=0, lt=0.5, description="Share of envs whose pairs validate (early stopping).")
    test_fraction: float = Field(0.2, gt=0, lt=0.5, description="Share of envs whose pairs are held out for metrics.")
    temperature: float = Field(0.25, ge=0, description="Labeller: P[σ¹ ≻ σ²] = sigmoid((R¹ − R²) / temperature), "
                               "labels sampled from it; 0: deterministic (ties labelled ½).")
    label_noise: float = Field(0.1, ge=0, lt=1, description="Share of labels replaced by a fair coin.")

    @model_validator(mode="after")
    def _checks(self) -> PreferenceDataConfig:
        if any(not 0 <= e <= 1 for e in self.epsilons):
            raise ValueError(f"epsilons must lie in [0, 1], got {self.epsilons}")
        if self.segment_length > self.steps:
            raise ValueError(f"segment_length ({self.segment_length}) must be at most steps ({self.steps})")
        return self


class RewardNetConfig(_Strict):
    """r̂(s, a, s') → scalar: an MLP over the flattened planes, or a small CNN."""

    arch: Literal["mlp", "cnn"] = "cnn"
    inputs: list[Input] = Field(["obs", "next_obs"], min_length=1,
                                description="What the net sees; at least one of obs and next_obs.")
    hidden_sizes: list[PositiveInt] = Field([32], min_length=1, description="Widths of the ReLU MLP (head).")
    channels: PositiveInt = Field(8, description="cnn: channels of its two 3×3 conv layers.")
    ensemble: int = Field(1, ge=1, le=16, description="Members, each from its own init; the reward is their mean.")

    @model_validator(mode="after")
    def _checks(self) -> RewardNetConfig:
        if len(set(self.inputs)) != len(self.inputs) or not {"obs", "next_obs"} & set(self.inputs):
            raise ValueError(f"inputs must be distinct and include obs or next_obs, got {self.inputs}")
        return self


class RMTrainingConfig(_Strict):
    """Adam on the Bradley–Terry cross-entropy, early stopping on the validation pairs."""

    learning_rate: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-5, ge=0)
    batch_size: int = Field(128, gt=0, description="Pairs per minibatch.")
    max_epochs: int = Field(20, gt=0)
    patience: int = Field(3, gt=0, description="Stop after this many epochs without a better validation loss.")


class RewardModelConfig(_Strict):
    """The complete recipe of one reward model."""

    env_id: str = Field(description="A gridworld id of envs.GRID_ENVS, e.g. rlbasins/CueConflict-v0.")
    env_kwargs: dict[str, Any] = Field(default_factory=dict, description="Core kwargs (size, informative, ...).")
    view: Literal["full", "overseer"] | None = Field(
        None, description="What the net sees of an observation; null: the env's default (overseer for envs with "
        "an overseer_view, e.g. TaskOrProxy; full otherwise).")
    seed: int = Field(0, ge=0, description="Seeds data collection, labels, init and minibatch order.")
    data: PreferenceDataConfig = PreferenceDataConfig()
    net: RewardNetConfig = RewardNetConfig()
    training: RMTrainingConfig = RMTrainingConfig()

    @model_validator(mode="after")
    def _checks(self) -> RewardModelConfig:
        import envs

        if self.env_id not in envs.GRID_ENVS:
            raise ValueError(f"env_id must be one of {', '.join(envs.GRID_ENVS)}, got {self.env_id!r}")
        if self.view == "overseer" and not hasattr(envs.GRID_ENVS[self.env_id], "overseer_view"):
            raise ValueError(f"view 'overseer' needs an env with an overseer_view; {self.env_id} has none")
        return self

    @property
    def resolved_view(self) -> str:
        import envs

        if self.view is not None:
            return self.view
        return "overseer" if hasattr(envs.GRID_ENVS[self.env_id], "overseer_view") else "full"


def load_rm_config(path: Path | str) -> RewardModelConfig:
    """Read a reward-model recipe from YAML; every bad field is named in a :class:`ConfigError`."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(str(path), [ConfigIssue(path="<file>", value=str(path),
                                                  expected=f"a readable YAML file ({exc.strerror})")]) from None
    try:
        return RewardModelConfig.model_validate(data)
    except ValidationError as exc:
        issues = [ConfigIssue(path=".".join(map(str, e["loc"])) or "<top level>", value=e.get("input"),
                              expected=e["msg"]) for e in exc.errors()]
        raise ConfigError(str(path), issues) from None
