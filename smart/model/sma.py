"""Semantic-guided Mask Attention (SMA), Task Information Extraction: paper §4, Eqs. 1-4.

Step 1 (TIE, Eqs. 3-4) is implemented here; step 2 (task-aware masked attention, Eqs. 1, 2 and 5) is
the mask stream of :mod:`smart.model.clip_classifier`, which calls this module in every block:

    q_mask, k_tgt, v_tgt = g_q([MASK]), g_k([TGT]), g_v([TGT])          (Eq. 4)
    [MASK^]              = softmax(q_mask k_tgt^T / sqrt(d)) v_tgt     (Eq. 3)

and then f_q([MASK^]) queries the image patches (Eq. 2). Spec choices (``method-spec.md`` §4.5):

* ONE set of randomly initialised g_q, g_k, g_v shared by all blocks (forced by the paper's 26M
  trainable-parameter figure), applied in every block (TIE at the input alone would give every
  proposal the same [MASK^], since all mask tokens start as the CLS copy);
* g_q: Linear(width -> d), g_k: Linear(text_dim -> d), g_v: Linear(text_dim -> width), d = 256, one
  head, scale 1/sqrt(d) (I7: the paper omits it "for brevity"), softmax over the t target classes;
* [MASK] = ln_1 of the block's mask tokens; [TGT] = L2-normalised class text embeddings (t, text_dim);
* no residual (literal Eq. 3); ``residual=True`` gives u + TIE(u). The block residual still carries the
  mask-token stream either way.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class TaskInformationExtraction(nn.Module):
    """The shared g_q / g_k / g_v of Eqs. 3-4.

    Args:
        width: visual token width C of the CLIP image encoder (1024 for ViT-L/14).
        text_dim: text embedding width of [TGT] (768 for ViT-L/14), see spec I5.
        dim: q/k width d of the single TIE head.
        residual: add the input to the TIE output (not in the paper).
    """

    def __init__(self, *, width: int, text_dim: int, dim: int = 256, residual: bool = False):
        super().__init__()
        self.width, self.text_dim, self.dim, self.residual = width, text_dim, dim, residual
        self.g_q = nn.Linear(width, dim)
        self.g_k = nn.Linear(text_dim, dim)
        self.g_v = nn.Linear(text_dim, width)
        self.scale = 1.0 / math.sqrt(dim)

    def project_targets(self, tgt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[TGT] (t, text_dim) or (B, t, text_dim) -> k_tgt (.., t, d), v_tgt (.., t, width).

        Computed once per forward pass: they do not depend on the block.
        """
        return self.g_k(tgt), self.g_v(tgt)

    def forward(self, mask_tokens: torch.Tensor, k_tgt: torch.Tensor, v_tgt: torch.Tensor) -> torch.Tensor:
        """[MASK] (B, Q, width) -> [MASK^] (B, Q, width), Eq. 3."""
        q = self.g_q(mask_tokens)  # (B, Q, d)
        k_t = k_tgt if k_tgt.dim() == 3 else k_tgt.unsqueeze(0)  # (B|1, t, d)
        v_t = v_tgt if v_tgt.dim() == 3 else v_tgt.unsqueeze(0)  # (B|1, t, width)
        att = torch.matmul(q, k_t.transpose(-2, -1)) * self.scale  # (B, Q, t)
        att = att.softmax(dim=-1)  # (B, Q, t): distribution over target classes
        out = torch.matmul(att.to(v_t.dtype), v_t)  # (B, Q, width)
        return mask_tokens + out if self.residual else out

    def extra_repr(self) -> str:
        return f"width={self.width}, text_dim={self.text_dim}, dim={self.dim}, residual={self.residual}"
