"""Paper tables as CSV (+ Markdown and LaTeX renders): reproduced rows next to the paper's rows.

Paper numbers come only from ``smart/report/paper_numbers.yaml``. Reproduced numbers come from the
per-(cell, seed, dataset) metric files ``<metrics_dir>/<cell>/s<seed>/<dataset>.json`` written by
``python -m smart eval-cell`` (keys ``PQ`` and ``mIoU`` in percent), averaged over the cell's seeds
(``smart.report.collect``). Which cell fills which row is params.yaml ``report``. In the paper profile, a
reproduced row of a cell that maps to a paper row gets ``delta_<column>`` = ours − paper; mini-profile
rows leave the deltas empty (a different world and model: the difference would compare nothing).

The CSV keeps full numbers (mean and ``_std`` columns); the Markdown and LaTeX renders show one
decimal, as the paper, with ``mean ± std`` where a cell has several seeds.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from smart.errors import ConfigError
from smart.paths import TABLE3_PARTS
from smart.report.collect import Stat, cell_metric

# Table 1 column -> (dataset alias, metric key in the metrics JSON)
TABLE1_COLUMNS = {
    "coco_PQ": ("coco", "PQ"), "coco_mIoU": ("coco", "mIoU"),
    "ade150_PQ": ("ade150", "PQ"), "ade150_mIoU": ("ade150", "mIoU"),
    "mapillary_PQ": ("mapillary", "PQ"), "mapillary_mIoU": ("mapillary", "mIoU"),
    "ade847_mIoU": ("ade847", "mIoU"), "pc59_mIoU": ("pc59", "mIoU"), "pc459_mIoU": ("pc459", "mIoU"),
}


def paper_numbers() -> dict:
    with resources.as_file(resources.files("smart.report").joinpath("paper_numbers.yaml")) as p:
        return yaml.safe_load(Path(p).read_text())


def _paper_rows_table1(numbers: dict) -> pd.DataFrame:
    t = numbers["table1"]
    rows = []
    for r in t["rows"]:
        row = {"method": r["method"], "source": "paper", "profile": "paper", "backbone": r["backbone"],
               "vlm": r["vlm"], "confidence": r["confidence"]}
        row.update(dict(zip(t["columns"], r["values"])))
        rows.append(row)
    return pd.DataFrame(rows)


def _stat_columns(row: dict, col: str, st: Stat) -> None:
    row[col] = None if st.mean is None else round(st.mean, 2)
    row[f"{col}_std"] = None if st.std is None else round(st.std, 2)


def build_table1(*, params: dict, metrics_dir: str | Path, profile: str) -> pd.DataFrame:
    """Table 1: the paper's rows and one reproduced row per cell of ``report.table1``.

    Each reproduced value is the mean over the cell's seeds (``<col>_std`` holds the sample std when a
    cell has several seeds, ``seeds`` how many were found); in the paper profile a row whose method is a
    paper row gets ``delta_<col>`` = ours − paper (empty in the mini profile).
    """
    from smart.config import cell_spec

    numbers = paper_numbers()
    paper = _paper_rows_table1(numbers)
    metrics_dir = Path(metrics_dir)
    ours = []
    for cell, method in params["report"]["table1"].items():
        if cell not in params["cells"]:
            raise ConfigError(f"unknown cell {cell!r}", field=f"report.table1.{cell}")
        spec = cell_spec(params, cell)
        row = {"method": f"{method} (ours: {cell})", "source": "reproduced", "profile": profile}
        n = 0
        for col, (ds, key) in TABLE1_COLUMNS.items():
            st = cell_metric(metrics_dir, cell, ds, key, spec.seeds)
            _stat_columns(row, col, st)
            n = max(n, st.n)
        row["seeds"] = n
        ref = paper[paper["method"] == method]
        if len(ref) and profile == "paper":  # like with like: the mini world's numbers are not the paper's
            for col in TABLE1_COLUMNS:
                a, b = row[col], ref.iloc[0][col]
                row[f"delta_{col}"] = None if a is None or pd.isna(b) else round(a - float(b), 1)
        ours.append(row)
    df = pd.concat([paper, pd.DataFrame(ours)], ignore_index=True) if ours else paper
    if "seeds" in df:
        df["seeds"] = df["seeds"].astype("Int64")
        df.insert(3, "seeds", df.pop("seeds"))
    return df


# Table 3 parts: (params report.table3 key = paper_numbers table3 key, row label, metrics). The parts that
# compare tuning choices also show PQ per class group of the mini world (seen / novel combination / novel
# attribute; smart.data.mini.groups), which the paper does not report. Part g is not in the paper: the
# two readings of the paper the method spec had to choose between (sma_residual, the DA's attention bias).
_TABLE3_ROWS = {
    "table3a": ("tuned parameters", ("PQ",), True),
    "table3b": ("LoRA rank", ("PQ",), True),
    "table3c": ("DA layers", ("PQ",), False),
    "table3d": ("components", ("PQ",), True),
    "table3e": ("extra tuning", ("PQ",), False),
    "table3f": ("VLM backbone", ("PQ", "mIoU"), False),
    "table3g": ("interpretation", ("PQ", "mIoU"), True),
}
TABLE3 = {part: (TABLE3_PARTS[part], *rows) for part, rows in _TABLE3_ROWS.items()}


def build_table3(part: str, *, params: dict, metrics_dir: str | Path, profile: str) -> pd.DataFrame:
    """One part of Table 3 (ablations on ADE150): per setting, the paper's number and ours.

    Rows follow ``report.table3.<key>`` (setting -> cell). A cell that does not run in this profile
    (``paper_only``) has empty reproduced columns. Columns: ``setting``, ``cell``, ``paper_<m>``,
    ``<m>`` (mean over seeds), ``<m>_std``, ``seeds``, ``delta_<m>`` (ours − paper; paper profile only).
    """
    from smart.config import cell_names, cell_spec
    from smart.data.mini.groups import GROUPS, SHORT

    key, label, metric_keys, by_group = TABLE3[part]
    paper = {str(k): v for k, v in (paper_numbers()["table3"].get(key) or {}).items()}
    mapping = params["report"]["table3"][key]
    runnable = set(cell_names(params))
    rows = []
    for setting, cell in mapping.items():
        if cell not in params["cells"]:
            raise ConfigError(f"unknown cell {cell!r}", field=f"report.table3.{key}.{setting}")
        ref = paper.get(str(setting))
        row = {label: str(setting), "cell": cell, "profile": profile}
        n = 0
        for m in metric_keys:
            pv = ref.get(m) if isinstance(ref, dict) else (ref if m == "PQ" else None)
            row[f"paper_{m}"] = pv
            st = (cell_metric(metrics_dir, cell, "ade150", m, cell_spec(params, cell).seeds)
                  if cell in runnable else Stat(None, None, 0))
            _stat_columns(row, m, st)
            n = max(n, st.n)
            row[f"delta_{m}"] = (None if st.mean is None or pv is None or profile != "paper"
                                 else round(st.mean - float(pv), 1))
        if by_group:  # the mini world's class groups (columns only where some seed has them)
            for m in metric_keys:
                for g in GROUPS:
                    col = f"{m}_{SHORT[g]}"
                    st = (cell_metric(metrics_dir, cell, "ade150", col, cell_spec(params, cell).seeds)
                          if cell in runnable else Stat(None, None, 0))
                    if st.n:
                        _stat_columns(row, col, st)
        row["seeds"] = n
        rows.append(row)
    return pd.DataFrame(rows)


def build_user_table(exp: Any, *, metrics_dir: str | Path) -> pd.DataFrame:
    """The user's own benchmarks (params.yaml ``user_datasets``): one row per cell that lists one of them,
    with ``<dataset>_PQ`` / ``_SQ`` / ``_RQ`` (panoptic annotations) and ``<dataset>_mIoU`` (mean over the
    cell's seeds, ``_std`` beside), scored by the same protocol as the built-in benchmarks."""
    user = exp.user_datasets
    rows = []
    for name in exp.user_cells():
        cell = exp.cell(name)
        row: dict = {"cell": name, "profile": exp.profile}
        n = 0
        for ds in user:
            keys = (("PQ", "SQ", "RQ") if user[ds].panoptic_json else ()) + ("mIoU",)
            for key in keys:
                st = (cell_metric(metrics_dir, name, ds, key, cell.seeds) if ds in cell.datasets
                      else Stat(None, None, 0))
                _stat_columns(row, f"{ds}_{key}", st)
                n = max(n, st.n)
        row["seeds"] = n
        rows.append(row)
    df = pd.DataFrame(rows)
    if len(df):
        df["seeds"] = df["seeds"].astype("Int64")
        df.insert(2, "seeds", df.pop("seeds"))
    return df


def _display(df: pd.DataFrame, decimals: dict[str, int] | None = None) -> pd.DataFrame:
    """One decimal (``decimals`` per column otherwise); ``<col>`` and ``<col>_std`` merged into
    ``mean ± std``; ``–`` for missing values."""
    decimals = decimals or {}
    shown = pd.DataFrame(index=df.index)
    for c in df.columns:
        if c.endswith("_std") and c[:-4] in df.columns:
            continue
        col = df[c]
        if pd.api.types.is_float_dtype(col) or (col.dtype == object and col.map(
                lambda v: isinstance(v, float)).any()):
            std = df.get(f"{c}_std")
            k = decimals.get(c, 1)
            shown[c] = [("–" if v is None or pd.isna(v) else
                         f"{float(v):.{k}f}" if std is None or std.iloc[i] is None or pd.isna(std.iloc[i]) else
                         f"{float(v):.{k}f} ± {float(std.iloc[i]):.{k}f}") for i, v in enumerate(col)]
        else:
            shown[c] = col.map(lambda v: "–" if v is None or (pd.api.types.is_scalar(v) and pd.isna(v)) else v)
    return shown


def write_table(df: pd.DataFrame, out_csv: str | Path, *, caption: str = "",
                decimals: dict[str, int] | None = None) -> None:
    """Write ``.csv`` (full precision, std columns) plus ``.md`` and ``.tex`` renders next to it
    (1 decimal, as the paper; ``mean ± std`` over seeds). Each file is written atomically."""
    from smart.io import atomic_path

    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_csv) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    shown = _display(df, decimals)
    body = shown.to_markdown(index=False) if _has_tabulate() else shown.to_string(index=False)
    with atomic_path(out_csv.with_suffix(".md")) as tmp:
        Path(tmp).write_text((f"{caption}\n\n" if caption else "") + body + "\n")
    tex = shown.to_latex(index=False, caption=caption or None, escape=True)
    with atomic_path(out_csv.with_suffix(".tex")) as tmp:
        Path(tmp).write_text(tex.rstrip() + "\n")


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True
