"""Text classifier: class names x synonyms x templates -> embeddings, logits, void; spec §4.8.

Paper §4: proposals are classified by "cosine similarity between each mask embedding and the text
embeddings from CLIP's language encoder", using "the category names defined by each dataset". This
project follows FC-CLIP's open-vocabulary protocol (``docs/datasets.md`` §9.2):

1. every synonym of a class is formatted into the 14 VILD templates (:data:`VILD_TEMPLATES`), encoded
   by the frozen text tower, each embedding L2-normalised, averaged over templates, normalised again
   (one embedding per synonym);
2. class logit = max over the class's synonyms of scale * cos, scale = clamp(exp(logit_scale), max 100);
3. a learnable void embedding (L2-normalised) gives the last (no-object) logit;
4. SMA's [TGT] = the L2-normalised mean of a class's synonym embeddings (or its first name).

Embeddings are cached per (CLIP model, weights identity, vocabulary, templates) in memory and,
optionally, on disk (``<dir>/<sha256[:20]>.pt``) by :class:`TextEmbeddingCache`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

_logger = logging.getLogger(__name__)

# bytedance/fc-clip fcclip/fcclip.py VILD_PROMPT (irregular punctuation kept on purpose).
VILD_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "This is a photo of a {}",
    "There is a {} in the scene",
    "There is the {} in the scene",
    "a photo of a {} in the scene",
    "a photo of a small {}.",
    "a photo of a medium {}.",
    "a photo of a large {}.",
    "This is a photo of a small {}.",
    "This is a photo of a medium {}.",
    "This is a photo of a large {}.",
    "There is a small {} in the scene.",
    "There is a medium {} in the scene.",
    "There is a large {} in the scene.",
)
PLAIN_TEMPLATES: tuple[str, ...] = ("{}",)


@dataclass(frozen=True)
class TextEmbeddings:
    """Text side of one vocabulary.

    synonyms: (S, E) L2-normalised synonym embeddings; synonym_class: (S,) long, class of each;
    classes: (t, E) L2-normalised per-class [TGT] embeddings; key: the cache key.
    """

    synonyms: torch.Tensor
    synonym_class: torch.Tensor
    classes: torch.Tensor
    key: str = ""

    @property
    def num_classes(self) -> int:
        return int(self.classes.shape[0])

    def to(self, device=None, dtype=None) -> TextEmbeddings:
        return TextEmbeddings(self.synonyms.to(device=device, dtype=dtype), self.synonym_class.to(device=device),
                              self.classes.to(device=device, dtype=dtype), self.key)


def normalise_vocabulary(text) -> list[list[str]]:
    """Accept a :class:`~smart.data.categories.Vocabulary`, a list of synonym lists or a list of names."""
    if hasattr(text, "synonyms") and not isinstance(text, (list, tuple)):
        return [list(s) for s in text.synonyms]
    out = []
    for i, item in enumerate(text):
        syn = [item] if isinstance(item, str) else [str(s) for s in item]
        if not syn:
            raise ValueError(f"class {i} has no names")
        out.append(syn)
    if not out:
        raise ValueError("empty vocabulary")
    return out


def cache_key(*, model_name: str, weights: str, vocabulary: Sequence[Sequence[str]], templates: Sequence[str],
              tgt_mode: str = "mean") -> str:
    """sha256 over (model name, weights identity, vocabulary, templates, TGT mode)."""
    blob = json.dumps({"model": model_name, "weights": weights, "vocab": [list(s) for s in vocabulary],
                       "templates": list(templates), "tgt": tgt_mode}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:20]


def weights_identity(pretrained: str | None, text_params: Iterable[torch.Tensor]) -> str:
    """A string identifying the text weights: the tag or file (with size and mtime) of pretrained
    weights, or, for a random init, a fingerprint of the parameter values."""
    if pretrained:
        p = Path(pretrained)
        if p.is_file():
            st = p.stat()
            return f"file:{p.resolve()}:{st.st_size}:{int(st.st_mtime)}"
        return f"tag:{pretrained}"
    h = hashlib.sha256()
    for t in text_params:
        if t.device.type == "meta":
            return "meta"
        flat = t.detach().reshape(-1)
        h.update(repr((tuple(t.shape), float(flat.double().sum()), flat[:16].double().tolist())).encode())
    return "random:" + h.hexdigest()[:16]


class TextEmbeddingCache:
    """On-disk cache of :class:`TextEmbeddings`, one ``.pt`` file per key.

    Args:
        root: cache directory (created on first write).
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.pt"

    def load(self, key: str) -> TextEmbeddings | None:
        p = self.path(key)
        if not p.is_file():
            return None
        d = torch.load(p, map_location="cpu", weights_only=True)
        return TextEmbeddings(d["synonyms"], d["synonym_class"], d["classes"], key)

    def save(self, emb: TextEmbeddings, meta: dict | None = None) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        p = self.path(emb.key)
        tmp = p.with_suffix(f".{os.getpid()}.tmp")  # two jobs may write the same key at once
        torch.save({"synonyms": emb.synonyms.cpu(), "synonym_class": emb.synonym_class.cpu(),
                    "classes": emb.classes.cpu(), "meta": meta or {}}, tmp)
        tmp.replace(p)
        return p


def truncated_text_encoder(clip: Any) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """``clip.encode_text`` computed on the first L tokens only, L = the last end-of-text position + 1 of
    the batch, for open_clip ``CLIP`` models with a causal text mask and end-of-text (argmax) pooling.

    There the pooled feature of a prompt depends on its first L tokens alone (token i attends to tokens
    ≤ i), so dropping the padding after the longest prompt gives the same embedding for ~77 / L times
    less work (a class name is 3–10 tokens of a 77-token context). Returns None for text towers of
    another kind (their own ``encode_text`` is used).
    """
    needed = ("token_embedding", "positional_embedding", "transformer", "ln_final", "attn_mask")
    if (not all(hasattr(clip, a) for a in needed) or getattr(clip, "text_pool_type", None) != "argmax"
            or getattr(clip, "cls_emb", None) is not None or clip.attn_mask is None):
        return None

    def encode(ids: torch.Tensor) -> torch.Tensor:
        L = int(ids.argmax(dim=-1).max()) + 1  # EOT has the largest token id
        ids = ids[:, :L]
        cast = clip.transformer.get_cast_dtype()
        x = clip.token_embedding(ids).to(cast) + clip.positional_embedding[:L].to(cast)  # (n, L, D)
        x = clip.transformer(x, attn_mask=clip.attn_mask[:L, :L])  # (n, L, D), causal
        x = clip.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), ids.argmax(dim=-1)]  # (n, D) at each EOT
        proj = clip.text_projection
        if proj is None:
            return x
        return proj(x) if isinstance(proj, nn.Linear) else x @ proj  # (n, E)

    return encode


def encode_vocabulary(encode_text, tokenizer, vocabulary: Sequence[Sequence[str]], *,
                      templates: Sequence[str] = VILD_TEMPLATES, tgt_mode: str = "mean", batch_size: int = 128,
                      device: torch.device | None = None, key: str = "") -> TextEmbeddings:
    """Encode a vocabulary (FC-CLIP's template ensemble; runs with gradient if the caller enables it).

    Args:
        encode_text: ``clip.encode_text`` (token ids (n, ctx) -> (n, E)).
        tokenizer: open_clip tokenizer (list of strings -> (n, ctx) ids).
        vocabulary: per class, its synonyms (first = canonical name).
        templates: prompt templates with one ``{}``.
        tgt_mode: "mean" (normalised mean of synonyms) or "first" (the first synonym) for [TGT].
    """
    names = [s for syn in vocabulary for s in syn]  # S synonyms
    synonym_class = torch.tensor([c for c, syn in enumerate(vocabulary) for _ in syn], dtype=torch.long)
    prompts = [t.format(n) for n in names for t in templates]  # S*T strings, synonym-major
    chunks = []
    for i in range(0, len(prompts), batch_size):
        ids = tokenizer(prompts[i:i + batch_size])
        if device is not None:
            ids = ids.to(device)
        chunks.append(F.normalize(encode_text(ids).float(), dim=-1))  # (n, E) per prompt
    emb = torch.cat(chunks).view(len(names), len(templates), -1)  # (S, T, E)
    syn_emb = F.normalize(emb.mean(dim=1), dim=-1)  # (S, E): template ensemble per synonym
    t = len(vocabulary)
    synonym_class = synonym_class.to(syn_emb.device)
    if tgt_mode == "first":
        first = torch.tensor([0] + [len(s) for s in vocabulary[:-1]], device=syn_emb.device).cumsum(0)
        classes = syn_emb[first]  # (t, E)
    else:
        sums = torch.zeros(t, syn_emb.shape[-1], device=syn_emb.device, dtype=syn_emb.dtype)
        classes = F.normalize(sums.index_add(0, synonym_class, syn_emb), dim=-1)  # (t, E): mean direction
    return TextEmbeddings(syn_emb, synonym_class, classes, key)


class TextClassifier(nn.Module):
    """Cosine classifier over synonym embeddings with max-over-synonyms and a learnable void class.

    Args:
        embed_dim: joint embedding width E.
        logit_scale_max: clamp of exp(logit_scale) (100, FC-CLIP).
    """

    def __init__(self, *, embed_dim: int, logit_scale_max: float = 100.0, device=None):
        super().__init__()
        self.logit_scale_max = logit_scale_max
        # FC-CLIP: nn.Embedding(1, E) (N(0, 1) init), used L2-normalised.
        self.void_embedding = nn.Parameter(torch.empty(embed_dim, device=device))
        if self.void_embedding.device.type != "meta":
            nn.init.normal_(self.void_embedding)

    def forward(self, mask_embeddings: torch.Tensor, text: TextEmbeddings,
                logit_scale: torch.Tensor) -> torch.Tensor:
        """(B, Q, E) mask embeddings -> (B, Q, t+1) logits; the last column is void."""
        z = F.normalize(mask_embeddings, dim=-1)  # (B, Q, E)
        syn = text.synonyms.to(z.dtype)  # (S, E)
        scale = logit_scale.exp().clamp(max=self.logit_scale_max)
        cos = z @ syn.t()  # (B, Q, S)
        B, Q, _ = cos.shape
        idx = text.synonym_class.to(cos.device).view(1, 1, -1).expand(B, Q, -1)  # (B, Q, S)
        cls = torch.full((B, Q, text.num_classes), float("-inf"), device=cos.device, dtype=cos.dtype)
        cls = cls.scatter_reduce(-1, idx, cos, reduce="amax", include_self=True)  # (B, Q, t): max over synonyms
        void = z @ F.normalize(self.void_embedding, dim=-1).to(z.dtype)  # (B, Q)
        return scale * torch.cat([cls, void.unsqueeze(-1)], dim=-1)  # (B, Q, t+1)
