"""Read the pipeline's per-(cell, seed, dataset) results and aggregate them over seeds.

Layout (``smart.paths``):

* ``<metrics_dir>/<cell>/s<seed>/<dataset>.json`` — flat metrics in percent (``PQ``, ``mIoU``, …),
  written by ``python -m smart eval-cell``;
* ``<train_dir>/<cell>/s<seed>/summary.json`` — training summary (``iterations``, ``train_seconds``, …).

A cell's number in a table is the mean over its seeds; with more than one seed the sample standard
deviation (n − 1) is reported next to it. Seeds whose file is missing are skipped (a partially built
grid still renders; the table says how many seeds each number averages).
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Stat", "cell_metric", "cell_summary", "format_stat", "read_json_or_none"]


@dataclass(frozen=True)
class Stat:
    """A number aggregated over seeds."""

    mean: float | None
    std: float | None  # sample std over seeds; None with fewer than two seeds
    n: int  # seeds with a value
    values: tuple[float, ...] = ()

    @classmethod
    def of(cls, values: list[float]) -> Stat:
        vals = tuple(float(v) for v in values if v is not None and math.isfinite(float(v)))
        if not vals:
            return cls(None, None, 0, ())
        return cls(statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else None, len(vals), vals)


def read_json_or_none(path: str | Path) -> dict | None:
    path = Path(path)
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def cell_metric(metrics_dir: str | Path, cell: str, dataset: str, key: str, seeds: list[int] | tuple[int, ...]) -> Stat:
    """``key`` of ``<metrics_dir>/<cell>/s<seed>/<dataset>.json`` over ``seeds``."""
    vals = []
    for s in seeds:
        rec = read_json_or_none(Path(metrics_dir) / cell / f"s{s}" / f"{dataset}.json")
        if rec is not None and rec.get(key) is not None:
            vals.append(rec[key])
    return Stat.of(vals)


def cell_summary(train_dir: str | Path, cell: str, key: str, seeds: list[int] | tuple[int, ...]) -> Stat:
    """``key`` of the training summaries ``<train_dir>/<cell>/s<seed>/summary.json`` over ``seeds``."""
    vals = []
    for s in seeds:
        rec = read_json_or_none(Path(train_dir) / cell / f"s{s}" / "summary.json")
        if rec is not None and rec.get(key) is not None:
            vals.append(rec[key])
    return Stat.of(vals)


def format_stat(st: Stat, digits: int = 1) -> str:
    """``"27.5"``, ``"27.5 ± 0.4"`` (several seeds) or ``"–"`` (no value)."""
    if st.mean is None:
        return "–"
    if st.std is None:
        return f"{st.mean:.{digits}f}"
    return f"{st.mean:.{digits}f} ± {st.std:.{digits}f}"
