"""Reading and writing the files evaluation works on.

The low-level readers and writers (panoptic PNG ids, label maps, JSON) live in :mod:`smart.io` and
are re-exported here. This module adds:

* label-map folder listing (files paired by relative path without extension);
* the metrics JSON writer (NaN/inf → ``null``, atomic);
* prediction writers: :class:`PanopticPredictionWriter` (PNG + JSON ``segments_info``, the format
  ``pq_compute`` reads) and :func:`write_label_png` (semantic predictions).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from smart.errors import InputError
from smart.io import (  # noqa: F401  (re-exported: the evaluation API)
    LABEL_EXTENSIONS,
    OFFSET,
    VOID,
    id2rgb,
    load_json,
    read_label_map,
    read_panoptic_png,
    rgb2id,
    to_jsonable,
    write_json,
    write_label_png,
    write_panoptic_png,
)


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
