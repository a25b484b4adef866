"""Interpolation barriers, basin clustering and the analysis pipeline, as specifications."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cdist
from typer.testing import CliRunner

from envs.suites import get_suite
from rlbasins.analysis import align, basins, connectivity
from rlbasins.analysis.behavior import load_policies, preference_test
from rlbasins.analysis.pipeline import analyze_run
from rlbasins.analysis.rollouts import _play_gym, play, stack_state_dicts
from rlbasins.cli import app
from rlbasins.config import parse_config
from rlbasins.policy import ActorCritic
from rlbasins.store import RunDir
from rlbasins.train import train_experiment
from rlbasins.train.batched import StackedPolicy
from tests.conftest import tiny_cueconflict_config

CUE = "rlbasins/CueConflict-v0"
OBS_DIM = 5 * 5 * 5


def _random_policy(seed: int, hidden=(16, 16), activation="tanh") -> ActorCritic:
    torch.manual_seed(seed)
    return ActorCritic(OBS_DIM, 4, list(hidden), activation).ortho_init_()


@pytest.fixture(scope="module")
def probe() -> connectivity.PathProbe:
    return connectivity.make_probe(_random_policy(0), CUE, {}, n_episodes=8, n_states=64, seed=3,
                                   suite=get_suite(CUE))


# --------------------------------------------------------------------------- barriers


def test_barrier_is_the_largest_gap_below_the_line() -> None:
    weights = np.linspace(0, 1, 5)
    assert connectivity.barrier(np.array([1.0, 0.75, 0.5, 0.25, 0.0]), weights, higher_is_better=True) == 0
    dip = np.array([1.0, 0.5, 0.2, 0.5, 1.0])
    assert connectivity.barrier(dip, weights, higher_is_better=True) == pytest.approx(0.8)
    assert connectivity.barrier(dip, weights, higher_is_better=False) == 0  # a valley in a loss is no barrier
    assert connectivity.barrier(-dip, weights, higher_is_better=False) == pytest.approx(0.8)


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 10_000), activation=st.sampled_from(["tanh", "relu"]))
def test_interpolating_a_policy_with_itself_has_zero_barrier(probe, seed: int, activation: str) -> None:
    policy = _random_policy(seed, activation=activation).state_dict()
    result = connectivity.barrier_matrix([policy, policy], probe, [(0, 1)], points=5)
    assert set(result) == {"train_return", "loss", "heldout_decided"}
    assert all(values[0] == 0 for values in result.values())


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_a_permuted_copy_aligns_back_and_has_zero_aligned_barrier(probe, seed: int) -> None:
    policy = _random_policy(seed).state_dict()
    spec = align.infer_spec(policy)
    copy = align.permute_state_dict(policy, spec, align.random_permutations(spec, policy,
                                                                            torch.Generator().manual_seed(seed)))
    aligned = align.weight_matching(policy, copy)
    naive = connectivity.barrier_matrix([policy, copy], probe, [(0, 1)], points=5)
    after = connectivity.barrier_matrix([policy, aligned], probe, [(0, 1)], points=5)
    assert all(after[m][0] == 0 for m in after)
    assert all(after[m][0] <= naive[m][0] for m in after)


def test_repair_leaves_the_endpoints_unchanged(probe) -> None:
    a, b = (stack_state_dicts([_random_policy(s).state_dict()] * 2) for s in (1, 2))
    weights = torch.tensor([0.0, 1.0])
    params = connectivity.interpolate(a, b, weights)
    repaired = connectivity.repair(probe.template, params, a, b, weights, probe.validation_obs)
    obs = probe.validation_obs.float().expand(2, *probe.validation_obs.shape)
    before = StackedPolicy.from_params(probe.template, params).logits(obs)
    after = StackedPolicy.from_params(probe.template, repaired).logits(obs)
    assert torch.allclose(before, after, atol=1e-4)


def test_repair_restores_the_variance_of_interpolated_units(probe) -> None:
    a, b = (stack_state_dicts([_random_policy(s).state_dict()]) for s in (1, 2))
    half = torch.tensor([0.5])
    mid = connectivity.interpolate(a, b, half)
    repaired = connectivity.repair(probe.template, mid, a, b, half, probe.validation_obs)
    obs = probe.validation_obs.reshape(len(probe.validation_obs), -1).float()

    def first_layer_std(params):
        return (obs @ params["actor.0.weight"][0].T + params["actor.0.bias"][0]).std(0)

    target = 0.5 * (first_layer_std(a) + first_layer_std(b))
    assert torch.allclose(first_layer_std(repaired), target, rtol=1e-3)
    assert first_layer_std(mid).mean() < target.mean()  # independent inits: averaging shrinks the spread


# --------------------------------------------------------------------------- rollouts


@pytest.mark.parametrize("greedy", [True, False])
def test_a_policy_plays_the_same_episodes_whatever_else_is_in_the_batch(greedy: bool) -> None:
    policies = [_random_policy(s).state_dict() for s in range(3)]
    template = _random_policy(0)
    seeds = list(range(100, 124))
    together = play(template, stack_state_dicts(policies), CUE, {}, seeds, greedy=greedy, action_seed=5)
    alone = play(template, stack_state_dicts(policies[1:2]), CUE, {}, seeds, greedy=greedy, action_seed=5)
    np.testing.assert_array_equal(together.returns[1], alone.returns[0])
    np.testing.assert_array_equal(together.outcomes[1], alone.outcomes[0])


@pytest.mark.parametrize("env_id", [CUE, "CartPole-v1"])
@pytest.mark.parametrize("greedy", [True, False])
def test_batched_core_rollouts_match_the_gymnasium_view(env_id: str, greedy: bool) -> None:
    """Held-out episodes on the env's torch core and on its gymnasium environments are the same."""
    obs_dim, n_actions = (OBS_DIM, 4) if env_id == CUE else (4, 2)
    template = ActorCritic(obs_dim, n_actions, [16, 16])
    policies = [ActorCritic(obs_dim, n_actions, [16, 16]).state_dict() for _ in range(2)]
    suite = get_suite(env_id)
    env = gym.make(env_id)
    starts = suite.sample_states(env, np.random.default_rng(1), 12)
    seeds = list(range(12))
    core = play(template, stack_state_dicts(policies), env_id, {}, seeds, starts, suite, greedy=greedy, action_seed=9)
    stacked = StackedPolicy.from_params(template, stack_state_dicts(policies))
    view = _play_gym(stacked, env_id, {}, seeds, list(starts), suite, greedy, action_seed=9)
    np.testing.assert_array_equal(core.returns, view.returns)
    np.testing.assert_array_equal(core.outcomes, view.outcomes)


# --------------------------------------------------------------------------- clustering


def _blobs(centres: list[tuple[float, float]], per: int, seed: int, dim: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Distances between seeds drawn around ``centres`` (in the first two of ``dim`` dimensions; seeds'
    fingerprints are high-dimensional, and in 2-D a dozen Gaussian points often look like two clusters)."""
    rng = np.random.default_rng(seed)
    points = np.concatenate([rng.normal(0, 0.3, size=(per, dim)) + np.pad(c, (0, dim - 2)) for c in centres])
    truth = np.repeat(np.arange(len(centres)), per)
    order = rng.permutation(len(points))  # members of a basin are not contiguous
    return cdist(points[order], points[order]), truth[order]


@pytest.mark.parametrize("method", ["spectral", "agglomerative"])
@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), n_basins=st.integers(1, 3))
def test_planted_clusters_are_recovered_with_their_number(method: str, seed: int, n_basins: int) -> None:
    distances, truth = _blobs([(0, 0), (4, 0), (0, 4)][:n_basins], per=12, seed=seed)
    found = basins.CLUSTERERS[method](distances)
    assert found.k == n_basins
    assert basins.ari_with_ci(truth.tolist(), found.labels)["ari"] == 1.0


def test_basins_are_described_by_size_share_label_and_medoid() -> None:
    distances, truth = _blobs([(0, 0), (4, 0)], per=6, seed=1)
    clustering = basins.spectral_basins(distances)
    labels = ["colour" if t == 0 else "shape" for t in truth]
    described = basins.describe_basins(clustering, list(range(100, 112)), distances, labels)
    assert [b.size for b in described] == [6, 6]
    assert {b.label for b in described} == {"colour", "shape"} and all(b.label_purity == 1 for b in described)
    for b in described:
        assert b.medoid in b.seeds and b.examples[0] == b.medoid
        assert b.share_ci[0] < b.share < b.share_ci[1]


def test_agreement_ci_contains_the_point_estimate() -> None:
    a = [0] * 10 + [1] * 10
    b = [0] * 9 + [1] * 11
    result = basins.ari_with_ci(a, b, resamples=200)
    assert result["low"] <= result["ari"] <= result["high"] and 0.5 < result["ari"] < 1


def test_preference_test_tells_basins_from_one_shared_strategy() -> None:
    rng = np.random.default_rng(0)
    committed = np.array([40] * 8 + [0] * 8)
    split = preference_test(committed, 40 - committed)
    assert split.verdict == "basins" and split.committed_a == 8 and split.committed_b == 8
    shared = rng.binomial(40, 0.5, size=16)
    assert preference_test(shared, 40 - shared).verdict == "one shared strategy"


# --------------------------------------------------------------------------- the pipeline on a trained run


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> RunDir:
    """5 CueConflict seeds trained to success 1.0 on training states (about 7 s)."""
    cfg = tiny_cueconflict_config()
    return train_experiment(parse_config(cfg), tmp_path_factory.mktemp("runs"), show_progress=False)


def test_aligned_barriers_are_lower_than_naive_ones_on_trained_pairs(trained: RunDir) -> None:
    cfg = trained.load_config()
    template, policies, _ = load_policies(trained, list(range(5)))
    probe = connectivity.make_probe(template, CUE, {}, n_episodes=8, n_states=128, seed=0)
    aligned = align.align_many(policies, reference="mean")
    pairs = list(itertools.combinations(range(5), 2))
    naive = connectivity.barrier_matrix(policies, probe, pairs, points=cfg.analysis.connectivity.points)
    after = connectivity.barrier_matrix(aligned, probe, pairs, points=cfg.analysis.connectivity.points)
    assert (after["loss"] <= naive["loss"]).all()  # measured: naive 0.17–0.38 nats, aligned 0–0.06
    assert after["loss"].mean() < 0.5 * naive["loss"].mean()


def test_analyze_writes_basins_connectivity_and_tables(trained: RunDir) -> None:
    result = CliRunner().invoke(app, ["analyze", str(trained.root), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "behavioural basin" in result.output
    found = json.loads((trained.analysis_dir / "basins.json").read_text())
    conn = json.loads((trained.analysis_dir / "connectivity.json").read_text())
    assert found["seeds"] == list(range(5))
    assert len(found["behaviour"]["clustering"]["labels"]) == 5
    assert sum(b["size"] for b in found["behaviour"]["basins"]) == 5
    assert 0 <= found["behaviour"]["stability"]["mean_ari"] <= 1
    for variant in ("naive", "aligned", "aligned_repair"):
        matrix = np.array(conn["matrices"][variant]["loss"])
        assert matrix.shape == (5, 5) and np.allclose(matrix, matrix.T) and np.all(np.diag(matrix) == 0)
    assert conn["paths"] and all(len(p["curves"]["aligned"]["alphas"]) == 5 for p in conn["paths"])
    rows = (trained.analysis_dir / "basins.csv").read_text().splitlines()
    assert rows[0].startswith("seed,behaviour_basin,weight_basin") and len(rows) == 6
    early = json.loads((trained.analysis_dir / "early.json").read_text())
    if early["n_classes"] < 2:  # one basin, and (target auto) one preferred strategy: nothing to predict
        what = "basin" if early["target"] == "basin" else "preferred strategy"
        assert early["skipped"].startswith(f"one {what}") and "early detection skipped" in result.output
    else:
        assert all(len(d["balanced_accuracy"]) == len(early["steps"]) for d in early["detectors"])


def test_analyze_an_earlier_checkpoint_or_refuse_a_missing_one(trained: RunDir, tmp_path: Path) -> None:
    ok = CliRunner().invoke(app, ["analyze", str(trained.root), "--no-progress", "--checkpoint", "15360"])
    assert ok.exit_code == 0, ok.output
    behaviour = json.loads((trained.analysis_dir / "behavior.json").read_text())
    assert behaviour["steps"] == [15360] * 5
    assert max(json.loads((trained.analysis_dir / "early.json").read_text())["steps"] or [0]) <= 15360
    missing = CliRunner().invoke(app, ["analyze", str(trained.root), "--no-progress", "--checkpoint", "123"])
    assert missing.exit_code == 2 and "no checkpoint at step 123" in missing.output


def test_beyond_max_pairwise_seeds_are_compared_to_the_basin_medoids(trained: RunDir) -> None:
    settings = trained.load_config().analysis.model_copy(
        update={"connectivity": trained.load_config().analysis.connectivity.model_copy(update={"max_pairwise": 4})})
    summary = analyze_run(trained, show_progress=False, settings=settings)
    conn = json.loads((trained.analysis_dir / "connectivity.json").read_text())
    found = json.loads((trained.analysis_dir / "basins.json").read_text())
    assert conn["mode"] == "to behavioural medoids"
    medoids = {b["medoid"] for b in found["behaviour"]["basins"]}
    matrix = np.array(conn["matrices"]["aligned"]["loss"], dtype=float)
    for i, j in itertools.product(range(5), repeat=2):  # filled exactly on the rows and columns of medoids
        assert np.isfinite(matrix[i, j]) == (i == j or i in medoids or j in medoids)
    assert found["weights"]["clustering"]["method"] == "nearest medoid"
    assert summary.weight_k == len(medoids)


# --------------------------------------------------------------------------- rlbasins compare


def test_compare_writes_a_behavioural_diff_of_two_seeds(trained: RunDir, tmp_path: Path) -> None:
    out = tmp_path / "diff.html"
    result = CliRunner().invoke(app, ["compare", f"{trained.root}:0", f"{trained.root}:3@15360", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "greedy agreement" in result.output and "aligned barrier" in result.output
    html = out.read_text()
    for section in ('id="summary"', 'id="by-type"', 'id="disagreement"', 'id="interpolation"'):
        assert section in html
    assert html.count("data:image/png;base64,") == 3 and "https://" not in html
    assert "cue:3@15360" in html


def test_a_policy_compared_with_itself_agrees_everywhere_without_barrier(trained: RunDir, tmp_path: Path) -> None:
    from rlbasins.report.compare import PolicyRef, compare

    result = compare(PolicyRef(trained, 2, None), PolicyRef(trained, 2, None), tmp_path / "self.html")
    assert result["agreement"] == 1.0 and result["total_variation"] == 0.0
    assert all(value == 0 for barriers in result["barriers"].values() for value in barriers.values())
    assert all(row["agreement"] == 1.0 for row in result["by_type"].values())


@pytest.mark.parametrize("b", ["{root}", "{root}:x", "{other}:0"])
def test_compare_refuses_bad_references_by_name(trained: RunDir, tmp_path: Path, b: str) -> None:
    result = CliRunner().invoke(app, ["compare", f"{trained.root}:0", b.format(root=trained.root, other=tmp_path),
                                      "-o", str(tmp_path / "x.html")])
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "x.html").exists()
