"""Pretraining of the mini profile's Mask2Former mask generators (``mini-r50``, ``mini-swinb``).

SMART freezes a COCO-panoptic-trained Mask2Former (paper §4 "Framework"; ``docs/method-spec.md`` §5.6).
The mini profile has no such checkpoint, so this module trains the tiny transformers
``Mask2FormerForUniversalSegmentation`` of :data:`smart.model.mask_generator.TINY_CONFIGS` on the
COCO-like panoptic **train** split of the mini world, with the COCO-like vocabulary as its closed-set
labels (so its native head also serves the COCO* "M2F-native" rows):

* targets: every non-crowd segment of an image (:func:`smart.model.criterion.targets_from_panoptic`
  drops ``iscrowd`` segments, as Mask2Former's COCO panoptic mapper does), class = contiguous
  ``train_id``; masks zero-padded to the padded input, as Mask2Former pads its GT masks;
* loss: transformers' own Mask2Former loss (``mask_labels`` / ``class_labels`` arguments of
  ``forward``: Hungarian matching, CE with no-object weight 0.1, point-sampled BCE + Dice with weights
  2 / 5 / 5, deep supervision on every decoder layer);
* input: the mini image size (96 px), no resize, random horizontal flip, the Mask2Former pixel
  normalisation (:func:`smart.model.mask_generator.preprocess_images`);
* optimiser: AdamW (no weight decay on norms and biases), linear warm-up then cosine / poly / constant
  decay, optional gradient-norm clipping; optional bf16 autocast.

Determinism and resumption (``docs/pipeline.md`` §2.4). The sample order and flips of step t are a pure
function of (seed, t) (a fresh permutation per epoch from ``numpy.random.default_rng([seed, epoch])``),
so a run is reproducible given the seed (on the same hardware and thread count), and a run resumed
from its scratch checkpoint (model, optimiser, scheduler, torch RNG state, curve) is bit-identical
to an uninterrupted one. The scratch checkpoint (``.<out>.scratch/last.pt`` next to the output) is
written every ``checkpoint_every`` steps and removed at the end; declared outputs are written
atomically at the end (each file renamed into place).

Outputs: ``out_dir`` holds a :meth:`Mask2FormerGenerator.save_pretrained` directory (``config.json`` +
``model.safetensors`` + ``smart_mask_generator.json``; it loads with
:meth:`Mask2FormerGenerator.from_pretrained` exactly as a real checkpoint directory) plus
``smart_pretrain.json`` (resolved config and provenance) and ``train_log.jsonl`` (the training
curve, one JSON object per ``log_every`` steps). The summary (:func:`evaluate_generator`) is returned
and written by the CLI as the stage's metrics JSON.

Evaluation. Class-agnostic mask recall at IoU ≥ 0.5 of the non-crowd GT segments, things and stuff
separately: a GT segment is recalled if some query's binarised mask (logit > 0, upsampled to the
image size as at inference) overlaps it with IoU ≥ 0.5 — over all queries (``recall_any``) and over
the queries with objectness 1 − p(no-object) > 0.5 (``recall_objectness``) — on the COCO-like val
split and on ADE-150-like val (a domain the generator never trained on); plus the Mask2Former-native
closed-set PQ on COCO-like val (own class head, thresholds 0.8 / 0.8, via
:meth:`Mask2FormerGenerator.closed_set_predict` and :class:`smart.eval.panoptic.PanopticAccumulator`).
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from smart import provenance
from smart.errors import ConfigError
from smart.io import write_json
from smart.train.checkpoint import atomic_save
from smart.train.optim import LRSchedule, decay_groups
from smart.train.pretrain_config import GeneratorPretrainConfig

__all__ = [
    "GeneratorPretrainConfig",
    "batch_plan",
    "build_generator",
    "evaluate_generator",
    "mask_recall",
    "train_generator",
]

_log = logging.getLogger(__name__)

SUMMARY_FILE = "smart_pretrain.json"
CURVE_FILE = "train_log.jsonl"

DEFINITIONS = {
    "recall_any": "share of non-crowd GT segments (things / stuff by the dataset's isthing flag) whose best "
                  "IoU with any query's binarised mask (mask logit > 0, bilinearly upsampled to the image "
                  "size) is >= 0.5; class-agnostic",
    "recall_objectness": "as recall_any, over the queries with objectness 1 - p(no-object) > 0.5 only",
    "mean_best_iou": "mean over GT segments of the best IoU with any query (average best overlap)",
    "closed_set_pq": "PQ of Mask2Former-native closed-set panoptic inference (own class head, all queries, "
                     "object_mask_threshold 0.8, overlap_threshold 0.8) on COCO-like val; panopticapi rules",
    "closed_set_pq_thr0": "as closed_set_pq with object_mask_threshold 0.0 (diagnostic)",
    "best_query_class_accuracy": "share of GT segments whose best-IoU query's arg-max real class is the GT class",
    "steps_per_s": "training steps / training wall seconds (data loading included, evaluation excluded)",
}


def lr_schedule(cfg: GeneratorPretrainConfig) -> LRSchedule:
    """Linear warm-up ``(step + 1) / warmup``, then the decay schedule over the remaining steps."""
    return LRSchedule(schedule=cfg.schedule, iterations=cfg.steps, warmup_iters=cfg.warmup, power=0.9,
                      min_factor=cfg.min_lr_ratio, warmup_mode="linear")


def lr_factor(step: int, cfg: GeneratorPretrainConfig) -> float:
    """Multiplier of the peak lr at (0-based) ``step`` (:func:`lr_schedule`)."""
    return lr_schedule(cfg)(step)


# --------------------------------------------------------------------------------------------------
# model


def build_generator(name: str, *, class_names: Sequence[str], num_queries: int, train_num_points: int = 1024,
                    seed: int = 0):
    """A random-init :class:`Mask2FormerGenerator` of ``TINY_CONFIGS[name]`` with ``class_names`` as labels,
    trainable, settings of the mini profile (no resize)."""
    from transformers import Mask2FormerForUniversalSegmentation

    from smart.model.mask_generator import (
        TINY_CONFIGS,
        Mask2FormerGenerator,
        _quiet_transformers,
        tiny_mask2former_config,
    )

    if name not in TINY_CONFIGS:
        raise ConfigError(f"unknown mini generator {name!r}; known: {', '.join(sorted(TINY_CONFIGS))}",
                          field="mini_generators")
    torch.manual_seed(seed)
    with _quiet_transformers():
        hf_cfg = tiny_mask2former_config(name, num_labels=len(class_names), num_queries=num_queries)
        hf_cfg.id2label = {i: n for i, n in enumerate(class_names)}
        hf_cfg.label2id = {n: i for i, n in enumerate(class_names)}
        hf_cfg.train_num_points = int(train_num_points)
        model = Mask2FormerForUniversalSegmentation(hf_cfg)
    return Mask2FormerGenerator(model=model, resize=False, tune=True, top_k=None, score_mode="objectness")


def batch_plan(step: int, *, num_samples: int, batch_size: int, seed: int, hflip: bool) -> tuple[np.ndarray, np.ndarray]:
    """Sample indices (B,) and flip flags (B,) of ``step``: a pure function of (seed, step).

    Position p = step·B + j walks through a fresh permutation of the samples per epoch
    (``default_rng([seed, epoch])``); flips come from ``default_rng([seed, 1, step])``.
    """
    pos = step * batch_size + np.arange(batch_size)
    epochs = pos // num_samples
    idx = np.empty(batch_size, dtype=np.int64)
    for e in np.unique(epochs):
        perm = np.random.default_rng([seed, int(e)]).permutation(num_samples)
        sel = epochs == e
        idx[sel] = perm[pos[sel] % num_samples]
    flips = np.random.default_rng([seed, 1, step]).random(batch_size) < 0.5 if hflip else np.zeros(batch_size, bool)
    return idx, flips


class _DecodedSamples:
    """``ds[i]`` decoded once and kept: the pretraining draws every image ~2 times (560 × 16 crops of
    4000 images), and decoding was two thirds of its data time. Segment ids are kept as int32 (the mini
    COCO train split then takes ~260 MB)."""

    def __init__(self, ds):
        self.ds, self._memo = ds, {}

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> dict:
        s = self._memo.get(i)
        if s is None:
            s = self.ds[i]
            s = {"image": s["image"], "pan_ids": s["pan_ids"].astype(np.int32), "segments_info": s["segments_info"]}
            self._memo[i] = s
        return s


def _load_batch(ds, idx: Sequence[int], flips: Sequence[bool], *, size_divisibility: int = 32):
    """Images + padded targets of one batch: ``pixel_values`` (B, 3, Hp, Wp), ``pixel_mask`` (B, Hp, Wp),
    ``mask_labels`` B × (N_b, Hp, Wp) float, ``class_labels`` B × (N_b,) int64."""
    from smart.model.criterion import targets_from_panoptic
    from smart.model.mask_generator import preprocess_images

    images, targets = [], []
    for i, flip in zip(idx, flips):
        s = ds[int(i)]
        image, pan = s["image"], s["pan_ids"]  # (H, W, 3), (H, W)
        if flip:
            image, pan = image[:, ::-1], pan[:, ::-1]
        images.append(np.array(image))  # writable copy
        targets.append(targets_from_panoptic(np.ascontiguousarray(pan), s["segments_info"]))  # crowd dropped
    batch = preprocess_images(images, resize=False, size_divisibility=size_divisibility)
    Hp, Wp = batch["pixel_values"].shape[-2:]
    masks = []
    for t in targets:
        m = t["masks"].float()  # (N, H, W)
        masks.append(F.pad(m, (0, Wp - m.shape[-1], 0, Hp - m.shape[-2])))  # (N, Hp, Wp): zero padding
    return batch["pixel_values"], batch["pixel_mask"], masks, [t["labels"] for t in targets]


# --------------------------------------------------------------------------------------------------
# evaluation


def mask_recall(mask_logits: torch.Tensor, scores: torch.Tensor, gt_masks: torch.Tensor, *,
                iou_threshold: float = 0.5, score_threshold: float = 0.5) -> dict[str, torch.Tensor]:
    """Best IoU of each GT mask with the binarised queries of one image.

    Args:
        mask_logits: (Q, H, W) logits at the GT size.
        scores: (Q,) objectness.
        gt_masks: (N, H, W) bool.

    Returns:
        ``best_iou`` (N,) over all queries, ``best_iou_objectness`` (N,) over queries with
        score > ``score_threshold`` (0 if there is none), ``hit`` / ``hit_objectness`` (N,) bool
        (best IoU ≥ ``iou_threshold``).
    """
    pred = (mask_logits > 0).flatten(1).float()  # (Q, H·W)
    gt = gt_masks.flatten(1).float()  # (N, H·W)
    inter = gt @ pred.T  # (N, Q)
    union = gt.sum(1)[:, None] + pred.sum(1)[None, :] - inter  # (N, Q)
    iou = inter / union.clamp(min=1.0)  # (N, Q)
    if iou.shape[1] == 0:
        iou = torch.zeros((gt.shape[0], 1))
    keep = scores > score_threshold  # (Q,)
    best, best_q = iou.max(1)  # (N,), (N,)
    best_obj = iou[:, keep].max(1).values if keep.any() else torch.zeros_like(best)  # (N,)
    return {"best_iou": best, "best_query": best_q, "best_iou_objectness": best_obj,
            "hit": best >= iou_threshold, "hit_objectness": best_obj >= iou_threshold}


def _recall_summary(rows: list[dict], n_queries_kept: list[int], images: int) -> dict:
    out: dict = {"images": images, "mean_queries_objectness": float(np.mean(n_queries_kept)) if n_queries_kept else 0.0}
    for kind, flag in (("things", True), ("stuff", False)):
        sel = [r for r in rows if r["isthing"] == flag]
        n = len(sel)
        out[kind] = {
            "segments": n,
            "recall_any": float(np.mean([r["hit"] for r in sel])) if n else None,
            "recall_objectness": float(np.mean([r["hit_obj"] for r in sel])) if n else None,
            "mean_best_iou": float(np.mean([r["iou"] for r in sel])) if n else None,
        }
        if n and "cls_ok" in sel[0]:
            out[kind]["best_query_class_accuracy"] = float(np.mean([r["cls_ok"] for r in sel]))
    return out


@torch.no_grad()
def evaluate_generator(generator, datasets: Sequence[str], *, root: str | Path, pq_dataset: str | None = "coco",
                       batch_size: int = 16, limit: int | None = None) -> dict:
    """Class-agnostic mask recall on each dataset and native closed-set PQ on ``pq_dataset``.

    Args:
        generator: a :class:`Mask2FormerGenerator` (eval mode is forced).
        datasets: registry names (panoptic splits) for the recall.
        root: the dataset root of the profile.
        pq_dataset: the dataset whose vocabulary is the generator's label set (None = skip PQ).
        batch_size: images per forward.
        limit: evaluate only the first ``limit`` images of each dataset (None = all).
    """
    from smart.data.registry import Dataset
    from smart.eval.panoptic import PanopticAccumulator
    from smart.model.criterion import targets_from_panoptic
    from smart.model.inference import InferenceConfig, panoptic_for_eval, resize_mask_logits
    from smart.utils.logging import progress

    was_training = generator.model.training
    generator.model.eval()
    res: dict = {"recall": {}, "closed_set_pq": {}, "closed_set_pq_thr0": {}}
    # Mask2Former's COCO panoptic thresholds (the COCO* "M2F-native" rows), and object_mask_threshold 0.0
    # (the spec's open-vocabulary setting) as a diagnostic of an under-confident class head.
    inference_cfgs = (InferenceConfig(object_mask_threshold=0.8, overlap_threshold=0.8),
                      InferenceConfig(object_mask_threshold=0.0, overlap_threshold=0.8))
    try:
        for name in datasets:
            ds = Dataset.open(name, root=root)
            if ds.spec.task != "panoptic":
                raise ConfigError(f"mask recall needs a panoptic dataset, {name!r} is {ds.spec.task}",
                                  field="eval_datasets")
            n = len(ds) if limit is None else min(limit, len(ds))
            do_pq = pq_dataset is not None and name == pq_dataset
            if do_pq:
                vocab = ds.vocab
                if len(vocab) != generator.num_classes:
                    raise ConfigError(f"{name} has {len(vocab)} classes but the generator's head has "
                                      f"{generator.num_classes}", field="eval_datasets")
                cats = [{"id": c.id, "isthing": int(c.isthing), "name": c.name} for c in vocab]
                accs = [PanopticAccumulator(cats) for _ in inference_cfgs]
            rows: list[dict] = []
            kept: list[int] = []
            for start in progress(range(0, n, batch_size), desc=f"eval {name}", unit="batch"):
                samples = [ds[i] for i in range(start, min(start + batch_size, n))]
                images = [np.array(s["image"]) for s in samples]  # writable copies
                out = generator.predict(images, top_k=generator.num_queries)
                logits = resize_mask_logits(out["mask_logits"], input_size=out["input_size"],
                                            image_sizes=out["image_sizes"], output_sizes=out["original_sizes"],
                                            amp=False)  # B × (Q, H, W)
                for b, s in enumerate(samples):
                    segs = [x for x in s["segments_info"] if not x["iscrowd"]]
                    kept.append(int((out["scores"][b] > 0.5).sum()))
                    if not segs:
                        continue
                    t = targets_from_panoptic(s["pan_ids"], segs)  # (N, H, W)
                    r = mask_recall(logits[b], out["scores"][b], t["masks"])
                    if do_pq:  # the closed-set label of each GT segment's best query
                        labels = out["class_logits"][b, :, :-1].argmax(-1)[r["best_query"]]  # (N,)
                    for j, seg in enumerate(segs):
                        row = {"isthing": bool(seg["isthing"]), "hit": bool(r["hit"][j]),
                               "hit_obj": bool(r["hit_objectness"][j]), "iou": float(r["best_iou"][j])}
                        if do_pq:
                            row["cls_ok"] = bool(labels[j] == t["labels"][j])
                        rows.append(row)
                if do_pq:
                    gt_infos = [[{"id": x["id"], "category_id": x["category_id"], "iscrowd": x["iscrowd"],
                                  "area": x["area"] if x.get("area", -1) >= 0 else int((s["pan_ids"] == x["id"]).sum())}
                                 for x in s["segments_info"]] for s in samples]
                    for acc, icfg in zip(accs, inference_cfgs):
                        preds = generator.closed_set_predict(images, is_thing=vocab.thing_mask, tasks=("panoptic",),
                                                             cfg=icfg)
                        for s, gt_info, p in zip(samples, gt_infos, preds):
                            seg_map, seg_info = p["panoptic_seg"]
                            pred_ids, pred_info = panoptic_for_eval(seg_map, seg_info, dataset_ids=[c.id for c in vocab],
                                                                    is_thing=vocab.thing_mask)
                            acc.add(s["image_id"], s["pan_ids"], gt_info, pred_ids, pred_info)
            res["recall"][name] = _recall_summary(rows, kept, n)
            if do_pq:
                for key, acc in zip(("closed_set_pq", "closed_set_pq_thr0"), accs):
                    summ = acc.summary()
                    res[key][name] = {k: summ[k] for k in ("All", "Things", "Stuff")}
                    res[key][name]["num_images"] = summ["num_images"]
    finally:
        generator.model.train(was_training)
    return res


# --------------------------------------------------------------------------------------------------
# training


def _after_step(step: int) -> None:
    """Hook called after every completed step (and its checkpoint); tests use it to simulate a kill."""


def scratch_dir(out_dir: str | Path) -> Path:
    """Undeclared scratch path of a run (``<parent>/.<name>.scratch``), holding ``last.pt``."""
    out_dir = Path(out_dir)
    return out_dir.parent / f".{out_dir.name}.scratch"


def _install_outputs(generator, out_dir: Path, extra: dict[str, str]) -> None:
    """save_pretrained into a temporary directory, then rename each file into ``out_dir`` (atomic per file)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out_dir.name}.", dir=out_dir.parent) as tmp:
        tmp = Path(tmp)
        generator.save_pretrained(tmp)
        for fname, text in extra.items():
            (tmp / fname).write_text(text)
        for f in sorted(tmp.iterdir()):
            os.chmod(f, 0o644)  # save_pretrained may create the weights 0600 (temporary file)
            os.replace(f, out_dir / f.name)


def train_generator(name: str, cfg: GeneratorPretrainConfig, *, root: str | Path, out_dir: str | Path,
                    curve_path: str | Path | None = None, checkpoint_every: int = 100, resume: bool = True,
                    evaluate: bool = True, eval_limit: int | None = None) -> dict:
    """Train the mini generator ``name``, save it to ``out_dir`` and return the summary.

    Args:
        name: a :data:`TINY_CONFIGS` key (``mini-r50`` or ``mini-swinb``).
        cfg: the training configuration.
        root: the mini world (``$DETECTRON2_DATASETS`` of the mini profile).
        out_dir: output checkpoint directory (``save_pretrained`` format).
        curve_path: JSON-lines training curve (default ``<out_dir>/train_log.jsonl``).
        checkpoint_every: steps between scratch checkpoints (0 = none).
        resume: continue from the scratch checkpoint if one of the same config exists.
        evaluate: compute the recall / PQ metrics after training.
        eval_limit: evaluate only the first images of each dataset (tests).
    """
    from smart.data.registry import Dataset
    from smart.utils.logging import progress

    out_dir = Path(out_dir)
    curve_path = Path(curve_path) if curve_path else out_dir / CURVE_FILE
    ds = Dataset.open(cfg.train_dataset, root=root)
    samples = _DecodedSamples(ds)
    if ds.spec.task != "panoptic":
        raise ConfigError(f"{cfg.train_dataset!r} is not a panoptic split", field=f"mini_generators.{name}.train_dataset")
    class_names = ds.vocab.names
    _log.info("pretraining mask generator %s on %s (%d images, %d classes); config %s; git %s", name, ds.name,
              len(ds), len(class_names), json.dumps(cfg.to_dict()), provenance.git_sha())

    gen = build_generator(name, class_names=class_names, num_queries=cfg.num_queries,
                          train_num_points=cfg.train_num_points, seed=cfg.seed)
    model = gen.model
    n_params = sum(p.numel() for p in model.parameters())
    # AdamW groups: no decay on norms, biases and the query / level embeddings
    opt = torch.optim.AdamW(decay_groups(model.named_parameters(), weight_decay=cfg.weight_decay, names=("embed",)),
                            lr=cfg.lr, betas=(0.9, 0.999), fused=True)  # one kernel per step (13 -> 4 ms here)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_schedule(cfg))

    scratch = scratch_dir(out_dir) / "last.pt"
    start, curve, train_seconds, recent = 0, [], 0.0, []
    ident = {"name": name, "config": cfg.to_dict(), "train_images": len(ds), "classes": class_names}
    if resume and scratch.is_file():
        try:
            state = torch.load(scratch, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as exc:  # torn / foreign
            _log.warning("ignoring unreadable scratch checkpoint %s (%s)", scratch, exc)
            state = None
        if state is not None and state.get("ident") == ident:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            sched.load_state_dict(state["sched"])
            torch.set_rng_state(state["torch_rng"])
            start, curve, train_seconds = state["step"], state["curve"], state["train_seconds"]
            recent = state["recent"]
            _log.info("resuming from %s at step %d/%d", scratch, start, cfg.steps)
        elif state is not None:
            _log.warning("scratch checkpoint %s is from another config; starting from step 0", scratch)
    if start == 0:
        torch.manual_seed(cfg.seed)  # loss point sampling draws from the global torch RNG

    device_type = next(model.parameters()).device.type
    model.train()
    t_data = 0.0
    bar = progress(range(start, cfg.steps), total=cfg.steps, initial=start, desc=f"pretrain {name}", unit="step")
    t_run = time.time()  # this process's training time (steps/s); train_seconds also counts earlier runs
    for step in bar:
        t0 = time.time()
        idx, flips = batch_plan(step, num_samples=len(ds), batch_size=cfg.batch_size, seed=cfg.seed, hflip=cfg.hflip)
        pixel_values, pixel_mask, mask_labels, class_labels = _load_batch(samples, idx, flips)
        t_data += time.time() - t0
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=cfg.bf16):
            out = model(pixel_values=pixel_values, pixel_mask=pixel_mask, mask_labels=mask_labels,
                        class_labels=class_labels)
        loss = out.loss.float()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {loss.item()} at step {step + 1}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        max_norm = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        opt.step()
        sched.step()
        recent.append(loss.item())
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            run = time.time() - t_run
            rate = (done - start) / max(run, 1e-9)
            rec = {"step": done, "loss": float(np.mean(recent)), "lr": sched.get_last_lr()[0],
                   "grad_norm": float(gnorm), "seconds": round(train_seconds + run, 2),
                   "data_seconds": round(t_data, 2), "steps_per_s": round(rate, 3)}
            _log.info("step %d/%d loss %.3f lr %.2e grad %.2f %.2f it/s data %.1f s eta %.0f s", done, cfg.steps,
                      rec["loss"], rec["lr"], rec["grad_norm"], rate, t_data, (cfg.steps - done) / max(rate, 1e-9))
            curve.append(rec)
            recent = []
        if checkpoint_every and done % checkpoint_every == 0 and done < cfg.steps:
            atomic_save({"ident": ident, "step": done, "model": model.state_dict(), "opt": opt.state_dict(),
                         "sched": sched.state_dict(), "torch_rng": torch.get_rng_state(), "curve": curve,
                         "recent": recent, "train_seconds": train_seconds + time.time() - t_run}, scratch)
        _after_step(done)
    run_seconds = time.time() - t_run
    train_seconds += run_seconds
    steps_run = cfg.steps - start

    model.eval()
    gen.tune = False
    gen.model.requires_grad_(False)
    meta = {"generator": name, "config": cfg.to_dict(), "train_dataset": ds.name, "train_images": len(ds),
            "classes": class_names, "parameters": n_params, "resumed_from_step": start,
            "torch_threads": torch.get_num_threads()}
    meta, volatile = provenance.split(meta)  # the directory holds only what the run computed
    _install_outputs(gen, out_dir, {SUMMARY_FILE: json.dumps(meta, indent=1) + "\n"})
    write_json(provenance.run_record_path(Path(out_dir) / SUMMARY_FILE), {**volatile, "git_sha": provenance.git_sha()})
    provenance.write_jsonl_result(curve_path, curve)
    shutil.rmtree(scratch.parent, ignore_errors=True)

    summary = {"generator": name, "out_dir": str(out_dir), "parameters": n_params, "steps": cfg.steps,
               "batch_size": cfg.batch_size, "train_images": len(ds), "num_labels": len(class_names),
               "num_queries": cfg.num_queries, "train_seconds": round(train_seconds, 1),
               "steps_per_s": round(steps_run / max(run_seconds, 1e-9), 3), "resumed_from_step": start,
               "final_loss": curve[-1]["loss"] if curve else None, "torch_threads": torch.get_num_threads(),
               "config": cfg.to_dict(), "definitions": DEFINITIONS}
    if evaluate:
        t0 = time.time()
        pq_ds = cfg.eval_datasets[0]
        summary.update(evaluate_generator(gen, cfg.eval_datasets, root=root, pq_dataset=pq_ds,
                                          batch_size=cfg.eval_batch_size, limit=eval_limit))
        summary["eval_seconds"] = round(time.time() - t0, 1)
    return summary
