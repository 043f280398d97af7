"""RefCOCO / RefCOCO+ (UNC splits) → the project's referring-segmentation JSON.

Raw data (``refcoco.zip`` / ``refcoco+.zip`` of the REFER toolkit, extracted into the raw directory):

* ``<raw>/<name>/refs(unc).p`` — a pickle of a list of dicts ``{ref_id, ann_id, image_id, split,
  sentences: [{sent, raw, tokens, sent_id}], category_id, file_name, ...}``;
* ``<raw>/<name>/instances.json`` — COCO format (images, annotations with polygon or RLE
  segmentations, categories); the images are COCO ``train2014`` (``COCO_train2014_%012d.jpg``).

Output, one file per split present (``val``, ``testA``, ``testB``, ``train``):
``<root>/refer/<name>/<split>.json`` =
``{"info": {...}, "images": [{id, file_name, height, width}], "refs": [{ref_id, image_id, category_id,
sentences: [str], segmentation: {size: [h, w], counts: str}, bbox: [x, y, w, h]}]}``.

Choices (documented assumptions):

* ``file_name`` is relative to ``<root>``: ``coco/train2014/<instances.json file_name>``; the images
  must exist there (``train2014.zip`` is downloaded into ``<root>/coco`` with ``--download``).
* ``sentences`` are the ``sent`` fields (the REFER toolkit's normalised, lower-cased sentences), in
  the pickle's order.
* ``segmentation`` is the referred annotation's mask as a compressed COCO RLE (pycocotools):
  polygons are rasterised and merged into one RLE, uncompressed RLEs are compressed, compressed RLEs
  are kept. ``bbox`` is the annotation's ``bbox`` from ``instances.json``.
* ``images`` holds the images referred to in that split, sorted by id; ``refs`` keep the pickle's
  order. The pickles were written by Python 2: they are read with Python 3's default decoding, and
  if that fails, as bytes decoded as UTF-8.
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

from pycocotools import mask as mask_utils

from smart.errors import DatasetError

from .common import Context, get_field, read_json, require_file, write_json_atomic, write_stamp
from .download import ensure_archives

log = logging.getLogger("smart.prepare.refcoco")

NAMES = ("refcoco", "refcoco+")
SPLIT_ORDER = ("val", "testA", "testB", "train")
IMAGE_PREFIX = "coco/train2014"


def _hint(name: str) -> str:
    return (f"run `python -m smart prepare {name} --download`, or unzip {name}.zip (REFER toolkit data) "
            f"into the raw directory (--raw-dir)")


def _decode(obj):
    if isinstance(obj, bytes):
        return obj.decode("utf-8", errors="replace")
    if isinstance(obj, dict):
        return {_decode(k): _decode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_decode(v) for v in obj)
    return obj


def load_refs(path: str | Path) -> list[dict]:
    path = Path(path)
    try:
        with open(path, "rb") as f:
            try:
                refs = pickle.load(f)
            except UnicodeDecodeError:  # Python-2 str with non-ASCII bytes
                f.seek(0)
                refs = _decode(pickle.load(f, encoding="bytes"))
    except FileNotFoundError:
        raise DatasetError("missing file", path=path) from None
    except Exception as exc:
        raise DatasetError(f"cannot read pickle ({type(exc).__name__}: {exc})", path=path) from None
    if not isinstance(refs, list):
        raise DatasetError(f"expected a list of refs, got {type(refs).__name__}", path=path)
    if not refs:
        raise DatasetError("no refs (empty file)", path=path, field="refs")
    return refs


def _rle(seg, h: int, w: int, where: str, path: Path) -> dict:
    try:
        if isinstance(seg, list):
            polys = [list(map(float, p)) for p in seg]
            if not polys:
                raise ValueError("empty polygon list")
            rle = mask_utils.merge(mask_utils.frPyObjects(polys, h, w))
        elif isinstance(seg, dict) and isinstance(seg.get("counts"), list):
            rle = mask_utils.frPyObjects(seg, h, w)
        elif isinstance(seg, dict) and isinstance(seg.get("counts"), (str, bytes)):
            rle = {"size": list(seg["size"]), "counts": seg["counts"]}
            if list(rle["size"]) != [h, w]:
                raise ValueError(f"RLE size {rle['size']} differs from the image's [{h}, {w}]")
        else:
            raise ValueError(f"unsupported segmentation of type {type(seg).__name__}")
    except (ValueError, TypeError, KeyError) as exc:
        raise DatasetError(f"bad segmentation ({exc})", path=path, field=f"{where}.segmentation") from None
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    return {"size": [int(h), int(w)], "counts": counts}


def convert(raw_name_dir: str | Path, name: str, out_dir: str | Path, image_root: str | Path | None = None,
            image_prefix: str = IMAGE_PREFIX) -> dict[str, int]:
    """Convert ``raw_name_dir/{refs(unc).p, instances.json}`` into ``out_dir/<split>.json``.

    ``image_root`` (the datasets root): if given, every referred image must exist at
    ``image_root/<file_name>``. Returns ``{split: number of refs}``.
    """
    raw_name_dir, out_dir = Path(raw_name_dir), Path(out_dir)
    refs_path = require_file(raw_name_dir / "refs(unc).p", f"{name} refs", _hint(name))
    inst_path = require_file(raw_name_dir / "instances.json", f"{name} instances", _hint(name))
    refs = load_refs(refs_path)
    inst = read_json(inst_path, f"{name} instances")
    images = {}
    for i, img in enumerate(get_field(inst, "images", inst_path, "$")):
        where = f"images[{i}]"
        images[get_field(img, "id", inst_path, where)] = (
            str(get_field(img, "file_name", inst_path, where)),
            int(get_field(img, "height", inst_path, where)),
            int(get_field(img, "width", inst_path, where)))
    anns = {}
    for i, ann in enumerate(get_field(inst, "annotations", inst_path, "$")):
        anns[get_field(ann, "id", inst_path, f"annotations[{i}]")] = (i, ann)
    cat_ids = {get_field(c, "id", inst_path, f"categories[{i}]")
               for i, c in enumerate(get_field(inst, "categories", inst_path, "$"))}

    per_split: dict[str, dict] = {}
    for i, ref in enumerate(refs):
        where = f"refs[{i}]"
        ref_id = get_field(ref, "ref_id", refs_path, where)
        ann_id = get_field(ref, "ann_id", refs_path, where)
        image_id = get_field(ref, "image_id", refs_path, where)
        split = str(get_field(ref, "split", refs_path, where))
        cat = get_field(ref, "category_id", refs_path, where)
        sents = get_field(ref, "sentences", refs_path, where)
        if ann_id not in anns:
            raise DatasetError(f"annotation {ann_id!r} not in {inst_path}", path=refs_path,
                               field=f"{where}.ann_id")
        if image_id not in images:
            raise DatasetError(f"image {image_id!r} not in {inst_path}", path=refs_path,
                               field=f"{where}.image_id")
        if cat not in cat_ids:
            raise DatasetError(f"unknown category id {cat!r} (not in {inst_path})", path=refs_path,
                               field=f"{where}.category_id")
        if not isinstance(sents, list) or not sents:
            raise DatasetError("no sentences", path=refs_path, field=f"{where}.sentences")
        sentences = [str(get_field(s, "sent", refs_path, f"{where}.sentences[{k}]"))
                     for k, s in enumerate(sents)]
        ai, ann = anns[ann_id]
        awhere = f"annotations[{ai}]"
        if get_field(ann, "image_id", inst_path, awhere) != image_id:
            raise DatasetError(f"annotation {ann_id} belongs to image {ann['image_id']}, not {image_id}",
                               path=refs_path, field=f"{where}.image_id")
        file_name, h, w = images[image_id]
        seg = _rle(get_field(ann, "segmentation", inst_path, awhere), h, w, awhere, inst_path)
        bbox = [float(v) for v in get_field(ann, "bbox", inst_path, awhere)]
        if len(bbox) != 4:
            raise DatasetError("bbox must have 4 numbers", path=inst_path, field=f"{awhere}.bbox")
        bucket = per_split.setdefault(split, {"images": {}, "refs": []})
        bucket["images"][image_id] = {"id": image_id, "file_name": f"{image_prefix}/{file_name}",
                                      "height": h, "width": w}
        bucket["refs"].append({"ref_id": ref_id, "image_id": image_id, "category_id": cat,
                               "sentences": sentences, "segmentation": seg, "bbox": bbox})

    if image_root is not None:
        image_root = Path(image_root)
        for split, bucket in per_split.items():
            for img in bucket["images"].values():
                if not (image_root / img["file_name"]).is_file():
                    raise DatasetError(f"image of {name} split {split!r} is missing; download COCO "
                                       f"train2014 into {image_root / IMAGE_PREFIX}",
                                       path=image_root / img["file_name"], field=f"images[id={img['id']}]")

    counts = {}
    order = [s for s in SPLIT_ORDER if s in per_split] + sorted(set(per_split) - set(SPLIT_ORDER))
    for split in order:
        bucket = per_split[split]
        data = {
            "info": {"dataset": name, "split_by": "unc", "split": split,
                     "source": f"{refs_path.name} + {inst_path.name}", "sentences": "sent",
                     "segmentation": "COCO RLE (polygons merged)", "bbox": "annotation bbox [x, y, w, h]",
                     "file_name": "relative to the datasets root"},
            "images": [bucket["images"][k] for k in sorted(bucket["images"])],
            "refs": bucket["refs"],
        }
        write_json_atomic(out_dir / f"{split}.json", data)
        counts[split] = len(bucket["refs"])
    return counts


def prepare(ctx: Context, name: str) -> None:
    ensure_archives(ctx, name)
    counts = convert(Path(ctx.raw_dir) / name, name, Path(ctx.root) / "refer" / name, image_root=ctx.root)
    for split, n in counts.items():
        log.info("%s %s: %d refs", name, split, n)
    ctx.counts[name] = {f"{s} refs": n for s, n in counts.items()}
    write_stamp(ctx, name)


__all__ = ["NAMES", "convert", "load_refs", "prepare"]
