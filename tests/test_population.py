"""Populations with a DvD diversity bonus (rlbasins.train.population): the bonus's kernel and gradients, and
training with it on the batched engine."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlbasins.core.config import ConfigError, parse_config
from rlbasins.core.policy import ActorCritic, StackedPolicy
from rlbasins.core.store import RunDir
from rlbasins.train import train_experiment
from rlbasins.train.population import PopulationBonus
from tests.conftest import tiny_config


def population_config(name: str = "pop", **population) -> dict:
    data = tiny_config(name=name, env={"id": "rlbasins/TwoDoors-v0", "kwargs": {"size": 4, "probe": "adjacent"},
                                       "num_envs": 4},
                       engine="batched", policy={"hidden_sizes": [8, 8]},
                       ppo={"total_timesteps": 2048, "n_steps": 64, "batch_size": 128, "n_epochs": 2},
                       seeds={"count": 4}, checkpoints={"every": 1024})
    if population:
        data["population"] = {"size": 2, **population}
    return data


def _bonus(size: int, indices: list[int]) -> tuple[PopulationBonus, gym.spaces.Box]:
    cfg = parse_config(population_config(size=size, bonus=1.0))
    space = gym.spaces.Box(0.0, 1.0, (6,), np.float32)
    return PopulationBonus(cfg, indices, space, torch.zeros(3, 6)), space


def _policies(weights_from: list[int]) -> StackedPolicy:
    modules = []
    for seed in weights_from:
        torch.manual_seed(seed)
        modules.append(ActorCritic(6, 3, [8]))
    return StackedPolicy(modules, torch.device("cpu"))


def test_population_config_is_hashed_and_validated() -> None:
    assert parse_config(population_config(bonus=0.1)).hash() != parse_config(population_config()).hash()
    with pytest.raises(ConfigError) as info:
        parse_config({**population_config(size=3), "engine": "sb3"})
    assert {issue.path for issue in info.value.issues} == {"population.size", "population"}


def test_identical_members_have_a_far_lower_log_det_than_different_ones() -> None:
    bonus, _ = _bonus(2, [0, 1, 2, 3])
    frozen = torch.zeros(4, dtype=torch.bool)
    same, different = _policies([5, 5, 6, 6]), _policies([5, 7, 6, 8])
    with torch.no_grad():
        assert (bonus.log_dets(same, frozen) < -10).all()          # K singular: log det ≈ log(jitter)
        assert (bonus.log_dets(different, frozen) > bonus.log_dets(same, frozen) + 5).all()


def test_a_population_bonus_moves_its_own_members_only() -> None:
    bonus, _ = _bonus(2, [2, 0, 3, 1])               # slots in any order: populations by seed index {0, 1}, {2, 3}
    assert sorted(map(sorted, bonus.slots.tolist())) == [[0, 2], [1, 3]]
    policy = _policies([5, 7, 6, 8])
    log_dets = bonus.log_dets(policy, torch.zeros(4, dtype=torch.bool))
    population_of_seed_0 = int(np.flatnonzero([1 in row for row in bonus.slots.tolist()])[0])
    log_dets[population_of_seed_0].backward()
    moved = policy.params["actor.0.weight"].grad.flatten(1).abs().sum(1)
    assert moved[1] > 0 and moved[3] > 0 and moved[0] == 0 and moved[2] == 0


def test_incomplete_or_mixed_populations_are_refused() -> None:
    with pytest.raises(ValueError, match="populations train whole"):
        _bonus(2, [0, 1, 2])
    with pytest.raises(ValueError, match="not in a grid of settings"):
        _bonus(2, [0, 1, 0, 1])                      # two runs' seeds 0 and 1 in one lockstep batch


@pytest.mark.slow
def test_population_training_differs_from_iid_by_the_bonus_alone(tmp_path: Path) -> None:
    """bonus 0: every checkpoint is bit-identical to the independent seeds' (the bonus is the only difference);
    bonus 1: the members move apart on the noise inputs."""
    iid = train_experiment(parse_config(population_config("iid")), tmp_path, show_progress=False)
    zero = train_experiment(parse_config(population_config("zero", bonus=0.0)), tmp_path, show_progress=False)
    one = train_experiment(parse_config(population_config("one", bonus=1.0)), tmp_path, show_progress=False)
    for k in range(4):
        a, _ = iid.seed(k).load_policy(2048)
        b, _ = zero.seed(k).load_policy(2048)
        c, _ = one.seed(k).load_policy(2048)
        assert all(torch.equal(a[n], b[n]) for n in a)
        assert not all(torch.equal(a[n], c[n]) for n in a)
    from rlbasins.core.logs import read_scalars

    tags = read_scalars(RunDir(one.root).tb_dir / "seed_0")
    assert "train/population_log_det" in tags


def test_the_bonus_reads_noise_inputs_never_a_probe_state() -> None:
    """The population's objective sees training rollouts (as every seed's PPO does) and its noise inputs; the
    noise inputs are none of the held-out probe's observations (the analysis's and 4,096 more of the suite)."""
    from rlbasins.studies.diversity import off_probe, probe_observations

    cfg = parse_config(population_config(size=2))
    space = gym.make(cfg.env.id, **cfg.env.kwargs).observation_space
    bonus = PopulationBonus(cfg, [0, 1, 2, 3], space, torch.zeros(3, *space.shape))
    assert off_probe(bonus.inputs, probe_observations(cfg)).all()
    assert len(bonus.inputs) == cfg.population.noise_inputs
