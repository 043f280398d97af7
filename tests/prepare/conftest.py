"""Fixture builders: tiny datasets in the ORIGINAL raw formats, and a loopback HTTP server.

Each builder writes the raw files from the literal arrays below; the tests compare the converted
outputs with expected arrays written by hand in the test modules.
"""

from __future__ import annotations

import http.server
import json
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image


def write_jpg(path: Path, h: int, w: int, color=(90, 120, 150)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (w, h), color).save(path, format="JPEG")


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


def build_coco(root: Path) -> Path:
    coco = root / "coco"
    for split, images in COCO_RAW.items():
        anns, imgs = [], []
        for k, (stem, ids, segs) in enumerate(images):
            ids = np.array(ids)
            h, w = ids.shape
            write_jpg(coco / f"{split}2017" / f"{stem}.jpg", h, w)
            write_png(coco / f"panoptic_{split}2017" / f"{stem}.png", ids_to_rgb(ids))
            imgs.append({"id": int(stem), "file_name": f"{stem}.jpg", "height": h, "width": w})
            anns.append({"image_id": int(stem), "file_name": f"{stem}.png",
                         "segments_info": [{"id": sid, "category_id": cid, "iscrowd": crowd,
                                            "area": int((ids == sid).sum()), "bbox": [0, 0, 1, 1]}
                                           for sid, cid, crowd in segs]})
        write_json(coco / "annotations" / f"panoptic_{split}2017.json",
                   {"images": imgs, "annotations": anns, "categories": []})
    return root


@pytest.fixture
def coco_root(tmp_path) -> Path:
    return build_coco(tmp_path / "datasets")


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


def build_ade(root: Path) -> Path:
    ade = root / "ADEChallengeData2016"
    for split, images in ADE_RAW.items():
        for stem, sem, r, g in images:
            sem = np.array(sem)
            h, w = sem.shape
            write_jpg(ade / "images" / split / f"{stem}.jpg", h, w)
            write_png(ade / "annotations" / split / f"{stem}.png", sem)
            ins = np.stack([np.array(r), np.array(g), np.full((h, w), 7)], axis=-1)
            write_png(ade / "annotations_instance" / split / f"{stem}.png", ins)
    (ade / "objectInfo150.txt").write_text("Idx\tRatio\tTrain\tVal\tName\n", encoding="utf-8")
    return root


@pytest.fixture
def ade_root(tmp_path) -> Path:
    return build_ade(tmp_path / "datasets")


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


def build_ade847(root: Path, ade_level: bool = False) -> Path:
    base = root / "ade" if ade_level else root
    ds = base / "ADE20K_2021_17_01"
    entries = []

    def add(folder: str, name: str, classes: np.ndarray):
        h, w = classes.shape
        write_jpg(base / folder / name, h, w)
        write_png(base / folder / name.replace(".jpg", "_seg.png"), _ade_seg(classes))
        entries.append((folder, name))

    add("ADE20K_2021_17_01/images/ADE/validation/abbey", "ADE_val_00000001.jpg", np.array(ADE847_VAL))
    big = np.full((520, 600), WALL)
    big[260:] = SKY
    add("ADE20K_2021_17_01/images/ADE/training/urban/street", "ADE_train_00000001.jpg", big)
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


def build_pascal(root: Path) -> Path:
    voc = root / "VOCdevkit" / "VOC2010"
    images = []
    for stem, phase, lab in PC_RAW:
        lab = np.array(lab, dtype=np.uint16)
        h, w = lab.shape
        write_jpg(voc / "JPEGImages" / f"{stem}.jpg", h, w, color=(10 * h, 20 * w, 30))
        (voc / "trainval").mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(str(voc / "trainval" / f"{stem}.mat"), {"LabelMap": lab})
        images.append({"image_id": int(stem.replace("_", "")), "file_name": f"{stem}.jpg", "phase": phase,
                       "width": w, "height": h})
    # a test-phase image (no files): never part of train / val
    images.append({"image_id": 2008000004, "file_name": "2008_000004.jpg", "phase": "test",
                   "width": 3, "height": 3})
    write_json(voc / "trainval_merged.json",
               {"info": {}, "images": images, "annos_segmentation": [], "categories": [], "parts": [],
                "annos_occlusion": [], "annos_boundary": [], "annos_joints": []})
    return root


@pytest.fixture
def pascal_root(tmp_path) -> Path:
    return build_pascal(tmp_path / "datasets")


# ----------------------------------------------------------------------------------------------
# Mapillary Vistas v1.2 (validation only)

MV_RAW = [
    ("img_a", [[1, 1, 0], [2, 2, 2]], [(1, 1), (2, 65)]),
    ("img_b", [[3, 3], [3, 300]], [(3, 20), (300, 64)]),
]


def build_mapillary(root: Path) -> Path:
    val = root / "mapillary_vistas" / "validation"
    images, anns = [], []
    for stem, ids, segs in MV_RAW:
        ids = np.array(ids)
        h, w = ids.shape
        write_jpg(val / "images" / f"{stem}.jpg", h, w)
        write_png(val / "labels" / f"{stem}.png", np.full((h, w), 65))
        write_png(val / "panoptic" / f"{stem}.png", ids_to_rgb(ids))
        images.append({"id": stem, "file_name": f"{stem}.jpg", "width": w, "height": h})
        anns.append({"image_id": stem, "file_name": f"{stem}.png",
                     "segments_info": [{"id": s, "category_id": c, "iscrowd": 0} for s, c in segs]})
    cats = [{"id": i, "name": f"class {i}", "isthing": 0, "supercategory": "x"} for i in range(1, 66)]
    write_json(val / "panoptic" / "panoptic_2018.json",
               {"images": images, "annotations": anns, "categories": cats})
    return root


@pytest.fixture
def mapillary_root(tmp_path) -> Path:
    return build_mapillary(tmp_path / "datasets")


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


def build_refer(raw_dir: Path, name: str) -> Path:
    refs, instances = refer_raw(name)
    d = raw_dir / name
    d.mkdir(parents=True, exist_ok=True)
    with open(d / "refs(unc).p", "wb") as f:
        pickle.dump(refs, f, protocol=2)
    write_json(d / "instances.json", instances)
    return d


def build_coco2014(root: Path) -> None:
    write_jpg(root / "coco" / "train2014" / "COCO_train2014_000000000009.jpg", 8, 10)
    write_jpg(root / "coco" / "train2014" / "COCO_train2014_000000000025.jpg", 6, 6)


# ----------------------------------------------------------------------------------------------
# loopback HTTP server with optional Range support and scripted interruptions


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "TestServer/1.0"

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        srv = self.server
        srv.requests.append({"path": self.path, "range": self.headers.get("Range")})
        body = srv.files.get(self.path)
        if body is None:
            self.send_error(404, "Not Found")
            return
        rng = self.headers.get("Range")
        start = 0
        if rng and srv.support_range and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if srv.truncate_next > 0:  # send only part of the body, then drop the connection
            srv.truncate_next -= 1
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(payload)


class LoopbackServer:
    def __init__(self):
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.files = {}
        self.httpd.requests = []
        self.httpd.support_range = True
        self.httpd.truncate_next = 0
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)
        self.thread.start()

    @property
    def requests(self) -> list:
        return self.httpd.requests

    def serve(self, path: str, data: bytes) -> str:
        self.httpd.files[path] = data
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}{path}"

    def set(self, *, support_range: bool | None = None, truncate_next: int | None = None) -> None:
        if support_range is not None:
            self.httpd.support_range = support_range
        if truncate_next is not None:
            self.httpd.truncate_next = truncate_next

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def http_server():
    srv = LoopbackServer()
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture
def builders():
    """The raw-data builders, for tests that need a variant of a fixture."""
    import types

    return types.SimpleNamespace(coco=build_coco, ade=build_ade, ade847=build_ade847, pascal=build_pascal,
                                 mapillary=build_mapillary, refer=build_refer, coco2014=build_coco2014,
                                 refer_raw=refer_raw, write_png=write_png, write_jpg=write_jpg,
                                 ids_to_rgb=ids_to_rgb, write_json=write_json)


def prepare_ctx(root: Path, **kw):
    from smart.data.prepare.common import Context

    kw.setdefault("skip_count_check", True)
    kw.setdefault("workers", 1)
    return Context(root=root, raw_dir=kw.pop("raw_dir", root / "raw"), **kw)


@pytest.fixture
def make_ctx():
    """``make_ctx(root, **overrides)`` → a :class:`Context` (count check off, 1 worker by default)."""
    return prepare_ctx
