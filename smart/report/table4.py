"""Table 4: CLIP knowledge preservation — zero-shot referring segmentation (oIoU) before / after tuning.

Reproduced numbers come from ``results/metrics/refer/<cell>/s<seed>.json`` (``python -m smart
eval-refer``: ``{<dataset>: {"oIoU_before": …, "oIoU_after": …}}``), averaged over the cell's seeds;
the cell is params.yaml ``report.table4.cell``. The paper's rows come from ``paper_numbers.yaml``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from smart.report.collect import Stat, read_json_or_none
from smart.report.tables import paper_numbers

CASES = {"before tuning": "oIoU_before", "after tuning": "oIoU_after"}


def build_table4(*, params: dict, metrics_dir: str | Path, profile: str) -> pd.DataFrame:
    """Rows: the paper's before / after rows, then ours (mean over seeds, ``_std`` with several seeds)."""
    from smart.config import cell_spec

    paper = paper_numbers()["table4"]
    rep = params["report"]["table4"]
    cell, datasets = rep["cell"], list(rep["datasets"])
    seeds = cell_spec(params, cell).seeds
    records = [read_json_or_none(Path(metrics_dir) / "refer" / cell / f"s{s}.json") for s in seeds]
    rows = []
    for r in paper["rows"]:
        row = {"case": r["case"], "source": "paper", "profile": "paper"}
        row.update({c: v for c, v in zip(paper["columns"], r["values"])})
        rows.append(row)
    for case, key in CASES.items():
        row = {"case": f"{case} (ours: {cell})", "source": "reproduced", "profile": profile}
        n = 0
        for ds in datasets:
            st = Stat.of([rec[ds][key] for rec in records if rec and ds in rec and rec[ds].get(key) is not None])
            col = f"{ds}_oIoU"
            row[col] = None if st.mean is None else round(st.mean, 2)
            row[f"{col}_std"] = None if st.std is None else round(st.std, 2)
            n = max(n, st.n)
        row["seeds"] = n
        rows.append(row)
    df = pd.DataFrame(rows)
    df["seeds"] = df["seeds"].astype("Int64")
    return df
