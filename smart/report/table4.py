"""Table 4: CLIP knowledge preservation — zero-shot referring segmentation (oIoU) before / after tuning.

Reproduced numbers come from ``results/metrics/refer/<cell>/s<seed>.json`` (``python -m smart
eval-refer``: ``{<dataset>: {"oIoU_before": …, "oIoU_after": …}}``), averaged over the cell's seeds;
the cell is params.yaml ``report.table4.cell`` (its rows: before and after tuning). Each cell of
``report.table4.compare`` (other tuning choices, e.g. every CLIP parameter or LoRA) adds its "after"
row: the "before" model is the same pretrained CLIP for all of them.

In the mini world each dataset also gets ``<dataset>_oIoU_<group>`` columns: the oIoU over the
expressions whose referred object is of a ``seen`` class, a ``novel_comb``\\ ination of seen attributes, or
a class with a ``novel_attr``\\ ibute (one the segmentation training split never shows; only CLIP knows
it). The paper's rows come from ``paper_numbers.yaml``; it has no group columns.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from smart.data.mini.groups import GROUPS, SHORT
from smart.report.collect import Stat, read_json_or_none
from smart.report.tables import paper_numbers

CASES = {"before tuning": "before", "after tuning": "after"}


def _row(case: str, cell: str, when: str, records: list, datasets: list[str], profile: str) -> dict:
    row = {"case": f"{case} (ours: {cell})", "source": "reproduced", "profile": profile}
    n = 0
    for ds in datasets:
        for suffix in ["", *(f"_{SHORT[g]}" for g in GROUPS)]:
            key = f"oIoU{suffix}_{when}"
            vals = [rec[ds][key] for rec in records if rec and ds in rec and rec[ds].get(key) is not None]
            if suffix and not vals:
                continue  # no group numbers (real datasets)
            st = Stat.of(vals)
            col = f"{ds}_oIoU{suffix}"
            row[col] = None if st.mean is None else round(st.mean, 2)
            row[f"{col}_std"] = None if st.std is None else round(st.std, 2)
            n = max(n, st.n)
    row["seeds"] = n
    return row


def build_table4(*, params: dict, metrics_dir: str | Path, profile: str) -> pd.DataFrame:
    """Rows: the paper's before / after rows, then ours (mean over seeds, ``_std`` with several seeds):
    before and after tuning of ``report.table4.cell``, then after tuning of each ``compare`` cell."""
    from smart.config import cell_names, cell_spec

    paper = paper_numbers()["table4"]
    rep = params["report"]["table4"]
    cell, datasets = rep["cell"], list(rep["datasets"])
    runnable = set(cell_names(params))

    def records(c: str) -> list:
        return [read_json_or_none(Path(metrics_dir) / "refer" / c / f"s{s}.json") for s in cell_spec(params, c).seeds]

    rows = []
    for r in paper["rows"]:
        row = {"case": r["case"], "source": "paper", "profile": "paper"}
        row.update({c: v for c, v in zip(paper["columns"], r["values"])})
        rows.append(row)
    main = records(cell)
    for case, when in CASES.items():
        rows.append(_row(case, cell, when, main, datasets, profile))
    for other in rep.get("compare") or []:
        if other != cell and other in runnable:
            rows.append(_row("after tuning", other, "after", records(other), datasets, profile))
    df = pd.DataFrame(rows)
    order = ["case", "source", "profile"]  # per dataset: oIoU, its std, then the groups' (mean, std)
    for ds in datasets:
        base = f"{ds}_oIoU"
        order += [base, f"{base}_std"] + [c for g in GROUPS for c in (f"{base}_{SHORT[g]}", f"{base}_{SHORT[g]}_std")]
    df = df[[c for c in order if c in df.columns] + ["seeds"]]
    df["seeds"] = df["seeds"].astype("Int64")
    return df
