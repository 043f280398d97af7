import json

import pandas as pd

from smart.report.tables import TABLE1_COLUMNS, build_table1, paper_numbers, write_table


def test_paper_numbers_file():
    n = paper_numbers()
    rows = {r["method"]: r["values"] for r in n["table1"]["rows"]}
    assert rows["SMART-SwinB"] == [56.4, 67.1, 28.1, 36.8, 19.0, 29.7, 16.1, 62.4, 23.6]
    assert rows["FC-CLIP"][2:4] == [26.8, 34.1]
    assert n["table1"]["columns"] == list(TABLE1_COLUMNS)
    assert n["table3"]["a_tuned_parameters"]["q"] == 27.5
    assert n["table4"]["rows"][1]["values"] == [24.6, 25.9]


def test_table1_has_paper_rows_and_deltas(tmp_path):
    m = tmp_path / "metrics" / "smart_swinb"
    m.mkdir(parents=True)
    (m / "ade150.json").write_text(json.dumps({"PQ": 30.0, "mIoU": 35.0}))
    df = build_table1(metrics_dir=tmp_path / "metrics", cells={"smart_swinb": "SMART-SwinB"}, profile="mini")
    ours = df[df["source"] == "reproduced"].iloc[0]
    assert ours["ade150_PQ"] == 30.0 and ours["delta_ade150_PQ"] == 1.9 and ours["delta_ade150_mIoU"] == -1.8
    assert pd.isna(ours["coco_PQ"]) or ours["coco_PQ"] is None
    write_table(df, tmp_path / "t" / "table1.csv", caption="Table 1")
    back = pd.read_csv(tmp_path / "t" / "table1.csv")
    assert len(back) == len(df) == 11
    assert (tmp_path / "t" / "table1.md").read_text().startswith("Table 1")
    assert "\\begin{tabular}" in (tmp_path / "t" / "table1.tex").read_text()
