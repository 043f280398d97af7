"""Evaluate a trained cell of the experiment grid on one benchmark (``python -m smart eval-cell``).

The model is rebuilt from its ``model.pt`` (:func:`smart.train.checkpoint.load_trained`); the
proposals come from the frozen generator's cache (``smart.data.proposals``), from the generator run
on the fly (a cell that tuned its generator, Table 3e / Fig. 2b), or from the ground truth (Fig. 2a
*oracle generator*). Each batch goes through the same inference code as any user of the model
(:func:`smart.model.inference.postprocess`) and is scored by the streaming PQ / mIoU accumulators
(``smart.eval.panoptic``, ``smart.eval.semantic``), which equal panopticapi and detectron2.

Fig. 2a *oracle classifier*: the class logits are replaced by one-hot logits of each proposal's
best-overlapping ground-truth label (:func:`smart.model.mask_generator.oracle_classifier_logits`).

Outputs (``docs/pipeline.md`` §5): a metrics file with flat numbers only (``PQ``, ``SQ``, ``RQ``, …,
``mIoU``, … in percent), the input of ``dvc metrics diff``, and a detail file with per-class results,
definitions and provenance.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smart.config import EvalSettings  # noqa: F401 (re-exported)
from smart.data.sources import OnTheFlyProposals, generator_proposals, store_proposals  # noqa: F401 (re-exported)
from smart.errors import InputError

_log = logging.getLogger("smart.eval.cell")



def eval_settings(params: Any, *, oracle: str = "none", source: str | Path | None = None) -> EvalSettings:
    """params.yaml ``eval`` (of an :class:`smart.experiment.Experiment` or a params mapping) →
    :class:`EvalSettings`."""
    from smart.config import section

    ev = section(params, "eval", source=source) if isinstance(params, dict) else params.eval
    return EvalSettings(**ev, oracle=oracle)


def gt_targets(sample: dict, num_classes: int, ignore_label: int) -> dict[str, torch.Tensor]:
    """Ground-truth segments of one decoded sample → ``{"labels": (N,), "masks": (N, H, W) bool}``.

    Panoptic samples give their non-crowd segments; semantic-only samples one region per class present.
    """
    from smart.model.criterion import targets_from_panoptic

    if "pan_ids" in sample:
        return targets_from_panoptic(sample["pan_ids"], sample["segments_info"])
    sem = torch.as_tensor(np.asarray(sample["sem_seg"]).astype(np.int64))  # (H, W)
    classes = [int(c) for c in torch.unique(sem).tolist() if c != ignore_label and 0 <= c < num_classes]
    labels = torch.as_tensor(classes, dtype=torch.int64)  # (N,)
    masks = sem.unsqueeze(0) == labels[:, None, None] if classes else torch.zeros((0, *sem.shape), dtype=torch.bool)
    return {"labels": labels, "masks": masks}  # masks (N, H, W)


def _group_consecutive(items: Iterable, key: Callable[[Any], Any], batch_size: int) -> Iterator[list]:
    """Runs of consecutive items with equal ``key``, in chunks of at most ``batch_size`` (streamed: each
    item is produced once)."""
    group: list = []
    for item in items:
        if group and (len(group) == batch_size or key(group[0]) != key(item)):
            yield group
            group = []
        group.append(item)
    if group:
        yield group


def _size_groups(sizes: Sequence[tuple[int, int]], batch_size: int) -> list[list[int]]:
    """Consecutive indices of equal image size, in chunks of at most ``batch_size``."""
    return [[i for i, _ in g] for g in _group_consecutive(enumerate(sizes), lambda t: t[1], batch_size)]


def evaluate_model(model: torch.nn.Module, dataset: Any, *, settings: EvalSettings,
                   proposals: Callable[[list[dict], torch.Tensor], torch.Tensor] | None,
                   device: torch.device | str = "cpu", pad_logit: float = -20.0,
                   limit: int | None = None, desc: str = "eval") -> dict:
    """PQ (panoptic datasets) and mIoU (every dataset with semantic GT) of a SMART model.

    Args:
        model: a :class:`~smart.model.smart.SmartModel` in eval mode.
        dataset: a :class:`smart.data.registry.Dataset` (panoptic or semantic task).
        settings: thresholds, batch size and oracle mode.
        proposals: ``fn(samples, images) -> (B, Q, h, w)`` mask logits covering each image (unused with
            ``oracle="generator"``).
        device: where the model runs.
        pad_logit: the logit of padding proposals when images have different numbers of proposals.
        limit: evaluate only the first ``limit`` images (smoke runs).
        desc: progress-bar label.

    Returns:
        ``{"panoptic": PQ summary or None, "semantic": mIoU summary or None, "num_images", "seconds"}``.
    """
    from smart.eval.panoptic import PanopticAccumulator
    from smart.eval.semantic import SemSegAccumulator
    from smart.model.inference import InferenceConfig, panoptic_for_eval, postprocess, semantic_for_eval
    from smart.model.mask_generator import OracleMaskGenerator, oracle_classifier_logits
    from smart.utils.logging import progress
    from smart.utils.perf import inference_autocast

    vocab = dataset.vocab
    K = len(vocab)
    is_thing = vocab.thing_mask
    dataset_ids = [c.id for c in vocab]
    task = dataset.spec.task
    if task not in ("panoptic", "semantic"):
        raise InputError(f"eval-cell scores panoptic or semantic benchmarks; {dataset.name!r} is {task}",
                         field="dataset")
    pan = (PanopticAccumulator(vocab.to_json_list(), empty_gt_stuff=dataset.spec.empty_gt_stuff)
           if task == "panoptic" else None)
    sem = None
    has_sem = task == "semantic" or bool(dataset.spec.semseg_dir)
    if has_sem:
        sem = SemSegAccumulator(K, dataset.ignore_label, class_names=vocab.names)
    icfg = InferenceConfig.from_settings(settings)
    tasks = tuple(t for t, on in (("semantic", has_sem), ("panoptic", pan is not None)) if on)
    text = model.encode_text(vocab)  # once: the text tower is frozen at evaluation
    autocast = inference_autocast(torch.device(device).type, settings.bf16)
    n = len(dataset) if limit is None else min(limit, len(dataset))
    oracle_gen = None
    t0 = time.perf_counter()
    bar = progress(total=n, desc=desc, unit="img")
    # batches of consecutive images of equal size (the mini world: all; real datasets: often 1)
    for samples in _group_consecutive((dataset[i] for i in range(n)), lambda s: s["image"].shape,
                                      settings.batch_size):
        H, W = samples[0]["image"].shape[:2]
        images = torch.from_numpy(np.stack([s["image"] for s in samples])).permute(0, 3, 1, 2).float()  # (B, 3, H, W)
        images = images.to(device)
        targets = None
        if settings.oracle != "none":
            targets = [gt_targets(s, K, dataset.ignore_label) for s in samples]
        if settings.oracle == "generator":
            q = max([len(t["labels"]) for t in targets] + [1])
            oracle_gen = OracleMaskGenerator(num_queries=q)
            props = oracle_gen(targets)["mask_logits"]  # (B, Q, H, W) ±20 inside / outside each GT mask
        else:
            props = proposals(samples, images)  # (B, Q, h, w)
        with autocast:  # bf16 through the classifier on CUDA (settings.bf16); fp32 on CPU
            out = model(images, props.to(device), text)  # pred_logits (B, Q, K+1), pred_masks (B, Q, h, w)
        if settings.oracle == "classifier":
            out = dict(out)
            out["pred_logits"] = oracle_classifier_logits(props.to(device), [
                {k: v.to(device) for k, v in t.items()} for t in targets], num_classes=K)  # (B, Q, K+1)
        results = postprocess(out, is_thing=is_thing, output_sizes=(H, W), tasks=tasks, cfg=icfg)
        for s, r in zip(samples, results):
            if pan is not None:
                seg, info = r["panoptic_seg"]
                pred_ids, pred_info = panoptic_for_eval(seg.cpu(), info, dataset_ids=dataset_ids, is_thing=is_thing)
                pan.add(s["image_id"], s["pan_ids"], s["segments_info"], pred_ids, pred_info)
            if sem is not None and "sem_seg" in s:
                sem.add(s["sem_seg"], semantic_for_eval(r["sem_label"]), image=s["image_id"])
        bar.update(len(samples))
    bar.close()
    return {"panoptic": pan.summary() if pan is not None else None,
            "semantic": sem.summary() if sem is not None else None,
            "num_images": n, "seconds": round(time.perf_counter() - t0, 2)}


def result_record(result: dict, *, provenance: dict, groups: dict[str, str] | None = None) -> tuple[dict, dict]:
    """(flat metrics for DVC, detail record with per-class numbers, definitions and provenance).

    ``groups`` (class name -> group; the mini world's) adds the per-group PQ / mIoU to the flat metrics.
    """
    from smart.eval.summary import flat_metrics

    flat = flat_metrics(result["panoptic"], result["semantic"], groups)
    flat = {k: (None if isinstance(v, float) and not np.isfinite(v) else round(float(v), 4)) for k, v in flat.items()}
    detail = {"metrics": flat, "num_images": result["num_images"], "seconds": result["seconds"],
              "panoptic": result["panoptic"], "semantic": result["semantic"], "provenance": provenance}
    return flat, detail
