"""Reading and writing the files evaluation works on.

* COCO-panoptic PNGs: segment id = R + 256·G + 256²·B (``rgb2id``/``id2rgb``, as
  cocodataset/panopticapi ``utils.py``); segment id 0 is VOID.
* Semantic label maps: single-channel PNG (8- or 16-bit, palette PNGs give their indices) or TIFF
  (16-bit for ADE-847 / PC-459), read as integers exactly as detectron2's ``SemSegEvaluator`` reads
  them with PIL.
* Metrics JSON: NaN/inf become ``null``, numpy scalars become Python numbers, the file is replaced
  atomically.
* Prediction writers: :class:`PanopticPredictionWriter` (PNG + JSON ``segments_info``, the format
  ``pq_compute`` reads) and :func:`write_label_png` (semantic predictions).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from PIL import Image

from smart.errors import InputError

VOID = 0
OFFSET = 256 * 256 * 256  # largest id a 3-byte PNG can hold, plus one
LABEL_EXTENSIONS = (".png", ".tif", ".tiff")


# --------------------------------------------------------------------------------------------------
# panoptic PNGs


def rgb2id(rgb: np.ndarray) -> np.ndarray:
    """H×W×3 (or ×4, alpha ignored) uint8 array → H×W int64 segment ids (R + 256·G + 256²·B)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        raise ValueError(f"expected an H×W×3 array, got shape {rgb.shape}")
    if rgb.dtype != np.uint8:
        c = rgb[..., :3].astype(np.int64)
        return c[..., 0] + 256 * c[..., 1] + 65536 * c[..., 2]
    out = rgb[..., 2].astype(np.int64)  # B·256² + G·256 + R, built with shifts (fast)
    out <<= 8
    out |= rgb[..., 1]
    out <<= 8
    out |= rgb[..., 0]
    return out


def id2rgb(ids: np.ndarray) -> np.ndarray:
    """H×W non-negative integer ids (< 256³) → H×W×3 uint8 (the inverse of :func:`rgb2id`)."""
    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or ids.max() >= OFFSET):
        raise ValueError(f"segment ids must lie in [0, {OFFSET}), got [{ids.min()}, {ids.max()}]")
    ids = ids.astype(np.int64, copy=False)
    out = np.empty(ids.shape + (3,), dtype=np.uint8)
    out[..., 0] = ids & 255
    out[..., 1] = (ids >> 8) & 255
    out[..., 2] = (ids >> 16) & 255
    return out


def read_panoptic_png(path: str | Path, *, image_id: Any = None) -> np.ndarray:
    """Read a COCO-panoptic PNG into an H×W int64 array of segment ids."""
    where = f"image {image_id!r}" if image_id is not None else None
    try:
        with Image.open(path) as im:
            mode = im.mode
            if mode not in ("RGB", "RGBA"):
                raise InputError(
                    f"panoptic PNG must be RGB (segment id = R + 256*G + 256^2*B), got PIL mode {mode!r}",
                    path=path, field=where)
            arr = np.asarray(im)
    except FileNotFoundError:
        raise InputError("panoptic PNG not found", path=path, field=where) from None
    except OSError as exc:  # unreadable / truncated file
        raise InputError(f"cannot read panoptic PNG: {exc}", path=path, field=where) from None
    return rgb2id(arr)


def write_panoptic_png(path: str | Path, ids: np.ndarray) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(id2rgb(ids), mode="RGB").save(path, format="PNG")


# --------------------------------------------------------------------------------------------------
# semantic label maps


def read_label_map(path: str | Path, *, image: Any = None) -> np.ndarray:
    """Read a single-channel label map (PNG 8/16-bit, palette PNG, TIFF) as a 2-D integer array.

    Like detectron2 (``np.array(Image.open(f), dtype=int)``), a palette image gives its indices. A
    multi-channel image is an error: colour-coded label maps must be converted first.
    """
    where = f"image {image!r}" if image is not None else None
    try:
        with Image.open(path) as im:
            arr = np.asarray(im)
    except FileNotFoundError:
        raise InputError("label map not found", path=path, field=where) from None
    except OSError as exc:
        raise InputError(f"cannot read label map: {exc}", path=path, field=where) from None
    if arr.ndim != 2:
        raise InputError(f"label map must be single-channel, got an array of shape {arr.shape}",
                         path=path, field=where)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise InputError("label map holds non-integer values", path=path, field=where)
        arr = arr.astype(np.int64)
    elif arr.dtype.kind == "b":
        arr = arr.astype(np.uint8)
    elif arr.dtype.kind not in "iu":
        raise InputError(f"unsupported label map dtype {arr.dtype}", path=path, field=where)
    return arr


def write_label_png(path: str | Path, labels: np.ndarray, *, num_classes: int | None = None) -> None:
    """Write a semantic label map as PNG: 8-bit when it fits (or ``num_classes`` <= 256), else 16-bit."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"label map must be 2-D, got shape {labels.shape}")
    lo = int(labels.min()) if labels.size else 0
    hi = int(labels.max()) if labels.size else 0
    if lo < 0 or hi > 65535:
        raise ValueError(f"labels must lie in [0, 65535] for PNG, got [{lo}, {hi}]")
    eight_bit = (num_classes is not None and num_classes <= 256 and hi < 256) or (
        num_classes is None and hi < 256)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if eight_bit:
        Image.fromarray(labels.astype(np.uint8), mode="L").save(path, format="PNG")
    else:
        Image.fromarray(labels.astype(np.uint16)).save(path, format="PNG")  # mode I;16


def list_label_maps(folder: str | Path) -> dict[str, Path]:
    """Label maps under ``folder`` (recursively) keyed by their relative path without extension."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("label-map folder not found", path=folder)
    out: dict[str, Path] = {}
    for p in sorted(folder.rglob("*")):
        if p.suffix.lower() in LABEL_EXTENSIONS and p.is_file():
            key = p.relative_to(folder).with_suffix("").as_posix()
            if key in out:
                raise InputError(f"two label maps share the name {key!r}: {out[key].name} and {p.name}",
                                 path=folder, field=key)
            out[key] = p
    return out


# --------------------------------------------------------------------------------------------------
# JSON


def load_json(path: str | Path, what: str = "JSON file") -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise InputError(f"{what} not found", path=path) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{what} is not valid JSON: {exc}", path=path) from None


def to_jsonable(obj: Any) -> Any:
    """Recursively convert numpy types to Python ones and NaN/inf to None."""
    if isinstance(obj, Mapping):
        return {(k if isinstance(k, str) else str(to_jsonable(k))): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [to_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    return obj


def write_json(path: str | Path, obj: Any, *, indent: int | None = 2) -> None:
    """Write JSON atomically (temp file + rename); NaN and inf are written as ``null``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(to_jsonable(obj), indent=indent, allow_nan=False)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(data)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_metrics_json(path: str | Path, metrics: Mapping[str, Any]) -> None:
    """Write one metrics JSON (per run and dataset). Alias of :func:`write_json` for readability."""
    write_json(path, metrics)


# --------------------------------------------------------------------------------------------------
# prediction writers


class PanopticPredictionWriter:
    """Write panoptic predictions in COCO panoptic format: ``<dir>/<file_name>`` PNGs + one JSON.

    Segment ids must be positive and < 256³; 0 is VOID (unassigned pixels). ``segments_info`` needs
    ``id`` and ``category_id`` (the dataset's category id, as in the GT JSON); ``area`` is computed
    from the map, ``iscrowd`` is set to 0 and ``isthing`` is kept if given. Every listed segment must
    be present in the map and every non-zero id of the map listed, as ``pq_compute`` requires.
    """

    def __init__(self, json_path: str | Path, png_dir: str | Path | None = None,
                 categories: Sequence[Mapping] | None = None):
        self.json_path = Path(json_path)
        self.png_dir = Path(png_dir) if png_dir is not None else self.json_path.with_suffix("")
        self.categories = list(categories) if categories is not None else None
        self.annotations: list[dict] = []
        self._seen: set = set()

    def add(self, image_id: Any, seg_ids: np.ndarray, segments_info: Iterable[Mapping],
            file_name: str | None = None) -> dict:
        if image_id in self._seen:
            raise InputError("duplicate image id in predictions", path=self.json_path,
                             field=f"image {image_id!r}")
        seg_ids = np.asarray(seg_ids)
        if seg_ids.ndim != 2:
            raise InputError(f"panoptic id map must be 2-D, got shape {seg_ids.shape}",
                             path=self.json_path, field=f"image {image_id!r}")
        file_name = file_name or f"{image_id}.png"
        ids, counts = np.unique(seg_ids, return_counts=True)
        area = {int(i): int(c) for i, c in zip(ids, counts) if i != VOID}
        segs = []
        listed = set()
        for s in segments_info:
            sid = int(s["id"])
            where = f"image {image_id!r} segment {sid}"
            if sid in listed:
                raise InputError("duplicate segment id", path=self.json_path, field=where)
            if sid == VOID or sid not in area:
                raise InputError("segment is listed but has no pixels in the id map",
                                 path=self.json_path, field=where)
            listed.add(sid)
            seg = {"id": sid, "category_id": to_jsonable(s["category_id"]), "area": area[sid],
                   "iscrowd": 0}
            if "isthing" in s:
                seg["isthing"] = int(bool(s["isthing"]))
            if "score" in s:
                seg["score"] = float(s["score"])
            segs.append(seg)
        missing = sorted(set(area) - listed)
        if missing:
            raise InputError(f"segment ids {missing[:10]} are in the id map but not in segments_info",
                             path=self.json_path, field=f"image {image_id!r} segment {missing[0]}")
        write_panoptic_png(self.png_dir / file_name, seg_ids)
        ann = {"image_id": image_id, "file_name": file_name, "segments_info": segs}
        self.annotations.append(ann)
        self._seen.add(image_id)
        return ann

    def close(self) -> Path:
        out: dict[str, Any] = {"annotations": self.annotations}
        if self.categories is not None:
            out["categories"] = self.categories
        write_json(self.json_path, out, indent=None)
        return self.json_path

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
