"""Typed results (:mod:`rlbasins.core.results`): every study's result saves as ``asdict`` JSON and loads back
into the same types, and a file from an older rlbasins is refused by the field it lacks."""

from __future__ import annotations

import dataclasses
import json
import types
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlbasins.analysis.barriers import BarrierStudy
from rlbasins.analysis.basin_count import BasinCount
from rlbasins.analysis.basins import BasinsResult
from rlbasins.analysis.behavior import BehaviorResult
from rlbasins.analysis.early import EarlyDetection
from rlbasins.analysis.init_map import InitMap
from rlbasins.analysis.seed_factors import SeedFactorStudy
from rlbasins.analysis.training_length import BasinTrajectory
from rlbasins.core.results import Result, StaleResultError
from rlbasins.core.store import read_json
from rlbasins.studies.steering import SteeringResult
from rlbasins.studies.sweep import SweepResult

RESULTS = [BehaviorResult, BasinsResult, BarrierStudy, EarlyDetection, BasinTrajectory, BasinCount, InitMap,
           SeedFactorStudy, SteeringResult, SweepResult]


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                    max_leaves=6)


def strategy_for(hint):
    """Small values of a result field's type; ``Any`` (free-form JSON sections) as any JSON value."""
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any:
        return JSON
    if dataclasses.is_dataclass(hint):
        hints = get_type_hints(hint)
        return st.builds(hint, **{f.name: strategy_for(hints[f.name]) for f in dataclasses.fields(hint)})
    if origin in (Union, types.UnionType):
        return st.one_of([strategy_for(a) for a in args])
    if origin is list:
        return st.lists(strategy_for(args[0]), max_size=3)
    if origin is dict:
        return st.dictionaries(st.text(max_size=5), strategy_for(args[1]), max_size=3)
    if origin is tuple:
        return st.tuples(*map(strategy_for, args))
    return st.from_type(hint)


def _types_match(a, b) -> bool:
    """The same values with the same Python types all the way down (a dict is not a dataclass)."""
    if type(a) is not type(b):
        return False
    if dataclasses.is_dataclass(a):
        return all(_types_match(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(map(_types_match, a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_types_match(a[k], b[k]) for k in a)
    return a == b or (isinstance(a, float) and a != a and b != b)  # NaN is NaN


@pytest.mark.parametrize("cls", RESULTS, ids=lambda c: c.__name__)
def test_every_study_result_is_a_typed_result(cls) -> None:
    assert dataclasses.is_dataclass(cls) and issubclass(cls, Result)


@pytest.mark.parametrize("cls", RESULTS, ids=lambda c: c.__name__)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                                  HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_save_then_load_gives_back_the_same_typed_result(cls, data, tmp_path: Path) -> None:
    original = data.draw(strategy_for(cls))
    path = tmp_path / "result.json"
    original.save(path)
    expected = _file_keys(dataclasses.asdict(original))
    assert json.dumps(read_json(path), sort_keys=True) == json.dumps(expected, sort_keys=True)
    assert _types_match(type(original).load(path), original)


FILE_KEYS = {"behavior": "behaviour", "behavior_k": "behaviour_k"}
"""The fields whose file key keeps the spelling the file format was fixed with (docs/architecture.md, Names)."""


def _file_keys(value):
    """``asdict`` output with the renamed fields under their file keys."""
    if isinstance(value, dict):
        return {FILE_KEYS.get(k, k): _file_keys(v) for k, v in value.items()}
    return [_file_keys(v) for v in value] if isinstance(value, list) else value


def test_renamed_fields_keep_the_file_format(tmp_path: Path) -> None:
    clustering = {"method": "spectral", "k": 1, "labels": [0, 0], "criterion": "eigengap", "scores": [0.5]}
    basin = {"index": 0, "size": 2, "share": 1.0, "share_ci": [0.3, 1.0], "label": None, "label_purity": None,
             "seeds": [0, 1], "medoid": 0, "examples": [0, 1]}
    file = {"seeds": [0, 1], "planted": None, "agreement": {"ari": 1.0, "low": 1.0, "high": 1.0},
            "behaviour": {"distance": "tv", "clustering": clustering, "basins": [basin],
                          "stability": {"mean_ari": 1.0, "low": 1.0, "high": 1.0, "resamples": 50}},
            "weights": {"distance": "barrier", "clustering": clustering, "basins": None},
            "planted_ari": None, "preference_verdict": None, "seconds": {}}
    path = tmp_path / "basins.json"
    path.write_text(json.dumps(file))
    loaded = BasinsResult.load(path)  # as every basins.json before the rename was written
    assert loaded.behavior.basins[0].seeds == [0, 1] and loaded.behavior.clustering.k == 1
    loaded.save(tmp_path / "again.json")
    again = read_json(tmp_path / "again.json")  # the same keys (fields added since load as their defaults)
    assert set(again) == set(file) and again["behaviour"]["basins"] == file["behaviour"]["basins"]
    assert again["behaviour"]["clustering"] == clustering and again["weights"]["basins"] is None


def test_a_file_without_a_required_field_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "run" / "analysis" / "behavior.json"
    path.parent.mkdir(parents=True)
    required = [f.name for f in dataclasses.fields(BehaviorResult) if f.default is dataclasses.MISSING]
    path.write_text(json.dumps({name: [] for name in required if name != "noise_total_variation"}))
    with pytest.raises(StaleResultError, match=f"no noise_total_variation.*rlbasins analyze {tmp_path / 'run'}"):
        BehaviorResult.load(path)
