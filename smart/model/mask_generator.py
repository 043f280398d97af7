"""The mask generator: a frozen, COCO-panoptic-trained Mask2Former (paper §4 "Framework", §5.3;
``docs/method-spec.md`` §4.1 step 1, §4.10 COCO*, §5.6), plus the oracles of paper Fig. 2a.

Backends:

* ``hf`` (default): transformers ``Mask2FormerForUniversalSegmentation``. ``pretrained`` is a hub
  name (e.g. ``facebook/mask2former-swin-base-IN21k-coco-panoptic``, the Swin-B IN21k 384 generator of
  SMART-SwinB) or a local directory written by :meth:`Mask2FormerGenerator.save_pretrained`. Without
  ``pretrained`` a named tiny config from :data:`TINY_CONFIGS` is built with random weights (tests and
  the mini profile; no hub access): ``tiny`` (the spec's ≈1.69M test config), ``mini-r50`` (≈0.94M,
  a basic-block ResNet backbone standing in for R50) and ``mini-swinb`` (≈1.88M, Swin, standing in for
  Swin-B).
* ``detectron2`` (optional): the original Mask2Former code with a model-zoo ``.pkl``. **SMART-R50 needs
  it**: the R50 COCO-panoptic Mask2Former (``maskformer2_R50_bs16_50ep/model_final_94dc52.pkl``) has no
  transformers checkpoint, and transformers' conversion script only converts Swin models. detectron2
  and Mask2Former are imported lazily, only when this backend is built; otherwise a clear
  :class:`BackendUnavailableError` is raised. Nothing else in the project needs them.

Output of :meth:`Mask2FormerGenerator.forward` for a (B, 3, Hp, Wp) normalised, padded batch:
``mask_logits`` (B, Q, Hp/4, Wp/4) last-layer mask logits, ``class_logits`` (B, Q, C+1) (last column =
no-object) and ``scores`` (B, Q): objectness 1 − p(no-object) (``score_mode="objectness"``) or the max
real-class probability (``"max_class"``). ``top_k`` keeps the k highest-scoring queries.

Preprocessing follows detectron2 / the HF ``Mask2FormerImageProcessor``, in torch: RGB 0–255 →
shortest side ``min_size`` (max ``max_size``; detectron2 ``ResizeShortestEdge`` rounding, bilinear) →
(x − mean) / std with mean (123.675, 116.28, 103.53), std (58.395, 57.12, 57.375) → zero-pad
bottom/right to a multiple of 32.

``tune_mask_generator=False`` (the default, SMART) freezes it: no parameter requires grad, it stays
in eval mode even when a parent module calls ``.train()``, and it runs under ``no_grad``. True makes it
trainable (Table 3e, "+ mask generator").
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

log = logging.getLogger(__name__)

__all__ = [
    "PIXEL_MEAN",
    "PIXEL_STD",
    "PAPER_CONFIGS",
    "TINY_CONFIGS",
    "BackendUnavailableError",
    "Detectron2MaskGenerator",
    "GeneratorConfig",
    "Mask2FormerGenerator",
    "OracleMaskGenerator",
    "build_mask_generator",
    "check_architecture",
    "list_tiny_configs",
    "oracle_classifier_logits",
    "preprocess_images",
    "resize_shortest_edge_size",
    "scores_from_class_logits",
    "select_top_k",
    "tiny_mask2former_config",
]

PIXEL_MEAN = (123.675, 116.28, 103.53)  # RGB, 0-255 (ImageNet; Mask2Former and HF image processor)
PIXEL_STD = (58.395, 57.12, 57.375)
CONFIG_FILE = "smart_mask_generator.json"  # preprocessing settings saved next to the HF weights


class BackendUnavailableError(RuntimeError):
    """The requested mask-generator backend cannot be used in this environment."""


# --------------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class GeneratorConfig:
    """Mask-generator parameters (``proposals`` section of the run config)."""

    name: str = "mini-swinb"  # random init when ``pretrained`` is None: a TINY_CONFIGS key, or a hub name /
    # local directory whose *architecture* (config.json) is built untrained (Fig. 2b "from scratch")
    backend: str = "hf"  # hf | detectron2
    pretrained: str | None = None  # hub name or local directory (hf); model-zoo .pkl (detectron2)
    num_labels: int = 10  # closed-set classes C of a tiny config (ignored when loading weights)
    num_queries: int | None = None  # queries of a tiny config (None = the config's own, 20)
    tune_mask_generator: bool = False  # Table 3(e): False = frozen, eval mode, no_grad
    top_k: int | None = None  # keep the k highest-scoring queries (None = all Q)
    score_mode: str = "objectness"  # objectness (1 - p(no-object)) | max_class
    resize: bool = True  # test-time shortest-edge resize (False: keep the input size, e.g. mini)
    min_size: int = 800  # shortest side at test time (1024 for Mapillary / Cityscapes)
    max_size: int = 1333  # longest side cap (2560 for Mapillary / Cityscapes)
    size_divisibility: int = 32  # pad to a multiple of this
    pixel_mean: tuple[float, float, float] = PIXEL_MEAN
    pixel_std: tuple[float, float, float] = PIXEL_STD
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    d2_config_file: str | None = None  # detectron2 backend: the Mask2Former YAML config

    def to_dict(self) -> dict:
        return asdict(self)


def _swin(**kw: Any):
    from transformers import SwinConfig

    return SwinConfig(out_features=["stage1", "stage2", "stage3", "stage4"], **kw)


def _resnet(**kw: Any):
    from transformers import ResNetConfig

    return ResNetConfig(out_features=["stage1", "stage2", "stage3", "stage4"], **kw)


def _m2f(backbone_config: Any, *, num_labels: int, num_queries: int, **kw: Any):
    from transformers import Mask2FormerConfig

    base = {"feature_size": 64, "mask_feature_size": 64, "hidden_dim": 64, "encoder_layers": 2,
            "decoder_layers": 3, "num_attention_heads": 4, "dim_feedforward": 128,
            "encoder_feedforward_dim": 128, "train_num_points": 1024}
    base.update(kw)
    return Mask2FormerConfig(backbone_config=backbone_config, num_labels=num_labels, num_queries=num_queries,
                             **base)


def _tiny(*, num_labels: int = 10, num_queries: int = 20):
    """``method-spec.md`` §5.6 tiny test config (≈1.69M parameters with 10 labels)."""
    sw = _swin(image_size=128, patch_size=4, embed_dim=32, depths=[1, 1, 2, 1], num_heads=[1, 2, 4, 8],
               window_size=4)
    return _m2f(sw, num_labels=num_labels, num_queries=num_queries)


def _mini_r50(*, num_labels: int = 10, num_queries: int = 20):
    """R50 stand-in: basic-block ResNet (widths 24/48/96/192), 64-d decoder (≈0.94M parameters)."""
    rn = _resnet(embedding_size=24, hidden_sizes=[24, 48, 96, 192], depths=[1, 1, 1, 1], layer_type="basic")
    return _m2f(rn, num_labels=num_labels, num_queries=num_queries)


def _mini_swinb(*, num_labels: int = 10, num_queries: int = 20):
    """Swin-B stand-in: the tiny Swin with a deeper third stage (≈1.88M parameters)."""
    sw = _swin(image_size=128, patch_size=4, embed_dim=32, depths=[1, 1, 3, 1], num_heads=[1, 2, 4, 8],
               window_size=4)
    return _m2f(sw, num_labels=num_labels, num_queries=num_queries)


TINY_CONFIGS: dict[str, Callable[..., Any]] = {
    "tiny": _tiny,
    "mini-r50": _mini_r50,
    "mini-swinb": _mini_swinb,
}


def _swinb_in21k_coco_panoptic(*, num_labels: int = 133, num_queries: int = 100):
    """The Swin-B (IN21k, 384) COCO-panoptic Mask2Former of SMART-SwinB, i.e. the architecture of the hub
    checkpoint ``facebook/mask2former-swin-base-IN21k-coco-panoptic`` (converted from Mask2Former's
    ``maskformer2_swin_base_IN21k_384_bs16_50ep/model_final_54b88a.pkl``), built offline. Sources:

    * backbone, Mask2Former ``configs/coco/panoptic-segmentation/swin/maskformer2_swin_base_IN21k_384_bs16_50ep.yaml``:
      EMBED_DIM 128, DEPTHS [2, 2, 18, 2], NUM_HEADS [4, 8, 16, 32], WINDOW_SIZE 12, APE False,
      DROP_PATH_RATE 0.3, PATCH_NORM True, PRETRAIN_IMG_SIZE 384 (MLP ratio 4, qkv bias: Mask2Former's defaults);
    * head, ``maskformer2_R50_bs16_50ep.yaml`` (its base): 133 classes, CONVS_DIM = MASK_DIM = HIDDEN_DIM 256,
      6 deformable encoder layers (FFN 1024, hard-coded in ``MSDeformAttnPixelDecoder.from_config``),
      100 queries, 8 heads, DIM_FEEDFORWARD 2048, DEC_LAYERS 10, PRE_NORM False, ENFORCE_INPUT_PROJ False,
      COMMON_STRIDE 4, TRAIN_NUM_POINTS 12544, oversample 3.0, importance 0.75, loss weights 2 / 5 / 5, no-object 0.1.

    :func:`check_architecture` compares a loaded checkpoint's config with this one.
    """
    sw = _swin(image_size=384, patch_size=4, num_channels=3, embed_dim=128, depths=[2, 2, 18, 2],
               num_heads=[4, 8, 16, 32], window_size=12, mlp_ratio=4.0, qkv_bias=True, hidden_dropout_prob=0.0,
               attention_probs_dropout_prob=0.0, drop_path_rate=0.3, hidden_act="gelu",
               use_absolute_embeddings=False, layer_norm_eps=1e-5)
    return _m2f(sw, num_labels=num_labels, num_queries=num_queries, feature_size=256, mask_feature_size=256,
                hidden_dim=256, encoder_feedforward_dim=1024, encoder_layers=6, decoder_layers=10,
                num_attention_heads=8, dim_feedforward=2048, dropout=0.0, pre_norm=False,
                enforce_input_projection=False, common_stride=4, feature_strides=[4, 8, 16, 32],
                ignore_value=255, no_object_weight=0.1, class_weight=2.0, mask_weight=5.0, dice_weight=5.0,
                train_num_points=12544, oversample_ratio=3.0, importance_sample_ratio=0.75)


def _r50_coco_panoptic(*, num_labels: int = 133, num_queries: int = 100):
    """The R50 COCO-panoptic Mask2Former of SMART-R50 (converted from the detectron2 model zoo by
    ``python -m smart convert-generator``; see :mod:`smart.model.convert_d2`)."""
    from smart.model.convert_d2 import r50_coco_panoptic_config

    return r50_coco_panoptic_config(num_labels=num_labels, num_queries=num_queries)


# The paper's generators, built offline from the hyperparameters of their released checkpoints.
PAPER_CONFIGS: dict[str, Callable[..., Any]] = {
    "swinb-in21k-coco-panoptic": _swinb_in21k_coco_panoptic,
    "r50-coco-panoptic": _r50_coco_panoptic,
}
# Architecture fields compared by check_architecture (a different value changes the network).
_ARCH_FIELDS = ("feature_size", "mask_feature_size", "hidden_dim", "encoder_feedforward_dim", "encoder_layers",
                "decoder_layers", "num_attention_heads", "dim_feedforward", "pre_norm", "enforce_input_projection",
                "common_stride", "num_queries", "num_labels")
_BACKBONE_FIELDS = ("model_type", "embed_dim", "depths", "num_heads", "window_size", "mlp_ratio", "qkv_bias",
                    "use_absolute_embeddings", "hidden_sizes", "embedding_size", "layer_type",
                    "downsample_in_first_stage", "downsample_in_bottleneck")


def check_architecture(config: Any, name: str) -> list[str]:
    """Differences ``field: loaded != shipped`` between a transformers ``Mask2FormerConfig`` (e.g. of a
    downloaded checkpoint) and the shipped :data:`PAPER_CONFIGS` entry ``name``; empty when they agree."""
    ref = PAPER_CONFIGS[name]()
    out = []
    for f in _ARCH_FIELDS:
        a, b = getattr(config, f, None), getattr(ref, f, None)
        if a != b:
            out.append(f"{f}: {a!r} != {b!r}")
    for f in _BACKBONE_FIELDS:
        a, b = getattr(config.backbone_config, f, None), getattr(ref.backbone_config, f, None)
        if isinstance(a, tuple) or isinstance(b, tuple):
            a, b = list(a) if a is not None else a, list(b) if b is not None else b
        if a != b:
            out.append(f"backbone_config.{f}: {a!r} != {b!r}")
    return out


def list_tiny_configs() -> list[str]:
    return sorted(TINY_CONFIGS)


def tiny_mask2former_config(name: str, *, num_labels: int = 10, num_queries: int | None = None):
    """A transformers ``Mask2FormerConfig`` from :data:`TINY_CONFIGS` or :data:`PAPER_CONFIGS` (random
    init, no hub access). ``num_labels`` applies to the tiny configs; the paper's have COCO's 133."""
    if name in PAPER_CONFIGS:
        return PAPER_CONFIGS[name](**({} if num_queries is None else {"num_queries": num_queries}))
    if name not in TINY_CONFIGS:
        raise KeyError(f"unknown mask-generator config {name!r}; known: {sorted(TINY_CONFIGS) + sorted(PAPER_CONFIGS)}")
    kw = {"num_labels": num_labels}
    if num_queries is not None:
        kw["num_queries"] = num_queries
    return TINY_CONFIGS[name](**kw)


# Hub checkpoints whose architecture is shipped in PAPER_CONFIGS (checked when they are loaded).
HUB_ARCHITECTURES = {"facebook/mask2former-swin-base-IN21k-coco-panoptic": "swinb-in21k-coco-panoptic"}


def load_hf_weights(model_cls: Any, name_or_path: str | Path) -> nn.Module:
    """``model_cls.from_pretrained(name_or_path)`` with clear errors: a hub name that is neither cached
    nor reachable says how to get the weights; weights whose shapes do not fit the checkpoint's config
    name the first mismatched key and both shapes."""
    from smart.errors import InputError

    local = Path(name_or_path).exists()
    if local and Path(name_or_path).is_dir():
        from smart.io import verify_checksums

        verify_checksums(name_or_path, remedy="rebuild the generator (e.g. `snakemake --cores all --forcerun "
                                              "pretrain_generator_<name>`) or restore the folder")
    try:
        with _quiet_transformers():
            return model_cls.from_pretrained(str(name_or_path))
    except OSError as exc:
        if local:
            raise InputError(f"cannot load the checkpoint: {exc}", path=name_or_path) from None
        raise InputError(
            f"mask generator {str(name_or_path)!r} is neither a local directory nor in the local Hugging Face "
            "cache, and the hub cannot be reached (offline, or HF_HUB_OFFLINE=1). Download the weights on a "
            f"machine with network access (`hf download {name_or_path}`, then copy the cache or the folder) or "
            "set `pretrained:` to a local directory holding config.json and model.safetensors",
            field="pretrained") from None
    except Exception as exc:  # e.g. weights whose shapes do not fit config.json, a truncated file
        if not isinstance(exc, RuntimeError) and type(exc).__name__ != "SafetensorError":
            raise
        if type(exc).__name__ == "SafetensorError":
            raise InputError(f"cannot read the weights (truncated or corrupt: {exc})", path=name_or_path) from None
        mismatch = _first_shape_mismatch(model_cls, Path(name_or_path)) if local else None
        if mismatch is None:
            if local:
                raise InputError(f"cannot load the weights ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})",
                                 path=name_or_path) from None
            raise
        key, found, expected = mismatch
        raise InputError(f"the weights do not fit config.json: {key} is {found} in the weights file and "
                         f"{expected} in the model built from config.json", path=name_or_path) from None


def _first_shape_mismatch(model_cls: Any, directory: Path) -> tuple[str, tuple, tuple] | None:
    """(key, shape in the safetensors file, shape of the model built from config.json) of the first
    weight whose shape differs, in file order; None when none does (or the files cannot tell)."""
    from safetensors import safe_open

    files = sorted(directory.glob("*.safetensors"))
    if not files:
        return None
    config = model_cls.config_class.from_pretrained(str(directory))
    with torch.device("meta"), _quiet_transformers():
        expected = {k: tuple(v.shape) for k, v in model_cls(config).state_dict().items()}
    for f in files:
        with safe_open(str(f), framework="pt") as st:
            for k in st.keys():
                shape = tuple(st.get_slice(k).get_shape())
                if k in expected and expected[k] != shape:
                    return k, shape, expected[k]
    return None


def _quiet_transformers():
    """Silence transformers' "Backbone resnet is not a supported model" warning for ``mini-r50``."""
    from transformers.utils import logging as hf_logging

    class _Ctx:
        def __enter__(self):
            self.level = hf_logging.get_verbosity()
            hf_logging.set_verbosity_error()

        def __exit__(self, *exc):
            hf_logging.set_verbosity(self.level)

    return _Ctx()


# --------------------------------------------------------------------------------------------------
# preprocessing (torch; HF Mask2FormerImageProcessor / detectron2 conventions)


def resize_shortest_edge_size(h: int, w: int, min_size: int, max_size: int) -> tuple[int, int]:
    """detectron2 ``ResizeShortestEdge.get_output_shape``: shortest side → min_size, longest ≤ max_size."""
    scale = min_size / min(h, w)
    newh, neww = (min_size, scale * w) if h < w else (scale * h, min_size)
    if max(newh, neww) > max_size:
        scale = max_size / max(newh, neww)
        newh, neww = newh * scale, neww * scale
    return int(newh + 0.5), int(neww + 0.5)


def _as_chw(img: Any) -> Tensor:
    """One image (H, W, 3) numpy / (3, H, W) tensor, RGB 0–255 → float32 (3, H, W)."""
    if isinstance(img, np.ndarray):
        if img.ndim != 3 or img.shape[-1] != 3:
            raise ValueError(f"numpy images must be (H, W, 3) RGB, got {img.shape}")
        return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float()  # (3, H, W)
    if not isinstance(img, Tensor) or img.dim() != 3 or img.shape[0] != 3:
        raise ValueError("tensor images must be (3, H, W) RGB 0-255")
    return img.float()


def preprocess_images(images: Sequence[Any] | Tensor, *, pixel_mean: Sequence[float] = PIXEL_MEAN,
                      pixel_std: Sequence[float] = PIXEL_STD, resize: bool = True, min_size: int = 800,
                      max_size: int = 1333, size_divisibility: int = 32,
                      device: torch.device | str | None = None) -> dict[str, Any]:
    """RGB 0–255 images → the normalised, padded batch Mask2Former expects.

    Args:
        images: a (B, 3, H, W) tensor or a list of (3, H, W) tensors / (H, W, 3) uint8 arrays.
        pixel_mean, pixel_std: RGB 0–255 normalisation.
        resize: resize the shortest side to ``min_size`` (longest ≤ ``max_size``), bilinear with
            anti-aliasing (as PIL, which HF and detectron2 use).
        size_divisibility: zero-pad (after normalisation) bottom/right to a multiple of this.
        device: target device.

    Returns:
        ``pixel_values`` (B, 3, Hp, Wp), ``pixel_mask`` (B, Hp, Wp) int64 (1 = image, 0 = padding),
        ``image_sizes`` [(h_i, w_i)] after resizing, ``original_sizes`` [(H_i, W_i)].
    """
    imgs = list(images) if isinstance(images, Tensor) else [_as_chw(im) for im in images]
    mean = torch.as_tensor(pixel_mean, dtype=torch.float32, device=device).view(3, 1, 1)
    std = torch.as_tensor(pixel_std, dtype=torch.float32, device=device).view(3, 1, 1)
    out, image_sizes, original_sizes = [], [], []
    for img in imgs:
        x = img.to(device=device, dtype=torch.float32)  # (3, H, W)
        H, W = x.shape[-2:]
        original_sizes.append((int(H), int(W)))
        if resize:
            h, w = resize_shortest_edge_size(int(H), int(W), min_size, max_size)
            if (h, w) != (H, W):
                x = F.interpolate(x[None], size=(h, w), mode="bilinear", align_corners=False,
                                  antialias=True)[0].clamp(0, 255)  # (3, h, w)
        image_sizes.append(tuple(int(v) for v in x.shape[-2:]))
        out.append((x - mean) / std)  # (3, h, w)
    d = max(int(size_divisibility), 1)
    Hp = -(-max(s[0] for s in image_sizes) // d) * d
    Wp = -(-max(s[1] for s in image_sizes) // d) * d
    pixel_values = torch.zeros((len(out), 3, Hp, Wp), dtype=torch.float32, device=device)  # (B, 3, Hp, Wp)
    pixel_mask = torch.zeros((len(out), Hp, Wp), dtype=torch.int64, device=device)  # (B, Hp, Wp)
    for b, x in enumerate(out):
        h, w = image_sizes[b]
        pixel_values[b, :, :h, :w] = x
        pixel_mask[b, :h, :w] = 1
    return {"pixel_values": pixel_values, "pixel_mask": pixel_mask, "image_sizes": image_sizes,
            "original_sizes": original_sizes}


# --------------------------------------------------------------------------------------------------
# scores and top-k


def scores_from_class_logits(class_logits: Tensor, mode: str = "objectness") -> Tensor:
    """(B, Q, C+1) logits → (B, Q) proposal scores: 1 − p(no-object) or the max real-class probability."""
    probs = class_logits.float().softmax(-1)  # (B, Q, C+1)
    if mode == "objectness":
        return 1.0 - probs[..., -1]  # (B, Q)
    if mode == "max_class":
        return probs[..., :-1].max(-1).values  # (B, Q)
    raise ValueError(f"unknown score_mode {mode!r} (objectness | max_class)")


def select_top_k(outputs: Mapping[str, Tensor], k: int) -> dict[str, Tensor]:
    """Keep the k highest-scoring queries per image (sorted by score, descending).

    ``outputs`` holds ``scores`` (B, Q) and any (B, Q, …) tensors (``mask_logits``, ``class_logits``);
    the result has the same keys with Q → min(k, Q), plus ``indices`` (B, k) into the original queries.
    """
    scores = outputs["scores"]  # (B, Q)
    k = min(int(k), scores.shape[1])
    idx = scores.topk(k, dim=1).indices  # (B, k)
    out: dict[str, Tensor] = {}
    for key, v in outputs.items():
        if isinstance(v, Tensor) and v.dim() >= 2 and v.shape[:2] == scores.shape:
            gather_idx = idx.view(*idx.shape, *([1] * (v.dim() - 2))).expand(-1, -1, *v.shape[2:])
            out[key] = torch.gather(v, 1, gather_idx)  # (B, k, …)
        else:
            out[key] = v
    out["indices"] = idx
    return out


# --------------------------------------------------------------------------------------------------
# the transformers backend


class _GeneratorBase(nn.Module):
    """What the Mask2Former backends share: the preprocessing of their settings, and staying in eval
    mode while frozen. Subclasses set ``model``, ``tune``, ``pixel_mean``/``pixel_std``, ``resize``,
    ``min_size``, ``max_size`` and ``size_divisibility``."""

    frozen_batchnorm = False  # detectron2's FrozenBN: BatchNorm statistics and affine stay fixed when tuned

    def _batchnorms(self) -> list[nn.Module]:
        return [m for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def train(self, mode: bool = True):
        super().train(mode and self.tune)  # a frozen generator stays in eval mode
        if self.frozen_batchnorm:
            for m in self._batchnorms():
                m.eval()
        return self

    TEST_TIME_KEYS = ("resize", "min_size", "max_size", "top_k", "score_mode")

    def set_test_time(self, settings: Mapping[str, Any]) -> None:
        """Apply test-time settings (``resize``, ``min_size``, ``max_size``, ``top_k``, ``score_mode``; e.g.
        :meth:`smart.data.proposals.ProposalCacheConfig.test_time` of one dataset)."""
        for k, v in settings.items():
            if k not in self.TEST_TIME_KEYS:
                raise KeyError(f"not a test-time generator setting: {k!r} (allowed: {', '.join(self.TEST_TIME_KEYS)})")
            if k == "score_mode" and v not in ("objectness", "max_class"):
                raise ValueError(f"unknown score_mode {v!r} (objectness | max_class)")
            setattr(self, k, v)

    def preprocess(self, images: Sequence[Any] | Tensor, *, device: torch.device | str | None = None) -> dict:
        """See :func:`preprocess_images`; uses this generator's settings and device."""
        if device is None:
            device = next(self.model.parameters()).device
        return preprocess_images(images, pixel_mean=self.pixel_mean, pixel_std=self.pixel_std,
                                 resize=self.resize, min_size=self.min_size, max_size=self.max_size,
                                 size_divisibility=self.size_divisibility, device=device)


class Mask2FormerGenerator(_GeneratorBase):
    """Mask proposals from a (by default frozen) transformers Mask2Former."""

    def __init__(self, *, model: nn.Module, pixel_mean: Sequence[float] = PIXEL_MEAN,
                 pixel_std: Sequence[float] = PIXEL_STD, resize: bool = True, min_size: int = 800,
                 max_size: int = 1333, size_divisibility: int = 32, top_k: int | None = None,
                 score_mode: str = "objectness", tune: bool = False, amp: bool = True,
                 frozen_batchnorm: bool = False):
        """
        Args:
            model: a transformers ``Mask2FormerForUniversalSegmentation``.
            pixel_mean, pixel_std: RGB 0–255 input normalisation.
            resize, min_size, max_size: test-time shortest-edge resize (see :func:`preprocess_images`).
            size_divisibility: padding multiple of the input.
            top_k: keep the k highest-scoring queries in :meth:`forward` (None = all).
            score_mode: ``objectness`` (1 − p(no-object)) or ``max_class``.
            tune: False = frozen (requires_grad False, always eval, no_grad); True = trainable.
            amp: bf16 autocast on CUDA.
            frozen_batchnorm: keep every BatchNorm fixed (statistics and affine) even when tuned, as
                detectron2's FrozenBN does in the model-zoo R50 (set for generators converted from it).
        """
        super().__init__()
        if score_mode not in ("objectness", "max_class"):
            raise ValueError(f"unknown score_mode {score_mode!r} (objectness | max_class)")
        self.model = model
        self.pixel_mean = tuple(float(v) for v in pixel_mean)
        self.pixel_std = tuple(float(v) for v in pixel_std)
        self.resize = resize
        self.min_size = min_size
        self.max_size = max_size
        self.size_divisibility = size_divisibility
        self.top_k = top_k
        self.score_mode = score_mode
        self.amp = amp
        self.tune = bool(tune)
        self.frozen_batchnorm = bool(frozen_batchnorm)
        self.model.requires_grad_(self.tune)
        if self.frozen_batchnorm:
            for m in self._batchnorms():
                m.requires_grad_(False)
        if not self.tune:
            self.eval()

    # -- construction -----------------------------------------------------------------------------
    def _settings(self) -> dict:
        out = {"pixel_mean": list(self.pixel_mean), "pixel_std": list(self.pixel_std), "resize": self.resize,
               "min_size": self.min_size, "max_size": self.max_size,
               "size_divisibility": self.size_divisibility, "top_k": self.top_k,
               "score_mode": self.score_mode, "amp": self.amp}
        if self.frozen_batchnorm:  # written only when set (generators converted from detectron2)
            out["frozen_batchnorm"] = True
        return out

    @classmethod
    def from_config(cls, cfg: GeneratorConfig) -> Mask2FormerGenerator:
        """Build from a :class:`GeneratorConfig` (the only place that reads the config)."""
        kw = {"pixel_mean": cfg.pixel_mean, "pixel_std": cfg.pixel_std, "resize": cfg.resize,
              "min_size": cfg.min_size, "max_size": cfg.max_size, "size_divisibility": cfg.size_divisibility,
              "top_k": cfg.top_k, "score_mode": cfg.score_mode, "tune": cfg.tune_mask_generator, "amp": cfg.amp}
        if cfg.pretrained:
            return cls.from_pretrained(cfg.pretrained, **kw)
        from transformers import Mask2FormerForUniversalSegmentation

        with _quiet_transformers():
            if cfg.name in TINY_CONFIGS or cfg.name in PAPER_CONFIGS:
                hf_cfg = tiny_mask2former_config(cfg.name, num_labels=cfg.num_labels, num_queries=cfg.num_queries)
            else:  # the architecture of a released model, randomly initialised
                from transformers import Mask2FormerConfig

                hf_cfg = Mask2FormerConfig.from_pretrained(cfg.name)
                if cfg.num_queries is not None:
                    hf_cfg.num_queries = cfg.num_queries
            model = Mask2FormerForUniversalSegmentation(hf_cfg)
        return cls(model=model, **kw)

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, **overrides: Any) -> Mask2FormerGenerator:
        """Load weights from a hub name or a local directory; settings saved by :meth:`save_pretrained`
        are restored, then ``overrides`` (constructor keywords) are applied."""
        from transformers import Mask2FormerForUniversalSegmentation

        model = load_hf_weights(Mask2FormerForUniversalSegmentation, name_or_path)
        arch = HUB_ARCHITECTURES.get(str(name_or_path))
        if arch is not None:
            diff = check_architecture(model.config, arch)
            if diff:
                log.warning("%s: config differs from the shipped %r architecture (%s): the pipeline's offline "
                            "builds of this generator would not match it", name_or_path, arch, "; ".join(diff))
        settings: dict = {}
        path = Path(name_or_path)
        if path.is_dir() and (path / CONFIG_FILE).is_file():
            settings = json.loads((path / CONFIG_FILE).read_text())
        settings.update(overrides)
        log.info("mask generator %s: %d queries, %d closed-set classes, %s", name_or_path,
                 model.config.num_queries, model.config.num_labels,
                 "trainable" if settings.get("tune") else "frozen")
        return cls(model=model, **settings)

    def save_pretrained(self, path: str | Path) -> None:
        """Write the HF weights + config and this wrapper's preprocessing settings to a directory."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(str(path))
        (path / CONFIG_FILE).write_text(json.dumps(self._settings(), indent=2) + "\n")
        from smart.io import write_checksums

        write_checksums(path, sorted(p.name for p in path.iterdir() if p.is_file() and not p.name.startswith(".")))

    # -- module API -------------------------------------------------------------------------------
    @property
    def num_queries(self) -> int:
        return int(self.model.config.num_queries)

    @property
    def num_classes(self) -> int:
        """C, the closed-set classes of the generator's own head (no-object excluded)."""
        return int(self.model.config.num_labels)

    def forward(self, pixel_values: Tensor, *, top_k: int | None = None) -> dict[str, Tensor]:
        """
        Args:
            pixel_values: (B, 3, Hp, Wp) normalised, padded images (:meth:`preprocess`).
            top_k: override of the constructor's ``top_k`` (0 or None = use that).

        Returns:
            ``mask_logits`` (B, Q', Hp/4, Wp/4), ``class_logits`` (B, Q', C+1), ``scores`` (B, Q'),
            float32, Q' = min(top_k, Q); with top-k also ``indices`` (B, Q').
        """
        amp = self.amp and pixel_values.is_cuda
        with torch.set_grad_enabled(self.tune and torch.is_grad_enabled()), \
                torch.autocast(device_type=pixel_values.device.type, dtype=torch.bfloat16, enabled=amp):
            out = self.model(pixel_values=pixel_values, output_auxiliary_logits=False)
        class_logits = out.class_queries_logits.float()  # (B, Q, C+1)
        outputs = {"mask_logits": out.masks_queries_logits.float(),  # (B, Q, Hp/4, Wp/4)
                   "class_logits": class_logits,
                   "scores": scores_from_class_logits(class_logits, self.score_mode)}  # (B, Q)
        k = top_k or self.top_k
        if k:
            outputs = select_top_k(outputs, k)
        return outputs

    @torch.no_grad()
    def predict(self, images: Sequence[Any] | Tensor, *, top_k: int | None = None) -> dict[str, Any]:
        """Preprocess + forward; the result also carries ``input_size``, ``image_sizes``, ``original_sizes``."""
        batch = self.preprocess(images)
        outputs = self(batch["pixel_values"], top_k=top_k)
        outputs.update(input_size=tuple(batch["pixel_values"].shape[-2:]), image_sizes=batch["image_sizes"],
                       original_sizes=batch["original_sizes"])
        return outputs

    @torch.no_grad()
    def closed_set_predict(self, images: Sequence[Any] | Tensor, *, is_thing: Sequence[bool],
                           tasks: Sequence[str] = ("semantic", "panoptic"), cfg: Any = None) -> list[dict]:
        """Mask2Former-native closed-set inference (the COCO* "M2F native" rows, §4.10): the generator's
        own class head with all Q queries, thresholds 0.8 / 0.8 by default, at the original sizes."""
        from smart.model.inference import InferenceConfig, postprocess

        out = self.predict(images, top_k=self.num_queries)
        return postprocess({"pred_logits": out["class_logits"], "pred_masks": out["mask_logits"]},
                           is_thing=is_thing, input_size=out["input_size"], image_sizes=out["image_sizes"],
                           output_sizes=out["original_sizes"], tasks=tasks, cfg=cfg or InferenceConfig())


# --------------------------------------------------------------------------------------------------
# the optional detectron2 backend


def _import_detectron2() -> dict:
    try:
        from detectron2.checkpoint import DetectionCheckpointer
        from detectron2.config import get_cfg
        from detectron2.modeling import build_model
        from detectron2.projects.deeplab import add_deeplab_config
        from mask2former import add_maskformer2_config
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise BackendUnavailableError(
            "the detectron2 mask-generator backend needs detectron2 (not on PyPI; install from "
            "facebookresearch/detectron2) and the Mask2Former package (facebookresearch/Mask2Former, "
            "with its MSDeformAttn op) importable; it is only needed for the R50 generator, which has "
            f"no transformers checkpoint (missing: {e.name or e})") from e
    return {"DetectionCheckpointer": DetectionCheckpointer, "get_cfg": get_cfg, "build_model": build_model,
            "add_deeplab_config": add_deeplab_config, "add_maskformer2_config": add_maskformer2_config}


class Detectron2MaskGenerator(_GeneratorBase):
    """Mask proposals from the original detectron2 Mask2Former (model-zoo ``.pkl``), same outputs as
    :class:`Mask2FormerGenerator`. Optional: needs detectron2 + Mask2Former importable."""

    def __init__(self, *, model: nn.Module, pixel_mean: Sequence[float] = PIXEL_MEAN,
                 pixel_std: Sequence[float] = PIXEL_STD, resize: bool = True, min_size: int = 800,
                 max_size: int = 1333, size_divisibility: int = 32, top_k: int | None = None,
                 score_mode: str = "objectness", tune: bool = False, amp: bool = True):
        """
        Args:
            model: a detectron2 ``MaskFormer`` meta-architecture (``backbone`` + ``sem_seg_head``).
            others: as :class:`Mask2FormerGenerator`.
        """
        super().__init__()
        self.model = model
        self.pixel_mean, self.pixel_std = tuple(pixel_mean), tuple(pixel_std)
        self.resize, self.min_size, self.max_size = resize, min_size, max_size
        self.size_divisibility, self.top_k, self.score_mode, self.amp = size_divisibility, top_k, score_mode, amp
        self.tune = bool(tune)
        self.model.requires_grad_(self.tune)
        if not self.tune:
            self.eval()

    @classmethod
    def from_config(cls, cfg: GeneratorConfig) -> Detectron2MaskGenerator:  # pragma: no cover - needs d2
        d2 = _import_detectron2()
        if not cfg.d2_config_file or not cfg.pretrained:
            raise ValueError("the detectron2 backend needs d2_config_file (Mask2Former YAML) and pretrained (.pkl)")
        d2cfg = d2["get_cfg"]()
        d2["add_deeplab_config"](d2cfg)
        d2["add_maskformer2_config"](d2cfg)
        d2cfg.merge_from_file(cfg.d2_config_file)
        d2cfg.MODEL.DEVICE = "cpu"
        d2cfg.freeze()
        model = d2["build_model"](d2cfg)
        d2["DetectionCheckpointer"](model).load(cfg.pretrained)
        return cls(model=model, pixel_mean=tuple(d2cfg.MODEL.PIXEL_MEAN), pixel_std=tuple(d2cfg.MODEL.PIXEL_STD),
                   resize=cfg.resize, min_size=cfg.min_size, max_size=cfg.max_size,
                   size_divisibility=cfg.size_divisibility, top_k=cfg.top_k, score_mode=cfg.score_mode,
                   tune=cfg.tune_mask_generator, amp=cfg.amp)

    @property
    def num_queries(self) -> int:  # pragma: no cover - needs detectron2
        return int(self.model.sem_seg_head.predictor.num_queries)

    def forward(self, pixel_values: Tensor, *, top_k: int | None = None) -> dict[str, Tensor]:  # pragma: no cover
        amp = self.amp and pixel_values.is_cuda
        with torch.set_grad_enabled(self.tune and torch.is_grad_enabled()), \
                torch.autocast(device_type=pixel_values.device.type, dtype=torch.bfloat16, enabled=amp):
            features = self.model.backbone(pixel_values)  # the meta-arch normalises itself; we did already
            out = self.model.sem_seg_head(features)
        class_logits = out["pred_logits"].float()  # (B, Q, C+1)
        outputs = {"mask_logits": out["pred_masks"].float(),  # (B, Q, Hp/4, Wp/4)
                   "class_logits": class_logits,
                   "scores": scores_from_class_logits(class_logits, self.score_mode)}  # (B, Q)
        k = top_k or self.top_k
        return select_top_k(outputs, k) if k else outputs


def build_mask_generator(cfg: GeneratorConfig | Mapping[str, Any] | None = None, **overrides: Any) -> nn.Module:
    """Factory: the mask generator of a :class:`GeneratorConfig` (``hf`` or ``detectron2`` backend)."""
    if cfg is None:
        cfg = GeneratorConfig()
    elif isinstance(cfg, Mapping):
        cfg = GeneratorConfig(**cfg)
    if overrides:
        cfg = replace(cfg, **overrides)
    if isinstance(cfg.pixel_mean, list) or isinstance(cfg.pixel_std, list):
        cfg = replace(cfg, pixel_mean=tuple(cfg.pixel_mean), pixel_std=tuple(cfg.pixel_std))
    if cfg.backend == "hf":
        return Mask2FormerGenerator.from_config(cfg)
    if cfg.backend == "detectron2":
        return Detectron2MaskGenerator.from_config(cfg)
    raise ValueError(f"unknown mask-generator backend {cfg.backend!r} (hf | detectron2)")


# --------------------------------------------------------------------------------------------------
# oracles (paper Fig. 2a)


def _resize_bool(masks: Tensor, size: tuple[int, int]) -> Tensor:
    """(N, H, W) bool → (N, h, w) bool by nearest-neighbour resizing."""
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks.bool()
    return F.interpolate(masks[None].float(), size=size, mode="nearest")[0] > 0.5  # (N, h, w)


class OracleMaskGenerator(nn.Module):
    """Fig. 2a "oracle generator": the proposals of an image are its ground-truth masks, padded to Q.

    Real proposals have mask logits ±``logit_value`` (inside / outside the GT mask) and score 1; the
    padding proposals are all −``logit_value`` with score 0. With ``num_classes`` set, ``class_logits``
    (B, Q, C+1) are the GT labels as one-hot logits (``logit_value`` at the label, 0 elsewhere; padding
    → the no-object column), i.e. oracle generator + oracle classifier.
    """

    def __init__(self, *, num_queries: int, num_classes: int | None = None, logit_value: float = 20.0):
        """
        Args:
            num_queries: Q, the number of proposals per image (≥ the number of GT segments).
            num_classes: C for the one-hot ``class_logits`` (None: no class logits).
            logit_value: magnitude of the produced logits.
        """
        super().__init__()
        self.num_queries = num_queries
        self.num_classes = num_classes
        self.logit_value = float(logit_value)

    def forward(self, targets: Sequence[Mapping[str, Tensor]], *,
                size: tuple[int, int] | None = None) -> dict[str, Tensor]:
        """
        Args:
            targets: B dicts ``labels`` (N,), ``masks`` (N, H, W) bool, all of the same (H, W).
            size: output mask size (h, w) (nearest resize); default (H, W).

        Returns:
            ``mask_logits`` (B, Q, h, w), ``scores`` (B, Q) and, with ``num_classes``, ``class_logits``.
        """
        if size is None:
            size = tuple(targets[0]["masks"].shape[-2:])
        B, Q, v = len(targets), self.num_queries, self.logit_value
        device = targets[0]["masks"].device
        mask_logits = torch.full((B, Q, *size), -v, device=device)  # (B, Q, h, w)
        scores = torch.zeros((B, Q), device=device)  # (B, Q)
        class_logits = None
        if self.num_classes is not None:
            class_logits = torch.zeros((B, Q, self.num_classes + 1), device=device)  # (B, Q, C+1)
            class_logits[:, :, -1] = v  # padding → no-object
        for b, t in enumerate(targets):
            n = len(t["labels"])
            if n > Q:
                raise ValueError(f"image {b} has {n} GT segments but the oracle has only {Q} queries")
            if n == 0:
                continue
            m = _resize_bool(t["masks"], size)  # (n, h, w)
            mask_logits[b, :n] = torch.where(m, v, -v)  # (n, h, w)
            scores[b, :n] = 1.0
            if class_logits is not None:
                class_logits[b, :n] = 0.0
                class_logits[b, torch.arange(n, device=device), t["labels"].to(device)] = v
        out = {"mask_logits": mask_logits, "scores": scores}
        if class_logits is not None:
            out["class_logits"] = class_logits
        return out


def oracle_classifier_logits(mask_logits: Tensor, targets: Sequence[Mapping[str, Tensor]], *, num_classes: int,
                             logit_value: float = 20.0, mask_threshold: float = 0.0) -> Tensor:
    """Fig. 2a "oracle classifier": each proposal gets the label of its best-overlapping GT mask.

    Overlap is IoU between the binarised proposal (logit > ``mask_threshold``, bilinearly resized to
    the GT size) and each GT mask; a proposal that overlaps no GT mask (IoU 0) gets no-object.

    Args:
        mask_logits: (B, Q, h, w) proposal mask logits (same field of view as the GT masks).
        targets: B dicts ``labels`` (N,), ``masks`` (N, H, W) bool.
        num_classes: C; the result has C+1 columns, the last = no-object.
        logit_value: the one-hot logit value (0 elsewhere).

    Returns:
        (B, Q, C+1) one-hot class logits.
    """
    B, Q = mask_logits.shape[:2]
    out = torch.zeros((B, Q, num_classes + 1), device=mask_logits.device)  # (B, Q, C+1)
    for b, t in enumerate(targets):
        n = len(t["labels"])
        if n == 0:
            out[b, :, -1] = logit_value
            continue
        H, W = t["masks"].shape[-2:]
        m = mask_logits[b:b + 1].float()  # (1, Q, h, w)
        if tuple(m.shape[-2:]) != (H, W):
            m = F.interpolate(m, size=(H, W), mode="bilinear", align_corners=False)  # (1, Q, H, W)
        pred = (m[0] > mask_threshold).flatten(1).float()  # (Q, H·W)
        gt = t["masks"].to(mask_logits.device).flatten(1).float()  # (N, H·W)
        inter = pred @ gt.T  # (Q, N)
        union = pred.sum(1)[:, None] + gt.sum(1)[None, :] - inter  # (Q, N)
        iou = inter / union.clamp(min=1.0)  # (Q, N)
        best_iou, best = iou.max(1)  # (Q,), (Q,)
        labels = t["labels"].to(mask_logits.device)[best]  # (Q,)
        labels = torch.where(best_iou > 0, labels, torch.full_like(labels, num_classes))  # (Q,)
        out[b, torch.arange(Q, device=mask_logits.device), labels] = logit_value
    return out
