"""Resume state: data values, envs, RNGs and optimizers round-trip exactly through tensors + JSON."""

from __future__ import annotations

import json
import random
from collections import deque

import gymnasium as gym
import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from stable_baselines3.common.monitor import Monitor

import envs  # noqa: F401  (registers the rlbasins/* ids)
from rlbasins.train.resume import (
    decode,
    encode,
    flatten_optimizer,
    restore_env,
    restore_rngs,
    snapshot_env,
    snapshot_rngs,
    unflatten_optimizer,
)

arrays = hnp.arrays(dtype=st.sampled_from([np.float32, np.float64, np.int64, np.bool_, np.uint8]),
                    shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=4))
values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(), arrays),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.tuples(inner, inner),
                            st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=8)


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape and \
            np.array_equal(a, b, equal_nan=True)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b and type(a) is type(b)


@given(values)
def test_encode_then_decode_is_identity_through_json(value) -> None:
    assert _same(decode(json.loads(json.dumps(encode(value)))), value)


def test_generator_and_deque_round_trip() -> None:
    generator = np.random.default_rng(5)
    generator.random(3)
    restored = decode(json.loads(json.dumps(encode(generator))))
    assert np.array_equal(restored.random(10), generator.random(10))
    queue = deque([{"r": 1.0, "l": 3}], maxlen=4)
    assert decode(encode(queue)) == queue and decode(encode(queue)).maxlen == 4


@settings(max_examples=30, deadline=None)
@given(env_id=st.sampled_from(["CartPole-v1", "rlbasins/CueConflict-v0", "rlbasins/GoalOrPlace-v0"]),
       seed=st.integers(0, 2**31 - 1), steps_before=st.integers(0, 60),
       actions=st.lists(st.integers(0, 1), min_size=1, max_size=80))
def test_restored_env_continues_identically(env_id, seed, steps_before, actions) -> None:
    """Snapshot mid-training (across episode ends), restore into a fresh env: the future is the same."""
    def make():
        return Monitor(gym.make(env_id))

    original = make()
    original.reset(seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(steps_before):
        _, _, terminated, truncated, _ = original.step(int(rng.integers(2)))
        if terminated or truncated:
            original.reset()
    snapshot = json.loads(json.dumps(snapshot_env(original)))
    copy = make()
    restore_env(copy, snapshot)

    def future(env):
        trace = []
        for action in actions:
            obs, reward, terminated, truncated, _ = env.step(action)
            trace.append((obs.tolist(), reward, terminated, truncated))
            if terminated or truncated:
                trace.append(env.reset()[0].tolist())  # resets draw from the env's own generator
        return trace

    assert future(copy) == future(original)


def test_rng_snapshot_restores_all_generators() -> None:
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    tensors, meta = snapshot_rngs()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    restore_rngs(tensors, json.loads(json.dumps(meta)))
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1]) and expected[2] == again[2]


def test_optimizer_state_round_trip() -> None:
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-5)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    tensors, meta = flatten_optimizer(optimizer.state_dict())
    fresh = torch.optim.Adam(model.parameters(), lr=5.0)
    fresh.load_state_dict(unflatten_optimizer(tensors, json.loads(json.dumps(meta))))
    original, restored = optimizer.state_dict(), fresh.state_dict()
    assert restored["param_groups"] == original["param_groups"]
    for key in original["state"]:
        for name, value in original["state"][key].items():
            assert torch.equal(restored["state"][key][name], value)
