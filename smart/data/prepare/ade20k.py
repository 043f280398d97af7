"""ADE20K-150 (SceneParsing, ``ADEChallengeData2016``): semantic and panoptic ground truth.

``docs/datasets.md`` §3.

**Semantic** (:func:`convert_semantic`): annotation PNG − 1 with uint8 wrap-around, so 0 ("other")
becomes 255 (ignore) and the classes 1..150 become 0..149; written to
``annotations_detectron2/<split>/<same name>.png``.

**Panoptic** (:func:`convert_panoptic`), for (train, training) and (val, validation), over the sorted
``images/<split>/*.jpg``:

* image id = the **string** file stem; width/height from the JPEG header;
* semantic = annotation PNG − 1 (255 = void); instance PNG (``annotations_instance/<split>/``):
  R − 1 = instance-class index (0..99), G = instance id (0 = none);
* stuff first: each stuff class present in the semantic map is one segment (whole class region);
* then things: each non-zero G is one segment, which must carry exactly one instance class; its
  category is that class's 150-id (instance → 150 mapping below); things are painted over stuff;
* thing-class pixels that no instance covers stay VOID (0); ``iscrowd`` is 0 everywhere;
* ``ade20k_panoptic_<split>/<stem>.png`` and ``ade20k_panoptic_<split>.json`` (images, annotations,
  categories — ``{id 0..149, name, isthing, color}``).

Reference: Mask2Former ``datasets/prepare_ade20k_pan_seg.py`` (facebookresearch/Mask2Former, commit
161be514814ea63440fae520d2ec72707b62ba54, unchanged at 9b0651c6) for the panoptic part and
``datasets/prepare_ade20k_sem_seg.py`` (same commit) for the semantic part. The outputs equal that
script's field for field (``tests/prepare/test_prepare_ade20k.py``), with these conventions taken over:

* **Colours** are the script's ``PALETTE`` (``smart/data/vocab/ade20k_150_palette.json``, 150 distinct
  colours); the JSON's categories are ``{name, id, isthing, color}`` with the names of
  ``builtin_vocab("ade20k_150")``, which equal the script's list character for character. Segment
  id = R + 256·G + 256²·B of the segment's colour. A stuff segment has its category's colour. A thing
  segment has its category's colour if no segment of the image has it yet (the 50 stuff colours and
  black are always reserved), else the colour plus a ±30 per-channel jitter, clipped to 0..255 and
  redrawn until unused.
* **Areas and boxes** are those of the masks that are painted: a stuff segment's area and box come
  from its whole semantic-map region, *before* things are painted over it. So where the instance
  annotation overlaps the semantic annotation, the JSON area of a stuff segment exceeds its pixel
  count in the PNG, and a stuff region that things cover entirely is listed with no pixel in the PNG.
  panopticapi's ``pq_compute`` takes GT areas from the JSON and counts such a segment as a false
  negative; :mod:`smart.eval.panoptic` does the same, and the ADE20K-150 dataset spec
  (``empty_gt_stuff``) lets the loader and the evaluator accept these segments (and only these).

Remaining differences from the reference, none of which changes a pixel class, an area, a box or a
score:

* **Jittered colours are seeded.** The reference draws the jitter from NumPy's unseeded global RNG;
  here it comes from ``numpy.random.default_rng([ADE_PANOPTIC_SEED, zlib.crc32(stem.encode())])``,
  per image, so outputs are byte-reproducible and independent of which images a resumed run skips.
  Only the ids of the second and later instances of a thing category in an image differ from a
  reference run (which differs from itself run to run).
* **Black** is reserved as a colour tuple here; panopticapi's ``IdGenerator`` reserves the integer 0
  instead (``set([0, 0, 0])``). No palette colour lies within 30 of black on every channel, so no
  jitter can reach it either way.
* **Instance → 150 mapping.** The reference reads ``datasets/ade20k_instance_catid_mapping.txt``
  from its repository. Here ``ADEChallengeData2016/ade20k_instance_catid_mapping.txt`` or
  ``ADEChallengeData2016/categoryMapping.txt`` (same format: a header line, then rows ``instance150
  sceneparse150 [fullADE]``, 1-based, rows may repeat) is read if present, and its targets must be
  exactly the things of ``builtin_vocab("ade20k_150")``. Otherwise instance class *k* (0-based) maps
  to the *k*-th thing category in id order: the 100 targets of Mask2Former's file (8, 9, 11, 13, …,
  150, 1-based) are strictly increasing and equal the thing ids, so both give the same mapping.
* **Width and height** come from the JPEG header instead of a full decode (the same numbers).
* **Bad input** (an unknown class, an instance with two classes, sizes that disagree) is a
  :class:`~smart.errors.DatasetError` naming the file and field where the reference stops on an
  ``assert`` or a ``KeyError``.
* The instance JSON (``ade20k_instance_*.json``) is not generated: SMART does not need it.
"""

from __future__ import annotations

import functools
import logging
import zlib
from importlib import resources
from pathlib import Path

import numpy as np

from smart.data.categories import builtin_vocab
from smart.errors import DatasetError

from . import checks
from .common import (
    Context,
    Journal,
    bbox_of,
    image_size,
    list_files,
    parallel_map,
    read_image,
    read_json,
    read_rgb,
    require_dir,
    save_image_atomic,
    work_dir,
    write_json_atomic,
    write_stamp,
)
from .download import ensure_archives

log = logging.getLogger("smart.prepare.ade20k")

ADE_PANOPTIC_SEED = 0
JITTER = 30
IGNORE = 255
NUM_CLASSES = 150
NUM_INSTANCE_CLASSES = 100
SPLITS = (("val", "validation"), ("train", "training"))
MAPPING_FILES = ("ade20k_instance_catid_mapping.txt", "categoryMapping.txt")
PALETTE_FILE = "ade20k_150_palette.json"
HINT = ("run `python -m smart prepare ade20k_150 --download`, or unzip ADEChallengeData2016.zip into "
        "<root> and extract annotations_instance.tar into <root>/ADEChallengeData2016")


# ----------------------------------------------------------------------------------------------
# categories, palette, instance mapping


@functools.lru_cache(maxsize=1)
def _thing_flags() -> tuple[bool, ...]:
    return tuple(c.isthing for c in builtin_vocab("ade20k_150"))


@functools.lru_cache(maxsize=1)
def palette() -> tuple[tuple[int, int, int], ...]:
    """Colour of each ADE-150 category (index = category id): Mask2Former's ``PALETTE``."""
    ref = resources.files("smart.data.vocab").joinpath(PALETTE_FILE)
    with resources.as_file(ref) as path:
        colors = read_json(path, "ADE20K-150 palette")
    ok = (isinstance(colors, list) and len(colors) == NUM_CLASSES
          and all(isinstance(c, list) and len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c)
                  for c in colors))
    if not ok or len({tuple(c) for c in colors}) != NUM_CLASSES:
        raise DatasetError(f"expected {NUM_CLASSES} distinct [R, G, B] colours", path=path)
    return tuple(tuple(c) for c in colors)


def default_instance_mapping() -> dict[int, int]:
    """Instance class k (0-based) → the k-th thing of ``builtin_vocab("ade20k_150")`` (0-based id)."""
    things = sorted(c.id for c in builtin_vocab("ade20k_150") if c.isthing)
    return {k: cid for k, cid in enumerate(things)}


def read_instance_mapping(path: str | Path) -> dict[int, int]:
    """Parse a Mask2Former-style mapping file into {instance class 0..99: 150-id 0..149}."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read mapping file ({exc})", path=path) from None
    mapping: dict[int, int] = {}
    for lineno, line in enumerate(lines[1:], start=2):
        parts = line.split()
        if not parts:
            continue
        try:
            ins, sem = int(parts[0]) - 1, int(parts[1]) - 1
        except (ValueError, IndexError):
            raise DatasetError("expected 'instance_id sceneparse_id [full_id]' (integers)", path=path,
                               field=f"line {lineno}") from None
        if not (0 <= ins < NUM_INSTANCE_CLASSES and 0 <= sem < NUM_CLASSES):
            raise DatasetError(f"ids out of range (instance 1..{NUM_INSTANCE_CLASSES}, "
                               f"sceneparse 1..{NUM_CLASSES})", path=path, field=f"line {lineno}")
        if mapping.get(ins, sem) != sem:
            raise DatasetError(f"instance class {ins + 1} mapped to two categories", path=path,
                               field=f"line {lineno}")
        mapping[ins] = sem
    things = {c.id for c in builtin_vocab("ade20k_150") if c.isthing}
    if set(mapping.values()) != things:
        raise DatasetError("the mapping targets differ from the 100 thing categories of the packaged "
                           "ADE20K-150 table", path=path, field="SceneParse150")
    return mapping


def find_instance_mapping(ade_dir: str | Path) -> dict[int, int]:
    for name in MAPPING_FILES:
        p = Path(ade_dir) / name
        if p.is_file():
            log.info("instance-class mapping from %s", p)
            return read_instance_mapping(p)
    return default_instance_mapping()


def categories_json() -> list[dict]:
    pal = palette()
    return [{"name": c.name, "id": c.id, "isthing": int(c.isthing), "color": list(pal[c.id])}
            for c in builtin_vocab("ade20k_150")]


# ----------------------------------------------------------------------------------------------
# semantic


def _sem_one(item) -> None:
    src, dst = item
    ann = read_image(src, field="annotation PNG")
    if ann.ndim != 2 or ann.dtype != np.uint8:
        raise DatasetError(f"expected a single-channel uint8 PNG, got shape {ann.shape} {ann.dtype}",
                           path=src, field="annotation PNG")
    save_image_atomic(ann - np.uint8(1), dst, "PNG")  # uint8 wrap: 0 -> 255


def convert_semantic(ann_dir: str | Path, out_dir: str | Path, workers: int = 1) -> dict:
    """``annotations/<split>/*.png`` − 1 (uint8 wrap) → ``out_dir``; existing outputs are kept."""
    ann_dir, out_dir = Path(ann_dir), Path(out_dir)
    require_dir(ann_dir, "ADE20K annotations", HINT)
    files = list_files(ann_dir, ".png")
    if not files:
        raise DatasetError("no annotation PNGs (empty split)", path=ann_dir, field="*.png")
    items = [(str(p), str(out_dir / p.name)) for p in files if not (out_dir / p.name).exists()]
    parallel_map(_sem_one, items, workers, desc=out_dir.name)
    return {"images": len(files), "written": len(items)}


# ----------------------------------------------------------------------------------------------
# panoptic


def _pan_one(item, mapping: dict[int, int], seed: int) -> list:
    stem, img_path, sem_path, ins_path, out_png = item
    vocab_thing = _thing_flags()
    pal = palette()
    width, height = image_size(img_path, field="image")
    sem_raw = read_image(sem_path, field="annotation PNG")
    if sem_raw.ndim != 2 or sem_raw.dtype != np.uint8:
        raise DatasetError(f"expected a single-channel uint8 PNG, got shape {sem_raw.shape} "
                           f"{sem_raw.dtype}", path=sem_path, field="annotation PNG")
    ins = read_rgb(ins_path, field="instance PNG")
    if sem_raw.shape != (height, width):
        raise DatasetError(f"size {sem_raw.shape[::-1]} differs from the image's {(width, height)}",
                           path=sem_path, field="size")
    if ins.shape[:2] != (height, width):
        raise DatasetError(f"size {ins.shape[1::-1]} differs from the image's {(width, height)}",
                           path=ins_path, field="size")
    sem = sem_raw - np.uint8(1)
    ins_cls = ins[..., 0] - np.uint8(1)
    ins_id = ins[..., 1]

    pan = np.zeros((height, width), dtype=np.uint32)
    taken = {(0, 0, 0)} | {pal[c] for c in range(NUM_CLASSES) if not vocab_thing[c]}
    segments = []

    def add(sid: int, cat: int, mask: np.ndarray) -> None:
        """Paint ``mask`` and list it with the area and box of ``mask`` itself (the reference's rule)."""
        pan[mask] = sid
        segments.append({"id": int(sid), "category_id": int(cat), "area": int(mask.sum()), "bbox": bbox_of(mask),
                         "iscrowd": 0})

    for c in np.unique(sem):  # stuff first: whole semantic-map regions
        c = int(c)
        if c == IGNORE:
            continue
        if c >= NUM_CLASSES:
            raise DatasetError(f"unknown category {c + 1} (expected 0..{NUM_CLASSES})", path=sem_path,
                               field="pixel values")
        if vocab_thing[c]:
            continue
        r, g, b = pal[c]
        add(r + 256 * g + 65536 * b, c, sem == c)

    rng = None
    for g_id in np.unique(ins_id):  # then things, painted over stuff
        if g_id == 0:
            continue
        mask = ins_id == g_id
        classes = np.unique(ins_cls[mask])
        if len(classes) != 1:
            raise DatasetError(f"instance {int(g_id)} has several instance classes "
                               f"{[int(k) + 1 for k in classes]}", path=ins_path,
                               field=f"G={int(g_id)} (R channel)")
        k = int(classes[0])
        if k not in mapping:
            raise DatasetError(f"unknown instance class: R value {(k + 1) % 256} (expected "
                               f"1..{NUM_INSTANCE_CLASSES})", path=ins_path,
                               field=f"G={int(g_id)} (R channel)")
        cat = mapping[k]
        color = pal[cat]
        if color in taken:
            if rng is None:
                rng = np.random.default_rng([seed, zlib.crc32(stem.encode("utf-8"))])
            base = np.array(color, dtype=np.int64)
            while color in taken:
                jitter = rng.integers(-JITTER, JITTER + 1, size=3)
                color = tuple(int(v) for v in np.clip(base + jitter, 0, 255))
        taken.add(color)
        add(color[0] + 256 * color[1] + 65536 * color[2], cat, mask)

    rgb = np.stack([pan & 255, (pan >> 8) & 255, (pan >> 16) & 255], axis=-1).astype(np.uint8)
    save_image_atomic(rgb, out_png, "PNG")
    image = {"id": stem, "file_name": Path(img_path).name, "width": int(width), "height": int(height)}
    ann = {"image_id": stem, "file_name": stem + ".png", "segments_info": segments}
    return [image, ann]


def convert_panoptic(image_dir: str | Path, semantic_dir: str | Path, instance_dir: str | Path,
                     out_png_dir: str | Path, out_json: str | Path, *, mapping: dict[int, int] | None = None,
                     seed: int = ADE_PANOPTIC_SEED, workers: int = 1,
                     journal: str | Path | None = None) -> dict:
    """Build the ADE20K-150 panoptic PNGs and JSON of one split (see the module docstring).

    ``journal`` (a JSON-lines file) records finished images so that an interrupted run resumes; it is
    deleted once ``out_json`` is written. Without it, every image is (re)computed.
    """
    image_dir, semantic_dir, instance_dir = Path(image_dir), Path(semantic_dir), Path(instance_dir)
    out_png_dir, out_json = Path(out_png_dir), Path(out_json)
    require_dir(image_dir, "ADE20K images", HINT)
    require_dir(semantic_dir, "ADE20K annotations", HINT)
    require_dir(instance_dir, "ADE20K instance annotations (annotations_instance.tar)", HINT)
    mapping = default_instance_mapping() if mapping is None else mapping
    images = list_files(image_dir, ".jpg")
    if not images:
        raise DatasetError("no images (empty split)", path=image_dir, field="*.jpg")
    stems = [p.stem for p in images]

    if out_json.is_file():  # a finished earlier run: keep it if it covers every image
        done = read_json(out_json, "ADE panoptic JSON")
        have = [a.get("image_id") for a in done.get("annotations", [])]
        if have == stems and all((out_png_dir / f"{s}.png").is_file() for s in stems):
            return {"images": len(stems), "written": 0}

    jr = Journal(journal) if journal is not None else None
    results: dict[str, list] = {}
    items = []
    for p in images:
        out_png = out_png_dir / f"{p.stem}.png"
        if jr is not None and p.stem in jr.done and out_png.is_file():
            results[p.stem] = jr.done[p.stem]
            continue
        items.append((p.stem, str(p), str(semantic_dir / f"{p.stem}.png"),
                      str(instance_dir / f"{p.stem}.png"), str(out_png)))

    def record(item, res):
        results[item[0]] = res
        if jr is not None:
            jr.add(item[0], res)

    try:
        parallel_map(functools.partial(_pan_one, mapping=mapping, seed=seed), items, workers,
                     desc=out_png_dir.name, on_result=record)
    finally:
        if jr is not None:
            jr.close()
    data = {
        "images": [results[s][0] for s in stems],
        "annotations": [results[s][1] for s in stems],
        "categories": categories_json(),
    }
    write_json_atomic(out_json, data)
    if jr is not None:
        jr.remove()
    return {"images": len(stems), "written": len(items)}


def prepare(ctx: Context) -> None:
    ensure_archives(ctx, "ade20k_150")
    ade = require_dir(Path(ctx.root) / "ADEChallengeData2016", "ADE20K-150 root", HINT)
    mapping = find_instance_mapping(ade)
    for name, split in SPLITS:
        r = convert_semantic(ade / "annotations" / split, ade / "annotations_detectron2" / split, ctx.workers)
        log.info("ade20k_150 semantic %s: %d maps (%d new)", split, r["images"], r["written"])
    for name, split in SPLITS:
        r = convert_panoptic(ade / "images" / split, ade / "annotations" / split,
                             ade / "annotations_instance" / split, ade / f"ade20k_panoptic_{name}",
                             ade / f"ade20k_panoptic_{name}.json", mapping=mapping, workers=ctx.workers,
                             journal=work_dir(ctx.root) / f"ade20k_panoptic_{name}.jsonl")
        log.info("ade20k_150 panoptic %s: %d images (%d new)", name, r["images"], r["written"])
    checks.check_count(ctx, "ade20k_150", ade / "images" / "validation", ".jpg", key="images/validation")
    checks.check_count(ctx, "ade20k_150", ade / "annotations_detectron2" / "validation", ".png",
                       key="annotations_detectron2/validation")
    checks.check_count(ctx, "ade20k_150", ade / "ade20k_panoptic_val", ".png", key="ade20k_panoptic_val")
    n = checks.check_panoptic_ids(ade / "ade20k_panoptic_val.json", ade / "ade20k_panoptic_val", ctx.workers,
                                  empty_stuff=True)
    checks.check_number(ctx, "ade20k_150", n, ade / "ade20k_panoptic_val.json",
                        key="ade20k_panoptic_val.json annotations")
    checks.check_semseg_values(ade / "annotations_detectron2" / "validation", NUM_CLASSES, IGNORE,
                               workers=ctx.workers)
    write_stamp(ctx, "ade20k_150")
