import json
from pathlib import Path

import pandas as pd
import pytest

from smart.config import load_params
from smart.errors import ConfigError
from smart.report.tables import TABLE1_COLUMNS, build_table1, build_table3, paper_numbers, write_table


def test_paper_numbers_file():
    n = paper_numbers()
    rows = {r["method"]: r["values"] for r in n["table1"]["rows"]}
    assert rows["SMART-SwinB"] == [56.4, 67.1, 28.1, 36.8, 19.0, 29.7, 16.1, 62.4, 23.6]
    assert rows["FC-CLIP"][2:4] == [26.8, 34.1]
    assert n["table1"]["columns"] == list(TABLE1_COLUMNS)
    assert n["table3"]["a_tuned_parameters"]["q"] == 27.5
    assert n["table4"]["rows"][1]["values"] == [24.6, 25.9]


def _write(metrics: Path, cell: str, seed: int, dataset: str, **values):
    d = metrics / cell / f"s{seed}"
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{dataset}.json").write_text(json.dumps(values))


def test_table1_has_paper_rows_seeds_and_deltas(tmp_path):
    params = load_params("params.yaml")
    params["report"]["table1"] = {"smart_swinb": "SMART-SwinB", "frozen": "Frozen baseline"}
    m = tmp_path / "metrics"
    for seed, pq in zip((0, 1, 2), (29.0, 30.0, 31.0)):
        _write(m, "smart_swinb", seed, "ade150", PQ=pq, mIoU=35.0)
    _write(m, "frozen", 0, "ade150", PQ=10.0, mIoU=None)
    df = build_table1(params=params, metrics_dir=m, profile="paper")
    ours = df[df["source"] == "reproduced"].set_index("method")
    row = ours.loc["SMART-SwinB (ours: smart_swinb)"]
    assert row["ade150_PQ"] == 30.0 and row["ade150_PQ_std"] == 1.0 and row["seeds"] == 3
    assert row["delta_ade150_PQ"] == 1.9 and row["delta_ade150_mIoU"] == -1.8
    mini = build_table1(params=params, metrics_dir=m, profile="mini")  # like with like: no delta vs the paper
    mini_row = mini[mini["source"] == "reproduced"].set_index("method").loc["SMART-SwinB (ours: smart_swinb)"]
    assert mini_row["ade150_PQ"] == 30.0 and all(pd.isna(mini_row.get(c)) for c in mini.columns
                                                 if c.startswith("delta_"))
    assert pd.isna(row["coco_PQ"])
    frozen = ours.loc["Frozen baseline (ours: frozen)"]
    assert frozen["ade150_PQ"] == 10.0 and pd.isna(frozen["ade150_PQ_std"]) and frozen["seeds"] == 1
    assert pd.isna(frozen["ade150_mIoU"])
    write_table(df, tmp_path / "t" / "table1.csv", caption="Table 1")
    back = pd.read_csv(tmp_path / "t" / "table1.csv")
    assert len(back) == len(df) == 12
    md = (tmp_path / "t" / "table1.md").read_text()
    assert md.startswith("Table 1") and "30.0 ± 1.0" in md and "ade150_PQ_std" not in md
    assert "\\begin{tabular}" in (tmp_path / "t" / "table1.tex").read_text()


def test_table3_rows_follow_params_and_skip_paper_only_cells(tmp_path):
    params = load_params("params.yaml")
    m = tmp_path / "metrics"
    _write(m, "smart", 0, "ade150", PQ=20.0, mIoU=25.0)
    _write(m, "smart", 1, "ade150", PQ=22.0, mIoU=27.0)
    params["cells"]["smart"]["seeds"] = [0, 1]
    df = build_table3("table3f", params=params, metrics_dir=m, profile="mini")
    assert list(df["VLM backbone"]) == ["ViT-B-16", "ViT-L-14-336", "EVA01-g-14-plus"]
    r = df.set_index("cell").loc["smart"]
    assert r["PQ"] == 21.0 and r["paper_PQ"] == 27.5 and pd.isna(r["delta_PQ"]) and r["mIoU"] == 26.0
    paper = build_table3("table3f", params=params, metrics_dir=m, profile="paper").set_index("cell")
    assert paper.loc["smart", "delta_PQ"] == -6.5
    assert pd.isna(df.set_index("cell").loc["table3f_vitb16", "PQ"])  # paper-only: not run in mini
    d = build_table3("table3d", params=params, metrics_dir=m, profile="mini")
    assert list(d["cell"]) == ["frozen", "table3d_sma", "smart"] and list(d["paper_PQ"]) == [9.6, 18.9, 27.5]


def test_table3_group_columns_and_the_interpretation_part(tmp_path):
    params = load_params("params.yaml")
    m = tmp_path / "metrics"
    for seed, pq in ((0, 20.0), (1, 22.0), (2, 24.0)):
        _write(m, "smart", seed, "ade150", PQ=pq, mIoU=25.0, PQ_seen=pq + 5, PQ_novel_comb=pq, PQ_novel_attr=pq - 5)
        _write(m, "table3a_all", seed, "ade150", PQ=pq - 3, PQ_seen=pq, PQ_novel_comb=pq - 4, PQ_novel_attr=pq - 10)
    a = build_table3("table3a", params=params, metrics_dir=m, profile="mini").set_index("cell")
    assert a.loc["smart", "PQ_novel_attr"] == 17.0 and a.loc["smart", "PQ_novel_attr_std"] == 2.0
    assert a.loc["table3a_all", "PQ_seen"] == 22.0 and a.loc["table3a_all", "seeds"] == 3
    assert pd.isna(a.loc["table3a_mlp", "PQ_seen"])  # no metrics file: empty
    c = build_table3("table3c", params=params, metrics_dir=m, profile="mini")
    assert "PQ_seen" not in c.columns  # parts that do not compare tuning choices: no group columns
    g = build_table3("table3g", params=params, metrics_dir=m, profile="mini")
    assert list(g["cell"]) == ["smart", "table3g_sma_residual", "table3g_soft_bias"]
    assert g["paper_PQ"].isna().all()  # not a table of the paper


def test_table4_rows_compare_tuning_choices_per_group(tmp_path):
    import json

    from smart.report.table4 import build_table4

    params = load_params("params.yaml")
    m = tmp_path / "metrics"

    def rec(after):
        r = {"oIoU_before": 30.0, "oIoU_after": after, "oIoU_novel_attr_before": 20.0,
             "oIoU_novel_attr_after": after - 10}
        return {"refcoco": r, "refcoco+": r}

    for cell, after in (("smart_swinb", 28.0), ("table3a_all", 15.0), ("table3b_lora64", 24.0)):
        for s in params["cells"][cell]["seeds"]:
            p = m / "refer" / cell / f"s{s}.json"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(json.dumps(rec(after)))
    df = build_table4(params=params, metrics_dir=m, profile="mini").set_index("case")
    assert list(df.index[-4:]) == ["before tuning (ours: smart_swinb)", "after tuning (ours: smart_swinb)",
                                   "after tuning (ours: table3a_all)", "after tuning (ours: table3b_lora64)"]
    assert df.loc["after tuning (ours: table3a_all)", "refcoco_oIoU"] == 15.0
    assert df.loc["after tuning (ours: table3a_all)", "refcoco_oIoU_novel_attr"] == 5.0
    assert df.loc["before tuning (ours: smart_swinb)", "refcoco+_oIoU_novel_attr"] == 20.0
    assert pd.isna(df.loc["before tuning", "refcoco_oIoU_novel_attr"])  # the paper's rows have no groups
    assert "refcoco_oIoU_seen" not in df.columns  # no seed recorded that group


def test_table_names_an_unknown_cell():
    params = load_params("params.yaml")
    params["report"]["table1"] = {"nope": "SMART-SwinB"}
    with pytest.raises(ConfigError, match=r"report\.table1\.nope"):
        build_table1(params=params, metrics_dir="x", profile="mini")
