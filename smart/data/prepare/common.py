"""Shared helpers of the preparation steps: atomic writes, checked reads, parallel map, stamps.

Every output file is written to a hidden sibling ``.<name>.partial`` and renamed over the target with
:func:`os.replace`, so a target that exists is always complete; conversions therefore skip targets
that already exist, which makes an interrupted run resumable. (The temporary name is deterministic,
so a stale one left by a killed run is simply overwritten by the next attempt.)

Every failure caused by bad input is a :class:`~smart.errors.DatasetError` naming the file and the
field or record at fault.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from PIL import Image

from smart.errors import DatasetError, InputError
from smart.io import (  # noqa: F401  (used by the preparation modules)
    atomic_path,
    bbox_of,
    empty_gt_segment_allowed,
    load_json,
    open_image,
    read_image,
    read_rgb,
    rgb2id,
    save_image_atomic,
    write_json,
)
from smart.provenance import git_sha, run_record_path
from smart.utils.logging import progress

log = logging.getLogger("smart.prepare")

STAMP_DIR = ".prepared"
STAMP_VERSION = 1

# Version of each converter's output, recorded in the data set's stamp ("converter"; 1 if absent).
# It is bumped when the output changes; data prepared by an earlier version are refused by
# runner.prepare_dataset with what to remove, instead of being kept or mixed with new output.
CONVERTERS: dict[str, tuple[int, str, str]] = {  # dataset -> (version, what changed, outputs to remove)
    "ade20k_150": (2, "the panoptic ground truth is now Mask2Former's: its palette, and stuff areas and boxes "
                      "from the semantic map with stuff covered by things kept",
                   "ADEChallengeData2016/ade20k_panoptic_train, ade20k_panoptic_val and their .json files"),
    "ade20k_847": (2, "images over 512 px are now resized with OpenCV INTER_LINEAR, as fc-clip's script does",
                   "ADE20K_2021_17_01/images_detectron2"),
    "pascal_ctx_59": (2, "the labels are now painted from trainval_merged.json, as fc-clip's script does",
                      "pascal_ctx_d2/annotations_ctx59"),
}


def converter_version(dataset: str) -> int:
    return CONVERTERS[dataset][0] if dataset in CONVERTERS else 1

# PIL's decompression-bomb limit (~179 MP for an error) is meant for untrusted web images; the
# benchmark images are trusted input and a few ADE20K-full scans are very large, so the limit is
# raised (never lowered) to 2^30 pixels while preparing.
if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < 1 << 30:
    Image.MAX_IMAGE_PIXELS = 1 << 30


@dataclass
class Context:
    """Settings of one ``prepare`` invocation."""

    root: Path
    raw_dir: Path
    download: bool = False
    skip_count_check: bool = False
    workers: int = 1
    force: bool = False
    counts: dict = field(default_factory=dict)  # filled by the steps, stored in the stamp


# ----------------------------------------------------------------------------------------------
# atomic writes


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(path: str | Path, obj: Any, *, indent: int | None = None) -> None:
    write_json(path, obj, indent=indent)


# ----------------------------------------------------------------------------------------------
# checked reads


def require_dir(path: str | Path, what: str, hint: str = "") -> Path:
    path = Path(path)
    if not path.is_dir():
        msg = f"missing directory ({what})"
        raise DatasetError(msg + (f"; {hint}" if hint else ""), path=path)
    return path


def require_file(path: str | Path, what: str, hint: str = "") -> Path:
    path = Path(path)
    if not path.is_file():
        msg = f"missing file ({what})"
        raise DatasetError(msg + (f"; {hint}" if hint else ""), path=path)
    return path


def image_size(path: str | Path, field: str = "image") -> tuple[int, int]:
    """``(width, height)`` from the image header (the file must at least be identifiable)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError("missing file", path=path, field=field)
    try:
        with Image.open(path) as img:
            return img.size
    except Exception as exc:
        raise DatasetError(f"cannot read image ({type(exc).__name__}: {exc})", path=path,
                           field=field) from None


def read_json(path: str | Path, what: str = "JSON file") -> Any:
    return load_json(require_file(path, what), what)


def get_field(record: dict, key: str, path: str | Path, where: str) -> Any:
    """``record[key]`` or a DatasetError naming ``where.key``."""
    if not isinstance(record, dict) or key not in record:
        raise DatasetError(f"missing field {key!r}", path=path, field=f"{where}.{key}")
    return record[key]


def list_files(directory: str | Path, suffix: str) -> list[Path]:
    """Sorted regular files in ``directory`` ending with ``suffix`` (hidden files excluded)."""
    directory = Path(directory)
    return sorted(p for p in directory.iterdir()
                  if p.is_file() and p.name.endswith(suffix) and not p.name.startswith("."))


# ----------------------------------------------------------------------------------------------
# parallel map with DatasetErrors that survive the process boundary


def _guarded(fn: Callable, item: Any):
    try:
        return True, fn(item)
    except InputError as exc:
        return False, (type(exc).__name__, exc.message, exc.path, exc.field)


def _guarded_star(args):
    return _guarded(*args)


def parallel_map(fn: Callable, items: Sequence, workers: int = 1, desc: str | None = None,
                 on_result: Callable[[Any, Any], None] | None = None) -> list:
    """``[fn(x) for x in items]`` over ``workers`` processes, in order, with a progress bar.

    ``fn`` must be picklable (a module-level function or a ``functools.partial`` of one). The first
    :class:`DatasetError` raised by ``fn`` stops the map and is re-raised here. ``on_result(item,
    result)`` is called in this process as each result arrives (e.g. to journal it).
    """
    items = list(items)
    out = []
    bar = progress(total=len(items), desc=desc, unit="img")
    try:
        if workers <= 1 or len(items) <= 1:
            for it in items:
                ok, res = _guarded(fn, it)
                _raise_if_failed(ok, res)
                if on_result is not None:
                    on_result(it, res)
                out.append(res)
                bar.update(1)
        else:
            chunk = max(1, min(64, len(items) // (workers * 8)))
            with ProcessPoolExecutor(max_workers=workers) as pool:
                results = pool.map(_guarded_star, ((fn, it) for it in items), chunksize=chunk)
                for it, (ok, res) in zip(items, results):
                    if not ok:
                        pool.shutdown(wait=True, cancel_futures=True)
                    _raise_if_failed(ok, res)
                    if on_result is not None:
                        on_result(it, res)
                    out.append(res)
                    bar.update(1)
    finally:
        bar.close()
    return out


def _raise_if_failed(ok: bool, res) -> None:
    if not ok:
        _kind, message, path, fld = res
        raise DatasetError(message, path=path, field=fld)


# ----------------------------------------------------------------------------------------------
# resumable per-item journal (for outputs that aggregate per-image records into one JSON)


class Journal:
    """Append-only JSON-lines record of finished items, used to resume aggregate outputs.

    Each line is ``{"key": ..., "value": ...}``; a truncated last line (a killed run) is ignored.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fh = None
        self.done: dict[str, Any] = {}
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                    self.done[rec["key"]] = rec["value"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue

    def add(self, key: str, value: Any) -> None:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")
        self._fh.write(json.dumps({"key": key, "value": value}) + "\n")
        self._fh.flush()
        self.done[key] = value

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def remove(self) -> None:
        self.close()
        if self.path.exists():
            self.path.unlink()


def work_dir(root: str | Path) -> Path:
    return Path(root) / STAMP_DIR / "work"


# ----------------------------------------------------------------------------------------------
# stamps


def stamp_path(root: str | Path, dataset: str) -> Path:
    return Path(root) / STAMP_DIR / f"{dataset}.json"


def read_stamp(root: str | Path, dataset: str) -> dict | None:
    p = stamp_path(root, dataset)
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None


def write_stamp(ctx: Context, dataset: str, extra: dict | None = None) -> Path:
    data = {
        "dataset": dataset,
        "version": STAMP_VERSION,
        "converter": converter_version(dataset),
        "root": str(ctx.root),
        "count_check": not ctx.skip_count_check,
        "counts": ctx.counts.get(dataset, {}),
    }
    if extra:
        data.update(extra)
    p = stamp_path(ctx.root, dataset)
    write_json_atomic(p, data, indent=1)  # the stamp DVC hashes: when it was written goes to its run record
    write_json_atomic(run_record_path(p), {"prepared_at": _dt.datetime.now(_dt.timezone.utc).isoformat(
        timespec="seconds"), "git_sha": git_sha()}, indent=1)
    return p


def record_count(ctx: Context, dataset: str, key: str, n: int) -> None:
    ctx.counts.setdefault(dataset, {})[key] = int(n)
