"""Run the reference preparation scripts and ``python -m smart prepare`` on the same raw-format data and
compare what they write; prints one line per check and exits 1 on any difference.

    python benchmarks/reference_parity.py --mask2former DIR --fcclip DIR --panopticapi DIR \
        --detail-api DIR --detectron2 DIR [--scale 1 3] [--keep DIR]

Each DIR is a clone of the public repository (facebookresearch/Mask2Former, bytedance/fc-clip,
cocodataset/panopticapi, zhanghang1989/detail-api, facebookresearch/detectron2); a data set whose
references are not given is skipped.
The raw data are the prepare tests' fixtures (``smart/data/prepare/fixtures.py``), written once per
``--scale`` (scale > 1 enlarges every map and gives the images a texture). Compared:

* COCO panoptic → semantic (Mask2Former ``datasets/prepare_coco_semantic_annos_from_panoptic_annos.py``
  with detectron2's ``COCO_CATEGORIES``): semantic PNG pixels.
* ADE20K-150 (Mask2Former ``datasets/prepare_ade20k_sem_seg.py``, ``prepare_ade20k_pan_seg.py``, run
  with panopticapi on ``PYTHONPATH``): semantic PNG pixels; panoptic JSON ``images`` and
  ``categories`` equal; per image the same segments in the same order with equal ``category_id``,
  ``area``, ``bbox``, ``iscrowd``, equal ``id`` wherever the reference used the category colour (its
  jittered ids come from an unseeded RNG); the panoptic PNGs equal after mapping the reference's ids
  to ours.
* ADE20K-847 (fc-clip ``datasets/prepare_ade20k_full_sem_seg.py``): image JPEG bytes and label TIFF
  pixels.
* PASCAL Context 59 / 459 (fc-clip ``datasets/prepare_pascal_ctx_sem_seg.py`` with the Detail API,
  ``prepare_pascal_ctx_full_sem_seg.py``): label pixels and copied image bytes.

What the scripts import without using it for the conversion is provided by a shim (``SHIM`` below).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from smart.data.prepare import fixtures  # noqa: E402
from smart.data.prepare.common import Context  # noqa: E402
from smart.data.prepare.runner import prepare_dataset  # noqa: E402

# Runs a reference script as __main__ with what it imports but does not use for the conversion made
# available: the Detail API's compiled RLE module (= pycocotools' _mask, the same code), skimage.io
# (used only to show images), fvcore's downloader (imported, unused) and detectron2's builtin_meta
# (plain data, loaded from the detectron2 clone's file).
SHIM = """
import importlib.util, os, runpy, sys, types
import pycocotools._mask
sys.modules["detail._mask"] = pycocotools._mask
def stub(name, **attrs):
    mod = types.ModuleType(name); mod.__dict__.update(attrs); sys.modules[name] = mod; return mod
try:
    import skimage.io  # noqa: F401
except ImportError:
    stub("skimage", io=stub("skimage.io"))
try:
    import fvcore.common.download  # noqa: F401
except ImportError:
    stub("fvcore", common=stub("fvcore.common", download=stub("fvcore.common.download", download=None)))
meta = os.environ.get("PARITY_D2_BUILTIN_META")
if meta:
    spec = importlib.util.spec_from_file_location("detectron2.data.datasets.builtin_meta", meta)
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    stub("detectron2", data=stub("detectron2.data", datasets=stub("detectron2.data.datasets", builtin_meta=mod)))
    sys.modules["detectron2.data.datasets.builtin_meta"] = mod
import matplotlib
matplotlib.use("Agg")
runpy.run_path(sys.argv[1], run_name="__main__")
"""


class Report:
    def __init__(self) -> None:
        self.failed = 0
        self.passed = 0

    def check(self, ok: bool, what: str, detail: str = "") -> None:
        self.passed += bool(ok)
        self.failed += not ok
        print(f"  {'ok  ' if ok else 'FAIL'} {what}" + (f": {detail}" if detail and not ok else ""))


def run_reference(script: Path, data: Path, *, cwd: Path, pythonpath: list[Path], env: dict | None = None) -> None:
    env = dict(os.environ, DETECTRON2_DATASETS=str(data), **(env or {}),
               PYTHONPATH=os.pathsep.join([str(p) for p in pythonpath] + [os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-c", SHIM, str(script)], cwd=cwd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{script} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")


def ours(root: Path, dataset: str) -> None:
    ctx = Context(root=root, raw_dir=root / "raw", skip_count_check=True, workers=1)
    prepare_dataset(ctx, dataset)


def ids_of(path: Path) -> np.ndarray:
    rgb = np.asarray(Image.open(path)).astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def same_pixels(a: Path, b: Path) -> bool:
    x, y = np.asarray(Image.open(a)), np.asarray(Image.open(b))
    return x.shape == y.shape and x.dtype == y.dtype and bool((x == y).all())


def compare_coco(rep: Report, mine: Path, ref: Path) -> None:
    for split in ("val2017", "train2017"):
        a, b = mine / "coco" / f"panoptic_semseg_{split}", ref / "coco" / f"panoptic_semseg_{split}"
        names = sorted(p.name for p in b.iterdir())
        rep.check(names == sorted(p.name for p in a.iterdir()), f"coco panoptic_semseg_{split}: same files")
        rep.check(all(same_pixels(a / n, b / n) for n in names), f"coco panoptic_semseg_{split}: same pixels "
                                                                  f"({len(names)} maps)")


def compare_ade150(rep: Report, mine: Path, ref: Path) -> None:
    a, b = mine / "ADEChallengeData2016", ref / "ADEChallengeData2016"
    for split in ("training", "validation"):
        names = sorted(p.name for p in (b / "annotations_detectron2" / split).iterdir())
        rep.check(names == sorted(p.name for p in (a / "annotations_detectron2" / split).iterdir()),
                  f"ade20k_150 semantic {split}: same files")
        rep.check(all(same_pixels(a / "annotations_detectron2" / split / n, b / "annotations_detectron2" / split / n)
                      for n in names), f"ade20k_150 semantic {split}: same pixels ({len(names)} maps)")
    for name in ("val", "train"):
        jm = json.loads((a / f"ade20k_panoptic_{name}.json").read_text())
        jr = json.loads((b / f"ade20k_panoptic_{name}.json").read_text())
        rep.check(jm["images"] == jr["images"], f"ade20k_150 panoptic {name}: images equal")
        rep.check(jm["categories"] == jr["categories"], f"ade20k_150 panoptic {name}: categories equal")
        colour_ids = {c["id"]: c["color"][0] + 256 * c["color"][1] + 65536 * c["color"][2]
                      for c in jr["categories"]}
        same_fields = same_ids = same_png = True
        n_seg = n_empty = 0
        for am, ar in zip(jm["annotations"], jr["annotations"], strict=True):
            sm, sr = am["segments_info"], ar["segments_info"]
            if [am["image_id"], am["file_name"], len(sm)] != [ar["image_id"], ar["file_name"], len(sr)]:
                same_fields = False
                continue
            mapping = {}
            for x, y in zip(sm, sr):
                n_seg += 1
                same_fields &= all(x[k] == y[k] for k in ("category_id", "area", "bbox", "iscrowd"))
                if y["id"] == colour_ids[y["category_id"]]:
                    same_ids &= x["id"] == y["id"]
                mapping[y["id"]] = x["id"]
            pm, pr = ids_of(a / f"ade20k_panoptic_{name}" / am["file_name"]), ids_of(b / f"ade20k_panoptic_{name}" / ar["file_name"])
            present = set(np.unique(pr).tolist()) - {0}
            n_empty += sum(y["id"] not in present for y in sr)
            lut = {0: 0, **mapping}
            same_png &= pm.shape == pr.shape and bool((np.vectorize(lut.get)(pr) == pm).all())
        rep.check(same_fields, f"ade20k_panoptic_{name}: {n_seg} segments, equal category/area/bbox/iscrowd "
                               f"({n_empty} stuff segment(s) with no pixel)")
        rep.check(same_ids, f"ade20k_panoptic_{name}: equal ids where the reference used the category colour")
        rep.check(same_png, f"ade20k_panoptic_{name}: PNGs equal up to the id mapping")


def compare_ade847(rep: Report, mine: Path, ref: Path) -> None:
    a, b = mine / "ADE20K_2021_17_01", ref / "ade" / "ADE20K_2021_17_01"
    for split in ("training", "validation"):
        imgs = sorted(p.name for p in (b / "images_detectron2" / split).iterdir())
        rep.check(imgs == sorted(p.name for p in (a / "images_detectron2" / split).iterdir()),
                  f"ade20k_847 {split}: same image files")
        rep.check(all((a / "images_detectron2" / split / n).read_bytes() == (b / "images_detectron2" / split / n).read_bytes()
                      for n in imgs), f"ade20k_847 {split}: JPEG bytes equal ({len(imgs)} images, "
                                      f"sizes {[Image.open(b / 'images_detectron2' / split / n).size for n in imgs]})")
        labs = sorted(p.name for p in (b / "annotations_detectron2" / split).iterdir())
        rep.check(all(same_pixels(a / "annotations_detectron2" / split / n, b / "annotations_detectron2" / split / n)
                      for n in labs), f"ade20k_847 {split}: label pixels equal ({len(labs)} TIFFs)")


def compare_pascal(rep: Report, mine: Path, ref: Path) -> None:
    a, b = mine / "pascal_ctx_d2", ref / "pascal_ctx_d2"
    for sub, what in (("annotations_ctx59", "PC-59 labels"), ("annotations_ctx459", "PC-459 labels"),
                      ("images", "copied images")):
        for split in ("training", "validation"):
            names = sorted(p.name for p in (b / sub / split).iterdir())
            rep.check(names == sorted(p.name for p in (a / sub / split).iterdir()), f"{what} {split}: same files")
            if sub == "images":
                ok = all((a / sub / split / n).read_bytes() == (b / sub / split / n).read_bytes() for n in names)
            else:
                ok = all(same_pixels(a / sub / split / n, b / sub / split / n) for n in names)
            rep.check(ok, f"{what} {split}: equal ({len(names)} files)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mask2former", type=Path, help="clone of facebookresearch/Mask2Former")
    ap.add_argument("--fcclip", type=Path, help="clone of bytedance/fc-clip")
    ap.add_argument("--panopticapi", type=Path, help="clone of cocodataset/panopticapi (for Mask2Former's script)")
    ap.add_argument("--detail-api", type=Path, help="clone of zhanghang1989/detail-api (for fc-clip's PC-59 script)")
    ap.add_argument("--detectron2", type=Path, help="clone of facebookresearch/detectron2 (COCO_CATEGORIES, for "
                                                    "Mask2Former's COCO script)")
    ap.add_argument("--scale", type=int, nargs="+", default=[1, 3], help="fixture enlargement factors")
    ap.add_argument("--keep", type=Path, default=None, help="keep the data trees here")
    args = ap.parse_args(argv)
    rep = Report()
    base = args.keep or Path(tempfile.mkdtemp(prefix="smart-parity-"))
    try:
        for scale in args.scale:
            print(f"scale {scale}")
            mine, ref = base / f"scale{scale}" / "smart", base / f"scale{scale}" / "reference"
            for d in (mine, ref):
                shutil.rmtree(d, ignore_errors=True)
            if args.mask2former and args.panopticapi and args.detectron2:
                for d in (mine, ref):
                    fixtures.build_coco(d, scale=scale)
                ours(mine, "coco")
                run_reference(args.mask2former / "datasets/prepare_coco_semantic_annos_from_panoptic_annos.py", ref,
                              cwd=ref, pythonpath=[args.panopticapi],
                              env={"PARITY_D2_BUILTIN_META": str(args.detectron2 / "detectron2/data/datasets/builtin_meta.py")})
                compare_coco(rep, mine, ref)
            if args.mask2former and args.panopticapi:
                for d in (mine, ref):
                    fixtures.build_ade(d, scale=scale)
                ours(mine, "ade20k_150")
                work = base / f"scale{scale}" / "m2f-cwd"
                (work / "datasets").mkdir(parents=True, exist_ok=True)
                for f in ("ade20k_instance_catid_mapping.txt", "ade20k_instance_imgCatIds.json"):
                    shutil.copy(args.mask2former / "datasets" / f, work / "datasets" / f)
                for script in ("prepare_ade20k_sem_seg.py", "prepare_ade20k_pan_seg.py"):
                    run_reference(args.mask2former / "datasets" / script, ref, cwd=work,
                                  pythonpath=[args.panopticapi])
                compare_ade150(rep, mine, ref)
            if args.fcclip:
                fixtures.build_ade847(mine, scale=scale)
                fixtures.build_ade847(ref, ade_level=True, scale=scale)
                ours(mine, "ade20k_847")
                run_reference(args.fcclip / "datasets/prepare_ade20k_full_sem_seg.py", ref, cwd=ref, pythonpath=[])
                compare_ade847(rep, mine, ref)
            if args.fcclip and args.detail_api:
                for d in (mine, ref):
                    fixtures.build_pascal(d, scale=scale)
                ours(mine, "pascal_ctx_59")
                ours(mine, "pascal_ctx_459")
                for script in ("prepare_pascal_ctx_sem_seg.py", "prepare_pascal_ctx_full_sem_seg.py"):
                    run_reference(args.fcclip / "datasets" / script, ref, cwd=ref,
                                  pythonpath=[args.detail_api / "PythonAPI"])
                compare_pascal(rep, mine, ref)
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    print(f"{rep.passed} checks passed, {rep.failed} failed")
    return 1 if rep.failed or not rep.passed else 0


if __name__ == "__main__":
    sys.exit(main())
