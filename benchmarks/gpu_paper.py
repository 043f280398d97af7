"""The paper configuration at full size on one GPU, random weights: training step time and memory,
inference FPS and memory, through the pipeline's own verbs. Writes one JSON naming the GPU.

What runs (``python benchmarks/gpu_paper.py --out DIR``; ``benchmarks/gpu_paper.sh`` wraps it):

1. ``smart.smoke.setup``: the raw-format fixtures (enlarged), ViT-L/14-336 (QuickGELU) and the Swin-B
   (IN21k, 384) COCO-panoptic Mask2Former with random weights, and a params.yaml of the paper profile
   at the paper's sizes: CLIP input 896, generator test size 800 / 1333, LSJ crop 1024, synonyms ×
   14 templates, bf16 and activation checkpointing;
2. ``prepare`` (coco, ade20k_150), ``cache-proposals coco_train`` with the Swin-B generator;
3. ``train`` of ``smart_swinb`` for ``--iterations`` iterations at ``--batch`` images per step (one GPU),
   logging every iteration: the median step time after ``--skip`` iterations, and the peak memory;
4. ``benchmark`` of the trained cell on ADE-150 at batch 1 (generator + classifier + post-processing,
   end to end; ``--warmup`` untimed images first), three times on the same GPU: the classifier in
   float32 (``--fp32``), in bf16 (params.yaml ``eval.bf16``, the pipeline's default), and in bf16
   through ``torch.compile`` (``--compile``). Each record has the work per image it counted, so the
   achieved TFLOP/s and the fraction of the GPU's dense peak (``smart/report/device_peaks.yaml``) follow.

The JSON has the GPU's name, the step time, images per second, peak memory, and the GPU-hours that
25k iterations of 16 images imply at that speed (one GPU; paper: 45 GPU-hours), FPS and inference
memory (paper: 2.63 FPS, 10.2 GB). On a CPU it runs too (``--device cpu`` with small sizes): the
test suite runs it that way to keep the script working.

Packages: the GPU machine needs this repository on ``PYTHONPATH`` and the project's dependencies;
``open_clip_torch`` (3.3.0), ``ftfy``, ``wcwidth`` and ``pycocotools`` are the ones a stock PyTorch
image usually lacks (carry them as wheels).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
PAPER = {"fps": 2.63, "memory_gb": 10.2, "gpu_hours": 45.0, "iterations": 25000, "batch": 16}


def _params(out: Path, args) -> None:
    """The smoke run's params at the paper's sizes (or the sizes given)."""
    p = yaml.safe_load((out / "params.yaml").read_text())
    p["model"]["paper"].update(image_size=args.image_size, class_names=args.class_names)
    p["train_defaults"]["paper"].update(iterations=args.iterations, batch_size=args.batch, crop_size=args.crop,
                                        bf16=True, grad_checkpointing=True, log_period=1,
                                        checkpoint_period=10 ** 6, num_workers=args.workers)
    p["proposals"]["paper"]["test_sizes"] = {"default": list(args.test_size),
                                             "mapillary": [args.test_size[0] * 1024 // 800,
                                                           args.test_size[1] * 2560 // 1333]}
    (out / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))


def _smart(out: Path, *argv: str) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "SMART_TEXT_CACHE": str(out / "data/text_cache")}
    cmd = [sys.executable, "-m", "smart", *argv]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=out, env=env, check=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="build/gpu-paper", help="working directory (data, weights, results)")
    ap.add_argument("--json", default=None, help="result JSON (default: OUT/gpu_paper.json)")
    ap.add_argument("--device", default="cuda", help="cuda | cpu")
    ap.add_argument("--image-size", type=int, default=896, help="CLIP input side (paper: 896)")
    ap.add_argument("--test-size", type=int, nargs=2, default=[800, 1333], help="generator test size (paper: 800 1333)")
    ap.add_argument("--crop", type=int, default=1024, help="LSJ training crop (paper: 1024)")
    ap.add_argument("--batch", type=int, default=4, help="images per training step on the one GPU")
    ap.add_argument("--iterations", type=int, default=20, help="training iterations timed")
    ap.add_argument("--skip", type=int, default=3, help="first iterations left out of the median (warm-up)")
    ap.add_argument("--images", type=int, default=2, help="timed inference images (ADE-150 fixture has 2)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed inference images first")
    ap.add_argument("--scale", type=int, default=64, help="enlargement of the raw fixtures")
    ap.add_argument("--workers", type=int, default=4, help="data-loader workers")
    ap.add_argument("--class-names", default="openseg", choices=("openseg", "plain"),
                    help="openseg: synonyms x 14 templates (paper); plain: one prompt per class")
    args = ap.parse_args(argv)

    import torch

    from smart.provenance import read_run_record
    from smart.report.table2 import efficiency
    from smart.smoke import SWINB_DIR, setup

    out = Path(args.out).resolve()
    t0 = time.perf_counter()
    setup(out, scale=args.scale, image_size=args.image_size, iterations=args.iterations,
          test_size=list(args.test_size))
    _params(out, args)
    for unit in ("coco", "ade20k_150"):
        _smart(out, "prepare", unit, "--root", "datasets", "--skip-count-check", "--workers", "2")
    store = "data/proposals/swinb/coco_train"
    _smart(out, "cache-proposals", "coco_train", "--generator", SWINB_DIR, "--params", "params.yaml",
           "--profile", "paper", "--root", "datasets", "--out", store, "--device", args.device, "--batch-size", "1")
    train_dir = out / "results/train/smart_swinb/s0"
    t_train = time.perf_counter()
    _smart(out, "train", "--params", "params.yaml", "--cell", "smart_swinb", "--seed", "0", "--profile", "paper",
           "--root", "datasets", "--out", str(train_dir), "--proposals", store, "--device", args.device,
           "--resume", "never")
    train_wall = time.perf_counter() - t_train
    variants = {"fp32": ("--fp32",), "bf16": (), "bf16_compile": ("--compile",)}
    for name, flags in variants.items():
        warmup = max(args.warmup, 1) if "--compile" in flags else args.warmup  # compiles on the first image
        _smart(out, "benchmark", "--params", "params.yaml", "--cell", "smart_swinb", "--seed", "0",
               "--model", str(train_dir / "model.pt"), "--profile", "paper", "--root", "datasets",
               "--dataset", "ade150", "--images", str(args.images), "--warmup", str(warmup),
               "--device", args.device, "--out", str(out / f"results/benchmarks/smart_swinb_{name}.json"), *flags)

    # per-iteration timings are in the run records beside the results (smart.provenance)
    records = [json.loads(ln) for ln in (train_dir / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    timing = read_run_record(train_dir / "metrics.jsonl")["lines"]
    records = [{**r, **t} for r, t in zip(records, timing)]
    summary = {**json.loads((train_dir / "summary.json").read_text()), **read_run_record(train_dir / "summary.json")}
    steps = [r["time"] for r in records if r["iteration"] > args.skip] or [r["time"] for r in records]
    step = statistics.median(steps)
    inference = {}
    for name in variants:
        rec = json.loads((out / f"results/benchmarks/smart_swinb_{name}.json").read_text())
        inference[name] = {**{k: rec.get(k) for k in ("fps", "memory_gb", "memory_kind", "ms_generator",
                                                      "ms_classifier", "ms_postprocess", "images", "warmup",
                                                      "device", "autocast", "compiled")},
                           **efficiency(rec)}
    b = inference["bf16"]
    gpu = torch.cuda.get_device_name(0) if args.device.startswith("cuda") and torch.cuda.is_available() else "cpu"
    gpu_hours = step * (PAPER["batch"] / args.batch) * PAPER["iterations"] / 3600.0
    result = {
        "device": gpu,
        "torch": torch.__version__,
        "settings": {"clip_model": "ViT-L-14-336-quickgelu", "generator": "Swin-B IN21k 384 (random weights)",
                     "image_size": args.image_size, "test_size": list(args.test_size), "crop": args.crop,
                     "batch_per_step": args.batch, "bf16": True, "activation_checkpointing": True,
                     "class_names": args.class_names, "iterations": args.iterations,
                     "median_of_iterations_after": args.skip},
        "train": {"step_seconds_median": round(step, 4), "step_seconds_all": [round(s, 4) for s in steps],
                  "images_per_s": round(args.batch / step, 3), "max_mem_mb": summary.get("max_mem_mb"),
                  "gpu_hours_25k_x16": round(gpu_hours, 2), "wall_seconds_with_start": round(train_wall, 1)},
        "inference": inference,
        "paper": PAPER,
        "total_seconds": round(time.perf_counter() - t0, 1),
    }
    dest = Path(args.json) if args.json else out / "gpu_paper.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"{gpu}: training {step:.3f} s/step at batch {args.batch} ({result['train']['images_per_s']} img/s, "
          f"peak {summary.get('max_mem_mb')} MB) -> {gpu_hours:.1f} GPU-hours for 25k x 16 (paper 45); inference "
          f"{b.get('fps'):.2f} FPS, {b.get('memory_gb'):.2f} GB (paper 2.63 FPS, 10.2 GB; fp32 classifier "
          f"{inference['fp32']['fps']:.2f} FPS, bf16 + torch.compile {inference['bf16_compile']['fps']:.2f} FPS) "
          f"-> {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
