"""ADE20K-847 (full ADE20K, release 2021_17_01): 847-class semantic maps as 16-bit TIFFs.

``docs/datasets.md`` §5. Reference: fc-clip ``datasets/prepare_ade20k_full_sem_seg.py``
(bytedance/fc-clip, commit a8dc32c862dfc1fe55dcf9287090e080d9ee5f50; a copy of NVlabs/ODISE's script
of the same name). For every entry of ``index_ade20k.pkl`` (its ``folder`` and ``filename`` lists):

* split = ``validation`` if the second ``_``-separated field of the file name is ``val``, else
  ``training``;
* class map from ``<image stem>_seg.png``: class = floor(R / 10) · 256 + G (B, the instances, is
  unused);
* the image is decoded by PIL into an array; if its short side is > 512 it is resized to 512 and the
  long side to ``round(long / short · 512)`` (Python rounding) with OpenCV's ``cv2.resize``:
  ``INTER_LINEAR`` for the image, ``INTER_NEAREST`` for the class map, as the reference does;
* label map uint16 filled with 65535 (ignore); pixels whose full-ADE id is one of the 847 of
  ``builtin_vocab("ade20k_847")`` get its ``trainId`` (0..846); everything else stays 65535;
* ``images_detectron2/<split>/<file name>``: the array written by PIL as JPEG with PIL's defaults
  (quality 75), as the reference does, so the bytes equal the reference's for the same PIL version;
  ``annotations_detectron2/<split>/<stem>.tif`` (16-bit TIFF, mode ``I;16``; PIL, tifffile and
  detectron2 read it back as uint16).

Remaining differences from the reference, none of which changes a pixel or a label:

* **Paths.** The reference reads and writes under ``<root>/ade/ADE20K_2021_17_01/``. Outputs here go
  to ``<root>/ADE20K_2021_17_01/`` — the path the loaders (FC-CLIP / Mask2Former
  ``register_ade20k_full.py``) read — and the raw data may live under either. The pickle's
  ``folder`` entries start with ``ADE20K_2021_17_01/…`` and are resolved against the data set
  directory's parent.
* **Image modes.** Images that are neither RGB nor grayscale (e.g. CMYK, palette) are converted to
  RGB before resizing; the reference would interpolate palette indices or fail to write a
  four-channel JPEG.
* **Resuming.** An existing (image, label) pair is kept, so an interrupted run resumes.
* **Bad input** (a missing file, a class map whose size differs from the image's) is a
  :class:`~smart.errors.DatasetError` naming the file.
"""

from __future__ import annotations

import functools
import logging
import pickle
from pathlib import Path

import cv2
import numpy as np

from smart.data.categories import builtin_vocab
from smart.errors import DatasetError

from . import checks
from .common import Context, open_image, parallel_map, read_rgb, require_dir, save_image_atomic, write_stamp
from .download import ensure_archives

log = logging.getLogger("smart.prepare.ade847")

DIRNAME = "ADE20K_2021_17_01"
IGNORE = 65535
MAX_SHORT = 512
SPLITS = ("validation", "training")
HINT = (f"register at https://groups.csail.mit.edu/vision/datasets/ADE20K/, then unzip your personal zip "
        f"so that <root>/{DIRNAME}/index_ade20k.pkl (or <root>/ade/{DIRNAME}/index_ade20k.pkl) exists")


def find_dataset_dir(root: str | Path) -> Path:
    """The raw ``ADE20K_2021_17_01`` directory: ``<root>/ADE20K_2021_17_01`` or ``<root>/ade/...``."""
    root = Path(root)
    for cand in (root / DIRNAME, root / "ade" / DIRNAME):
        if (cand / "index_ade20k.pkl").is_file():
            return cand
    raise DatasetError(f"missing index_ade20k.pkl; {HINT}", path=root / DIRNAME / "index_ade20k.pkl")


@functools.lru_cache(maxsize=1)
def _lut() -> np.ndarray:
    """full-ADE id → trainId, 65535 elsewhere (ids up to 25·256 + 255 = 6655)."""
    lut = np.full(26 * 256, IGNORE, dtype=np.uint16)
    for c in builtin_vocab("ade20k_847"):
        if c.id < len(lut):
            lut[c.id] = c.train_id
    return lut


def resized_shape(w: int, h: int, max_short: int = MAX_SHORT) -> tuple[int, int] | None:
    """New ``(w, h)`` when the short side exceeds ``max_short``, else None (upstream's rule)."""
    if w >= h > max_short:
        return round(w / float(h) * max_short), max_short
    if h >= w > max_short:
        return max_short, round(h / float(w) * max_short)
    return None


def class_map(seg_rgb: np.ndarray) -> np.ndarray:
    r = seg_rgb[..., 0].astype(np.int32)
    g = seg_rgb[..., 1].astype(np.int32)
    return (r // 10) * 256 + g


def _one(item) -> None:
    img_path, seg_path, out_img, out_lab = item
    img = open_image(img_path, field="image")
    seg = read_rgb(seg_path, field="_seg.png")
    w, h = img.size
    if seg.shape[:2] != (h, w):
        raise DatasetError(f"size {seg.shape[1::-1]} differs from the image's {(w, h)}", path=seg_path,
                           field="size")
    if img.mode not in ("RGB", "L"):
        img = img.convert("RGB")
    image = np.asarray(img)  # (H, W, 3) or (H, W) uint8
    lab = class_map(seg)  # (H, W) int32
    new = resized_shape(w, h)
    if new is not None:  # new = (w', h'), cv2's dsize order
        image = cv2.resize(image, new, interpolation=cv2.INTER_LINEAR)
        lab = cv2.resize(lab, new, interpolation=cv2.INTER_NEAREST)
    out = _lut()[lab]  # lab <= 25 * 256 + 255 < len(lut)
    save_image_atomic(image, out_img, "JPEG")
    save_image_atomic(out.astype(np.uint16), out_lab, "TIFF")


def load_index(index_file: str | Path) -> tuple[list[str], list[str]]:
    index_file = Path(index_file)
    try:
        with open(index_file, "rb") as f:
            index = pickle.load(f)
    except FileNotFoundError:
        raise DatasetError(f"missing file; {HINT}", path=index_file) from None
    except Exception as exc:  # unpickling errors of all kinds
        raise DatasetError(f"cannot read pickle ({type(exc).__name__}: {exc})", path=index_file) from None
    if not isinstance(index, dict):
        raise DatasetError(f"expected a dict, got {type(index).__name__}", path=index_file)
    for key in ("folder", "filename"):
        if key not in index:
            raise DatasetError(f"missing key {key!r}", path=index_file, field=key)
    folders = [str(x) for x in index["folder"]]
    files = [str(x) for x in index["filename"]]
    if len(folders) != len(files):
        raise DatasetError(f"{len(folders)} folders but {len(files)} file names", path=index_file,
                           field="folder/filename")
    if not files:
        raise DatasetError("no images (empty index)", path=index_file, field="filename")
    return folders, files


def split_of(file_name: str) -> str:
    parts = file_name.split("_")
    return "validation" if len(parts) > 1 and parts[1] == "val" else "training"


def convert(dataset_dir: str | Path, out_dir: str | Path, workers: int = 1) -> dict:
    """Convert the images of ``dataset_dir/index_ade20k.pkl`` to ``out_dir/{images,annotations}_detectron2``.

    Existing (image, label) pairs are kept. Returns per-split image counts and the number written.
    """
    dataset_dir, out_dir = Path(dataset_dir), Path(out_dir)
    index_file = dataset_dir / "index_ade20k.pkl"
    folders, files = load_index(index_file)
    counts = {s: 0 for s in SPLITS}
    items = []
    for i, (folder, name) in enumerate(zip(folders, files)):
        split = split_of(name)
        counts[split] += 1
        fparts = Path(folder).parts
        base = dataset_dir.parent if fparts and fparts[0] == dataset_dir.name else dataset_dir
        img_path = base / folder / name
        stem = Path(name).stem
        seg_path = img_path.with_name(f"{stem}_seg.png")
        out_img = out_dir / "images_detectron2" / split / name
        out_lab = out_dir / "annotations_detectron2" / split / f"{stem}.tif"
        if out_img.is_file() and out_lab.is_file():
            continue
        if not img_path.is_file():
            raise DatasetError(f"image listed in the index is missing: {img_path}", path=index_file,
                               field=f"filename[{i}]")
        items.append((str(img_path), str(seg_path), str(out_img), str(out_lab)))
    for split in SPLITS:
        if counts[split] == 0:
            raise DatasetError(f"no {split} images (empty split)", path=index_file, field="filename")
    parallel_map(_one, items, workers, desc="ade20k_847")
    return {**counts, "written": len(items)}


def prepare(ctx: Context) -> None:
    ensure_archives(ctx, "ade20k_847")
    src = find_dataset_dir(ctx.root)
    out = Path(ctx.root) / DIRNAME
    r = convert(src, out, ctx.workers)
    log.info("ade20k_847: %d validation, %d training images (%d new)", r["validation"], r["training"],
             r["written"])
    require_dir(out / "annotations_detectron2" / "validation", "ADE-847 validation labels")
    checks.check_count(ctx, "ade20k_847", out / "images_detectron2" / "validation", ".jpg",
                       key="images_detectron2/validation")
    checks.check_count(ctx, "ade20k_847", out / "annotations_detectron2" / "validation", ".tif",
                       key="annotations_detectron2/validation")
    write_stamp(ctx, "ade20k_847", {"source": str(src)})
