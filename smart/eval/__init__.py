"""Evaluation: Panoptic Quality (panopticapi definition) and semantic mIoU (detectron2 definitions).

Streaming API for the pipeline (no PNGs written just to evaluate)::

    from smart.eval import PanopticAccumulator, SemSegAccumulator
    pq = PanopticAccumulator(gt_json["categories"])
    pq.add(image_id, gt_ids, gt_segments_info, pred_ids, pred_segments_info)
    sem = SemSegAccumulator(num_classes=150, ignore_label=255)
    sem.add(gt_labels, pred_labels, image=image_id)
    metrics = {"panoptic": pq.summary(), "semantic": sem.summary()}

File-based (COCO panoptic JSON + PNGs, semantic label-map folders): :func:`evaluate_panoptic_files`,
:func:`evaluate_semantic_files`, and ``python -m smart evaluate {panoptic,semantic}``. Both paths use
the same accumulators and give the same numbers.
"""

from smart.eval.convert import from_detectron2_panoptic, semantic_prediction, semantic_scores
from smart.eval.io import (
    PanopticPredictionWriter,
    id2rgb,
    read_label_map,
    read_panoptic_png,
    rgb2id,
    write_json,
    write_label_png,
    write_metrics_json,
    write_panoptic_png,
)
from smart.eval.panoptic import PanopticAccumulator, evaluate_image, evaluate_panoptic_files
from smart.eval.semantic import SemSegAccumulator, evaluate_semantic_files, semseg_metrics
from smart.eval.summary import flat_metrics

__all__ = [
    "PanopticAccumulator",
    "PanopticPredictionWriter",
    "SemSegAccumulator",
    "evaluate_image",
    "evaluate_panoptic_files",
    "evaluate_semantic_files",
    "flat_metrics",
    "from_detectron2_panoptic",
    "id2rgb",
    "read_label_map",
    "read_panoptic_png",
    "rgb2id",
    "semantic_prediction",
    "semantic_scores",
    "semseg_metrics",
    "write_json",
    "write_label_png",
    "write_metrics_json",
    "write_panoptic_png",
]
