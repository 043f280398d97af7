"""SMART top module (CLIP side) and ``build_model(cfg)``: paper §4 (Fig. 3), spec §4.1.

Per batch: the frozen mask generator's proposal logits P (B, Q, h, w) go through the Distribution
Adapter (P' = DA(P), §4.6); P' gives the Eq. 5 attention mask of the mask tokens in CLIP's image
encoder, whose queries carry SMA task information (Eqs. 1-4); the mask embeddings are classified against
the vocabulary's text embeddings plus a void class (§4.8). Output, consumed by the Hungarian
criterion and the inference of ``smart.model.criterion`` / ``smart.model.inference``::

    {"pred_logits": (B, Q, K+1) (last = void), "pred_masks": (B, Q, h, w) P' logits,
     "mask_embeddings": (B, Q, E), "empty_masks": (B, Q) bool}

The mask generator itself lives in ``smart.model.mask_generator`` (it reads
``SmartModelConfig.tune_mask_generator``).
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from contextlib import nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from smart.model.adapter import DistributionAdapter
from smart.model.clip_classifier import ClipMaskClassifier, create_clip
from smart.model.config import SmartModelConfig
from smart.model.qpt import apply_tuning
from smart.model.sma import TaskInformationExtraction
from smart.model.text import (
    PLAIN_TEMPLATES,
    VILD_TEMPLATES,
    TextClassifier,
    TextEmbeddingCache,
    TextEmbeddings,
    cache_key,
    encode_vocabulary,
    normalise_vocabulary,
    truncated_text_encoder,
    weights_identity,
)

_logger = logging.getLogger(__name__)

# OpenAI CLIP normalisation (open_clip.OPENAI_DATASET_MEAN / STD), the default of every model used here.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

VOID_OFF_LOGIT = -1.0e4  # the void logit when ``void_class`` is off (finite: the loss stays defined)
PARAM_GROUPS = ("clip_visual", "clip_text", "lora", "sma", "adapter", "void")


class SmartModel(nn.Module):
    """The trainable classification side of SMART.

    Args:
        classifier: the CLIP mask classifier (owns the open_clip model, text tower included).
        adapter: the Distribution Adapter.
        text_classifier: cosine classifier with the void embedding.
        config: the resolved model config (provenance; read by :meth:`param_groups`).
        tokenizer: open_clip tokenizer of ``config.clip_model``.
        text_cache_dir: optional on-disk cache directory of vocabulary embeddings.
    """

    def __init__(self, *, classifier: ClipMaskClassifier, adapter: DistributionAdapter,
                 text_classifier: TextClassifier, config: SmartModelConfig, tokenizer=None,
                 text_cache_dir: str | None = None):
        super().__init__()
        self.classifier = classifier
        self.adapter = adapter
        self.text_classifier = text_classifier
        self.config = config
        self.tokenizer = tokenizer
        self.text_cache = TextEmbeddingCache(text_cache_dir) if text_cache_dir else None
        self._text_memo: OrderedDict[str, TextEmbeddings] = OrderedDict()
        self._weights_id: str | None = None  # identity of the frozen text weights (see text_cache_key)
        self.register_buffer("pixel_mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("pixel_std", torch.tensor(CLIP_STD).view(1, 3, 1, 1) * 255.0, persistent=False)

    # ------------------------------------------------------------------ convenience
    @property
    def clip(self) -> nn.Module:
        return self.classifier.clip

    @property
    def sma(self) -> TaskInformationExtraction | None:
        return self.classifier.tie

    @property
    def image_size(self) -> int:
        return self.classifier.image_size

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in 0-255 -> (B, 3, S, S) CLIP input: bicubic squash to S, CLIP-normalised."""
        S = self.image_size
        x = images.float()
        if x.shape[-2:] != (S, S):
            x = F.interpolate(x, size=(S, S), mode="bicubic", align_corners=False)  # aspect ratio not kept
        return (x - self.pixel_mean) / self.pixel_std

    # ------------------------------------------------------------------ text
    @property
    def templates(self) -> tuple[str, ...]:
        return VILD_TEMPLATES if self.config.class_names == "openseg" else PLAIN_TEMPLATES

    @property
    def _encode_text(self):
        """CLIP's text encoder over the tokens up to the batch's last end-of-text only (same embeddings,
        far less work; :func:`smart.model.text.truncated_text_encoder`), else ``clip.encode_text``."""
        return truncated_text_encoder(self.clip) or self.clip.encode_text

    def text_cache_key(self, vocabulary: list[list[str]]) -> str:
        """Cache key of a vocabulary: (model name, text-weights identity, vocabulary, templates)."""
        if self._weights_id is None:  # computed once; reset by load_state_dict
            clip = self.clip
            visual_ids = {id(p) for p in clip.visual.parameters()}
            text_params = [p for p in clip.parameters() if id(p) not in visual_ids]
            # a tuned text tower is identified by its values, never by the name of its pretrained weights
            pretrained = None if self.config.tune_text_encoder else self.config.clip_pretrained
            self._weights_id = weights_identity(pretrained, text_params)
        return cache_key(model_name=self.config.clip_model, weights=self._weights_id, vocabulary=vocabulary,
                         templates=self.templates, tgt_mode=self.config.tgt_mode)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """As nn.Module's; also forgets memoised text embeddings (the text weights may have changed)."""
        self._text_memo.clear()
        self._weights_id = None
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def encode_text(self, text) -> TextEmbeddings:
        """Vocabulary (``Vocabulary``, list of synonym lists, list of names) -> :class:`TextEmbeddings`.

        Frozen text tower: cached in memory and (with ``text_cache_dir``) on disk. With
        ``tune_text_encoder`` in training mode the vocabulary is re-encoded with gradient every call.
        """
        if isinstance(text, TextEmbeddings):
            return text
        vocab = normalise_vocabulary(text)
        if self.config.class_names == "plain":
            vocab = [[syn[0]] for syn in vocab]
        device = self.pixel_mean.device
        grad = self.config.tune_text_encoder and self.training and torch.is_grad_enabled()
        if grad:
            return encode_vocabulary(self._encode_text, self.tokenizer, vocab, templates=self.templates,
                                     tgt_mode=self.config.tgt_mode, device=device)
        key = self.text_cache_key(vocab)
        if key in self._text_memo:
            return self._text_memo[key]
        emb = self.text_cache.load(key) if self.text_cache is not None else None
        if emb is None:
            with torch.no_grad():
                emb = encode_vocabulary(self._encode_text, self.tokenizer, vocab, templates=self.templates,
                                        tgt_mode=self.config.tgt_mode, device=device, key=key)
            if self.text_cache is not None and not self.config.tune_text_encoder:
                self.text_cache.save(emb, meta={"clip_model": self.config.clip_model, "num_classes": len(vocab)})
        emb = emb.to(device=device)
        if not self.config.tune_text_encoder:  # a tuned text tower changes; never memoise its output
            self._text_memo[key] = emb
            while len(self._text_memo) > 8:
                self._text_memo.popitem(last=False)
        return emb

    # ------------------------------------------------------------------ forward
    def forward(self, images: torch.Tensor, proposal_mask_logits: torch.Tensor, text) -> dict[str, torch.Tensor]:
        """Classify proposals.

        Args:
            images: (B, 3, H, W) RGB in 0-255 (the generator's padded input); squashed to ``image_size``.
            proposal_mask_logits: (B, Q, h, w) float mask logits from the (frozen) mask generator.
            text: a vocabulary (see :meth:`encode_text`) or precomputed :class:`TextEmbeddings`.

        Returns:
            dict with "pred_logits" (B, Q, K+1) (last = void), "pred_masks" (B, Q, h, w) DA-adapted mask
            logits, "mask_embeddings" (B, Q, E), "empty_masks" (B, Q) bool (no patch passed Eq. 5).
        """
        pred_masks = self.adapter(proposal_mask_logits.float())  # (B, Q, h, w): P' = DA(P)
        emb = self.encode_text(text)  # synonyms (S, E), classes (t, E)
        clip_images = self.preprocess(images)  # (B, 3, S, S)
        tgt = emb.classes if self.sma is not None else None  # (t, E): [TGT]
        # Eq. 5 reads the adapted masks; with the hard bias (the default) no gradient flows through it
        guide = pred_masks if self.config.mask_bias == "soft" else pred_masks.detach()  # (B, Q, h, w)
        _, xm, mask = self.classifier.forward_tokens(clip_images, guide, tgt)  # xm (B, Q, D)
        z = self.classifier.tower.head(xm)  # (B, Q, E)
        logits = self.text_classifier(z, emb, self.clip.logit_scale)  # (B, Q, t+1)
        if not self.config.void_class:  # no void class: every proposal is a candidate segment
            logits = torch.cat([logits[..., :-1], torch.full_like(logits[..., -1:], VOID_OFF_LOGIT)], dim=-1)
        return {"pred_logits": logits, "pred_masks": pred_masks, "mask_embeddings": z, "empty_masks": mask.empty}

    # ------------------------------------------------------------------ parameters
    def parameter_group(self, name: str) -> str:
        """Which of :data:`PARAM_GROUPS` a parameter name belongs to."""
        if "lora_" in name:
            return "lora"
        if name.startswith("classifier.tie."):
            return "sma"
        if name.startswith("adapter."):
            return "adapter"
        if name.startswith("text_classifier."):
            return "void"
        if name.startswith("classifier.clip.visual."):
            return "clip_visual"
        return "clip_text"

    def parameter_counts(self) -> dict[str, dict[str, int]]:
        """{group: {"total": n, "trainable": n}} plus an "all" entry."""
        out = {g: {"total": 0, "trainable": 0} for g in PARAM_GROUPS}
        for name, p in self.named_parameters():
            g = out[self.parameter_group(name)]
            g["total"] += p.numel()
            g["trainable"] += p.numel() if p.requires_grad else 0
        out["all"] = {k: sum(v[k] for v in out.values()) for k in ("total", "trainable")}
        return out

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def param_groups(self, *, lr: float = 1e-4, weight_decay: float = 0.05,
                     decay_ndim_only: bool = True) -> list[dict[str, Any]]:
        """AdamW parameter groups (nanoGPT style): >= 2-D weights decay, biases / 1-D / void do not
        (spec §4.7 [REC]); tuned CLIP parameters get ``lr * fq_lr_multiplier`` (spec I4)."""
        from smart.train.optim import no_decay  # the decay rule every trainer shares

        groups: dict[tuple[bool, bool], list] = {}
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            is_clip = self.parameter_group(name) in ("clip_visual", "clip_text")
            decay = not no_decay(name, p, decay_ndim_only=decay_ndim_only) and not name.endswith("void_embedding")
            groups.setdefault((is_clip, decay), []).append(p)
        out = []
        for (is_clip, decay), params in sorted(groups.items()):
            out.append({"params": params, "lr": lr * (self.config.fq_lr_multiplier if is_clip else 1.0),
                        "weight_decay": weight_decay if decay else 0.0,
                        "name": f"{'clip' if is_clip else 'new'}_{'decay' if decay else 'no_decay'}"})
        return out


def build_model(cfg: SmartModelConfig | dict, *, device: str | torch.device | None = None,
                text_cache_dir: str | None = None) -> SmartModel:
    """Build the CLIP side of SMART from a config (the only code that reads the config).

    Args:
        cfg: a :class:`SmartModelConfig` (or a mapping for :meth:`SmartModelConfig.from_dict`).
        device: where to build; ``"meta"`` builds shapes only (parameter counts, no memory, no weights).
        text_cache_dir: optional on-disk cache of vocabulary embeddings (default: the ``SMART_TEXT_CACHE``
            environment variable, which the DAG sets so that its jobs encode each vocabulary once).
    """
    import open_clip

    if isinstance(cfg, dict):
        cfg = SmartModelConfig.from_dict(cfg)
    if text_cache_dir is None:
        text_cache_dir = os.environ.get("SMART_TEXT_CACHE") or None
    device = torch.device(device) if device is not None else None
    meta = device is not None and device.type == "meta"
    pretrained = None if meta else cfg.clip_pretrained
    if cfg.clip_pretrained == "openai" and "quickgelu" not in cfg.clip_model:
        _logger.warning("OpenAI weights with %s: use the -quickgelu model name, or the activations are wrong "
                        "(method-spec.md §5.4)", cfg.clip_model)
    clip = create_clip(cfg.clip_model, pretrained=pretrained, device=device)
    factory = torch.device("meta") if meta else None
    tie = None
    # The classifier splits q/k/v and resizes the positional embedding; the tower tells the widths.
    classifier = ClipMaskClassifier(clip=clip, image_size=cfg.image_size, tie=None, sma_layers=cfg.sma_layers,
                                    mask_threshold=cfg.mask_threshold, mask_attend_cls=cfg.mask_attend_cls,
                                    empty_mask_guard=cfg.empty_mask_guard, mask_bias=cfg.mask_bias,
                                    qpt_scope=cfg.qpt_scope,
                                    mask_chunk=cfg.mask_chunk, grad_checkpointing=cfg.grad_checkpointing)
    width, embed_dim = classifier.width, classifier.embed_dim
    with factory if factory is not None else nullcontext():
        if cfg.sma:
            tie = TaskInformationExtraction(width=width, text_dim=embed_dim, dim=cfg.sma_dim,
                                            residual=cfg.sma_residual)
        adapter = DistributionAdapter(num_layers=cfg.da_layers, hidden=cfg.da_hidden)
        text_classifier = TextClassifier(embed_dim=embed_dim, logit_scale_max=cfg.logit_scale_max)
    classifier.tie = tie
    apply_tuning(classifier, tune=cfg.tune, qpt_param=cfg.qpt_param, lora_rank=cfg.lora_rank,
                 lora_alpha=cfg.lora_alpha, lora_targets=cfg.lora_targets, tune_text_encoder=cfg.tune_text_encoder)
    if not cfg.void_class:
        text_classifier.void_embedding.requires_grad_(False)
    tokenizer = None if meta else open_clip.get_tokenizer(cfg.clip_model)
    model = SmartModel(classifier=classifier, adapter=adapter, text_classifier=text_classifier, config=cfg,
                       tokenizer=tokenizer, text_cache_dir=text_cache_dir)
    if device is not None:
        model.to(device)  # on "meta" this moves the constant buffers (pixel mean / std) too
    return model

