"""Throughput of ``python -m smart predict`` on CPU with the mini profile's model; prints images/s.

    python benchmarks/bench_predict.py [--cell smart_swinb] [--images 200] [--threads 2] [--batch-size 16]

Needs the mini DAG's trained cell (``snakemake --cores all results/train/smart_swinb/s0/model.pt``). Two
inputs are timed: the mini world's own 96 px PNGs (COCO-like val), and the same images saved as 640×480
JPEGs (a photo-like size, which predict first reduces to the mini test size). Each figure is the whole
verb's wall time after the model is loaded: the up-front decode check, decoding, both models,
post-processing, and writing the panoptic / semantic PNGs, the overlays and the JSON files.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cell", default="smart_swinb")
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from PIL import Image

    from smart.cli.predict import text_cache_dir
    from smart.data.registry import Dataset
    from smart.experiment import Experiment
    from smart.predict import PredictSettings, collect_images, default_test_size, load_predictor, run_predict

    os.chdir(ROOT)
    torch.set_num_threads(args.threads)
    exp = Experiment.load("params.yaml")
    ds = Dataset.open("coco", profile="mini", root=exp.root)
    vocab = ds.vocab
    cell = exp.cell(args.cell)
    ckpt = f"results/train/{cell.model_cell}/s{cell.seeds[0]}/model.pt"
    ev = exp.eval
    settings = PredictSettings(object_mask_threshold=ev["object_mask_threshold"],
                               overlap_threshold=ev["overlap_threshold"], mask_threshold=ev["mask_threshold"],
                               batch_size=args.batch_size, test_size=default_test_size(exp),
                               top_k=exp.proposal_config().top_k)
    t0 = time.perf_counter()
    predictor, _ = load_predictor(ckpt, exp=exp, vocab=vocab, settings=settings, device="cpu",
                                  text_cache_dir=text_cache_dir(None))
    load_s = time.perf_counter() - t0
    n = min(args.images, len(ds))
    native = [Path(ds.records[i]["file_name"]) for i in range(n)]
    print(f"cell {args.cell}, {n} images, {len(vocab)} classes, batch {args.batch_size}, {args.threads} threads; "
          f"model loaded in {load_s:.1f} s")
    with tempfile.TemporaryDirectory() as tmp:
        photos = Path(tmp) / "photos"
        photos.mkdir()
        for p in native:
            Image.open(p).convert("RGB").resize((640, 480), Image.BICUBIC).save(photos / f"{p.stem}.jpg", quality=90)
        for label, inputs in (("96 px PNG (native)", native), ("640x480 JPEG", collect_images([str(photos)]))):
            out = Path(tmp) / f"out-{len(label)}"
            t0 = time.perf_counter()
            s = run_predict(predictor, inputs, out, record={})
            wall = time.perf_counter() - t0
            print(f"{label:>20}: {n / wall:6.1f} images/s end to end ({wall:.1f} s: check {s['check_seconds']:.1f} s, "
                  f"segment + write {s['seconds']:.1f} s = {s['images_per_s']:.1f} images/s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
