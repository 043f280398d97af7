"""PASCAL Context 59 (PNG, 255 = ignore) and 459 (16-bit TIFF, 65535 = ignore).

``docs/datasets.md`` §6. Raw data: ``VOCdevkit/VOC2010/JPEGImages`` and ``trainval_merged.json``
(PC-59), ``VOCdevkit/VOC2010/trainval/*.mat`` (PC-459).

**PC-59** (:func:`convert_pc59`). Reference: fc-clip ``datasets/prepare_pascal_ctx_sem_seg.py``
(bytedance/fc-clip, commit a8dc32c862dfc1fe55dcf9287090e080d9ee5f50; a copy of NVlabs/ODISE's script),
which opens ``trainval_merged.json`` with the Detail API (``zhanghang1989/detail-api``, commit
568ef44). The Detail API is not on PyPI; its two roles are done here on the same JSON, decoded with
pycocotools (the Detail API's ``mask`` module is pycocotools' RLE code):

* *Image lists.* The ``images`` entries (``image_id``, ``file_name``, ``height``, ``width``,
  ``phase``) whose ``phase`` is ``"train"`` / ``"val"`` form the ``training`` / ``validation``
  split, as ``Detail(..., phase).getImgs()`` lists them. The JPEGs are copied unchanged to
  ``pascal_ctx_d2/images/<split>/``.
* *Labels.* As ``Detail.getMask(img)``: a ``height`` × ``width`` map of zeros on which every entry of
  ``annos_segmentation`` of the image is painted with its ``category_id``, in the JSON's order (a
  later segment overwrites an earlier one where they overlap; a repeated annotation ``id`` keeps the
  first one's place and the last one's content, as the Detail API's index does). The map must hold
  only 0 and the 59 class ids (the reference asserts it). Each of the 59 ids, **in ascending order**,
  becomes 0..58 and 0 becomes 255 — the reference's sorted 60-entry table, ``np.digitize`` and
  uint8 ``− 1``.
* *The 59 full-label ids* are found by name: line *n* of ``pascal_ctx_459_with_prompt_eng.txt`` is
  full-label id *n*, i.e. ``builtin_vocab("pascal_ctx_459")`` id + 1; each
  ``builtin_vocab("pascal_ctx_59")`` class name is looked up among the 459 names, with one alias,
  PC-59 ``diningtable`` = PC-459 ``table``. This yields 2 (aeroplane), 9 (bag), …, 397 (table), …,
  458 (wood), whose ascending order is the PC-59 class order (checked at run time); they are the
  reference's table and the Detail API's ``eval_orders`` (a test checks both).
* Output: ``annotations_ctx59/<split>/<stem>.png`` (grayscale uint8).

Remaining differences from the reference, none of which changes a pixel: segmentations may also be
uncompressed RLE (the Detail API decodes compressed RLE only); an existing (image, label) pair is kept,
so an interrupted run resumes; bad input (a class outside the 59, a segmentation or image whose size
differs from the JSON's ``height`` × ``width``, a missing field) is a
:class:`~smart.errors.DatasetError` naming the file and entry where the reference stops on an
``assert`` or an ``IndexError``.

**PC-459** (:func:`convert_pc459`). Reference: fc-clip ``datasets/prepare_pascal_ctx_full_sem_seg.py``
(same commit). It runs after PC-59: the images of a split are the JPEGs in
``pascal_ctx_d2/images/<split>/``. ``trainval/<stem>.mat`` ``LabelMap`` 0 → 65535, other values − 1 →
0..458, written as a 16-bit TIFF ``annotations_ctx459/<split>/<stem>.tif``. Differences: the same
resuming and error reporting; the ``LabelMap`` must hold 0..459 (the reference only asserts uint16).
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
        "into <root> and put trainval_merged.json into <root>/VOCdevkit/VOC2010")
HINT_459 = ("run `python -m smart prepare pascal_ctx_459 --download`, or extract trainval.tar.gz into "
            "<root>/VOCdevkit/VOC2010")


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


def _decode_segmentation(seg, h: int, w: int, where: str, merged: str) -> np.ndarray:
    """An ``annos_segmentation`` RLE (compressed or not) → (h, w) uint8 mask."""
    from pycocotools import mask as mask_utils

    if not isinstance(seg, dict) or "counts" not in seg or "size" not in seg:
        raise DatasetError("expected an RLE segmentation {size, counts}", path=merged, field=f"{where}.segmentation")
    if list(seg["size"]) != [h, w]:
        raise DatasetError(f"segmentation size {list(seg['size'])} differs from the image's [height, width] "
                           f"{[h, w]}", path=merged, field=f"{where}.segmentation.size")
    try:
        if isinstance(seg["counts"], list):
            rle = mask_utils.frPyObjects(seg, h, w)
        else:
            counts = seg["counts"]
            rle = {"size": [h, w], "counts": counts.encode() if isinstance(counts, str) else counts}
        return mask_utils.decode(rle)
    except Exception as exc:  # malformed counts
        raise DatasetError(f"cannot decode the RLE ({type(exc).__name__}: {exc})", path=merged,
                           field=f"{where}.segmentation") from None


def detail_mask(image: dict, anns: list, merged: str) -> np.ndarray:
    """``Detail.getMask(img)``: the full-label ids painted in the JSON's order, 0 elsewhere (h, w)."""
    h, w = image["height"], image["width"]
    mask = np.zeros((h, w), dtype=np.int64)
    for where, cat, seg in anns:
        m = _decode_segmentation(seg, h, w, where, merged)
        mask[m != 0] = cat
    return mask


def _pc59_one(item) -> None:
    src_jpg, out_jpg, out_png, image, anns, merged = item
    w, h = image_size(src_jpg, field="image")
    if (h, w) != (image["height"], image["width"]):
        raise DatasetError(f"the image is {w}x{h} but trainval_merged.json says {image['width']}x{image['height']} "
                           f"({src_jpg})", path=merged, field=image["where"])
    full = detail_mask(image, anns, merged)
    bad = sorted(set(np.unique(full).tolist()) - {0} - set(pc59_full_ids()))
    if bad:
        raise DatasetError(f"category ids {bad[:10]} of image {image['file_name']} are not among the 59 classes "
                           f"(the Detail API's PC-59 labels hold only those and 0)", path=merged,
                           field="annos_segmentation[].category_id")
    if not Path(out_jpg).is_file():
        with atomic_path(out_jpg) as tmp:
            shutil.copyfile(src_jpg, tmp)
    save_image_atomic(_lut59()[full], out_png, "PNG")


def read_detail(merged_json: str | Path, phases: tuple[str, ...] = ("val", "train")) -> tuple[dict, dict]:
    """``trainval_merged.json`` → ``({phase: [image entries, by file name]}, {image_id: [(where,
    category_id, segmentation), ...] in the Detail API's painting order})``."""
    merged_json = Path(merged_json)
    data = read_json(merged_json, "trainval_merged.json")
    images = get_field(data, "images", merged_json, "$")
    by_phase: dict[str, list[dict]] = {p: [] for p in phases}
    for i, img in enumerate(images):
        where = f"images[{i}]"
        phase = get_field(img, "phase", merged_json, where)
        if phase in by_phase:
            entry = {"where": where, "image_id": get_field(img, "image_id", merged_json, where),
                     "file_name": str(get_field(img, "file_name", merged_json, where))}
            for key in ("height", "width"):
                v = get_field(img, key, merged_json, where)
                if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                    raise DatasetError(f"expected a positive integer, got {v!r}", path=merged_json,
                                       field=f"{where}.{key}")
                entry[key] = v
            by_phase[phase].append(entry)
    for phase, lst in by_phase.items():
        if not lst:
            raise DatasetError(f"no images with phase {phase!r} (empty split)", path=merged_json,
                               field="images[].phase")
        lst.sort(key=lambda e: e["file_name"])
    segs: dict = {}  # annotation id -> (where, image_id, category_id, segmentation); dict order = painting order
    for i, ann in enumerate(get_field(data, "annos_segmentation", merged_json, "$")):
        where = f"annos_segmentation[{i}]"
        cat = get_field(ann, "category_id", merged_json, where)
        if isinstance(cat, bool) or not isinstance(cat, int):
            raise DatasetError(f"expected an integer, got {cat!r}", path=merged_json, field=f"{where}.category_id")
        segs[get_field(ann, "id", merged_json, where)] = (where, get_field(ann, "image_id", merged_json, where),
                                                         cat, get_field(ann, "segmentation", merged_json, where))
    by_image: dict = {}
    for where, image_id, cat, seg in segs.values():
        by_image.setdefault(image_id, []).append((where, cat, seg))
    return by_phase, by_image


def convert_pc59(voc_dir: str | Path, out_dir: str | Path, workers: int = 1) -> dict:
    """``VOCdevkit/VOC2010`` → ``pascal_ctx_d2/{images, annotations_ctx59}/{training,validation}``."""
    voc_dir, out_dir = Path(voc_dir), Path(out_dir)
    merged = require_file(voc_dir / "trainval_merged.json", "PASCAL Context annotations (Detail API JSON)", HINT)
    jpeg_dir = require_dir(voc_dir / "JPEGImages", "VOC2010 images", HINT)
    counts: dict[str, int] = {}
    items = []
    by_phase, by_image = read_detail(merged, tuple(phase for _split, phase in SPLITS))
    for split, phase in SPLITS:
        entries = by_phase[phase]
        counts[split] = len(entries)
        for image in entries:
            name = image["file_name"]
            stem = Path(name).stem
            out_jpg = out_dir / "images" / split / name
            out_png = out_dir / "annotations_ctx59" / split / f"{stem}.png"
            if out_jpg.is_file() and out_png.is_file():
                continue
            src = jpeg_dir / name
            if not src.is_file():
                raise DatasetError(f"image listed with phase {phase!r} is missing: {src}", path=merged,
                                   field=image["where"])
            items.append((str(src), str(out_jpg), str(out_png), image, by_image.get(image["image_id"], []),
                          str(merged)))
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
    mat_dir = require_dir(voc_dir / "trainval", "PASCAL Context labels (trainval/*.mat)", HINT_459)
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
