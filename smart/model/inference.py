"""Semantic and panoptic inference from mask classification (``docs/method-spec.md`` §4.10, §5.6).

Re-implements Mask2Former's ``semantic_inference`` / ``panoptic_inference`` and its
``sem_seg_postprocess`` resizing (facebookresearch/Mask2Former ``mask2former/maskformer_model.py``;
FC-CLIP uses the same semantics), in batched torch so it runs on CPU and CUDA:

* **resizing**: mask logits (B, Q, h, w) of the padded input are upsampled bilinearly
  (``align_corners=False``) to the padded input size, cropped to each image's pre-padding size and
  resized to its original (height, width) — logits are interpolated, sigmoid comes after;
* **semantic**: score[c] = Σ_q softmax(class_q)[c] · sigmoid(mask_q), the void (last) column dropped
  *after* the softmax (``docs/evaluation.md`` §2.5); the label map is the arg-max over the K real
  classes, so void is never a semantic label;
* **panoptic**: keep queries whose arg-max class is not void and whose max probability is
  > ``object_mask_threshold``; each pixel goes to the kept query with the largest score · sigmoid;
  a query's segment = pixels it wins AND sigmoid ≥ 0.5; it is dropped when that is empty, when its
  sigmoid ≥ 0.5 area is 0, or when won-area / (sigmoid ≥ 0.5 area) < ``overlap_threshold``; stuff
  segments of the same class are merged into one; segment ids start at 1 and 0 is void/unassigned;
  ``segments_info`` carries the contiguous ``category_id`` and ``isthing`` (detectron2 format).

Thresholds: Mask2Former's closed-set COCO config uses 0.8 / 0.8 (the defaults here, and the values for
the M2F-native COCO* rows); the spec's recommended open-vocabulary values are 0.0 / 0.8 (FC-CLIP,
§4.10). Both are arguments; the pipeline passes them from ``params.yaml``.

On CUDA with ``amp=True`` the mask upsampling runs in bfloat16 (half the memory of the full-size
(Q, H, W) maps); probabilities, thresholds and the semantic sum are always computed in float32.
On CPU no autocast is used.

:func:`panoptic_for_eval` / :func:`semantic_for_eval` turn the results into the inputs of
``smart.eval`` (dataset category ids via :func:`smart.eval.convert.from_detectron2_panoptic`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from smart.eval.convert import from_detectron2_panoptic

__all__ = [
    "InferenceConfig",
    "panoptic_for_eval",
    "panoptic_inference",
    "postprocess",
    "resize_mask_logits",
    "semantic_for_eval",
    "semantic_inference",
]


@dataclass(frozen=True)
class InferenceConfig:
    """Post-processing parameters (Mask2Former COCO panoptic defaults)."""

    object_mask_threshold: float = 0.8  # min max-class probability of a kept query (open-vocab REC: 0.0)
    overlap_threshold: float = 0.8  # min won-area / sigmoid≥0.5-area of a kept segment
    mask_threshold: float = 0.5  # sigmoid threshold of a query's mask
    amp: bool = True  # bf16 mask upsampling on CUDA (ignored on CPU)

    @classmethod
    def from_settings(cls, settings: Any) -> InferenceConfig:
        """The post-processing part of an ``EvalSettings`` / ``PredictSettings`` (``bf16`` → ``amp``)."""
        return cls(object_mask_threshold=settings.object_mask_threshold, overlap_threshold=settings.overlap_threshold,
                   mask_threshold=settings.mask_threshold, amp=settings.bf16)

    def to_dict(self) -> dict:
        return asdict(self)


def _sizes(sizes: Any, n: int, what: str) -> list[tuple[int, int]]:
    if isinstance(sizes, torch.Size) or (isinstance(sizes, (tuple, list)) and len(sizes) == 2
                                         and all(isinstance(v, (int, np.integer)) for v in sizes)):
        sizes = [tuple(sizes)] * n
    out = [(int(h), int(w)) for h, w in sizes]
    if len(out) != n:
        raise ValueError(f"{len(out)} {what} for a batch of {n}")
    return out


def resize_mask_logits(mask_logits: Tensor, *, input_size: tuple[int, int] | None = None,
                       image_sizes: Sequence[tuple[int, int]] | None = None,
                       output_sizes: Sequence[tuple[int, int]] | tuple[int, int] | None = None,
                       amp: bool = True) -> list[Tensor]:
    """Mask logits of the padded input → one (Q, H_i, W_i) logit map per image at its original size.

    Args:
        mask_logits: (B, Q, h, w) logits, h×w = the padded input size / 4 (or any size).
        input_size: (Hp, Wp) padded network input size; default (h, w) (no upsampling step).
        image_sizes: per image (h_i, w_i) the valid (pre-padding) region of the input; default the
            whole padded input.
        output_sizes: per image (H_i, W_i) original image size (or one pair for all); default
            ``image_sizes``.
        amp: upsample in bfloat16 on CUDA.

    Returns:
        B float32 tensors (Q, H_i, W_i) of logits.
    """
    B = mask_logits.shape[0]
    if input_size is None:
        input_size = tuple(mask_logits.shape[-2:])
    image_sizes = _sizes(image_sizes if image_sizes is not None else [input_size] * B, B, "image sizes")
    output_sizes = _sizes(output_sizes if output_sizes is not None else image_sizes, B, "output sizes")
    use_bf16 = amp and mask_logits.is_cuda
    x = mask_logits.to(torch.bfloat16 if use_bf16 else torch.float32)  # (B, Q, h, w)
    if tuple(x.shape[-2:]) != tuple(input_size):
        x = F.interpolate(x, size=tuple(input_size), mode="bilinear", align_corners=False)  # (B, Q, Hp, Wp)
    out = []
    for b in range(B):
        h, w = image_sizes[b]
        H, W = output_sizes[b]
        m = x[b:b + 1, :, :h, :w]  # (1, Q, h_i, w_i) crop of the padding
        if (h, w) != (H, W):
            m = F.interpolate(m, size=(H, W), mode="bilinear", align_corners=False)  # (1, Q, H, W)
        out.append(m[0].float())  # (Q, H, W)
    return out


def semantic_inference(class_logits: Tensor, mask_logits: Tensor) -> Tensor:
    """Mask2Former ``semantic_inference``: (…, Q, K+1) logits, (…, Q, H, W) mask logits → (…, K, H, W).

    The last class column is void / no-object; it is dropped after the softmax.
    """
    probs = class_logits.float().softmax(-1)[..., :-1]  # (…, Q, K)
    masks = mask_logits.float().sigmoid()  # (…, Q, H, W)
    return torch.einsum("...qc,...qhw->...chw", probs, masks)  # (…, K, H, W)


def panoptic_inference(class_logits: Tensor, mask_logits: Tensor, *, is_thing: Sequence[bool] | Tensor,
                       object_mask_threshold: float = 0.8, overlap_threshold: float = 0.8,
                       mask_threshold: float = 0.5) -> tuple[Tensor, list[dict]]:
    """Mask2Former ``panoptic_inference`` for one image.

    Args:
        class_logits: (Q, K+1) class logits, last column = void / no-object.
        mask_logits: (Q, H, W) mask logits at the output resolution.
        is_thing: (K,) thing flags of the contiguous classes (from the dataset metadata).
        object_mask_threshold: keep a query iff its max class probability is > this (and not void).
        overlap_threshold: drop a segment iff won-area / (sigmoid ≥ mask_threshold area) < this.
        mask_threshold: sigmoid threshold of a query's mask (0.5).

    Returns:
        (panoptic_seg (H, W) int32 with ids 1..S and 0 = void, segments_info: S dicts
        ``{"id", "category_id" (contiguous), "isthing"}``).
    """
    K1 = class_logits.shape[-1]  # K + 1
    is_thing = [bool(v) for v in (is_thing.tolist() if isinstance(is_thing, Tensor) else is_thing)]
    if len(is_thing) != K1 - 1:
        raise ValueError(f"is_thing has {len(is_thing)} entries but the logits have {K1 - 1} classes + void")
    H, W = mask_logits.shape[-2:]
    scores, labels = class_logits.float().softmax(-1).max(-1)  # (Q,), (Q,)
    mask_probs = mask_logits.float().sigmoid()  # (Q, H, W)
    keep = labels.ne(K1 - 1) & (scores > object_mask_threshold)  # (Q,)
    cur_scores = scores[keep]  # (n,)
    cur_classes = labels[keep]  # (n,)
    cur_masks = mask_probs[keep]  # (n, H, W)
    cur_prob_masks = cur_scores[:, None, None] * cur_masks  # (n, H, W)

    panoptic_seg = torch.zeros((H, W), dtype=torch.int32, device=mask_logits.device)  # (H, W)
    segments_info: list[dict] = []
    if cur_masks.shape[0] == 0:
        return panoptic_seg, segments_info
    cur_mask_ids = cur_prob_masks.argmax(0)  # (H, W) index of the winning kept query
    binary = cur_masks >= mask_threshold  # (n, H, W)
    wins = cur_mask_ids.unsqueeze(0) == torch.arange(len(cur_classes), device=mask_logits.device)[:, None, None]
    mask_areas = wins.sum((1, 2)).tolist()  # (n,) pixels won
    original_areas = binary.sum((1, 2)).tolist()  # (n,) pixels with sigmoid ≥ threshold
    final = wins & binary  # (n, H, W)
    final_areas = final.sum((1, 2)).tolist()  # (n,)
    classes = cur_classes.tolist()
    stuff_memory: dict[int, int] = {}
    current_segment_id = 0
    for k, pred_class in enumerate(classes):
        if mask_areas[k] == 0 or original_areas[k] == 0 or final_areas[k] == 0:
            continue
        if mask_areas[k] / original_areas[k] < overlap_threshold:
            continue
        isthing = is_thing[pred_class]
        if not isthing and pred_class in stuff_memory:  # merge stuff of the same class
            panoptic_seg[final[k]] = stuff_memory[pred_class]
            continue
        current_segment_id += 1
        if not isthing:
            stuff_memory[pred_class] = current_segment_id
        panoptic_seg[final[k]] = current_segment_id
        segments_info.append({"id": current_segment_id, "isthing": bool(isthing), "category_id": int(pred_class)})
    return panoptic_seg, segments_info


def postprocess(outputs: Mapping[str, Tensor], *, is_thing: Sequence[bool] | Tensor | None = None,
                input_size: tuple[int, int] | None = None,
                image_sizes: Sequence[tuple[int, int]] | None = None,
                output_sizes: Sequence[tuple[int, int]] | tuple[int, int] | None = None,
                tasks: Sequence[str] = ("semantic", "panoptic"),
                cfg: InferenceConfig | None = None) -> list[dict]:
    """Batched post-processing of model outputs (SMART or the mask generator's native head).

    Args:
        outputs: ``pred_logits`` (B, Q, K+1) (last = void) and ``pred_masks`` (B, Q, h, w) mask logits;
            the generator's ``class_logits`` / ``mask_logits`` keys are accepted too.
        is_thing: (K,) thing flags; needed for ``panoptic``.
        input_size: padded network input size (Hp, Wp); default the mask size.
        image_sizes: per-image valid region of the input before padding.
        output_sizes: per-image original (H, W) to resize to.
        tasks: any of ``semantic`` (``sem_seg`` (K, H, W) scores and ``sem_label`` (H, W) int64
            arg-max) and ``panoptic`` (``panoptic_seg`` ((H, W) int32, segments_info)).
        cfg: thresholds; default :class:`InferenceConfig`.

    Returns:
        B dicts with the requested keys, tensors on the input device.
    """
    cfg = cfg or InferenceConfig()
    logits = outputs["pred_logits"] if "pred_logits" in outputs else outputs["class_logits"]  # (B, Q, K+1)
    masks = outputs["pred_masks"] if "pred_masks" in outputs else outputs["mask_logits"]  # (B, Q, h, w)
    unknown = set(tasks) - {"semantic", "panoptic"}
    if unknown:
        raise ValueError(f"unknown tasks {sorted(unknown)}")
    if "panoptic" in tasks and is_thing is None:
        raise ValueError("panoptic inference needs is_thing (the thing/stuff flags of the classes)")
    per_image = resize_mask_logits(masks, input_size=input_size, image_sizes=image_sizes,
                                   output_sizes=output_sizes, amp=cfg.amp)  # B × (Q, H, W)
    results = []
    for b, m in enumerate(per_image):
        r: dict = {}
        if "semantic" in tasks:
            r["sem_seg"] = semantic_inference(logits[b], m)  # (K, H, W)
            r["sem_label"] = r["sem_seg"].argmax(0)  # (H, W) in 0..K-1
        if "panoptic" in tasks:
            r["panoptic_seg"] = panoptic_inference(logits[b], m, is_thing=is_thing,
                                                   object_mask_threshold=cfg.object_mask_threshold,
                                                   overlap_threshold=cfg.overlap_threshold,
                                                   mask_threshold=cfg.mask_threshold)
        results.append(r)
    return results


def panoptic_for_eval(panoptic_seg: Tensor | np.ndarray, segments_info: Sequence[Mapping], *,
                      dataset_ids: Sequence[int], is_thing: Sequence[bool]) -> tuple[np.ndarray, list[dict]]:
    """Panoptic result with contiguous ids → (id map, segments_info with dataset category ids).

    ``dataset_ids[c]`` / ``is_thing[c]`` are the dataset id and thing flag of contiguous class c (e.g.
    ``[c.id for c in vocab]`` and ``vocab.thing_mask``). The result feeds
    ``smart.eval.panoptic.PanopticAccumulator.add`` or the PNG writer.
    """
    thing = {int(d): c for c, (d, t) in enumerate(zip(dataset_ids, is_thing)) if t}
    stuff = {int(d): c for c, (d, t) in enumerate(zip(dataset_ids, is_thing)) if not t}
    return from_detectron2_panoptic(panoptic_seg, segments_info, thing_dataset_id_to_contiguous_id=thing,
                                    stuff_dataset_id_to_contiguous_id=stuff)


def semantic_for_eval(sem_label: Tensor | np.ndarray) -> np.ndarray:
    """(H, W) contiguous label map (0..K-1) as the int64 numpy array ``smart.eval.semantic`` expects."""
    if isinstance(sem_label, Tensor):
        sem_label = sem_label.detach().cpu().numpy()
    return np.asarray(sem_label, dtype=np.int64)
