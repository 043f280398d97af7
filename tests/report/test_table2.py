"""Table 2 (efficiency) from the benchmark record, the training summaries and the ADE150 metrics."""

import json
import math

import pandas as pd
import pytest

from smart.errors import InputError
from smart.report.table2 import COLUMNS, build_table2, main
from smart.report.tables import paper_numbers

PARAMS = {
    "cells": {"smart_swinb": {"seeds": [0, 1, 2]}, "other": {}},
    "cell_defaults": {"seeds": [0], "datasets": ["ade150"]},
    "report": {"table2": {"cell": "smart_swinb", "dataset": "ade150", "images": 100}},
}
BENCH = {"fps": 23.5, "seconds": 4.25, "images": 100, "memory_gb": 0.004, "memory_kind": "cpu_peak_rss",
         "peak_rss_gb": 0.9, "ms_generator": 25.0, "ms_classifier": 10.0, "ms_postprocess": 7.0,
         "device": "AMD EPYC", "device_type": "cpu", "threads": 1, "cell": "smart_swinb", "seed": 0,
         "dataset": "ade150", "git_sha": None}


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _grid(tmp_path, *, device="cpu", world_size=1, seeds=(0, 1, 2), pq=(27.0, 28.0, 29.0)):
    train, metrics = tmp_path / "train", tmp_path / "metrics"
    for s, p in zip(seeds, pq):
        d = train / "smart_swinb" / f"s{s}"
        _write(d / "summary.json", {"iterations": 200, "train_seconds": 3600.0 * (s + 1), "world_size": world_size})
        _write(d / "config.json", {"device": device, "world_size": world_size})
        _write(metrics / "smart_swinb" / f"s{s}" / "ade150.json", {"PQ": p, "mIoU": p + 8.0})
    bench = tmp_path / "bench.json"
    _write(bench, BENCH)
    return bench, train, metrics


def _ours(df):
    rows = df[df["source"] == "reproduced"]
    assert len(rows) == 1
    return rows.iloc[0]


def test_paper_rows_come_from_paper_numbers(tmp_path):
    bench, train, metrics = _grid(tmp_path)
    df = build_table2(params=PARAMS, benchmark_json=bench, train_dir=train, metrics_dir=metrics, profile="mini")
    assert list(df.columns) == COLUMNS
    t = paper_numbers()["table2"]
    paper = df[df["source"] == "paper"].set_index("method")
    assert list(paper.index) == [r["method"] for r in t["rows"]]
    smart = paper.loc["SMART-SwinB"]
    assert (smart["fps"], smart["inference_memory_gb"], smart["train_gpu_hours"], smart["train_iterations_k"]) == (
        2.63, 10.2, 45, 25)
    assert (smart["ade150_PQ"], smart["ade150_mIoU"]) == (28.1, 36.8) and pd.isna(smart["seeds"])
    assert math.isnan(paper.loc["ODISE", "inference_memory_gb"])


def test_reproduced_row_on_cpu(tmp_path):
    bench, train, metrics = _grid(tmp_path)
    ours = _ours(build_table2(params=PARAMS, benchmark_json=bench, train_dir=train, metrics_dir=metrics,
                              profile="mini"))
    assert ours["method"] == "SMART-SwinB (ours: smart_swinb)" and ours["profile"] == "mini"
    assert ours["fps"] == 23.5 and ours["inference_memory_gb"] == 0.9 and ours["memory_kind"] == "cpu_peak_rss_process"
    assert ours["inference_device"] == "CPU AMD EPYC (1 thread)"
    # CPU training: device hours, no GPU hours
    assert ours["train_device"] == "CPU" and math.isnan(ours["train_gpu_hours"])
    assert ours["train_device_hours"] == pytest.approx(2.0)  # mean of 1, 2, 3 h
    assert ours["train_iterations_k"] == pytest.approx(0.2)
    assert ours["ade150_PQ"] == pytest.approx(28.0) and ours["ade150_PQ_std"] == pytest.approx(1.0)
    assert ours["ade150_mIoU"] == pytest.approx(36.0) and ours["ade150_mIoU_std"] == pytest.approx(1.0)
    assert ours["seeds"] == 3
    assert math.isnan(ours["delta_ade150_PQ"]) and math.isnan(ours["delta_ade150_mIoU"])  # mini vs paper: none
    paper = _ours(build_table2(params=PARAMS, benchmark_json=bench, train_dir=train, metrics_dir=metrics,
                               profile="paper"))
    assert paper["delta_ade150_PQ"] == pytest.approx(-0.1) and paper["delta_ade150_mIoU"] == pytest.approx(-0.8)


def test_gpu_hours_count_every_gpu(tmp_path):
    bench, train, metrics = _grid(tmp_path, device="cuda:0", world_size=8, seeds=(0,), pq=(30.0,))
    ours = _ours(build_table2(params=PARAMS, benchmark_json=bench, train_dir=train, metrics_dir=metrics,
                              profile="paper"))
    assert ours["train_device"] == "CUDA × 8" and ours["train_gpu_hours"] == pytest.approx(8.0)
    assert math.isnan(ours["train_device_hours"])
    assert ours["ade150_PQ"] == 30.0 and pd.isna(ours["ade150_PQ_std"]) and ours["seeds"] == 1


def test_missing_inputs_leave_cells_empty(tmp_path):
    df = build_table2(params=PARAMS, benchmark_json=tmp_path / "none.json", train_dir=tmp_path / "t",
                      metrics_dir=tmp_path / "m", profile="mini")
    ours = _ours(df)
    for c in ("fps", "inference_memory_gb", "train_gpu_hours", "train_device_hours", "train_iterations_k",
              "ade150_PQ", "ade150_mIoU", "delta_ade150_PQ"):
        assert pd.isna(ours[c]), c
    assert ours["seeds"] == 0


def test_benchmark_of_another_cell_is_refused(tmp_path):
    bench, train, metrics = _grid(tmp_path)
    _write(bench, {**BENCH, "cell": "other"})
    with pytest.raises(InputError, match="'other'"):
        build_table2(params=PARAMS, benchmark_json=bench, train_dir=train, metrics_dir=metrics, profile="mini")


def test_main_writes_csv_md_tex(tmp_path):
    bench, train, metrics = _grid(tmp_path)
    out = tmp_path / "out" / "table2.csv"
    df = main(params=PARAMS, benchmark_json=bench, train_dir=train, metrics_dir=metrics, profile="mini", out=out)
    back = pd.read_csv(out)
    assert len(back) == len(df) == 4
    md = (tmp_path / "out" / "table2.md").read_text()
    assert md.startswith(paper_numbers()["table2"]["caption"])
    assert "28.0 ± 1.0" in md and "36.0 ± 1.0" in md  # mean ± std over the three seeds
    assert "\\begin{tabular}" in (tmp_path / "out" / "table2.tex").read_text()


def test_efficiency_columns_from_the_benchmark_record(tmp_path):
    bench, train, metrics = _grid(tmp_path)
    _write(bench, {**BENCH, "gflops_per_image": 40.0})
    ours = _ours(build_table2(params=PARAMS, benchmark_json=bench, train_dir=train, metrics_dir=metrics,
                              profile="mini"))
    assert ours["inference_precision"] == "fp32" and ours["gflops_per_image"] == 40.0
    assert ours["achieved_tflops"] == pytest.approx(40.0 * 23.5 / 1000)
    assert math.isnan(ours["peak_fraction"])  # a CPU has no listed peak
    # an H100 SXM running the classifier in bf16: the fraction of its 989.5 TFLOP/s dense bf16 peak
    gpu = {**BENCH, "gflops_per_image": 4000.0, "fps": 20.0, "device": "NVIDIA H100 80GB HBM3",
           "device_type": "cuda", "memory_kind": "cuda_max_allocated", "autocast": "bfloat16 (generator, classifier)"}
    _write(bench, gpu)
    ours = _ours(build_table2(params=PARAMS, benchmark_json=bench, train_dir=train, metrics_dir=metrics,
                              profile="paper"))
    assert ours["inference_precision"] == "bf16" and ours["achieved_tflops"] == pytest.approx(80.0)
    assert ours["peak_fraction"] == pytest.approx(80.0 / 989.5)
    _write(bench, {**gpu, "autocast": "bfloat16 (generator, mask upsampling)"})  # eval.bf16: false
    ours = _ours(build_table2(params=PARAMS, benchmark_json=bench, train_dir=train, metrics_dir=metrics,
                              profile="paper"))
    assert ours["inference_precision"] == "fp32" and ours["peak_fraction"] == pytest.approx(80.0 / 67.0)
    _write(bench, {**gpu, "device": "Some Future GPU"})  # not listed: no fraction
    ours = _ours(build_table2(params=PARAMS, benchmark_json=bench, train_dir=train, metrics_dir=metrics,
                              profile="paper"))
    assert ours["achieved_tflops"] == pytest.approx(80.0) and math.isnan(ours["peak_fraction"])


@pytest.mark.parametrize("name, precision, expected", [
    ("NVIDIA H100 PCIe", "bf16", ("H100 PCIe", 756.5)),
    ("NVIDIA H100 80GB HBM3", "bf16", ("H100 SXM", 989.5)),
    ("NVIDIA H200", "fp32", ("H200 SXM", 67.0)),
    ("NVIDIA A100-SXM4-80GB", "bf16", ("A100", 312.0)),
    ("Intel(R) Xeon(R)", "bf16", None),
])
def test_device_peak(name, precision, expected):
    from smart.report.table2 import device_peak

    assert device_peak(name, precision) == expected
