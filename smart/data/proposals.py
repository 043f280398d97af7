"""Cached mask proposals of a frozen mask generator: compact sharded storage, manifest and reader.

SMART never updates its Mask2Former (``tune_mask_generator=False``), so its proposals are a pure
function of (generator weights, image, test-time settings). :func:`cache_proposals` runs the
generator once per image of a dataset split and stores the top-K mask logits (by score) and the
scores; :class:`ProposalStore` reads them back as float32 logits.

Layout of a cache directory::

    <out>/shard-00000.npz ... shard-NNNNN.npz   # images [i·N, (i+1)·N) of the split, in dataset order
    <out>/manifest.json                          # written last: the cache is complete iff it exists

Encoding (``encoding.name`` in the manifest):

* ``q8-asinh`` (``logit_stride`` = 1, the mini default): each proposal's (h, w) mask logits are clamped
  to [−c, c] (``logit_clamp``, 40) and quantised to 256 levels uniformly in u = asinh(x), with a
  mid-rise quantiser: q = ⌊u/d⌋ + 128, d = asinh(c)/128, decoded x̂ = sinh((q − 127.5)·d). Fine near the
  mask boundary, relative error at large |x| (which Mask2Former logits reach: −38…+9 from the 1st to
  the 99th percentile for the pretrained mini generator). Exact worst cases over all real x
  (:func:`precision_bounds`, checked in ``tests/data/test_proposals.py``): |σ(x̂) − σ(x)| ≤ 0.0048,
  |x̂ − x| ≤ 0.024 for |x| < 1, relative logit error ≤ 2.5 % inside the clamp range; and **the
  binarised mask is exact**: x̂ ≥ 0 ⇔ x ≥ 0 (code ≥ 128), i.e. sigmoid ≥ 0.5 as panoptic inference and
  the Eq. 5 attention mask use it ("logit > 0" differs only where x is exactly 0). After bilinear
  upsampling a binarised pixel can flip only where the interpolated logit is within the quantisation
  error of 0 (≈ 1e-3 of the pixels in the tests). One byte per logit before deflate.
* ``q8-asinh+rle`` (``logit_stride`` = s > 1, for large masks): the exact binary masks (x ≥ 0) at full
  resolution as COCO RLE (pycocotools, compressed counts) plus the clamped logits average-pooled by
  s×s and quantised as above. Decoding upsamples the low-resolution logits bilinearly
  (``align_corners=False``) and forces their sign to agree with the binary mask (a wrong-sign pixel
  gets the smallest code magnitude, ±0.017), so binarisation stays exact at the stored mask size while
  logit magnitudes near boundaries lose detail (up to ≈ 0.5 in sigmoid at single boundary pixels).

Sizes and precision measured (``q8-asinh``, c = 40). Mini (K = 20 proposals, 24×24 masks of a 96-px
image, the pretrained ``mini-swinb``): 9.5 KB/image (11.5 KB of codes before deflate; float32 46 KB);
max |Δσ| 0.0048, binarised masks identical at 24×24 and 3e-4 of the pixels flipped after bilinear
upsampling to 96 px. Paper configuration (K = 100 proposals, 256×256 mask logits of a 1024² input):
float32 is 26 MB/image and ``q8-asinh`` 6.5 MB of codes (0.6 MB after deflate on smooth blob-shaped
synthetic proposals) — far above the 200 KB/image budget. ``q8-asinh+rle`` with s = 8 stores at most
K·32·32 = 100 KB of codes before deflate plus the RLE masks: 28 KB/image on the blob proposals (mean
|Δσ| 0.001, 99th percentile 0.03; s = 4: 77 KB, 99th percentile 0.007), 163 KB/image on the noisier
masks of the mini generator run out of its domain on a 1024² image (the RLE part grows with mask
fragmentation). The trade-off: binarised masks stay exact, but logit magnitudes are only known at 1/8
of the mask resolution (1/32 of the input), which blurs what the Distribution Adapter sees near
boundaries (single boundary pixels can be off by ≈ 0.5 in sigmoid). With fragmented masks, lowering
``top_k`` (e.g. 50) halves the size.

Scores (K,) are stored as float32 (exact), with the kept query indices (int16) and the image's sizes
(mask size, valid image size, padded input size, original size). Shards are zip files written
deterministically (fixed timestamps, deflate level 6) to a temporary name and renamed into place;
the manifest records each shard's image ids, byte size and SHA-256. A caching run that is interrupted
continues where it stopped: existing shards whose embedded header matches the run (generator hash,
dataset, K, encoding, image ids) and which decode completely are skipped; any other is recomputed.

Errors on bad input are :class:`~smart.errors.DatasetError` (or :class:`~smart.errors.ConfigError`)
naming the file and field: a manifest from another generator or dataset, a corrupt or foreign shard,
an unknown image id, an invalid ``proposals`` params key.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import time
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from smart.errors import DatasetError, InputError

__all__ = [
    "FORMAT_VERSION",
    "ProposalCacheConfig",
    "ProposalStore",
    "cache_proposals",
    "decode_masks",
    "dequantize_logits",
    "encode_masks",
    "generator_identity",
    "quantize_logits",
    "resolve_generator",
]

_log = logging.getLogger(__name__)

FORMAT_VERSION = 1
KIND = "smart-proposals"
MANIFEST = "manifest.json"
SHARD_NAME = "shard-{:05d}.npz"
HEADER_KEY = "header"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model_final.pkl")
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
ZIP_LEVEL = 6
ASINH_SCALE = 1.0  # a: the quantiser is uniform in asinh(x / a) (fine near 0, relative error at large |x|)
ENCODINGS = ("q8-asinh", "q8-asinh+rle")  # logit_stride 1 / > 1
CACHE_BYTES = 512 * 2**20  # decoded shards a store keeps in memory (a whole mini split; ~50 paper shards)


# --------------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class ProposalCacheConfig:
    """What is cached and how, and the generator's test-time settings (params.yaml → ``proposals.<profile>``;
    every key explicit)."""

    top_k: int = 20  # proposals kept per image (highest score first); min(top_k, Q)
    shard_size: int = 100  # images per shard
    logit_clamp: float = 40.0  # c: stored logits are clamped to [-c, c] (sigmoid(-40) = 4e-18)
    logit_stride: int = 1  # s: logit magnitudes stored at 1/s of the mask size (s > 1 adds exact RLE masks)
    score_mode: str = "objectness"  # objectness | max_class (the generator's proposal score)
    # test-time resize per dataset: None = none (the input size), else ((dataset, min_size, max_size), …)
    # with a "default" entry (detectron2 ResizeShortestEdge: shortest side → min_size, longest ≤ max_size)
    test_sizes: tuple[tuple[str, int, int], ...] | None = None

    @classmethod
    def from_dict(cls, d: Mapping, *, source: str | Path | None = None,
                  key: str = "proposals") -> ProposalCacheConfig:
        """From a ``proposals.<profile>`` entry (validated by :func:`smart.config.check_proposals_entry`;
        ``key`` is the params path named in errors)."""
        from smart.config import check_proposals_entry

        check_proposals_entry(d, key=key, source=source)
        c = d["logit_clamp"]
        sizes = None if d["test_sizes"] is None else tuple((k, int(v[0]), int(v[1])) for k, v in d["test_sizes"].items())
        return cls(top_k=d["top_k"], shard_size=d["shard_size"], logit_clamp=float(c),
                   logit_stride=d["logit_stride"], score_mode=d["score_mode"], test_sizes=sizes)

    def test_time(self, dataset: str) -> dict[str, Any]:
        """The generator settings under which ``dataset``'s proposals are made (a cache, or a generator
        run on the fly at evaluation): keyword overrides of :class:`~smart.model.mask_generator.GeneratorConfig`
        and of the generator's attributes (``resize``, ``min_size``, ``max_size``, ``top_k``, ``score_mode``)."""
        out: dict[str, Any] = {"top_k": int(self.top_k), "score_mode": self.score_mode}
        if self.test_sizes is None:
            return {**out, "resize": False}
        sizes = {d: (mn, mx) for d, mn, mx in self.test_sizes}
        mn, mx = sizes.get(dataset, sizes["default"])
        return {**out, "resize": True, "min_size": mn, "max_size": mx}

    def to_dict(self) -> dict:
        return asdict(self)

    def encoding(self) -> dict:
        """The manifest's ``encoding`` entry, with the exact precision bounds of the quantiser."""
        c, s = float(self.logit_clamp), int(self.logit_stride)
        b = precision_bounds(c)
        return {
            "name": ENCODINGS[s > 1],
            "logit_clamp": c,
            "asinh_scale": ASINH_SCALE,
            "logit_stride": s,
            "levels": 256,
            "quantiser": "u = asinh(clamp(x, -c, c) / a); q = floor(u / d) + 128 clipped to [0, 255] (128..255 iff "
                         "x >= 0), d = asinh(c / a) / 128; decoded x = a * sinh((q - 127.5) * d)",
            "binary_masks": "exact: decoded >= 0 iff original >= 0 at the stored mask size"
                            + ("" if s == 1 else " (COCO RLE of x >= 0 at full resolution)"),
            "low_resolution_logits": None if s == 1 else f"{s}x{s} average pooling of the clamped logits, decoded "
                                                         "by bilinear upsampling + sign forcing to the RLE mask",
            "max_abs_logit_error_near_0": b["max_abs_logit_error_near_0"] if s == 1 else None,
            "max_relative_logit_error": b["max_relative_logit_error"] if s == 1 else None,
            "max_abs_sigmoid_error": b["max_abs_sigmoid_error"] if s == 1 else None,
            "scores": "float32 (exact)",
            "decoded_dtype": "float32",
            "container": f"npz (zip, deflate level {ZIP_LEVEL}, fixed timestamps)",
        }


# --------------------------------------------------------------------------------------------------
# encoding


def _step(clamp: float) -> float:
    return math.asinh(float(clamp) / ASINH_SCALE) / 128.0


def quantize_logits(x: Tensor, clamp: float) -> np.ndarray:
    """float logits (any shape) → uint8 codes of the asinh-companded mid-rise quantiser; sign-exact
    (code ≥ 128 ⇔ x ≥ 0), so the binarised mask (sigmoid ≥ 0.5) survives exactly."""
    x = x.detach().float().cpu()
    u = torch.asinh(x.clamp(-clamp, clamp).double() / ASINH_SCALE)
    q = torch.floor(u / _step(clamp)) + 128.0
    q = torch.where(x >= 0, q.clamp(128, 255), q.clamp(0, 127))  # exact sign even where u/step underflows
    return q.to(torch.uint8).numpy()


def dequantize_logits(q: np.ndarray | Tensor, clamp: float) -> Tensor:
    """uint8 codes → float32 logits (the centre of each quantisation cell in asinh space)."""
    q = torch.as_tensor(np.asarray(q))
    return (ASINH_SCALE * torch.sinh((q.double() - 127.5) * _step(clamp))).float()


def precision_bounds(clamp: float) -> dict:
    """Exact worst cases of :func:`quantize_logits` + :func:`dequantize_logits` over all real x, cell by cell
    (σ is monotone, so the worst error of a cell is at one of its ends; the end cells reach ±∞)."""
    d = _step(clamp)
    q = np.arange(256)
    lo = ASINH_SCALE * np.sinh((q - 128) * d)  # cell q holds x in [lo, hi)
    hi = ASINH_SCALE * np.sinh((q - 127) * d)
    lo[0], hi[255] = -np.inf, np.inf
    dec = ASINH_SCALE * np.sinh((q - 127.5) * d)
    sig = lambda v: 1.0 / (1.0 + np.exp(-v))
    err_sig = np.maximum(np.abs(sig(dec) - sig(lo)), np.abs(sig(hi) - sig(dec)))
    inner = slice(1, 255)
    err_x = np.maximum(np.abs(dec - lo), np.abs(hi - dec))[inner]
    near0 = np.abs(dec[inner]) < 1.0
    rel = (err_x / np.maximum(np.minimum(np.abs(lo[inner]), np.abs(hi[inner])), 1.0))
    return {"max_abs_sigmoid_error": float(err_sig.max()), "max_abs_logit_error_near_0": float(err_x[near0].max()),
            "max_relative_logit_error": float(rel.max()), "logit_error_at_clamp": float(err_x[-1])}


def encode_masks(mask_logits: Tensor, *, clamp: float, stride: int = 1) -> dict[str, np.ndarray]:
    """(K, h, w) logits → the arrays stored for one image (``q``; with stride > 1 also ``rle``, ``rle_len``)."""
    K = mask_logits.shape[0]
    x = mask_logits.detach().float().cpu()
    if stride == 1:
        return {"q": quantize_logits(x, clamp)}  # (K, h, w) uint8
    from pycocotools import mask as mask_utils

    binary = np.asfortranarray((x >= 0).permute(1, 2, 0).numpy().astype(np.uint8))  # (h, w, K)
    rles = mask_utils.encode(binary) if K else []
    counts = [r["counts"] for r in rles]
    low = F.avg_pool2d(x.clamp(-clamp, clamp)[:, None], kernel_size=stride, stride=stride, ceil_mode=True)[:, 0]
    return {"q": quantize_logits(low, clamp),  # (K, ⌈h/s⌉, ⌈w/s⌉)
            "rle": np.frombuffer(b"".join(counts), dtype=np.uint8).copy(),
            "rle_len": np.asarray([len(c) for c in counts], dtype=np.int32)}


def decode_masks(arrays: Mapping[str, np.ndarray], *, clamp: float, stride: int = 1,
                 mask_size: tuple[int, int]) -> Tensor:
    """The inverse of :func:`encode_masks`: float32 (K, h, w) logits."""
    low = dequantize_logits(arrays["q"], clamp)  # (K, h', w')
    if stride == 1:
        return low
    from pycocotools import mask as mask_utils

    h, w = mask_size
    K = low.shape[0]
    up = F.interpolate(low[None], size=(low.shape[1] * stride, low.shape[2] * stride), mode="bilinear",
                       align_corners=False)[0, :, :h, :w]  # (K, h, w)
    lens, buf = arrays["rle_len"], arrays["rle"].tobytes()
    offsets = np.concatenate([[0], np.cumsum(lens)])
    rles = [{"size": [h, w], "counts": buf[offsets[k]:offsets[k + 1]]} for k in range(K)]
    binary = torch.from_numpy(mask_utils.decode(rles).astype(bool)).permute(2, 0, 1) if K else \
        torch.zeros((0, h, w), dtype=torch.bool)  # (K, h, w)
    half = ASINH_SCALE * math.sinh(_step(clamp) / 2)  # the decoded value of codes 127 / 128
    up = torch.where(binary & (up < 0), torch.full_like(up, half), up)
    up = torch.where(~binary & (up >= 0), torch.full_like(up, -half), up)
    return up.contiguous()


# --------------------------------------------------------------------------------------------------
# shards


def _write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """A deterministic ``.npz`` (fixed timestamps and order), written to a temporary name and renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=ZIP_LEVEL) as zf:
            for name, arr in arrays.items():
                info = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
                zf.writestr(info, buf.getvalue(), compresslevel=ZIP_LEVEL)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _header_array(header: Mapping) -> np.ndarray:
    return np.frombuffer(json.dumps(header, sort_keys=True).encode(), dtype=np.uint8).copy()


def _nbytes(arrays: Mapping) -> int:
    return sum(v.nbytes for v in arrays.values() if isinstance(v, np.ndarray))


def _read_shard_bytes(data: bytes, path: Path) -> dict[str, np.ndarray]:
    """Decode every member (zip CRCs are checked); any failure is a DatasetError naming the shard."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, zlib.error, ValueError, EOFError, OSError, KeyError) as exc:  # bad CRC, header, ...
        raise DatasetError(f"corrupt proposal shard: cannot decode ({type(exc).__name__}: {exc})", path=path) from None
    if HEADER_KEY not in arrays:
        raise DatasetError("not a proposal shard (no header)", path=path, field=HEADER_KEY)
    try:
        arrays[HEADER_KEY] = json.loads(arrays[HEADER_KEY].tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"corrupt proposal shard header ({exc})", path=path, field=HEADER_KEY) from None
    return arrays


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _first_difference(a: Mapping, b: Mapping, prefix: str = "") -> str | None:
    """Dotted path of the first key where two JSON-like mappings differ (None if equal)."""
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k, "<missing>"), b.get(k, "<missing>")
        if isinstance(va, Mapping) and isinstance(vb, Mapping):
            d = _first_difference(va, vb, f"{prefix}{k}.")
            if d:
                return d
        elif va != vb:
            return f"{prefix}{k}"
    return None


# --------------------------------------------------------------------------------------------------
# generator identity


def _weights_file(directory: Path) -> Path | None:
    for name in WEIGHT_FILES:
        if (directory / name).is_file():
            return directory / name
    return None


def resolve_generator(dir_or_name: str | Path, *, models_dir: str | Path = "data/models") -> Path:
    """The checkpoint directory of ``--generator``: a directory, a name under ``models_dir`` (the mini
    generators ``data/models/<name>``), or a Hugging Face hub name present in the local cache."""
    p = Path(dir_or_name)
    if p.is_dir():
        return p
    if (Path(models_dir) / str(dir_or_name)).is_dir():
        return Path(models_dir) / str(dir_or_name)
    if "/" in str(dir_or_name):
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(str(dir_or_name), local_files_only=True))
        except (ImportError, OSError, ValueError) as exc:  # not cached / offline / not a repo id
            _log.debug("%s is not in the local Hugging Face cache: %s", dir_or_name, exc)
    raise InputError(f"mask generator {str(dir_or_name)!r} not found: not a directory, not under {models_dir}, "
                     "and not a hub name in the local Hugging Face cache (the hub is not asked: download the "
                     f"weights on a machine with network access, e.g. `hf download {dir_or_name}`, or pass a "
                     "local directory)", field="--generator")


def generator_identity(directory: str | Path) -> dict:
    """``{"path", "weights_file", "sha256", "bytes"}`` of a checkpoint directory (hash of its weights file),
    or of a checkpoint file itself (a detectron2 ``.pkl``)."""
    directory = Path(directory)
    wf = directory if directory.is_file() else _weights_file(directory)
    if wf is None:
        raise InputError(f"no weights file ({' | '.join(WEIGHT_FILES)}) in the generator directory", path=directory)
    h = hashlib.sha256()
    with open(wf, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return {"path": str(directory), "weights_file": wf.name, "sha256": h.hexdigest(), "bytes": wf.stat().st_size}


def _generator_settings(generator) -> dict:
    """The test-time settings that change the proposals (besides the weights)."""
    return {"resize": bool(generator.resize), "min_size": int(generator.min_size), "max_size": int(generator.max_size),
            "size_divisibility": int(generator.size_divisibility), "score_mode": str(generator.score_mode),
            "num_queries": int(generator.num_queries),
            "pixel_mean": [float(v) for v in generator.pixel_mean], "pixel_std": [float(v) for v in generator.pixel_std]}


# --------------------------------------------------------------------------------------------------
# writing


def _run_key(*, generator_id: Mapping, settings: Mapping, dataset_name: str, num_images: int, top_k: int,
             cfg: ProposalCacheConfig) -> dict:
    """What must agree between a run and existing shards / manifest."""
    return {"format_version": FORMAT_VERSION, "kind": KIND, "generator_sha256": generator_id["sha256"],
            "generator_settings": dict(settings), "dataset": dataset_name, "num_images": int(num_images),
            "top_k": int(top_k), "shard_size": int(cfg.shard_size), "encoding": cfg.encoding()}


def _check_layout(arrays: Mapping[str, Any], n: int, stride: int) -> str | None:
    """Why a decoded shard's arrays are not a complete shard of ``n`` images (None if they are)."""
    need = ["q", "q_offsets", "q_shapes", "scores", "indices", "sizes"] + (["rle", "rle_len"] if stride > 1 else [])
    missing = [k for k in need if k not in arrays]
    if missing:
        return f"missing arrays {missing}"
    if arrays["sizes"].shape != (n, 8) or arrays["q_shapes"].shape != (n, 3) or len(arrays["q_offsets"]) != n + 1:
        return f"arrays are not those of {n} images"
    if int(arrays["q_offsets"][-1]) != arrays["q"].size or \
            not np.array_equal(np.diff(arrays["q_offsets"]), np.prod(arrays["q_shapes"].astype(np.int64), axis=1)):
        return "q offsets / shapes inconsistent"
    if stride > 1 and int(arrays["rle_len"].sum()) != arrays["rle"].size:
        return "truncated rle"
    return None


def _verify_existing(path: Path, key: Mapping, shard: int, ids: list) -> tuple[dict | None, str]:
    """(manifest entry, "") for a complete shard of this run, else (None, reason)."""
    try:
        data = path.read_bytes()
        arrays = _read_shard_bytes(data, path)
    except (OSError, DatasetError) as exc:
        return None, str(exc)
    header = arrays[HEADER_KEY]
    expected = dict(key, shard=shard, image_ids=ids)
    diff = _first_difference(header, json.loads(json.dumps(expected)))
    if diff:
        return None, f"header differs at {diff}"
    why = _check_layout(arrays, len(ids), int(key["encoding"]["logit_stride"]))
    if why:
        return None, why
    return _entry(path, data, ids, [tuple(int(v) for v in row[:2]) for row in arrays["sizes"]]), ""


def _entry(path: Path, data: bytes, ids: list, mask_sizes: list[tuple[int, int]]) -> dict:
    sizes = {tuple(s) for s in mask_sizes}
    return {"file": path.name, "num_images": len(ids), "image_ids": ids, "bytes": len(data), "sha256": _sha256(data),
            "mask_size": list(next(iter(sizes))) if len(sizes) == 1 else None}


def _size_runs(sizes: Sequence[tuple[int, int]], batch_size: int) -> list[tuple[int, int]]:
    """[lo, hi) runs of consecutive equal-size images, at most ``batch_size`` long (batch-independent
    results: an image is never padded beyond its own size)."""
    runs, lo = [], 0
    for i in range(1, len(sizes) + 1):
        if i == len(sizes) or sizes[i] != sizes[lo] or i - lo == batch_size:
            runs.append((lo, i))
            lo = i
    return runs


@torch.no_grad()
def _compute_shard(generator, dataset, indices: Sequence[int], *, cfg: ProposalCacheConfig, top_k: int,
                   batch_size: int, header: Mapping, bar=None) -> tuple[dict, list[tuple[int, int]]]:
    """The arrays of one shard of n images (a handful of members, whatever n: little container overhead):
    ``q`` all images' uint8 codes concatenated, ``q_offsets`` (n+1,), ``q_shapes`` (n, 3); ``scores``
    (n, K) float32; ``indices`` (n, K) int16; ``sizes`` (n, 8) int32 = mask (h, w), valid image (h, w),
    padded input (H, W), original (H, W); with stride > 1 ``rle`` (all RLE counts concatenated) and
    ``rle_len`` (n, K)."""
    samples = [dataset[i] for i in indices]
    images = [np.array(s["image"]) for s in samples]  # (H, W, 3) uint8, writable copies
    q, shapes, scores, query_idx, sizes, rle, rle_len = [], [], [], [], [], [], []
    for lo, hi in _size_runs([im.shape[:2] for im in images], batch_size):
        out = generator.predict(images[lo:hi], top_k=top_k)
        logits = out["mask_logits"]  # (B, K, h, w)
        h, w = logits.shape[-2:]
        for b in range(hi - lo):
            enc = encode_masks(logits[b], clamp=cfg.logit_clamp, stride=cfg.logit_stride)
            q.append(enc["q"].reshape(-1))
            shapes.append(enc["q"].shape)
            if cfg.logit_stride > 1:
                rle.append(enc["rle"])
                rle_len.append(enc["rle_len"])
            scores.append(out["scores"][b].float().cpu().numpy())  # (K,)
            query_idx.append(out["indices"][b].cpu().numpy().astype(np.int16))  # (K,)
            sizes.append([h, w, *out["image_sizes"][b], *out["input_size"], *out["original_sizes"][b]])
        if bar is not None:
            bar.update(hi - lo)
    arrays: dict[str, np.ndarray] = {
        HEADER_KEY: _header_array(header),
        "q": np.concatenate(q),
        "q_offsets": np.concatenate([[0], np.cumsum([a.size for a in q])]).astype(np.int64),
        "q_shapes": np.asarray(shapes, dtype=np.int32),
        "scores": np.stack(scores).astype(np.float32),
        "indices": np.stack(query_idx),
        "sizes": np.asarray(sizes, dtype=np.int32),
    }
    if cfg.logit_stride > 1:
        arrays["rle"] = np.concatenate(rle)
        arrays["rle_len"] = np.stack(rle_len).astype(np.int32)
    return arrays, [(int(r[0]), int(r[1])) for r in sizes]


def cache_proposals(generator, dataset, out_dir: str | Path, cfg: ProposalCacheConfig, *, generator_id: Mapping,
                    dataset_alias: str | None = None, batch_size: int = 16, overwrite: bool = False,
                    limit: int | None = None) -> dict:
    """Run a frozen generator over a dataset split and write the sharded cache; returns the manifest.

    Args:
        generator: a frozen :class:`~smart.model.mask_generator.Mask2FormerGenerator` (its test-time
            settings are set to ``cfg.test_time(dataset_alias)``: resize, score mode).
        dataset: a :class:`~smart.data.registry.Dataset`.
        out_dir: the cache directory.
        cfg: what to cache.
        generator_id: :func:`generator_identity` of the generator's checkpoint.
        dataset_alias: the short name the user gave (recorded).
        batch_size: images per forward (equal-size images only; does not change the result).
        overwrite: replace a complete cache of another generator / dataset / config in ``out_dir``.
        limit: cache only the first ``limit`` images (development).
    """
    from smart.io import load_json, write_json
    from smart.utils.logging import progress

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    test_time = cfg.test_time(dataset_alias or dataset.name)  # resize to the dataset's test size, score mode
    generator.set_test_time({k: v for k, v in test_time.items() if k != "top_k"})
    generator.eval()
    n = len(dataset) if limit is None else min(int(limit), len(dataset))
    ids = [dataset.records[i]["image_id"] for i in range(n)]
    if len(set(map(str, ids))) != len(ids):
        raise DatasetError("duplicate image ids in the split", path=dataset.root, field=dataset.name)
    top_k = min(int(cfg.top_k), generator.num_queries)
    key = _run_key(generator_id=generator_id, settings=_generator_settings(generator), dataset_name=dataset.name,
                   num_images=n, top_k=top_k, cfg=cfg)
    key = json.loads(json.dumps(key))  # tuples → lists, as read back from JSON
    man_path = out_dir / MANIFEST
    if man_path.exists():
        old = load_json(man_path, "proposal manifest")
        diff = _first_difference({k: old.get(k) for k in key}, key) if isinstance(old, dict) else "manifest"
        if diff:
            if not overwrite:
                raise DatasetError(f"the directory holds proposals of another run ({diff}: "
                                   f"{_dig(old, diff)!r} != {_dig(key, diff)!r}); use --overwrite or another --out",
                                   path=man_path, field=diff)
            _log.warning("overwriting %s (%s differs)", man_path, diff)
        man_path.unlink()  # rewritten last; its absence marks an incomplete cache

    chunks = [(lo, min(lo + cfg.shard_size, n)) for lo in range(0, n, cfg.shard_size)]
    entries, skipped, t0 = [], 0, time.time()
    bar = progress(total=n, desc=f"proposals {dataset.name}", unit="img")
    for s, (lo, hi) in enumerate(chunks):
        path = out_dir / SHARD_NAME.format(s)
        shard_ids = ids[lo:hi]
        if path.exists():
            entry, why = _verify_existing(path, key, s, json.loads(json.dumps(shard_ids)))
            if entry is not None:
                entries.append(entry)
                skipped += 1
                bar.update(hi - lo)
                continue
            _log.warning("recomputing %s: %s", path, why)
        header = dict(key, shard=s, image_ids=shard_ids)
        arrays, mask_sizes = _compute_shard(generator, dataset, range(lo, hi), cfg=cfg, top_k=top_k,
                                            batch_size=batch_size, header=header, bar=bar)
        _write_npz(path, arrays)
        entries.append(_entry(path, path.read_bytes(), shard_ids, mask_sizes))
    bar.close()
    keep = {e["file"] for e in entries}
    for stale in out_dir.glob("shard-*.npz"):
        if stale.name not in keep:
            stale.unlink()
    total = sum(e["bytes"] for e in entries)
    sizes = {tuple(e["mask_size"]) if e["mask_size"] else None for e in entries}
    mask_size = list(next(iter(sizes))) if len(sizes) == 1 and None not in sizes else None
    manifest = dict(key)
    manifest.update({
        "generator": dict(generator_id, settings=key["generator_settings"]),
        "dataset_info": {"name": dataset.name, "alias": dataset_alias, "root": str(dataset.root),
                         "num_images": n, "split_images": len(dataset)},
        "mask_size": mask_size,
        "dtype": "float32 (decoded mask logits and scores)",
        "num_images": n,
        "total_bytes": total,
        "bytes_per_image": total / max(n, 1),
        "raw_float32_bytes_per_image": (top_k * mask_size[0] * mask_size[1] * 4 + top_k * 4) if mask_size else None,
        "shards": entries,
    })
    write_json(man_path, manifest)  # last: the cache is complete
    _log.info("cached proposals of %d images (%d shards, %d reused) in %.1f s: %.0f bytes/image -> %s", n,
              len(entries), skipped, time.time() - t0, manifest["bytes_per_image"], out_dir)
    manifest["_reused_shards"] = skipped  # not written
    return manifest


def _dig(d: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(d, Mapping) or part not in d:
            return None
        d = d[part]
    return d


# --------------------------------------------------------------------------------------------------
# reading


class ProposalStore:
    """Read access to a proposal cache written by :func:`cache_proposals`.

    Shards are loaded lazily (whole shard, SHA-256 checked against the manifest) and kept in an LRU
    cache bounded in bytes; :meth:`get` decodes one image's proposals to float32. Training reads images
    in random order, so the cache should hold the whole split where memory allows: the mini COCO train
    cache is 47 MB decoded (40 shards), and with a 4-shard cache a 200-iteration training spent a third
    of its time (11 of 36 s) inflating the same shards again.
    """

    def __init__(self, *, root: str | Path, manifest: Mapping, cache_bytes: int = CACHE_BYTES, verify: bool = True):
        """
        Args:
            root: the cache directory.
            manifest: its parsed ``manifest.json`` (validated by :meth:`open`).
            cache_bytes: decoded shards kept in memory (LRU) up to this many bytes (at least one shard;
                a DataLoader worker has its own cache).
            verify: check each shard's size and SHA-256 against the manifest when loading it.
        """
        self.root = Path(root)
        self.manifest = dict(manifest)
        self.cache_bytes = int(cache_bytes)
        self._cached_bytes = 0
        self.verify = verify
        enc = self.manifest["encoding"]
        self.clamp = float(enc["logit_clamp"])
        if float(enc.get("asinh_scale", -1)) != ASINH_SCALE:
            raise DatasetError(f"unsupported asinh_scale {enc.get('asinh_scale')!r}", path=self.root / MANIFEST,
                               field="encoding.asinh_scale")
        self.stride = int(enc["logit_stride"])
        self._index: dict[Any, tuple[int, int]] = {}
        for s, e in enumerate(self.manifest["shards"]):
            for j, image_id in enumerate(e["image_ids"]):
                self._index[image_id] = (s, j)
        self._ids = [i for e in self.manifest["shards"] for i in e["image_ids"]]
        self._cache: OrderedDict[int, dict] = OrderedDict()

    @classmethod
    def open(cls, path: str | Path, *, generator: str | Path | Mapping | None = None, dataset: str | None = None,
             cache_bytes: int = CACHE_BYTES, verify: bool = True) -> ProposalStore:
        """Open a cache directory, optionally checking that it holds proposals of ``generator`` (a
        checkpoint directory or a :func:`generator_identity` dict) for ``dataset`` (a registry name)."""
        from smart.io import load_json

        root = Path(path)
        man_path = root / MANIFEST
        if not man_path.is_file():
            raise DatasetError("proposal manifest not found (caching not run or not finished)", path=man_path)
        m = load_json(man_path, "proposal manifest")
        if not isinstance(m, dict) or m.get("kind") != KIND:
            raise DatasetError(f"not a proposal manifest (kind {m.get('kind') if isinstance(m, dict) else None!r})",
                               path=man_path, field="kind")
        if m.get("format_version") != FORMAT_VERSION:
            raise DatasetError(f"unsupported format version {m.get('format_version')!r} (expected {FORMAT_VERSION})",
                               path=man_path, field="format_version")
        for k in ("generator_sha256", "dataset", "top_k", "encoding", "shards", "num_images"):
            if k not in m:
                raise DatasetError("missing field", path=man_path, field=k)
        enc = m["encoding"]
        if not isinstance(enc, dict) or enc.get("name") not in ENCODINGS:
            raise DatasetError(f"unknown encoding {enc.get('name') if isinstance(enc, dict) else enc!r}",
                               path=man_path, field="encoding.name")
        for k, e in enumerate(m["shards"]):
            if not isinstance(e, dict) or not {"file", "image_ids", "bytes", "sha256"} <= set(e):
                raise DatasetError("malformed shard entry", path=man_path, field=f"shards[{k}]")
        if generator is not None:
            ident = generator if isinstance(generator, Mapping) else generator_identity(generator)
            if ident["sha256"] != m["generator_sha256"]:
                raise DatasetError(f"proposals of another generator (weights sha256 {m['generator_sha256'][:12]}…, "
                                   f"{m.get('generator', {}).get('path')!r}) than {ident.get('path')!r} "
                                   f"({ident['sha256'][:12]}…)", path=man_path, field="generator_sha256")
        if dataset is not None:
            from smart.data.registry import ALIASES, SPECS, resolve_name

            # a built-in benchmark by alias or full name; a user dataset by its own name
            want = resolve_name(dataset).name if dataset in ALIASES or dataset in SPECS else dataset
            if m["dataset"] != want:
                raise DatasetError(f"proposals of dataset {m['dataset']!r}, expected {want!r}", path=man_path,
                                   field="dataset")
        store = cls(root=root, manifest=m, cache_bytes=cache_bytes, verify=verify)
        if len(store._index) != len(store._ids) or len(store._ids) != m["num_images"]:
            raise DatasetError(f"shard image ids ({len(store._ids)}, {len(store._index)} distinct) do not match "
                               f"num_images {m['num_images']}", path=man_path, field="shards")
        return store

    def __getstate__(self) -> dict:  # DataLoader workers get an empty shard cache, not a copy of it
        state = self.__dict__.copy()
        state["_cache"], state["_cached_bytes"] = OrderedDict(), 0
        return state

    # -- properties -------------------------------------------------------------------------------
    @property
    def image_ids(self) -> list:
        return list(self._ids)

    @property
    def top_k(self) -> int:
        return int(self.manifest["top_k"])

    @property
    def mask_size(self) -> tuple[int, int] | None:
        ms = self.manifest.get("mask_size")
        return tuple(ms) if ms else None

    def __len__(self) -> int:
        return len(self._ids)

    def _locate(self, image_id: Any) -> tuple[int, int]:
        loc = self._index.get(image_id)
        if loc is None and isinstance(image_id, str) and image_id.lstrip("-").isdigit():
            loc = self._index.get(int(image_id))
        if loc is None and isinstance(image_id, (int, np.integer)) and not isinstance(image_id, bool):
            loc = self._index.get(str(int(image_id)))
        if loc is None:
            raise DatasetError(f"unknown image id {image_id!r} (the cache holds {len(self)} images of "
                               f"{self.manifest['dataset']})", path=self.root / MANIFEST, field="image_id")
        return loc

    def __contains__(self, image_id: Any) -> bool:
        try:
            self._locate(image_id)
        except DatasetError:
            return False
        return True

    # -- shards -----------------------------------------------------------------------------------
    def _shard(self, s: int) -> dict:
        if s in self._cache:
            self._cache.move_to_end(s)
            return self._cache[s]
        e = self.manifest["shards"][s]
        path = self.root / e["file"]
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise self._damaged(path, "proposal shard listed in the manifest is missing") from None
        if self.verify and (len(data) != e["bytes"] or _sha256(data) != e["sha256"]):
            raise self._damaged(path, f"corrupt proposal shard: {len(data)} bytes, sha256 {_sha256(data)[:12]}… but "
                                      f"the manifest says {e['bytes']} bytes, {e['sha256'][:12]}…", field="sha256")
        try:
            arrays = _read_shard_bytes(data, path)
        except DatasetError as exc:
            raise self._damaged(path, exc.message) from None
        if arrays[HEADER_KEY].get("image_ids") != e["image_ids"] or \
                arrays[HEADER_KEY].get("generator_sha256") != self.manifest["generator_sha256"]:
            raise self._damaged(path, "shard header does not match the manifest (a shard of another run)",
                                field=HEADER_KEY)
        why = _check_layout(arrays, len(e["image_ids"]), self.stride)
        if why:
            raise self._damaged(path, f"corrupt proposal shard: {why}")
        if self.stride > 1:  # start of each image's RLE bytes
            arrays["_rle_offsets"] = np.concatenate([[0], np.cumsum(arrays["rle_len"].sum(1))]).astype(np.int64)
        self._cache[s] = arrays
        self._cached_bytes += _nbytes(arrays)
        while len(self._cache) > 1 and self._cached_bytes > self.cache_bytes:
            self._cached_bytes -= _nbytes(self._cache.popitem(last=False)[1])
        return arrays

    def _damaged(self, path: Path, message: str, *, field: str | None = None) -> DatasetError:
        """A damaged shard: it and the manifest are removed, so the cache reads as unfinished and the DAG
        (Snakemake or ``dvc repro``) reruns its stage, which keeps the intact shards and recomputes this one."""
        for f in (self.root / MANIFEST, path):
            try:
                f.unlink()
            except OSError:
                pass
        return DatasetError(f"{message}. The cache is marked unfinished (its manifest and this shard are removed): "
                            f"rerun the DAG (`snakemake --cores all` or `dvc repro`), which recomputes only the "
                            f"damaged shard", path=path, field=field)

    def verify_all(self) -> None:
        """Load and check every shard (size, SHA-256, decodability, header)."""
        for s in range(len(self.manifest["shards"])):
            self._shard(s)

    # -- access -----------------------------------------------------------------------------------
    def get(self, image_id: Any) -> dict:
        """Decoded proposals of one image.

        Returns:
            ``mask_logits`` float32 (K, h, w), ``scores`` float32 (K,), ``indices`` int64 (K,) (query
            indices), ``mask_size`` (h, w), ``image_size`` (valid input region), ``input_size`` (padded
            network input) and ``original_size`` (H, W).
        """
        s, j = self._locate(image_id)
        a = self._shard(s)
        path = self.root / self.manifest["shards"][s]["file"]
        sizes = [int(v) for v in a["sizes"][j]]
        enc = {"q": a["q"][a["q_offsets"][j]:a["q_offsets"][j + 1]].reshape(tuple(a["q_shapes"][j]))}
        if self.stride > 1:
            enc["rle"] = a["rle"][a["_rle_offsets"][j]:a["_rle_offsets"][j + 1]]
            enc["rle_len"] = a["rle_len"][j]
        scores = torch.from_numpy(a["scores"][j].astype(np.float32))  # (K,)
        indices = torch.from_numpy(a["indices"][j].astype(np.int64))  # (K,)
        mask_size = (sizes[0], sizes[1])
        try:
            logits = decode_masks(enc, clamp=self.clamp, stride=self.stride, mask_size=mask_size)
        except (ValueError, RuntimeError, IndexError, TypeError) as exc:
            raise DatasetError(f"cannot decode proposals of image {image_id!r} ({exc})", path=path) from None
        if tuple(logits.shape) != (len(scores), *mask_size):
            raise DatasetError(f"decoded masks have shape {tuple(logits.shape)}, expected "
                               f"{(len(scores), *mask_size)}", path=path, field=f"q_shapes[{j}]")
        return {"mask_logits": logits, "scores": scores, "indices": indices, "mask_size": mask_size,
                "image_size": (sizes[2], sizes[3]), "input_size": (sizes[4], sizes[5]),
                "original_size": (sizes[6], sizes[7])}

    def get_batch(self, image_ids: Sequence[Any]) -> dict:
        """Stacked proposals of images with equal mask sizes: ``mask_logits`` (B, K, h, w), ``scores`` (B, K),
        ``indices`` (B, K) and the per-image size lists."""
        items = [self.get(i) for i in image_ids]
        shapes = {tuple(it["mask_logits"].shape) for it in items}
        if len(shapes) != 1:
            raise InputError(f"images of different mask sizes {sorted(shapes)} cannot be stacked", field="image_ids")
        return {"mask_logits": torch.stack([it["mask_logits"] for it in items]),
                "scores": torch.stack([it["scores"] for it in items]),
                "indices": torch.stack([it["indices"] for it in items]),
                "image_sizes": [it["image_size"] for it in items], "input_size": items[0]["input_size"],
                "original_sizes": [it["original_size"] for it in items]}
