"""Config validation: every bad field is named, the exit code is 2 and nothing is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from rlbasins.cli import app
from rlbasins.core.config import (
    ConfigError,
    ExperimentConfig,
    load_config,
    parse_config,
    planted_assignment,
    planted_counts,
)
from tests.conftest import tiny_config, write_yaml

runner = CliRunner()

MALFORMED = {
    "unknown top-level key": (tiny_config(polcy={"hidden_sizes": [8]}), "polcy", "did you mean 'policy'"),
    "unknown nested key": (tiny_config(ppo__n_step=64), "ppo.n_step", "did you mean 'n_steps'"),
    "wrong type": (tiny_config(seeds__count="eight"), "seeds.count", "integer"),
    "negative count": (tiny_config(seeds__count=-3), "seeds.count", "greater than 0"),
    "batch larger than rollout": (tiny_config(ppo__batch_size=1024), "ppo.batch_size", "rollout size"),
    "unknown env id": (tiny_config(env__id="CartPol-v1"), "env.id", "CartPole-v1"),
    "missing reward model file": (tiny_config(reward_model="nope.safetensors"), "reward_model", "existing"),
    "unknown device": (tiny_config(device="tpu"), "device", "'auto', 'cpu' or 'cuda'"),
    "unknown seed factor": (tiny_config(seeds__vary=["init", "colour"]), "seeds.vary[1]", "minibatch"),
    "missing env": ({k: v for k, v in tiny_config().items() if k != "env"}, "env", "required"),
    "gamma above 1": (tiny_config(ppo__gamma=1.5), "ppo.gamma", "less than or equal to 1"),
    "negative learning rate": (tiny_config(ppo__learning_rate=-1e-3), "ppo.learning_rate", "greater than 0"),
    "zero hidden width": (tiny_config(policy={"hidden_sizes": [64, 0]}), "policy.hidden_sizes[1]", "greater than 0"),
    "unknown activation": (tiny_config(policy={"activation": "sigmoid"}), "policy.activation", "'tanh' or 'relu'"),
    "name escaping the runs dir": (tiny_config(name="../escape"), "name", "pattern"),
    "unknown schedule": (tiny_config(ppo__lr_schedule="cosine"), "ppo.lr_schedule", "'constant' or 'linear'"),
    "zero envs": (tiny_config(env__num_envs=0), "env.num_envs", "greater than 0"),
    "zero checkpoint interval": (tiny_config(checkpoints__every=0), "checkpoints.every", "greater than 0"),
    "negative extra checkpoint": (tiny_config(checkpoints__also_at=[-5]), "checkpoints.also_at[0]", "greater than"),
    "kwargs the env rejects": (tiny_config(env__kwargs={"wings": 2}), "env.kwargs", "wings"),
    "unknown engine": (tiny_config(engine="jax"), "engine", "'sb3' or 'batched'"),
    "top level not a mapping": ([1, 2, 3], "<top level>", "mapping"),
    "env without held-out suite": (tiny_config(env__id="MountainCar-v0"), "env.id", "held-out suite"),
    "strategy distance without strategies": (tiny_config(analysis__basins={"distance": "strategies"}),
                                             "analysis.basins.distance", "CartPole-v1 names no strategies"),
    "unknown behavioural distance": (tiny_config(analysis__basins={"distance": "weights"}),
                                     "analysis.basins.distance", "'actions' or 'strategies'"),
}


@pytest.mark.parametrize("case", list(MALFORMED), ids=list(MALFORMED))
def test_malformed_config_names_field_exits_2_and_writes_nothing(case: str, tmp_path: Path) -> None:
    data, field, expected_hint = MALFORMED[case]
    config = write_yaml(tmp_path / "bad.yaml", data)
    runs = tmp_path / "runs"
    result = runner.invoke(app, ["run", str(config), "--runs-dir", str(runs), "--no-progress"])
    assert result.exit_code == 2, result.output
    assert f"{field}:" in result.output
    assert expected_hint in result.output
    assert not runs.exists()


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    data = tiny_config(seeds__count=-1, ppo__gamma=2.0, device="tpu")
    with pytest.raises(ConfigError) as info:
        load_config(write_yaml(tmp_path / "bad.yaml", data))
    assert {issue.path for issue in info.value.issues} == {"seeds.count", "ppo.gamma", "device"}


def test_duplicate_yaml_key_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("name: a\nseed: 1\nseed: 2\nenv: {id: CartPole-v1}\n")
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert "duplicate key 'seed'" in result.output and "line 3" in result.output


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: a\nenv: {id: CartPole-v1\n")
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2 and "line" in result.output


def test_missing_config_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(tmp_path / "absent.yaml")])
    assert result.exit_code == 2 and "absent.yaml" in result.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_requested_without_cuda(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(write_yaml(tmp_path / "c.yaml", tiny_config(device="cuda")))])
    assert result.exit_code == 2 and "device:" in result.output and "CUDA is not available" in result.output


def test_shipped_configs_validate() -> None:
    for path in sorted(Path("configs").glob("*.yaml")):
        result = runner.invoke(app, ["validate", str(path)])
        assert result.exit_code == 0, f"{path}: {result.output}"


def test_schema_is_json_schema_of_the_config() -> None:
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.output)
    assert set(schema["required"]) == {"name", "env"}
    assert {"ppo", "seeds", "checkpoints", "device"} <= set(schema["properties"])
    assert "Planted basins" in schema["$defs"]["EnvConfig"]["properties"]["planted"]["description"]


COLOUR = {"label": "colour", "kwargs": {"informative": "colour"}}
SHAPE = {"label": "shape", "kwargs": {"informative": "shape"}}


def planted_config(groups: list[dict], **overrides) -> dict:
    """A tiny CueConflict experiment whose seeds train round-robin on ``groups``."""
    return tiny_config(env={"id": "rlbasins/CueConflict-v0", "num_envs": 2, "kwargs": {"size": 5},
                            "planted": groups}, **overrides)


BAD_PLANTED = {
    "one group": (planted_config([COLOUR]), "env.planted", "at least 2 groups"),
    "duplicate labels": (planted_config([COLOUR, {**SHAPE, "label": "colour"}]), "env.planted[1].label",
                         "a label no other group has"),
    "kwargs the env rejects": (planted_config([COLOUR, {"label": "s", "kwargs": {"informative": "form"}}]),
                               "env.planted[1].kwargs", "informative must be one of 'both', 'colour', 'shape'"),
    "fewer seeds than groups": (planted_config([COLOUR, SHAPE, {"label": "both"}], seeds__count=2), "seeds.count",
                                "at least the number of env.planted groups (3)"),
    "misspelt group key": (planted_config([COLOUR, {"label": "shape", "kwarg": {}}]), "env.planted[1].kwarg",
                           "did you mean 'kwargs'? (allowed: label, kwargs, share)"),
    "empty label": (planted_config([COLOUR, {**SHAPE, "label": ""}]), "env.planted[1].label", "at least 1 character"),
    "a share in one group only": (planted_config([{**COLOUR, "share": 0.5}, SHAPE]), "env.planted[1].share",
                                  "a share in every group"),
    "shares that do not sum to 1": (planted_config([{**COLOUR, "share": 0.5}, {**SHAPE, "share": 0.4}]),
                                    "env.planted", "shares that sum to 1 (these sum to 0.9)"),
    "a share too small for the seeds": (planted_config([{**COLOUR, "share": 0.9}, {**SHAPE, "share": 0.1}],
                                                       seeds__count=4), "env.planted[1].share",
                                        "share × seeds.count = 0.40 rounds to 0"),
    "a share above 1": (planted_config([{**COLOUR, "share": 1.5}, {**SHAPE, "share": -0.5}]),
                        "env.planted[0].share", "less than or equal to 1"),
}


@pytest.mark.parametrize("case", list(BAD_PLANTED), ids=list(BAD_PLANTED))
def test_bad_planted_groups_are_named_and_exit_2(case: str, tmp_path: Path) -> None:
    data, field, expected_hint = BAD_PLANTED[case]
    result = runner.invoke(app, ["validate", str(write_yaml(tmp_path / "bad.yaml", data))])
    assert result.exit_code == 2, result.output
    assert f"{field}:" in result.output and expected_hint in result.output, result.output


def test_planted_groups_assign_env_kwargs_round_robin() -> None:
    cfg = parse_config(planted_config([COLOUR, SHAPE, {"label": "big", "kwargs": {"size": 7}}], seeds__count=5))
    assert [cfg.planted_label(k) for k in range(5)] == ["colour", "shape", "big", "colour", "shape"]
    assert cfg.env_kwargs_for(0) == {"size": 5, "informative": "colour"}
    assert cfg.env_kwargs_for(2) == {"size": 7}  # a group's kwargs override env.kwargs
    assert cfg.env_kwargs_for(4) == {"size": 5, "informative": "shape"}
    assert cfg.env.kwargs == {"size": 5}  # evaluation keeps the standard env
    plain = parse_config(tiny_config())
    assert plain.env_kwargs_for(1) == plain.env.kwargs and plain.planted_label(1) is None
    assert parse_config(planted_config([COLOUR, SHAPE])).hash() != parse_config(planted_config([SHAPE, COLOUR])).hash()


@settings(max_examples=200, deadline=None)
@given(weights=st.lists(st.integers(1, 20), min_size=2, max_size=5), count=st.integers(2, 300))
def test_planted_shares_assign_seeds_in_proportion_interleaved(weights: list[int], count: int) -> None:
    shares = tuple(w / sum(weights) for w in weights)
    groups = planted_assignment(shares, count)
    assert len(groups) == count and planted_assignment(shares, count) == groups  # deterministic
    counts = [groups.count(g) for g in range(len(shares))]
    assert counts == planted_counts(shares, count) and sum(counts) == count
    assert all(abs(n - share * count) < 1 for n, share in zip(counts, shares, strict=True))  # largest remainder
    bound = 0.5 + 1e-9 if len(shares) == 2 else 1.5  # measured worst: 0.5 (2 groups), 1.03 (5 groups)
    for prefix in range(1, count + 1):  # every prefix keeps each group's share within about a seed
        seen = [groups[:prefix].count(g) for g in range(len(shares))]
        assert all(abs(n - c * prefix / count) <= bound for n, c in zip(seen, counts, strict=True))


def test_planted_shares_place_a_rare_group_and_keep_round_robin_without_shares() -> None:
    rare = parse_config(planted_config([{**COLOUR, "share": 46 / 48}, {**SHAPE, "share": 2 / 48}], seeds__count=48))
    assert [k for k in range(48) if rare.planted_label(k) == "shape"] == [12, 36]
    assert rare.env_kwargs_for(12) == {"size": 5, "informative": "shape"}
    halves = parse_config(planted_config([{**COLOUR, "share": 0.5}, {**SHAPE, "share": 0.5}], seeds__count=6))
    plain = parse_config(planted_config([COLOUR, SHAPE], seeds__count=6))
    assert [halves.planted_label(k) for k in range(6)] == [plain.planted_label(k) for k in range(6)]


def test_hash_ignores_executor_but_not_science() -> None:
    base = parse_config(tiny_config())
    assert parse_config(tiny_config(executor={"max_workers": 1})).hash() == base.hash()
    assert parse_config(tiny_config(ppo__gamma=0.95)).hash() != base.hash()


def test_a_new_optional_field_leaves_existing_hashes_alone() -> None:
    """Runs trained before a feature was added keep their hash (resume and comparison still work)."""
    class WithNewFeature(ExperimentConfig):
        new_feature: dict | None = None

    base = parse_config(tiny_config())
    assert WithNewFeature.model_validate(base.model_dump()).hash() == base.hash()
    assert WithNewFeature.model_validate({**base.model_dump(), "new_feature": {}}).hash() != base.hash()


HASHES_BEFORE_THE_RENAME = {
    # parse_config(tiny_config(...)).hash() at commit 3d29ead, when analysis.barriers was analysis.connectivity
    (): "c0ef7a9453f87a9b4b726516b5a528fc063253262fa348deb49776bb26be7533",
    (("points", 7),): "085ec6b6cac1b764a4b8a26290426a7c3c848b7a39e2cf6386f84d0a33e8cd01",
}


@pytest.mark.parametrize("barriers", list(HASHES_BEFORE_THE_RENAME))
def test_renamed_analysis_keys_keep_the_hashes_of_earlier_runs(barriers) -> None:
    """Runs made before connectivity → barriers and trajectory → training_length still resume (same hash)."""
    cfg = parse_config(tiny_config(**{f"analysis__barriers__{k}": v for k, v in barriers}))
    assert cfg.hash() == HASHES_BEFORE_THE_RENAME[barriers]


def test_old_analysis_keys_load_with_a_warning_and_both_at_once_is_an_error(tmp_path: Path) -> None:
    new = parse_config(tiny_config(analysis__barriers__points=7, analysis__training_length__enabled=False))
    old_data = tiny_config()
    old_data["analysis"]["connectivity"] = old_data["analysis"].pop("barriers", {}) | {"points": 7}
    old_data["analysis"]["trajectory"] = {"enabled": False}
    with pytest.warns(FutureWarning, match="analysis.connectivity is deprecated: call it analysis.barriers"):
        old = parse_config(old_data)
    assert old == new and old.hash() == new.hash()
    result = CliRunner().invoke(app, ["validate", str(write_yaml(tmp_path / "old.yaml", old_data))])
    assert result.exit_code == 0 and "warning: analysis.connectivity is deprecated" in result.output, result.output
    both = tiny_config(analysis__barriers__points=7)
    both["analysis"]["connectivity"] = {"points": 5}
    result = CliRunner().invoke(app, ["run", str(write_yaml(tmp_path / "both.yaml", both)),
                                      "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2 and "analysis" in result.output and "keep analysis.barriers only" in result.output
    assert not (tmp_path / "runs").exists()


def test_checkpoint_steps_snap_to_rollout_boundaries() -> None:
    cfg = parse_config(tiny_config(ppo__total_timesteps=2000, checkpoints={"every": 500, "also_at": [100]}))
    # rollout = 64 steps × 2 envs = 128; training ends at the first boundary ≥ 2000
    assert cfg.checkpoint_steps() == [0, 128, 512, 1024, 1536, 2048]


_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=8), st.lists(st.integers(-2, 100), max_size=3))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(section=st.sampled_from(["ppo", "seeds", "env", "policy", "checkpoints", "analysis", None]),
       key=st.sampled_from(["count", "n_steps", "gamma", "id", "num_envs", "hidden_sizes", "every",
                            "batch_size", "vary", "enabled", "bogus"]),
       value=_LEAVES)
def test_any_mutation_is_valid_or_a_named_config_error(section, key, value) -> None:
    data = tiny_config()
    (data.setdefault(section, {}) if section else data)[key] = value
    try:
        cfg = parse_config(data)
    except ConfigError as exc:
        assert exc.issues and all(issue.path for issue in exc.issues)
    else:
        assert isinstance(cfg, ExperimentConfig)
