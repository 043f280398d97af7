"""Tiny datasets written in the ORIGINAL raw formats of the real benchmarks (COCO panoptic 2017,
ADEChallengeData2016 + instance annotations, ADE20K-full 2021_17_01, PASCAL Context .mat label maps,
Mapillary Vistas, RefCOCO/RefCOCO+ with COCO train2014 images), from the literal arrays below.

``python -m smart prepare`` converts them like the real archives. The prepare tests compare its outputs
with expected arrays written by hand (``scale=1``); the paper-profile smoke run
(:mod:`smart.smoke`) uses the same data enlarged ``scale`` times (every label map, box, polygon and
crowd RLE blown up by nearest-neighbour repetition), so that the paper's architectures see images of
a usable size. Image pixels are a seeded texture over a per-image colour.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

__all__ = ["build_ade", "build_ade847", "build_all", "build_coco", "build_coco2014", "build_mapillary",
           "build_pascal", "build_refer", "ids_to_rgb", "refer_raw", "write_jpg", "write_json", "write_png"]


def _up(arr, scale: int) -> np.ndarray:
    """Nearest-neighbour enlargement of a 2-D label map by an integer factor."""
    arr = np.asarray(arr)
    return arr if scale == 1 else np.repeat(np.repeat(arr, scale, axis=0), scale, axis=1)


def write_jpg(path: Path, h: int, w: int, color=(90, 120, 150), *, texture: bool = False) -> None:
    """A JPEG of one colour, or (``texture``) that colour plus seeded noise (the seed is the file name)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not texture:
        Image.new("RGB", (w, h), color).save(path, format="JPEG")
        return
    rng = np.random.default_rng(sum(path.name.encode()))
    arr = np.clip(np.asarray(color, dtype=np.float64) + rng.normal(0, 40, (h, w, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(arr).save(path, format="JPEG")


def write_png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(arr, dtype=np.uint8)).save(path, format="PNG")


def ids_to_rgb(ids) -> np.ndarray:
    ids = np.asarray(ids, dtype=np.uint32)
    return np.stack([ids & 255, (ids >> 8) & 255, (ids >> 16) & 255], axis=-1).astype(np.uint8)


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")


# ----------------------------------------------------------------------------------------------
# COCO panoptic 2017

S1 = 1 + 2 * 256 + 3 * 65536  # person (category 1), id uses all three channels
S2 = 5  # car (category 3), iscrowd = 1
S3 = 200 * 256  # rug-merged (category 200)

COCO_RAW = {
    "val": [
        ("000000000001", [[S1, S1, 0, S2, S2],
                          [S1, S1, 0, S2, S2],
                          [S3, S3, S3, S3, 0],
                          [S3, S3, S3, S3, 0]],
         [(S1, 1, 0), (S2, 3, 1), (S3, 200, 0)]),
        ("000000000002", [[7, 7, 7, 7],
                          [8, 8, 9, 9],
                          [8, 8, 9, 9]],
         [(7, 187, 0), (8, 90, 0), (9, 92, 0)]),
    ],
    "train": [
        ("000000000003", [[10, 10, 0],
                          [11, 11, 11]],
         [(10, 1, 0), (11, 200, 0)]),
    ],
}


def build_coco(root: Path, *, scale: int = 1) -> Path:
    coco = root / "coco"
    for split, images in COCO_RAW.items():
        anns, imgs = [], []
        for k, (stem, ids, segs) in enumerate(images):
            ids = _up(ids, scale)
            h, w = ids.shape
            write_jpg(coco / f"{split}2017" / f"{stem}.jpg", h, w, texture=scale > 1)
            write_png(coco / f"panoptic_{split}2017" / f"{stem}.png", ids_to_rgb(ids))
            imgs.append({"id": int(stem), "file_name": f"{stem}.jpg", "height": h, "width": w})
            anns.append({"image_id": int(stem), "file_name": f"{stem}.png",
                         "segments_info": [{"id": sid, "category_id": cid, "iscrowd": crowd,
                                            "area": int((ids == sid).sum()), "bbox": [0, 0, 1, 1]}
                                           for sid, cid, crowd in segs]})
        write_json(coco / "annotations" / f"panoptic_{split}2017.json",
                   {"images": imgs, "annotations": anns, "categories": []})
    return root


# ----------------------------------------------------------------------------------------------
# ADE20K-150 (ADEChallengeData2016 + annotations_instance)

ADE_RAW = {
    "validation": [
        # (stem, semantic PNG (1-based classes, 0 = other), instance R (class + 1), instance G (id))
        ("ADE_val_00000001",
         [[1, 1, 1, 1, 4, 4],
          [1, 8, 8, 1, 4, 4],
          [0, 8, 8, 13, 13, 4],
          [0, 16, 16, 13, 13, 4]],
         [[0, 0, 0, 0, 0, 0],
          [0, 1, 1, 0, 0, 0],
          [0, 1, 1, 4, 4, 0],
          [0, 0, 0, 4, 4, 4]],
         [[0, 0, 0, 0, 0, 0],
          [0, 1, 1, 0, 0, 0],
          [0, 1, 1, 2, 2, 0],
          [0, 0, 0, 2, 2, 2]]),
        ("ADE_val_00000002",
         [[3, 8, 8, 1],
          [1, 8, 8, 1],
          [8, 8, 1, 1]],
         [[1, 1, 1, 0],
          [0, 1, 1, 0],
          [1, 1, 0, 0]],
         [[3, 1, 1, 0],
          [0, 1, 1, 0],
          [5, 5, 0, 0]]),
    ],
    "training": [
        ("ADE_train_00000001",
         [[1, 1, 8],
          [4, 4, 8]],
         [[0, 0, 1],
          [0, 0, 1]],
         [[0, 0, 1],
          [0, 0, 1]]),
    ],
}


def build_ade(root: Path, *, scale: int = 1) -> Path:
    ade = root / "ADEChallengeData2016"
    for split, images in ADE_RAW.items():
        for stem, sem, r, g in images:
            sem = _up(sem, scale)
            h, w = sem.shape
            write_jpg(ade / "images" / split / f"{stem}.jpg", h, w, texture=scale > 1)
            write_png(ade / "annotations" / split / f"{stem}.png", sem)
            ins = np.stack([_up(r, scale), _up(g, scale), np.full((h, w), 7)], axis=-1)
            write_png(ade / "annotations_instance" / split / f"{stem}.png", ins)
    (ade / "objectInfo150.txt").write_text("Idx\tRatio\tTrain\tVal\tName\n", encoding="utf-8")
    return root


# ----------------------------------------------------------------------------------------------
# ADE20K-full 2021_17_01 (index_ade20k.pkl + <image>_seg.png)

WALL, SKY, BED, NOT847 = 2978, 2420, 165, 1  # full-ADE ids; trainIds 0, 2, 7; id 1 is not among the 847


def _ade_seg(class_ids: np.ndarray) -> np.ndarray:
    class_ids = np.asarray(class_ids, dtype=np.int64)
    r = (class_ids // 256) * 10 + 3  # any value in the decade encodes the same class
    g = class_ids % 256
    b = np.full(class_ids.shape, 11)
    return np.stack([r, g, b], axis=-1).astype(np.uint8)


ADE847_VAL = [[WALL, WALL, SKY, SKY],
              [BED, BED, NOT847, 0],
              [0, WALL, WALL, BED]]


def build_ade847(root: Path, ade_level: bool = False, *, scale: int = 1) -> Path:
    base = root / "ade" if ade_level else root
    ds = base / "ADE20K_2021_17_01"
    entries = []

    def add(folder: str, name: str, classes: np.ndarray, texture: bool = False):
        h, w = classes.shape
        write_jpg(base / folder / name, h, w, texture=texture or scale > 1)
        write_png(base / folder / name.replace(".jpg", "_seg.png"), _ade_seg(classes))
        entries.append((folder, name))

    add("ADE20K_2021_17_01/images/ADE/validation/abbey", "ADE_val_00000001.jpg", _up(ADE847_VAL, scale))
    big = np.full((520, 600), WALL)
    big[260:] = SKY
    # textured, so that the resize to a short side of 512 shows the interpolation used
    add("ADE20K_2021_17_01/images/ADE/training/urban/street", "ADE_train_00000001.jpg", big, texture=True)
    add("ADE20K_2021_17_01/images/ADE/training/frames", "ADE_frame_00000001.jpg", np.full((2, 2), BED))
    index = {"folder": [e[0] for e in entries], "filename": [e[1] for e in entries],
             "objectnames": ["-", "wall"], "scene": ["abbey", "street", "frames"]}
    ds.mkdir(parents=True, exist_ok=True)
    with open(ds / "index_ade20k.pkl", "wb") as f:
        pickle.dump(index, f)
    (ds / "objects.txt").write_text("objects\n", encoding="utf-8")
    return root


# ----------------------------------------------------------------------------------------------
# PASCAL Context (VOC2010 JPEGs + trainval/*.mat + trainval_merged.json)

PC_RAW = [
    ("2008_000001", "val", [[0, 2, 2, 397, 397],
                            [0, 2, 2, 397, 397],
                            [459, 458, 458, 284, 284],
                            [1, 1, 458, 284, 284]]),
    ("2008_000002", "val", [[9, 18],
                            [19, 22]]),
    ("2008_000003", "train", [[440, 445, 454],
                              [0, 0, 0]]),
]
# The 59 classes' full-label ids (the table of fc-clip's prepare_pascal_ctx_sem_seg.py, without 0).
PC59_IDS = (2, 9, 18, 19, 22, 23, 25, 31, 33, 34, 44, 45, 46, 59, 65, 68, 72, 80, 85, 98, 104, 105, 113, 115,
            144, 158, 159, 162, 187, 189, 207, 220, 232, 258, 259, 260, 284, 295, 296, 308, 324, 326, 347, 349,
            354, 355, 360, 366, 368, 397, 415, 416, 420, 424, 427, 440, 445, 454, 458)


def detail_annotations(lab: np.ndarray, image_id: int, first_id: int) -> list[dict]:
    """The Detail API's ``annos_segmentation`` of one label map: one compressed-RLE segment per region of
    each of the 59 classes present (the other 400 classes are not in ``trainval_merged.json``)."""
    from pycocotools import mask as mask_utils

    anns = []
    for cat in sorted(set(np.unique(lab).tolist()) & set(PC59_IDS)):
        rle = mask_utils.encode(np.asfortranarray((lab == cat).astype(np.uint8)))
        anns.append({"id": first_id + len(anns), "image_id": image_id, "category_id": int(cat),
                     "segmentation": {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode()},
                     "area": int((lab == cat).sum()), "iscrowd": 0, "parts": []})
    return anns


def build_pascal(root: Path, *, scale: int = 1) -> Path:
    from smart.data.categories import builtin_vocab

    voc = root / "VOCdevkit" / "VOC2010"
    images, segs = [], []
    for stem, phase, lab in PC_RAW:
        lab = _up(np.array(lab, dtype=np.uint16), scale)
        h, w = lab.shape
        write_jpg(voc / "JPEGImages" / f"{stem}.jpg", h, w, color=(10 * h // scale, 20 * w // scale, 30),
                  texture=scale > 1)
        (voc / "trainval").mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(str(voc / "trainval" / f"{stem}.mat"), {"LabelMap": lab})
        image_id = int(stem.replace("_", ""))
        images.append({"image_id": image_id, "file_name": f"{stem}.jpg", "phase": phase, "width": w, "height": h})
        segs += detail_annotations(lab, image_id, first_id=len(segs) + 1)
    # a test-phase image (no files): never part of train / val
    images.append({"image_id": 2008000004, "file_name": "2008_000004.jpg", "phase": "test",
                   "width": 3, "height": 3})
    names = {c.id + 1: c.name for c in builtin_vocab("pascal_ctx_459")}
    categories = [{"category_id": i, "name": names[i], "supercategory": "object", "parts": [], "onlysemantic": 1}
                  for i in PC59_IDS]
    write_json(voc / "trainval_merged.json",
               {"info": {}, "images": images, "annos_segmentation": segs, "categories": categories, "parts": [],
                "annos_occlusion": [], "annos_boundary": [], "annos_joints": []})
    return root


# ----------------------------------------------------------------------------------------------
# Mapillary Vistas v1.2 (validation only)

MV_RAW = [
    ("img_a", [[1, 1, 0], [2, 2, 2]], [(1, 1), (2, 65)]),
    ("img_b", [[3, 3], [3, 300]], [(3, 20), (300, 64)]),
]


def _bbox(mask: np.ndarray) -> list[int]:
    """COCO [x, y, w, h] of a boolean mask."""
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]


def build_mapillary(root: Path, *, scale: int = 1) -> Path:
    val = root / "mapillary_vistas" / "validation"
    images, anns = [], []
    for stem, ids, segs in MV_RAW:
        ids = _up(ids, scale)
        h, w = ids.shape
        write_jpg(val / "images" / f"{stem}.jpg", h, w, texture=scale > 1)
        labels = np.full((h, w), 65)  # v1.2 label PNGs: class index 0..64, 65 = unlabelled
        for sid, cid in segs:
            labels[ids == sid] = cid - 1
        write_png(val / "labels" / f"{stem}.png", labels)
        write_png(val / "panoptic" / f"{stem}.png", ids_to_rgb(ids))
        images.append({"id": stem, "file_name": f"{stem}.jpg", "width": w, "height": h})
        anns.append({"image_id": stem, "file_name": f"{stem}.png",
                     "segments_info": [{"id": s, "category_id": c, "iscrowd": 0, "area": int((ids == s).sum()),
                                        "bbox": _bbox(ids == s)} for s, c in segs]})
    cats = [{"id": i, "name": f"class {i}", "isthing": 0, "supercategory": "x"} for i in range(1, 66)]
    write_json(val / "panoptic" / "panoptic_2018.json",
               {"images": images, "annotations": anns, "categories": cats})
    return root


# ----------------------------------------------------------------------------------------------
# RefCOCO / RefCOCO+ (REFER toolkit raw data + COCO train2014 images)


def refer_raw(name: str) -> tuple[list, dict]:
    def sents(*texts):
        return [{"sent": t, "raw": t.capitalize(), "tokens": t.split(), "sent_id": 100 + i}
                for i, t in enumerate(texts)]

    refs = [
        {"ref_id": 0, "ann_id": 101, "image_id": 9, "split": "val", "category_id": 1,
         "sentences": sents("man on left", "left guy"), "file_name": "COCO_train2014_000000000009_101.jpg",
         "sent_ids": [100, 101]},
        {"ref_id": 1, "ann_id": 102, "image_id": 9, "split": "testA", "category_id": 18,
         "sentences": sents("dog"), "file_name": "COCO_train2014_000000000009_102.jpg", "sent_ids": [100]},
        {"ref_id": 2, "ann_id": 103, "image_id": 25, "split": "train", "category_id": 1,
         "sentences": sents("thin person"), "file_name": "COCO_train2014_000000000025_103.jpg",
         "sent_ids": [100]},
        {"ref_id": 3, "ann_id": 101, "image_id": 9, "split": "train", "category_id": 1,
         "sentences": sents(f"{name} person"), "file_name": "COCO_train2014_000000000009_101.jpg",
         "sent_ids": [100]},
    ]
    instances = {
        "images": [{"id": 9, "file_name": "COCO_train2014_000000000009.jpg", "height": 8, "width": 10},
                   {"id": 25, "file_name": "COCO_train2014_000000000025.jpg", "height": 6, "width": 6}],
        "annotations": [
            {"id": 101, "image_id": 9, "category_id": 1, "bbox": [1.0, 1.0, 3.0, 2.0], "area": 6.0,
             "iscrowd": 0, "segmentation": [[1, 1, 4, 1, 4, 3, 1, 3]]},
            {"id": 102, "image_id": 9, "category_id": 18, "bbox": [5, 4, 4, 3], "area": 7.0, "iscrowd": 0,
             "segmentation": [[5, 4, 7, 4, 7, 6, 5, 6], [8, 4, 9, 4, 9, 7, 8, 7]]},
            {"id": 103, "image_id": 25, "category_id": 1, "bbox": [1, 1, 1, 3], "area": 3.0, "iscrowd": 1,
             "segmentation": {"size": [6, 6], "counts": [7, 3, 26]}},
        ],
        "categories": [{"id": 1, "name": "person", "supercategory": "person"},
                       {"id": 18, "name": "dog", "supercategory": "animal"}],
    }
    return refs, instances


def _scale_rle(rle: dict, scale: int) -> dict:
    """An uncompressed COCO RLE (column-major counts) of a mask enlarged ``scale`` times."""
    h, w = rle["size"]
    flat = np.zeros(h * w, dtype=np.uint8)
    pos = 0
    for i, n in enumerate(rle["counts"]):
        flat[pos:pos + n] = i % 2
        pos += n
    big = _up(flat.reshape(w, h).T, scale)  # (H, W)
    col = big.T.reshape(-1)  # column-major
    change = np.flatnonzero(np.diff(col)) + 1
    bounds = np.concatenate([[0], change, [col.size]])
    counts = np.diff(bounds).tolist()
    if col[0] == 1:
        counts = [0] + counts
    return {"size": [h * scale, w * scale], "counts": counts}


def _scale_instances(instances: dict, scale: int) -> dict:
    if scale == 1:
        return instances
    out = json.loads(json.dumps(instances))
    for im in out["images"]:
        im["height"], im["width"] = im["height"] * scale, im["width"] * scale
    for a in out["annotations"]:
        a["bbox"] = [v * scale for v in a["bbox"]]
        a["area"] = a["area"] * scale * scale
        seg = a["segmentation"]
        a["segmentation"] = (_scale_rle(seg, scale) if isinstance(seg, dict)
                             else [[v * scale for v in poly] for poly in seg])
    return out


def build_refer(raw_dir: Path, name: str, *, scale: int = 1) -> Path:
    refs, instances = refer_raw(name)
    instances = _scale_instances(instances, scale)
    d = raw_dir / name
    d.mkdir(parents=True, exist_ok=True)
    with open(d / "refs(unc).p", "wb") as f:
        pickle.dump(refs, f, protocol=2)
    write_json(d / "instances.json", instances)
    return d


def build_coco2014(root: Path, *, scale: int = 1) -> None:
    for stem, h, w in (("000000000009", 8, 10), ("000000000025", 6, 6)):
        write_jpg(root / "coco" / "train2014" / f"COCO_train2014_{stem}.jpg", h * scale, w * scale,
                  texture=scale > 1)


def build_all(root: Path, *, scale: int = 1) -> Path:
    """Every raw dataset under ``root`` (``python -m smart prepare all --root root`` converts them)."""
    root = Path(root)
    build_coco(root, scale=scale)
    build_ade(root, scale=scale)
    build_ade847(root, ade_level=True, scale=scale)
    build_pascal(root, scale=scale)
    build_mapillary(root, scale=scale)
    for name in ("refcoco", "refcoco+"):
        build_refer(root / "raw", name, scale=scale)
    build_coco2014(root, scale=scale)
    return root
