"""Typed results: a study's dataclass is saved as JSON (:func:`to_json`, which is :func:`dataclasses.asdict`
but for renamed fields) and loaded back into the same types (nested dataclasses, lists, dicts and optional
fields included).

A dataclass whose field has been renamed since its file format was fixed keeps the old key in the file with
a class attribute ``json_names: ClassVar[dict[str, str]] = {"field": "key in the file"}``.

A file written by an older rlbasins that lacks a required field is refused by name, with the command
that writes it again; fields added since with a default load as that default.
"""

from __future__ import annotations

import dataclasses
import types
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from rlbasins.core.store import atomic_write_json, read_json

R = TypeVar("R", bound="Result")


class StaleResultError(FileNotFoundError):
    """A result file without a field this version needs (written by an older rlbasins): analyse again."""


class Result:
    """Mixin of a ``@dataclass`` result: :meth:`save` and :meth:`load` round-trip it through JSON."""

    def save(self, path: Path) -> None:
        """Write ``to_json(self)`` to ``path`` atomically."""
        atomic_write_json(path, to_json(self))

    @classmethod
    def load(cls: type[R], path: Path) -> R:
        """The result saved at ``path``; :class:`StaleResultError` names a missing required field."""
        return from_json(cls, read_json(path), path)


def to_json(value: Any) -> Any:
    """A dataclass (nested ones too) as JSON-ready dicts and lists, each field under its ``json_names`` key."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = getattr(type(value), "json_names", {})
        return {names.get(f.name, f.name): to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value


def from_json(cls: type, data: dict[str, Any], path: Path) -> Any:
    """The dataclass ``cls`` from its :func:`to_json` JSON ``data`` (``path``: named in errors)."""
    hints = get_type_hints(cls)
    names = getattr(cls, "json_names", {})
    keys = {f.name: names.get(f.name, f.name) for f in dataclasses.fields(cls)}
    missing = sorted(keys[f.name] for f in dataclasses.fields(cls) if keys[f.name] not in data
                     and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
    if missing:
        raise StaleResultError(f"{path} was written by an older rlbasins (no {', '.join(missing)}); "
                               f"run `rlbasins analyze {Path(path).parent.parent}` again")
    return cls(**{name: _convert(hints[name], data[key], path) for name, key in keys.items() if key in data})


def _convert(hint: Any, value: Any, path: Path) -> Any:
    if value is None:
        return None
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(hint) if a is not type(None)]
        return _convert(options[0], value, path) if len(options) == 1 else value
    if dataclasses.is_dataclass(hint):
        return from_json(hint, value, path)
    if origin is list:
        (item,) = get_args(hint)
        return [_convert(item, v, path) for v in value]
    if origin is tuple:
        args = get_args(hint)
        items = args[:1] * len(value) if len(args) == 2 and args[1] is Ellipsis else args
        return tuple(_convert(a, v, path) for a, v in zip(items, value, strict=True))
    if origin is dict:
        _, item = get_args(hint)
        return {k: _convert(item, v, path) for k, v in value.items()}
    return value  # str, int, float, bool, Any, Literal: as JSON has them
