"""TensorBoard logs read back with tbparse: per-seed runs, the aggregate, hparams, custom scalars, images."""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from tbparse import SummaryReader
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

import envs
from envs.suites import get_suite
from reward_models.zoo.build import ZOO_DIR
from rlbasins.core.checkpoints import load_policy
from rlbasins.core.config import ExperimentConfig, parse_config
from rlbasins.core.heldout import evaluation_sample, heldout_observations
from rlbasins.core.logs import (
    AGGREGATE_SUFFIXES,
    BEHAVIOR_IMAGE_TAG,
    EPISODE_LENGTH_TAG,
    HPARAMS_SUFFIX,
    RETURN_TAG,
    TRUE_RETURN_TAG,
    SeedScalarLogger,
    divergence_tag,
    read_scalars,
    share_tag,
)
from rlbasins.core.store import RunDir
from rlbasins.train import train_experiment
from tests.conftest import tiny_config, tiny_cueconflict_config

STRATEGIES = ("colour", "shape")
HELDOUT_TAGS = [share_tag(label) for label in (*STRATEGIES, "neither")] + [divergence_tag(s) for s in STRATEGIES]
TRAINING_TAGS = [RETURN_TAG, TRUE_RETURN_TAG, EPISODE_LENGTH_TAG, "train/approx_kl", "train/value_loss"]
HPARAM_NAMES = {"seed", "seed_init", "seed_env", "seed_action", "seed_minibatch", "env_id", "engine", "learning_rate",
                "hidden_sizes", "n_epochs", "total_timesteps", "reward_model"}


def _train(root: Path, config: dict) -> tuple[RunDir, ExperimentConfig]:
    cfg = parse_config(config)
    return train_experiment(cfg, root / "runs", show_progress=False), cfg


@pytest.fixture(scope="module")
def batched(tmp_path_factory) -> tuple[RunDir, ExperimentConfig]:
    """5 CueConflict seeds on the shipped learned reward, batched engine, 6144 steps, checkpoints every 2048."""
    config = tiny_cueconflict_config()
    config["ppo"]["total_timesteps"], config["checkpoints"]["every"] = 6144, 2048
    config["reward_model"] = str(ZOO_DIR / "cue_conflict.json")
    return _train(tmp_path_factory.mktemp("tb_batched"), config)


@pytest.fixture(scope="module")
def sb3(tmp_path_factory) -> tuple[RunDir, ExperimentConfig]:
    """2 CueConflict seeds on the env's reward, SB3 engine, checkpoints at 0, 512, 1024."""
    return _train(tmp_path_factory.mktemp("tb_sb3"), tiny_config(
        name="cue_sb3", engine="sb3", env={"id": "rlbasins/CueConflict-v0", "num_envs": 2},
        ppo={"total_timesteps": 1024, "n_steps": 64, "batch_size": 64, "n_epochs": 2}, checkpoints={"every": 512}))


def _scalars(run: RunDir) -> pd.DataFrame:
    """Every scalar of the run's ``tb/``: columns step, tag, value, dir_name (seed_<k> or aggregate)."""
    return SummaryReader(str(run.tb_dir), extra_columns={"dir_name"}).scalars


def _images(run_dir: Path, tag: str) -> list:
    """The image events of ``tag`` in one run directory, file by file (tbparse decodes images only with
    TensorFlow; its raw events need nothing)."""
    readers = [SummaryReader(str(path)) for path in sorted(run_dir.glob("events.out.tfevents.*"))]
    return [event for reader in readers if tag in reader.get_raw_tags("images")
            for event in reader.get_raw_events("images", tag)]


def _hparams_content(run_dir: Path, tag: str) -> HParamsPluginData:
    """The hparams plugin data under ``tag`` in a seed run's (single) hparams event file."""
    (path,) = run_dir.glob(f"*{HPARAMS_SUFFIX}")
    return HParamsPluginData.FromString(SummaryReader(str(path)).get_raw_events("hparams", tag))


def _recomputed_heldout(run: RunDir, cfg: ExperimentConfig, k: int, step: int) -> dict[str, float]:
    """Seed ``k``'s held-out scalars at ``step`` from its checkpoint, one policy at a time: the greedy
    action's strategy, and the total variation to the nearest distribution on each strategy's moves
    (the seed's distribution restricted to those moves and renormalised)."""
    policy, _ = load_policy(run, k, step)
    states = evaluation_sample(cfg).states
    with torch.no_grad():
        probs = policy(heldout_observations(cfg, get_suite(cfg.env.id), states))[0].softmax(-1)  # [N, A]
    core = envs.GRID_ENVS[cfg.env.id](num_envs=len(states), **cfg.env.kwargs)
    greedy = probs.argmax(-1)
    rows = torch.arange(len(states))
    toward = {name: core.strategy_actions(states, i) for i, name in enumerate(STRATEGIES)}  # [N, A] bool
    expected = {share_tag(name): toward[name][rows, greedy].float().mean().item() for name in STRATEGIES}
    neither = ~toward["colour"][rows, greedy] & ~toward["shape"][rows, greedy]
    expected[share_tag("neither")] = neither.float().mean().item()
    for name, moves in toward.items():
        nearest = probs * moves / (probs * moves).sum(-1, keepdim=True)
        expected[divergence_tag(name)] = (0.5 * (probs - nearest).abs().sum(-1)).mean().item()
    return expected


def _final(scalars: pd.DataFrame, run_name: str, tag: str) -> tuple[int, float]:
    """(last step, value there) of one tag in one run."""
    rows = scalars[(scalars.dir_name == run_name) & (scalars.tag == tag)].sort_values("step")
    return int(rows.step.iloc[-1]), float(rows.value.iloc[-1])


# --------------------------------------------------------------------------- per-seed runs


@pytest.mark.parametrize("engine", ["batched", "sb3"])
def test_every_seed_logs_training_and_heldout_behavior_at_every_checkpoint(engine: str, request) -> None:
    run, cfg = request.getfixturevalue(engine)
    scalars = _scalars(run)
    expected_training = TRAINING_TAGS if cfg.reward_model else [t for t in TRAINING_TAGS if t != TRUE_RETURN_TAG]
    for k in range(cfg.seeds.count):
        seed = scalars[scalars.dir_name == f"seed_{k}"]
        assert set(expected_training) <= set(seed.tag)
        for tag in HELDOUT_TAGS:
            logged = seed[seed.tag == tag]
            assert logged.step.tolist() == cfg.checkpoint_steps(), (k, tag)
            assert logged.value.between(0, 1).all()
        shares = seed[seed.tag.str.startswith("heldout/share_")].groupby("step").value.sum()
        assert np.allclose(shares, 1.0, atol=1e-6)  # on CueConflict the strategies never share a first move


@pytest.mark.parametrize("engine", ["batched", "sb3"])
def test_heldout_scalars_are_the_checkpoints_behavior(engine: str, request) -> None:
    run, cfg = request.getfixturevalue(engine)
    scalars = _scalars(run)
    for k in range(cfg.seeds.count):
        for step in (0, cfg.checkpoint_steps()[-1]):
            expected = _recomputed_heldout(run, cfg, k, step)
            seed = scalars[(scalars.dir_name == f"seed_{k}") & (scalars.step == step)]
            logged = dict(zip(seed.tag, seed.value, strict=True))
            assert {tag: logged[tag] for tag in expected} == pytest.approx(expected, abs=1e-5), (k, step)


@pytest.mark.parametrize("engine", ["batched", "sb3"])
def test_every_checkpoint_has_an_image_of_heldout_behavior(engine: str, request) -> None:
    run, cfg = request.getfixturevalue(engine)
    for k in range(cfg.seeds.count):
        events = _images(run.tb_dir / f"seed_{k}", BEHAVIOR_IMAGE_TAG)
        assert [event.step for event in events] == cfg.checkpoint_steps()
        for event in events:
            image = np.asarray(Image.open(io.BytesIO(event.encoded_image_string)))
            assert image.shape[:2] == (event.height, event.width) and min(image.shape[:2]) >= 100
            assert len(np.unique(image.reshape(-1, image.shape[-1]), axis=0)) > 10  # drawn, not blank


# --------------------------------------------------------------------------- the aggregate run


def test_aggregate_run_has_mean_iqm_min_and_max_of_every_per_seed_tag(batched) -> None:
    run, cfg = batched
    scalars = _scalars(run)
    aggregate = scalars[scalars.dir_name == "aggregate"]
    for tag in [*TRAINING_TAGS, *HELDOUT_TAGS]:
        for suffix in ("", *AGGREGATE_SUFFIXES):
            assert tag + suffix in set(aggregate.tag), tag + suffix
    end = cfg.checkpoint_steps()[-1]
    for tag in HELDOUT_TAGS:
        per_seed = scalars[(scalars.tag == tag) & (scalars.step == end) & scalars.dir_name.str.startswith("seed_")]
        at_end = aggregate[aggregate.step == end].set_index("tag").value
        assert at_end[tag] == pytest.approx(per_seed.value.mean(), abs=1e-6)
        assert at_end[tag + "_min"] == pytest.approx(per_seed.value.min(), abs=1e-6)
        assert at_end[tag + "_max"] == pytest.approx(per_seed.value.max(), abs=1e-6)


def test_custom_scalars_layout_groups_every_tag_of_seeds_and_aggregate(batched) -> None:
    run, _ = batched
    tensors = SummaryReader(str(run.tb_dir), extra_columns={"dir_name"}).tensors
    (config,) = tensors[tensors.tag == "custom_scalars__config__"].itertuples()
    assert config.dir_name == "aggregate"
    layout = layout_pb2.Layout.FromString(config.value)
    charts = {category.title: {chart.title: list(chart.multiline.tag) for chart in category.chart}
              for category in layout.category}
    assert list(charts) == ["Training", "Held-out behaviour", "Divergence to strategies"]
    assert len(charts["Held-out behaviour"]) == 3 and len(charts["Divergence to strategies"]) == 2
    scalars = _scalars(run)
    covered = set()
    for category in charts.values():
        for regexes in category.values():
            matched = {(d, t) for d, t in scalars[["dir_name", "tag"]].drop_duplicates().itertuples(index=False)
                       if any(re.match(r, t) for r in regexes)}
            assert {d for d, _ in matched} == {*(f"seed_{k}" for k in range(5)), "aggregate"}, regexes
            covered |= {t for _, t in matched}
    assert {*TRAINING_TAGS[:3], *HELDOUT_TAGS} <= covered
    assert {tag + suffix for tag in HELDOUT_TAGS for suffix in AGGREGATE_SUFFIXES} <= covered


# --------------------------------------------------------------------------- hparams


def test_hparams_has_one_row_per_seed_with_its_seeds_and_config(batched) -> None:
    run, cfg = batched
    manifest = run.manifest()
    table = SummaryReader(str(run.tb_dir), pivot=True, extra_columns={"dir_name"}).hparams.set_index("dir_name")
    assert sorted(table.index) == [f"seed_{k}" for k in range(cfg.seeds.count)]
    assert set(table.columns) == HPARAM_NAMES
    for k in range(cfg.seeds.count):
        row = table.loc[f"seed_{k}"]
        assert row.seed == k
        assert {f: row[f"seed_{f}"] for f in ("init", "env", "action", "minibatch")} == \
            manifest["seeds"][str(k)]["factor_seeds"]
        assert (row.env_id, row.engine, row.hidden_sizes, row.n_epochs, row.total_timesteps) == \
            ("rlbasins/CueConflict-v0", "batched", "32x32", 4, 6144)
        assert row.learning_rate == pytest.approx(1e-3)
        assert row.reward_model == manifest["reward_model_sha256"][:12]


def test_hparams_metrics_are_each_seeds_last_logged_values(batched) -> None:
    run, cfg = batched
    scalars = _scalars(run)
    end = cfg.checkpoint_steps()[-1]
    for k in range(cfg.seeds.count):
        experiment = _hparams_content(run.tb_dir / f"seed_{k}", "_hparams_/experiment").experiment
        metrics = [info.name.tag for info in experiment.metric_infos]
        assert metrics == [RETURN_TAG, TRUE_RETURN_TAG, *HELDOUT_TAGS[:3]]
        assert {info.name for info in experiment.hparam_infos} == HPARAM_NAMES
        final = {tag: _final(scalars, f"seed_{k}", tag) for tag in metrics}
        assert {step for step, _ in final.values()} == {end}  # what the plugin shows: the value at the end
        expected = _recomputed_heldout(run, cfg, k, end)
        assert {tag: value for tag, (_, value) in final.items() if tag.startswith("heldout/")} == \
            pytest.approx({tag: expected[tag] for tag in metrics[2:]}, abs=1e-5)


def test_resuming_a_finished_run_leaves_one_hparams_row_per_seed(batched, tmp_path: Path) -> None:
    run, cfg = batched
    copy = RunDir(tmp_path / "runs" / run.root.name)
    shutil.copytree(run.root, copy.root)
    before = SummaryReader(str(copy.tb_dir), pivot=True, extra_columns={"dir_name"}).hparams
    train_experiment(cfg, tmp_path / "runs", resume=True, show_progress=False)  # rewrites the summaries
    after = SummaryReader(str(copy.tb_dir), pivot=True, extra_columns={"dir_name"}).hparams
    assert len(after) == cfg.seeds.count
    pd.testing.assert_frame_equal(before, after)
    for k in range(cfg.seeds.count):
        assert len(list((copy.tb_dir / f"seed_{k}").glob(f"*{HPARAMS_SUFFIX}"))) == 1
    assert not list(copy.root.glob(".hparams-*"))  # no scratch left behind
    tensors = SummaryReader(str(copy.tb_dir)).tensors
    assert (tensors.tag == "custom_scalars__config__").sum() == 1


def test_sb3_seeds_have_hparams_too(sb3) -> None:
    run, cfg = sb3
    table = SummaryReader(str(run.tb_dir), pivot=True, extra_columns={"dir_name"}).hparams.set_index("dir_name")
    assert sorted(table.index) == ["seed_0", "seed_1"]
    assert set(table.engine) == {"sb3"} and set(table.reward_model) == {"true reward"}


# --------------------------------------------------------------------------- envs without strategies


def test_cartpole_logs_no_heldout_behavior_and_a_training_only_layout(tmp_path: Path) -> None:
    run, cfg = _train(tmp_path, tiny_config(engine="batched"))
    reader = SummaryReader(str(run.tb_dir), extra_columns={"dir_name"})
    tags = set(reader.scalars.tag)
    assert RETURN_TAG in tags and not any(tag.startswith("heldout/") for tag in tags)
    assert not any(_images(run.tb_dir / f"seed_{k}", BEHAVIOR_IMAGE_TAG) for k in range(cfg.seeds.count))
    (config,) = reader.tensors[reader.tensors.tag == "custom_scalars__config__"].value
    assert [category.title for category in layout_pb2.Layout.FromString(config).category] == ["Training"]
    hparams = SummaryReader(str(run.tb_dir), pivot=True, extra_columns={"dir_name"}).hparams
    assert len(hparams) == cfg.seeds.count


def test_the_scalar_logger_writes_finite_values_per_seed_and_drops_the_ghost_column(tmp_path: Path) -> None:
    logger = SeedScalarLogger([tmp_path / "seed_0", tmp_path / "seed_1"])
    for step in (1, 2):
        logger.log(step, {"a": torch.tensor([step, 10.0 * step, 99.0]), "b": torch.tensor([float("nan"), 1.0, 99.0])})
    logger.close()
    first, second = read_scalars(tmp_path / "seed_0"), read_scalars(tmp_path / "seed_1")
    assert set(first) == {"a"} and set(second) == {"a", "b"}  # a NaN (no episode ended) is not written
    assert first["a"][0].tolist() == [1, 2] and first["a"][1].tolist() == [1.0, 2.0]
    assert second["a"][1].tolist() == [10.0, 20.0] and second["b"][1].tolist() == [1.0, 1.0]
    assert not (tmp_path / "seed_2").exists()


@pytest.mark.parametrize("fixture", ["batched", "sb3"])
def test_read_scalars_reads_what_tbparse_reads(fixture: str, request) -> None:
    """rlbasins' own event-file reader (no pure-Python CRC) against tbparse, on both engines' logs."""
    run, cfg = request.getfixturevalue(fixture)
    frame = _scalars(run)
    for k in range(cfg.seeds.count):
        ours = read_scalars(run.tb_dir / f"seed_{k}")
        theirs = frame[frame.dir_name == f"seed_{k}"]
        assert set(ours) == set(theirs.tag) and len(ours) >= 5
        for tag, (steps, values) in ours.items():
            rows = theirs[theirs.tag == tag].sort_values("step")
            assert steps.tolist() == rows.step.tolist()
            np.testing.assert_array_equal(values, rows.value.to_numpy(dtype=np.float64))


def test_read_scalars_takes_tensor_scalars_and_stops_at_a_cut_off_record(tmp_path: Path) -> None:
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.util.tensor_util import make_tensor_proto
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(tmp_path)
    for step in range(5):
        writer.add_scalar("old", 0.5 * step, step)
        writer.add_scalar("new", 2.0 * step, step, new_style=True)   # a scalar tensor (TensorBoard's newer form)
        if step:                                  # TensorFlow's writers name the plugin on a tag's first value only
            bare = Summary.Value(tag="new", tensor=make_tensor_proto(np.float32(-step)))
            writer._get_file_writer().add_summary(Summary(value=[bare]), 10 + step)
    writer.close()
    read = read_scalars(tmp_path)
    assert read["old"][1].tolist() == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert read["new"][0].tolist() == [0, 1, 2, 3, 4, 11, 12, 13, 14]
    assert read["new"][1].tolist() == [0, 2, 4, 6, 8, -1, -2, -3, -4]
    (path,) = tmp_path.glob("events.out.tfevents.*")
    path.write_bytes(path.read_bytes()[:-3])                               # a writer killed mid-record
    cut = read_scalars(tmp_path)
    assert cut["new"][0].tolist() == [0, 1, 2, 3, 4, 11, 12, 13] and cut["old"][0].tolist() == [0, 1, 2, 3, 4]


def test_the_scalar_logger_reraises_a_writing_error_in_the_training_thread(tmp_path: Path) -> None:
    logger = SeedScalarLogger([tmp_path / "seed_0"])

    def disk_full():
        raise OSError("No space left on device")

    logger.writers[0]._get_file_writer = disk_full  # the writing thread fails on the first event
    logger.log(1, {"a": torch.ones(1)})
    with pytest.raises(OSError, match="No space left"):
        logger.close()
