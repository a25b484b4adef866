"""Frozen learned reward models: preferences → Bradley–Terry reward net → hash-checked artifact.

The setting of RL from human feedback: a reward model is fit on the training distribution only
(synthetic preferences between trajectory segments, labelled from the true return), frozen, and
every PPO seed of a study trains on its reward (``reward_model:`` in an experiment config).

- :mod:`reward_models.config` — the recipe (:class:`RewardModelConfig`), one YAML per model;
- :mod:`reward_models.data` — segments from a policy mix, the Bradley–Terry labeller, the dataset;
- :mod:`reward_models.nets` — MLP / small-CNN reward nets over (obs, action, next obs), per-env views;
- :mod:`reward_models.training` — Bradley–Terry cross-entropy, ensembles, early stopping, normalisation;
- :mod:`reward_models.evaluation` — preference accuracy, correlations, held-out cue preference;
- :mod:`reward_models.artifact` — safetensors weights + JSON card, loading refuses a sha256 mismatch;
- :mod:`reward_models.zoo` — the shipped models and ``python -m reward_models.zoo.build``.
"""

from reward_models.artifact import LoadedRewardModel, load_reward_model, save_reward_model
from reward_models.build import build_reward_model
from reward_models.config import RewardModelConfig, load_rm_config
from reward_models.nets import RewardModel
from rlbasins.core.reward_card import read_card

__all__ = ["LoadedRewardModel", "RewardModel", "RewardModelConfig", "build_reward_model", "load_reward_model",
           "load_rm_config", "read_card", "save_reward_model"]
