"""Low-level file I/O shared by dataset preparation, the loaders, the mini world and evaluation.

* COCO-panoptic PNGs: segment id = R + 256·G + 256²·B (``rgb2id``/``id2rgb``, as
  cocodataset/panopticapi ``utils.py``); segment id 0 is VOID.
* Semantic label maps: single-channel PNG (8- or 16-bit, palette PNGs give their indices) or TIFF
  (16-bit for ADE-847 / PC-459), read as integers exactly as detectron2 reads them with PIL.
* Images: fully decoded on open, so a truncated file fails here and not later.
* JSON: NaN/inf become ``null``, numpy scalars become Python numbers; every write is atomic
  (temporary file + rename), so an interrupted run never leaves a half-written file.

Every failure on bad input is a :class:`~smart.errors.DatasetError` naming the file (and the image or
field where known).
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image

from smart.errors import DatasetError, InputError

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


# Formats that keep every pixel value: label maps, panoptic PNGs and predictions must be in one of them
# (a JPEG renamed .png would blur segment ids and labels and be scored as if they were exact).
LOSSLESS_FORMATS = ("PNG", "TIFF", "BMP")


def _check_lossless(im: Image.Image, path: str | Path, what: str, where: str | None) -> None:
    fmt = im.format or "unknown"
    if fmt not in LOSSLESS_FORMATS or (fmt == "TIFF" and "jpeg" in str(im.info.get("compression", "")).lower()):
        raise DatasetError(f"{what} is stored as {fmt}{' with JPEG compression' if fmt == 'TIFF' else ''}, a lossy "
                           f"format (whatever its name says): save it as PNG or TIFF", path=path, field=where)


def read_panoptic_png(path: str | Path, *, image_id: Any = None, dtype: Any = np.int64) -> np.ndarray:
    """Read a COCO-panoptic PNG into an H×W array of segment ids (R + 256·G + 256²·B) of ``dtype``.

    An 8-bit RGB or RGBA PNG (every panoptic map the tools write) is decoded by OpenCV (libpng, about
    1.7× PIL's speed on panoptic maps); its pixels are reordered to R, G, B, A bytes and read as
    little-endian 32-bit words with the top byte masked off. Anything else, or a file OpenCV cannot
    decode (truncated, corrupt), goes through PIL, which names the problem (wrong mode, lossy format,
    truncation).
    """
    where = f"image {image_id!r}" if image_id is not None else None
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise DatasetError("panoptic PNG not found", path=path, field=where) from None
    except OSError as exc:
        raise DatasetError(f"cannot read panoptic PNG: {exc}", path=path, field=where) from None
    words, size = _decode_rgb8_png(data)
    if words is None:
        try:
            with Image.open(io.BytesIO(data)) as im:
                _check_lossless(im, path, "the panoptic PNG", where)
                mode = im.mode
                if mode not in ("RGB", "RGBA"):
                    raise DatasetError(
                        f"panoptic PNG must be RGB (segment id = R + 256*G + 256^2*B), got PIL mode {mode!r}",
                        path=path, field=where)
                size = (im.height, im.width)
                words = np.frombuffer(im.tobytes("raw", "RGBX" if mode == "RGB" else "RGBA"), dtype="<u4")
        except OSError as exc:  # unreadable / truncated file
            raise DatasetError(f"cannot read panoptic PNG: {exc}", path=path, field=where) from None
    ids = (words & 0xFFFFFF).reshape(size)  # (H, W) uint32
    return ids.astype(dtype, copy=False)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@functools.cache
def _cv2():
    """OpenCV, imported on first use and set to one thread once (evaluation parallelises over images)."""
    import cv2

    cv2.setNumThreads(1)
    return cv2


def _decode_rgb8_png(data: bytes) -> tuple[np.ndarray | None, tuple[int, int]]:
    """(H·W,) little-endian uint32 words R | G<<8 | B<<16 | A<<24 of an 8-bit RGB(A) PNG, decoded by
    OpenCV, and (H, W); (None, (0, 0)) for any other file or when OpenCV cannot decode it."""
    # the signature, then the IHDR chunk: length, b"IHDR", width, height, bit depth, colour type (2 RGB, 6 RGBA)
    if len(data) < 33 or data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR" or data[24] != 8 \
            or data[25] not in (2, 6):
        return None, (0, 0)
    cv2 = _cv2()
    size = (int.from_bytes(data[20:24], "big"), int.from_bytes(data[16:20], "big"))
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)  # (H, W, 3|4) BGR(A), or None
    if arr is None or arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[:2] != size or arr.shape[2] not in (3, 4):
        return None, (0, 0)
    rgba = cv2.cvtColor(arr, cv2.COLOR_BGR2RGBA if arr.shape[2] == 3 else cv2.COLOR_BGRA2RGBA)  # (H, W, 4)
    return rgba.reshape(-1).view("<u4"), size


def empty_gt_segment_allowed(isthing: Any, iscrowd: Any) -> bool:
    """Whether a GT segment may be listed with no pixel in its panoptic PNG, in data sets that admit such
    segments (``empty_gt_stuff``): a non-crowd stuff segment. Mask2Former's ADE20K-150 GT keeps a stuff
    region that things cover entirely; panopticapi counts it as a false negative."""
    return not isthing and not iscrowd


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
            _check_lossless(im, path, "the label map", where)
            arr = np.asarray(im)
    except FileNotFoundError:
        raise DatasetError("label map not found", path=path, field=where) from None
    except OSError as exc:
        raise DatasetError(f"cannot read label map: {exc}", path=path, field=where) from None
    if arr.ndim != 2:
        raise DatasetError(f"label map must be single-channel, got an array of shape {arr.shape}",
                         path=path, field=where)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise DatasetError("label map holds non-integer values", path=path, field=where)
        arr = arr.astype(np.int64)
    elif arr.dtype.kind == "b":
        arr = arr.astype(np.uint8)
    elif arr.dtype.kind not in "iu":
        raise DatasetError(f"unsupported label map dtype {arr.dtype}", path=path, field=where)
    return arr


def write_label_png(path: str | Path, labels: np.ndarray, *, num_classes: int | None = None,
                    compress_level: int | None = None) -> None:
    """Write a semantic label map as PNG: 8-bit when it fits (or ``num_classes`` <= 256), else 16-bit
    (``compress_level`` 0-9: zlib effort, default PIL's; the pixels are the same at every level)."""
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
    kw = {} if compress_level is None else {"compress_level": compress_level}
    if eight_bit:
        Image.fromarray(labels.astype(np.uint8), mode="L").save(path, format="PNG", **kw)
    else:
        Image.fromarray(labels.astype(np.uint16)).save(path, format="PNG", **kw)  # mode I;16


# --------------------------------------------------------------------------------------------------
# JSON


def load_json(path: str | Path, what: str = "JSON file") -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DatasetError(f"{what} not found", path=path) from None
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{what} is not valid JSON: {exc}", path=path) from None


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
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(data)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------------------------------
# images and atomic writes


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path next to ``path``; rename it over ``path`` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_image_atomic(image: Image.Image | np.ndarray, path: str | Path, fmt: str, **kwargs) -> None:
    """Save an image (PIL or array) under ``path`` atomically, in the given PIL format."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            image.save(f, format=fmt, **kwargs)


def open_image(path: str | Path, field: str = "image") -> Image.Image:
    """Open and fully decode an image; a missing or unreadable file is a DatasetError."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError("missing file", path=path, field=field)
    try:
        img = Image.open(path)
        img.load()
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, ... on corrupt data
        raise DatasetError(f"cannot decode image ({type(exc).__name__}: {exc})", path=path,
                           field=field) from None
    return img


def read_image(path: str | Path, field: str = "image") -> np.ndarray:
    """The decoded pixel array in the file's own mode (e.g. 2-D for an ``L`` annotation PNG)."""
    return np.asarray(open_image(path, field))


def read_rgb(path: str | Path, field: str = "image", *, convert: bool = False) -> np.ndarray:
    """An ``H×W×3`` uint8 array. ``convert=True`` converts any mode (grayscale JPEGs); otherwise a
    non-colour file is a DatasetError (e.g. a panoptic PNG saved as grayscale)."""
    img = open_image(path, field)
    if img.mode not in ("RGB", "RGBA"):
        if not convert:
            raise DatasetError(f"expected an RGB image, got mode {img.mode}", path=path, field=field)
        img = img.convert("RGB")
    return np.asarray(img)[..., :3]


def bbox_of(mask: np.ndarray) -> list[int]:
    """``[x, y, w, h]`` of the extent of a non-empty boolean mask."""
    cols = np.flatnonzero(mask.any(axis=0))
    rows = np.flatnonzero(mask.any(axis=1))
    x, y = int(cols[0]), int(rows[0])
    return [x, y, int(cols[-1]) - x + 1, int(rows[-1]) - y + 1]


# --------------------------------------------------------------------------------------------------
# checksums of weight files

CHECKSUM_FILE = "SHA256SUMS"  # `sha256sum -c SHA256SUMS` format: "<hex>  <file name>" per line


def sha256_file(path: str | Path, *, chunk: int = 1 << 20) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_checksums(directory: str | Path, names: Sequence[str]) -> Path:
    """Record the SHA-256 of ``names`` (files of ``directory``) in ``directory/SHA256SUMS``, written last
    and atomically; :func:`verify_checksums` checks them whenever the directory is loaded."""
    directory = Path(directory)
    lines = [f"{sha256_file(directory / n)}  {n}\n" for n in sorted(names)]
    tmp = directory / f".{CHECKSUM_FILE}.partial"
    tmp.write_text("".join(lines))
    os.replace(tmp, directory / CHECKSUM_FILE)
    return directory / CHECKSUM_FILE


def verify_checksums(directory: str | Path, *, remedy: str = "") -> None:
    """If ``directory`` has a ``SHA256SUMS`` (written with its weights), every file it lists must exist and
    hash to the recorded value: a truncated, corrupted or replaced weight file is an
    :class:`~smart.errors.InputError` naming it (``remedy``: how to rebuild it)."""
    directory = Path(directory)
    sums = directory / CHECKSUM_FILE
    if not sums.is_file():
        return
    for k, line in enumerate(sums.read_text().splitlines()):
        if not line.strip():
            continue
        digest, _, name = line.partition("  ")
        path = directory / name.strip()
        if not path.is_file():
            raise InputError(f"missing: {CHECKSUM_FILE} lists it{remedy and '; ' + remedy}", path=path,
                             field="sha256")
        got = sha256_file(path)
        if got != digest.strip():
            raise InputError(f"the file changed since it was written (SHA-256 {got[:12]}…, recorded "
                             f"{digest.strip()[:12]}… in {CHECKSUM_FILE}): it is truncated, corrupted or "
                             f"replaced{remedy and '; ' + remedy}", path=path, field="sha256")
