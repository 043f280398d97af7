"""Mapillary Vistas v1.2: no conversion, only a verification of the validation layout.

``docs/datasets.md`` §4. Expected under ``<root>/mapillary_vistas/validation/``:
``images/*.jpg``, ``labels/*.png`` (semantic, 0..64, 65 = unlabelled), ``panoptic/*.png`` and
``panoptic/panoptic_2018.json``. Verified:

* the JSON's categories are the 65 of ``builtin_vocab("mapillary_vistas")`` (ids 1..65), and every
  segment's ``category_id`` is one of them;
* every JSON image has its image file, its annotation, its panoptic PNG and its ``labels`` PNG
  (``<stem>.png``), and the panoptic PNG ids agree with ``segments_info`` (both directions);
* 2000 validation images (unless ``--skip-count-check``).

There is no reference conversion: Mask2Former's and FC-CLIP's ``register_mapillary_vistas_panoptic.py``
read these files of the v1.2 download as they are, and so does :mod:`smart.data.registry`.

The training split is not needed by SMART (Mapillary is evaluation only) and is not checked. The
research download of Mapillary Vistas v2.0 stores the v1.2 annotations under
``<split>/v1.2/{labels,panoptic,...}``; such a layout is reported with a hint to move them.
"""

from __future__ import annotations

import logging
from pathlib import Path

from smart.data.categories import builtin_vocab
from smart.errors import DatasetError

from . import checks
from .common import Context, get_field, read_json, require_dir, write_stamp
from .download import ensure_archives

log = logging.getLogger("smart.prepare.mapillary")

HINT = ("Mapillary Vistas has no public URL: register at https://www.mapillary.com/dataset/vistas and "
        "extract the v1.2 zip so that <root>/mapillary_vistas/validation/{images,labels,panoptic} exist")


def verify(mv_dir: str | Path, workers: int = 1) -> dict:
    """Verify ``mapillary_vistas/validation``; returns ``{"images": n}``."""
    mv_dir = Path(mv_dir)
    val = mv_dir / "validation"
    for sub in ("images", "labels", "panoptic"):
        if not (val / sub).is_dir() and (val / "v1.2" / sub).is_dir():
            raise DatasetError(f"found {val / 'v1.2' / sub} (Mapillary v2.0 download layout); move the "
                               f"v1.2 annotation folders up to {val}", path=val / sub)
        require_dir(val / sub, f"Mapillary validation {sub}", HINT)
    pjson = val / "panoptic" / "panoptic_2018.json"
    data = read_json(pjson, "Mapillary panoptic JSON")
    vocab = builtin_vocab("mapillary_vistas")
    cats = get_field(data, "categories", pjson, "$")
    ids = sorted(int(get_field(c, "id", pjson, f"categories[{i}]")) for i, c in enumerate(cats))
    expected_ids = sorted(c.id for c in vocab)
    if ids != expected_ids:
        raise DatasetError(f"categories have ids {ids[:5]}...{ids[-3:]} ({len(ids)}), expected the 65 "
                           f"Mapillary Vistas v1.2 categories 1..65", path=pjson, field="categories")
    images = get_field(data, "images", pjson, "$")
    anns = get_field(data, "annotations", pjson, "$")
    if not images:
        raise DatasetError("no images (empty split)", path=pjson, field="images")
    by_image = {}
    for i, ann in enumerate(anns):
        where = f"annotations[{i}]"
        by_image[get_field(ann, "image_id", pjson, where)] = i
        for j, s in enumerate(get_field(ann, "segments_info", pjson, where)):
            sw = f"{where}.segments_info[{j}]"
            cid = get_field(s, "category_id", pjson, sw)
            if not vocab.has_id(cid):
                raise DatasetError(f"unknown category id {cid!r}", path=pjson, field=f"{sw}.category_id")
    for i, img in enumerate(images):
        where = f"images[{i}]"
        iid = get_field(img, "id", pjson, where)
        name = get_field(img, "file_name", pjson, where)
        if not (val / "images" / name).is_file():
            raise DatasetError(f"image file missing: {val / 'images' / name}", path=pjson,
                               field=f"{where}.file_name")
        if iid not in by_image:
            raise DatasetError(f"image {iid!r} has no annotation", path=pjson, field=f"{where}.id")
        a = by_image[iid]
        png = val / "panoptic" / get_field(anns[a], "file_name", pjson, f"annotations[{a}]")
        if not png.is_file():
            raise DatasetError(f"panoptic PNG missing: {png}", path=pjson,
                               field=f"annotations[{a}].file_name")
        label = val / "labels" / f"{Path(name).stem}.png"
        if not label.is_file():
            raise DatasetError(f"semantic label missing for image {name}", path=label, field="labels")
    checks.check_panoptic_ids(pjson, val / "panoptic", workers)
    return {"images": len(images)}


def prepare(ctx: Context) -> None:
    ensure_archives(ctx, "mapillary_vistas")
    mv = require_dir(Path(ctx.root) / "mapillary_vistas", "Mapillary Vistas root", HINT)
    r = verify(mv, ctx.workers)
    log.info("mapillary_vistas: %d validation images verified", r["images"])
    checks.check_count(ctx, "mapillary_vistas", mv / "validation" / "images", ".jpg",
                       key="validation/images")
    checks.check_count(ctx, "mapillary_vistas", mv / "validation" / "panoptic", ".png",
                       key="validation/panoptic")
    checks.check_number(ctx, "mapillary_vistas", r["images"],
                        mv / "validation" / "panoptic" / "panoptic_2018.json",
                        key="panoptic_2018.json images")
    write_stamp(ctx, "mapillary_vistas")
