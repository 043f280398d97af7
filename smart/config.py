"""params.yaml: loading and validation.

params.yaml is the single source of truth of the pipeline: every value is written out explicitly
(no hidden defaults), and an invalid or missing key stops with an error that names it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from smart.errors import ConfigError

# Schema of the mini_world section: key -> type (nested dicts are checked recursively).
MINI_WORLD_SCHEMA: dict[str, Any] = {
    "seed": int,
    "image_size": int,
    "sizes": {"coco_train": int, "coco_val": int, "ade_val": int, "mapillary_val": int,
              "pascal_val": int, "refer_val": int},
    "captions": {"num_images": int, "image_size": int, "shard_size": int, "group_size": int},
}


def load_params(path: str | Path = "params.yaml") -> dict:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("params file not found", path=path) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML ({exc})", path=path) from None
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping at the top level", path=path)
    return data


def check_schema(value: Any, schema: Any, *, key: str, source: str | Path | None = None) -> None:
    """Raise :class:`ConfigError` naming the first key that is missing, unknown or mistyped."""
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            raise ConfigError(f"expected a mapping, got {type(value).__name__}", path=source, field=key)
        for k in schema:
            if k not in value:
                raise ConfigError("missing key", path=source, field=f"{key}.{k}")
        for k in value:
            if k not in schema:
                raise ConfigError(f"unknown key (allowed: {', '.join(schema)})", path=source, field=f"{key}.{k}")
            check_schema(value[k], schema[k], key=f"{key}.{k}", source=source)
        return
    if schema is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"expected an integer, got {value!r}", path=source, field=key)
        if value < 0:
            raise ConfigError(f"expected a non-negative integer, got {value}", path=source, field=key)
        return
    if not isinstance(value, schema):
        raise ConfigError(f"expected {schema.__name__}, got {value!r}", path=source, field=key)


SCHEMAS = {"mini_world": MINI_WORLD_SCHEMA}


def section(params: dict, key: str, *, source: str | Path | None = None) -> dict:
    """One top-level section of params, validated against its schema where one exists."""
    if key not in params:
        raise ConfigError("missing section", path=source, field=key)
    value = params[key]
    if key in SCHEMAS:
        check_schema(value, SCHEMAS[key], key=key, source=source)
    if key == "mini_world":
        if value["image_size"] < 32 or value["image_size"] % 8:
            raise ConfigError("image_size must be a multiple of 8 and at least 32", path=source,
                              field="mini_world.image_size")
        if value["captions"]["shard_size"] < 1 or value["captions"]["group_size"] < 1:
            raise ConfigError("shard_size and group_size must be positive", path=source, field="mini_world.captions")
    return value


CELL_KEYS = {"model", "paper_only"}


def cell_names(params: dict) -> list[str]:
    """The cells of the experiment grid that run in the active profile."""
    cells = section(params, "cells")
    if not isinstance(cells, dict) or not cells:
        raise ConfigError("expected a non-empty mapping of cell name -> overrides", field="cells")
    mini = params.get("profile") == "mini"
    return [c for c, v in cells.items() if not (mini and (v or {}).get("paper_only"))]


def model_config(params: dict, cell: str, *, profile: str | None = None, source: str | Path | None = None):
    """The resolved :class:`~smart.model.config.SmartModelConfig` of one cell: the profile's ``model``
    entry with the cell's ``model`` overrides on top. Errors name the params key."""
    from smart.model.config import SmartModelConfig

    profile = profile or params.get("profile")
    models = section(params, "model", source=source)
    if profile not in models:
        raise ConfigError(f"no model entry for profile {profile!r}", path=source, field=f"model.{profile}")
    cells = section(params, "cells", source=source)
    if cell not in cells:
        raise ConfigError(f"unknown cell; have {', '.join(cells)}", path=source, field=f"cells.{cell}")
    overrides = cells[cell] or {}
    if not isinstance(overrides, dict):
        raise ConfigError("expected a mapping", path=source, field=f"cells.{cell}")
    for k in overrides:
        if k not in CELL_KEYS:
            raise ConfigError(f"unknown key (allowed: {', '.join(sorted(CELL_KEYS))})", path=source,
                              field=f"cells.{cell}.{k}")
    merged = {**(models[profile] or {}), **(overrides.get("model") or {})}
    try:
        return SmartModelConfig.from_dict(merged, source=source)
    except ConfigError as exc:
        field = exc.field
        where = f"cells.{cell}.model.{field}" if field in (overrides.get("model") or {}) else f"model.{profile}.{field}"
        raise ConfigError(exc.message, path=source, field=where) from None
