"""Class groups of the mini world (seen / novel combination / novel attribute) read from ``vocab/world.json``.

The groups are defined in :mod:`smart.data.mini.world` (``Concept.group``) and written by ``make-mini vocab``.
Evaluation, the dataset check and the referring benchmark report their numbers per group with them. Real
datasets have no such file: there every function returns None and no group numbers are reported.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from smart.errors import InputError

GROUPS = ("seen", "novel_combination", "novel_attribute")
SHORT = {"seen": "seen", "novel_combination": "novel_comb", "novel_attribute": "novel_attr"}  # metric suffixes


def _world(root: str | Path) -> dict | None:
    path = Path(root) / "vocab" / "world.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the mini world's description: {exc}", path=path) from None


def groups_by_name(root: str | Path) -> dict[str, str] | None:
    """Class name -> group of every class of the mini world under ``root``; None without ``vocab/world.json``."""
    w = _world(root)
    if w is None:
        return None
    if any("group" not in c for c in w["universe"]):
        raise InputError("world.json has no class groups: regenerate the mini world (make-mini vocab)",
                         path=Path(root) / "vocab" / "world.json", field="universe.group")
    return {c["name"]: c["group"] for c in w["universe"]}


def groups_by_index(root: str | Path) -> dict[int, str] | None:
    """Universe index -> group (the referring sets' ``category_id``); None without ``vocab/world.json``."""
    w = _world(root)
    if w is None:
        return None
    return {int(c["index"]): c["group"] for c in w["universe"] if "group" in c} or None


def vocabulary_groups(root: str | Path, names: Sequence[str]) -> list[str] | None:
    """The group of each class of a benchmark's vocabulary (contiguous order), or None outside the mini world.

    Raises:
        InputError: a class name the mini world does not know.
    """
    by_name = groups_by_name(root)
    if by_name is None:
        return None
    missing = [n for n in names if n not in by_name]
    if missing:
        raise InputError(f"classes not in the mini world: {', '.join(missing[:5])}",
                         path=Path(root) / "vocab" / "world.json", field="universe")
    return [by_name[n] for n in names]
