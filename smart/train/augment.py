"""Large-scale jitter (LSJ) and random flip, applied consistently to image, panoptic GT and proposals.

The training augmentation of Mask2Former's COCO panoptic "new baseline" mapper
(facebookresearch/Mask2Former ``mask2former/data/dataset_mappers/coco_panoptic_new_baseline_dataset_mapper.py``,
``build_transform_gen``; re-implemented here): ``RandomFlip`` (horizontal), then detectron2
``ResizeScale(min_scale, max_scale, target = crop)``, then ``FixedSizeCrop(crop)`` (a random crop when
the resized image is larger, bottom/right padding to ``crop × crop`` otherwise; image padding 128).
The paper trains with 1024 crops (§5.3), scales 0.1–2.0 (spec §4.11).

One :class:`LSJTransform` (flip, scale, resized size, crop offset) is drawn per sample and applied to

* the image (bilinear, anti-aliased when shrinking; PIL-like), padding 128;
* the panoptic segment-id map (nearest, as detectron2 resizes segmentations), padding 0 = void;
* the proposal mask logits (K, h, w) of a proposal store, which cover the image's field of view at
  any resolution: resampled bilinearly onto a ``crop/stride`` grid whose pixel centres map to the same
  image points as the crop's pixels; the LSJ padding gets ``pad_logit`` (outside every mask).

All three use the same geometry — continuous image coordinates with pixel edges at integers, the
``align_corners=False`` convention — so a proposal equal to a GT mask stays on that mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["IMAGE_PAD_VALUE", "LSJTransform", "augment_sample", "sample_transform"]

IMAGE_PAD_VALUE = 128.0  # detectron2 FixedSizeCrop pad_value (0-255 RGB)


@dataclass(frozen=True)
class LSJTransform:
    """One draw of flip + ResizeScale + FixedSizeCrop for an H × W image."""

    height: int  # H of the source image
    width: int  # W
    flip: bool  # horizontal flip (applied first)
    new_h: int  # size after ResizeScale
    new_w: int
    y0: int  # crop offset in the resized image
    x0: int
    crop: int  # output side

    @property
    def scale_y(self) -> float:
        return self.new_h / self.height

    @property
    def scale_x(self) -> float:
        return self.new_w / self.width

    # ------------------------------------------------------------------ image
    def apply_image(self, image: np.ndarray | torch.Tensor, *, pad_value: float = IMAGE_PAD_VALUE) -> torch.Tensor:
        """(H, W, 3) uint8 array or (3, H, W) tensor, RGB 0-255 → (3, crop, crop) float32 0-255."""
        if isinstance(image, np.ndarray):
            x = torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1)  # (3, H, W), a copy
        else:
            x = image.float()  # (3, H, W)
        if self.flip:
            x = x.flip(-1)
        if (self.new_h, self.new_w) != (self.height, self.width):
            x = F.interpolate(x[None], size=(self.new_h, self.new_w), mode="bilinear", align_corners=False,
                              antialias=True)[0].clamp_(0.0, 255.0)  # (3, new_h, new_w)
        x = x[:, self.y0:self.y0 + self.crop, self.x0:self.x0 + self.crop]  # (3, ≤crop, ≤crop)
        out = torch.full((3, self.crop, self.crop), float(pad_value), dtype=torch.float32)
        out[:, :x.shape[1], :x.shape[2]] = x
        return out  # (3, crop, crop)

    # ------------------------------------------------------------------ segmentation
    def _nearest_index(self, n_out: int, n_src: int, offset: int, size_resized: int) -> np.ndarray:
        """Source index (PIL NEAREST: floor of the pixel-centre coordinate) of each resized pixel
        offset .. offset + n_out - 1 (clipped to the resized size)."""
        u = np.arange(offset, min(offset + n_out, size_resized))
        return np.minimum(np.floor((u + 0.5) * (n_src / size_resized)).astype(np.int64), n_src - 1)

    def apply_segmentation(self, seg: np.ndarray, *, pad_value: int = 0) -> np.ndarray:
        """(H, W) integer map (e.g. panoptic segment ids) → (crop, crop), nearest, padding ``pad_value``."""
        seg = np.asarray(seg)
        if self.flip:
            seg = seg[:, ::-1]
        ys = self._nearest_index(self.crop, self.height, self.y0, self.new_h)
        xs = self._nearest_index(self.crop, self.width, self.x0, self.new_w)
        out = np.full((self.crop, self.crop), pad_value, dtype=seg.dtype)
        out[:len(ys), :len(xs)] = seg[ys[:, None], xs[None, :]]
        return out

    # ------------------------------------------------------------------ proposals
    def proposal_grid(self, out_h: int, out_w: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``grid_sample`` grid (1, out_h, out_w, 2) into the source field of view and the (out_h, out_w)
        bool map of output pixels that fall inside the resized image (not in the LSJ padding)."""
        sy, sx = self.crop / out_h, self.crop / out_w  # crop pixels per output pixel
        cy = (torch.arange(out_h, dtype=torch.float64) + 0.5) * sy + self.y0  # resized-image coords (centres)
        cx = (torch.arange(out_w, dtype=torch.float64) + 0.5) * sx + self.x0
        inside = (cy < self.new_h)[:, None] & (cx < self.new_w)[None, :]  # (out_h, out_w)
        y = cy / self.scale_y  # source coords, edges at integers (after the flip)
        x = cx / self.scale_x
        if self.flip:
            x = self.width - x
        gy = (2.0 * y / self.height - 1.0)[:, None].expand(out_h, out_w)
        gx = (2.0 * x / self.width - 1.0)[None, :].expand(out_h, out_w)
        grid = torch.stack([gx, gy], dim=-1).float()[None]  # (1, out_h, out_w, 2) (x, y)
        return grid, inside

    def apply_proposals(self, mask_logits: torch.Tensor | np.ndarray, *, out_size: tuple[int, int],
                        pad_logit: float = -20.0) -> torch.Tensor:
        """(K, h, w) mask logits covering the source image → (K, out_h, out_w) covering the crop."""
        m = torch.as_tensor(np.asarray(mask_logits) if not isinstance(mask_logits, torch.Tensor) else mask_logits)
        m = m.float()
        K = m.shape[0]
        grid, inside = self.proposal_grid(*out_size)
        grid = grid.to(m.device)
        if K == 0:
            return m.new_zeros((0, *out_size))
        out = F.grid_sample(m[None], grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
        return out.masked_fill_(~inside.to(m.device)[None], float(pad_logit))  # (K, out_h, out_w)


def sample_transform(rng: np.random.Generator, height: int, width: int, *, crop: int, min_scale: float,
                     max_scale: float, flip_prob: float) -> LSJTransform:
    """Draw flip, ResizeScale and FixedSizeCrop as detectron2 does (same order of random draws)."""
    flip = bool(rng.uniform() < flip_prob)
    random_scale = rng.uniform(min_scale, max_scale)
    scale = min(random_scale * crop / height, random_scale * crop / width)  # ResizeScale
    new_h = max(int(np.round(height * scale)), 1)
    new_w = max(int(np.round(width * scale)), 1)
    max_off_y, max_off_x = max(new_h - crop, 0), max(new_w - crop, 0)  # FixedSizeCrop
    oy, ox = rng.uniform(0.0, 1.0, size=2)
    y0, x0 = int(np.round(max_off_y * oy)), int(np.round(max_off_x * ox))
    return LSJTransform(height=height, width=width, flip=flip, new_h=new_h, new_w=new_w, y0=y0, x0=x0, crop=crop)


def augment_sample(sample: dict, rng: np.random.Generator, *, crop: int, min_scale: float, max_scale: float,
                   flip_prob: float, proposals: torch.Tensor | np.ndarray | None = None, proposal_stride: int = 4,
                   pad_logit: float = -20.0) -> dict:
    """Augment one decoded panoptic sample (``image`` (H, W, 3) uint8, ``pan_ids`` (H, W), ``segments_info``).

    Returns ``image`` (3, crop, crop) float32 0-255, ``pan_ids`` (crop, crop) int64 (0 = void/padding),
    ``segments_info`` restricted to the segments still visible, ``transform`` (the :class:`LSJTransform`)
    and, given ``proposals`` (K, h, w), ``proposals`` (K, ceil(crop/stride), ceil(crop/stride)).
    """
    H, W = sample["image"].shape[:2]
    t = sample_transform(rng, H, W, crop=crop, min_scale=min_scale, max_scale=max_scale, flip_prob=flip_prob)
    out = {"image": t.apply_image(sample["image"]), "transform": t}
    if "pan_ids" in sample:
        pan = t.apply_segmentation(sample["pan_ids"], pad_value=0)
        present = set(np.unique(pan).tolist())
        out["pan_ids"] = pan
        out["segments_info"] = [s for s in sample["segments_info"] if s["id"] in present]
    if proposals is not None:
        side = -(-crop // proposal_stride)
        out["proposals"] = t.apply_proposals(proposals, out_size=(side, side), pad_logit=pad_logit)
    return out
