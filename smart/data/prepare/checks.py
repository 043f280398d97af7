"""Checks run after a preparation (``docs/datasets.md`` §8).

* :func:`check_count` — the validation image counts of the paper's benchmarks (:data:`VAL_COUNTS`);
  a mismatch stops with a :class:`DatasetError` unless ``--skip-count-check`` (partial data, tests).
* :func:`check_panoptic_ids` — every segment id of every panoptic PNG (other than 0 = VOID) is in the
  image's ``segments_info``, and every ``segments_info`` id occurs in the PNG (with ``empty_stuff``,
  stuff segments may have no pixel: Mask2Former's ADE20K-150 ground truth lists stuff regions that
  things cover entirely).
* :func:`check_semseg_values` — the values of generated semantic maps are class indices or ignore.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from smart.errors import DatasetError

from .common import (
    Context,
    empty_gt_segment_allowed,
    get_field,
    list_files,
    parallel_map,
    read_image,
    read_json,
    read_rgb,
    record_count,
    rgb2id,
)

# Validation image counts (datasets.md §7).
VAL_COUNTS = {
    "coco": 5000,
    "ade20k_150": 2000,
    "mapillary_vistas": 2000,
    "ade20k_847": 2000,
    "pascal_ctx_59": 5104,
    "pascal_ctx_459": 5104,
}


def count_files(directory: str | Path, suffix: str) -> int:
    return len(list_files(directory, suffix))


def check_count(ctx: Context, dataset: str, directory: str | Path, suffix: str,
                expected: int | None = None, key: str | None = None) -> int:
    """Count ``*suffix`` files in ``directory``; stop unless it equals the expected val count."""
    directory = Path(directory)
    expected = VAL_COUNTS[dataset] if expected is None else expected
    found = count_files(directory, suffix) if directory.is_dir() else 0
    record_count(ctx, dataset, key or directory.name, found)
    if found != expected and not ctx.skip_count_check:
        raise DatasetError(
            f"expected {expected} validation files (*{suffix}), found {found}; the data set is "
            f"incomplete or not the benchmark version (use --skip-count-check to accept partial data)",
            path=directory, field="count")
    return found


def check_number(ctx: Context, dataset: str, found: int, where: str | Path, key: str,
                 expected: int | None = None) -> int:
    """Like :func:`check_count` for a number counted elsewhere (e.g. the images of a JSON file)."""
    expected = VAL_COUNTS[dataset] if expected is None else expected
    record_count(ctx, dataset, key, found)
    if found != expected and not ctx.skip_count_check:
        raise DatasetError(
            f"expected {expected} validation images, found {found}; the data set is incomplete or not "
            f"the benchmark version (use --skip-count-check to accept partial data)", path=where,
            field=key)
    return found


def _check_pan_one(item) -> None:
    png_path, ids, may_be_empty, json_path, where = item
    seg = rgb2id(read_rgb(png_path, field="panoptic PNG"))
    present = set(int(v) for v in np.unique(seg)) - {0}
    listed = set(ids)
    extra = sorted(present - listed)
    missing = sorted(listed - present - may_be_empty)
    if extra:
        raise DatasetError(f"segment ids {extra[:10]} of the PNG {png_path} are not in its "
                           f"segments_info", path=json_path, field=f"{where}.segments_info")
    if missing:
        raise DatasetError(f"segments_info ids {missing[:10]} do not occur in the PNG {png_path}",
                           path=json_path, field=f"{where}.segments_info")


def check_panoptic_ids(json_path: str | Path, png_dir: str | Path, workers: int = 1, *,
                       empty_stuff: bool = False) -> int:
    """Check that PNG segment ids and JSON ``segments_info`` ids agree; returns the annotation count.

    With ``empty_stuff``, a listed non-crowd segment of a stuff category (``isthing`` 0 in the JSON's
    categories) may be absent from the PNG (:func:`smart.io.empty_gt_segment_allowed`).
    """
    json_path, png_dir = Path(json_path), Path(png_dir)
    data = read_json(json_path, "panoptic JSON")
    anns = get_field(data, "annotations", json_path, "$")
    stuff: set = set()
    if empty_stuff:
        cats = get_field(data, "categories", json_path, "$")
        stuff = {get_field(c, "id", json_path, f"categories[{k}]") for k, c in enumerate(cats)
                 if not get_field(c, "isthing", json_path, f"categories[{k}]")}
    items = []
    for i, ann in enumerate(anns):
        where = f"annotations[{i}]"
        name = get_field(ann, "file_name", json_path, where)
        segs = get_field(ann, "segments_info", json_path, where)
        ids = [int(get_field(s, "id", json_path, f"{where}.segments_info[{j}]")) for j, s in enumerate(segs)]
        may_be_empty = {int(s["id"]) for s in segs
                        if empty_gt_segment_allowed(s.get("category_id") not in stuff, s.get("iscrowd", 0))}
        items.append((str(png_dir / name), ids, may_be_empty, str(json_path), where))
    parallel_map(_check_pan_one, items, workers, desc=f"check {png_dir.name}")
    return len(items)


def _check_sem_one(item) -> None:
    path, num_classes, ignore = item
    arr = read_image(path, field="semantic map")
    vals = np.unique(arr)
    bad = [int(v) for v in vals if not (0 <= v < num_classes or v == ignore)]
    if bad:
        raise DatasetError(f"values {bad[:10]} outside 0..{num_classes - 1} and {ignore}", path=path,
                           field="pixel values")


def check_semseg_values(directory: str | Path, num_classes: int, ignore: int, suffix: str = ".png",
                        workers: int = 1) -> int:
    """Check that every map in ``directory`` holds only 0..num_classes-1 and ``ignore``."""
    files = list_files(directory, suffix)
    parallel_map(_check_sem_one, [(str(p), num_classes, ignore) for p in files], workers,
                 desc=f"check {Path(directory).name}")
    return len(files)


__all__ = ["VAL_COUNTS", "check_count", "check_number", "check_panoptic_ids", "check_semseg_values",
           "count_files"]
