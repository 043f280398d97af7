"""PASCAL Context 59 (PNG, 255 = ignore) and 459 (16-bit TIFF, 65535 = ignore).

``docs/datasets.md`` §6. Raw data: ``VOCdevkit/VOC2010/{JPEGImages, trainval/*.mat,
trainval_merged.json}``.

**PC-59** (:func:`convert_pc59`). The Detail API (``zhanghang1989/detail-api``) is not on PyPI, so
it is not used; its two roles are reimplemented:

* *Image lists.* ``trainval_merged.json`` has an ``images`` list whose entries carry ``file_name``
  and ``phase`` (``"train"`` / ``"val"``); the Detail API's ``getImgs()`` for phase ``train`` /
  ``val`` keeps exactly the images whose ``phase`` is that value. The same filter is applied here
  (split ``training`` = phase ``train``, ``validation`` = phase ``val``). The JPEGs are copied
  unchanged to ``pascal_ctx_d2/images/<split>/``.
* *Labels.* The Detail API's ``getMask(img)`` paints each segmentation of the JSON with its
  ``category_id`` (a full-label id) and the preparation script maps the 59 ids plus 0, sorted, to
  0..59 and subtracts 1 (uint8 wrap). Here the full-label map is read instead from
  ``trainval/<stem>.mat`` (``LabelMap``, 0 = unlabelled, 1..459 = the classes of the 459-class
  list) and restricted to the 59 classes: each of the 59 full-label ids, **in ascending id order**,
  becomes 0..58; everything else (0 and the other 400 classes) becomes 255.
  **Assumption:** this equals the Detail API's mask, i.e. ``trainval_merged.json`` was made from the
  same ``.mat`` files (the 59 classes' regions in the JSON are those of ``LabelMap``).
* *The 59 full-label ids* are found by name: line *n* of ``pascal_ctx_459_with_prompt_eng.txt`` is
  ``LabelMap`` value *n*, i.e. ``builtin_vocab("pascal_ctx_459")`` id + 1; each
  ``builtin_vocab("pascal_ctx_59")`` class name is looked up among the 459 names, with one alias,
  PC-59 ``diningtable`` = PC-459 ``table``. This yields 2 (aeroplane), 9 (bag), …, 397 (table), …,
  459 (wood), whose ascending order is the PC-59 class order (checked at run time). They match the
  ``eval_orders`` list of the Detail API.
* Output: ``annotations_ctx59/<split>/<stem>.png`` (grayscale uint8).

**PC-459** (:func:`convert_pc459`) runs after PC-59: the images of a split are the JPEGs in
``pascal_ctx_d2/images/<split>/``. ``LabelMap`` 0 → 65535, other values − 1 → 0..458, written as a
16-bit TIFF ``annotations_ctx459/<split>/<stem>.tif``.
"""

from __future__ import annotations

import functools
import logging
import shutil
from pathlib import Path

import numpy as np
import scipy.io

from smart.data.categories import builtin_vocab
from smart.errors import DatasetError, InputError

from . import checks
from .common import (
    Context,
    atomic_path,
    get_field,
    image_size,
    list_files,
    parallel_map,
    read_json,
    require_dir,
    require_file,
    save_image_atomic,
    write_stamp,
)
from .download import ensure_archives

log = logging.getLogger("smart.prepare.pascal_context")

IGNORE_59 = 255
IGNORE_459 = 65535
NUM_FULL = 459
SPLITS = (("validation", "val"), ("training", "train"))
NAME_ALIASES = {"diningtable": "table"}  # PC-59 name -> PC-459 name
HINT = ("run `python -m smart prepare pascal_ctx_59 --download`, or extract VOCtrainval_03-May-2010.tar "
        "into <root>, trainval.tar.gz into <root>/VOCdevkit/VOC2010 and put trainval_merged.json there")


@functools.lru_cache(maxsize=1)
def pc59_full_ids() -> tuple[int, ...]:
    """The 59 full-label (``LabelMap``) ids, in PC-59 class order (= ascending id order)."""
    full = {c.name: c.id + 1 for c in builtin_vocab("pascal_ctx_459")}
    ids = []
    for c in builtin_vocab("pascal_ctx_59"):
        name = NAME_ALIASES.get(c.name, c.name)
        if name not in full:
            raise InputError(f"PC-59 class {c.name!r} has no PC-459 counterpart", field="pascal_ctx_59")
        ids.append(full[name])
    if ids != sorted(ids) or len(set(ids)) != len(ids):
        raise InputError("the PC-59 classes are not in ascending full-label id order", field="pascal_ctx_59")
    return tuple(ids)


@functools.lru_cache(maxsize=1)
def _lut59() -> np.ndarray:
    lut = np.full(NUM_FULL + 1, IGNORE_59, dtype=np.uint8)
    for i, fid in enumerate(pc59_full_ids()):
        lut[fid] = i
    return lut


def read_label_map(mat_path: str | Path) -> np.ndarray:
    """``LabelMap`` of a PASCAL Context ``.mat`` file, checked to hold 0..459."""
    mat_path = Path(mat_path)
    if not mat_path.is_file():
        raise DatasetError("missing label file", path=mat_path, field="LabelMap")
    try:
        mat = scipy.io.loadmat(str(mat_path))
    except Exception as exc:  # MatReadError, ValueError, OSError, ...
        raise DatasetError(f"cannot read MAT file ({type(exc).__name__}: {exc})", path=mat_path,
                           field="LabelMap") from None
    if "LabelMap" not in mat:
        raise DatasetError("no LabelMap variable", path=mat_path, field="LabelMap")
    lab = np.asarray(mat["LabelMap"])
    if lab.ndim != 2 or not np.issubdtype(lab.dtype, np.integer):
        raise DatasetError(f"expected a 2-D integer array, got {lab.shape} {lab.dtype}", path=mat_path,
                           field="LabelMap")
    lab = lab.astype(np.int64)
    if lab.size and (lab.min() < 0 or lab.max() > NUM_FULL):
        bad = sorted(set(np.unique(lab[(lab < 0) | (lab > NUM_FULL)]).tolist()))
        raise DatasetError(f"unknown category ids {bad[:10]} (expected 0..{NUM_FULL})", path=mat_path,
                           field="LabelMap")
    return lab


def _check_size(lab: np.ndarray, jpg: str | Path, mat: str | Path) -> None:
    w, h = image_size(jpg, field="image")
    if lab.shape != (h, w):
        raise DatasetError(f"LabelMap size {lab.shape[::-1]} differs from the image's {(w, h)} ({jpg})",
                           path=mat, field="LabelMap")


def _pc59_one(item) -> None:
    src_jpg, mat, out_jpg, out_png = item
    lab = read_label_map(mat)
    _check_size(lab, src_jpg, mat)
    if not Path(out_jpg).is_file():
        with atomic_path(out_jpg) as tmp:
            shutil.copyfile(src_jpg, tmp)
    save_image_atomic(_lut59()[lab], out_png, "PNG")


def split_images(merged_json: str | Path, phases: tuple[str, ...] = ("val", "train")) -> dict[str, list[str]]:
    """``{phase: sorted file names}`` of the images of ``trainval_merged.json`` with that ``phase``."""
    merged_json = Path(merged_json)
    data = read_json(merged_json, "trainval_merged.json")
    images = get_field(data, "images", merged_json, "$")
    names: dict[str, list[str]] = {p: [] for p in phases}
    for i, img in enumerate(images):
        where = f"images[{i}]"
        phase = get_field(img, "phase", merged_json, where)
        if phase in names:
            names[phase].append(str(get_field(img, "file_name", merged_json, where)))
    for phase, lst in names.items():
        if not lst:
            raise DatasetError(f"no images with phase {phase!r} (empty split)", path=merged_json,
                               field="images[].phase")
    return {p: sorted(lst) for p, lst in names.items()}


def convert_pc59(voc_dir: str | Path, out_dir: str | Path, workers: int = 1) -> dict:
    """``VOCdevkit/VOC2010`` → ``pascal_ctx_d2/{images, annotations_ctx59}/{training,validation}``."""
    voc_dir, out_dir = Path(voc_dir), Path(out_dir)
    merged = require_file(voc_dir / "trainval_merged.json", "PASCAL Context split file", HINT)
    jpeg_dir = require_dir(voc_dir / "JPEGImages", "VOC2010 images", HINT)
    mat_dir = require_dir(voc_dir / "trainval", "PASCAL Context labels (trainval/*.mat)", HINT)
    counts: dict[str, int] = {}
    items = []
    by_phase = split_images(merged, tuple(phase for _split, phase in SPLITS))
    for split, phase in SPLITS:
        names = by_phase[phase]
        counts[split] = len(names)
        for name in names:
            stem = Path(name).stem
            out_jpg = out_dir / "images" / split / name
            out_png = out_dir / "annotations_ctx59" / split / f"{stem}.png"
            if out_jpg.is_file() and out_png.is_file():
                continue
            src = jpeg_dir / name
            if not src.is_file():
                raise DatasetError(f"image listed with phase {phase!r} is missing: {src}", path=merged,
                                   field=f"images[file_name={name}]")
            items.append((str(src), str(mat_dir / f"{stem}.mat"), str(out_jpg), str(out_png)))
    parallel_map(_pc59_one, items, workers, desc="pascal_ctx_59")
    return {**counts, "written": len(items)}


def _pc459_one(item) -> None:
    jpg, mat, out_tif = item
    lab = read_label_map(mat)
    _check_size(lab, jpg, mat)
    out = np.where(lab == 0, IGNORE_459, lab - 1).astype(np.uint16)
    save_image_atomic(out, out_tif, "TIFF")


def convert_pc459(voc_dir: str | Path, out_dir: str | Path, workers: int = 1) -> dict:
    """``trainval/<stem>.mat`` for the images in ``pascal_ctx_d2/images/<split>`` → 16-bit TIFFs."""
    voc_dir, out_dir = Path(voc_dir), Path(out_dir)
    mat_dir = require_dir(voc_dir / "trainval", "PASCAL Context labels (trainval/*.mat)", HINT)
    counts: dict[str, int] = {}
    items = []
    for split, _phase in SPLITS:
        img_dir = require_dir(out_dir / "images" / split, "PC-59 image copy",
                              "run `python -m smart prepare pascal_ctx_59` first")
        jpgs = list_files(img_dir, ".jpg")
        if not jpgs:
            raise DatasetError("no images (empty split); run `python -m smart prepare pascal_ctx_59` first",
                               path=img_dir, field="*.jpg")
        counts[split] = len(jpgs)
        for p in jpgs:
            out_tif = out_dir / "annotations_ctx459" / split / f"{p.stem}.tif"
            if not out_tif.is_file():
                items.append((str(p), str(mat_dir / f"{p.stem}.mat"), str(out_tif)))
    parallel_map(_pc459_one, items, workers, desc="pascal_ctx_459")
    return {**counts, "written": len(items)}


def prepare_pc59(ctx: Context) -> None:
    ensure_archives(ctx, "pascal_ctx_59")
    voc = Path(ctx.root) / "VOCdevkit" / "VOC2010"
    out = Path(ctx.root) / "pascal_ctx_d2"
    r = convert_pc59(voc, out, ctx.workers)
    log.info("pascal_ctx_59: %d validation, %d training images (%d new)", r["validation"], r["training"],
             r["written"])
    checks.check_count(ctx, "pascal_ctx_59", out / "images" / "validation", ".jpg", key="images/validation")
    checks.check_count(ctx, "pascal_ctx_59", out / "annotations_ctx59" / "validation", ".png",
                       key="annotations_ctx59/validation")
    checks.check_semseg_values(out / "annotations_ctx59" / "validation", 59, IGNORE_59, workers=ctx.workers)
    write_stamp(ctx, "pascal_ctx_59")


def prepare_pc459(ctx: Context) -> None:
    ensure_archives(ctx, "pascal_ctx_459")
    voc = Path(ctx.root) / "VOCdevkit" / "VOC2010"
    out = Path(ctx.root) / "pascal_ctx_d2"
    r = convert_pc459(voc, out, ctx.workers)
    log.info("pascal_ctx_459: %d validation, %d training images (%d new)", r["validation"], r["training"],
             r["written"])
    checks.check_count(ctx, "pascal_ctx_459", out / "annotations_ctx459" / "validation", ".tif",
                       key="annotations_ctx459/validation")
    write_stamp(ctx, "pascal_ctx_459")
