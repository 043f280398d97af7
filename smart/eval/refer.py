"""Zero-shot referring image segmentation with CLIP mask tokens: paper Table 4, "CLIP knowledge preservation".

Table 4 asks whether SMART's tuning of CLIP (QPT of the image encoder's query projections) costs CLIP
some of its general vision-language knowledge. It scores CLIP *before* and *after* SMART tuning on a
task neither was trained for, zero-shot referring image segmentation on RefCOCO / RefCOCO+ (paper:
oIoU 23.9 → 24.6 and 25.0 → 25.9).

Protocol, per referring expression (every sentence of a ref is one expression):

1. the frozen mask generator proposes Q masks for the image (mask logits P, (Q, h, w));
2. CLIP's image encoder turns each proposal into a mask-token embedding (Eq. 1/5 mask attention,
   ``ClipMaskClassifier.forward_tokens``, projected by the visual head), L2-normalised. SMA is
   bypassed: its Task Information Extraction needs the class text of a segmentation vocabulary,
   which a referring expression is not, so the mask tokens are plain CLIP mask tokens. The raw
   generator proposals are used for both models (no Distribution Adapter), so that only CLIP differs;
3. CLIP's text tower encodes the expression as is (no prompt template), L2-normalised;
4. the proposal with the highest cosine similarity to the expression is the prediction; its logits
   are upsampled bilinearly to the image size and binarised at sigmoid ≥ 0.5 (logit ≥ 0).

Scores (percent): ``oIoU`` = Σ_e |pred_e ∩ gt_e| / Σ_e |pred_e ∪ gt_e| (overall IoU, cumulative over
all expressions e), and ``mIoU`` = mean over expressions of |pred_e ∩ gt_e| / |pred_e ∪ gt_e| (an
expression whose prediction and ground truth are both empty scores 0).

"Before" is the model built from the trained cell's model config under the same seed without its
trained state (the pretrained CLIP: QPT's tuned q-projections start from the pretrained weights);
"after" is the trained model (:func:`smart.train.checkpoint.load_trained`). Proposals and mask
embeddings are computed once per image, and shared by all refs of that image.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

_log = logging.getLogger("smart.eval.refer")

__all__ = [
    "OIoUAccumulator",
    "binarise_selected",
    "encode_expressions",
    "evaluate_referring",
    "image_groups",
    "mask_embeddings",
    "select_proposals",
    "untuned_model",
    "without_sma",
]


# ------------------------------------------------------------------------------------------ scoring
@dataclass
class OIoUAccumulator:
    """Cumulative intersection / union over referring expressions (oIoU) plus per-expression IoUs."""

    intersection: int = 0
    union: int = 0
    ious: list[float] = field(default_factory=list)

    def add(self, pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        """Score N predictions of one image.

        Args:
            pred: (N, H, W) bool predicted masks, one per expression.
            gt: (N, H, W) or (H, W) bool ground-truth masks (one mask broadcasts to every expression).

        Returns:
            (N,) float64 IoU of each expression.
        """
        pred = pred.bool()
        gt = gt.to(pred.device).bool().expand_as(pred)  # (N, H, W)
        inter = (pred & gt).flatten(1).sum(dim=1)  # (N,)
        union = (pred | gt).flatten(1).sum(dim=1)  # (N,)
        self.intersection += int(inter.sum())
        self.union += int(union.sum())
        iou = torch.where(union > 0, inter.double() / union.clamp(min=1).double(), torch.zeros_like(union).double())
        self.ious.extend(iou.tolist())
        return iou

    @property
    def num_expressions(self) -> int:
        return len(self.ious)

    def summary(self) -> dict[str, float | int | None]:
        """``oIoU`` and ``mIoU`` in percent (None without expressions), counts."""
        n = self.num_expressions
        return {"oIoU": 100.0 * self.intersection / self.union if self.union else (0.0 if n else None),
                "mIoU": 100.0 * float(np.mean(self.ious)) if n else None,
                "num_expressions": n, "intersection": self.intersection, "union": self.union}


# ------------------------------------------------------------------------------------------ selection
def select_proposals(mask_emb: torch.Tensor, text_emb: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Index of the proposal with the highest cosine similarity to each expression.

    Args:
        mask_emb: (Q, E) proposal embeddings (any norm).
        text_emb: (N, E) expression embeddings (any norm).
        valid: optional (Q,) bool; invalid proposals are never picked (unless none is valid).

    Returns:
        (N,) int64 proposal indices.
    """
    sim = F.normalize(text_emb.float(), dim=-1) @ F.normalize(mask_emb.float(), dim=-1).T  # (N, Q) cosine
    if valid is not None and bool(valid.any()):
        sim = sim.masked_fill(~valid.to(sim.device)[None, :], float("-inf"))  # (N, Q): invalid columns out
    return sim.argmax(dim=-1)  # (N,)


def binarise_selected(proposals: torch.Tensor, index: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The selected proposals at image size, binarised at sigmoid ≥ 0.5.

    Args:
        proposals: (Q, h, w) mask logits covering the image.
        index: (N,) selected proposal per expression.
        size: (H, W) image size.

    Returns:
        (N, H, W) bool masks.
    """
    chosen, inverse = torch.unique(index, return_inverse=True)  # (M,), (N,): upsample each proposal once
    logits = proposals[chosen].float()  # (M, h, w)
    if tuple(logits.shape[-2:]) != tuple(size):
        logits = F.interpolate(logits[None], size=tuple(size), mode="bilinear", align_corners=False)[0]  # (M, H, W)
    return (logits >= 0)[inverse]  # (N, H, W): logit ≥ 0 ⇔ sigmoid ≥ 0.5


# ------------------------------------------------------------------------------------------ CLIP
def untuned_model(meta: Mapping[str, Any], *, device: torch.device | str | None = None) -> nn.Module:
    """The "before" model of a trained cell: its model config built under its seed, no trained state.

    Args:
        meta: the metadata of :func:`smart.train.checkpoint.load_trained` (``model_config``, ``seed``).
        device: where to put the model.

    Returns:
        the model in eval mode; its CLIP holds the pretrained weights (or the seeded random init of the
        mini / test CLIPs, exactly as :func:`~smart.train.checkpoint.load_trained` rebuilds it).
    """
    from smart.model.smart import build_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(meta["seed"]))
        model = build_model(dict(meta["model_config"]))
    if device is not None:
        model.to(device)
    return model.eval()


@contextmanager
def without_sma(model: nn.Module) -> Iterator[nn.Module]:
    """Temporarily detach SMA's Task Information Extraction from the mask classifier (plain mask tokens)."""
    classifier = model.classifier
    tie = classifier.tie
    classifier.tie = None
    try:
        yield model
    finally:
        classifier.tie = tie


@torch.no_grad()
def mask_embeddings(model: nn.Module, images: torch.Tensor, proposals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """CLIP mask-token embeddings of proposals, SMA bypassed.

    Args:
        model: a :class:`~smart.model.smart.SmartModel`.
        images: (B, 3, H, W) RGB in 0-255.
        proposals: (B, Q, h, w) mask logits (the generator's, not DA-adapted).

    Returns:
        ((B, Q, E) L2-normalised embeddings, (B, Q) bool proposals that covered no CLIP patch).
    """
    clip_images = model.preprocess(images)  # (B, 3, S, S)
    with without_sma(model):
        _, xm, mask = model.classifier.forward_tokens(clip_images, proposals.float(), None)  # xm (B, Q, D)
    z = model.classifier.tower.head(xm)  # (B, Q, E)
    return F.normalize(z.float(), dim=-1), mask.empty  # (B, Q, E), (B, Q)


@torch.no_grad()
def encode_expressions(model: nn.Module, sentences: Sequence[str], *, batch_size: int = 256) -> torch.Tensor:
    """CLIP text embeddings of raw referring expressions (no prompt template): (N, E), L2-normalised."""
    device = model.pixel_mean.device
    chunks = []
    for i in range(0, len(sentences), batch_size):
        ids = model.tokenizer(list(sentences[i:i + batch_size])).to(device)  # (n, ctx)
        chunks.append(F.normalize(model.clip.encode_text(ids).float(), dim=-1))  # (n, E)
    if not chunks:
        return torch.zeros((0, model.classifier.embed_dim), device=device)
    return torch.cat(chunks)  # (N, E)


# ------------------------------------------------------------------------------------------ evaluation
def image_groups(records: Sequence[Mapping[str, Any]]) -> list[list[int]]:
    """Record indices grouped by ``image_id``, groups in order of first appearance."""
    groups: dict[Any, list[int]] = {}
    for i, rec in enumerate(records):
        groups.setdefault(rec["image_id"], []).append(i)
    return list(groups.values())


@torch.no_grad()
def evaluate_referring(models: Mapping[str, nn.Module], dataset: Any,
                       proposals: Callable[[list[dict], torch.Tensor], torch.Tensor], *,
                       device: torch.device | str = "cpu", limit: int | None = None, skip_empty: bool = True,
                       text_batch_size: int = 256, desc: str = "refer",
                       groups: Mapping[int, str] | None = None) -> dict[str, dict]:
    """oIoU / mIoU of zero-shot referring segmentation for one or more CLIPs on the same proposals.

    Args:
        models: name → :class:`~smart.model.smart.SmartModel` (e.g. ``{"before": …, "after": …}``); each
            is scored on the same proposals, computed once per image.
        dataset: a refer :class:`smart.data.registry.Dataset` (samples with ``image``, ``mask``,
            ``sentences``, ``image_id``).
        proposals: ``fn(samples, images (B, 3, H, W) 0-255) -> (B, Q, h, w)`` mask logits covering each image.
        device: where the models run.
        limit: score only the first ``limit`` refs (smoke runs).
        skip_empty: never pick a proposal that covers no CLIP patch (an empty mask); if every proposal
            of an image is empty, all are candidates.
        text_batch_size: expressions per text-tower forward.
        desc: progress-bar label.
        groups: category id → class group (the mini world's, :func:`smart.data.mini.groups.groups_by_index`):
            adds the same numbers per group of the referred object's class under ``"groups"``.

    Returns:
        name → ``{"oIoU", "mIoU" (percent), "num_expressions", "num_refs", "num_images", "intersection",
        "union", "seconds"}`` (``seconds``: the whole evaluation, proposals included), and with ``groups``
        ``"groups": {group: {"oIoU", "mIoU", "num_expressions", "intersection", "union"}}``.
    """
    from smart.utils.logging import progress

    if dataset.spec.task != "refer":
        raise ValueError(f"{dataset.name!r} is not a referring-segmentation dataset ({dataset.spec.task})")
    n = len(dataset) if limit is None else min(limit, len(dataset))
    records = dataset.records[:n]
    image_sets = image_groups(records)
    # every expression of the split, in record order: one batched text pass per model
    sentences = [s for rec in records for s in rec["sentences"]]
    offsets = np.cumsum([0] + [len(rec["sentences"]) for rec in records])  # record i → sentences[o_i:o_{i+1}]
    t0 = time.perf_counter()
    text = {name: encode_expressions(m, sentences, batch_size=text_batch_size) for name, m in models.items()}  # (N, E)
    acc = {name: OIoUAccumulator() for name in models}
    by_group: dict[str, dict[str, OIoUAccumulator]] = {name: {} for name in models}
    expr_group = None
    if groups is not None:  # the group of each expression's referred class
        expr_group = np.asarray([groups.get(int(rec["category_id"]), "") if rec.get("category_id") is not None
                                 else "" for rec in records for _ in rec["sentences"]])
    bar = progress(total=n, desc=desc, unit="ref")
    for group in image_sets:
        samples = [dataset[i] for i in group]  # refs of one image (the image is decoded per ref)
        image = samples[0]["image"]  # (H, W, 3) uint8
        H, W = image.shape[:2]
        images = torch.tensor(image).permute(2, 0, 1)[None].float().to(device)  # (1, 3, H, W)
        props = proposals(samples[:1], images).to(device)  # (1, Q, h, w)
        gts = torch.stack([torch.tensor(s["mask"], dtype=torch.bool) for s in samples])  # (R, H, W)
        lengths = [int(offsets[i + 1] - offsets[i]) for i in group]
        gt_per_expr = gts.repeat_interleave(torch.as_tensor(lengths), dim=0)  # (N_img, H, W)
        expr = torch.cat([torch.arange(int(offsets[i]), int(offsets[i + 1])) for i in group])  # (N_img,)
        eg = expr_group[expr.numpy()] if expr_group is not None else None  # (N_img,) group of each expression
        for name, model in models.items():
            z, empty = mask_embeddings(model, images, props)  # (1, Q, E), (1, Q)
            valid = ~empty[0] if skip_empty else None  # (Q,)
            idx = select_proposals(z[0], text[name][expr.to(text[name].device)], valid)  # (N_img,)
            pred = binarise_selected(props[0], idx, (H, W)).cpu()  # (N_img, H, W) bool
            acc[name].add(pred, gt_per_expr)
            if eg is not None:
                for g in sorted(set(eg) - {""}):
                    sel = torch.from_numpy(eg == g)
                    by_group[name].setdefault(g, OIoUAccumulator()).add(pred[sel], gt_per_expr[sel])
        bar.update(len(group))
    bar.close()
    seconds = round(time.perf_counter() - t0, 2)
    out = {name: {**a.summary(), "num_refs": n, "num_images": len(image_sets), "seconds": seconds}
           for name, a in acc.items()}
    if groups is not None:
        for name in models:
            out[name]["groups"] = {g: {k: v for k, v in a.summary().items() if k != "ious"}
                                   for g, a in sorted(by_group[name].items())}
    return out
