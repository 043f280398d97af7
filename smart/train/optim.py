"""Optimiser, learning-rate schedule and gradient clipping of the SMART trainer.

* **AdamW** (paper §5.3: lr 1e-4, weight decay 0.05) over the model's own parameter groups
  (:meth:`smart.model.smart.SmartModel.param_groups`: >= 2-D weights decay, biases / 1-D / the void
  embedding do not, tuned CLIP parameters get ``lr * fq_lr_multiplier``; spec §4.7, I4). When the
  mask generator is tuned (Table 3e) its parameters join with the paper's "learning rate multiplier of
  0.1 applied to the feature backbone" on the generator's backbone.
* **Schedule** (spec §4.7 [REC]; the paper gives none): linear warmup (detectron2 ``WarmupParamScheduler``
  semantics: factor ``warmup_factor`` at iteration 0 rising linearly to 1 at ``warmup_iters``), then

  - ``step``: × ``lr_gamma`` at each milestone (fractions 0.88889 / 0.96296 of the run, the
    Mask2Former / FC-CLIP proportions 327778 / 355092 of 368750 → 8889 / 9630 at 10k, 22222 / 24074 at 25k);
  - ``poly``: (1 − it / iterations) ** ``poly_power`` (detectron2 ``WarmupPolyLR``, Mask2Former's ADE20K
    configs);
  - ``cosine``: half-cosine to ``min_lr_factor``;
  - ``constant``.

  The schedule is a pure function of the iteration, held by ``torch.optim.lr_scheduler.LambdaLR``, so a
  resumed run follows exactly the same learning rates.
* **Gradient clipping**: full-model L2-norm clipping at ``grad_clip`` (Mask2Former / MaskCLIP
  ``CLIP_TYPE: full_model``, ``CLIP_VALUE: 0.01``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from smart.config import TrainConfig

_log = logging.getLogger(__name__)

__all__ = ["LRSchedule", "build_optimizer", "build_scheduler", "clip_gradients", "decay_groups", "generator_param_groups",
           "no_decay"]


def no_decay(name: str, p: nn.Parameter, *, decay_ndim_only: bool = True, names: Sequence[str] = ()) -> bool:
    """The one rule of which parameters take no weight decay (every trainer): 0-/1-D tensors (norms,
    biases, scales; when ``decay_ndim_only``) and parameters whose name contains one of ``names``."""
    return (decay_ndim_only and p.ndim < 2) or any(k in name for k in names)


def decay_groups(named_params: Iterable[tuple[str, nn.Parameter]], *, weight_decay: float,
                 names: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Two AdamW groups of the trainable parameters, in order: decayed, and not (:func:`no_decay`)."""
    decay, keep = [], []
    for n, p in named_params:
        if p.requires_grad:
            (keep if no_decay(n, p, names=names) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": keep, "weight_decay": 0.0}]


def generator_param_groups(generator: nn.Module, *, lr: float, weight_decay: float, backbone_multiplier: float,
                           decay_ndim_only: bool = True, prefix: str = "generator.") -> list[dict[str, Any]]:
    """AdamW groups of a *tuned* mask generator (Table 3e): backbone parameters (a ``backbone`` or
    ``encoder`` module in the name, i.e. the Swin / ResNet feature extractor of transformers'
    Mask2Former or detectron2's ``backbone``) at ``lr * backbone_multiplier``; the rest at ``lr``."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in generator.named_parameters():
        if not p.requires_grad:
            continue
        parts = name.split(".")
        is_backbone = "backbone" in parts or ("pixel_level_module" in parts and "encoder" in parts)
        decay = not no_decay(name, p, decay_ndim_only=decay_ndim_only)
        groups.setdefault((is_backbone, decay), []).append(p)
    out = []
    for (is_backbone, decay), params in sorted(groups.items()):
        out.append({"params": params, "lr": lr * (backbone_multiplier if is_backbone else 1.0),
                    "weight_decay": weight_decay if decay else 0.0,
                    "name": f"{prefix}{'backbone' if is_backbone else 'head'}_{'decay' if decay else 'no_decay'}"})
    return out


def build_optimizer(model: nn.Module, cfg: TrainConfig, *, generator: nn.Module | None = None
                    ) -> torch.optim.AdamW:
    """AdamW over the trainable parameters of ``model`` (a SmartModel) and of a tuned ``generator``.

    Group learning rates already carry their multipliers; the schedule scales every group alike.
    """
    groups = model.param_groups(lr=cfg.lr, weight_decay=cfg.weight_decay, decay_ndim_only=cfg.decay_ndim_only)
    if generator is not None:
        groups += generator_param_groups(generator, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                         backbone_multiplier=cfg.backbone_multiplier,
                                         decay_ndim_only=cfg.decay_ndim_only)
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ValueError("nothing to train: the model has no trainable parameter")
    n = sum(p.numel() for g in groups for p in g["params"])
    _log.info("AdamW: %d trainable parameters in %d groups (%s)", n, len(groups),
              ", ".join(f"{g['name']}: {sum(p.numel() for p in g['params'])} @ lr {g['lr']:.3g}, "
                        f"wd {g['weight_decay']}" for g in groups))
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)


class LRSchedule:
    """The lr factor as a function of the iteration (multiplies every group's base lr); the schedule of
    all three trainers (SMART, the mini generators, the mini CLIP).

    Args:
        schedule: ``step`` | ``poly`` | ``cosine`` | ``constant``.
        iterations: total iterations of the run.
        warmup_iters: linear warmup length (0 = none).
        warmup_factor: factor at iteration 0 of a ``ramp`` warmup.
        milestones: step schedule, iterations where the factor is multiplied by ``gamma``.
        gamma: step decay.
        power: poly exponent.
        min_factor: floor of poly / cosine.
        warmup_mode: ``ramp`` (detectron2: ``warmup_factor`` → 1 over the warmup, times the decay, which
            runs over all iterations; the SMART trainer) or ``linear`` (``(it + 1) / warmup_iters`` during
            the warmup, then the decay over the remaining iterations; the pretraining stages).
    """

    def __init__(self, *, schedule: str, iterations: int, warmup_iters: int = 0, warmup_factor: float = 1.0,
                 milestones: Sequence[int] = (), gamma: float = 0.1, power: float = 0.9, min_factor: float = 0.0,
                 warmup_mode: str = "ramp"):
        if schedule not in ("step", "poly", "cosine", "constant"):
            raise ValueError(f"unknown lr schedule {schedule!r}")
        if warmup_mode not in ("ramp", "linear"):
            raise ValueError(f"unknown warmup mode {warmup_mode!r}")
        self.warmup_mode = warmup_mode
        self.schedule = schedule
        self.iterations = int(iterations)
        self.warmup_iters = int(warmup_iters)
        self.warmup_factor = float(warmup_factor)
        self.milestones = [int(m) for m in milestones]
        self.gamma = float(gamma)
        self.power = float(power)
        self.min_factor = float(min_factor)

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> LRSchedule:
        return cls(schedule=cfg.schedule, iterations=cfg.iterations, warmup_iters=cfg.warmup_iters,
                   warmup_factor=cfg.warmup_factor, milestones=cfg.milestones(), gamma=cfg.lr_gamma,
                   power=cfg.poly_power, min_factor=cfg.min_lr_factor)

    def decay(self, it: int) -> float:
        if self.schedule == "step":
            return self.gamma ** sum(1 for m in self.milestones if it >= m)
        if self.warmup_mode == "linear":  # the decay runs over the iterations after the warmup
            t = (it - self.warmup_iters) / max(self.iterations - self.warmup_iters, 1)
            t = min(max(t, 0.0), 1.0)
        else:
            t = min(max(it / max(self.iterations, 1), 0.0), 1.0)
        if self.schedule == "poly":
            return self.min_factor + (1.0 - self.min_factor) * (1.0 - t) ** self.power
        if self.schedule == "cosine":
            return self.min_factor + (1.0 - self.min_factor) * 0.5 * (1.0 + math.cos(math.pi * t))
        return 1.0

    def warmup(self, it: int) -> float:
        if it >= self.warmup_iters or self.warmup_iters == 0:
            return 1.0
        alpha = it / self.warmup_iters
        return self.warmup_factor * (1.0 - alpha) + alpha

    def __call__(self, it: int) -> float:
        if self.warmup_mode == "linear":
            if self.warmup_iters and it < self.warmup_iters:
                return (it + 1) / self.warmup_iters
            return self.decay(it)
        return self.warmup(it) * self.decay(it)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR with :class:`LRSchedule`: after ``k`` calls to ``step()`` the lr is ``base · f(k)``."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, LRSchedule.from_config(cfg))


def clip_gradients(params: Iterable[torch.Tensor], max_norm: float) -> float:
    """Full-model gradient L2-norm clipping (``max_norm`` 0 = off); returns the norm before clipping."""
    params = [p for p in params if p.grad is not None]
    if not params:
        return 0.0
    if max_norm > 0:
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type=2.0)
    else:
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad.detach()) for p in params]))
    return float(norm)
