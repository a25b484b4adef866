"""CNN actor-critics (``policy.conv_channels``), as specifications: the exchange format, alignment of conv
channels, batched training, checkpoints, config rejections, and the whole pipeline."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from typer.testing import CliRunner

from envs.suites import get_suite
from rlbasins.analysis import barriers
from rlbasins.analysis.align import (
    activation_matching,
    infer_spec,
    matching_objective,
    permute_state_dict,
    random_permutations,
    spec_for_module,
    weight_matching,
)
from rlbasins.analysis.behavior import stacked_action_probs
from rlbasins.cli import app
from rlbasins.core.checkpoints import load_policy
from rlbasins.core.config import parse_config
from rlbasins.core.policy import ActorCritic
from rlbasins.core.store import RunDir, sha256_file
from rlbasins.train import train_experiment
from tests.conftest import tiny_config, tiny_cueconflict_config, write_yaml

CUE = "rlbasins/CueConflict-v0"
CUE_SHAPE = (5, 5, 5)  # CueConflict's observation [C, H, W] at its default size 5

runner = CliRunner()

cnn_architectures = st.fixed_dictionaries({
    "obs_shape": st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4)),
    "n_actions": st.integers(2, 4),
    "conv_channels": st.lists(st.integers(2, 6), min_size=1, max_size=2),
    "hidden_sizes": st.lists(st.integers(2, 8), min_size=1, max_size=2),
    "activation": st.sampled_from(["tanh", "relu"]),
})


def _cnn(arch: dict, seed: int) -> ActorCritic:
    torch.manual_seed(seed)
    return ActorCritic(**arch).ortho_init_()


def _loaded(template: ActorCritic, state_dict: dict) -> ActorCritic:
    module = template.fresh_copy()
    module.load_state_dict(state_dict)
    return module


def _same_function(a: nn.Module, b: nn.Module, obs: torch.Tensor) -> bool:
    with torch.no_grad():
        return all(torch.allclose(x, y, atol=1e-5) for x, y in zip(a(obs), b(obs), strict=True))


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- the exchange format


def test_mlp_names_shapes_init_and_outputs_are_unchanged() -> None:
    """An MLP is built, initialised and evaluated exactly as before CNNs existed (SB3's MlpPolicy layout)."""
    torch.manual_seed(0)
    policy = ActorCritic(CUE_SHAPE, 4, [16, 8]).ortho_init_()
    torch.manual_seed(0)  # the pre-CNN construction: Linear/Tanh chains on the flattened input, same init order
    reference = {trunk: nn.Sequential(nn.Linear(125, 16), nn.Tanh(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, out))
                 for trunk, out in (("actor", 4), ("critic", 1))}
    for trunk, head_gain in ((reference["actor"], 0.01), (reference["critic"], 1.0)):
        linears = [m for m in trunk if isinstance(m, nn.Linear)]
        for i, layer in enumerate(linears):
            nn.init.orthogonal_(layer.weight, gain=head_gain if i == len(linears) - 1 else math.sqrt(2))
            nn.init.zeros_(layer.bias)
    expected = {f"{trunk}.{k}": v for trunk, module in reference.items() for k, v in module.state_dict().items()}
    assert _equal(policy.state_dict(), expected)
    assert {k: tuple(v.shape) for k, v in policy.state_dict().items()} == {
        "actor.0.weight": (16, 125), "actor.0.bias": (16,), "actor.2.weight": (8, 16), "actor.2.bias": (8,),
        "actor.4.weight": (4, 8), "actor.4.bias": (4,), "critic.0.weight": (16, 125), "critic.0.bias": (16,),
        "critic.2.weight": (8, 16), "critic.2.bias": (8,), "critic.4.weight": (1, 8), "critic.4.bias": (1,)}
    obs = torch.randn(6, *CUE_SHAPE)
    logits, value = policy(obs)
    assert torch.equal(logits, reference["actor"](obs.reshape(6, -1)))
    assert torch.equal(value, reference["critic"](obs.reshape(6, -1)).squeeze(-1))


def test_cnn_layout_init_and_outputs() -> None:
    policy = ActorCritic(CUE_SHAPE, 4, [32], conv_channels=[8, 6]).ortho_init_()
    shapes = {k: tuple(v.shape) for k, v in policy.state_dict().items() if k.startswith("actor.")}
    assert shapes == {"actor.0.weight": (8, 5, 3, 3), "actor.0.bias": (8,), "actor.2.weight": (6, 8, 3, 3),
                      "actor.2.bias": (6,), "actor.5.weight": (32, 6 * 5 * 5), "actor.5.bias": (32,),
                      "actor.7.weight": (4, 32), "actor.7.bias": (4,)}
    assert isinstance(policy.actor[4], nn.Flatten)
    assert all(torch.count_nonzero(v) == 0 for k, v in policy.state_dict().items() if k.endswith(".bias"))
    conv = policy.actor[0].weight.reshape(8, -1)  # orthogonal rows with gain √2
    assert torch.allclose(conv @ conv.T, 2 * torch.eye(8), atol=1e-5)
    obs = torch.randn(3, *CUE_SHAPE)
    logits, value = policy(obs)
    assert logits.shape == (3, 4) and value.shape == (3,)
    flat_logits, flat_value = policy(obs.reshape(3, -1))  # the engines may pass flattened observations
    assert torch.equal(flat_logits, logits) and torch.equal(flat_value, value)
    with pytest.raises(ValueError, match=r"\[C, H, W\]"):
        ActorCritic(4, 2, [8], conv_channels=[4])


# --------------------------------------------------------------------------- alignment


@settings(max_examples=25, deadline=None)
@given(arch=cnn_architectures, seed=st.integers(0, 10_000))
def test_a_permuted_cnn_computes_the_same_function(arch: dict, seed: int) -> None:
    """The inferred spec is right: conv channels, and the H·W block of the flattened input each one owns."""
    policy = _cnn(arch, seed)
    spec = infer_spec(policy.state_dict())
    perms = random_permutations(spec, policy.state_dict(), torch.Generator().manual_seed(seed))
    permuted = permute_state_dict(policy.state_dict(), spec, perms)
    obs = torch.randn(32, *arch["obs_shape"])
    assert _same_function(policy, _loaded(policy, permuted), obs)


@settings(max_examples=25, deadline=None)
@given(arch=cnn_architectures, seed=st.integers(0, 10_000))
def test_weight_matching_recovers_a_permuted_cnn_exactly(arch: dict, seed: int) -> None:
    policy = _cnn(arch, seed)
    state_dict = policy.state_dict()
    spec = infer_spec(state_dict)
    permuted = permute_state_dict(state_dict, spec, random_permutations(spec, state_dict,
                                                                        torch.Generator().manual_seed(seed + 1)))
    aligned = weight_matching(state_dict, permuted, spec)
    assert matching_objective(state_dict, aligned) == pytest.approx(matching_objective(state_dict, state_dict))
    assert _equal(aligned, state_dict)
    assert _same_function(policy, _loaded(policy, aligned), torch.randn(16, *arch["obs_shape"]))


def test_spec_permutes_conv_channels_and_flatten_blocks() -> None:
    policy = ActorCritic(CUE_SHAPE, 4, [32], conv_channels=[8, 6])
    spec = spec_for_module(policy)
    assert spec.axes_to_perm["actor.0.weight"] == ("actor.0", None, None, None)
    assert spec.axes_to_perm["actor.2.weight"] == ("actor.2", "actor.0", None, None)
    assert spec.axes_to_perm["actor.5.weight"] == ("actor.5", "actor.2")
    assert spec.axes_to_perm["actor.7.weight"] == (None, "actor.5")
    assert spec.block_sizes == {("actor.5.weight", 1): 25, ("critic.5.weight", 1): 25}
    assert spec.perm_sizes(policy.state_dict())["actor.2"] == 6


def test_activation_matching_recovers_a_permuted_cnn() -> None:
    policy = ActorCritic(CUE_SHAPE, 4, [16], conv_channels=[8, 8]).ortho_init_()
    spec = infer_spec(policy.state_dict())
    permuted = permute_state_dict(policy.state_dict(), spec, random_permutations(
        spec, policy.state_dict(), torch.Generator().manual_seed(4)))
    obs = torch.randn(64, *CUE_SHAPE)
    aligned = activation_matching(policy, _loaded(policy, permuted), obs)
    assert _equal(aligned, policy.state_dict())


def test_interpolating_a_cnn_with_itself_has_zero_barrier() -> None:
    policy = ActorCritic(CUE_SHAPE, 4, [16], conv_channels=[4]).ortho_init_()
    probe = barriers.make_probe(policy, CUE, {}, n_episodes=8, n_states=32, seed=3, suite=get_suite(CUE))
    curves = barriers.path_curves(policy.state_dict(), policy.state_dict(), probe, points=5)
    assert set(curves.barriers) == set(probe.metrics)
    assert all(value == pytest.approx(0.0, abs=1e-6) for value in curves.barriers.values()), curves.barriers


def test_a_cnn_path_points_first_convolution_comes_from_its_endpoints() -> None:
    """A convolution is linear in its weights too: validation logits from the endpoints' first-convolution
    outputs are those of the interpolated CNN, up to float rounding."""
    a, b = (ActorCritic(CUE_SHAPE, 4, [16], conv_channels=[4, 6]).ortho_init_() for _ in range(2))
    probe = barriers.make_probe(a, CUE, {}, n_episodes=4, n_states=32, seed=3)
    ends = barriers.actor_part(_stacked(a, b))
    weights = barriers.alphas(5)
    params = barriers.path_points(ends, [(0, 1)], weights)
    first = barriers.FirstLayer(barriers.first_layer_outputs(a, ends, probe.validation_obs), torch.zeros(5).long(),
                                torch.ones(5).long(), weights)
    assert first.rows(slice(None))["actor"].shape == (5, 32, 4, *CUE_SHAPE[1:])
    assert torch.allclose(probe.validation_logits(params, first), probe.validation_logits(params), atol=1e-5)


def _stacked(*policies: ActorCritic) -> dict[str, torch.Tensor]:
    return {name: torch.stack([p.state_dict()[name] for p in policies]) for name in policies[0].state_dict()}


def test_repair_leaves_a_cnns_endpoints_unchanged() -> None:
    a, b = (ActorCritic(CUE_SHAPE, 4, [16], conv_channels=[4, 6]).ortho_init_() for _ in range(2))
    ends_a, ends_b, weights = _stacked(a, a), _stacked(b, b), torch.tensor([0.0, 1.0])
    obs = torch.rand(32, *CUE_SHAPE)
    params = barriers.interpolate(ends_a, ends_b, weights)
    repaired = barriers.repair(a, params, *(barriers.unit_statistics(a, ends, obs) for ends in (ends_a, ends_b)),
                               weights, obs)
    for s, policy in enumerate((a, b)):
        policy.load_state_dict({name: value[s] for name, value in repaired.items()})
        reference = (a, b)[s].fresh_copy()
        reference.load_state_dict({name: value[s] for name, value in params.items()})
        assert torch.allclose(policy(obs)[0], reference(obs)[0], atol=1e-4)


def test_repair_restores_each_channels_spread_in_an_interpolated_cnn() -> None:
    """REPAIR for convolutions: each output channel's pre-activation mean and std, pooled over states and
    positions, equal the interpolation of the endpoints' (the spread that averaging two independent nets
    shrinks)."""
    torch.manual_seed(0)
    a, b = (ActorCritic(CUE_SHAPE, 4, [16], conv_channels=[4, 6]).ortho_init_() for _ in range(2))
    ends_a, ends_b, half = _stacked(a), _stacked(b), torch.tensor([0.5])
    obs = torch.rand(64, *CUE_SHAPE)
    mid = barriers.interpolate(ends_a, ends_b, half)
    repaired = barriers.repair(a, mid, *(barriers.unit_statistics(a, ends, obs) for ends in (ends_a, ends_b)), half,
                               obs)

    def second_conv(params) -> torch.Tensor:  # [N, 6, H, W] pre-activations of the actor's second conv
        policy = a.fresh_copy()
        policy.load_state_dict({name: value[0] for name, value in params.items()})
        return policy.actor[2](policy.actor[1](policy.actor[0](obs)))

    def stats(params) -> tuple[torch.Tensor, torch.Tensor]:
        pre = second_conv(params)
        return pre.mean((0, 2, 3)), pre.std((0, 2, 3))

    (mean_a, std_a), (mean_b, std_b) = stats(ends_a), stats(ends_b)
    mean, std = stats(repaired)
    assert torch.allclose(std, 0.5 * (std_a + std_b), rtol=1e-3)
    assert torch.allclose(mean, 0.5 * (mean_a + mean_b), atol=1e-4)
    assert stats(mid)[1].mean() < std.mean()  # independent inits: averaging shrinks the spread


def test_repair_refuses_a_layer_it_cannot_renormalise_and_says_what_to_do() -> None:
    policy = ActorCritic(CUE_SHAPE, 4, [16], conv_channels=[4])
    assert barriers.repair_unsupported(policy) is None
    policy.actor = nn.Sequential(nn.Flatten(), nn.Linear(125, 16), nn.LayerNorm(16), nn.Tanh(), nn.Linear(16, 4))
    assert "actor holds another kind of layer" in barriers.repair_unsupported(policy)
    stacked = {k: v[None] for k, v in policy.state_dict().items()}
    with pytest.raises(ValueError, match="another kind of layer.*analysis.barriers.repair: false"):
        barriers.unit_statistics(policy, stacked, torch.zeros(4, *CUE_SHAPE))
    with pytest.raises(ValueError, match="another kind of layer.*analysis.barriers.repair: false"):
        barriers.repair(policy, stacked, {}, {}, torch.zeros(1), torch.zeros(4, *CUE_SHAPE))


# --------------------------------------------------------------------------- batched training and checkpoints


def _cnn_config(count: int) -> dict:
    return tiny_config(engine="batched", name="cnn", env={"id": CUE, "num_envs": 4},
                       policy={"conv_channels": [4, 4], "hidden_sizes": [16]},
                       ppo={"total_timesteps": 1024, "n_steps": 32, "batch_size": 64, "n_epochs": 2},
                       seeds={"count": count}, checkpoints={"every": 512})


def _train(root: Path, count: int) -> RunDir:
    return train_experiment(parse_config(_cnn_config(count)), root / "runs", show_progress=False)


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory) -> RunDir:
    return _train(tmp_path_factory.mktemp("cnn"), count=3)


def test_batched_cnn_training_is_bit_identical_when_repeated(cnn_run: RunDir, tmp_path: Path) -> None:
    assert cnn_run.manifest()["status"] == "finished"
    first, last = (cnn_run.seed(0).load_policy(step)[0] for step in (0, 1024))
    assert not _equal(first, last)
    again = _train(tmp_path, count=3)
    for k in range(3):
        for path in sorted(cnn_run.seed(k).ckpt_dir.glob("*.safetensors")):
            assert sha256_file(path) == sha256_file(again.seed(k).ckpt_dir / path.name), path.name


def test_a_cnn_seed_does_not_depend_on_the_other_seeds(cnn_run: RunDir, tmp_path: Path) -> None:
    fewer = _train(tmp_path, count=2)
    for k in range(2):
        assert _equal(fewer.seed(k).load_policy(1024)[0], cnn_run.seed(k).load_policy(1024)[0])


def test_cnn_checkpoint_loads_back_for_the_analysis(cnn_run: RunDir) -> None:
    weights, meta = cnn_run.seed(1).load_policy(1024)
    assert meta["obs_shape"] == list(CUE_SHAPE) and meta["conv_channels"] == [4, 4]
    policy, step = load_policy(cnn_run, 1)
    assert step == 1024 and policy.conv_channels == [4, 4] and policy.obs_shape == CUE_SHAPE
    assert _equal(policy.state_dict(), weights)
    obs = torch.randn(8, *CUE_SHAPE)
    probs = stacked_action_probs([policy, load_policy(cnn_run, 2)[0]], obs)
    assert torch.allclose(probs[0], policy.action_probs(obs), atol=1e-6)


def test_compare_refuses_an_mlp_against_a_cnn_naming_both_architectures(cnn_run: RunDir, tmp_path: Path) -> None:
    data = _cnn_config(2)
    data["policy"] = {"hidden_sizes": [16]}
    mlp_run = train_experiment(parse_config(data), tmp_path / "runs", show_progress=False)
    result = runner.invoke(app, ["compare", f"{cnn_run.root}:0", f"{mlp_run.root}:0", "-o", str(tmp_path / "d.html")])
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())
    assert "conv channels none, hidden sizes [16]" in output and "conv channels [4, 4], hidden sizes [16]" in output


def test_pre_cnn_mlp_checkpoint_metadata_still_loads(tmp_path: Path) -> None:
    """Checkpoints written before CNNs carry no obs_shape / conv_channels: they rebuild as MLPs."""
    from rlbasins.core.checkpoints import policy_template

    weights = ActorCritic(75, 4, [16, 8]).state_dict()
    template = policy_template(weights, {"hidden_sizes": [16, 8], "activation": "tanh"})
    template.load_state_dict(weights)
    assert template.obs_shape == (75,) and template.conv_channels == []


# --------------------------------------------------------------------------- configs


def test_mlp_config_hashes_are_unchanged() -> None:
    """Pinned before policy.conv_channels existed: adding the (unset) field must not move existing runs."""
    assert parse_config(tiny_config()).hash() == "c0ef7a9453f87a9b4b726516b5a528fc063253262fa348deb49776bb26be7533"
    assert parse_config(tiny_cueconflict_config()).hash() == \
        "f95563bf73d195368ee6086271f2ecaac102962d3d74db4f62a6df0e5963a416"
    with_cnn = tiny_cueconflict_config()
    with_cnn["policy"]["conv_channels"] = [8]
    assert parse_config(with_cnn).hash() != parse_config(tiny_cueconflict_config()).hash()


@pytest.mark.parametrize("data, hint", [
    (tiny_config(policy={"conv_channels": [8]}, engine="batched"), "convolutions need images [C, H, W]"),
    (tiny_config(policy={"conv_channels": [8]}, engine="sb3", env={"id": CUE, "num_envs": 2}), "engine: batched"),
], ids=["CartPole", "sb3 engine"])
def test_conv_channels_are_rejected_where_they_cannot_train(data: dict, hint: str, tmp_path: Path) -> None:
    config = write_yaml(tmp_path / "bad.yaml", data)
    runs = tmp_path / "runs"
    result = runner.invoke(app, ["run", str(config), "--runs-dir", str(runs), "--no-progress"])
    assert result.exit_code == 2, result.output
    assert "policy.conv_channels:" in result.output and hint in " ".join(result.output.split())
    assert not runs.exists()


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_cnn_run_trains_analyses_and_reports_every_barrier_with_and_without_repair(tmp_path: Path) -> None:
    data = tiny_cueconflict_config()
    data["policy"] = {"conv_channels": [8], "hidden_sizes": [32]}
    data["seeds"]["count"] = 3
    config = write_yaml(tmp_path / "cnn.yaml", data)
    result = runner.invoke(app, ["run", str(config), "--runs-dir", str(tmp_path / "runs"), "--no-progress"])
    assert result.exit_code == 0, result.output
    run = RunDir(tmp_path / "runs" / data["name"])
    conn = json.loads((run.analysis_dir / "connectivity.json").read_text())
    assert conn["repair_skipped"] is None
    assert set(conn["matrices"]["aligned_repair"]) == set(conn["matrices"]["aligned"]) == set(conn["metrics"])
    assert all("aligned_repair" in path["curves"] for path in conn["paths"])
    html = run.report_path.read_text()
    assert 'id="connectivity"' in html and 'id="weight-views"' in html
    assert "aligned + REPAIR held-out commitment barrier" in html
