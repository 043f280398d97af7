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

from smart.data.categories import Vocabulary, builtin_vocab, load_vocab_json, vocabulary_from_json_list
from smart.errors import DatasetError
from smart.io import empty_gt_segment_allowed, load_json, read_label_map, read_panoptic_png, read_rgb

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
    # The GT JSON may list stuff segments with no pixel in the PNG (Mask2Former's ADE20K-150 panoptic
    # GT keeps a stuff region that things cover entirely); they stay in segments_info (PQ counts them
    # as false negatives, as panopticapi) and are no training or oracle target.
    empty_gt_stuff: bool = False


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
                f"{_A}/annotations_detectron2/validation", description="ADE20K-150 val (panoptic + semantic)",
                empty_gt_stuff=True),
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


# --------------------------------------------------------------------------------------------------
# user datasets (params.yaml ``user_datasets``)


@dataclass(frozen=True)
class UserDataset:
    """A benchmark of the user's own, declared in params.yaml ``user_datasets.<name>``.

    Paths are relative to the working folder (the repository) or absolute. At least one of
    ``panoptic_json`` (COCO-panoptic) and ``semseg_dir`` (label PNGs whose values index ``categories``)
    is given; the category table is ``categories`` (a JSON list ``[{"id", "name", "synonyms"?,
    "isthing"?}]``, or ``{"categories": [...]}``) or else the panoptic JSON's own ``categories``.

    Args:
        name: the benchmark's name (what cells list in ``datasets:``).
        images: folder of the images.
        panoptic_json: COCO-panoptic annotation file.
        panoptic_dir: its PNG folder (default: the JSON's path without ``.json``).
        semseg_dir: folder of semantic label PNGs named as the images.
        categories: category table (default: the panoptic JSON's ``categories``).
        ignore_label: label value of unlabelled pixels in ``semseg_dir``.
        description: one line for the tables and logs.
    """

    name: str
    images: str
    panoptic_json: str | None = None
    panoptic_dir: str | None = None
    semseg_dir: str | None = None
    categories: str | None = None
    ignore_label: int = 255
    description: str = ""

    def validate(self, *, field_of=None, source=None) -> None:
        """Rules between fields (types are checked by :func:`smart.schema.from_mapping`)."""
        from smart.errors import ConfigError

        field_of = field_of or (lambda k: f"user_datasets.{self.name}.{k}")
        if self.panoptic_json is None and self.semseg_dir is None:
            raise ConfigError("give panoptic_json (COCO panoptic) and/or semseg_dir (label PNGs)", path=source,
                              field=field_of("panoptic_json"))
        if self.panoptic_json is None and self.categories is None:
            raise ConfigError("a semantic-only dataset needs a `categories` file", path=source,
                              field=field_of("categories"))
        if self.panoptic_dir is not None and self.panoptic_json is None:
            raise ConfigError("panoptic_dir without panoptic_json", path=source, field=field_of("panoptic_dir"))
        if not 0 <= self.ignore_label <= 65535:
            raise ConfigError(f"expected 0..65535, got {self.ignore_label}", path=source, field=field_of("ignore_label"))

    @property
    def pan_dir(self) -> str | None:
        if self.panoptic_json is None:
            return None
        return self.panoptic_dir or str(Path(self.panoptic_json).with_suffix(""))

    def files(self) -> list[str]:
        """Every declared file and folder (the DAG's dependencies of this benchmark)."""
        return [p for p in (self.images, self.panoptic_json, self.pan_dir, self.semseg_dir, self.categories) if p]

    def spec(self) -> DatasetSpec:
        return DatasetSpec(self.name, self.name, "panoptic" if self.panoptic_json else "semantic", self.images,
                           self.panoptic_json, self.pan_dir, self.semseg_dir, ignore_label=self.ignore_label,
                           description=self.description or f"{self.name} (user dataset)")

    def check_files(self) -> None:
        """Each declared path exists (errors name the params key and the path)."""
        for field, kind in (("images", "dir"), ("panoptic_json", "file"), ("panoptic_dir", "dir"),
                            ("semseg_dir", "dir"), ("categories", "file")):
            path = self.pan_dir if field == "panoptic_dir" else getattr(self, field)
            if path is None:
                continue
            ok = Path(path).is_dir() if kind == "dir" else Path(path).is_file()
            if not ok:
                raise DatasetError(f"declared {kind == 'dir' and 'folder' or 'file'} does not exist", path=path,
                                   field=f"user_datasets.{self.name}.{field}")

    def vocabulary(self) -> Vocabulary:
        """The category table, checked: unique ids, non-blank and unique names and synonyms."""
        from smart.data.categories import check_names

        path = Path(self.categories or self.panoptic_json)
        data = load_json(path, "category file")
        items = data.get("categories") if isinstance(data, dict) else data
        if not isinstance(items, list) or not items:
            raise DatasetError("expected a non-empty category list (or {\"categories\": [...]})", path=path,
                               field="categories")
        vocab = vocabulary_from_json_list(self.name, items, source=path)
        check_names([list(c.synonyms) for c in vocab], source=str(path))
        return vocab


USER_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_+-")


def user_datasets(section: object, *, source=None) -> dict[str, UserDataset]:
    """params.yaml ``user_datasets`` (name → declaration) → checked :class:`UserDataset` s (no file access)."""
    from smart.errors import ConfigError
    from smart.schema import from_mapping

    if section is None:
        return {}
    if not isinstance(section, dict):
        raise ConfigError("expected a mapping of dataset name -> declaration", path=source, field="user_datasets")
    out = {}
    for name, decl in section.items():
        key = f"user_datasets.{name}"
        if not isinstance(name, str) or not name or set(name) - USER_NAME_CHARS:
            raise ConfigError("a dataset name uses lower-case letters, digits, _ + - only", path=source, field=key)
        if name in ALIASES or name in SPECS:
            raise ConfigError("this name is a built-in benchmark; choose another", path=source, field=key)
        if not isinstance(decl, dict):
            raise ConfigError("expected a mapping (images, panoptic_json, ...)", path=source, field=key)
        if "images" not in decl:
            raise ConfigError("missing key (the folder of the images)", path=source, field=f"{key}.images")
        if "name" in decl:
            raise ConfigError("unknown key (the dataset's name is its key)", path=source, field=f"{key}.name")
        out[name] = from_mapping(UserDataset, {**decl, "name": name}, field_of=lambda k, key=key: f"{key}.{k}",
                                 source=source)
    return out


def default_root(profile: str) -> Path:
    if profile == "mini":
        return Path("data/mini")
    return Path(os.environ.get("DETECTRON2_DATASETS", "datasets"))


def load_vocabulary(spec: DatasetSpec, root: Path, profile: str) -> Vocabulary:
    """A benchmark's category table, with its names checked: blank names are refused everywhere; a name
    used twice is refused in the mini world and kept (logged) in the real reference tables, which have a
    few (ADE20K-150, ADE20K-847, PASCAL Context 459) that the published protocol keeps."""
    import logging

    from smart.data.categories import check_names

    if profile == "mini":
        key = "universe" if spec.task == "refer" else spec.vocab_key
        vocab = load_vocab_json(root / MINI_VOCAB_FILE, key)
        check_names(vocab.synonyms, source=str(root / MINI_VOCAB_FILE) + f" ({key})")
        return vocab
    vocab = builtin_vocab(spec.vocab_key)
    dups = check_names(vocab.synonyms, source=f"the packaged {spec.vocab_key} table", allow_duplicates=True)
    if dups:
        logging.getLogger("smart.data").debug("%s: %d names are repeated, as in the reference table "
                                              "(kept): %s", spec.vocab_key, len(dups), ", ".join(dups[:5]))
    return vocab


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
    def open(cls, name: str, *, profile: str = "mini", root: str | Path | None = None,
             user: dict[str, UserDataset] | None = None) -> "Dataset":
        """A built-in benchmark of the profile (under ``root``), or one of the ``user`` datasets
        (params.yaml ``user_datasets``, e.g. ``Experiment.user_datasets``), whose paths are their own."""
        if user and name in user:
            ud = user[name]
            ud.check_files()
            return cls(ud.spec(), Path("."), ud.vocabulary())
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
            missing = json_ids - png_ids
            if self.spec.empty_gt_stuff:
                missing = {s["id"] for s in rec["segments_info"]
                           if s["id"] in missing and not empty_gt_segment_allowed(s["isthing"], s["iscrowd"])}
            if missing:
                raise DatasetError(f"segments {sorted(missing)[:5]} of image {rec['image_id']!r} "
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


def open_vocabulary(name: str, *, profile: str, root: str | Path | None = None,
                    user: dict[str, UserDataset] | None = None) -> Vocabulary:
    """A benchmark's category table without listing its images (built-in or user dataset)."""
    if user and name in user:
        user[name].check_files()
        return user[name].vocabulary()
    spec = resolve_name(name)
    root = Path(root) if root is not None else default_root(profile)
    return load_vocabulary(spec, root, profile)
