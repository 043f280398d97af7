"""Paper tables as CSV (+ Markdown and LaTeX renders): reproduced rows next to the paper's rows.

Paper numbers come only from ``smart/report/paper_numbers.yaml``. Reproduced numbers come from the
per-(cell, dataset) metric files ``<metrics_dir>/<cell>/<dataset>.json`` written by evaluation
(keys ``PQ`` and ``mIoU`` in percent). A reproduced row of a cell that maps to a paper row gets
``delta_<column>`` = ours − paper.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pandas as pd
import yaml

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


def _read_metric(metrics_dir: Path, cell: str, dataset: str, key: str):
    p = metrics_dir / cell / f"{dataset}.json"
    if not p.exists():
        return None
    value = json.loads(p.read_text()).get(key)
    return None if value is None else float(value)


def build_table1(*, metrics_dir: str | Path, cells: dict[str, str], profile: str) -> pd.DataFrame:
    """Table 1: the paper's rows and one reproduced row per cell.

    Args:
        metrics_dir: directory of ``<cell>/<dataset>.json`` metric files.
        cells: reproduced cell name -> the paper method it reproduces (e.g. ``smart_swinb`` -> ``SMART-SwinB``).
        profile: ``mini`` or ``paper`` (recorded in the ``profile`` column).
    """
    numbers = paper_numbers()
    paper = _paper_rows_table1(numbers)
    metrics_dir = Path(metrics_dir)
    ours = []
    for cell, method in cells.items():
        row = {"method": f"{method} (ours: {cell})", "source": "reproduced", "profile": profile}
        for col, (ds, key) in TABLE1_COLUMNS.items():
            row[col] = _read_metric(metrics_dir, cell, ds, key)
        ref = paper[paper["method"] == method]
        if len(ref):
            for col in TABLE1_COLUMNS:
                a, b = row[col], ref.iloc[0][col]
                row[f"delta_{col}"] = None if a is None or pd.isna(b) else round(a - float(b), 1)
        ours.append(row)
    return pd.concat([paper, pd.DataFrame(ours)], ignore_index=True) if ours else paper


def write_table(df: pd.DataFrame, out_csv: str | Path, *, caption: str = "") -> None:
    """Write ``.csv`` plus ``.md`` and ``.tex`` renders next to it (1 decimal, as the paper)."""
    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out_csv, index=False, float_format="%.2f")
    shown = df.copy()
    for c in shown.columns:
        if pd.api.types.is_float_dtype(shown[c]):
            shown[c] = shown[c].map(lambda v: "–" if pd.isna(v) else f"{v:.1f}")
    shown = shown.fillna("–")
    body = shown.to_markdown(index=False) if _has_tabulate() else shown.to_string(index=False)
    out_csv.with_suffix(".md").write_text((f"{caption}\n\n" if caption else "") + body + "\n")
    tex = shown.to_latex(index=False, caption=caption or None, escape=True)
    out_csv.with_suffix(".tex").write_text(tex.rstrip() + "\n")


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True
