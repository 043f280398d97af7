"""Run records: the timing and provenance of a job, kept apart from the results it writes.

A result file (metrics, a training summary, an evaluation detail, a pretrained model's record) holds
only what the run computed, so that rerunning a job with nothing changed writes it byte for byte again
(``git status`` stays clean, ``dvc status`` sees nothing new, ``dvc metrics diff`` shows only numbers
that moved). What differs from run to run — wall-clock times, speeds, peak memory, the commit the code
was at, whether the run resumed — goes to a *run record* beside it, ``<file>.run.json``, which git
ignores (``.gitignore``) and DVC does not hash (``.dvcignore``). Table 2, a table of measured speeds, is
the one product built from run records (its files change when it is rebuilt).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from smart.io import atomic_path, write_json

# Keys whose values differ between two runs of the same job (at any depth of a record).
VOLATILE_KEYS = frozenset({
    "time", "data_time", "eta_seconds", "seconds", "data_seconds", "train_seconds", "eval_seconds", "it_per_s",
    "images_per_s", "steps_per_s", "steps_per_minute", "max_mem", "max_mem_mb", "start_iteration",
    "resumed_from_step", "git_sha",
})
SUFFIX = ".run.json"


def run_record_path(path: str | Path) -> Path:
    """The run record of a result file: ``<file>.run.json`` beside it."""
    return Path(f"{path}{SUFFIX}")


def git_sha() -> str | None:
    """The commit of the code that runs (None outside a git checkout)."""
    try:
        r = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False,
                           cwd=Path(__file__).resolve().parent)
        return (r.stdout.strip() or None) if r.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def split(record: Any, keys: Iterable[str] = VOLATILE_KEYS) -> tuple[Any, dict]:
    """``(stable, volatile)``: ``record`` without the volatile keys (recursively through mappings), and
    those keys with their values under the same nesting."""
    keys = frozenset(keys)
    if not isinstance(record, Mapping):
        return record, {}
    stable, volatile = {}, {}
    for k, v in record.items():
        if k in keys:
            volatile[k] = v
            continue
        s, vol = split(v, keys)
        stable[k] = s
        if vol:
            volatile[k] = vol
    return stable, volatile


def write_result(path: str | Path, record: Mapping, *, keys: Iterable[str] = VOLATILE_KEYS,
                 extra: Mapping | None = None) -> dict:
    """Write ``record`` without its volatile keys to ``path`` (atomically) and those keys, ``extra`` and the
    commit to its run record. Returns the stable record."""
    stable, volatile = split(record, keys)
    write_json(path, stable)
    write_json(run_record_path(path), {**volatile, **(extra or {}), "git_sha": git_sha()})
    return stable


def write_jsonl_result(path: str | Path, records: Iterable[Mapping], *,
                       keys: Iterable[str] = VOLATILE_KEYS) -> None:
    """A JSON-lines log: the stable part of each line to ``path``, the volatile parts (one list) to its
    run record."""
    stable, volatile = [], []
    for rec in records:
        s, v = split(rec, keys)
        stable.append(s)
        volatile.append(v)
    with atomic_path(path) as tmp:
        Path(tmp).write_text("".join(json.dumps(r, allow_nan=True) + "\n" for r in stable), encoding="utf-8")
    write_json(run_record_path(path), {"lines": volatile, "git_sha": git_sha()})


def read_run_record(path: str | Path) -> dict:
    """The run record of a result file ({} when there is none, e.g. results checked out without it)."""
    p = run_record_path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
