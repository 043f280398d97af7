"""Builders of tiny COCO-panoptic and semantic fixtures for the evaluation tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

THING, STUFF = 1, 0


def rgb_png(path: Path, ids: np.ndarray) -> None:
    ids = np.asarray(ids, dtype=np.int64)
    rgb = np.stack([ids % 256, (ids // 256) % 256, ids // 65536], axis=-1).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb, mode="RGB").save(path)


def seg(sid, cat, ids=None, *, area=None, iscrowd=0):
    """A segments_info record; ``area`` defaults to the pixel count of ``sid`` in ``ids``."""
    if area is None and ids is not None:
        area = int(np.sum(np.asarray(ids) == sid))
    out = {"id": sid, "category_id": cat, "iscrowd": iscrowd}
    if area is not None:
        out["area"] = area
        out["bbox"] = [0, 0, 1, 1]
    return out


def write_set(root: Path, name: str, images: list[dict],
              categories: list[dict] | None = None) -> tuple[Path, Path]:
    """images: [{"image_id", "ids": H×W, "segments": [...], "file_name"?}] -> (json path, png dir)."""
    png_dir = root / name
    anns = []
    for im in images:
        fn = im.get("file_name", f"{im['image_id']}.png")
        rgb_png(png_dir / fn, im["ids"])
        anns.append({"image_id": im["image_id"], "file_name": fn, "segments_info": im["segments"]})
    obj = {"annotations": anns}
    if categories is not None:
        obj["categories"] = categories
        obj["images"] = [{"id": im["image_id"], "file_name": im.get("file_name", f"{im['image_id']}.png"),
                          "height": int(np.shape(im["ids"])[0]), "width": int(np.shape(im["ids"])[1])}
                         for im in images]
    jp = root / f"{name}.json"
    jp.write_text(json.dumps(obj))
    return jp, png_dir


def cats(*specs):
    """cats((0, 'wall', 0), (1, 'person', 1)) -> categories list."""
    return [{"id": i, "name": n, "isthing": t} for i, n, t in specs]


# --------------------------------------------------------------------------------------------------
# random fixtures (for cross-checks against the reference implementations)


def _paint(rng, h, w, n_rects, lo=2, hi=None):
    lab = np.zeros((h, w), dtype=np.int64)
    hi = hi or max(h, w) // 2
    for k in range(1, n_rects + 1):
        rh, rw = rng.integers(lo, hi + 1, size=2)
        y, x = rng.integers(0, h - 1), rng.integers(0, w - 1)
        lab[y:y + rh, x:x + rw] = k
    return lab


def random_panoptic(rng, n_images: int, categories: list[dict], *, h=24, w=32, string_ids=False,
                    crowd_p=0.2, void_p=0.15, area_jitter_p=0.1, empty_stuff_p=0.0):
    """Random (gt_images, pred_images) with crowd, VOID, shifted/merged/relabelled predictions.

    ``empty_stuff_p``: probability that an image's GT also lists a stuff segment with no pixel (as
    Mask2Former's ADE20K-150 GT does for stuff that things cover entirely).
    """
    cat_ids = [c["id"] for c in categories]
    gts, preds = [], []
    for i in range(n_images):
        image_id = f"img_{i:04d}" if string_ids else int(rng.integers(1, 10**6)) * 10 + i
        regions = _paint(rng, h, w, int(rng.integers(3, 12)))
        uniq = np.unique(regions)
        # GT ids: random 24-bit ids; some regions VOID
        gt_ids = np.zeros((h, w), dtype=np.int64)
        segments = []
        used = set()
        region_cat = {}
        for r in uniq:
            if rng.random() < void_p:
                continue
            sid = int(rng.integers(1, 256**3))
            while sid in used:
                sid = int(rng.integers(1, 256**3))
            used.add(sid)
            gt_ids[regions == r] = sid
            cat = cat_ids[int(rng.integers(len(cat_ids)))]
            region_cat[int(r)] = cat
            crowd = int(rng.random() < crowd_p)
            area = int(np.sum(regions == r))
            if rng.random() < area_jitter_p:
                area += int(rng.integers(0, 4))
            segments.append(seg(sid, cat, area=area, iscrowd=crowd))
        stuff_ids = [c["id"] for c in categories if not c["isthing"]]
        if empty_stuff_p and stuff_ids and rng.random() < empty_stuff_p:
            sid = int(rng.integers(1, 256**3))
            while sid in used:
                sid = int(rng.integers(1, 256**3))
            used.add(sid)
            cat = stuff_ids[int(rng.integers(len(stuff_ids)))]
            segments.insert(int(rng.integers(len(segments) + 1)),
                            seg(sid, cat, area=int(rng.integers(1, 40))))
        gts.append({"image_id": image_id, "ids": gt_ids, "segments": segments,
                    "file_name": f"{image_id}.png"})

        # prediction: shifted copy of the regions, plus new rectangles, some void, relabelled categories
        p = np.roll(regions, shift=(int(rng.integers(-2, 3)), int(rng.integers(-2, 3))), axis=(0, 1))
        extra = _paint(rng, h, w, int(rng.integers(0, 5)), lo=2, hi=max(h, w) // 3)
        p = np.where(extra > 0, extra + 1000, p)
        if rng.random() < 0.5:  # merge two regions
            a, b = rng.choice(np.unique(p), size=2) if len(np.unique(p)) > 1 else (0, 0)
            p[p == b] = a
        pred_ids = np.zeros((h, w), dtype=np.int64)
        psegs = []
        pused = set()
        for r in np.unique(p):
            if rng.random() < 0.1:  # predicted void
                continue
            sid = int(rng.integers(1, 256**3))
            while sid in pused:
                sid = int(rng.integers(1, 256**3))
            pused.add(sid)
            pred_ids[p == r] = sid
            cat = region_cat.get(int(r))
            if cat is None or rng.random() < 0.2:
                cat = cat_ids[int(rng.integers(len(cat_ids)))]
            psegs.append({"id": sid, "category_id": cat})
        preds.append({"image_id": image_id, "ids": pred_ids, "segments": psegs,
                      "file_name": f"{image_id}.png"})
    return gts, preds


# --------------------------------------------------------------------------------------------------
# scoring through either path


def score(tmp_path: Path, gt_images: list[dict], pred_images: list[dict], categories: list[dict],
          via: str = "stream", **kw) -> dict:
    """PQ of the given images, streamed through PanopticAccumulator or via PNG/JSON files."""
    from smart.eval.panoptic import PanopticAccumulator, evaluate_panoptic_files

    if via == "stream":
        acc = PanopticAccumulator(categories, **kw)
        preds = {p["image_id"]: p for p in pred_images}
        for g in gt_images:
            p = preds[g["image_id"]]
            acc.add(g["image_id"], g["ids"], g["segments"], p["ids"], p["segments"])
        return acc.summary()
    assert via == "files"
    gj, gd = write_set(tmp_path, "gt", gt_images, categories)
    pj, pd = write_set(tmp_path, "pred", pred_images)
    return evaluate_panoptic_files(gj, pj, gd, pd, show_progress=False, **kw)


def img(image_id, ids, segments):
    return {"image_id": image_id, "ids": np.asarray(ids, dtype=np.int64), "segments": segments}
