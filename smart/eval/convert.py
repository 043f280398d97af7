"""Model outputs -> the inputs of the evaluators (detectron2 / Mask2Former conventions).

* :func:`from_detectron2_panoptic`: detectron2 ``COCOPanopticEvaluator.process`` semantics
  (``docs/evaluation.md`` §1.5): with ``segments_info`` (Mask2Former / FC-CLIP), ids 1..K are
  segments, 0 is void and each segment's contiguous ``category_id`` is mapped back to the dataset id
  through the thing or stuff inverse map chosen by its ``isthing``; without ``segments_info`` the map
  holds ``category · label_divisor + instance`` with −1 for void, segments are built from its unique
  values (``isthing`` = category in the thing map's contiguous ids) and 1 is added so void becomes 0.
* :func:`semantic_scores`: Mask2Former ``semantic_inference`` (§2.5): per pixel
  score_c = Σ_q softmax(class_logits_q)[c] · sigmoid(mask_logits_q), the no-object column dropped
  after the softmax; the semantic prediction is the arg-max over c.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np


def from_detectron2_panoptic(panoptic_img: Any, segments_info: Sequence[Mapping] | None, *,
                             thing_dataset_id_to_contiguous_id: Mapping[int, int],
                             stuff_dataset_id_to_contiguous_id: Mapping[int, int],
                             label_divisor: int | None = None) -> tuple[np.ndarray, list[dict]]:
    """(panoptic id map, segments_info with dataset category ids) as detectron2 writes them."""
    if hasattr(panoptic_img, "detach"):
        panoptic_img = panoptic_img.detach().cpu().numpy()
    ids = np.array(panoptic_img, dtype=np.int64)  # a copy
    thing_inv = {v: k for k, v in thing_dataset_id_to_contiguous_id.items()}
    stuff_inv = {v: k for k, v in stuff_dataset_id_to_contiguous_id.items()}
    if segments_info is None:
        if label_divisor is None:
            raise ValueError("label_divisor is needed when segments_info is None")
        thing_contiguous = set(thing_dataset_id_to_contiguous_id.values())
        segs = []
        for label in np.unique(ids).tolist():
            if label == -1:
                continue
            cls = label // label_divisor
            segs.append({"id": label + 1, "category_id": int(cls), "isthing": cls in thing_contiguous})
        ids += 1
    else:
        segs = [dict(s) for s in segments_info]
    out = []
    for s in segs:
        isthing = s.pop("isthing", None)
        if isthing is True:
            s["category_id"] = thing_inv[s["category_id"]]
        elif isthing is not None:
            s["category_id"] = stuff_inv[s["category_id"]]
        out.append(s)
    return ids, out


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def semantic_scores(class_logits: np.ndarray, mask_logits: np.ndarray) -> np.ndarray:
    """(Q, K+1) class logits (last column = no-object) and (Q, H, W) mask logits -> (K, H, W) scores."""
    cls = _softmax(np.asarray(class_logits, dtype=np.float64), axis=-1)[:, :-1]
    masks = 1.0 / (1.0 + np.exp(-np.asarray(mask_logits, dtype=np.float64)))
    return np.einsum("qc,qhw->chw", cls, masks)


def semantic_prediction(class_logits: np.ndarray, mask_logits: np.ndarray) -> np.ndarray:
    """Arg-max of :func:`semantic_scores`: an H×W map of class indices 0..K-1 (never a void class)."""
    return semantic_scores(class_logits, mask_logits).argmax(axis=0)
