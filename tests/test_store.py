"""Run store: atomic files, hash-checked checkpoints, one writer per run directory."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlbasins.core.store import CorruptFileError, RunDir, StoreError, run_lock
from tests.conftest import lock_held_by_another_process


def _save(store, step: int, value: float = 1.0):
    return store.save(step, {"w": torch.full((4, 3), value)}, {"step": step},
                      {"rng": torch.arange(5)}, {"note": "state"})


def test_checkpoint_round_trip_and_index(tmp_path: Path) -> None:
    store = RunDir(tmp_path).seed(0)
    _save(store, 0, 0.0)
    _save(store, 128, 2.0)
    assert [e.step for e in store.entries()] == [0, 128]
    weights, meta = store.load_policy(128)
    assert torch.equal(weights["w"], torch.full((4, 3), 2.0)) and meta == {"step": 128}
    state, state_meta = store.load_state(0)
    assert torch.equal(state["rng"], torch.arange(5)) and state_meta == {"note": "state"}


def test_truncated_checkpoint_is_named(tmp_path: Path) -> None:
    store = RunDir(tmp_path).seed(3)
    _save(store, 256)
    path = store.policy_path(256)
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(CorruptFileError) as info:
        store.load_policy(256)
    assert info.value.path == path and "256.safetensors" in str(info.value)


@settings(max_examples=25, deadline=None)
@given(byte=st.integers(0, 10_000), bit=st.integers(0, 7))
def test_any_flipped_bit_is_detected(tmp_path_factory, byte, bit) -> None:
    store = RunDir(tmp_path_factory.mktemp("flip")).seed(0)
    _save(store, 64)
    path = store.state_path(64)
    data = bytearray(path.read_bytes())
    data[byte % len(data)] ^= 1 << bit
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="64.state.safetensors"):
        store.load_state(64)


def test_corrupt_index_is_named(tmp_path: Path) -> None:
    store = RunDir(tmp_path).seed(0)
    _save(store, 0)
    store.index_path.write_text('[{"step": 0, "fil')
    with pytest.raises(CorruptFileError, match="index.json"):
        store.last()


def test_lock_refuses_a_second_process(tmp_path: Path) -> None:
    with lock_held_by_another_process(tmp_path) as holder:
        with pytest.raises(StoreError, match=f"in use by another rlbasins process \\(pid {holder.pid}\\)"):
            with run_lock(tmp_path):
                pass
    deadline = time.time() + 10
    while True:  # a killed holder leaves no stale lock
        try:
            with run_lock(tmp_path):
                break
        except StoreError:
            assert time.time() < deadline
            time.sleep(0.05)


def test_seed_indices_come_back_in_numeric_order() -> None:
    manifest = {"seeds": {str(k): {"status": "finished" if k % 3 else "failed"} for k in range(12)}}
    manifest = json.loads(json.dumps(manifest, sort_keys=True))  # as stored: "10" sorts before "2"
    assert RunDir.seeds_with_status(manifest, "finished") == [1, 2, 4, 5, 7, 8, 10, 11]
    assert RunDir.seeds_with_status(manifest, "failed", "finished") == list(range(12))
