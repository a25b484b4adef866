"""Init-space map: the grid of initialisations, box counting of the basin boundary, and the study end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from rlbasins.analysis.init_map import boundary_cells, boundary_edges, box_counting, box_counts, label_map
from rlbasins.core.config import ConfigError, load_config, parse_config
from rlbasins.core.init_plane import plane_coordinates
from rlbasins.core.seeding import factor_seed
from rlbasins.train import seed_factors
from rlbasins.train.base import SeedTask
from rlbasins.train.initial import initial_state_dict, ordinary_state_dict, plane_basis
from tests.conftest import tiny_config, tiny_cueconflict_config

OBS_DIM, N_ACTIONS = 10, 4


def plane_config(resolution: int = 3, span: float = 1.0, directions: str = "inits", **overrides):
    data = tiny_config(engine="batched", seeds={"count": resolution ** 2, "vary": ["init"], "init_plane": {
        "resolution": resolution, "span": span, "directions": directions}}, **overrides)
    return parse_config(data)


def initial(cfg, index: int) -> dict[str, torch.Tensor]:
    task = SeedTask(index, seed_factors(cfg, index), cfg.model_dump(mode="json"), "unused")
    return initial_state_dict(cfg, task, OBS_DIM, N_ACTIONS)


# --------------------------------------------------------------------------- the grid of initialisations


@pytest.mark.parametrize("directions", ["inits", "filter_normalized"])
def test_every_grid_point_starts_at_theta0_plus_a_u_plus_b_v(directions: str) -> None:
    cfg = plane_config(resolution=4, span=1.5, directions=directions)
    origin, u, v = plane_basis(cfg, OBS_DIM, N_ACTIONS)
    coordinates = plane_coordinates(cfg.seeds.init_plane)
    assert coordinates[0] == -1.5 and coordinates[-1] == 1.5
    for k in range(16):
        a, b = coordinates[k // 4], coordinates[k % 4]
        weights = initial(cfg, k)
        for name in origin:
            expected = origin[name] + a * u[name] + b * v[name]
            assert weights[name].dtype == torch.float32
            torch.testing.assert_close(weights[name].double(), expected, rtol=2**-23, atol=1e-12)


def test_the_centre_of_an_odd_grid_is_theta0_the_ordinary_init_of_index_0() -> None:
    cfg = plane_config(resolution=5)
    theta0 = ordinary_state_dict(cfg.policy, factor_seed(cfg.seed, "init", 0), OBS_DIM, N_ACTIONS)
    centre = initial(cfg, 12)
    assert all(torch.equal(centre[name], theta0[name]) for name in theta0)


def test_inits_directions_pass_through_the_ordinary_inits_of_index_1_and_2() -> None:
    cfg = plane_config(resolution=3)  # a, b ∈ {−1, 0, 1}: (a, b) = (1, 0) is θ1, (0, 1) is θ2
    for index, init_index in ((7, 1), (5, 2)):
        ordinary = ordinary_state_dict(cfg.policy, factor_seed(cfg.seed, "init", init_index), OBS_DIM, N_ACTIONS)
        for name, value in initial(cfg, index).items():
            torch.testing.assert_close(value, ordinary[name], rtol=1e-6, atol=1e-7)


def test_filter_normalized_directions_match_each_neurons_norm_and_leave_biases() -> None:
    cfg = plane_config(directions="filter_normalized")
    origin, u, v = plane_basis(cfg, OBS_DIM, N_ACTIONS)
    for direction in (u, v):
        for name, value in direction.items():
            if value.dim() == 1:
                assert not value.any()
            else:
                torch.testing.assert_close(value.norm(dim=1), origin[name].norm(dim=1))
    assert not torch.allclose(u["actor.0.weight"], v["actor.0.weight"])


def test_without_a_plane_a_seed_starts_from_its_own_init_seed_as_before() -> None:
    from rlbasins.core.policy import ActorCritic

    cfg = parse_config(tiny_config(engine="batched", seeds={"count": 3}))
    for k in range(3):
        torch.manual_seed(seed_factors(cfg, k).init)  # the batched engine's draw before the init plane existed
        before = ActorCritic.from_config(cfg.policy, OBS_DIM, N_ACTIONS).ortho_init_().state_dict()
        assert all(torch.equal(before[name], value) for name, value in initial(cfg, k).items())


@given(st.floats(0.05, 20))
@settings(max_examples=10, deadline=None)
def test_init_scale_multiplies_every_weight_matrix_and_leaves_the_biases(scale: float) -> None:
    plain = parse_config(tiny_config(engine="batched", seeds={"count": 2}))
    scaled = parse_config(tiny_config(engine="batched", seeds={"count": 2}, policy={"init_scale": scale}))
    assert scaled.hash() != plain.hash()
    for k in range(2):
        before, after = initial(plain, k), initial(scaled, k)
        for name, value in before.items():
            assert torch.allclose(after[name], value * scale if value.dim() >= 2 else value), name


def test_init_scale_one_is_the_init_as_it_is() -> None:
    assert parse_config(tiny_config(engine="batched", policy={"init_scale": 1.0})).hash() == \
        parse_config(tiny_config(engine="batched")).hash()


def test_init_scale_needs_the_batched_engine() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(tiny_config(engine="sb3", policy={"init_scale": 0.5}))
    assert [issue.path for issue in info.value.issues] == ["policy.init_scale"]


def test_the_plane_is_part_of_the_hash() -> None:
    # (a config without a plane keeps its old hash: tests/test_config.py, new optional fields)
    assert plane_config(span=1.0).hash() != plane_config(span=2.0).hash()
    assert plane_config(span=1.0).hash() != parse_config(tiny_config()).hash()


def test_a_plane_needs_one_seed_per_point_only_init_varying_and_the_batched_engine() -> None:
    data = tiny_config(engine="sb3", seeds={"count": 8, "init_plane": {"resolution": 3, "span": 1.0}},
                       env={"id": "rlbasins/CueConflict-v0", "planted": [
                           {"label": "colour", "kwargs": {"informative": "colour"}},
                           {"label": "shape", "kwargs": {"informative": "shape"}}]})
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    issues = {issue.path: issue.expected for issue in caught.value.issues}
    assert "9 = seeds.init_plane.resolution²" in issues["seeds.count"]
    assert "[init]" in issues["seeds.vary"]
    assert "batched" in issues["engine"]
    assert "null" in issues["env.planted"]


# --------------------------------------------------------------------------- boundary and box counting


def straight(side: int, column: int) -> np.ndarray:
    image = np.zeros((side, side), dtype=int)
    image[:, column:] = 1
    return image


@pytest.mark.parametrize("column", [1, 7, 8, 13])
def test_a_straight_boundary_has_dimension_one_wherever_it_lies(column: int) -> None:
    for image in (straight(16, column), straight(16, column).T):
        result = box_counting(image)
        assert result.boundary_cells == 32
        assert result.dimension == pytest.approx(1.0)


def test_a_round_boundary_has_dimension_about_one() -> None:
    i, j = np.indices((64, 64))
    result = box_counting(((i - 30) ** 2 + (j - 33) ** 2 < 20 ** 2).astype(int))
    assert 0.85 < result.dimension < 1.25
    assert result.dimension_ci[0] < 1 < result.dimension_ci[1]


def test_a_checkerboard_fills_the_plane() -> None:
    result = box_counting(np.indices((16, 16)).sum(0) % 2)
    assert result.dimension == pytest.approx(2.0, abs=0.01)


def test_random_labels_fill_the_plane() -> None:
    result = box_counting(np.random.default_rng(0).integers(0, 3, (64, 64)))
    assert result.dimension > 1.85
    assert result.dimension_ci[0] < 2 < result.dimension_ci[1]


def test_one_label_has_no_boundary_and_no_dimension() -> None:
    image = np.full((8, 8), 2)
    image[0, 0] = -1  # a missing seed is nobody's neighbour
    result = box_counting(image)
    assert result.boundary_cells == 0 and result.box_counts == [0, 0, 0, 0]
    assert result.dimension is None and result.dimension_ci is None


def test_sub_grids_take_every_second_and_fourth_point() -> None:
    mapped = label_map("basin", ["a", "b"], straight(16, 8))
    assert [(b.side, b.stride) for b in mapped.box_counting] == [(16, 1), (8, 2), (4, 4)]
    assert [b.dimension for b in mapped.box_counting] == pytest.approx([1.0, 1.0, 1.0])
    assert mapped.box_counting[-1].dimension_ci is not None  # sizes 1, 2, 4


def test_a_smooth_boundary_sits_below_shuffled_labels_and_noise_inside_them() -> None:
    i, j = np.indices((16, 16))
    smooth = label_map("planted", ["a", "b"], (i + 2 * j > 20).astype(int))
    assert smooth.box_counting[0].dimension < smooth.shuffled_dimension_ci[0]
    noise = label_map("noise", ["a", "b"], np.random.default_rng(1).integers(0, 2, (16, 16)))
    low, high = noise.shuffled_dimension_ci
    assert low <= noise.box_counting[0].dimension <= high
    assert label_map("one", ["a"], np.zeros((8, 8), int)).shuffled_dimension is None


label_images = st.integers(2, 5).flatmap(lambda log_side: arrays(
    np.int64, (2 ** log_side, 2 ** log_side), elements=st.integers(-1, 3)) if log_side < 5 else st.builds(
    lambda seed: np.random.default_rng(seed).integers(-1, 4, (32, 32)), st.integers(0, 2**32 - 1)))


@settings(max_examples=40, deadline=None)
@given(label_images, st.permutations([0, 1, 2, 3]))
def test_box_counting_ignores_label_names_and_transposition(image: np.ndarray, relabel: list[int]) -> None:
    renamed = np.where(image >= 0, np.asarray(relabel)[image.clip(0)], -1)
    reference = box_counting(image)
    for other in (renamed, image.T):
        result = box_counting(other)
        assert (result.box_counts, result.boundary_cells) == (reference.box_counts, reference.boundary_cells)
        assert result.dimension == reference.dimension


@settings(max_examples=40, deadline=None)
@given(label_images)
def test_boundary_marks_and_box_counts_are_consistent(image: np.ndarray) -> None:
    cells, edges = boundary_cells(image), boundary_edges(image)
    assert not (edges & ~cells).any()                      # one side of every boundary edge is a boundary cell
    assert np.array_equal(cells, boundary_cells(image[::-1, ::-1])[::-1, ::-1])  # cells do not depend on direction
    sizes, counts = box_counts(edges)
    assert counts[0] == edges.sum()
    assert all(later <= earlier for earlier, later in zip(counts, counts[1:], strict=False))
    assert all(count * size ** 2 >= counts[0] for size, count in zip(sizes, counts, strict=True))


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_init_map_through_the_cli(tmp_path) -> None:
    from typer.testing import CliRunner

    from rlbasins.cli import app
    from rlbasins.core.checkpoints import load_policy
    from rlbasins.core.store import RunDir, read_json
    from tests.conftest import write_yaml

    data = tiny_cueconflict_config()
    data.update(name="plane", seeds={"count": 9, "vary": ["init"], "init_plane": {"resolution": 3, "span": 1.0}})
    data["ppo"]["total_timesteps"] = 2048
    data["checkpoints"] = {"every": 2048}
    data["analysis"].update(early={"detectors": []}, training_length={"enabled": False},
                            basin_count={"enabled": False})
    result = CliRunner().invoke(app, ["run", str(write_yaml(tmp_path / "plane.yaml", data)), "--runs-dir",
                                      str(tmp_path / "runs"), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "init map" in result.output and "3×3 grid" in result.output

    run = RunDir(tmp_path / "runs" / "plane")
    cfg = load_config(run.config_path)
    mapped = read_json(run.analysis_dir / "init_map.json")
    assert mapped["resolution"] == 3 and sorted(mapped["seeds"]) == list(range(9))
    assert [m["name"] for m in mapped["maps"]] == ["behavioural basin", "preferred strategy"]
    behavior = read_json(run.analysis_dir / "behavior.json")
    basin_labels = read_json(run.analysis_dir / "basins.json")["behaviour"]["clustering"]["labels"]
    for position, k in enumerate(behavior["seeds"]):
        i, j = divmod(k, 3)
        assert mapped["maps"][0]["image"][i][j] == basin_labels[position]
        fractions = behavior["heldout_labels_greedy"][position]
        assert mapped["outcome"][i][j] == fractions[mapped["outcome_label"]]
        first, second = (fractions[label] for label in behavior["labels"][:2])
        assert mapped["maps"][1]["image"][i][j] == (0 if first > second else 1 if second > first else 2)

    first, _ = load_policy(run, 0, step=0)
    origin, u, v = plane_basis(cfg, first.obs_shape, first.n_actions)
    for k in range(9):
        a, b = mapped["coordinates"][k // 3], mapped["coordinates"][k % 3]
        policy, _ = load_policy(run, k, step=0)
        for name, value in policy.state_dict().items():
            torch.testing.assert_close(value.double(), origin[name] + a * u[name] + b * v[name], rtol=2**-23,
                                       atol=1e-12)

    page = run.report_path.read_text()
    assert '<section id="init-map">' in page
    section = page[page.index('<section id="init-map">'):]
    section = section[:section.index("</section>")]
    assert section.count('src="data:image/png;base64,') == 2

