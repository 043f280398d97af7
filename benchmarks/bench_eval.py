"""Throughput of smart.eval on synthetic ADE-sized images (default 2000 × 512×683); prints images/s.

    python benchmarks/bench_eval.py [--num-images 2000] [--workers 1 2] [--keep DIR] [--panopticapi DIR]

``--panopticapi DIR`` also runs cocodataset/panopticapi's own ``pq_compute`` (DIR holds its
``panopticapi/`` package, e.g. a clone of https://github.com/cocodataset/panopticapi; it runs one
process per core) on the same files in the same run, checks that every PQ / SQ / RQ / n is equal, and
prints our speed relative to it: in-process with the same number of processes, and as
``python -m smart evaluate panoptic`` from the command line, start-up included.

Measured: PQ from COCO-panoptic files (PNG decode included) and streamed from in-memory id maps;
mIoU from label-map files (150 classes, 8-bit PNG; 847 classes, 16-bit TIFF) and streamed. The
synthetic images are ``--unique`` distinct random scenes (about 30 segments, crowd and VOID regions,
shifted/relabelled predictions) repeated under distinct image ids, so generation stays cheap while
every evaluated image is decoded and scored from scratch.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from smart.eval.io import id2rgb  # noqa: E402
from smart.eval.panoptic import PanopticAccumulator, evaluate_panoptic_files  # noqa: E402
from smart.eval.semantic import SemSegAccumulator, evaluate_semantic_files  # noqa: E402

N_THING = 100  # ADE-150: 100 things, 50 stuff


def scene(rng, h, w, n_rects=30):
    lab = np.zeros((h, w), dtype=np.int64)
    for k in range(1, n_rects + 1):
        rh, rw = rng.integers(h // 16, h // 2), rng.integers(w // 16, w // 2)
        y, x = rng.integers(0, h - 1), rng.integers(0, w - 1)
        lab[y:y + rh, x:x + rw] = k
    return lab


def make_templates(rng, n, h, w):
    out = []
    for _ in range(n):
        regions = scene(rng, h, w)
        gt_ids = np.zeros((h, w), dtype=np.int64)
        gsegs, region_cat = [], {}
        for r in np.unique(regions):
            if rng.random() < 0.08:
                continue  # VOID
            sid = int(rng.integers(1, 256**3))
            gt_ids[regions == r] = sid
            cat = int(rng.integers(0, 150))
            region_cat[int(r)] = cat
            gsegs.append({"id": sid, "category_id": cat, "iscrowd": int(rng.random() < 0.05),
                          "area": int(np.sum(regions == r)), "bbox": [0, 0, 1, 1]})
        p = np.roll(regions, (int(rng.integers(-8, 9)), int(rng.integers(-8, 9))), axis=(0, 1))
        pred_ids = np.zeros((h, w), dtype=np.int64)
        psegs = []
        for r in np.unique(p):
            sid = int(rng.integers(1, 256**3))
            pred_ids[p == r] = sid
            cat = region_cat.get(int(r), int(rng.integers(0, 150)))
            if rng.random() < 0.2:
                cat = int(rng.integers(0, 150))
            psegs.append({"id": sid, "category_id": cat})
        sem_gt = (regions * 37 % 150).astype(np.uint8)
        sem_gt[regions == 0] = 255
        sem_pred = (p * 37 % 150).astype(np.uint8)
        sem_gt847 = (regions * 131 % 847).astype(np.uint16)
        sem_gt847[regions == 0] = 65535
        sem_pred847 = (p * 131 % 847).astype(np.uint16)
        out.append(dict(gt_ids=gt_ids, gsegs=gsegs, pred_ids=pred_ids, psegs=psegs, sem_gt=sem_gt,
                        sem_pred=sem_pred, sem_gt847=sem_gt847, sem_pred847=sem_pred847))
    return out


def encode(arr, fmt):
    import io

    b = io.BytesIO()
    Image.fromarray(arr).save(b, format=fmt)
    return b.getvalue()


def write_dataset(root: Path, templates, n: int):
    enc = [dict(gt=encode(id2rgb(t["gt_ids"]), "PNG"), pred=encode(id2rgb(t["pred_ids"]), "PNG"),
                sgt=encode(t["sem_gt"], "PNG"), spred=encode(t["sem_pred"], "PNG"),
                sgt847=encode(t["sem_gt847"], "TIFF"), spred847=encode(t["sem_pred847"], "PNG"))
           for t in templates]
    for d in ("gt", "pred", "sgt", "spred", "sgt847", "spred847"):
        (root / d).mkdir(parents=True, exist_ok=True)
    gt_anns, pred_anns = [], []
    for i in range(n):
        k = i % len(templates)
        name = f"ADE_val_{i:08d}"
        e, t = enc[k], templates[k]
        (root / "gt" / f"{name}.png").write_bytes(e["gt"])
        (root / "pred" / f"{name}.png").write_bytes(e["pred"])
        (root / "sgt" / f"{name}.png").write_bytes(e["sgt"])
        (root / "spred" / f"{name}.png").write_bytes(e["spred"])
        (root / "sgt847" / f"{name}.tif").write_bytes(e["sgt847"])
        (root / "spred847" / f"{name}.png").write_bytes(e["spred847"])
        gt_anns.append({"image_id": name, "file_name": f"{name}.png", "segments_info": t["gsegs"]})
        pred_anns.append({"image_id": name, "file_name": f"{name}.png", "segments_info": t["psegs"]})
    categories = [{"id": c, "name": f"c{c}", "isthing": int(c < N_THING)} for c in range(150)]
    (root / "gt.json").write_text(json.dumps({"annotations": gt_anns, "categories": categories}))
    (root / "pred.json").write_text(json.dumps({"annotations": pred_anns}))
    return categories


def timed(label, n, fn):
    t0 = time.perf_counter()
    res = fn()
    dt = time.perf_counter() - t0
    print(f"{label:48s} {n:6d} images  {dt:7.2f} s  {n / dt:8.1f} images/s", flush=True)
    return res


def compare_panopticapi(folder: Path, root: Path, n: int, ref: dict) -> None:
    """panopticapi's pq_compute vs ours on the same files: equal results, and the speed ratio."""
    import contextlib
    import io
    import multiprocessing
    import subprocess

    sys.path.insert(0, str(folder.resolve()))
    from panopticapi.evaluation import pq_compute

    cores = multiprocessing.cpu_count()  # what pq_compute uses
    files = (root / "gt.json", root / "pred.json", root / "gt", root / "pred")
    with contextlib.redirect_stdout(io.StringIO()):
        t_ref = time.perf_counter()
        theirs = pq_compute(*map(str, files))
        t_ref = time.perf_counter() - t_ref
    print(f"{'panopticapi pq_compute, ' + str(cores) + ' processes':48s} {n:6d} images  {t_ref:7.2f} s  "
          f"{n / t_ref:8.1f} images/s")
    t_ours = time.perf_counter()
    ours = evaluate_panoptic_files(*files[:2], files[2], files[3], workers=cores, show_progress=False)
    t_ours = time.perf_counter() - t_ours
    print(f"{'PQ files, workers=' + str(cores) + ' (same run)':48s} {n:6d} images  {t_ours:7.2f} s  "
          f"{n / t_ours:8.1f} images/s")
    out = root / "metrics.json"
    t_cli = time.perf_counter()
    subprocess.run([sys.executable, "-m", "smart", "evaluate", "panoptic", "--gt-json", str(files[0]),
                    "--pred-json", str(files[1]), "--gt-dir", str(files[2]), "--pred-dir", str(files[3]),
                    "--workers", str(cores), "--out", str(out)], check=True, cwd=ROOT, capture_output=True)
    t_cli = time.perf_counter() - t_cli
    print(f"{'python -m smart evaluate panoptic (start-up incl.)':48s} {n:6d} images  {t_cli:7.2f} s  "
          f"{n / t_cli:8.1f} images/s")
    # panopticapi's processes each sum their IoUs and then add the sums, so its last bit depends on the
    # process count; with one process it is bit-identical to ours (tests/eval/test_pq_reference.py).
    cli = json.loads(out.read_text())
    worst = 0.0
    for split in ("All", "Things", "Stuff"):
        mine = {k: ours[split][k] for k in ("pq", "sq", "rq", "n")}
        assert mine == {k: ref[split][k] for k in mine} == {k: cli[split][k] for k in mine}, split
        assert mine["n"] == theirs[split]["n"] and mine["rq"] == theirs[split]["rq"], (split, mine, theirs[split])
        worst = max([worst] + [abs(mine[k] - theirs[split][k]) for k in ("pq", "sq")])
    assert worst <= 1e-12, worst
    print(f"results equal to panopticapi's (All / Things / Stuff: n and RQ exactly, PQ and SQ within {worst:.0e}); "
          f"speed vs panopticapi: {t_ref / t_ours:.2f}x in-process, {t_ref / t_cli:.2f}x from the command line")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num-images", type=int, default=2000)
    ap.add_argument("--height", type=int, default=512)
    ap.add_argument("--width", type=int, default=683)
    ap.add_argument("--unique", type=int, default=40, help="distinct synthetic scenes")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--keep", type=Path, default=None, help="write the data set here and keep it")
    ap.add_argument("--panopticapi", type=Path, default=None,
                    help="folder holding cocodataset/panopticapi's panopticapi/ package: compare with it")
    args = ap.parse_args(argv)

    rng = np.random.default_rng(0)
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench_eval_"))
    n = args.num_images
    try:
        t0 = time.perf_counter()
        templates = make_templates(rng, args.unique, args.height, args.width)
        categories = write_dataset(root, templates, n)
        made = time.perf_counter() - t0
        print(f"data: {n} images of {args.height}x{args.width} in {root} ({made:.1f} s to make)")

        def stream_pq():
            acc = PanopticAccumulator(categories)
            for i in range(n):
                t = templates[i % len(templates)]
                acc.add(f"ADE_val_{i:08d}", t["gt_ids"], t["gsegs"], t["pred_ids"], t["psegs"])
            return acc.summary()

        def stream_sem(k, ignore, g, p):
            def run():
                acc = SemSegAccumulator(k, ignore)
                for i in range(n):
                    t = templates[i % len(templates)]
                    acc.add(t[g], t[p])
                return acc.summary()
            return run

        ref = timed("PQ streaming (in-memory id maps)", n, stream_pq)
        for w in args.workers:
            res = timed(f"PQ files (PNG decode), workers={w}", n,
                        lambda w=w: evaluate_panoptic_files(root / "gt.json", root / "pred.json",
                                                            workers=w, show_progress=False))
            assert res["All"] == ref["All"]
        if args.panopticapi is not None:
            compare_panopticapi(args.panopticapi, root, n, ref)
        timed("mIoU streaming, 150 classes uint8", n, stream_sem(150, 255, "sem_gt", "sem_pred"))
        timed("mIoU streaming, 847 classes uint16", n, stream_sem(847, 65535, "sem_gt847", "sem_pred847"))
        for w in args.workers:
            timed(f"mIoU files, 150 classes PNG, workers={w}", n,
                  lambda w=w: evaluate_semantic_files(root / "sgt", root / "spred", 150, 255, workers=w,
                                                      show_progress=False))
            timed(f"mIoU files, 847 classes TIFF/16-bit PNG, workers={w}", n,
                  lambda w=w: evaluate_semantic_files(root / "sgt847", root / "spred847", 847, 65535,
                                                      workers=w, show_progress=False))
        print(f"PQ All = {100 * ref['All']['pq']:.3f} over {ref['All']['n']} categories")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
