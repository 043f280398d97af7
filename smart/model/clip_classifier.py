"""CLIP mask classifier: mask tokens in CLIP's image encoder; paper §4 (framework, Eqs. 1, 2, 5).

One mask token per proposal is appended to CLIP's image encoder. It starts as CLIP's [CLS] token
(``class_embedding + positional_embedding[0]``, then ``ln_pre``; MaskCLIP's layout, spec §4.2) and, in
every block, attends only to the image patches its proposal covers (Eq. 5), with queries taken from the
SMA task information (Eqs. 2-4, :mod:`smart.model.sma`). Its final embedding, after ``ln_post`` and
``proj``, classifies the proposal against text embeddings (:mod:`smart.model.text`).

Two streams per block l (spec §4.1 step 5):

* image stream [CLS | patches]: standard CLIP self-attention (f_q, f_k, f_v, out_proj, MLP, LNs);
* mask stream (Q tokens): u = ln_1(x_mask); u^ = TIE(u, TGT); q = f_q(u^); k, v = the image stream's
  f_k / f_v of the *patch* tokens (reused); masked attention with the Eq. 5 bias (0 / -inf); then the
  block's out_proj, residual and MLP. Image tokens never see mask tokens, and mask tokens never see
  each other (nor themselves).

open_clip specifics (spec §5.4, open_clip_torch 3.3.0):

* ``nn.MultiheadAttention`` packs q/k/v into ``in_proj_weight`` (3D, D). :class:`SplitMultiheadAttention`
  copies it into separate ``q_proj`` / ``k_proj`` / ``v_proj`` Linears (outputs identical) so that f_q
  alone can be trained under AdamW with weight decay (spec §4.7). It is a drop-in for open_clip's block,
  so ``clip.encode_image`` keeps working on the split model.
* All attention masks here are additive float (0 / -inf) tensors; open_clip would silently turn a
  boolean mask into +0/+1 logits.
* Positional embeddings are resized with **bilinear** interpolation (align_corners=False, CLS row kept)
  to the configured input size (896 in the paper; §5.3, citing Bolya et al.), not open_clip's bicubic.

Supported image towers: open_clip ``VisionTransformer`` (ViT-B-16, ViT-L-14-336(-quickgelu), any
``ResidualAttentionBlock`` ViT) and open_clip's timm tower around a timm ``Eva`` with EVA01-style
blocks (EVA01-g-14-plus: fused qkv with q/v biases, no RoPE, no register tokens, CLS-token pooling).
Other towers (ConvNeXt, SigLIP attention pooling, EVA02 with RoPE, ``CustomResidualAttentionBlock``)
raise :class:`UnsupportedTowerError` naming what is missing.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import tempfile
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from smart.errors import ConfigError
from smart.model.sma import TaskInformationExtraction

_logger = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------ tiny configs
# open_clip architecture JSONs for tests and the mini profile (random init, nothing downloaded).
# vision_cfg has no "heads" key in open_clip: heads = width // head_width.
TINY_CLIP_CONFIGS: dict[str, dict] = {
    "smart-tiny-vit": {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
    },
    "smart-mini-vit": {
        "embed_dim": 64,
        "vision_cfg": {"image_size": 64, "layers": 4, "width": 128, "head_width": 32, "patch_size": 8},
        "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 128, "heads": 4, "layers": 4},
    },
    # A tiny timm Eva tower with EVA01-g-14-plus' structure (fused qkv, q/v biases, CLS pooling).
    "smart-tiny-eva": {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "timm_model_name": "smart_tiny_eva01", "timm_model_pretrained": False,
                       "timm_pool": "token", "timm_proj": None},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
        "custom_text": True,
    },
}
_REGISTERED = False


def register_tiny_clip_configs() -> None:
    """Register :data:`TINY_CLIP_CONFIGS` with open_clip (and the tiny timm Eva); idempotent."""
    global _REGISTERED
    if _REGISTERED:
        return
    import open_clip
    import timm
    from timm.models import register_model

    if "smart_tiny_eva01" not in timm.list_models("smart_tiny_eva01"):
        from timm.models.eva import Eva

        @register_model
        def smart_tiny_eva01(pretrained: bool = False, **kwargs):
            for k in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):  # timm factory plumbing
                kwargs.pop(k, None)
            kwargs.setdefault("img_size", 32)
            return Eva(patch_size=8, embed_dim=64, depth=2, num_heads=2, mlp_ratio=4.0, **kwargs)

    folder = Path(tempfile.mkdtemp(prefix="smart_clip_cfgs_"))
    for name, cfg in TINY_CLIP_CONFIGS.items():
        (folder / f"{name}.json").write_text(json.dumps(cfg), encoding="utf-8")
    open_clip.add_model_config(folder)
    _REGISTERED = True


def create_clip(name: str, *, pretrained: str | None = None, device: str | torch.device | None = None) -> nn.Module:
    """An open_clip CLIP model by name (tiny configs included); ``device='meta'`` builds without memory.

    ``name`` may also carry an open_clip schema: ``local-dir:<dir>`` (a checkpoint directory with
    ``open_clip_config.json``, as the mini profile's pretrained CLIP is saved) or ``hf-hub:<repo>``;
    ``pretrained`` is then ignored, as in open_clip.
    """
    import open_clip

    register_tiny_clip_configs()
    if name.startswith("local-dir:"):
        from smart.io import verify_checksums

        local = Path(name[len("local-dir:"):])
        if not (local / "open_clip_config.json").is_file():
            raise ConfigError(f"no open_clip_config.json in {str(local)!r}", field="clip_model")
        if device is None or torch.device(device).type != "meta":
            verify_checksums(local, remedy="rebuild it (e.g. `snakemake --cores all --forcerun pretrain_clip`) or "
                                           "restore the folder")
    elif not name.startswith("hf-hub:") and name not in open_clip.list_models():
        raise ConfigError(f"unknown open_clip model {name!r}", field="clip_model")
    device = torch.device(device) if device is not None else None
    ctx = device if device is not None and device.type == "meta" else nullcontext()
    try:
        with ctx:
            return open_clip.create_model(name, pretrained=pretrained, device=device)
    except (RuntimeError, AssertionError) as exc:
        raise _clip_load_error(exc, name, pretrained) from None
    except Exception as exc:  # e.g. safetensors' SafetensorError on a truncated file
        if type(exc).__name__ != "SafetensorError":
            raise
        from smart.errors import InputError

        raise InputError(f"cannot read the CLIP weights (truncated or corrupt: {exc})",
                         path=name[len("local-dir:"):] if name.startswith("local-dir:") else pretrained,
                         field="clip_model") from None


def _first_clip_mismatch(name: str, weights: Path) -> str | None:
    """``key: shape in the file vs shape in the model`` of the first weight of a local file that does
    not fit the open_clip model ``name`` (built on the meta device), or None."""
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - not a torch state dict: open_clip's own error stands
        return None
    state = state.get("state_dict", state) if isinstance(state, dict) else {}
    expected = {k: tuple(v.shape) for k, v in create_clip(name, device="meta").state_dict().items()}
    for k, v in state.items():
        k = k[len("module."):] if k.startswith("module.") else k
        if k in expected and hasattr(v, "shape") and tuple(v.shape) != expected[k]:
            return f"{k} is {tuple(v.shape)} in the file and {expected[k]} in the model"
    missing = [k for k in expected if k not in state]
    return f"{missing[0]} is missing from the file" if missing else None


def _clip_load_error(exc: Exception, name: str, pretrained: str | None) -> Exception:
    """One clear error for the two ways loading CLIP weights fails: weights that cannot be downloaded
    (offline), and a weight file that does not fit the model (its first mismatched key, both shapes)."""
    from smart.errors import InputError

    msg = str(exc)
    if pretrained and Path(pretrained).is_file():
        found = _first_clip_mismatch(name, Path(pretrained))
        if found:
            return InputError(f"the weights do not fit {name!r}: {found}", path=pretrained, field="clip_pretrained")
    if "Failed to download" in msg or "Internet connection" in msg or "cannot find the requested files" in msg:
        return InputError(
            f"the {name!r} weights {pretrained!r} are not in the local cache and cannot be downloaded from here "
            "(offline, or HF_HUB_OFFLINE=1). Download them on a machine with network access (e.g. "
            f"`python -c \"import open_clip; open_clip.create_model('{name}', pretrained='{pretrained}')\"`, then "
            "copy the Hugging Face cache) or set `clip_pretrained:` to a local weight file", field="clip_pretrained")
    return exc


# ------------------------------------------------------------------------------------ attention
class SplitAttention(nn.Module):
    """Multi-head attention with separate q/k/v/out projections and additive float masks.

    Args:
        dim: token width D.
        num_heads: number of heads H.
        head_dim: per-head width (default D // H).
        qkv_bias: whether q, k and v projections carry a bias.
    """

    def __init__(self, *, dim: int, num_heads: int, head_dim: int | None = None,
                 qkv_bias: tuple[bool, bool, bool] = (True, True, True), device=None, dtype=None):
        super().__init__()
        self.dim, self.num_heads = dim, num_heads
        self.head_dim = head_dim or dim // num_heads
        inner = self.num_heads * self.head_dim
        fk = {"device": device, "dtype": dtype}
        self.q_proj = nn.Linear(dim, inner, bias=qkv_bias[0], **fk)
        self.k_proj = nn.Linear(dim, inner, bias=qkv_bias[1], **fk)
        self.v_proj = nn.Linear(dim, inner, bias=qkv_bias[2], **fk)
        self.out_proj = nn.Linear(inner, dim, **fk)
        # qpt_scope='mask_only': a copy of f_q used by mask tokens only (set by ClipMaskClassifier).
        self.register_module("q_proj_mask", None)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               bias: torch.Tensor | None = None) -> torch.Tensor:
        """Scaled dot-product attention over heads, before ``out_proj``.

        q (B, Lq, H*hd), k/v (B, Lk, H*hd), bias additive float broadcastable to (B, H, Lq, Lk).
        Returns (B, Lq, H*hd).
        """
        B, Lq, _ = q.shape
        Lk = k.shape[1]
        H, hd = self.num_heads, self.head_dim
        q = q.view(B, Lq, H, hd).transpose(1, 2)  # (B, H, Lq, hd)
        k = k.view(B, Lk, H, hd).transpose(1, 2)  # (B, H, Lk, hd)
        v = v.view(B, Lk, H, hd).transpose(1, 2)  # (B, H, Lk, hd)
        if bias is not None:
            bias = bias.to(q.dtype)  # float 0 / -inf, same dtype as q for SDPA
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B, H, Lq, hd), scale 1/sqrt(hd)
        return out.transpose(1, 2).reshape(B, Lq, H * hd)  # (B, Lq, H*hd)

    def self_attention(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L, D) -> (B, L, D): standard CLIP self-attention."""
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)  # (B, L, H*hd) each
        return self.out_proj(self.attend(q, k, v, bias))  # (B, L, D)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_heads={self.num_heads}, head_dim={self.head_dim}"


def _mask_to_bias(attn_mask: torch.Tensor | None, B: int, H: int) -> torch.Tensor | None:
    """An nn.MultiheadAttention-convention mask -> additive float bias broadcastable to (B, H, Lq, Lk).

    Boolean masks follow PyTorch MHA (True = blocked); float masks are added as they are.
    """
    if attn_mask is None:
        return None
    if attn_mask.dtype == torch.bool:
        attn_mask = torch.zeros(attn_mask.shape, device=attn_mask.device).masked_fill(attn_mask, float("-inf"))
    if attn_mask.dim() == 3:  # (B*H, Lq, Lk) -> (B, H, Lq, Lk)
        attn_mask = attn_mask.view(B, H, *attn_mask.shape[-2:])
    return attn_mask


def _copy_linear(dst: nn.Linear, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    """Copy weights into a Linear (bias None drops the Linear's bias)."""
    with torch.no_grad():
        dst.weight.copy_(weight)
        if bias is None:
            dst.bias = None
        else:
            dst.bias.copy_(bias)


class SplitMultiheadAttention(SplitAttention):
    """Drop-in for open_clip's ``nn.MultiheadAttention(batch_first=True)`` with q/k/v split out."""

    @classmethod
    def from_packed(cls, mha: nn.MultiheadAttention) -> SplitMultiheadAttention:
        """Copy the packed ``in_proj_weight`` (3D, D) rows [0:D]=q, [D:2D]=k, [2D:3D]=v exactly."""
        if not mha.batch_first or not mha._qkv_same_embed_dim:
            raise UnsupportedTowerError("only batch_first MultiheadAttention with packed q/k/v is supported")
        D = mha.embed_dim
        w, b = mha.in_proj_weight, mha.in_proj_bias
        has_bias = b is not None
        new = cls(dim=D, num_heads=mha.num_heads, qkv_bias=(has_bias,) * 3, device=w.device, dtype=w.dtype)
        for i, proj in enumerate((new.q_proj, new.k_proj, new.v_proj)):
            # rows [i*D:(i+1)*D] of the packed (3D, D) matrix and (3D,) bias
            _copy_linear(proj, w[i * D:(i + 1) * D], b[i * D:(i + 1) * D] if has_bias else None)
        _copy_linear(new.out_proj, mha.out_proj.weight, mha.out_proj.bias)
        new.requires_grad_(mha.in_proj_weight.requires_grad)
        return new

    def forward(self, query: torch.Tensor, key: torch.Tensor | None = None, value: torch.Tensor | None = None,
                need_weights: bool = False, attn_mask: torch.Tensor | None = None, **_):
        """MHA call signature used by open_clip's ``ResidualAttentionBlock``; returns (out, None)."""
        key = query if key is None else key
        value = key if value is None else value
        q, k, v = self.q_proj(query), self.k_proj(key), self.v_proj(value)  # (B, L, D)
        bias = _mask_to_bias(attn_mask, query.shape[0], self.num_heads)
        return self.out_proj(self.attend(q, k, v, bias)), None


class SplitEvaAttention(SplitAttention):
    """Drop-in for timm's ``EvaAttention`` (EVA01 form: fused qkv, q/v bias, no k bias, no RoPE)."""

    @classmethod
    def from_eva(cls, attn: nn.Module) -> SplitEvaAttention:
        missing = []
        if not isinstance(attn.q_norm, nn.Identity) or not isinstance(attn.k_norm, nn.Identity):
            missing.append("qk_norm")
        if not isinstance(attn.norm, nn.Identity):
            missing.append("scale_attn_inner (inner LayerNorm)")
        if getattr(attn, "gate", None) is not None:
            missing.append("gated attention")
        if missing:
            raise UnsupportedTowerError(f"timm EvaAttention with {', '.join(missing)} is not supported")
        D = attn.proj.out_features
        inner = attn.num_heads * attn.head_dim
        if attn.qkv is not None:
            if attn.qkv.bias is not None:
                raise UnsupportedTowerError("timm EvaAttention with a fused qkv bias is not supported")
            w, qb = attn.qkv.weight, attn.q_bias
            has_bias = qb is not None
            new = cls(dim=D, num_heads=attn.num_heads, head_dim=attn.head_dim, qkv_bias=(has_bias, False, has_bias),
                      device=w.device, dtype=w.dtype)
            _copy_linear(new.q_proj, w[:inner], attn.q_bias)  # k has no bias in EVA (a zero buffer)
            _copy_linear(new.k_proj, w[inner:2 * inner], None)
            _copy_linear(new.v_proj, w[2 * inner:], attn.v_bias)
        else:
            q, k, v = attn.q_proj, attn.k_proj, attn.v_proj
            new = cls(dim=D, num_heads=attn.num_heads, head_dim=attn.head_dim,
                      qkv_bias=(q.bias is not None, k.bias is not None, v.bias is not None),
                      device=q.weight.device, dtype=q.weight.dtype)
            for dst, src in ((new.q_proj, q), (new.k_proj, k), (new.v_proj, v)):
                _copy_linear(dst, src.weight, src.bias)
        _copy_linear(new.out_proj, attn.proj.weight, attn.proj.bias)
        new.requires_grad_(attn.proj.weight.requires_grad)
        return new

    def forward(self, x: torch.Tensor, rope: torch.Tensor | None = None, attn_mask: torch.Tensor | None = None,
                is_causal: bool = False) -> torch.Tensor:
        """timm ``EvaAttention`` call signature; (B, L, D) -> (B, L, D)."""
        if rope is not None or is_causal:
            raise UnsupportedTowerError("SplitEvaAttention does not implement RoPE or causal attention")
        bias = _mask_to_bias(attn_mask, x.shape[0], self.num_heads)
        return self.self_attention(x, bias)


class UnsupportedTowerError(ConfigError):
    """The chosen CLIP image tower cannot host mask tokens (names what is missing)."""

    def __init__(self, message: str):
        super().__init__(message, field="clip_model")


# ------------------------------------------------------------------------------------ pos-embed
def resize_pos_embed(pos: torch.Tensor, grid: tuple[int, int], *, num_prefix: int = 1,
                     mode: str = "bilinear") -> torch.Tensor:
    """Resize a ViT positional embedding (prefix + gh*gw, D) to a new grid; prefix rows are kept.

    Bilinear with align_corners=False (spec §4.3); the identity (same tensor) at the native grid.
    """
    prefix, patches = pos[:num_prefix], pos[num_prefix:]  # (P, D), (g*g, D)
    n = patches.shape[0]
    g0 = round(math.sqrt(n))
    if g0 * g0 != n:
        raise ValueError(f"positional embedding has {n} patch rows, not a square grid")
    if (g0, g0) == tuple(grid):
        return pos
    D = pos.shape[-1]
    img = patches.reshape(1, g0, g0, D).permute(0, 3, 1, 2)  # (1, D, g0, g0)
    img = F.interpolate(img.float(), size=tuple(grid), mode=mode, align_corners=False)  # (1, D, gh, gw)
    patches = img.permute(0, 2, 3, 1).reshape(grid[0] * grid[1], D).to(pos.dtype)  # (gh*gw, D)
    return torch.cat([prefix, patches], dim=0)  # (P + gh*gw, D)


# ------------------------------------------------------------------------------------ towers
@dataclass
class BlockParts:
    """The pieces of one pre-norm transformer block, whatever the tower's naming."""

    attn: SplitAttention
    ln_1: Callable[[torch.Tensor], torch.Tensor]
    ls_1: Callable[[torch.Tensor], torch.Tensor]
    ln_2: Callable[[torch.Tensor], torch.Tensor]
    mlp: nn.Module
    ls_2: Callable[[torch.Tensor], torch.Tensor]


class VisualTower:
    """A uniform view of an open_clip image tower (owns no parameters; the CLIP model does)."""

    visual: nn.Module
    blocks: list[BlockParts]
    width: int
    embed_dim: int
    patch_size: int
    native_grid: tuple[int, int]

    def embed(self, images: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, 1+N, D)
        raise NotImplementedError

    def cls_token(self) -> torch.Tensor:  # (D,) post-norm CLS token
        raise NotImplementedError

    def head(self, tokens: torch.Tensor) -> torch.Tensor:  # (.., D) -> (.., E)
        raise NotImplementedError

    def set_image_size(self, size: int) -> None:
        raise NotImplementedError

    @property
    def grid(self) -> tuple[int, int]:
        return self._grid

    def check_image(self, images: torch.Tensor) -> tuple[int, int]:
        H, W = images.shape[-2:]
        grid = (H // self.patch_size, W // self.patch_size)
        if grid != self._grid:
            raise ValueError(f"images of {H}x{W} give a {grid} patch grid; the classifier was built for "
                             f"{self._grid} (image_size {self._grid[0] * self.patch_size})")
        return grid


class OpenClipViTTower(VisualTower):
    """open_clip ``VisionTransformer`` (OpenAI-style ViT with ``ResidualAttentionBlock``s)."""

    def __init__(self, visual: nn.Module):
        from open_clip.transformer import ResidualAttentionBlock

        if getattr(visual, "attn_pool", None) is not None or getattr(visual, "pool_type", "tok") != "tok":
            raise UnsupportedTowerError("open_clip VisionTransformer with attentional or average pooling is "
                                        "not supported (mask tokens need CLS-token pooling)")
        self.visual = visual
        self.blocks = []
        for blk in visual.transformer.resblocks:
            if not isinstance(blk, ResidualAttentionBlock) or hasattr(blk, "ln_1_kv"):
                raise UnsupportedTowerError(f"unsupported open_clip block {type(blk).__name__} (only "
                                            "ResidualAttentionBlock; not CustomResidualAttentionBlock)")
            if not isinstance(blk.attn, SplitMultiheadAttention):
                blk.attn = SplitMultiheadAttention.from_packed(blk.attn)
            self.blocks.append(BlockParts(attn=blk.attn, ln_1=blk.ln_1, ls_1=blk.ls_1, ln_2=blk.ln_2,
                                          mlp=blk.mlp, ls_2=blk.ls_2))
        ps = visual.conv1.kernel_size
        self.patch_size = ps[0] if isinstance(ps, tuple) else ps
        self.width = visual.class_embedding.shape[-1]
        self.embed_dim = int(visual.proj.shape[1])
        g = round(math.sqrt(visual.positional_embedding.shape[0] - 1))
        self.native_grid = self._grid = (g, g)

    def set_image_size(self, size: int) -> None:
        grid = (size // self.patch_size, size // self.patch_size)
        v = self.visual
        new = resize_pos_embed(v.positional_embedding.data, grid)
        if new is not v.positional_embedding.data:
            v.positional_embedding = nn.Parameter(new, requires_grad=v.positional_embedding.requires_grad)
        v.grid_size = grid
        v.image_size = (size, size)
        self._grid = grid

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        v = self.visual
        self.check_image(images)
        x = v.conv1(images)  # (B, D, gh, gw)
        x = x.flatten(2).transpose(1, 2)  # (B, N, D)
        cls = v.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], -1, -1)  # (B, 1, D)
        x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)  # (B, 1+N, D)
        x = v.patch_dropout(x)
        return v.ln_pre(x)  # (B, 1+N, D)

    def cls_token(self) -> torch.Tensor:
        v = self.visual
        return v.ln_pre(v.class_embedding + v.positional_embedding[0])  # (D,)

    def head(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.visual.ln_post(tokens) @ self.visual.proj  # (.., D) -> (.., E)


def _scale_by(module: nn.Module, name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """x * module.<name> (EVA's layer scale, a bare Parameter) or the identity when it is None."""
    if getattr(module, name) is None:
        return lambda x: x
    return lambda x: x * getattr(module, name)


class TimmEvaTower(VisualTower):
    """open_clip ``TimmModel`` around a timm ``Eva`` with EVA01-style blocks (EVA01-g-14-plus)."""

    def __init__(self, visual: nn.Module):
        from timm.models.eva import Eva, EvaBlock

        trunk = visual.trunk
        missing = []
        if not isinstance(trunk, Eva):
            missing.append(f"a timm Eva trunk (got {type(trunk).__name__})")
        else:
            if trunk.rope is not None:
                missing.append("rotary position embeddings (EVA02)")
            if getattr(trunk, "reg_token", None) is not None:
                missing.append("register tokens")
            if trunk.cls_token is None or trunk.no_embed_class:
                missing.append("a CLS token with its own positional embedding")
            if trunk.global_pool != "token":
                missing.append(f"CLS-token pooling (global_pool={trunk.global_pool!r})")
            if getattr(trunk, "dynamic_img_size", False):
                missing.append("fixed image size (dynamic_img_size is set)")
            if any(not isinstance(b, EvaBlock) for b in trunk.blocks):
                missing.append("pre-norm EvaBlock blocks (EvaBlockPostNorm found)")
        if missing:
            raise UnsupportedTowerError("timm tower not supported; mask tokens need " + "; ".join(missing))
        self.visual, self.trunk = visual, trunk
        self.blocks = []
        for blk in trunk.blocks:
            if not isinstance(blk.attn, SplitEvaAttention):
                blk.attn = SplitEvaAttention.from_eva(blk.attn)
            self.blocks.append(BlockParts(attn=blk.attn, ln_1=blk.norm1, ls_1=_scale_by(blk, "gamma_1"),
                                          ln_2=blk.norm2, mlp=blk.mlp, ls_2=_scale_by(blk, "gamma_2")))
        self.patch_size = trunk.patch_embed.patch_size[0]
        self.width = trunk.embed_dim
        linears = [m for m in visual.head.modules() if isinstance(m, nn.Linear)]
        if linears:
            self.embed_dim = linears[-1].out_features
        else:
            self.embed_dim = trunk.head.out_features if isinstance(trunk.head, nn.Linear) else trunk.num_features
        self.native_grid = self._grid = tuple(trunk.patch_embed.grid_size)

    def set_image_size(self, size: int) -> None:
        grid = (size // self.patch_size, size // self.patch_size)
        t = self.trunk
        new = resize_pos_embed(t.pos_embed.data[0], grid, num_prefix=t.num_prefix_tokens)
        if new is not t.pos_embed.data[0]:
            t.pos_embed = nn.Parameter(new[None], requires_grad=t.pos_embed.requires_grad)
        pe = t.patch_embed  # keep timm's own forward usable at the new size
        pe.img_size, pe.grid_size, pe.num_patches = (size, size), grid, grid[0] * grid[1]
        self._grid = grid

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        t = self.trunk
        self.check_image(images)
        x = t.patch_embed.proj(images)  # (B, D, gh, gw)
        x = t.patch_embed.norm(x.flatten(2).transpose(1, 2))  # (B, N, D)
        x = torch.cat([t.cls_token.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)  # (B, 1+N, D)
        x = t.pos_drop(x + t.pos_embed.to(x.dtype))
        return t.norm_pre(x)  # (B, 1+N, D)

    def cls_token(self) -> torch.Tensor:
        t = self.trunk
        return t.norm_pre(t.cls_token[0, 0] + t.pos_embed[0, 0])  # (D,)

    def head(self, tokens: torch.Tensor) -> torch.Tensor:
        t = self.trunk
        x = t.head(t.head_drop(t.fc_norm(t.norm(tokens))))  # (.., D) -> (.., E)
        return self.visual.head(x)


def wrap_visual_tower(visual: nn.Module) -> VisualTower:
    """Split q/k/v in place and return the tower view; raises :class:`UnsupportedTowerError`."""
    from open_clip.timm_model import TimmModel
    from open_clip.transformer import VisionTransformer

    if isinstance(visual, VisionTransformer):
        return OpenClipViTTower(visual)
    if isinstance(visual, TimmModel):
        return TimmEvaTower(visual)
    raise UnsupportedTowerError(f"image tower {type(visual).__name__} is not supported (ViT or timm Eva only)")


# ------------------------------------------------------------------------------------ Eq. 5 mask
@dataclass
class MaskAttention:
    """The Eq. 5 attention bias of the mask stream.

    bias: (B, Q, Nk) float, 0 = may attend, -inf = blocked; keys are [CLS | patches] when
    ``with_cls`` else patches only. visible: (B, Q, N) patch visibility after the empty-mask guard.
    empty: (B, Q) proposals that covered no patch before the guard.
    """

    bias: torch.Tensor
    visible: torch.Tensor
    empty: torch.Tensor
    with_cls: bool


def build_mask_attention(mask_logits: torch.Tensor, *, image_hw: tuple[int, int], patch_size: int,
                         threshold: float = 0.0, attend_cls: bool = False, empty_guard: str = "argmax",
                         chunk: int = 16, soft: bool = False) -> MaskAttention:
    """Eq. 5: a patch is visible to mask i if mask i holds ANY pixel of it (spec §4.1 step 4).

    The mask logits are upsampled bilinearly to the CLIP input size, binarised at ``threshold``
    (logit 0 = sigmoid 0.5) and max-pooled with kernel = stride = patch size. Taking the max of the
    logits per patch and then thresholding is the same test, and also gives the best patch of an
    empty mask. No gradient flows through this mask (hard threshold).

    Empty-mask guard: "argmax" unblocks the patch with the highest pooled logit [REC]; "cls" lets
    empty rows attend to CLS only.

    ``soft=True`` (model config ``mask_bias: soft``, an interpretation ablation): the bias of patch n
    for mask i is log σ(pooled_in − threshold) instead of 0 / −inf — ≈ 0 where the mask clearly holds
    a pixel, strongly negative where it holds none — and keeps its gradient, so the classification
    loss reaches the mask logits (the Distribution Adapter). No row is fully blocked, so the empty
    guard has nothing to do; ``visible`` / ``empty`` still report the hard test.
    """
    with torch.set_grad_enabled(soft and torch.is_grad_enabled()):
        H, W = image_hw
        gh, gw = H // patch_size, W // patch_size
        pooled = []
        for part in mask_logits.split(chunk, dim=1):  # bounds the (B, q, H, W) upsampled tensor
            up = F.interpolate(part.float(), size=(H, W), mode="bilinear", align_corners=False)  # (B, q, H, W)
            up = up[..., :gh * patch_size, :gw * patch_size]  # conv1 ignores a remainder; so do we
            pooled.append(F.max_pool2d(up, kernel_size=patch_size, stride=patch_size))  # (B, q, gh, gw)
        pooled = torch.cat(pooled, dim=1).flatten(2)  # (B, Q, N): max mask logit inside each patch
    if soft:
        visible = (pooled >= threshold).detach()  # (B, Q, N): the hard test, reported only
        empty = ~visible.any(dim=-1)  # (B, Q)
        bias = F.logsigmoid(pooled - threshold)  # (B, Q, N), differentiable
        with_cls = bool(attend_cls)
        if with_cls:
            bias = torch.cat([torch.zeros_like(bias[..., :1]), bias], dim=-1)  # (B, Q, 1+N)
        return MaskAttention(bias=bias, visible=visible, empty=empty, with_cls=with_cls)
    pooled = pooled.detach()
    visible = pooled >= threshold  # (B, Q, N): Eq. 5
    empty = ~visible.any(dim=-1)  # (B, Q)
    if empty.any() and empty_guard == "argmax":
        best = F.one_hot(pooled.argmax(dim=-1), pooled.shape[-1]).bool()  # (B, Q, N)
        visible = visible | (best & empty.unsqueeze(-1))
    with_cls = attend_cls or empty_guard == "cls"
    keep = visible
    if with_cls:
        cls_col = empty.unsqueeze(-1) | attend_cls  # (B, Q, 1)
        keep = torch.cat([cls_col, visible], dim=-1)  # (B, Q, 1+N)
    bias = torch.zeros(keep.shape, device=keep.device).masked_fill(~keep, float("-inf"))  # (B, Q, Nk)
    return MaskAttention(bias=bias, visible=visible, empty=empty, with_cls=with_cls)


# ------------------------------------------------------------------------------------ classifier
class ClipMaskClassifier(nn.Module):
    """CLIP image encoder with a mask-token stream (paper §4; Eqs. 1, 2, 5; SMA via ``tie``).

    Args:
        clip: an open_clip CLIP model (its image tower's q/k/v are split in place).
        image_size: CLIP input side; positional embeddings are resized bilinearly to it.
        tie: the shared SMA Task Information Extraction module, or None (SMA off).
        sma_layers: "all" or the block indices where TIE is applied.
        mask_threshold: logit threshold of Eq. 5.
        mask_attend_cls: let every mask token attend to CLS as well (MaskCLIP; off by Eq. 1).
        empty_mask_guard: "argmax" or "cls", see :func:`build_mask_attention`.
        mask_bias: "hard" (Eq. 5 as 0 / −inf, no gradient) or "soft" (log σ, gradient to the mask
            logits), see :func:`build_mask_attention`.
        qpt_scope: "shared" (image and mask tokens use the same f_q) or "mask_only" (mask tokens use a
            copy of f_q and the image stream runs without gradient).
        mask_chunk: proposals per chunk when building the Eq. 5 mask.
        grad_checkpointing: checkpoint each two-stream block when training.
    """

    def __init__(self, *, clip: nn.Module, image_size: int, tie: TaskInformationExtraction | None = None,
                 sma_layers: str | tuple[int, ...] = "all", mask_threshold: float = 0.0,
                 mask_attend_cls: bool = False, empty_mask_guard: str = "argmax", mask_bias: str = "hard",
                 qpt_scope: str = "shared", mask_chunk: int = 16, grad_checkpointing: bool = False):
        super().__init__()
        self.clip = clip
        self.tower = wrap_visual_tower(clip.visual)
        if image_size % self.tower.patch_size:
            raise ConfigError(f"image_size {image_size} is not a multiple of the patch size "
                              f"{self.tower.patch_size}", field="image_size")
        self.tower.set_image_size(image_size)
        self.image_size = image_size
        self.tie = tie
        n_blocks = len(self.tower.blocks)
        if sma_layers != "all" and any(i >= n_blocks for i in sma_layers):
            raise ConfigError(f"block index out of range (the tower has {n_blocks} blocks)", field="sma_layers")
        self.sma_layers = frozenset(range(n_blocks) if sma_layers == "all" else sma_layers)
        self.mask_threshold = mask_threshold
        self.mask_attend_cls = mask_attend_cls
        self.empty_mask_guard = empty_mask_guard
        self.mask_bias = mask_bias
        self.qpt_scope = qpt_scope
        self.mask_chunk = mask_chunk
        self.grad_checkpointing = grad_checkpointing
        if qpt_scope == "mask_only":
            for blk in self.tower.blocks:
                blk.attn.q_proj_mask = copy.deepcopy(blk.attn.q_proj)

    @property
    def width(self) -> int:
        return self.tower.width

    @property
    def embed_dim(self) -> int:
        return self.tower.embed_dim

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def build_attention_mask(self, mask_logits: torch.Tensor) -> MaskAttention:
        """(B, Q, h, w) mask logits -> the Eq. 5 bias at this classifier's patch grid."""
        return build_mask_attention(mask_logits, image_hw=(self.image_size, self.image_size),
                                    patch_size=self.tower.patch_size, threshold=self.mask_threshold,
                                    attend_cls=self.mask_attend_cls, empty_guard=self.empty_mask_guard,
                                    chunk=self.mask_chunk, soft=self.mask_bias == "soft")

    def _block(self, l: int, x: torch.Tensor, xm: torch.Tensor, bias: torch.Tensor, with_cls: bool,
               k_tgt: torch.Tensor | None, v_tgt: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """One block of both streams. x (B, 1+N, D) image tokens, xm (B, Q, D) mask tokens."""
        blk = self.tower.blocks[l]
        attn = blk.attn
        img_ctx = torch.no_grad() if self.qpt_scope == "mask_only" else nullcontext()
        with img_ctx:
            h = blk.ln_1(x)  # (B, 1+N, D)
            q, k, v = attn.q_proj(h), attn.k_proj(h), attn.v_proj(h)  # (B, 1+N, H*hd) each
            x = x + blk.ls_1(attn.out_proj(attn.attend(q, k, v)))  # (B, 1+N, D): unchanged CLIP
            x = x + blk.ls_2(blk.mlp(blk.ln_2(x)))  # (B, 1+N, D)
        # mask stream: queries from TIE(ln_1(x_mask)), keys/values = this block's patch k/v (Eq. 2)
        u = blk.ln_1(xm)  # (B, Q, D): [MASK]
        if self.tie is not None and l in self.sma_layers:
            u = self.tie(u, k_tgt, v_tgt)  # (B, Q, D): [MASK^], Eq. 3
        q_proj = attn.q_proj_mask if attn.q_proj_mask is not None else attn.q_proj
        qm = q_proj(u)  # (B, Q, H*hd): f_q([MASK^])
        km, vm = (k, v) if with_cls else (k[:, 1:], v[:, 1:])  # (B, Nk, H*hd): patches (+ CLS)
        a = attn.attend(qm, km, vm, bias.unsqueeze(1))  # (B, Q, H*hd); bias (B, 1, Q, Nk), Eq. 1
        xm = xm + blk.ls_1(attn.out_proj(a))  # (B, Q, D)
        xm = xm + blk.ls_2(blk.mlp(blk.ln_2(xm)))  # (B, Q, D)
        return x, xm

    def forward_tokens(self, images: torch.Tensor, mask_logits: torch.Tensor,
                       tgt: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, MaskAttention]:
        """Run both streams; returns (image tokens (B, 1+N, D), mask tokens (B, Q, D), the Eq. 5 mask)."""
        if self.tie is not None and tgt is None:
            raise ValueError("SMA is on: pass the target-class text embeddings tgt (t, text_dim)")
        B, Q = mask_logits.shape[:2]
        mask = self.build_attention_mask(mask_logits)  # bias (B, Q, Nk)
        img_ctx = torch.no_grad() if self.qpt_scope == "mask_only" else nullcontext()
        with img_ctx:
            x = self.tower.embed(images)  # (B, 1+N, D)
        xm = self.tower.cls_token().to(x.dtype).expand(B, Q, -1)  # (B, Q, D): every token = CLS at input
        k_tgt = v_tgt = None
        if self.tie is not None:
            k_tgt, v_tgt = self.tie.project_targets(tgt)  # (t, d), (t, D): once per forward
        use_ckpt = self.grad_checkpointing and self.training and torch.is_grad_enabled()
        for l in range(len(self.tower.blocks)):
            if use_ckpt:
                x, xm = checkpoint(self._block, l, x, xm, mask.bias, mask.with_cls, k_tgt, v_tgt,
                                   use_reentrant=False)
            else:
                x, xm = self._block(l, x, xm, mask.bias, mask.with_cls, k_tgt, v_tgt)
        return x, xm, mask

    def forward(self, images: torch.Tensor, mask_logits: torch.Tensor,
                tgt: torch.Tensor | None = None) -> torch.Tensor:
        """Mask embeddings.

        Args:
            images: (B, 3, S, S) CLIP-normalised images at ``image_size``.
            mask_logits: (B, Q, h, w) proposal mask logits (the DA output); any resolution.
            tgt: (t, text_dim) L2-normalised class text embeddings ([TGT]); required with SMA.

        Returns:
            (B, Q, E) mask embeddings (ln_post + proj of the mask tokens; not normalised).
        """
        _, xm, _ = self.forward_tokens(images, mask_logits, tgt)
        return self.tower.head(xm)  # (B, Q, E)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B, E): CLIP's pooled CLS embedding through the split attention."""
        x = self.tower.embed(images)  # (B, 1+N, D)
        for blk in self.tower.blocks:
            x = x + blk.ls_1(blk.attn.self_attention(blk.ln_1(x)))  # (B, 1+N, D)
            x = x + blk.ls_2(blk.mlp(blk.ln_2(x)))
        return self.tower.head(x[:, 0])  # (B, E)
