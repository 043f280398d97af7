"""The one type-driven validator of params.yaml (and of every config read from a file).

Types come from the config dataclasses' annotations (``iterations: int``, ``betas: tuple[float, float]``,
``clip_pretrained: str | None``) or from a section's schema mapping (``{"seed": int, "sizes": {...}}``).
Every check raises :class:`~smart.errors.ConfigError` naming the key path (``train_defaults.mini.lr``)
and the file. What a type cannot say — ranges, choices, rules between fields — each config states in
its ``validate`` method, after this module has checked the types.

* :func:`check_value` — one value against one type (lists become tuples where a tuple is declared);
* :func:`check_fields` — every field of a dataclass instance against its annotation;
* :func:`from_mapping` — a dataclass from a mapping: unknown and (optionally) missing keys, then types;
* :func:`check_schema` — a mapping against a schema mapping (nested sections of params.yaml).

Torch-free.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from smart.errors import ConfigError

Source = str | Path | None


class _NumberMeta(type):
    def __instancecheck__(cls, value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)


class number(metaclass=_NumberMeta):
    """Schema type: an int or a float (not a bool)."""


def _name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    if tp in (float, number):
        return "a number"
    if tp is int:
        return "an integer"
    if tp is bool:
        return "true or false"
    if tp is str:
        return "a string"
    if tp in (dict, Mapping) or typing.get_origin(tp) in (dict, Mapping):
        return "a mapping"
    if tp in (list, tuple) or typing.get_origin(tp) in (list, tuple):
        return "a list"
    return getattr(tp, "__name__", str(tp))


def check_value(value: Any, tp: Any, *, field: str, source: Source = None) -> Any:
    """``value`` checked against the type ``tp``; returns it normalised (lists → tuples where ``tp`` is a
    tuple type). Errors name ``field``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        for t in args:
            try:
                return check_value(value, t, field=field, source=source)
            except ConfigError:
                continue
        names = " or ".join(_name(t) for t in args)
        raise ConfigError(f"expected {names}, got {value!r}", path=source, field=field)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"expected one of {', '.join(map(str, args))}, got {value!r}", path=source, field=field)
        return value
    if tp is Any:
        return value
    if tp is type(None):
        if value is not None:
            raise ConfigError(f"expected null, got {value!r}", path=source, field=field)
        return None
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"expected true or false, got {value!r}", path=source, field=field)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"expected an integer, got {value!r}", path=source, field=field)
        return value
    if tp in (float, number):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"expected a number, got {value!r}", path=source, field=field)
        return float(value) if tp is float else value  # a float field holds a float (2 -> 2.0)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"expected a string, got {value!r}", path=source, field=field)
        return value
    if tp in (dict, Mapping) or origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"expected a mapping, got {value!r}", path=source, field=field)
        if args:
            return {k: check_value(v, args[1], field=f"{field}.{k}", source=source) for k, v in value.items()}
        return value
    if tp in (list, tuple) or origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"expected a list, got {value!r}", path=source, field=field)
        if origin is tuple and args and args[-1] is not Ellipsis:  # fixed length
            if len(value) != len(args):
                raise ConfigError(f"expected {len(args)} values, got {value!r}", path=source, field=field)
            items = [check_value(v, t, field=f"{field}[{i}]", source=source) for i, (v, t) in enumerate(zip(value, args))]
        elif args:
            items = [check_value(v, args[0], field=f"{field}[{i}]", source=source) for i, v in enumerate(value)]
        else:
            items = list(value)
        return tuple(items) if (tp is tuple or origin is tuple) else items
    if isinstance(tp, type):
        if not isinstance(value, tp):
            raise ConfigError(f"expected {_name(tp)}, got {value!r}", path=source, field=field)
        return value
    raise TypeError(f"unsupported schema type {tp!r} for {field}")


@lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def check_fields(obj: Any, *, field_of: Callable[[str], str] = lambda k: k, source: Source = None) -> None:
    """Check every field of a (frozen) dataclass instance against its annotation, in place."""
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        value = check_value(getattr(obj, f.name), hints[f.name], field=field_of(f.name), source=source)
        object.__setattr__(obj, f.name, value)


def from_mapping(cls: type, data: Any, *, field_of: Callable[[str], str] = lambda k: k, source: Source = None,
                 require_all: bool = False) -> Any:
    """Build the dataclass ``cls`` from a mapping: no unknown key, every key when ``require_all``, every value
    of its declared type; then ``cls.validate`` (if any) checks ranges and rules between fields."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"expected a mapping, got {type(data).__name__}", path=source, field=field_of("").rstrip("."))
    names = [f.name for f in dataclasses.fields(cls)]
    if require_all:
        for key in names:
            if key not in data:
                raise ConfigError("missing key", path=source, field=field_of(key))
    for key in data:
        if key not in names:
            raise ConfigError(f"unknown key (allowed: {', '.join(names)})", path=source, field=field_of(key))
    obj = object.__new__(cls)  # checked with params-aware field names before any __post_init__
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        object.__setattr__(obj, f.name, data.get(f.name, default))
    check_fields(obj, field_of=field_of, source=source)
    if hasattr(obj, "validate"):
        obj.validate(field_of=field_of, source=source)
    return obj


def check_schema(value: Any, schema: Any, *, key: str, source: Source = None) -> None:
    """A mapping against a schema mapping (nested): exactly the schema's keys, each of its type; a plain
    ``int`` of a section schema is a count or size and must be non-negative."""
    if isinstance(schema, dict):
        if not isinstance(value, Mapping):
            raise ConfigError(f"expected a mapping, got {type(value).__name__}", path=source, field=key)
        for k in schema:
            if k not in value:
                raise ConfigError("missing key", path=source, field=f"{key}.{k}")
        for k in value:
            if k not in schema:
                raise ConfigError(f"unknown key (allowed: {', '.join(schema)})", path=source, field=f"{key}.{k}")
            check_schema(value[k], schema[k], key=f"{key}.{k}", source=source)
        return
    tp = typing.Union[schema] if isinstance(schema, tuple) else schema  # noqa: UP007 - a tuple of types
    check_value(value, tp, field=key, source=source)
    if schema is int and value < 0:
        raise ConfigError(f"expected a non-negative integer, got {value}", path=source, field=key)
