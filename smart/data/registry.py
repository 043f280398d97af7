"""Dataset registry: one loader per benchmark format, for both profiles.

Every benchmark is described by a :class:`DatasetSpec` (paths relative to a ``$DETECTRON2_DATASETS``
root, task, ignore label, vocabulary key). The same specs serve both profiles:

* **paper**: the root holds the real data prepared by ``python -m smart prepare``; category tables
  come from the packaged FC-CLIP tables (``smart/data/vocab``);
* **mini**: the root holds the mini world written by ``python -m smart make-mini``; category tables
  come from ``<root>/vocab/categories_with_synonyms.json`` (same schema, same keys).

A :class:`Dataset` lists its records cheaply (JSON / directory listing, with validation of ids and
category ids) and decodes one sample on ``ds[i]``, checking that the annotation agrees with the
image: segments in the JSON but not in the PNG (or the reverse), unknown categories, size mismatches
and unreadable files raise :class:`~smart.errors.DatasetError` naming the file and the field.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from smart.data.categories import Vocabulary, builtin_vocab, load_vocab_json
from smart.errors import DatasetError
from smart.io import load_json, read_label_map, read_panoptic_png, read_rgb

IMAGE_EXTS = (".jpg", ".jpeg", ".png")
MINI_VOCAB_FILE = "vocab/categories_with_synonyms.json"


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    vocab_key: str  # key in the category tables
    task: str  # "panoptic" (panoptic + optional semantic GT), "semantic" or "refer"
    image_dir: str  # relative to the root ("" for refer: file names are root-relative)
    panoptic_json: str | None = None
    panoptic_dir: str | None = None
    semseg_dir: str | None = None
    semseg_ext: str = ".png"
    ignore_label: int | None = 255  # None = number of classes (Mapillary's convention: 65)
    refer_json: str | None = None
    description: str = ""


_A = "ADEChallengeData2016"
SPECS: dict[str, DatasetSpec] = {s.name: s for s in [
    DatasetSpec("coco_2017_train_panoptic", "coco_panoptic", "panoptic", "coco/train2017",
                "coco/annotations/panoptic_train2017.json", "coco/panoptic_train2017",
                "coco/panoptic_semseg_train2017", description="COCO panoptic train2017 (training set)"),
    DatasetSpec("coco_2017_val_panoptic", "coco_panoptic", "panoptic", "coco/val2017",
                "coco/annotations/panoptic_val2017.json", "coco/panoptic_val2017",
                "coco/panoptic_semseg_val2017", description="COCO panoptic val2017 (COCO*, closed vocabulary)"),
    DatasetSpec("ade20k_150_val_panoptic", "ade20k_150", "panoptic", f"{_A}/images/validation",
                f"{_A}/ade20k_panoptic_val.json", f"{_A}/ade20k_panoptic_val",
                f"{_A}/annotations_detectron2/validation", description="ADE20K-150 val (panoptic + semantic)"),
    DatasetSpec("ade20k_847_val_sem", "ade20k_847", "semantic", "ADE20K_2021_17_01/images_detectron2/validation",
                semseg_dir="ADE20K_2021_17_01/annotations_detectron2/validation", semseg_ext=".tif",
                ignore_label=65535, description="ADE20K-847 val (semantic)"),
    DatasetSpec("mapillary_vistas_val_panoptic", "mapillary_vistas", "panoptic", "mapillary_vistas/validation/images",
                "mapillary_vistas/validation/panoptic/panoptic_2018.json", "mapillary_vistas/validation/panoptic",
                "mapillary_vistas/validation/labels", ignore_label=None,
                description="Mapillary Vistas v1.2 val (panoptic + semantic)"),
    DatasetSpec("pascal_ctx_59_val_sem", "pascal_ctx_59", "semantic", "pascal_ctx_d2/images/validation",
                semseg_dir="pascal_ctx_d2/annotations_ctx59/validation", description="PASCAL Context 59 val"),
    DatasetSpec("pascal_ctx_459_val_sem", "pascal_ctx_459", "semantic", "pascal_ctx_d2/images/validation",
                semseg_dir="pascal_ctx_d2/annotations_ctx459/validation", semseg_ext=".tif", ignore_label=65535,
                description="PASCAL Context 459 val"),
    *[DatasetSpec(f"{n}_{split}", "coco_panoptic", "refer", "", refer_json=f"refer/{n}/{split}.json",
                  description=f"{n} {split} (referring expressions, converted)")
      for n in ("refcoco", "refcoco+") for split in ("val", "testA", "testB")],
]}

# Short names used by the CLI, params.yaml and the tables.
ALIASES = {
    "coco": "coco_2017_val_panoptic", "coco_train": "coco_2017_train_panoptic",
    "ade150": "ade20k_150_val_panoptic", "ade847": "ade20k_847_val_sem",
    "mapillary": "mapillary_vistas_val_panoptic", "pc59": "pascal_ctx_59_val_sem",
    "pc459": "pascal_ctx_459_val_sem", "refcoco": "refcoco_val", "refcoco+": "refcoco+_val",
}


def resolve_name(name: str) -> DatasetSpec:
    full = ALIASES.get(name, name)
    if full not in SPECS:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(list(ALIASES) + list(SPECS))}",
                           field="dataset")
    return SPECS[full]


def default_root(profile: str) -> Path:
    if profile == "mini":
        return Path("data/mini")
    return Path(os.environ.get("DETECTRON2_DATASETS", "datasets"))


def load_vocabulary(spec: DatasetSpec, root: Path, profile: str) -> Vocabulary:
    if profile == "mini":
        key = "universe" if spec.task == "refer" else spec.vocab_key
        return load_vocab_json(root / MINI_VOCAB_FILE, key)
    return builtin_vocab(spec.vocab_key)


# --------------------------------------------------------------------------------------------------
# Readers (each raises DatasetError naming the file)
# --------------------------------------------------------------------------------------------------


def _load_json(path: Path) -> dict:
    return load_json(path, "annotation file")


def _find_image(image_dir: Path, stem: str) -> Path | None:
    for ext in IMAGE_EXTS:
        p = image_dir / f"{stem}{ext}"
        if p.exists():
            return p
    return None


# --------------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------------


class Dataset:
    """A registered benchmark split on disk.

    Args:
        spec: the benchmark description.
        root: the ``$DETECTRON2_DATASETS`` directory of the profile.
        vocab: the category table (contiguous order).
    """

    def __init__(self, spec: DatasetSpec, root: str | Path, vocab: Vocabulary):
        self.spec, self.root, self.vocab = spec, Path(root), vocab
        self.ignore_label = len(vocab) if spec.ignore_label is None else spec.ignore_label
        self.records = self._list_records()

    @classmethod
    def open(cls, name: str, *, profile: str = "mini", root: str | Path | None = None) -> "Dataset":
        spec = resolve_name(name)
        root = Path(root) if root is not None else default_root(profile)
        if not root.is_dir():
            raise DatasetError(f"dataset root does not exist (profile {profile!r})", path=root)
        return cls(spec, root, load_vocabulary(spec, root, profile))

    def __len__(self) -> int:
        return len(self.records)

    @property
    def name(self) -> str:
        return self.spec.name

    # -- listing ----------------------------------------------------------------------------------
    def _dir(self, rel: str, what: str) -> Path:
        p = self.root / rel
        if not p.is_dir():
            raise DatasetError(f"{what} directory is missing", path=p)
        return p

    def _list_records(self) -> list[dict]:
        if self.spec.task == "panoptic":
            recs = self._list_panoptic()
        elif self.spec.task == "semantic":
            recs = self._list_semantic()
        else:
            recs = self._list_refer()
        if not recs:
            raise DatasetError("split is empty: no images found", path=self.root / (self.spec.image_dir or "."),
                               field=self.spec.name)
        return recs

    def _list_panoptic(self) -> list[dict]:
        spec = self.spec
        jpath = self.root / spec.panoptic_json
        data = _load_json(jpath)
        image_dir = self._dir(spec.image_dir, "image")
        pan_dir = self._dir(spec.panoptic_dir, "panoptic PNG")
        sem_dir = (self.root / spec.semseg_dir) if spec.semseg_dir and (self.root / spec.semseg_dir).is_dir() else None
        for key in ("images", "annotations"):
            if key not in data or not isinstance(data[key], list):
                raise DatasetError("missing list", path=jpath, field=key)
        images = {}
        for k, im in enumerate(data["images"]):
            try:
                images[im["id"]] = im
            except (KeyError, TypeError):
                raise DatasetError("image entry without id", path=jpath, field=f"images[{k}]") from None
        recs = []
        for k, ann in enumerate(data["annotations"]):
            where = f"annotations[{k}]"
            try:
                image_id, pan_name, segs = ann["image_id"], ann["file_name"], ann["segments_info"]
            except (KeyError, TypeError) as exc:
                raise DatasetError(f"missing field {exc}", path=jpath, field=where) from None
            if image_id not in images:
                raise DatasetError(f"image_id {image_id!r} is not in images", path=jpath, field=f"{where}.image_id")
            im = images[image_id]
            stem = Path(im.get("file_name", pan_name)).stem
            img_path = image_dir / im["file_name"] if "file_name" in im else _find_image(image_dir, stem)
            seen_ids = set()
            segments = []
            for j, s in enumerate(segs):
                f = f"{where}.segments_info[{j}]"
                try:
                    sid, cid = int(s["id"]), int(s["category_id"])
                except (KeyError, TypeError, ValueError) as exc:
                    raise DatasetError(f"malformed segment ({exc})", path=jpath, field=f) from None
                if sid in seen_ids:
                    raise DatasetError(f"duplicate segment id {sid} in image {image_id!r}", path=jpath, field=f)
                seen_ids.add(sid)
                if not self.vocab.has_id(cid):
                    raise DatasetError(f"unknown category_id {cid} in image {image_id!r}", path=jpath,
                                       field=f"{f}.category_id")
                cat = self.vocab.by_id(cid)
                segments.append({"id": sid, "category_id": cid, "train_id": cat.train_id, "isthing": cat.isthing,
                                 "iscrowd": int(s.get("iscrowd", 0)), "area": int(s.get("area", -1))})
            rec = {"image_id": image_id, "file_name": str(img_path), "pan_seg_file": str(pan_dir / pan_name),
                   "segments_info": segments, "height": im.get("height"), "width": im.get("width")}
            if sem_dir is not None:
                rec["sem_seg_file"] = str(sem_dir / f"{Path(pan_name).stem}{spec.semseg_ext}")
            recs.append(rec)
        return recs

    def _list_semantic(self) -> list[dict]:
        spec = self.spec
        image_dir = self._dir(spec.image_dir, "image")
        sem_dir = self._dir(spec.semseg_dir, "label")
        labels = sorted(p for p in sem_dir.iterdir() if p.suffix == spec.semseg_ext)
        recs = []
        for lab in labels:
            img = _find_image(image_dir, lab.stem)
            if img is None:
                raise DatasetError(f"no image for label map (looked for {lab.stem}{{{','.join(IMAGE_EXTS)}}})",
                                   path=image_dir, field=lab.name)
            recs.append({"image_id": lab.stem, "file_name": str(img), "sem_seg_file": str(lab)})
        return recs

    def _list_refer(self) -> list[dict]:
        jpath = self.root / self.spec.refer_json
        data = _load_json(jpath)
        for key in ("images", "refs"):
            if key not in data:
                raise DatasetError("missing list", path=jpath, field=key)
        images = {im["id"]: im for im in data["images"]}
        recs = []
        for k, ref in enumerate(data["refs"]):
            f = f"refs[{k}]"
            try:
                im = images[ref["image_id"]]
                sents, seg = list(ref["sentences"]), ref["segmentation"]
            except KeyError as exc:
                raise DatasetError(f"missing or unknown {exc}", path=jpath, field=f) from None
            if not sents:
                raise DatasetError("no sentences", path=jpath, field=f"{f}.sentences")
            recs.append({"image_id": ref["image_id"], "ref_id": ref.get("ref_id", k),
                         "file_name": str(self.root / im["file_name"]), "sentences": sents,
                         "segmentation": seg, "category_id": ref.get("category_id"),
                         "height": im.get("height"), "width": im.get("width")})
        return recs

    # -- decoding ---------------------------------------------------------------------------------
    def __getitem__(self, i: int) -> dict:
        """Decode sample ``i``: ``image`` (H, W, 3) uint8 plus, by task,

        * panoptic: ``pan_ids`` (H, W) int64 segment ids, ``segments_info`` (with ``train_id``,
          ``isthing``, ``iscrowd``), and ``sem_seg`` (H, W) when semantic GT exists;
        * semantic: ``sem_seg`` (H, W) with ``ignore_label`` for unlabelled pixels;
        * refer: ``mask`` (H, W) bool and ``sentences``.
        """
        rec = self.records[i]
        out = dict(rec)
        image = read_rgb(rec["file_name"], convert=True)
        out["image"] = image
        H, W = image.shape[:2]
        if rec.get("height") not in (None, H) or rec.get("width") not in (None, W):
            raise DatasetError(f"image is {W}x{H} but the annotation says {rec['width']}x{rec['height']}",
                               path=rec["file_name"], field="height/width")
        if "pan_seg_file" in rec:
            ids = read_panoptic_png(rec["pan_seg_file"], image_id=rec["image_id"])
            self._check_size(ids, H, W, rec["pan_seg_file"])
            png_ids = set(np.unique(ids).tolist()) - {0}
            json_ids = {s["id"] for s in rec["segments_info"]}
            if png_ids - json_ids:
                raise DatasetError(f"segment ids {sorted(png_ids - json_ids)[:5]} are in the PNG but not in "
                                   f"segments_info of image {rec['image_id']!r}", path=rec["pan_seg_file"],
                                   field="segments_info")
            if json_ids - png_ids:
                raise DatasetError(f"segments {sorted(json_ids - png_ids)[:5]} of image {rec['image_id']!r} "
                                   f"have no pixels in the PNG", path=rec["pan_seg_file"], field="segments_info")
            out["pan_ids"] = ids
        if "sem_seg_file" in rec:
            sem = read_label_map(rec["sem_seg_file"], image=rec["image_id"])
            self._check_size(sem, H, W, rec["sem_seg_file"])
            bad = (sem != self.ignore_label) & (sem >= len(self.vocab))
            if bad.any():
                raise DatasetError(f"label values {np.unique(sem[bad])[:5].tolist()} exceed the {len(self.vocab)} "
                                   f"classes (ignore label {self.ignore_label})", path=rec["sem_seg_file"],
                                   field="label value")
            out["sem_seg"] = sem
        if self.spec.task == "refer":
            from pycocotools import mask as mask_utils

            seg = rec["segmentation"]
            rle = {"size": seg["size"], "counts": seg["counts"].encode() if isinstance(seg["counts"], str) else seg["counts"]}
            out["mask"] = mask_utils.decode(rle).astype(bool)
            self._check_size(out["mask"], H, W, rec["file_name"])
        return out

    @staticmethod
    def _check_size(arr: np.ndarray, H: int, W: int, path) -> None:
        if arr.shape[:2] != (H, W):
            raise DatasetError(f"annotation is {arr.shape[1]}x{arr.shape[0]} but the image is {W}x{H}",
                               path=path, field="size")

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]


def list_datasets() -> list[str]:
    return list(SPECS)
