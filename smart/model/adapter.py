"""Distribution Adapter (DA): paper §4 "Distribution Adapter", Table 3(c); ``method-spec.md`` §4.6.

"A lightweight Distribution Adapter, consisting of only two convolutional layers, adjusts the mask
proposals to align with CLIP's preferred input distribution." The spec's reading [REC + INFER]:

    m' = m + Conv2d(C_h -> 1, 3x3)(GELU(Conv2d(1 -> C_h, 3x3)(m)))      (2 layers, the default)

applied per proposal to the mask *logits* of the frozen generator, with the **last conv zero-initialised**
so the DA is the identity at step 0. Its output m' is (i) binarised into the Eq. 5 attention mask (no
gradient flows through that threshold) and (ii) the predicted mask supervised by Dice/BCE and used at
inference, which is the only signal that trains it (spec I3).

Table 3(c) variants: 0 layers = identity; 1 layer = a residual Conv2d(1 -> 1, 3x3); 3 layers =
1 -> C_h -> C_h -> 1.
"""

from __future__ import annotations

import torch
from torch import nn


class DistributionAdapter(nn.Module):
    """Residual stack of 3x3 convs on each proposal's mask logits, identity at initialisation.

    Args:
        num_layers: number of conv layers, 0 (identity) to 3.
        hidden: hidden channels C_h of the intermediate convs (unused with 0 or 1 layer).
    """

    def __init__(self, *, num_layers: int = 2, hidden: int = 16):
        super().__init__()
        if not 0 <= num_layers <= 3:
            raise ValueError(f"num_layers must be in 0..3, got {num_layers}")
        self.num_layers = num_layers
        self.hidden = hidden
        layers: list[nn.Module] = []
        chans = [1] + [hidden] * (num_layers - 1) + [1] if num_layers else []
        for i in range(num_layers):
            layers.append(nn.Conv2d(chans[i], chans[i + 1], kernel_size=3, padding=1))
            if i < num_layers - 1:
                layers.append(nn.GELU())
        self.body = nn.Sequential(*layers)
        if num_layers:
            last = layers[-1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def forward(self, mask_logits: torch.Tensor) -> torch.Tensor:
        """(B, Q, h, w) proposal mask logits -> (B, Q, h, w) adapted mask logits."""
        if self.num_layers == 0:
            return mask_logits
        B, Q, h, w = mask_logits.shape
        m = mask_logits.reshape(B * Q, 1, h, w)  # (B*Q, 1, h, w): one channel per proposal
        m = m + self.body(m)  # (B*Q, 1, h, w): residual, zero update at init
        return m.reshape(B, Q, h, w)

    def extra_repr(self) -> str:
        return f"num_layers={self.num_layers}, hidden={self.hidden}"
