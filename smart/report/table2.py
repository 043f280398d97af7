"""Paper Table 2 (efficiency on ADE150): the paper's rows next to the reproduced SMART-SwinB row.

Columns (paper: Inference FPS, Inference Memory (GB), Train GPU Hours, Train Iterations (K),
ADE150 PQ / mIoU):

* ``fps``, ``inference_memory_gb``, ``memory_kind``, ``inference_device`` — from the benchmark record
  written by ``python -m smart benchmark`` (:mod:`smart.eval.benchmark`: batch size 1, warm-up,
  generator + classification + post-processing timed). ``memory_kind`` says what was measured
  (``cuda_max_allocated``, or on CPU ``cpu_peak_rss_process``: the peak resident memory of the whole
  benchmark process, Python and torch included — the growth over the timed loop alone is ~0 once
  warm-up has allocated the buffers);
* ``inference_precision`` — ``bf16`` when the benchmark ran the classifier under bf16 autocast
  (params.yaml ``eval.bf16`` on CUDA), else ``fp32``;
* ``gflops_per_image`` — the benchmark's count of one image's floating-point work (matmuls,
  convolutions, attention; generator + classifier + post-processing); ``achieved_tflops`` =
  ``gflops_per_image × fps / 1000``; ``peak_fraction`` = ``achieved_tflops`` / the GPU's dense peak at
  that precision (:func:`device_peak`, ``smart/report/device_peaks.yaml`` with its source). Empty on
  CPUs and on GPUs the file does not list;
* ``train_gpu_hours`` — mean over the cell's seeds of ``train_seconds × world_size / 3600`` from
  ``<train_dir>/<cell>/s<seed>/summary.json.run.json`` (the run record), filled only when the training ran on CUDA (``device``
  of the ``config.json`` next to the summary). A run on CPU (or of unknown device) puts the number
  in ``train_device_hours`` instead and leaves ``train_gpu_hours`` empty; ``train_device`` names the
  device (``CPU``, ``CUDA × 8``, ``unknown``);
* ``train_iterations_k`` — mean ``iterations`` / 1000 of the summaries;
* ``ade150_PQ`` / ``ade150_mIoU`` (and ``_std``) — mean (sample std) over seeds of
  ``<metrics_dir>/<cell>/s<seed>/ade150.json`` (the renders of
  :func:`smart.report.tables.write_table` show ``mean ± std``); ``seeds`` says how many seeds have
  metrics; ``delta_ade150_PQ`` / ``delta_ade150_mIoU`` = ours − the paper's SMART-SwinB (paper profile only). The
  efficiency columns get no delta: they depend on the machine.

Missing files leave their cells empty (a partially built grid still renders). Paper numbers come
from ``smart/report/paper_numbers.yaml`` (``table2``); the paper does not name its GPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from smart.errors import InputError
from smart.provenance import read_run_record
from smart.report.collect import Stat, cell_metric, cell_summary, read_json_or_none

__all__ = ["COLUMNS", "build_table2", "caption", "device_peak", "efficiency"]

DATASET = "ade150"  # Table 2's accuracy columns
PAPER_METHOD = "SMART-SwinB"  # the paper row the reproduced cell stands for
DECIMALS = {"fps": 2, "inference_memory_gb": 2, "gflops_per_image": 1, "achieved_tflops": 3, "peak_fraction": 3, "train_gpu_hours": 1, "train_device_hours": 3}
COLUMNS = ["method", "source", "profile", "seeds", "inference_device", "fps", "inference_memory_gb", "memory_kind",
           "inference_precision", "gflops_per_image", "achieved_tflops", "peak_fraction",
           "train_device", "train_gpu_hours", "train_device_hours", "train_iterations_k",
           "ade150_PQ", "ade150_PQ_std", "ade150_mIoU", "ade150_mIoU_std", "delta_ade150_PQ", "delta_ade150_mIoU"]
NUMERIC = ["fps", "inference_memory_gb", "gflops_per_image", "achieved_tflops", "peak_fraction", "train_gpu_hours", "train_device_hours", "train_iterations_k",
           "ade150_PQ", "ade150_PQ_std", "ade150_mIoU", "ade150_mIoU_std", "delta_ade150_PQ", "delta_ade150_mIoU"]


def caption() -> str:
    """The table's caption (paper_numbers.yaml ``table2.caption``)."""
    from smart.report.tables import paper_numbers

    return paper_numbers()["table2"]["caption"]


def _paper_rows() -> list[dict[str, Any]]:
    from smart.report.tables import paper_numbers

    t = paper_numbers()["table2"]
    rows = []
    for r in t["rows"]:
        rows.append({"method": r["method"], "source": "paper", "profile": "paper",
                     "inference_device": "GPU (not named)", "train_device": "GPU (not named)",
                     **dict(zip(t["columns"], r["values"]))})
    return rows


def device_peak(device_name: str | None, precision: str) -> tuple[str, float] | None:
    """(GPU model, dense peak TFLOP/s at ``precision`` = ``bf16`` | ``fp32``) of a CUDA device name, or None."""
    from importlib import resources

    import yaml

    if not device_name:
        return None
    with resources.as_file(resources.files("smart.report").joinpath("device_peaks.yaml")) as p:
        devices = yaml.safe_load(Path(p).read_text())["devices"]
    for d in devices:
        if d["match"].lower() in device_name.lower():
            return d["name"], float(d[precision])
    return None


def efficiency(bench: dict) -> dict[str, Any]:
    """Precision, work per image, achieved TFLOP/s and the fraction of the GPU's peak of a benchmark record."""
    precision = "bf16" if "classifier" in str(bench.get("autocast") or "") else "fp32"
    gflops, fps = bench.get("gflops_per_image"), bench.get("fps")
    achieved = gflops * fps / 1000.0 if gflops is not None and fps is not None else None
    peak = device_peak(bench.get("device"), precision) if bench.get("device_type") == "cuda" else None
    return {"inference_precision": precision, "gflops_per_image": gflops, "achieved_tflops": achieved,
            "peak_fraction": achieved / peak[1] if achieved is not None and peak is not None else None}


def _params(params: dict | str | Path) -> dict:
    if isinstance(params, (str, Path)):
        from smart.config import load_params

        return load_params(params)
    return params


def _train_device(train_dir: Path, cell: str, seeds: tuple[int, ...]) -> tuple[str, list[float], bool]:
    """(device label, per-seed device hours, all seeds trained on CUDA) of the cell's training runs."""
    hours: list[float] = []
    kinds: set[str] = set()
    world: set[int] = set()
    for s in seeds:
        d = train_dir / cell / f"s{s}"
        summary = read_json_or_none(d / "summary.json")
        if summary is not None and summary.get("train_seconds") is None:  # timings live in the run record
            summary = {**summary, **read_run_record(d / "summary.json")}
        if summary is None or summary.get("train_seconds") is None:
            continue
        ws = int(summary.get("world_size") or 1)
        hours.append(float(summary["train_seconds"]) * ws / 3600.0)
        world.add(ws)
        config = read_json_or_none(d / "config.json") or {}
        dev = str(config.get("device") or "unknown")
        kinds.add("cuda" if dev.startswith("cuda") else ("cpu" if dev.startswith("cpu") else "unknown"))
    if not hours:
        return "–", hours, False
    if len(kinds) > 1:
        return "mixed (" + ", ".join(sorted(kinds)) + ")", hours, False
    kind = kinds.pop()
    n = max(world)
    if kind == "cuda":
        return f"CUDA × {n}" if n > 1 else "CUDA", hours, True
    if kind == "cpu":
        return f"CPU × {n} processes" if n > 1 else "CPU", hours, False
    return "unknown", hours, False


def _inference_device(bench: dict) -> str | None:
    name = bench.get("device")
    if not name:
        return None
    if bench.get("device_type", "cuda" if bench.get("memory_kind") == "cuda_max_allocated" else "cpu") == "cpu":
        threads = bench.get("threads")
        return f"CPU {name} ({threads} thread{'s' if threads != 1 else ''})" if threads else f"CPU {name}"
    return str(name)


def build_table2(*, params: dict | str | Path, benchmark_json: str | Path | None, train_dir: str | Path,
                 metrics_dir: str | Path, profile: str, cell: str | None = None) -> pd.DataFrame:
    """Table 2: the paper's rows (``source="paper"``) and one reproduced row ``SMART-SwinB (ours: <cell>)``.

    Args:
        params: the parsed params.yaml (or its path): ``report.table2.cell`` names the cell, and
            ``cells`` / ``cell_defaults`` its seeds.
        benchmark_json: the record of ``python -m smart benchmark`` (``results/benchmarks/<cell>.json``);
            None or a missing file leaves fps / memory empty.
        train_dir: directory of ``<cell>/s<seed>/summary.json`` (and ``config.json``, for the device).
        metrics_dir: directory of ``<cell>/s<seed>/ade150.json`` (flat metrics, keys ``PQ`` and ``mIoU``).
        profile: ``mini`` or ``paper`` (recorded in the ``profile`` column).
        cell: the reproduced cell; default ``report.table2.cell``.

    Returns:
        One row per paper method plus the reproduced row, columns :data:`COLUMNS`.
    """
    from smart.config import cell_spec

    params = _params(params)
    if cell is None:
        cell = ((params.get("report") or {}).get("table2") or {}).get("cell")
        if not cell:
            raise InputError("no reproduced cell: set report.table2.cell", field="report.table2.cell")
    seeds = cell_spec(params, cell).seeds
    train_dir, metrics_dir = Path(train_dir), Path(metrics_dir)

    row: dict[str, Any] = {"method": f"{PAPER_METHOD} (ours: {cell})", "source": "reproduced", "profile": profile}
    bench = read_json_or_none(benchmark_json) if benchmark_json is not None else None
    if bench is not None:
        if bench.get("cell") not in (None, cell):
            raise InputError(f"the benchmark record is of cell {bench.get('cell')!r}, not {cell!r}",
                             path=benchmark_json, field="cell")
        cpu = bench.get("memory_kind") == "cpu_peak_rss"
        # on CPU the process's peak resident memory (the runtime included): the growth over the loop
        # alone is ~0 once warm-up has allocated the buffers
        row.update(fps=bench.get("fps"), inference_memory_gb=bench.get("peak_rss_gb" if cpu else "memory_gb"),
                   memory_kind="cpu_peak_rss_process" if cpu else bench.get("memory_kind"),
                   inference_device=_inference_device(bench), **efficiency(bench))

    device, hours, on_gpu = _train_device(train_dir, cell, seeds)
    train_hours = Stat.of(hours).mean
    row["train_device"] = device
    row["train_gpu_hours" if on_gpu else "train_device_hours"] = train_hours
    its = cell_summary(train_dir, cell, "iterations", seeds).mean
    row["train_iterations_k"] = None if its is None else its / 1000.0

    pq = cell_metric(metrics_dir, cell, DATASET, "PQ", seeds)
    miou = cell_metric(metrics_dir, cell, DATASET, "mIoU", seeds)
    row.update(ade150_PQ=pq.mean, ade150_PQ_std=pq.std, ade150_mIoU=miou.mean, ade150_mIoU_std=miou.std,
               seeds=max(pq.n, miou.n))
    paper = _paper_rows()
    ref = next((r for r in paper if r["method"] == PAPER_METHOD), {})
    for key in ("ade150_PQ", "ade150_mIoU"):
        ours, theirs = row[key], ref.get(key)
        row[f"delta_{key}"] = (None if ours is None or theirs is None or profile != "paper"
                               else round(ours - float(theirs), 1))  # like with like: paper profile only

    df = pd.DataFrame(paper + [row])
    for c in COLUMNS:
        if c not in df.columns:
            df[c] = None
    df = df[COLUMNS]
    df[NUMERIC] = df[NUMERIC].apply(pd.to_numeric, errors="coerce").astype(float)
    df["seeds"] = df["seeds"].astype("Int64")
    return df


def main(*, params: dict | str | Path, benchmark_json: str | Path | None, train_dir: str | Path,
         metrics_dir: str | Path, profile: str, out: str | Path, cell: str | None = None) -> pd.DataFrame:
    """Build Table 2 and write ``out`` (CSV) with its ``.md`` and ``.tex`` renders; returns the table."""
    from smart.report.tables import write_table

    df = build_table2(params=params, benchmark_json=benchmark_json, train_dir=train_dir, metrics_dir=metrics_dir,
                      profile=profile, cell=cell)
    write_table(df, out, caption=caption(), decimals=DECIMALS)
    return df
