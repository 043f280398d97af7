"""Inference efficiency of a trained cell: the Inference FPS and Inference Memory columns of the
paper's Table 2 (ADE150; SMART-SwinB 2.63 FPS, 10.2 GB).

Protocol (``python -m smart benchmark``):

* **batch size 1**, as the paper's FPS: every image at its original size goes alone through the whole
  inference path —

  1. *generator*: the image tensor is moved to the device, preprocessed and passed through the mask
     generator, run on the fly (:func:`smart.eval.cell.generator_proposals`);
  2. *classifier*: SMART's mask classification of the proposals (``SmartModel.forward``);
  3. *postprocess*: panoptic **and** semantic post-processing, resized to the image's original size
     (:func:`smart.model.inference.postprocess`, the thresholds of params.yaml ``eval``);

* **W warm-up images** (default 5) run first and are not timed;
* the **next N images** are timed with ``time.perf_counter`` around those three stages
  (``torch.cuda.synchronize`` at every stage boundary on CUDA). Not timed: decoding the image file,
  and the vocabulary's text embeddings, computed once before warm-up (the text tower is frozen;
  evaluation caches them the same way);
* ``fps`` = N / (sum of the timed seconds); ``ms_generator`` / ``ms_classifier`` / ``ms_postprocess``
  are the per-image means of each stage.

Memory (GB = 2**30 bytes):

* **CUDA** (``memory_kind = "cuda_max_allocated"``): ``torch.cuda.max_memory_allocated`` over the
  timed loop, the peak statistics reset just before it. The weights stay allocated, so they count.
* **CPU** (``memory_kind = "cpu_peak_rss"``): the process's peak resident set size. ``peak_rss_gb``
  is the absolute peak, ``memory_gb`` its growth over the RSS at the start of the timed loop. On
  Linux the kernel's peak (``VmHWM``) is reset before the loop (``/proc/self/clear_refs``), so both
  describe the timed loop alone (``rss_peak_scope = "timed_loop"``); where the reset is refused,
  ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` before / after is used — the peak of the whole
  process life (``rss_peak_scope = "process"``), whose growth reads 0 when warm-up already reached it.

**Work per image** (``gflops_per_image``): one extra untimed image (the first) runs under
``torch.utils.flop_counter.FlopCounterMode``, which counts the floating-point operations of every
matmul, convolution and attention kernel from their shapes (2 per multiply-add; elementwise ops are
not counted) through generator, classifier and post-processing. ``gflops_per_image × fps`` is the
achieved rate that Table 2 sets against the device's peak (``smart/report/device_peaks.yaml``).
Precision: ``autocast`` names the parts that ran in bfloat16 (params.yaml ``eval.bf16``, CUDA).

The result also records the device (CUDA device name, or the CPU model of ``/proc/cpuinfo``), the
torch intra-op threads and the dtypes, so that numbers from different machines are not mixed up.
"""

from __future__ import annotations

import platform
import resource
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from smart.errors import InputError
from smart.utils.perf import inference_autocast

__all__ = ["GB", "benchmark_model", "cpu_model_name", "device_name", "peak_rss_bytes", "reset_peak_rss"]

GB = float(2**30)
MEMORY_KINDS = ("cuda_max_allocated", "cpu_peak_rss")


# ------------------------------------------------------------------------------------------ machine
def cpu_model_name() -> str:
    """The CPU model from ``/proc/cpuinfo`` (``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def device_name(device: torch.device) -> str:
    """A human-readable name of ``device``: the CUDA device name or the CPU model."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model_name()


# ------------------------------------------------------------------------------------------ CPU memory
def _status_kib(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``), or None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def current_rss_bytes() -> int | None:
    """The process's resident set size now (Linux), or None."""
    kib = _status_kib("VmRSS")
    return None if kib is None else kib * 1024


def peak_rss_bytes() -> int:
    """The process's peak resident set size: ``VmHWM`` (Linux), else ``ru_maxrss`` (KiB on Linux,
    bytes on macOS)."""
    kib = _status_kib("VmHWM")
    if kib is not None:
        return kib * 1024
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(maxrss if platform.system() == "Darwin" else maxrss * 1024)


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux ≥ 4.0); False where refused."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


# ------------------------------------------------------------------------------------------ benchmark
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _image(dataset: Any, i: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB of image ``i`` (only the image: annotations are not decoded)."""
    records = getattr(dataset, "records", None)
    if records is not None and "file_name" in records[i]:
        from smart.io import read_rgb

        return read_rgb(records[i]["file_name"], convert=True)
    return dataset[i]["image"]


def _tasks(dataset: Any) -> tuple[str, ...]:
    task = dataset.spec.task
    if task not in ("panoptic", "semantic"):
        raise InputError(f"the benchmark runs panoptic / semantic inference; {dataset.name!r} is {task}",
                         field="dataset")
    has_sem = task == "semantic" or bool(getattr(dataset.spec, "semseg_dir", None))
    return tuple(t for t, on in (("semantic", has_sem), ("panoptic", task == "panoptic")) if on)


@torch.no_grad()
def benchmark_model(model: torch.nn.Module, dataset: Any, *,
                    proposals: Callable[[list[dict], torch.Tensor], torch.Tensor],
                    device: torch.device | str = "cpu", images: int = 100, warmup: int = 5,
                    inference: Any = None, tasks: Sequence[str] | None = None,
                    generator_amp: bool = True, bf16: bool = True, cpu_bf16: bool = False,
                    compile: bool = False) -> dict[str, Any]:
    """Time end-to-end inference of a SMART model at batch size 1 (see the module docstring).

    Args:
        model: a :class:`~smart.model.smart.SmartModel` in eval mode, on ``device``.
        dataset: a :class:`smart.data.registry.Dataset` (panoptic or semantic task).
        proposals: the mask generator, ``fn(samples, images) -> (1, Q, h, w)`` mask logits covering the
            image (:func:`smart.eval.cell.generator_proposals`).
        device: where everything runs.
        images: N, the number of timed images (at most the dataset's size).
        warmup: W, untimed images run first. Warm-up takes images 0..W-1 and the timed loop the
            next N images (indices wrap around the dataset when W + N exceeds it).
        inference: a :class:`smart.model.inference.InferenceConfig` (thresholds); default its defaults.
        tasks: post-processing tasks; default semantic and/or panoptic, by what the dataset has.
        generator_amp: whether the generator runs under bf16 autocast on CUDA (its config's ``amp``;
            recorded only).
        bf16: bf16 autocast through the classifier on CUDA (params.yaml ``eval.bf16``); the mask
            upsampling follows ``inference.amp``.
        cpu_bf16: apply the classifier's bf16 autocast on CPU too (a measurement option).
        compile: run the classifier through ``torch.compile`` (compiled during warm-up, which must be ≥ 1).

    Returns:
        ``fps``, ``seconds`` (timed total), ``images``, ``warmup``, ``memory_gb``, ``memory_kind``,
        ``peak_rss_gb``, ``ms_generator``, ``ms_classifier``, ``ms_postprocess``, ``ms_total``,
        ``gflops_per_image``, ``compiled``,
        ``device``, ``device_type``, ``threads``, ``dtype``, ``autocast``, ``tasks``,
        ``image_size_mean`` ([H, W]) and, on CPU, ``rss_start_gb`` and ``rss_peak_scope``.
    """
    from smart.model.inference import InferenceConfig, postprocess

    device = torch.device(device)
    n_data = len(dataset)
    if isinstance(images, bool) or not isinstance(images, int) or images < 1:
        raise InputError(f"expected a positive number of timed images, got {images!r}", field="images")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise InputError(f"expected a non-negative number of warm-up images, got {warmup!r}", field="warmup")
    if images > n_data:
        raise InputError(f"{images} timed images requested but {dataset.name!r} has {n_data}", field="images")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("CUDA was requested but is not available", field="device")
    icfg = inference or InferenceConfig()
    tasks = tuple(tasks) if tasks is not None else _tasks(dataset)
    is_thing = dataset.vocab.thing_mask if "panoptic" in tasks else None
    text = model.encode_text(dataset.vocab)  # once per vocabulary (frozen text tower): not timed
    autocast = inference_autocast(device.type, bf16, cpu=cpu_bf16)
    classifier_bf16 = isinstance(autocast, torch.autocast)
    if compile and warmup < 1:
        raise InputError("torch.compile compiles on the first image: use at least one warm-up image", field="warmup")
    forward = torch.compile(model) if compile else model

    def one(i: int, times: list[float] | None, fwd: Callable = forward) -> tuple[int, int]:  # one image
        image = _image(dataset, i % n_data)  # decoding: not timed
        H, W = image.shape[:2]
        batch = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)[None]  # (1, 3, H, W) uint8
        _sync(device)
        t0 = time.perf_counter()
        x = batch.to(device).float()  # (1, 3, H, W) RGB 0-255
        props = proposals([{"image_id": i}], x)  # (1, Q, h, w)
        _sync(device)
        t1 = time.perf_counter()
        with autocast:
            out = fwd(x, props.to(device), text)  # pred_logits (1, Q, K+1), pred_masks (1, Q, h, w)
        _sync(device)
        t2 = time.perf_counter()
        postprocess(out, is_thing=is_thing, output_sizes=(H, W), tasks=tasks, cfg=icfg)
        _sync(device)
        t3 = time.perf_counter()
        if times is not None:
            times.extend((t1 - t0, t2 - t1, t3 - t2))
        return H, W

    counter = FlopCounterMode(display=False)
    with counter:  # the work of one image (untimed): generator + classifier + post-processing
        one(0, None, model)  # eager: the compiled graph is built in warm-up
    gflops = counter.get_total_flops() / 1e9
    for i in range(warmup):
        one(i, None)

    mem: dict[str, Any] = {}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        scoped = reset_peak_rss()
        rss_start = current_rss_bytes()
        maxrss_before = peak_rss_bytes()
        if rss_start is None:  # no /proc: the lifetime peak is all there is
            rss_start = maxrss_before
    times: list[float] = []
    sizes = [one(warmup + j, times) for j in range(images)]
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
        mem = {"memory_gb": peak / GB, "memory_kind": "cuda_max_allocated", "peak_rss_gb": peak_rss_bytes() / GB}
    else:
        peak = peak_rss_bytes()
        growth = peak - rss_start if scoped else peak - maxrss_before
        mem = {"memory_gb": max(growth, 0) / GB, "memory_kind": "cpu_peak_rss", "peak_rss_gb": peak / GB,
               "rss_start_gb": rss_start / GB, "rss_peak_scope": "timed_loop" if scoped else "process"}

    stages = np.asarray(times, dtype=np.float64).reshape(images, 3)  # seconds per (image, stage)
    seconds = float(stages.sum())
    param = next(model.parameters(), None)
    cuda = device.type == "cuda"
    amp_parts = [name for name, on in (("generator", generator_amp and cuda), ("classifier", classifier_bf16),
                                       ("mask upsampling", icfg.amp and cuda)) if on]
    autocast_used = f"bfloat16 ({', '.join(amp_parts)})" if amp_parts else None
    return {
        "fps": images / seconds if seconds > 0 else float("inf"),
        "seconds": seconds,
        "images": images,
        "warmup": warmup,
        **mem,
        "ms_generator": 1000.0 * float(stages[:, 0].mean()),
        "ms_classifier": 1000.0 * float(stages[:, 1].mean()),
        "ms_postprocess": 1000.0 * float(stages[:, 2].mean()),
        "ms_total": 1000.0 * seconds / images,
        "gflops_per_image": gflops,
        "device": device_name(device),
        "device_type": device.type,
        "threads": torch.get_num_threads(),
        "dtype": str(param.dtype).removeprefix("torch.") if param is not None else None,
        "autocast": autocast_used,
        "compiled": bool(compile),
        "tasks": list(tasks),
        "batch_size": 1,
        "image_size_mean": [float(np.mean([s[0] for s in sizes])), float(np.mean([s[1] for s in sizes]))],
        "torch": torch.__version__,
    }
