"""Panoptic Quality exactly as cocodataset/panopticapi ``pq_compute`` (commit 7bb4655) defines it.

The rules (``docs/evaluation.md`` §1), all implemented here and tested in ``tests/eval``:

* segment id = R + 256·G + 256²·B; **segment id 0 is VOID** (category id 0 is a real category);
* scored categories come from the **GT** JSON; a prediction's ``area`` is its pixel count, a GT
  segment's ``area`` is the JSON field;
* a (GT, prediction) pair of the same category, GT not crowd, matches iff
  IoU = |g∩p| / (|p| + area_g − |g∩p| − |p∩VOID|) **> 0.5** (strictly);
* unmatched non-crowd GT segments are FN; crowd GT segments are never FN, and only the **last** crowd
  segment of each category (``segments_info`` order) is kept for the next rule;
* an unmatched prediction is ignored if (|p∩VOID| + |p∩crowd of its category|) / |p| > 0.5, else FP
  of its own category;
* PQ_c = Σiou / (tp + ½fp + ½fn), SQ_c = Σiou / tp (0 if tp = 0), RQ_c = tp / (tp + ½fp + ½fn);
  the split means (All / Things / Stuff) are unweighted over categories with tp + fp + fn > 0;
* IoUs are summed per category in image order, then in ``(gt id, pred id)`` order within an image,
  which is panopticapi's single-process order: results are bit-identical to it run on one core.

One deliberate departure: a split with no counted category (panopticapi raises ZeroDivisionError,
hotcoco returns −1) gets ``pq = sq = rq = NaN`` (``null`` in JSON) and ``n = 0``, with a warning.

Input checking. With ``strict=True`` (the default) every inconsistency is an :class:`InputError`
naming the file, the image and the segment: GT images without prediction, predictions for images not
in the GT, duplicate image or segment ids, segment id 0 listed in ``segments_info``, segments listed
in the JSON but absent from the PNG or the reverse (GT and prediction), unknown category ids (GT and
prediction), missing ``area``/``iscrowd`` on GT segments, and id maps of different sizes. One
exception, ``empty_gt_stuff=True``: a GT segment of a stuff category, not crowd, may be listed in
the JSON with no pixel in the PNG. Mask2Former's ADE20K-150 panoptic ground truth has such segments
(a stuff region that things cover entirely keeps its JSON entry and area); panopticapi counts them as
false negatives, and so does this module. With
``strict=False`` only what panopticapi itself rejects is an error, and the GT-side inconsistencies it
tolerates are logged as warnings and handled as panopticapi handles them (e.g. last record wins for
a repeated segment id, a GT PNG id absent from the JSON is neither VOID nor a segment).
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from smart.errors import InputError
from smart.eval.io import OFFSET, VOID, load_json, read_panoptic_png
from smart.io import empty_gt_segment_allowed

log = logging.getLogger(__name__)

IMPLEMENTATION = "smart.eval.panoptic"
REFERENCE = "cocodataset/panopticapi pq_compute (commit 7bb4655)"

DEFINITIONS = {
    "metric": "Panoptic Quality (PQ = SQ * RQ per category), fractions in [0, 1] as panopticapi returns",
    "implementation": f"{IMPLEMENTATION}: re-implementation of {REFERENCE}, bit-identical to its "
                      "single-process result; cross-checked against hotcoco 1.3.0 and panopticapi-lite 0.2.0",
    "matching": "same category, GT not crowd, IoU > 0.5 (strict); "
                "union = |pred| + GT JSON area - intersection - |pred on GT VOID|",
    "void": "segment id 0 (not category id 0) in the GT PNG",
    "false_positive": "unmatched prediction, unless (|pred on VOID| + |pred on the last crowd segment "
                      "of its category|) / |pred| > 0.5, then ignored",
    "false_negative": "unmatched non-crowd GT segment",
    "averaging": "unweighted mean over categories of the GT JSON with tp + fp + fn > 0; "
                 "SQ_c = 0 when tp = 0; per_class for All",
    "empty_split": "n = 0 -> pq, sq, rq = null (panopticapi raises ZeroDivisionError, hotcoco gives -1)",
    "categories": "from the GT JSON; prediction JSON categories are ignored",
}


# --------------------------------------------------------------------------------------------------
# per-image evaluation


@dataclass
class ImageStats:
    """What one image contributes: per-category [tp, fp, fn] and the matched IoUs in reference order."""

    image_id: Any
    counts: dict = field(default_factory=dict)  # category_id -> [tp, fp, fn]
    ious: list = field(default_factory=list)  # [(category_id, iou), ...]
    warnings: list = field(default_factory=list)


@dataclass
class _Seg:
    category_id: Any
    iscrowd: Any = 0
    area: Any = None


def _where(image_id: Any, seg: Any = None) -> str:
    return f"image {image_id!r}" + (f" segment {seg}" if seg is not None else "")


def _as_id_map(ids: Any, image_id: Any, which: str, path: Any) -> np.ndarray:
    """An H×W integer id map of any integer dtype, ids checked to lie in [0, 256³) (H×W×3/4 uint8 RGB
    encodings are decoded first)."""
    arr = np.asarray(ids)
    if arr.ndim == 3 and arr.shape[2] in (3, 4) and arr.dtype == np.uint8:
        from smart.eval.io import rgb2id

        arr = rgb2id(arr)
    if arr.ndim != 2:
        raise InputError(f"{which} id map must be H×W, got shape {arr.shape}", path=path,
                         field=_where(image_id))
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "b":
            arr = arr.astype(np.int64)
        else:
            raise InputError(f"{which} id map must hold integers, got dtype {arr.dtype}", path=path,
                             field=_where(image_id))
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= OFFSET:
            raise InputError(f"{which} segment ids must lie in [0, 256^3), got [{lo}, {hi}]", path=path,
                             field=_where(image_id))
    return arr


def _is_int(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, (int, np.integer)):
        return True
    return isinstance(v, float) and v.is_integer()


def _index_segments(segments: Any, *, image_id: Any, which: str, path: Any, categories: Mapping,
                    strict: bool, warnings: list) -> dict:
    """segments_info -> {id: _Seg} with dict semantics (a repeated id keeps the last record)."""
    if not isinstance(segments, (list, tuple)):
        raise InputError(f"{which} segments_info must be a list, got {type(segments).__name__}", path=path,
                         field=_where(image_id))
    is_gt = which == "GT"
    out: dict = {}
    for k, s in enumerate(segments):
        if not isinstance(s, Mapping) or "id" not in s:
            raise InputError(f"{which} segments_info[{k}] has no 'id'", path=path, field=_where(image_id))
        sid = s["id"]
        if not _is_int(sid):
            raise InputError(f"{which} segment id must be an integer, got {sid!r}", path=path,
                             field=_where(image_id, repr(sid)))
        sid = int(sid)
        if "category_id" not in s:
            raise InputError(f"{which} segment has no 'category_id'", path=path, field=_where(image_id, sid))
        cat = s["category_id"]
        if sid in out:
            msg = f"duplicate {which} segment id {sid} in segments_info"
            if strict:
                raise InputError(msg, path=path, field=_where(image_id, sid))
            warnings.append(f"{_where(image_id, sid)}: {msg} (the last record is used, as panopticapi)")
        if sid == VOID and strict:
            raise InputError(f"{which} segments_info lists segment id 0, which is reserved for VOID",
                             path=path, field=_where(image_id, sid))
        if is_gt:
            if "iscrowd" not in s:
                raise InputError("GT segment has no 'iscrowd'", path=path, field=_where(image_id, sid))
            if "area" not in s:
                raise InputError("GT segment has no 'area'", path=path, field=_where(image_id, sid))
            area = s["area"]
            if isinstance(area, bool) or not isinstance(area, (int, float, np.integer, np.floating)) \
                    or not math.isfinite(area) or area <= 0:
                raise InputError(f"GT segment 'area' must be a positive number, got {area!r}", path=path,
                                 field=_where(image_id, sid))
            if cat not in categories:
                msg = f"GT segment has category_id {cat!r}, which is not in the GT categories"
                if strict:
                    raise InputError(msg, path=path, field=_where(image_id, sid))
                warnings.append(f"{_where(image_id, sid)}: {msg} (not scored, as panopticapi)")
            out[sid] = _Seg(cat, s["iscrowd"], area)
        else:
            out[sid] = _Seg(cat)
    return out


def _pair_counts(gt: np.ndarray, pred: np.ndarray) -> tuple[list, list, list]:
    """Sorted unique (gt id, pred id) pairs with their pixel counts: np.unique of gt·256³ + pred.

    Panoptic maps are piecewise constant, so the pixels are first cut into runs along rows where
    neither id changes, and only the runs' keys are built and sorted (an order of magnitude faster than
    sorting every pixel); noise-like maps fall back to a full sort.
    """
    g, p = gt.reshape(-1), pred.reshape(-1)
    n = g.size
    if n == 0:
        return [], [], []
    change = np.empty(n, dtype=bool)  # (H·W,) True where a new (gt, pred) run starts
    change[0] = True
    np.not_equal(g[1:], g[:-1], out=change[1:])
    change[1:] |= p[1:] != p[:-1]
    starts = np.flatnonzero(change)
    if starts.size <= n // 4:
        run_len = np.diff(np.append(starts, n))
        key = g[starts].astype(np.int64) * OFFSET + p[starts].astype(np.int64)  # (runs,)
        keys, inv = np.unique(key, return_inverse=True)
        counts = np.bincount(inv.ravel(), weights=run_len, minlength=keys.size).astype(np.int64)
    else:
        s = np.sort(g.astype(np.int64) * OFFSET + p.astype(np.int64))
        starts = np.flatnonzero(np.concatenate(([True], s[1:] != s[:-1])))
        counts = np.diff(np.append(starts, s.size))
        keys = s[starts]
    return (keys // OFFSET).tolist(), (keys % OFFSET).tolist(), counts.tolist()


def evaluate_image(image_id: Any, gt_ids: Any, gt_segments_info: Sequence[Mapping], pred_ids: Any,
                   pred_segments_info: Sequence[Mapping], categories: Mapping, *, strict: bool = True,
                   empty_gt_stuff: bool = False, gt_path: Any = None, pred_path: Any = None) -> ImageStats:
    """Evaluate one image. ``categories`` maps category id -> category dict (from the GT JSON).

    ``gt_ids`` / ``pred_ids`` are H×W integer segment-id maps (or H×W×3 uint8 RGB-encoded arrays).
    ``empty_gt_stuff``: non-crowd GT stuff segments may have no pixel (see the module docstring).
    """
    stats = ImageStats(image_id)
    warnings = stats.warnings
    gt = _as_id_map(gt_ids, image_id, "GT", gt_path)
    pred = _as_id_map(pred_ids, image_id, "prediction", pred_path)
    if gt.shape != pred.shape:
        raise InputError(f"prediction is {pred.shape[1]}x{pred.shape[0]} (WxH) but the GT is "
                         f"{gt.shape[1]}x{gt.shape[0]}", path=pred_path, field=_where(image_id))
    gt_segms = _index_segments(gt_segments_info, image_id=image_id, which="GT", path=gt_path,
                               categories=categories, strict=strict, warnings=warnings)
    pred_segms = _index_segments(pred_segments_info, image_id=image_id, which="prediction", path=pred_path,
                                 categories=categories, strict=strict, warnings=warnings)

    pair_gt, pair_pred, pair_n = _pair_counts(gt, pred)

    # pixel counts per id, from the pairs
    pred_area: dict = defaultdict(int)
    gt_area_png: dict = defaultdict(int)
    void_of: dict = {}  # pred id -> pixels on GT VOID
    for g, p, n in zip(pair_gt, pair_pred, pair_n):
        pred_area[p] += n
        gt_area_png[g] += n
        if g == VOID:
            void_of[p] = n

    # prediction sanity checks, in panopticapi's order (ascending PNG ids, then JSON-only ids)
    for p in sorted(pred_area):
        if p not in pred_segms:
            if p == VOID:
                continue
            raise InputError(f"segment {p} is in the prediction PNG but not in its segments_info",
                             path=pred_path, field=_where(image_id, p))
        cat = pred_segms[p].category_id
        if cat not in categories:
            raise InputError(f"predicted segment has unknown category_id {cat!r} (not in the GT categories)",
                             path=pred_path, field=_where(image_id, p))
        pred_segms[p].area = pred_area[p]
    json_only = [p for p in pred_segms if p not in pred_area]
    if json_only:
        raise InputError(f"prediction segments {json_only[:10]} are in segments_info but not in the PNG",
                         path=pred_path, field=_where(image_id, json_only[0]))

    # GT consistency (panopticapi does not check it; strict mode does)
    png_only = [g for g in gt_area_png if g != VOID and g not in gt_segms]
    gt_json_only = [g for g in gt_segms if g not in gt_area_png]
    if empty_gt_stuff:  # stuff covered entirely by things, as Mask2Former's ADE20K-150 GT lists it
        gt_json_only = [g for g in gt_json_only if not empty_gt_segment_allowed(
            categories.get(gt_segms[g].category_id, {}).get("isthing", 1) == 1, gt_segms[g].iscrowd == 1)]
    for ids, what, hint in ((png_only, "in the GT PNG but not in its segments_info", ""),
                            (gt_json_only, "in the GT segments_info but not in the PNG",
                             "" if empty_gt_stuff else
                             " (Mask2Former's ADE20K-150 GT lists stuff that things cover entirely: "
                             "evaluate such GT with --empty-gt-stuff)")):
        if ids:
            msg = f"GT segments {ids[:10]} are {what}"
            if strict:
                raise InputError(msg + hint, path=gt_path, field=_where(image_id, ids[0]))
            warnings.append(f"{_where(image_id, ids[0])}: {msg}")

    counts = stats.counts

    def bump(cat, k):
        c = counts.get(cat)
        if c is None:
            c = counts[cat] = [0, 0, 0]
        c[k] += 1

    # matching
    gt_matched: set = set()
    pred_matched: set = set()
    for g, p, inter in zip(pair_gt, pair_pred, pair_n):
        gs = gt_segms.get(g)
        if gs is None:
            continue
        ps = pred_segms.get(p)
        if ps is None:
            continue
        if gs.iscrowd == 1:
            continue
        if gs.category_id != ps.category_id:
            continue
        union = ps.area + gs.area - inter - void_of.get(p, 0)
        if union <= 0:  # only possible with a GT 'area' smaller than the PNG says
            raise InputError(f"GT 'area' {gs.area} is inconsistent with the PNG (union {union})",
                             path=gt_path, field=_where(image_id, g))
        iou = inter / union
        if iou > 0.5:
            bump(gs.category_id, 0)
            stats.ious.append((gs.category_id, iou))
            gt_matched.add(g)
            pred_matched.add(p)

    # false negatives; the last crowd segment of each category is remembered
    crowd_of: dict = {}
    for g, gs in gt_segms.items():
        if g in gt_matched:
            continue
        if gs.iscrowd == 1:
            crowd_of[gs.category_id] = g
            continue
        bump(gs.category_id, 2)

    # false positives, unless mostly on VOID / same-category crowd
    pair_map = None
    for p, ps in pred_segms.items():
        if p in pred_matched:
            continue
        ignored = void_of.get(p, 0)
        if ps.category_id in crowd_of:
            if pair_map is None:
                pair_map = {(g, q): n for g, q, n in zip(pair_gt, pair_pred, pair_n)}
            ignored += pair_map.get((crowd_of[ps.category_id], p), 0)
        if ignored / ps.area > 0.5:
            continue
        bump(ps.category_id, 1)
    return stats


# --------------------------------------------------------------------------------------------------
# accumulation and averaging


def index_categories(categories: Any, *, path: Any = None, strict: bool = True) -> dict:
    """GT ``categories`` list -> {id: category dict} (insertion order = averaging order)."""
    if not isinstance(categories, (list, tuple)) or not categories:
        raise InputError("'categories' must be a non-empty list", path=path, field="categories")
    out: dict = {}
    for k, c in enumerate(categories):
        if not isinstance(c, Mapping) or "id" not in c:
            raise InputError(f"categories[{k}] has no 'id'", path=path, field=f"categories[{k}]")
        if "isthing" not in c:
            raise InputError(f"category {c['id']!r} has no 'isthing'", path=path, field=f"categories[{k}]")
        if c["id"] in out:
            if strict:
                raise InputError(f"duplicate category id {c['id']!r}", path=path, field=f"categories[{k}]")
            log.warning("duplicate category id %r in %s: the last record is used", c["id"], path)
        out[c["id"]] = c
    return out


class PanopticAccumulator:
    """Streaming PQ: feed images one by one, read the panopticapi-shaped result at the end.

    Args:
        categories: the GT JSON's ``categories`` list (``id``, ``isthing``, optional ``name``) or an
            already indexed ``{id: category}`` dict.
        strict: see the module docstring.
        empty_gt_stuff: accept non-crowd GT stuff segments with no pixel (see the module docstring).
    """

    def __init__(self, categories: Sequence[Mapping] | Mapping, *, strict: bool = True,
                 empty_gt_stuff: bool = False, source: Any = None):
        if isinstance(categories, Mapping):
            self.categories = dict(categories)
        else:
            self.categories = index_categories(categories, path=source, strict=strict)
        self.strict = strict
        self.empty_gt_stuff = empty_gt_stuff
        self.iou: dict = defaultdict(float)
        self.tp: dict = defaultdict(int)
        self.fp: dict = defaultdict(int)
        self.fn: dict = defaultdict(int)
        self.num_images = 0
        self.num_warnings = 0
        self._image_ids: set = set()

    def add(self, image_id: Any, gt_seg_ids: Any, gt_segments_info: Sequence[Mapping], pred_seg_ids: Any,
            pred_segments_info: Sequence[Mapping], *, gt_path: Any = None,
            pred_path: Any = None) -> ImageStats:
        """Evaluate one image (H×W id maps + ``segments_info`` lists, category ids of the GT JSON)."""
        stats = evaluate_image(image_id, gt_seg_ids, gt_segments_info, pred_seg_ids, pred_segments_info,
                               self.categories, strict=self.strict, empty_gt_stuff=self.empty_gt_stuff,
                               gt_path=gt_path, pred_path=pred_path)
        self.add_stats(stats)
        return stats

    def add_stats(self, stats: ImageStats) -> None:
        if stats.image_id in self._image_ids:
            msg = "image evaluated twice (duplicate image id)"
            if self.strict:
                raise InputError(msg, field=_where(stats.image_id))
            log.warning("%s: %s", _where(stats.image_id), msg)
        self._image_ids.add(stats.image_id)
        for w in stats.warnings:
            log.warning("%s", w)
        self.num_warnings += len(stats.warnings)
        for cat, iou in stats.ious:  # sequential: panopticapi's single-core summation order
            self.iou[cat] += iou
        for cat, (tp, fp, fn) in stats.counts.items():
            self.tp[cat] += tp
            self.fp[cat] += fp
            self.fn[cat] += fn
        self.num_images += 1

    def _average(self, isthing: bool | None, categories: Mapping) -> tuple[dict, dict]:
        pq = sq = rq = 0.0
        n = 0
        per_class: dict = {}
        for cat, info in categories.items():
            if isthing is not None and (info["isthing"] == 1) != isthing:
                continue
            iou = self.iou.get(cat, 0.0)
            tp, fp, fn = self.tp.get(cat, 0), self.fp.get(cat, 0), self.fn.get(cat, 0)
            entry = {"pq": 0.0, "sq": 0.0, "rq": 0.0, "tp": tp, "fp": fp, "fn": fn, "iou_sum": float(iou),
                     "counted": False, "isthing": int(info["isthing"] == 1)}
            if "name" in info:
                entry["name"] = info["name"]
            per_class[cat] = entry
            if tp + fp + fn == 0:
                continue
            n += 1
            pq_c = iou / (tp + 0.5 * fp + 0.5 * fn)
            sq_c = iou / tp if tp != 0 else 0.0
            rq_c = tp / (tp + 0.5 * fp + 0.5 * fn)
            entry.update(pq=float(pq_c), sq=float(sq_c), rq=float(rq_c), counted=True)
            pq += pq_c
            sq += sq_c
            rq += rq_c
        if n == 0:
            return {"pq": math.nan, "sq": math.nan, "rq": math.nan, "n": 0}, per_class
        return {"pq": float(pq / n), "sq": float(sq / n), "rq": float(rq / n), "n": n}, per_class

    def summary(self, categories: Sequence[Mapping] | Mapping | None = None) -> dict:
        """``{"All", "Things", "Stuff": {pq, sq, rq, n}, "per_class": {cat_id: {...}}, ...}`` (fractions).

        ``categories`` (default: those given to the constructor) sets the averaged categories and their
        order, as ``pq_average`` does.
        """
        if categories is None:
            cats = self.categories
        elif isinstance(categories, Mapping):
            cats = dict(categories)
        else:
            cats = index_categories(categories, strict=self.strict)
        out: dict = {}
        for name, isthing in (("All", None), ("Things", True), ("Stuff", False)):
            res, per_class = self._average(isthing, cats)
            if res["n"] == 0:
                log.warning("PQ split %s has no counted category: pq/sq/rq reported as null", name)
            out[name] = res
            if isthing is None:
                out["per_class"] = per_class
        out["num_images"] = self.num_images
        out["definitions"] = dict(DEFINITIONS, strict_input_checks=self.strict,
                                  implementation_version=_version())
        return out


# --------------------------------------------------------------------------------------------------
# file-based evaluation (COCO panoptic JSON + PNG folders)


def _default_folder(json_path: Path) -> Path:
    return json_path.with_suffix("") if json_path.suffix == ".json" else Path(str(json_path) + "_png")


def _annotations(obj: Any, path: Path, which: str) -> list:
    if isinstance(obj, list):
        anns = obj
    elif isinstance(obj, Mapping) and "annotations" in obj:
        anns = obj["annotations"]
    else:
        raise InputError(f"{which} JSON has no 'annotations'", path=path, field="annotations")
    if not isinstance(anns, list):
        raise InputError(f"{which} 'annotations' must be a list", path=path, field="annotations")
    for k, a in enumerate(anns):
        if not isinstance(a, Mapping):
            raise InputError(f"annotations[{k}] is not an object", path=path, field=f"annotations[{k}]")
        for key in ("image_id", "file_name", "segments_info"):
            if key not in a:
                iid = a.get("image_id", f"annotations[{k}]")
                raise InputError(f"{which} annotation has no {key!r}", path=path, field=_where(iid))
    return anns


def _pair_annotations(gt_anns: list, pred_anns: list, gt_json: Path, pred_json: Path, strict: bool) -> list:
    pred_by_id: dict = {}
    for a in pred_anns:
        iid = a["image_id"]
        if iid in pred_by_id:
            if strict:
                raise InputError("duplicate image_id in the prediction annotations", path=pred_json,
                                 field=_where(iid))
            log.warning("%s: duplicate image_id in %s: the last annotation is used", _where(iid), pred_json)
        pred_by_id[iid] = a
    pairs = []
    seen: set = set()
    for a in gt_anns:
        iid = a["image_id"]
        if iid in seen:
            if strict:
                raise InputError("duplicate image_id in the GT annotations", path=gt_json, field=_where(iid))
            log.warning("%s: duplicate image_id in %s (evaluated twice, as panopticapi)", _where(iid),
                        gt_json)
        seen.add(iid)
        p = pred_by_id.get(iid)
        if p is None:
            hint = ""
            alike = [k for k in pred_by_id if str(k) == str(iid)]
            if alike:
                hint = (f" (the predictions have image_id {alike[0]!r} of type {type(alike[0]).__name__}, "
                        f"the GT {type(iid).__name__}: image ids must match exactly)")
            raise InputError(f"no prediction for this GT image{hint}", path=pred_json, field=_where(iid))
        pairs.append((a, p))
    extra = [k for k in pred_by_id if k not in seen]
    if extra:  # panopticapi ignores them; so do we (a prediction file may cover a superset of images)
        log.warning("%s: %d prediction image(s) are not in the GT, e.g. %s (ignored, as panopticapi)",
                    pred_json, len(extra), extra[:5])
    return pairs


_WORKER_STATE: dict = {}


def _init_worker(categories: dict, strict: bool, empty_gt_stuff: bool) -> None:
    _WORKER_STATE["categories"] = categories
    _WORKER_STATE["strict"] = strict
    _WORKER_STATE["empty_gt_stuff"] = empty_gt_stuff


def _eval_task(task: tuple) -> Any:
    image_id, gt_path, gt_segments, pred_path, pred_segments = task
    try:
        gt = read_panoptic_png(gt_path, image_id=image_id, dtype=np.uint32)  # (H, W)
        pred = read_panoptic_png(pred_path, image_id=image_id, dtype=np.uint32)
        return evaluate_image(image_id, gt, gt_segments, pred, pred_segments, _WORKER_STATE["categories"],
                              strict=_WORKER_STATE["strict"], empty_gt_stuff=_WORKER_STATE["empty_gt_stuff"],
                              gt_path=gt_path, pred_path=pred_path)
    except InputError as exc:  # re-raised in the parent with its path and field
        return ("InputError", exc.message, exc.path, exc.field)


def evaluate_panoptic_files(gt_json: str | Path, pred_json: str | Path, gt_dir: str | Path | None = None,
                            pred_dir: str | Path | None = None, *, workers: int = 1, strict: bool = True,
                            empty_gt_stuff: bool = False, show_progress: bool = True) -> dict:
    """PQ of a COCO-panoptic prediction set (JSON + PNG folder) against a GT set; panopticapi's result dict.

    Folders default to the JSON path without ``.json`` (panopticapi's convention). ``empty_gt_stuff``:
    see the module docstring (needed for Mask2Former's ADE20K-150 ground truth).
    """
    from smart.utils.logging import progress
    from smart.utils.parallel import worker_map

    gt_json, pred_json = Path(gt_json), Path(pred_json)
    gt_dir = Path(gt_dir) if gt_dir is not None else _default_folder(gt_json)
    pred_dir = Path(pred_dir) if pred_dir is not None else _default_folder(pred_json)
    for d, what in ((gt_dir, "GT"), (pred_dir, "prediction")):
        if not d.is_dir():
            raise InputError(f"{what} PNG folder not found", path=d)
    gt = load_json(gt_json, "GT JSON")
    pred = load_json(pred_json, "prediction JSON")
    if not isinstance(gt, Mapping) or "categories" not in gt:
        raise InputError("GT JSON has no 'categories'", path=gt_json, field="categories")
    acc = PanopticAccumulator(index_categories(gt["categories"], path=gt_json, strict=strict), strict=strict,
                              empty_gt_stuff=empty_gt_stuff)
    pairs = _pair_annotations(_annotations(gt, gt_json, "GT"), _annotations(pred, pred_json, "prediction"),
                              gt_json, pred_json, strict)
    tasks = [(g["image_id"], gt_dir / g["file_name"], g["segments_info"], pred_dir / p["file_name"],
              p["segments_info"]) for g, p in pairs]
    t0 = time.perf_counter()
    workers = max(1, min(int(workers), len(tasks) or 1))
    chunk = max(1, min(32, len(tasks) // (4 * workers)))
    with worker_map(_eval_task, tasks, workers=workers, chunksize=chunk, initializer=_init_worker,
                    initargs=(acc.categories, strict, empty_gt_stuff)) as results:
        for r in progress(results, total=len(tasks), desc="PQ", unit="img", disable=not show_progress or None):
            if isinstance(r, tuple):
                raise InputError(r[1], path=r[2], field=r[3])
            acc.add_stats(r)
    dt = time.perf_counter() - t0
    out = acc.summary()
    out["inputs"] = {"gt_json": str(gt_json), "gt_dir": str(gt_dir), "pred_json": str(pred_json),
                     "pred_dir": str(pred_dir)}
    log.info("PQ: %d images in %.2f s (%.1f images/s, %d worker(s))", len(tasks), dt,
             len(tasks) / dt if dt > 0 else float("inf"), workers)
    return out


def format_table(result: Mapping) -> str:
    """panopticapi's summary table (× 100)."""
    lines = [f"{'':10s}| {'PQ':>5s}  {'SQ':>5s}  {'RQ':>5s}  {'N':>5s}", "-" * 41]
    for name in ("All", "Things", "Stuff"):
        r = result[name]
        vals = ["  nan" if r[k] is None or math.isnan(r[k]) else f"{100 * r[k]:5.1f}"
                for k in ("pq", "sq", "rq")]
        lines.append(f"{name:10s}| {vals[0]}  {vals[1]}  {vals[2]}  {r['n']:5d}")
    return "\n".join(lines)


def _version() -> str:
    from smart import __version__

    return f"smart {__version__}"
