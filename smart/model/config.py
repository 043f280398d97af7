"""Model configuration: one frozen dataclass, its validation, and a registry of named presets.

The dataclass follows open_clip's ``CLIPVisionCfg`` style (one field per switch, each with a trailing
comment); the registry follows timm's named variants. Every switch of the paper's Table 3 is a field
(``docs/method-spec.md`` §4.12), and every default is the spec's [REC] value (§4.13).

A config is read from a mapping with :meth:`SmartModelConfig.from_dict` (unknown keys, wrong types and
out-of-range values raise :class:`~smart.errors.ConfigError` naming the key), or from a named preset
with :func:`get_preset`. A mapping may start from a preset: ``{"preset": "paper", "da_layers": 3}``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smart.errors import ConfigError
from smart.schema import check_fields

# Table 3(a): which CLIP image-encoder parameters are tuned. "all" = every parameter of the visual
# tower (embeddings, LayerNorms, attention, MLPs, head); "mlp" = c_fc/c_proj (fc1/fc2) of every block.
TUNE_TARGETS: dict[str, tuple[str, ...]] = {
    "none": (),
    "q": ("q",),
    "k": ("k",),
    "v": ("v",),
    "qk": ("q", "k"),
    "qv": ("q", "v"),
    "qkv": ("q", "k", "v"),
    "mlp": ("mlp",),
    "all": ("all",),
}
LORA_TARGETS = ("q", "k", "v", "o")
TABLE3B_LORA_RANKS = (8, 16, 32, 64, 128, 256)
# Table 3(f) backbones as open_clip names; OpenAI weights need the QuickGELU variants (spec §5.4).
PAPER_CLIP_MODELS = ("ViT-B-16-quickgelu", "ViT-L-14-336-quickgelu", "EVA01-g-14-plus")

_CHOICES: dict[str, tuple] = {
    "tune": tuple(TUNE_TARGETS),
    "qpt_scope": ("shared", "mask_only"),
    "qpt_param": ("weight", "delta"),
    "empty_mask_guard": ("argmax", "cls"),
    "mask_bias": ("hard", "soft"),
    "tgt_mode": ("mean", "first"),
    "class_names": ("openseg", "plain"),
    "da_form": ("conv3x3",),
}


@dataclass(frozen=True)
class SmartModelConfig:
    """Every switch of the CLIP side of SMART (``method-spec.md`` §4.12, §4.13)."""

    # --- CLIP (§4.3, §4.4; Table 3f) ---
    clip_model: str = "ViT-L-14-336-quickgelu"  # open_clip model name (OpenAI ViT-L/14-336 needs -quickgelu)
    clip_pretrained: str | None = None  # open_clip tag or local weight file; None = random init
    image_size: int = 896  # CLIP input side (squashed); pos-embeddings resized bilinearly to it
    # --- mask tokens and Eq. 5 attention mask (§4.1 step 4, §4.2) ---
    mask_threshold: float = 0.0  # mask logit threshold (0 = sigmoid >= 0.5, the spec's binarisation)
    mask_attend_cls: bool = False  # let every mask token see CLS (MaskCLIP style); Eq. 1 says patches only
    empty_mask_guard: str = "argmax"  # empty mask: "argmax" unblocks the best patch, "cls" lets it see CLS
    mask_bias: str = "hard"  # Eq. 5 bias: "hard" 0 / -inf (only the mask losses train the DA); "soft":
    #                          log σ(max logit − threshold) per patch, so the classification loss reaches the DA
    # --- SMA, Eqs. 1-4 (§4.5) ---
    sma: bool = True  # Semantic-guided Mask Attention on/off (Table 3d)
    sma_dim: int = 256  # width d of g_q, g_k (one head)
    sma_residual: bool = False  # False = literal Eq. 3 (no residual); True = u + TIE(u)
    sma_layers: str | tuple[int, ...] = "all"  # blocks where TIE is applied; one shared g set
    tgt_mode: str = "mean"  # TGT per class: "mean" of synonym embeddings or the "first" name
    # --- QPT and Table 3(a)/(b) (§4.7) ---
    tune: str = "q"  # which CLIP image-encoder parameters are tuned (Table 3a; "q" = QPT, "none" = frozen CLIP)
    qpt_scope: str = "shared"  # "shared": tuned f_q serves image and mask tokens; "mask_only": a copy for masks
    qpt_param: str = "weight"  # "weight": tune W_q itself; "delta": train a zero-init dW_q (decay -> init)
    lora_rank: int = 0  # > 0: LoRA on the attention projections instead of QPT (Table 3b)
    lora_alpha: float = 1.0  # LoRA scaling = alpha / sqrt(rank) (CLIP-LoRA)
    lora_targets: tuple[str, ...] = LORA_TARGETS  # projections LoRA wraps: q, k, v, o
    # --- Distribution Adapter (§4.6; Table 3c) ---
    da_layers: int = 2  # 0 (identity) .. 3 conv layers
    da_hidden: int = 16  # hidden channels C_h of the DA convs
    da_form: str = "conv3x3"  # only the residual 3x3-conv form is implemented
    # --- text side (§4.8) and Table 3(e) ---
    class_names: str = "openseg"  # "openseg": synonyms x 14 VILD templates; "plain": raw first name
    logit_scale_max: float = 100.0  # logits = clamp(exp(logit_scale), max) * cos
    void_class: bool = True  # learned void embedding (§4.8); False: no void logit (the training-free baseline)
    tune_text_encoder: bool = False  # Table 3(e): also tune CLIP's text tower
    tune_mask_generator: bool = False  # Table 3(e): read by smart.model.mask_generator
    # --- engineering ---
    grad_checkpointing: bool = False  # checkpoint every block of the two-stream transformer
    mask_chunk: int = 16  # proposals per chunk when building the Eq. 5 mask at full resolution
    fq_lr_multiplier: float = 1.0  # lr multiplier of tuned CLIP parameters (I4: 0.1 gives 1e-5)

    def __post_init__(self):
        check_fields(self)  # the types (smart.schema); validate() checks values and rules between fields
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        for name, choices in _CHOICES.items():
            value = getattr(self, name)
            if value not in choices:
                raise ConfigError(f"expected one of {', '.join(map(str, choices))}, got {value!r}", field=name)
        _check_int(self, "image_size", lo=8)
        _check_int(self, "sma_dim", lo=1)
        _check_int(self, "lora_rank", lo=0)
        _check_int(self, "da_layers", lo=0, hi=3)
        _check_int(self, "da_hidden", lo=1)
        _check_int(self, "mask_chunk", lo=1)
        if not self.clip_model:
            raise ConfigError("expected a non-empty open_clip model name", field="clip_model")
        for name in ("logit_scale_max", "lora_alpha"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"must be positive, got {getattr(self, name)}", field=name)
        if self.fq_lr_multiplier < 0:
            raise ConfigError(f"must be >= 0, got {self.fq_lr_multiplier}", field="fq_lr_multiplier")
        if self.sma_layers != "all" and (not isinstance(self.sma_layers, tuple) or not all(
                isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in self.sma_layers)):
            raise ConfigError("expected 'all' or a list of block indices", field="sma_layers")
        if not isinstance(self.lora_targets, tuple) or not self.lora_targets or any(
                t not in LORA_TARGETS for t in self.lora_targets):
            raise ConfigError(f"expected a non-empty list drawn from {LORA_TARGETS}", field="lora_targets")
        if self.lora_rank > 0 and self.tune != "none":
            raise ConfigError("LoRA replaces QPT (Table 3b): set tune='none' with lora_rank > 0",
                              field="lora_rank")
        if self.qpt_scope == "mask_only" and (self.tune not in ("q", "none") or self.lora_rank > 0):
            raise ConfigError("qpt_scope='mask_only' supports only tune='q' without LoRA", field="qpt_scope")
        if self.qpt_param == "delta" and self.tune in ("mlp", "all"):
            raise ConfigError("qpt_param='delta' applies to q/k/v projections only", field="qpt_param")

    # ------------------------------------------------------------------ derived
    @property
    def tune_targets(self) -> tuple[str, ...]:
        """The effective Table 3(a) targets (empty for ``tune='none'``)."""
        return TUNE_TARGETS[self.tune]

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["lora_targets"] = list(self.lora_targets)
        if self.sma_layers != "all":
            d["sma_layers"] = list(self.sma_layers)
        return d

    def replace(self, **overrides) -> SmartModelConfig:
        return SmartModelConfig.from_dict({**self.to_dict(), **overrides})

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str | Path | None = None) -> SmartModelConfig:
        """Build from a mapping; ``{"preset": NAME, ...}`` starts from that preset."""
        if not isinstance(data, dict):
            raise ConfigError(f"expected a mapping, got {type(data).__name__}", path=source)
        data = dict(data)
        base: dict[str, Any] = {}
        if "preset" in data:
            name = data.pop("preset")
            if name not in _PRESETS:
                raise ConfigError(f"unknown preset {name!r}; have {', '.join(list_presets())}", path=source,
                                  field="preset")
            base = _PRESETS[name]().to_dict()
        names = {f.name for f in dataclasses.fields(cls)}
        if "qpt" in data:
            data.update(_legacy_qpt(data, source))
        for key in data:
            if key not in names:
                raise ConfigError(f"unknown key (allowed: {', '.join(sorted(names))})", path=source, field=key)
        merged = {**base, **data}
        if isinstance(merged.get("lora_targets"), list):
            merged["lora_targets"] = tuple(merged["lora_targets"])
        if isinstance(merged.get("sma_layers"), list):
            merged["sma_layers"] = tuple(merged["sma_layers"])
        try:
            return cls(**merged)
        except ConfigError as exc:
            if source is not None and exc.path is None:
                raise ConfigError(exc.message, path=source, field=exc.field) from None
            raise


def _legacy_qpt(data: dict, source) -> dict:
    """Read the ``qpt`` switch of older params files and checkpoints, folded into ``tune``: ``qpt: false``
    is ``tune: none`` and ``qpt: true`` adds nothing. Returns the ``tune`` entry to use (``qpt`` removed)."""
    qpt = data.pop("qpt")
    if not isinstance(qpt, bool):
        raise ConfigError(f"expected true or false, got {qpt!r} (qpt is folded into tune: write tune: none)",
                          path=source, field="qpt")
    tune = data.get("tune")
    if qpt:
        return {} if tune is None else {"tune": tune}
    if tune not in (None, "q", "none"):
        raise ConfigError(f"qpt: false contradicts tune: {tune} (qpt is folded into tune: write tune: none)",
                          path=source, field="qpt")
    return {"tune": "none"}


def _check_int(cfg: SmartModelConfig, name: str, *, lo: int, hi: int | None = None) -> None:
    value = getattr(cfg, name)
    if value < lo or (hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ConfigError(f"expected an integer {rng}, got {value}", field=name)


def load_model_config(path: str | Path) -> SmartModelConfig:
    """Read a JSON model config (a field mapping, optionally with ``"preset"``)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("model config not found", path=path) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"not valid JSON ({exc})", path=path) from None
    return SmartModelConfig.from_dict(data, source=path)


# ---------------------------------------------------------------------------------------- presets
_PRESETS: dict[str, Callable[[], SmartModelConfig]] = {}
_PRESET_HELP: dict[str, str] = {}


def register_preset(name: str, help: str = "", **overrides) -> None:
    """Register a named variant: the defaults with ``overrides`` (validated lazily, on use)."""
    base = overrides.pop("base", None)

    def make() -> SmartModelConfig:
        start = _PRESETS[base]().to_dict() if base else {}
        return SmartModelConfig.from_dict({**start, **overrides})

    _PRESETS[name] = make
    _PRESET_HELP[name] = help


def get_preset(name: str) -> SmartModelConfig:
    if name not in _PRESETS:
        raise ConfigError(f"unknown preset {name!r}; have {', '.join(list_presets())}", field="preset")
    return _PRESETS[name]()


def list_presets() -> list[str]:
    return list(_PRESETS)


def preset_help(name: str) -> str:
    return _PRESET_HELP.get(name, "")


# Paper configuration (§4.13 defaults): ViT-L/14-336 (OpenAI weights) at 896, SMA d=256, QPT on f_q, DA 2.
# The Table 3 cells start from it; clip_pretrained may be overridden with a local weight file.
register_preset("paper", "paper default: ViT-L-14-336 (OpenAI, QuickGELU) at 896, SMA d=256, QPT f_q, DA 2",
                clip_pretrained="openai")
# Small profiles: random-init CLIPs of smart.model.clip_classifier.TINY_CLIP_CONFIGS.
register_preset("mini", "mini profile: small random-init CLIP (4 blocks, width 128) at 128 px",
                clip_model="smart-mini-vit", image_size=128, sma_dim=64, da_hidden=8)
register_preset("tiny-test", "unit tests: 2-block width-64 CLIP at 32 px", clip_model="smart-tiny-vit",
                image_size=32, sma_dim=16, da_hidden=4)
register_preset("tiny-test-eva", "unit tests: 2-block timm Eva (EVA01 structure) at 32 px",
                clip_model="smart-tiny-eva", image_size=32, sma_dim=16, da_hidden=4)
# Table 3(a): tuned CLIP parameters.
for _t in TUNE_TARGETS:
    register_preset(f"table3a-{_t}", f"Table 3(a): tune={_t}", base="paper", tune=_t)
# Table 3(b): LoRA on the attention projections instead of QPT.
for _r in TABLE3B_LORA_RANKS:
    register_preset(f"table3b-lora{_r}", f"Table 3(b): LoRA rank {_r} on q/k/v/o, no QPT", base="paper",
                    tune="none", lora_rank=_r)
# Table 3(c): Distribution Adapter depth.
for _n in range(4):
    register_preset(f"table3c-da{_n}", f"Table 3(c): {_n} DA layers", base="paper", da_layers=_n)
# Table 3(d): components.
register_preset("table3d-baseline", "Table 3(d): frozen M2F + frozen CLIP with mask attention, training-free "
                "(no void class; the cell trains 0 iterations)", base="paper", sma=False, tune="none",
                void_class=False)
register_preset("table3d-sma", "Table 3(d): + SMA (CLIP frozen)", base="paper", sma=True, tune="none")
register_preset("table3d-smart", "Table 3(d): + SMA + QPT (= paper)", base="paper")
# Table 3(e): extra tuning.
register_preset("table3e-text", "Table 3(e): + tune the language encoder", base="paper", tune_text_encoder=True)
register_preset("table3e-maskgen", "Table 3(e): + tune the mask generator", base="paper",
                tune_mask_generator=True)
# Table 3(f): VLM backbones.
register_preset("table3f-vitb16", "Table 3(f): ViT-B-16 (OpenAI, QuickGELU) at 896", base="paper",
                clip_model="ViT-B-16-quickgelu")
register_preset("table3f-vitl14-336", "Table 3(f): ViT-L-14-336 (= paper)", base="paper")
register_preset("table3f-eva01g", "Table 3(f): EVA01-g-14-plus (timm Eva tower) at 896", base="paper",
                clip_model="EVA01-g-14-plus", clip_pretrained="merged2b_s11b_b114k")

__all__ = [
    "LORA_TARGETS",
    "PAPER_CLIP_MODELS",
    "TABLE3B_LORA_RANKS",
    "TUNE_TARGETS",
    "SmartModelConfig",
    "get_preset",
    "list_presets",
    "load_model_config",
    "preset_help",
    "register_preset",
]
