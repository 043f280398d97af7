"""Semantic-segmentation metrics exactly as detectron2's ``SemSegEvaluator`` computes them.

Accumulation (all detectron2 versions): GT pixels equal to ``ignore_label`` become class K
(= ``num_classes``), and a (K+1)×(K+1) int64 confusion matrix indexed ``[pred, gt]`` is accumulated
with ``np.bincount((K + 1) · pred + gt)``. All metrics use the ``[:K, :K]`` block, so ignore pixels
drop out. Two mIoU definitions are reported (``docs/evaluation.md`` §2):

* ``mIoU``: detectron2 HEAD (since commit f3c1bc19, 2022-07-06): mean IoU over classes with GT pixels;
* ``mIoU_d2v06``: detectron2 v0.6 (tag d1e04565, used by ODISE): Σ IoU over classes with GT pixels
  divided by the number of classes with GT **or predicted** pixels (a predicted-but-absent class counts
  as IoU 0).

``fwIoU``, ``mACC`` and ``pACC`` are the same in both versions. Everything is in percent, like
detectron2; a class without GT pixels has IoU / ACC NaN (``null`` in JSON). The arithmetic follows
detectron2's expressions operation by operation, so the numbers agree to the last bit.

GT labels other than 0..K-1 and the ignore label, and predictions outside 0..K-1, are errors (detectron2
would silently mis-count them or crash on the reshape).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from smart.errors import InputError
from smart.eval.io import list_label_maps, read_label_map

log = logging.getLogger(__name__)

DEFINITIONS = {
    "implementation": "smart.eval.semantic: detectron2 SemSegEvaluator arithmetic on a [pred, gt] "
                      "confusion matrix; GT ignore pixels excluded",
    "mIoU": "detectron2 HEAD (since commit f3c1bc19, 2022-07-06): mean IoU over classes with GT pixels",
    "mIoU_d2v06": "detectron2 v0.6 (tag d1e04565): sum of IoU over classes with GT pixels / number of "
                  "classes with GT or predicted pixels",
    "fwIoU": "sum of IoU * pos_gt / sum(pos_gt) over classes with GT pixels",
    "mACC": "mean of tp / pos_gt over classes with GT pixels",
    "pACC": "sum(tp) / sum(pos_gt)",
    "scale": "percent (x100), as detectron2; NaN (class without GT pixels) -> null",
    "boundary_iou": "not computed",
}


def _where(image: Any) -> str | None:
    return None if image is None else f"image {image!r}"


def _as_label_map(a: Any, which: str, image: Any, path: Any) -> np.ndarray:
    if hasattr(a, "detach"):  # torch tensor
        a = a.detach().cpu().numpy()
    a = np.asarray(a)
    if a.ndim != 2:
        raise InputError(f"{which} label map must be H×W, got shape {a.shape}", path=path,
                         field=_where(image))
    if a.dtype.kind == "b":
        a = a.astype(np.uint8)
    elif a.dtype.kind not in "iu":
        raise InputError(f"{which} label map must hold integers, got dtype {a.dtype}", path=path,
                         field=_where(image))
    return a


def confusion_matrix(gt: Any, pred: Any, num_classes: int, ignore_label: int, *, image: Any = None,
                     gt_path: Any = None, pred_path: Any = None) -> np.ndarray:
    """The (K+1)×(K+1) int64 confusion matrix [pred, gt] of one image (detectron2 ``process``)."""
    k = int(num_classes)
    gt = _as_label_map(gt, "GT", image, gt_path)
    pred = _as_label_map(pred, "prediction", image, pred_path)
    if gt.shape != pred.shape:
        raise InputError(f"prediction is {pred.shape[1]}x{pred.shape[0]} (WxH) but the GT is "
                         f"{gt.shape[1]}x{gt.shape[0]}", path=pred_path, field=_where(image))
    p = pred.astype(np.intp)  # a copy, reused for the bincount index
    if p.size and (p.min() < 0 or p.max() >= k):
        bad = np.unique(p[(p < 0) | (p >= k)])
        raise InputError(f"predicted labels {bad[:10].tolist()} are outside [0, {k})", path=pred_path,
                         field=_where(image))
    g = gt.astype(np.intp)  # a copy
    g[gt == ignore_label] = k
    if g.size and (g.min() < 0 or g.max() > k):
        bad = np.unique(g[(g < 0) | (g > k)])
        raise InputError(f"GT labels {bad[:10].tolist()} are outside [0, {k}) and not the ignore label "
                         f"{ignore_label}", path=gt_path, field=_where(image))
    p *= k + 1
    p += g
    return np.bincount(p.ravel(), minlength=(k + 1) ** 2).reshape(k + 1, k + 1)


def semseg_metrics(conf: np.ndarray, class_names: Sequence[str] | None = None) -> dict:
    """detectron2's metrics (both mIoU definitions) from a (K+1)×(K+1) [pred, gt] confusion matrix."""
    conf = np.asarray(conf, dtype=np.int64)
    k = conf.shape[0] - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        acc = np.full(k, np.nan, dtype=float)
        iou = np.full(k, np.nan, dtype=float)
        tp = conf.diagonal()[:-1].astype(float)
        pos_gt = np.sum(conf[:-1, :-1], axis=0).astype(float)
        class_weights = pos_gt / np.sum(pos_gt)
        pos_pred = np.sum(conf[:-1, :-1], axis=1).astype(float)
        acc_valid = pos_gt > 0
        acc[acc_valid] = tp[acc_valid] / pos_gt[acc_valid]
        union = pos_gt + pos_pred - tp
        iou_valid = np.logical_and(acc_valid, union > 0)
        iou[iou_valid] = tp[iou_valid] / union[iou_valid]
        macc = np.sum(acc[acc_valid]) / np.sum(acc_valid)
        miou = np.sum(iou[iou_valid]) / np.sum(iou_valid)
        fiou = np.sum(iou[iou_valid] * class_weights[iou_valid])
        pacc = np.sum(tp) / np.sum(pos_gt)
        # v0.6: iou is set on acc_valid (identical values: union > 0 wherever pos_gt > 0); the
        # denominator counts classes with GT or predicted pixels.
        iou_valid_v06 = (pos_gt + pos_pred) > 0
        miou_v06 = np.sum(iou[acc_valid]) / np.sum(iou_valid_v06)
    per_class = {}
    for i in range(k):
        e = {"IoU": float(100 * iou[i]), "ACC": float(100 * acc[i]), "tp": int(conf[i, i]),
             "pos_gt": int(pos_gt[i]), "pos_pred": int(pos_pred[i])}
        if class_names is not None:
            e = {"name": class_names[i], **e}
        per_class[i] = e
    return {
        "mIoU": float(100 * miou),
        "mIoU_d2v06": float(100 * miou_v06),
        "fwIoU": float(100 * fiou),
        "mACC": float(100 * macc),
        "pACC": float(100 * pacc),
        "num_classes": k,
        "num_classes_with_gt": int(np.sum(acc_valid)),
        "num_classes_gt_or_pred": int(np.sum(iou_valid_v06)),
        "per_class": per_class,
    }


class SemSegAccumulator:
    """Streaming semantic-segmentation evaluation (detectron2 ``SemSegEvaluator`` numbers).

    Args:
        num_classes: K; predictions take values 0..K-1 (uint8/uint16/int arrays; 847 classes work).
        ignore_label: GT value excluded from every metric (255, 65535, 65 for Mapillary, ...).
        class_names: optional, for ``per_class``.
    """

    def __init__(self, num_classes: int, ignore_label: int = 255, class_names: Sequence[str] | None = None):
        if int(num_classes) < 1:
            raise InputError(f"num_classes must be >= 1, got {num_classes}", field="num_classes")
        if class_names is not None and len(class_names) != int(num_classes):
            raise InputError(f"{len(class_names)} class names for {num_classes} classes", field="class_names")
        if 0 <= int(ignore_label) < int(num_classes):
            log.warning("ignore_label %d is a valid class index (< num_classes %d): that class is ignored",
                        ignore_label, num_classes)
        self.num_classes = int(num_classes)
        self.ignore_label = int(ignore_label)
        self.class_names = list(class_names) if class_names is not None else None
        self.conf_matrix = np.zeros((self.num_classes + 1, self.num_classes + 1), dtype=np.int64)
        self.num_images = 0

    def add(self, gt: Any, pred: Any, image: Any = None, *, gt_path: Any = None,
            pred_path: Any = None) -> None:
        """Add one image: ``gt`` and ``pred`` are H×W integer label maps of the same size."""
        self.conf_matrix += confusion_matrix(gt, pred, self.num_classes, self.ignore_label, image=image,
                                             gt_path=gt_path, pred_path=pred_path)
        self.num_images += 1

    def add_confusion(self, conf: np.ndarray, num_images: int = 1) -> None:
        self.conf_matrix += conf
        self.num_images += num_images

    def summary(self) -> dict:
        out = semseg_metrics(self.conf_matrix, self.class_names)
        out["ignore_label"] = self.ignore_label
        out["num_images"] = self.num_images
        out["definitions"] = dict(DEFINITIONS, implementation_version=_version())
        return out


# --------------------------------------------------------------------------------------------------
# file-based evaluation


def pair_label_maps(gt_dir: str | Path, pred_dir: str | Path, *, strict: bool = True) -> list:
    """(name, gt_path, pred_path) for every GT label map, matched by relative path without extension."""
    gt = list_label_maps(gt_dir)
    pred = list_label_maps(pred_dir)
    if not gt:
        raise InputError("no label maps (.png/.tif) in the GT folder", path=gt_dir)
    pairs = []
    for name, gp in gt.items():
        pp = pred.get(name)
        if pp is None:
            raise InputError("no prediction for this GT label map", path=Path(pred_dir),
                             field=f"image {name!r}")
        pairs.append((name, gp, pp))
    extra = sorted(set(pred) - set(gt))
    if extra:
        msg = f"{len(extra)} prediction(s) have no GT label map, e.g. {extra[:5]}"
        if strict:
            raise InputError(msg, path=pred_dir, field=f"image {extra[0]!r}")
        log.warning("%s: %s (ignored)", pred_dir, msg)
    return pairs


def _conf_chunk(args: tuple) -> Any:
    chunk, k, ignore = args
    conf = np.zeros((k + 1, k + 1), dtype=np.int64)
    try:
        for name, gp, pp in chunk:
            gt = read_label_map(gp, image=name)
            pred = read_label_map(pp, image=name)
            conf += confusion_matrix(gt, pred, k, ignore, image=name, gt_path=gp, pred_path=pp)
    except InputError as exc:
        return ("InputError", exc.message, exc.path, exc.field)
    return conf, len(chunk)


def evaluate_semantic_files(gt_dir: str | Path, pred_dir: str | Path, num_classes: int, ignore_label: int,
                            *, class_names: Sequence[str] | None = None, workers: int = 1,
                            strict: bool = True, show_progress: bool = True) -> dict:
    """detectron2 semantic metrics of the label maps in ``pred_dir`` against those in ``gt_dir``."""
    from smart.utils.logging import progress
    from smart.utils.parallel import worker_map

    acc = SemSegAccumulator(num_classes, ignore_label, class_names)
    pairs = pair_label_maps(gt_dir, pred_dir, strict=strict)
    workers = max(1, int(workers))
    size = 1 if workers == 1 else max(1, min(32, len(pairs) // (4 * workers)))
    k, ignore = acc.num_classes, acc.ignore_label
    chunks: list = [(pairs[i:i + size], k, ignore) for i in range(0, len(pairs), size)]
    t0 = time.perf_counter()
    with worker_map(_conf_chunk, chunks, workers=min(workers, len(chunks))) as results, \
            progress(total=len(pairs), desc="mIoU", unit="img", disable=not show_progress or None) as bar:
        for r in results:
            if len(r) == 4:
                raise InputError(r[1], path=r[2], field=r[3])
            acc.add_confusion(r[0], r[1])
            bar.update(r[1])
    dt = time.perf_counter() - t0
    out = acc.summary()
    out["inputs"] = {"gt_dir": str(gt_dir), "pred_dir": str(pred_dir)}
    log.info("mIoU: %d images in %.2f s (%.1f images/s, %d worker(s))", len(pairs), dt,
             len(pairs) / dt if dt > 0 else float("inf"), workers)
    return out


def format_summary(result: dict) -> str:
    def f(v):
        return "  nan" if v is None or v != v else f"{v:6.2f}"

    n_gt, n_any = result["num_classes_with_gt"], result["num_classes_gt_or_pred"]
    return (f"mIoU {f(result['mIoU'])} (detectron2 HEAD, GT-present classes: {n_gt})\n"
            f"mIoU_d2v06 {f(result['mIoU_d2v06'])} (detectron2 v0.6, GT-or-predicted classes: {n_any})\n"
            f"fwIoU {f(result['fwIoU'])}  mACC {f(result['mACC'])}  pACC {f(result['pACC'])}")


def _version() -> str:
    from smart import __version__

    return f"smart {__version__}"
