"""Class groups of the mini world (seen / novel combination / novel attribute) read from ``vocab/world.json``.

The groups are defined in :mod:`smart.data.mini.world` (``Concept.group``) and written by ``make-mini vocab``.
Evaluation, the dataset check and the referring benchmark report their numbers per group with them. Real
datasets have no such file: there every function returns None and no group numbers are reported.
"""

from __future__ import annotations

import json
from pathlib import Path

from smart.data.mini.world import GROUPS
from smart.errors import InputError

__all__ = ["GROUPS", "SHORT", "groups_by_index", "groups_by_name"]

SHORT = {"seen": "seen", "novel_combination": "novel_comb", "novel_attribute": "novel_attr"}  # metric suffixes


def _universe(root: str | Path) -> list[dict] | None:
    """The classes of ``vocab/world.json`` (each with its ``group``); None where the file does not exist."""
    path = Path(root) / "vocab" / "world.json"
    if not path.is_file():
        return None
    try:
        universe = json.loads(path.read_text())["universe"]
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"cannot read the mini world's description: {exc}", path=path) from None
    if any("group" not in c for c in universe):
        raise InputError("world.json has no class groups: regenerate the mini world (make-mini vocab)",
                         path=path, field="universe.group")
    return universe


def groups_by_name(root: str | Path) -> dict[str, str] | None:
    """Class name -> group of every class of the mini world under ``root``; None without ``vocab/world.json``."""
    universe = _universe(root)
    return None if universe is None else {c["name"]: c["group"] for c in universe}


def groups_by_index(root: str | Path) -> dict[int, str] | None:
    """Universe index -> group (the referring sets' ``category_id``); None without ``vocab/world.json``."""
    universe = _universe(root)
    return None if universe is None else {int(c["index"]): c["group"] for c in universe}
