"""COCO panoptic 2017 → 133-class semantic maps ``coco/panoptic_semseg_{train,val}2017``.

``docs/datasets.md`` §2. For each annotation of ``annotations/panoptic_<split>2017.json``:
read the panoptic PNG (segment id = R + 256·G + 256²·B), start a uint8 map filled with 255 and give
every segment of ``segments_info`` — **crowd segments included** — its category's contiguous index in
detectron2's ``COCO_CATEGORIES`` order (``builtin_vocab("coco_panoptic")``, 0..132); VOID (id 0)
stays 255. The map is written as a grayscale PNG under the annotation's ``file_name``.

Reference: Mask2Former ``datasets/prepare_coco_semantic_annos_from_panoptic_annos.py``
(facebookresearch/Mask2Former, commit 161be514814ea63440fae520d2ec72707b62ba54) with detectron2's
``builtin_meta.COCO_CATEGORIES``; the maps are pixel for pixel that script's
(``benchmarks/reference_parity.py``). This is not detectron2's ``prepare_panoptic_fpn.py`` (which
maps all things to 0).

Remaining differences, none of which changes a pixel of valid data: bad input stops with a
:class:`DatasetError` — a category id not among the 133 (the reference: ``KeyError``), a PNG id
missing from ``segments_info`` or a ``segments_info`` id missing from the PNG (the reference leaves
such pixels 255 or ignores the entry), an unreadable PNG, an empty annotation list; existing maps are
kept, so an interrupted run resumes.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from smart.data.categories import builtin_vocab
from smart.errors import DatasetError

from . import checks
from .common import (
    Context,
    get_field,
    parallel_map,
    read_json,
    read_rgb,
    require_dir,
    require_file,
    rgb2id,
    save_image_atomic,
    write_stamp,
)
from .download import ensure_archives

log = logging.getLogger("smart.prepare.coco")

IGNORE = 255
SPLITS = ("val", "train")
HINT = ("run `python -m smart prepare coco --download`, or download and unzip the COCO 2017 images, "
        "annotations and panoptic annotations (and the nested panoptic_<split>2017.zip) into <root>/coco")


def _semseg_one(item) -> str:
    png_path, out_path, pairs, json_path, where = item
    seg = rgb2id(read_rgb(png_path, field="panoptic PNG"))
    uniq, inverse = np.unique(seg, return_inverse=True)
    lut = dict(pairs)
    present = set(int(u) for u in uniq) - {0}
    extra = sorted(present - set(lut))
    missing = sorted(set(lut) - present)
    if extra:
        raise DatasetError(f"segment ids {extra[:10]} of the PNG {png_path} are not in segments_info",
                           path=json_path, field=f"{where}.segments_info")
    if missing:
        raise DatasetError(f"segments_info ids {missing[:10]} do not occur in the PNG {png_path}",
                           path=json_path, field=f"{where}.segments_info")
    values = np.array([lut.get(int(u), IGNORE) for u in uniq], dtype=np.uint8)
    sem = values[inverse.reshape(seg.shape)]
    save_image_atomic(sem, out_path, "PNG")
    return out_path


def convert_panoptic_to_semseg(panoptic_json: str | Path, panoptic_dir: str | Path, out_dir: str | Path,
                               workers: int = 1) -> dict:
    """Write the semantic map of every annotation of ``panoptic_json`` to ``out_dir``.

    Existing outputs are kept (resume). Returns ``{"images": n, "written": m}``.
    """
    panoptic_json, panoptic_dir, out_dir = Path(panoptic_json), Path(panoptic_dir), Path(out_dir)
    vocab = builtin_vocab("coco_panoptic")
    data = read_json(panoptic_json, "COCO panoptic JSON")
    anns = get_field(data, "annotations", panoptic_json, "$")
    if not isinstance(anns, list) or not anns:
        raise DatasetError("no annotations (empty split)", path=panoptic_json, field="annotations")
    require_dir(panoptic_dir, "panoptic PNGs", HINT)
    items = []
    for i, ann in enumerate(anns):
        where = f"annotations[{i}]"
        file_name = get_field(ann, "file_name", panoptic_json, where)
        segs = get_field(ann, "segments_info", panoptic_json, where)
        pairs, seen = [], set()
        for j, s in enumerate(segs):
            sw = f"{where}.segments_info[{j}]"
            sid = int(get_field(s, "id", panoptic_json, sw))
            cid = get_field(s, "category_id", panoptic_json, sw)
            if not isinstance(cid, int) or not vocab.has_id(cid):
                raise DatasetError(f"unknown category id {cid!r} (not one of the 133 COCO panoptic "
                                   f"categories)", path=panoptic_json, field=f"{sw}.category_id")
            if sid in seen:
                raise DatasetError(f"duplicate segment id {sid}", path=panoptic_json, field=f"{sw}.id")
            seen.add(sid)
            pairs.append((sid, vocab.by_id(cid).train_id))
        out = out_dir / file_name
        if out.exists():
            continue
        items.append((str(panoptic_dir / file_name), str(out), pairs, str(panoptic_json), where))
    log.info("%s: %d annotations, %d to convert", panoptic_json.name, len(anns), len(items))
    parallel_map(_semseg_one, items, workers, desc=out_dir.name)
    return {"images": len(anns), "written": len(items)}


def prepare(ctx: Context) -> None:
    ensure_archives(ctx, "coco")
    coco = require_dir(Path(ctx.root) / "coco", "COCO root", HINT)
    for split in SPLITS:
        require_dir(coco / f"{split}2017", f"COCO {split}2017 images", HINT)
        pjson = require_file(coco / "annotations" / f"panoptic_{split}2017.json", "COCO panoptic JSON", HINT)
        pdir = require_dir(coco / f"panoptic_{split}2017", "COCO panoptic PNGs", HINT)
        res = convert_panoptic_to_semseg(pjson, pdir, coco / f"panoptic_semseg_{split}2017", ctx.workers)
        log.info("coco %s: %d semantic maps (%d new)", split, res["images"], res["written"])
    checks.check_count(ctx, "coco", coco / "val2017", ".jpg", key="val2017")
    checks.check_count(ctx, "coco", coco / "panoptic_semseg_val2017", ".png", key="panoptic_semseg_val2017")
    n = checks.check_panoptic_ids(coco / "annotations" / "panoptic_val2017.json", coco / "panoptic_val2017",
                                  ctx.workers)
    checks.check_number(ctx, "coco", n, coco / "annotations" / "panoptic_val2017.json",
                        key="panoptic_val2017.json annotations")
    checks.check_semseg_values(coco / "panoptic_semseg_val2017", 133, IGNORE, workers=ctx.workers)
    write_stamp(ctx, "coco")
