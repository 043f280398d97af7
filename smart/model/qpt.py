"""Query Projection Tuning (QPT) and the Table 3(a)/(b) tuning switches: paper §4 "QPT"; spec §4.7.

QPT fine-tunes only the query projection f_q of every attention block of CLIP's image encoder; the
rest of CLIP, the text tower and the mask generator stay frozen. That is only possible because
:mod:`smart.model.clip_classifier` splits open_clip's packed ``in_proj_weight`` into separate
``q_proj`` / ``k_proj`` / ``v_proj`` Linears: a gradient hook that zeroes the K/V rows does not keep
them frozen under AdamW with weight decay (decoupled decay acts on the whole tensor; spec §4.7).

This module sets ``requires_grad`` for a ``tune`` value (Table 3a), and provides two wrappers:

* :class:`LoRALinear` for Table 3(b). ``peft`` is not a dependency of this project (and its LoRA
  targets ``nn.Linear`` modules by name, which our split projections are, but it would add a package
  and a wrapping layer around the whole model for ~40 lines of code), so a minimal LoRA layer is
  written here: y = W x + b + (alpha / sqrt(r)) * B A x, A kaiming-uniform, B zeros (the scaling and
  initialisation of MaxZanella/CLIP-LoRA, spec §4.12), base weights frozen.
* :class:`DeltaLinear` for ``qpt_param='delta'``: W = W_pre + dW with a zero-initialised trainable dW
  (and db), so that weight decay pulls toward the pretrained weights instead of toward zero.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from smart.model.config import TUNE_TARGETS


class LoRALinear(nn.Module):
    """A frozen Linear plus a trainable low-rank update.

    Args:
        base: the Linear to adapt (kept, frozen).
        rank: r, the rank of the update.
        alpha: scaling numerator; the update is scaled by alpha / sqrt(r).
        dropout: dropout on the LoRA branch input.
    """

    def __init__(self, base: nn.Linear, *, rank: int, alpha: float = 1.0, dropout: float = 0.0):
        super().__init__()
        if rank < 1:
            raise ValueError(f"rank must be >= 1, got {rank}")
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.rank, self.alpha = rank, alpha
        self.scaling = alpha / math.sqrt(rank)
        factory = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, **factory))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, **factory))
        if base.weight.device.type != "meta":
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (.., in) -> (.., out): frozen path + scaled low-rank path (zero at init since B = 0)
        return self.base(x) + F.linear(F.linear(self.dropout(x), self.lora_A), self.lora_B) * self.scaling

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha}"


class DeltaLinear(nn.Module):
    """A frozen Linear plus a full-rank, zero-initialised trainable offset (``qpt_param='delta'``).

    Args:
        base: the Linear whose weights are offset (kept, frozen).
    """

    def __init__(self, base: nn.Linear):
        super().__init__()
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.delta_weight = nn.Parameter(torch.zeros_like(base.weight))
        self.delta_bias = nn.Parameter(torch.zeros_like(base.bias)) if base.bias is not None else None

    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight + self.delta_weight

    @property
    def bias(self) -> torch.Tensor | None:
        if self.base.bias is None:
            return None
        return self.base.bias + self.delta_bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)  # (.., in) -> (.., out)


_PROJ_ATTR = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "out_proj"}


def _set_grad(params: Iterable[nn.Parameter], flag: bool) -> None:
    for p in params:
        p.requires_grad_(flag)


def apply_tuning(classifier, *, tune: str, qpt_param: str = "weight",
                 lora_rank: int = 0, lora_alpha: float = 1.0, lora_targets: Iterable[str] = ("q", "k", "v", "o"),
                 tune_text_encoder: bool = False) -> None:
    """Freeze the CLIP model of ``classifier`` and unfreeze (or wrap) what a Table 3 cell tunes.

    Args:
        classifier: a :class:`~smart.model.clip_classifier.ClipMaskClassifier` (its q/k/v already split).
        tune: a key of :data:`~smart.model.config.TUNE_TARGETS` ("q": QPT; "none": CLIP frozen).
        qpt_param: "weight" (tune the projection itself) or "delta" (wrap it in :class:`DeltaLinear`).
        lora_rank: > 0 wraps ``lora_targets`` of every block in :class:`LoRALinear`.
        lora_alpha: LoRA scaling numerator.
        lora_targets: subset of q, k, v, o.
        tune_text_encoder: also unfreeze the text tower (Table 3e).
    """
    if tune not in TUNE_TARGETS:
        raise ValueError(f"unknown tune value {tune!r}")
    clip = classifier.clip
    _set_grad(clip.parameters(), False)
    targets = TUNE_TARGETS[tune]
    tower = classifier.tower
    if "all" in targets:
        _set_grad(tower.visual.parameters(), True)
    for blk in tower.blocks:
        attn = blk.attn
        for t in ("q", "k", "v"):
            if t not in targets:
                continue
            name = _PROJ_ATTR[t]
            if t == "q" and attn.q_proj_mask is not None:  # qpt_scope='mask_only': tune the mask-token copy
                name = "q_proj_mask"
            if qpt_param == "delta":
                setattr(attn, name, DeltaLinear(getattr(attn, name)))
            else:
                _set_grad(getattr(attn, name).parameters(), True)
        if "mlp" in targets:
            _set_grad(blk.mlp.parameters(), True)
        if lora_rank > 0:
            for t in lora_targets:
                name = _PROJ_ATTR[t]
                setattr(attn, name, LoRALinear(getattr(attn, name), rank=lora_rank, alpha=lora_alpha))
    if tune_text_encoder:
        visual_ids = {id(p) for p in tower.visual.parameters()}
        _set_grad((p for p in clip.parameters() if id(p) not in visual_ids), True)
        clip.logit_scale.requires_grad_(False)  # the temperature stays CLIP's (clamped at 100)
