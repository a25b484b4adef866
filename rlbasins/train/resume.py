"""Everything a PPO run needs to continue bit-identically, as tensors + JSON (no pickle).

Three kinds of state beyond the weights:

- optimizer state (``torch.optim`` state dicts), flattened to named tensors + JSON;
- random-number generators (torch CPU, numpy global, Python ``random``);
- environments: each layer of a gymnasium wrapper chain keeps its state in plain attributes
  (``state``, ``_np_random``, ``_elapsed_steps``, Monitor's episode sums, ...). We snapshot the
  attributes whose values are data — numbers, strings, arrays, numpy generators and
  containers of those — and skip references to other objects (the wrapped env, spaces,
  renderers). Restoring them into a freshly made env of the same id continues the episode.
  A layer that keeps its state in an object instead (the gridworlds' batched core) exposes
  ``get_state() -> dict of arrays`` and ``set_state(dict)``, which are used as well.
"""

from __future__ import annotations

import base64
import random
from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np
import torch

# --------------------------------------------------------------------------- JSON encoding of data values


class _NotData(Exception):
    """Raised for values that are references to objects rather than data."""


def encode(value: Any) -> Any:
    """A JSON-able, exactly reversible encoding of a data value; :class:`_NotData` otherwise."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise _NotData
        return {"__ndarray__": base64.b64encode(np.ascontiguousarray(value).tobytes()).decode(),
                "dtype": value.dtype.str, "shape": list(value.shape)}
    if isinstance(value, np.generic):
        return {"__npscalar__": encode(np.asarray(value))}
    if isinstance(value, np.random.Generator):
        return {"__generator__": value.bit_generator.state}
    if isinstance(value, deque):
        return {"__deque__": [encode(v) for v in value], "maxlen": value.maxlen}
    if isinstance(value, (list, tuple)):
        return {"__list__" if isinstance(value, list) else "__tuple__": [encode(v) for v in value]}
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"__dict__": {k: encode(v) for k, v in value.items()}}
    raise _NotData


def decode(obj: Any) -> Any:
    """Inverse of :func:`encode`."""
    if not isinstance(obj, dict):
        return obj
    if "__ndarray__" in obj:
        flat = np.frombuffer(base64.b64decode(obj["__ndarray__"]), dtype=np.dtype(obj["dtype"]))
        return flat.reshape(obj["shape"]).copy()
    if "__npscalar__" in obj:
        return decode(obj["__npscalar__"])[()]
    if "__generator__" in obj:
        state = obj["__generator__"]
        generator = np.random.Generator(getattr(np.random, state["bit_generator"])())
        generator.bit_generator.state = state
        return generator
    if "__deque__" in obj:
        return deque((decode(v) for v in obj["__deque__"]), maxlen=obj["maxlen"])
    if "__list__" in obj:
        return [decode(v) for v in obj["__list__"]]
    if "__tuple__" in obj:
        return tuple(decode(v) for v in obj["__tuple__"])
    return {k: decode(v) for k, v in obj["__dict__"].items()}


# --------------------------------------------------------------------------- environments


def _layers(env: gym.Env) -> list[Any]:
    layers = [env]
    while hasattr(layers[-1], "env"):
        layers.append(layers[-1].env)
    return layers


_SKIPPED_ATTRIBUTES = {"spec", "metadata", "_saved_kwargs", "t_start", "episode_times"}  # identity, wall-clock


def snapshot_env(env: gym.Env) -> list[dict[str, Any]]:
    """The data attributes of every layer of ``env``'s wrapper chain, outermost first."""
    snapshot = []
    for layer in _layers(env):
        attributes = {}
        for name, value in vars(layer).items():
            if name in _SKIPPED_ATTRIBUTES:
                continue
            try:
                attributes[name] = encode(value)
            except _NotData:
                continue
        entry = {"class": type(layer).__name__, "attributes": attributes}
        if callable(getattr(layer, "get_state", None)):  # envs whose state lives in an object (e.g. a core)
            entry["state"] = encode(layer.get_state())
        snapshot.append(entry)
    return snapshot


def restore_env(env: gym.Env, snapshot: list[dict[str, Any]]) -> None:
    """Put a freshly made env (same id and kwargs) into the state captured by :func:`snapshot_env`."""
    layers = _layers(env)
    classes = [type(layer).__name__ for layer in layers]
    if classes != [entry["class"] for entry in snapshot]:
        raise ValueError(f"env wrapper chain {classes} differs from the checkpoint's "
                         f"{[entry['class'] for entry in snapshot]}")
    for layer, entry in zip(layers, snapshot, strict=True):
        for name, value in entry["attributes"].items():
            setattr(layer, name, decode(value))
        if "state" in entry:
            layer.set_state(decode(entry["state"]))


# --------------------------------------------------------------------------- random-number generators


def snapshot_rngs() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Global torch CPU, numpy and Python RNG states as (tensors, JSON)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    tensors = {"rng.torch": torch.get_rng_state(),
               "rng.numpy_keys": torch.from_numpy(keys.astype(np.int64))}
    meta = {"numpy": [name, int(pos), int(has_gauss), float(cached)], "python": encode(random.getstate())}
    return tensors, meta


def restore_rngs(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    name, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((name, tensors["rng.numpy_keys"].numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["rng.torch"])
    random.setstate(decode(meta["python"]))


# --------------------------------------------------------------------------- optimizers


def flatten_optimizer(state_dict: dict[str, Any], prefix: str = "optim") -> tuple[dict[str, torch.Tensor], Any]:
    """Split a ``torch.optim`` state dict into named tensors and JSON (param groups, scalars)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param_id, param_state in state_dict["state"].items():
        for key, value in param_state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}.{param_id}.{key}"] = value
            else:
                scalars.setdefault(str(param_id), {})[key] = value
    return tensors, {"param_groups": encode(state_dict["param_groups"]), "scalars": scalars}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: Any, prefix: str = "optim") -> dict[str, Any]:
    """Inverse of :func:`flatten_optimizer`."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith(prefix + "."):
            param_id, key = name[len(prefix) + 1:].split(".", 1)
            state.setdefault(int(param_id), {})[key] = value
    for param_id, values in meta["scalars"].items():
        state.setdefault(int(param_id), {}).update(values)
    return {"state": state, "param_groups": decode(meta["param_groups"])}
