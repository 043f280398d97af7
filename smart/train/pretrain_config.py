"""Configurations of the mini profile's pretraining stages (params.yaml ``mini_clip`` and
``mini_generators.<name>``), torch-free so that params.yaml validates without importing torch.

The training code lives in :mod:`smart.train.clip_pretrain` and :mod:`smart.train.generator_pretrain`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from smart.errors import ConfigError
from smart.schema import from_mapping

# Learning-rate schedules of the generator pretraining (after the linear warm-up).
SCHEDULES = ("cosine", "poly", "constant")


@dataclass(frozen=True)
class MiniClipConfig:
    """Architecture and training of the mini CLIP (params.yaml → ``mini_clip``)."""

    embed_dim: int = 128
    image_size: int = 64
    patch_size: int = 8
    vision_width: int = 128
    vision_layers: int = 4
    vision_head_width: int = 64
    context_length: int = 32
    text_width: int = 128
    text_heads: int = 2
    text_layers: int = 4
    steps: int = 450
    batch_size: int = 128
    lr: float = 5e-4
    weight_decay: float = 0.1
    warmup: int = 30
    grouped_fraction: float = 0.5  # share of each batch made of hard-negative groups
    bf16: bool = True  # bf16 autocast (CPU and CUDA)
    seed: int = 0
    log_every: int = 25
    eval_per_class: int = 10  # zero-shot evaluation images per class

    @classmethod
    def from_dict(cls, d: dict, *, source: str | Path | None = None) -> MiniClipConfig:
        return from_mapping(cls, d, field_of=lambda k: f"mini_clip.{k}", source=source)

    def validate(self, field_of=lambda k: k, source: str | Path | None = None) -> None:
        """Ranges (the types are checked by :mod:`smart.schema`)."""
        for k, v in asdict(self).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v < 0:
                raise ConfigError(f"must be non-negative, got {v}", path=source, field=field_of(k))
        if self.image_size % self.patch_size:
            raise ConfigError("image_size must be a multiple of patch_size", path=source, field=field_of("image_size"))
        if not 0 <= self.grouped_fraction <= 1:
            raise ConfigError("must be in [0, 1]", path=source, field=field_of("grouped_fraction"))

    def model_cfg(self) -> dict:
        """The open_clip model config (the ``model_cfg`` of ``open_clip_config.json``)."""
        return {
            "embed_dim": self.embed_dim,
            "vision_cfg": {"image_size": self.image_size, "layers": self.vision_layers, "width": self.vision_width,
                           "head_width": self.vision_head_width, "patch_size": self.patch_size},
            "text_cfg": {"context_length": self.context_length, "vocab_size": 49408, "width": self.text_width,
                         "heads": self.text_heads, "layers": self.text_layers},
        }


@dataclass(frozen=True)
class GeneratorPretrainConfig:
    """Training of one mini mask generator (params.yaml → ``mini_generators.<name>``; every key explicit)."""

    steps: int = 700  # optimiser steps
    batch_size: int = 16  # images per step
    lr: float = 0.002  # AdamW peak learning rate
    weight_decay: float = 0.05  # AdamW weight decay (not on norms / biases / embeddings)
    warmup: int = 50  # linear warm-up steps
    schedule: str = "cosine"  # cosine | poly (power 0.9, as Mask2Former) | constant, after warm-up
    min_lr_ratio: float = 0.05  # final lr / peak lr (cosine / poly)
    grad_clip: float = 1.0  # max global gradient norm (0 = no clipping)
    num_queries: int = 20  # Mask2Former queries Q
    train_num_points: int = 1024  # points per mask in the transformers loss (M2F: 12544 = 112²)
    hflip: bool = True  # random horizontal flip
    bf16: bool = False  # bf16 autocast (no speed-up measured on the shared 2-core CPU)
    seed: int = 0
    log_every: int = 25  # steps per training-curve record
    train_dataset: str = "coco_train"  # registry name of the training split
    eval_datasets: tuple[str, ...] = ("coco", "ade150")  # mask-recall datasets (first one also gets PQ)
    eval_batch_size: int = 16

    @classmethod
    def from_dict(cls, d: dict, *, name: str = "?", source: str | Path | None = None,
                  require_all: bool = False) -> GeneratorPretrainConfig:
        """Validate one params entry; every error names ``mini_generators.<name>.<key>``."""
        return from_mapping(cls, d, field_of=lambda k: f"mini_generators.{name}.{k}".rstrip("."), source=source,
                            require_all=require_all)

    def validate(self, field_of=lambda k: k, source: str | Path | None = None) -> None:
        """Ranges and choices (the types are checked by :mod:`smart.schema`)."""
        for k in ("steps", "batch_size", "num_queries", "train_num_points", "log_every", "eval_batch_size"):
            if getattr(self, k) < 1:
                raise ConfigError(f"must be >= 1, got {getattr(self, k)}", path=source, field=field_of(k))
        for k in ("lr", "weight_decay", "grad_clip", "min_lr_ratio", "warmup", "seed"):
            if getattr(self, k) < 0:
                raise ConfigError(f"must be non-negative, got {getattr(self, k)}", path=source, field=field_of(k))
        if self.lr == 0:
            raise ConfigError("must be positive", path=source, field=field_of("lr"))
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule {self.schedule!r} ({' | '.join(SCHEDULES)})", path=source,
                              field=field_of("schedule"))
        if self.min_lr_ratio > 1:
            raise ConfigError("must be in [0, 1]", path=source, field=field_of("min_lr_ratio"))
        if not self.eval_datasets:
            raise ConfigError("needs at least one dataset", path=source, field=field_of("eval_datasets"))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["eval_datasets"] = list(self.eval_datasets)
        return d
