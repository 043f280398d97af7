"""Hungarian matching and the set-prediction loss of SMART (paper Eq. 6, ``docs/method-spec.md`` §4.9).

Eq. 6 of the paper is L = λ_ce·L_ce + λ_dice·L_dice + λ_bce·L_bce with λ = 2 / 5 / 5. The paper gives no
more detail; what follows is Mask2Former's matcher and criterion (facebookresearch/Mask2Former
``mask2former/modeling/matcher.py`` and ``criterion.py``, re-implemented here, not copied):

* **Matching** (per image): cost[q, n] = 2 · (−softmax(logits_q)[label_n]) + 5 · BCE(q, n) + 5 · Dice(q, n),
  where BCE and Dice are computed on ``num_points`` (12,544 = 112²) uniformly random points that are
  shared by all predictions and targets of the image (``grid_sample``, ``align_corners=False``), solved
  with ``scipy.optimize.linear_sum_assignment``.
* **Losses**: cross-entropy over K+1 classes (weight 1 per class, ``eos_coef`` = 0.1 for the last,
  void/no-object column; unmatched queries are trained towards void), PyTorch's weighted mean;
  sigmoid BCE (mean over points) and Dice (+1 smoothing) on importance-sampled points (oversample
  ratio 3, importance ratio 0.75, uncertainty = −|logit|), each summed over matched pairs and divided
  by the average number of GT masks per process (all-reduced when ``torch.distributed`` is
  initialised, clamped ≥ 1). SMART has a single output, so there is no deep supervision.

Targets, one dict per image: ``{"labels": (N,) int64 contiguous class ids in 0..K-1,
"masks": (N, H, W) bool}``. N = 0 is allowed (then only the CE term, all queries → void, is non-zero).
The target masks must cover the same field of view as ``pred_masks`` (the padded network input;
Mask2Former pads its GT masks to the padded image size): point coordinates are normalised to [0, 1]
in both, so the resolutions may differ. **Crowd segments are not targets** (Mask2Former's COCO
panoptic dataset mapper drops ``iscrowd`` segments); :func:`targets_from_panoptic` does this.

``num_points=None`` is an exact mode for tests and tiny masks: instead of random points, the loss and
the costs are evaluated at every pixel centre of the prediction grid (no importance sampling).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

__all__ = [
    "CriterionConfig",
    "HungarianMatcher",
    "SetCriterion",
    "batch_dice_cost",
    "batch_sigmoid_ce_cost",
    "build_criterion",
    "dice_loss",
    "grid_point_coords",
    "point_sample",
    "sigmoid_ce_loss",
    "targets_from_panoptic",
    "uncertain_point_coords",
]


# --------------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class CriterionConfig:
    """Loss and matcher hyper-parameters (defaults: paper Eq. 6 weights + Mask2Former COCO config)."""

    class_weight: float = 2.0  # λ_ce, also the matcher's class cost
    mask_weight: float = 5.0  # λ_bce, also the matcher's BCE cost
    dice_weight: float = 5.0  # λ_dice, also the matcher's Dice cost
    eos_coef: float = 0.1  # CE weight of the void / no-object column
    num_points: int | None = 12544  # points per mask (112²); None = every prediction pixel (exact)
    oversample_ratio: float = 3.0  # candidates per kept point in importance sampling
    importance_sample_ratio: float = 0.75  # share of points chosen by uncertainty (−|logit|)

    def to_dict(self) -> dict:
        return asdict(self)


def build_criterion(cfg: CriterionConfig | Mapping[str, Any] | None, num_classes: int) -> SetCriterion:
    """Factory: a :class:`SetCriterion` (with its :class:`HungarianMatcher`) for ``num_classes`` classes."""
    if cfg is None:
        cfg = CriterionConfig()
    elif isinstance(cfg, Mapping):
        cfg = CriterionConfig(**cfg)
    matcher = HungarianMatcher(cost_class=cfg.class_weight, cost_mask=cfg.mask_weight,
                               cost_dice=cfg.dice_weight, num_points=cfg.num_points)
    return SetCriterion(num_classes=num_classes, matcher=matcher,
                        weight_dict={"loss_ce": cfg.class_weight, "loss_mask": cfg.mask_weight,
                                     "loss_dice": cfg.dice_weight},
                        eos_coef=cfg.eos_coef, num_points=cfg.num_points,
                        oversample_ratio=cfg.oversample_ratio,
                        importance_sample_ratio=cfg.importance_sample_ratio)


# --------------------------------------------------------------------------------------------------
# point sampling


def point_sample(masks: Tensor, coords: Tensor) -> Tensor:
    """Bilinearly sample ``masks`` at normalised ``coords`` (detectron2 ``point_sample`` semantics).

    Args:
        masks: (R, H, W) masks or mask logits.
        coords: (R, P, 2) or (P, 2) points, (x, y) in [0, 1] (0 = left/top edge, 1 = right/bottom edge).

    Returns:
        (R, P) sampled values (zero padding outside, ``align_corners=False``).
    """
    if coords.dim() == 2:
        coords = coords.unsqueeze(0).expand(masks.shape[0], -1, -1)  # (R, P, 2)
    grid = (2.0 * coords - 1.0).unsqueeze(2)  # (R, P, 1, 2) in [-1, 1]
    out = F.grid_sample(masks.unsqueeze(1).to(grid.dtype), grid, mode="bilinear",
                        padding_mode="zeros", align_corners=False)  # (R, 1, P, 1)
    return out[:, 0, :, 0]  # (R, P)


def grid_point_coords(h: int, w: int, *, device: torch.device | str | None = None) -> Tensor:
    """(h·w, 2) normalised (x, y) coordinates of every pixel centre of an h×w grid (row-major)."""
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h  # (h,)
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w  # (w,)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")  # (h, w) each
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)  # (h·w, 2)


def uncertain_point_coords(mask_logits: Tensor, *, num_points: int, oversample_ratio: float,
                           importance_sample_ratio: float,
                           generator: torch.Generator | None = None) -> Tensor:
    """Mask2Former importance sampling: mostly the points whose logit is closest to 0, plus random ones.

    Args:
        mask_logits: (R, H, W) mask logits.
        num_points: points to return per mask.
        oversample_ratio: ``num_points · oversample_ratio`` random candidates are drawn first.
        importance_sample_ratio: the share of the returned points that are the most uncertain
            candidates (uncertainty = −|logit|); the rest are fresh uniform random points.
        generator: optional ``torch.Generator`` for reproducible draws.

    Returns:
        (R, num_points, 2) normalised (x, y) coordinates.
    """
    R = mask_logits.shape[0]
    dev = mask_logits.device
    num_sampled = int(num_points * oversample_ratio)
    cand = torch.rand(R, num_sampled, 2, device=dev, generator=generator)  # (R, S, 2)
    cand_logits = point_sample(mask_logits, cand)  # (R, S)
    uncertainty = -cand_logits.abs()  # (R, S), high = close to the decision boundary
    num_uncertain = int(importance_sample_ratio * num_points)
    num_random = num_points - num_uncertain
    idx = torch.topk(uncertainty, k=num_uncertain, dim=1).indices  # (R, U)
    coords = torch.gather(cand, 1, idx.unsqueeze(-1).expand(-1, -1, 2))  # (R, U, 2)
    if num_random > 0:
        coords = torch.cat([coords, torch.rand(R, num_random, 2, device=dev, generator=generator)], 1)
    return coords  # (R, num_points, 2)


# --------------------------------------------------------------------------------------------------
# pairwise costs and per-pair losses (all on point samples)


def batch_sigmoid_ce_cost(logits: Tensor, targets: Tensor) -> Tensor:
    """Pairwise mean sigmoid BCE: (Q, P) logits × (N, P) {0,1} targets → (Q, N)."""
    P = logits.shape[1]
    pos = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")  # (Q, P)
    neg = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")  # (Q, P)
    return (pos @ targets.T + neg @ (1.0 - targets).T) / P  # (Q, N)


def batch_dice_cost(logits: Tensor, targets: Tensor) -> Tensor:
    """Pairwise Dice loss with +1 smoothing: (Q, P) logits × (N, P) targets → (Q, N)."""
    probs = logits.sigmoid()  # (Q, P)
    numer = 2.0 * probs @ targets.T  # (Q, N)
    denom = probs.sum(-1)[:, None] + targets.sum(-1)[None, :]  # (Q, N)
    return 1.0 - (numer + 1.0) / (denom + 1.0)  # (Q, N)


def sigmoid_ce_loss(logits: Tensor, targets: Tensor, num_masks: float) -> Tensor:
    """Σ over pairs of the mean-over-points sigmoid BCE, / num_masks. (M, P) logits and targets."""
    loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")  # (M, P)
    return loss.mean(1).sum() / num_masks


def dice_loss(logits: Tensor, targets: Tensor, num_masks: float) -> Tensor:
    """Σ over pairs of 1 − (2|p∩t| + 1) / (|p| + |t| + 1), / num_masks. (M, P) logits and targets."""
    probs = logits.sigmoid()  # (M, P)
    numer = 2.0 * (probs * targets).sum(-1)  # (M,)
    denom = probs.sum(-1) + targets.sum(-1)  # (M,)
    return (1.0 - (numer + 1.0) / (denom + 1.0)).sum() / num_masks


# --------------------------------------------------------------------------------------------------
# matcher


class HungarianMatcher(nn.Module):
    """One-to-one assignment of queries to GT segments by the Mask2Former cost (§4.9)."""

    def __init__(self, *, cost_class: float = 2.0, cost_mask: float = 5.0, cost_dice: float = 5.0,
                 num_points: int | None = 12544):
        """
        Args:
            cost_class: weight of −p(GT class).
            cost_mask: weight of the pairwise sigmoid BCE on the shared points.
            cost_dice: weight of the pairwise Dice loss on the shared points.
            num_points: uniformly random points shared by predictions and targets of an image;
                None = every pixel centre of the prediction grid (exact, deterministic).
        """
        super().__init__()
        if cost_class == 0 and cost_mask == 0 and cost_dice == 0:
            raise ValueError("all matcher costs are 0")
        self.cost_class = cost_class
        self.cost_mask = cost_mask
        self.cost_dice = cost_dice
        self.num_points = num_points

    def cost_matrix(self, logits: Tensor, masks: Tensor, target: Mapping[str, Tensor],
                    generator: torch.Generator | None = None) -> Tensor:
        """(Q, N) cost of one image: logits (Q, K+1), mask logits (Q, h, w), target labels/masks."""
        labels = target["labels"]  # (N,)
        tgt = target["masks"].float()  # (N, H, W)
        prob = logits.float().softmax(-1)  # (Q, K+1)
        cost_class = -prob[:, labels]  # (Q, N)
        if self.num_points is None:
            coords = grid_point_coords(*masks.shape[-2:], device=masks.device)  # (P, 2)
        else:
            coords = torch.rand(self.num_points, 2, device=masks.device, generator=generator)  # (P, 2)
        tgt_pts = point_sample(tgt, coords)  # (N, P)
        pred_pts = point_sample(masks.float(), coords)  # (Q, P)
        cost_mask = batch_sigmoid_ce_cost(pred_pts, tgt_pts)  # (Q, N)
        cost_dice = batch_dice_cost(pred_pts, tgt_pts)  # (Q, N)
        return self.cost_mask * cost_mask + self.cost_class * cost_class + self.cost_dice * cost_dice

    @torch.no_grad()
    def forward(self, outputs: Mapping[str, Tensor], targets: Sequence[Mapping[str, Tensor]],
                generator: torch.Generator | None = None) -> list[tuple[Tensor, Tensor]]:
        """Match every image of the batch.

        Args:
            outputs: ``pred_logits`` (B, Q, K+1) and ``pred_masks`` (B, Q, h, w) mask logits.
            targets: B dicts with ``labels`` (N,) and ``masks`` (N, H, W).
            generator: optional ``torch.Generator`` for the random points.

        Returns:
            B pairs (query indices (n,), target indices (n,)) as int64 CPU tensors, n = min(Q, N),
            sorted by query index.
        """
        out = []
        with torch.autocast(device_type=outputs["pred_masks"].device.type, enabled=False):
            for b, target in enumerate(targets):
                n_tgt = len(target["labels"])
                if n_tgt == 0:
                    empty = torch.zeros(0, dtype=torch.int64)
                    out.append((empty, empty.clone()))
                    continue
                C = self.cost_matrix(outputs["pred_logits"][b], outputs["pred_masks"][b], target, generator)
                C = C.cpu().numpy()
                if not np.isfinite(C).all():
                    raise FloatingPointError(f"non-finite matching cost in image {b}")
                rows, cols = linear_sum_assignment(C)
                out.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
        return out


# --------------------------------------------------------------------------------------------------
# criterion


def _num_masks(targets: Sequence[Mapping[str, Tensor]], device: torch.device) -> float:
    """Average number of GT masks per process (all-reduced under torch.distributed), clamped ≥ 1."""
    n = torch.as_tensor([float(sum(len(t["labels"]) for t in targets))], device=device)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(n)
        n = n / torch.distributed.get_world_size()
    return max(float(n.item()), 1.0)


class SetCriterion(nn.Module):
    """Mask2Former's set criterion with SMART's weights (Eq. 6): CE (void weight 0.1), BCE and Dice."""

    def __init__(self, *, num_classes: int, matcher: HungarianMatcher, weight_dict: Mapping[str, float],
                 eos_coef: float = 0.1, num_points: int | None = 12544, oversample_ratio: float = 3.0,
                 importance_sample_ratio: float = 0.75):
        """
        Args:
            num_classes: K, the number of real classes; logits have K+1 columns, the last = void.
            matcher: the :class:`HungarianMatcher`.
            weight_dict: weights of ``loss_ce``, ``loss_mask`` (BCE) and ``loss_dice`` in ``loss``.
            eos_coef: CE class weight of the void column (the other columns weigh 1).
            num_points: points per matched mask for BCE/Dice; None = every prediction pixel (exact).
            oversample_ratio: importance sampling, candidates per point.
            importance_sample_ratio: importance sampling, share of uncertain points.
        """
        super().__init__()
        self.num_classes = num_classes
        self.matcher = matcher
        self.weight_dict = dict(weight_dict)
        self.eos_coef = eos_coef
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        empty_weight = torch.ones(num_classes + 1)
        empty_weight[-1] = eos_coef
        self.register_buffer("empty_weight", empty_weight, persistent=False)  # (K+1,)

    def loss_labels(self, logits: Tensor, targets: Sequence[Mapping[str, Tensor]],
                    indices: Sequence[tuple[Tensor, Tensor]]) -> Tensor:
        """Weighted-mean CE over all B·Q queries; unmatched queries have the void target K."""
        B, Q, K1 = logits.shape  # (B, Q, K+1)
        if K1 != self.num_classes + 1:
            raise ValueError(f"pred_logits has {K1} columns, expected num_classes + 1 = {self.num_classes + 1}")
        target_classes = torch.full((B, Q), self.num_classes, dtype=torch.int64, device=logits.device)  # (B, Q)
        for b, (src, tgt) in enumerate(indices):
            if len(src):
                target_classes[b, src.to(logits.device)] = targets[b]["labels"].to(logits.device)[tgt]
        return F.cross_entropy(logits.float().transpose(1, 2), target_classes,  # (B, K+1, Q) vs (B, Q)
                               weight=self.empty_weight.to(logits.device))

    def loss_masks(self, masks: Tensor, targets: Sequence[Mapping[str, Tensor]],
                   indices: Sequence[tuple[Tensor, Tensor]], num_masks: float,
                   generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """(BCE, Dice) over matched pairs on importance-sampled (or all) points."""
        pred_pts, tgt_pts = [], []
        for b, (src, tgt) in enumerate(indices):
            if len(src) == 0:
                continue
            src_masks = masks[b, src.to(masks.device)].float()  # (n, h, w) logits
            tgt_masks = targets[b]["masks"].to(masks.device)[tgt.to(masks.device)].float()  # (n, H, W)
            if self.num_points is None:
                coords = grid_point_coords(*src_masks.shape[-2:], device=masks.device)  # (P, 2)
            else:
                with torch.no_grad():
                    coords = uncertain_point_coords(
                        src_masks, num_points=self.num_points, oversample_ratio=self.oversample_ratio,
                        importance_sample_ratio=self.importance_sample_ratio, generator=generator)  # (n, P, 2)
            with torch.no_grad():
                tgt_pts.append(point_sample(tgt_masks, coords))  # (n, P)
            pred_pts.append(point_sample(src_masks, coords))  # (n, P)
        if not pred_pts:
            zero = masks.sum() * 0.0  # keeps the graph connected for DDP
            return zero, zero.clone()
        pred = torch.cat(pred_pts)  # (M, P)
        tgt = torch.cat(tgt_pts)  # (M, P)
        return sigmoid_ce_loss(pred, tgt, num_masks), dice_loss(pred, tgt, num_masks)

    def forward(self, outputs: Mapping[str, Tensor], targets: Sequence[Mapping[str, Tensor]], *,
                generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """
        Args:
            outputs: ``pred_logits`` (B, Q, K+1), last column void; ``pred_masks`` (B, Q, h, w) logits.
            targets: B dicts ``labels`` (N,) int64 in 0..K-1, ``masks`` (N, H, W) bool.
            generator: optional ``torch.Generator`` (matcher points and importance sampling).

        Returns:
            ``loss_ce``, ``loss_mask`` (BCE), ``loss_dice`` (unweighted) and ``loss`` = Σ weight · term.
        """
        if len(targets) != outputs["pred_logits"].shape[0]:
            raise ValueError(f"{len(targets)} targets for a batch of {outputs['pred_logits'].shape[0]}")
        for b, t in enumerate(targets):
            lab = t["labels"]
            if len(lab) != len(t["masks"]):
                raise ValueError(f"image {b}: {len(lab)} labels but {len(t['masks'])} masks")
            if len(lab) and (int(lab.min()) < 0 or int(lab.max()) >= self.num_classes):
                raise ValueError(f"image {b}: labels must lie in 0..{self.num_classes - 1}")
        indices = self.matcher(outputs, targets, generator=generator)
        device = outputs["pred_logits"].device
        num_masks = _num_masks(targets, device)
        losses = {"loss_ce": self.loss_labels(outputs["pred_logits"], targets, indices)}
        losses["loss_mask"], losses["loss_dice"] = self.loss_masks(outputs["pred_masks"], targets, indices,
                                                                   num_masks, generator)
        losses["loss"] = sum(self.weight_dict.get(k, 0.0) * v for k, v in list(losses.items()))
        return losses


# --------------------------------------------------------------------------------------------------
# targets


def targets_from_panoptic(pan_ids: Any, segments_info: Sequence[Mapping], *, class_key: str = "train_id",
                          include_crowd: bool = False, device: torch.device | str | None = None
                          ) -> dict[str, Tensor]:
    """Panoptic GT of one image → ``{"labels": (N,) int64, "masks": (N, H, W) bool}``.

    Args:
        pan_ids: (H, W) segment-id map (0 = void), numpy or torch.
        segments_info: the image's segments (``id``, ``class_key``, ``iscrowd``), as
            ``smart.data.registry.Dataset`` returns them (``train_id`` = contiguous class id).
        class_key: the field holding the contiguous class id.
        include_crowd: keep ``iscrowd`` segments (default False: Mask2Former drops them from targets).
        device: where to put the tensors.

    A listed segment with no pixel in ``pan_ids`` (a stuff region that things cover entirely, which
    Mask2Former's ADE20K-150 GT keeps in its JSON) is no target.
    """
    ids = torch.as_tensor(np.asarray(pan_ids), device=device)  # (H, W)
    segs = [s for s in segments_info if include_crowd or not s.get("iscrowd", 0)]
    if segs:
        seg_ids = torch.as_tensor([int(s["id"]) for s in segs], dtype=ids.dtype, device=device)  # (N,)
        masks = ids.unsqueeze(0) == seg_ids[:, None, None]  # (N, H, W)
        keep = masks.flatten(1).any(dim=1)  # (N,) False for a segment with no pixel
        if not bool(keep.all()):
            masks = masks[keep]  # (N', H, W)
            segs = [s for s, k in zip(segs, keep.tolist()) if k]
    else:
        masks = torch.zeros((0, *ids.shape), dtype=torch.bool, device=device)  # (0, H, W)
    labels = torch.as_tensor([int(s[class_key]) for s in segs], dtype=torch.int64, device=device)  # (N,)
    return {"labels": labels, "masks": masks}

