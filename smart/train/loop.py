"""The SMART trainer: frozen mask generator (or a proposal store) → SMART model → Hungarian loss → AdamW.

One iteration (paper §5.3, ``docs/method-spec.md`` §4.11):

1. a global batch of ``batch_size`` COCO-panoptic *train* images (a seeded ``fraction`` of them,
   Fig. 6), each with large-scale jitter + flip (:mod:`smart.train.augment`) applied consistently to
   the image, its panoptic GT and — with a proposal store — its cached proposal masks;
2. proposals: from the :class:`StoreSource` (augmented with the image) or computed on the augmented
   batch by the frozen generator of a :class:`GeneratorSource`;
3. ``SmartModel(images, proposals, text)`` against the training vocabulary, whose text embeddings are
   computed once (frozen text tower) unless ``tune_text_encoder``; bf16 autocast on CUDA;
4. the Eq. 6 set criterion (CE 2 / BCE 5 / Dice 5, Hungarian matching), backward, full-model gradient
   clipping, AdamW step, LR schedule (:mod:`smart.train.optim`).

**Determinism and exact resume.** Every random draw of the data path is a pure function of the seed
and the *stream position* of a sample (``iteration · batch_size + j``): the epoch permutation, the
augmentation and hence the sample; the criterion's point sampling is seeded from (seed, iteration,
rank). The scratch ``last.pt`` (:mod:`smart.train.checkpoint`) holds the trainable state, optimizer,
scheduler, iteration, sampler position and every RNG state; resuming from it continues the run
bit for bit (tested on CPU: 6 iterations vs 3 + resume + 3). A checkpoint from another configuration
is refused.

**Multi-GPU.** Under ``torchrun`` (``WORLD_SIZE`` > 1) the process group is initialised (NCCL on
CUDA, gloo on CPU); each rank takes its contiguous ``batch_size / world_size`` slice of every global
batch; the SMART module is wrapped in ``DistributedDataParallel`` with every frozen parameter and buffer
excluded from DDP's broadcast and gradient synchronisation; the frozen generator stays outside DDP;
rank 0 alone logs and writes files.

**Outputs** (``--out DIR``): ``model.pt`` (trainable state + resolved configs), ``metrics.jsonl``
(one JSON object per logged iteration), ``summary.json`` (numbers only, a DVC metric) and
``config.json`` (provenance), all written atomically at the end. While running, ``last.pt`` and the
growing ``metrics.jsonl`` live in the scratch directory ``DIR/../.scratch/<name>/`` (undeclared,
so Snakemake never deletes it); it is removed after a successful run.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import resource
import statistics
import time
from collections import deque
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from smart import provenance
from smart.config import TrainConfig
from smart.data.sources import GeneratorSource, StoreSource, build_proposal_source
from smart.errors import ConfigError, InputError
from smart.io import atomic_path
from smart.train.augment import augment_sample
from smart.train.checkpoint import (
    CHECKPOINT_FORMAT,
    MODEL_FORMAT,
    atomic_save,
    frozen_checksum,
    get_rng_state,
    load_checkpoint,
    load_trainable_state,
    set_rng_state,
    state_sha256,
    trainable_state_dict,
)
from smart.train.optim import LRSchedule, build_optimizer, build_scheduler, clip_gradients

_log = logging.getLogger("smart.train")

__all__ = [
    "DistInfo",
    "GeneratorSource",
    "StoreSource",
    "StreamBatchSampler",
    "TrainSamples",
    "build_proposal_source",
    "default_scratch",
    "train",
]

LOSS_KEYS = ("loss", "loss_ce", "loss_mask", "loss_dice")


# ==================================================================================== distributed
@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    created: bool = False  # this module initialised the process group (and destroys it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(use_cuda: bool) -> DistInfo:
    """Join the ``torchrun`` process group (env:// rendezvous) when ``WORLD_SIZE`` > 1."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo", timeout=timedelta(minutes=30))
    return DistInfo(dist.get_rank(), dist.get_world_size(), local, created=True)


def _barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


# ==================================================================================== data
class TrainSamples(torch.utils.data.Dataset):
    """Training samples addressed by *stream position* ``p = iteration · batch_size + j``.

    Position p is sample ``indices[perm_e[p mod n]]`` of epoch ``e = p // n`` (a seeded permutation per
    epoch) with an augmentation drawn from ``default_rng([seed, p])`` — pure functions of (seed, p), so
    any worker, rank or resumed run produces the same sample for the same position.
    """

    def __init__(self, dataset: Any, indices: Sequence[int], *, cfg: TrainConfig, source: StoreSource | None = None):
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)
        self.cfg = cfg
        self.source = source
        self._perms: dict[int, np.ndarray] = {}

    def __len__(self) -> int:  # positions are unbounded; this is the epoch length
        return len(self.indices)

    def index_of(self, pos: int) -> int:
        n = len(self.indices)
        epoch, off = divmod(int(pos), n)
        if epoch not in self._perms:
            if len(self._perms) > 2:
                self._perms.pop(min(self._perms))
            self._perms[epoch] = np.random.default_rng([self.cfg.seed, 7, epoch]).permutation(n)
        return int(self.indices[self._perms[epoch][off]])

    def __getitem__(self, pos: int) -> dict[str, Any]:
        from smart.model.criterion import targets_from_panoptic

        sample = self.dataset[self.index_of(pos)]
        props = (self.source.get(sample["image_id"], image_size=sample["image"].shape[:2])
                 if self.source is not None else None)
        c = self.cfg
        aug = augment_sample(sample, np.random.default_rng([c.seed, 11, int(pos)]), crop=c.crop_size,
                             min_scale=c.min_scale, max_scale=c.max_scale, flip_prob=c.flip_prob, proposals=props,
                             proposal_stride=c.proposal_stride, pad_logit=c.proposal_pad_logit)
        targets = targets_from_panoptic(aug["pan_ids"], aug["segments_info"])  # labels (N,), masks (N, c, c)
        return {"image": aug["image"], "targets": targets, "proposals": aug.get("proposals"),
                "image_id": sample["image_id"], "position": int(pos)}


class StreamBatchSampler:
    """Per-rank batches of stream positions for iterations ``start .. iterations-1``: rank r of W takes
    the contiguous slice ``[r·b, (r+1)·b)`` of each global batch of B = W·b positions."""

    def __init__(self, *, start_iter: int, iterations: int, global_batch: int, rank: int = 0, world_size: int = 1):
        if global_batch % world_size:
            raise ValueError(f"global batch {global_batch} is not divisible by world size {world_size}")
        self.start, self.iterations, self.global_batch = start_iter, iterations, global_batch
        self.rank, self.per_rank = rank, global_batch // world_size

    def __iter__(self):
        for it in range(self.start, self.iterations):
            base = it * self.global_batch + self.rank * self.per_rank
            yield list(range(base, base + self.per_rank))

    def __len__(self) -> int:
        return max(self.iterations - self.start, 0)


class Collate:
    """Stack images; proposals padded to the batch's largest K with ``pad_logit`` (empty proposals)."""

    def __init__(self, pad_logit: float):
        self.pad_logit = pad_logit

    def __call__(self, samples: list[dict]) -> dict[str, Any]:
        out = {"images": torch.stack([s["image"] for s in samples]),  # (B, 3, c, c) 0-255
               "targets": [s["targets"] for s in samples],
               "image_ids": [s["image_id"] for s in samples],
               "positions": [s["position"] for s in samples],
               "proposals": None}
        if samples[0]["proposals"] is not None:
            K = max(s["proposals"].shape[0] for s in samples)
            h, w = samples[0]["proposals"].shape[-2:]
            props = torch.full((len(samples), K, h, w), float(self.pad_logit))  # (B, K, h, w)
            for b, s in enumerate(samples):
                props[b, :s["proposals"].shape[0]] = s["proposals"]
            out["proposals"] = props
        return out


def data_subset(n: int, fraction: float, seed: int) -> np.ndarray:
    """The images used at a data ``fraction`` (Fig. 6): the first ceil(fraction·n) of a seeded permutation
    (so the subsets of one seed are nested)."""
    k = max(1, math.ceil(fraction * n - 1e-9))
    return np.random.default_rng([seed, 3]).permutation(n)[:k]


# ==================================================================================== module
class TrainModule(nn.Module):
    """What DDP wraps: the SMART model plus, when tuned (Table 3e), the mask generator."""

    def __init__(self, model: nn.Module, generator_source: GeneratorSource | None = None):
        super().__init__()
        self.model = model
        self.generator = generator_source.generator if generator_source is not None else None
        self._source = generator_source

    def forward(self, images: torch.Tensor, proposals: torch.Tensor | None, text: Any) -> dict[str, torch.Tensor]:
        if proposals is None:
            proposals = self._source.propose(images)  # (B, Q, h, w), with gradient
        return self.model(images, proposals, text)


# ==================================================================================== helpers
class ScratchLock:
    """An exclusive lock on a scratch directory (``<scratch>/.lock``, ``flock``): released when the process
    ends, however it ends (a SIGKILL included), so a crashed trainer never leaves it held."""

    def __init__(self, scratch: Path):
        self.path = Path(scratch) / ".lock"
        self.fd: int | None = None

    def acquire(self) -> None:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 64, 0).decode(errors="replace").strip() or "?"
            _log.warning("another trainer (pid %s) is using %s: waiting for it to finish", holder, self.path.parent)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing releases the flock
            self.fd = None


def _set_aside(scratch: Path) -> Path:
    """Move a scratch checkpoint that cannot be resumed (another configuration's, or unreadable) and its
    metrics to ``<scratch>/set-aside/``, replacing what an earlier run set aside there."""
    kept = scratch / "set-aside"
    kept.mkdir(exist_ok=True)
    for name in ("last.pt", "metrics.jsonl"):
        if (scratch / name).exists():
            os.replace(scratch / name, kept / name)
    return kept


def default_scratch(out: str | Path) -> Path:
    """``<out>/../.scratch/<name>``: next to the outputs, but not inside a declared output."""
    out = Path(out)
    return out.parent / ".scratch" / out.name


def _max_mem_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB → MiB (peak RSS)


def _seed_for(seed: int, it: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, 13, it, rank]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _fmt_eta(seconds: float) -> str:
    return str(timedelta(seconds=int(max(seconds, 0))))


class _MetricsLog:
    """The growing JSON-lines log in the scratch directory (rank 0); on resume, lines after the
    checkpoint's iteration are dropped so that the final file has each iteration once."""

    def __init__(self, path: Path, *, keep_until: int | None):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = []
        if keep_until is not None and path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    if json.loads(line)["iteration"] <= keep_until:
                        lines.append(line)
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a torn last line
        with atomic_path(path) as tmp:
            tmp.write_text("".join(f"{ln}\n" for ln in lines), encoding="utf-8")
        self.f = open(path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for the run

    def write(self, record: dict) -> None:
        self.f.write(json.dumps(record, allow_nan=True) + "\n")
        self.f.flush()

    def records(self) -> list[dict]:
        self.f.flush()
        return [json.loads(ln) for ln in self.path.read_text(encoding="utf-8").splitlines() if ln.strip()]

    def close(self) -> None:
        self.f.close()


# ==================================================================================== training
def train(*, model_cfg: Any, train_cfg: TrainConfig, root: str | Path, out: str | Path, profile: str = "mini",
          proposals: Any = None, resume: str | Path = "auto", scratch: str | Path | None = None,
          device: str | torch.device = "auto", dataset: str = "coco_train", cell: str | None = None,
          stop_after: int | None = None) -> dict[str, Any]:
    """Train one cell; returns the summary (also written to ``<out>/summary.json``).

    One trainer at a time per scratch directory (:class:`ScratchLock`): a second one — the orphan of a
    killed Snakemake, a job submitted twice — waits for the first and then continues from what it left;
    after a finished run that is nothing to train, only the outputs to write again.

    Args:
        model_cfg: the resolved :class:`~smart.model.config.SmartModelConfig` (or a mapping).
        train_cfg: the resolved :class:`~smart.config.TrainConfig`.
        root: ``$DETECTRON2_DATASETS`` of the profile (holding the COCO-panoptic train split).
        out: output directory (``model.pt``, ``metrics.jsonl``, ``summary.json``, ``config.json``).
        profile: ``mini`` | ``paper`` (where the category table comes from).
        proposals: None (on-the-fly generator ``train_cfg.generator``), a proposal-store directory, or
            an object with ``.get(image_id)``.
        resume: ``auto`` (continue from the scratch ``last.pt`` if there is one), ``never`` (start
            afresh), or the path of a checkpoint.
        scratch: directory of ``last.pt`` and the growing metrics (default :func:`default_scratch`).
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``; under torchrun ``cuda:LOCAL_RANK``.
        dataset: the training split (registry name).
        cell: the cell name (provenance only).
        stop_after: stop after this many iterations *without* writing the final outputs, as a pre-empted
            job would (the scratch checkpoint of the last period stays); for tests and smoke runs.
    """
    scratch = Path(scratch) if scratch is not None else default_scratch(out)
    main = int(os.environ.get("RANK", "0")) == 0
    lock = ScratchLock(scratch) if main else None
    if lock is not None:
        lock.acquire()
    try:
        return _train(model_cfg=model_cfg, train_cfg=train_cfg, root=root, out=out, profile=profile,
                      proposals=proposals, resume=resume, scratch=scratch, device=device, dataset=dataset, cell=cell,
                      stop_after=stop_after)
    finally:
        if lock is not None:
            lock.release()


def _train(*, model_cfg: Any, train_cfg: TrainConfig, root: str | Path, out: str | Path, profile: str,
           proposals: Any, resume: str | Path, scratch: Path, device: str | torch.device, dataset: str,
           cell: str | None, stop_after: int | None) -> dict[str, Any]:
    """:func:`train` under the scratch lock."""
    from smart.data.registry import Dataset
    from smart.model.config import SmartModelConfig
    from smart.model.criterion import CriterionConfig, build_criterion
    from smart.model.smart import build_model
    from smart.utils.logging import progress

    if isinstance(model_cfg, dict):
        model_cfg = SmartModelConfig.from_dict(model_cfg)
    cfg = train_cfg
    out = Path(out)
    want_cuda = (device == "auto" and torch.cuda.is_available()) or str(device).startswith("cuda")
    if want_cuda and not torch.cuda.is_available():
        raise InputError("CUDA was requested but is not available", field="--device")
    info = init_distributed(want_cuda)
    dev = torch.device(f"cuda:{info.local_rank}" if want_cuda else "cpu")
    if cfg.batch_size % info.world_size:
        raise ConfigError(f"batch_size {cfg.batch_size} is not divisible by the {info.world_size} processes",
                          field="batch_size")
    use_bf16 = cfg.bf16 and dev.type == "cuda"
    if info.is_main:
        _log.info("train %s: profile %s, device %s, world size %d, git %s", cell or "-", profile, dev,
                  info.world_size, provenance.git_sha())
        _log.info("model config: %s", json.dumps(model_cfg.to_dict(), sort_keys=True))
        _log.info("train config: %s", json.dumps(cfg.to_dict(), sort_keys=True))

    # ---------------------------------------------------------------- data, model, proposals
    ds = Dataset.open(dataset, profile=profile, root=root)
    if ds.spec.task != "panoptic":
        raise InputError(f"training needs a panoptic split, {dataset!r} is {ds.spec.task}", field="dataset")
    vocab = ds.vocab
    indices = data_subset(len(ds), cfg.fraction, cfg.seed)
    torch.manual_seed(cfg.seed)  # the seeded init of SMA / DA / void (and of random-init CLIPs)
    model = build_model(model_cfg, device=dev)
    model.classifier.set_grad_checkpointing(bool(cfg.grad_checkpointing or model_cfg.grad_checkpointing))
    source = build_proposal_source(proposals, train_cfg=cfg, model_cfg=model_cfg, device=dev)
    if isinstance(source, StoreSource):
        source.check_coverage([ds.records[i]["image_id"] for i in indices])
    tuned_gen = source if isinstance(source, GeneratorSource) and source.trainable else None
    module = TrainModule(model, tuned_gen)
    module.train()
    criterion = build_criterion(CriterionConfig(**cfg.criterion), num_classes=len(vocab)).to(dev)
    if model_cfg.tune_text_encoder:
        text: Any = [list(s) for s in vocab.synonyms]  # re-encoded with gradient every forward
    else:
        with torch.no_grad():
            text = model.encode_text(vocab)  # once: the text tower is frozen
    optimizer = build_optimizer(model, cfg, generator=tuned_gen.generator if tuned_gen else None)
    scheduler = build_scheduler(optimizer, cfg)
    schedule = LRSchedule.from_config(cfg)
    n_trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    frozen_gen = source.generator if isinstance(source, GeneratorSource) and not source.trainable else None
    train_fp = cfg.fingerprint()
    if isinstance(source, StoreSource):  # the on-the-fly generator settings play no part
        train_fp.pop("generator")
        train_fp.pop("generator_config")
    fingerprint = {
        "model": model_cfg.to_dict(),
        "train": train_fp,
        "data": {"dataset": ds.name, "num_images": len(ds), "num_used": len(indices),
                 "num_classes": len(vocab)},
        "proposals": source.describe(),
        "frozen": {"model": frozen_checksum(model), "generator": frozen_checksum(frozen_gen)},
    }

    # ---------------------------------------------------------------- resume
    start_iter, elapsed_before, ckpt_path, ckpt = 0, 0.0, None, None
    if str(resume) == "auto":
        ckpt_path = scratch / "last.pt" if (scratch / "last.pt").is_file() else None
        if ckpt_path is not None:
            try:
                ckpt = load_checkpoint(ckpt_path, fingerprint=fingerprint)
            except InputError as exc:  # another configuration's (params edited since) or an unreadable file
                kept = _set_aside(scratch) if info.is_main else None
                _barrier(info)
                if info.is_main:
                    _log.warning("not resuming: %s; it is kept in %s and this run starts from iteration 0",
                                 exc.message.split(". Delete it")[0], kept)
                ckpt_path = None
    elif str(resume) != "never":
        ckpt_path = Path(resume)
    elif (scratch / "last.pt").is_file() and info.is_main:
        _log.warning("--resume never: ignoring the existing %s (it will be overwritten)", scratch / "last.pt")
    random.seed(cfg.seed + info.rank)
    np.random.seed((cfg.seed + info.rank) % 2**32)
    torch.manual_seed(cfg.seed + info.rank)
    if ckpt_path is not None:
        ckpt = ckpt if ckpt is not None else load_checkpoint(ckpt_path, fingerprint=fingerprint)
        load_trainable_state(module, ckpt["trainable_state"], source=ckpt_path)
        if not ckpt.get("final"):  # a finished run's checkpoint has no optimizer: nothing is left to train
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
        start_iter = int(ckpt["iteration"])
        elapsed_before = float(ckpt.get("elapsed", 0.0))
        rngs = ckpt["rng"]
        if len(rngs) != info.world_size and info.is_main:
            _log.warning("checkpoint written by %d processes, resuming with %d", len(rngs), info.world_size)
        set_rng_state(rngs[info.rank] if info.rank < len(rngs) else rngs[0])
        sampler_state = ckpt["sampler"]
        if sampler_state["position"] != start_iter * cfg.batch_size:
            raise InputError("inconsistent sampler position in the checkpoint", path=ckpt_path, field="sampler")
        if info.is_main:
            _log.info("resumed from %s at iteration %d/%d", ckpt_path, start_iter, cfg.iterations)
        del ckpt

    # ---------------------------------------------------------------- DDP
    runner: nn.Module = module
    if info.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ignore = [n for n, p in module.named_parameters() if not p.requires_grad]
        ignore += [n for n, _ in module.named_buffers()]
        DDP._set_params_and_buffers_to_ignore_for_model(module, ignore)  # frozen parts: no broadcast / sync
        runner = DDP(module, device_ids=[dev.index] if dev.type == "cuda" else None,
                     find_unused_parameters=cfg.find_unused_parameters or tuned_gen is not None)

    samples = TrainSamples(ds, indices, cfg=cfg, source=source if isinstance(source, StoreSource) else None)
    sampler = StreamBatchSampler(start_iter=start_iter, iterations=cfg.iterations, global_batch=cfg.batch_size,
                                 rank=info.rank, world_size=info.world_size)
    loader = torch.utils.data.DataLoader(
        samples, batch_sampler=sampler, num_workers=cfg.num_workers, collate_fn=Collate(cfg.proposal_pad_logit),
        pin_memory=dev.type == "cuda", persistent_workers=False,
        generator=torch.Generator().manual_seed(cfg.seed))  # keeps the global RNG untouched

    metrics = _MetricsLog(scratch / "metrics.jsonl", keep_until=start_iter if ckpt_path else 0) \
        if info.is_main else None
    bar = progress(total=cfg.iterations, initial=start_iter, desc=f"train {cell or ''}".strip(),
                   disable=None if info.is_main else True)
    window = deque(maxlen=max(cfg.log_period, 1))
    t_loop = time.perf_counter()
    t_first_done, iters_run = None, 0
    autocast = torch.autocast(device_type="cuda", dtype=torch.bfloat16) if use_bf16 else nullcontext()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)

    def save_checkpoint(done: int) -> None:
        rng = [get_rng_state()]
        if info.enabled:
            rng = [None] * info.world_size
            dist.all_gather_object(rng, get_rng_state())
        if info.is_main:
            atomic_save({"format": CHECKPOINT_FORMAT, "iteration": done, "fingerprint": fingerprint,
                         "trainable_state": trainable_state_dict(module), "optimizer": optimizer.state_dict(),
                         "scheduler": scheduler.state_dict(), "rng": rng,
                         "sampler": {"seed": cfg.seed, "position": done * cfg.batch_size,
                                     "num_samples": len(indices)},
                         "elapsed": elapsed_before + time.perf_counter() - t_loop, "world_size": info.world_size},
                        scratch / "last.pt")
        _barrier(info)

    it = start_iter
    t_iter = time.perf_counter()
    try:
        for batch in loader:
            data_time = time.perf_counter() - t_iter
            images = batch["images"].to(dev, non_blocking=True)  # (b, 3, c, c) 0-255
            targets = [{k: v.to(dev, non_blocking=True) for k, v in t.items()} for t in batch["targets"]]
            props = batch["proposals"]
            if props is not None:
                props = props.to(dev, non_blocking=True)  # (b, K, c/4, c/4)
            elif tuned_gen is None:
                with torch.no_grad():
                    props = source.propose(images)  # frozen generator, on the augmented batch
            with autocast:
                outputs = runner(images, props, text)
            crit_gen = torch.Generator(device=dev).manual_seed(_seed_for(cfg.seed, it, info.rank))
            losses = criterion(outputs, targets, generator=crit_gen)
            loss = losses["loss"]
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} at iteration {it + 1} "
                                         f"(images {batch['image_ids']})")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = clip_gradients([p for p in module.parameters() if p.requires_grad], cfg.grad_clip)
            lr = cfg.lr * schedule(it)
            optimizer.step()
            scheduler.step()
            it += 1
            iters_run += 1
            now = time.perf_counter()
            iter_time = now - t_iter
            t_iter = now
            if t_first_done is None:
                t_first_done = now
            window.append((iter_time, data_time, {k: float(losses[k].detach()) for k in LOSS_KEYS}))
            bar.update(1)

            if it % cfg.log_period == 0 or it == cfg.iterations:
                vals = torch.tensor([float(losses[k].detach()) for k in LOSS_KEYS], dtype=torch.float64)
                if info.enabled:
                    vals = vals.to(dev)
                    dist.all_reduce(vals)
                    vals = (vals / info.world_size).cpu()
                mean_time = statistics.fmean(w[0] for w in window)
                mean_data = statistics.fmean(w[1] for w in window)
                max_mem = _max_mem_mb(dev)
                rec = {"iteration": it, **{k: float(v) for k, v in zip(LOSS_KEYS, vals.tolist())},
                       "lr": lr, "grad_norm": grad_norm, "time": mean_time, "data_time": mean_data,
                       "it_per_s": 1.0 / mean_time if mean_time > 0 else None, "max_mem": max_mem,
                       "eta_seconds": mean_time * (cfg.iterations - it)}
                if info.is_main:
                    metrics.write(rec)
                    med = {k: statistics.median(w[2][k] for w in window) for k in LOSS_KEYS}
                    _log.info("eta: %s  iter: %d/%d  total_loss: %.4g  loss_ce: %.4g  loss_mask: %.4g  "
                              "loss_dice: %.4g  time: %.4f  data_time: %.4f  it/s: %.2f  lr: %.3e  max_mem: %.0fM",
                              _fmt_eta(rec["eta_seconds"]), it, cfg.iterations, med["loss"], med["loss_ce"],
                              med["loss_mask"], med["loss_dice"], mean_time, mean_data, rec["it_per_s"] or 0.0,
                              lr, max_mem)
            if it % cfg.checkpoint_period == 0 or it == cfg.iterations:
                save_checkpoint(it)
            if stop_after is not None and it >= stop_after and it < cfg.iterations:
                if info.is_main:
                    _log.info("stopping after iteration %d (stop_after); resume from %s", it, scratch / "last.pt")
                _barrier(info)
                if info.created:
                    dist.destroy_process_group()
                return {"stopped_at": it}
            t_iter = time.perf_counter()
    finally:
        bar.close()
        if metrics is not None:
            metrics.close()

    # ---------------------------------------------------------------- final outputs (rank 0)
    loop_seconds = time.perf_counter() - t_loop
    steady = (time.perf_counter() - t_first_done) if t_first_done is not None else 0.0
    it_per_s = (iters_run - 1) / steady if iters_run > 1 and steady > 0 else (
        iters_run / loop_seconds if loop_seconds > 0 else 0.0)
    summary: dict[str, Any] = {}
    if info.is_main:
        records = [json.loads(ln) for ln in (scratch / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
                   if ln.strip()]
        tail = [r for r in records if r["iteration"] > cfg.iterations - max(1, cfg.iterations // 10)] or records[-1:]
        summary = {
            "iterations": cfg.iterations,
            "batch_size": cfg.batch_size,
            "images_seen": cfg.iterations * cfg.batch_size,
            "world_size": info.world_size,
            "start_iteration": start_iter,
            "train_seconds": elapsed_before + loop_seconds,
            "it_per_s": it_per_s,
            "images_per_s": it_per_s * cfg.batch_size,
            "max_mem_mb": _max_mem_mb(dev),
            "trainable_params": n_trainable,
            "num_train_images": len(indices),
            **({f"final_{k}": statistics.fmean(r[k] for r in tail) for k in LOSS_KEYS} if tail else {}),
        }
        out.mkdir(parents=True, exist_ok=True)
        trained = trainable_state_dict(model)
        gen_trained = trainable_state_dict(tuned_gen.generator) if tuned_gen else {}
        atomic_save({"format": MODEL_FORMAT, "cell": cell, "model_config": model_cfg.to_dict(),
                     "train_config": cfg.to_dict(), "seed": cfg.seed, "iteration": cfg.iterations,
                     "trainable_state": trained, "generator_state": gen_trained,
                     "weights_sha256": state_sha256(trained, gen_trained),
                     "generator_config": source.describe().get("config"), "source": source.describe(),
                     "frozen_checksum": frozen_checksum(model), "dataset": ds.name,
                     "vocabulary": [c.name for c in vocab]}, out / "model.pt")
        # results without timing and provenance; those go to the run records beside them (smart.provenance)
        provenance.write_jsonl_result(out / "metrics.jsonl", records)
        provenance.write_result(out / "config.json", {"cell": cell, "profile": profile, "dataset": ds.name, "root": str(root),
                                         "model": model_cfg.to_dict(), "train": cfg.to_dict(),
                                         "proposals": source.describe(), "world_size": info.world_size,
                                         "device": str(dev), "bf16": use_bf16,
                                         "fingerprint": fingerprint})
        provenance.write_result(out / "summary.json", summary)
        # The scratch keeps the finished state (trained weights, no optimizer) and the metrics: outputs that
        # are lost or deleted (Snakemake's --rerun-incomplete after a kill) are rewritten without training.
        atomic_save({"format": CHECKPOINT_FORMAT, "iteration": cfg.iterations, "fingerprint": fingerprint,
                     "final": True, "trainable_state": trainable_state_dict(module), "rng": [get_rng_state()],
                     "sampler": {"seed": cfg.seed, "position": cfg.iterations * cfg.batch_size,
                                 "num_samples": len(indices)},
                     "elapsed": elapsed_before + loop_seconds, "world_size": info.world_size}, scratch / "last.pt")
        _log.info("trained %s: %d iterations, %.2f it/s (%.1f images/s), final loss %.4g → %s", cell or "-",
                  cfg.iterations, it_per_s, it_per_s * cfg.batch_size, summary.get("final_loss", float("nan")), out)
    _barrier(info)
    if info.created:
        dist.destroy_process_group()
    return summary
