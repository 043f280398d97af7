"""Checkpoints of the SMART trainer: atomic writes, exact resume, and the small final weight file.

Two kinds of file (``docs/pipeline.md`` §2.4: "periodic ``last.pt`` in an undeclared scratch path,
declared outputs written atomically at the end"):

* **``last.pt``** (scratch, rewritten every ``checkpoint_period`` iterations): everything an exact
  resume needs — the trainable parameters, the AdamW state, the LR scheduler, the iteration, the data
  sampler's position, the RNG states of every rank (python ``random``, numpy, torch CPU, CUDA) and the
  run *fingerprint* (resolved model + training config, data, proposal source, frozen-weight checksum).
  A resume refuses a checkpoint whose fingerprint differs instead of silently mixing two runs.
* **``model.pt``** (declared output): only the trainable state (the QPT'd ``q_proj`` weights, SMA,
  Distribution Adapter, void embedding, …; tens of MB on ViT-L instead of 1.7 GB) plus the resolved
  configs. :func:`load_trained` rebuilds the full model from it: the frozen parts come from the
  config (pretrained weights, or the seeded random init of the mini/test CLIPs).

Every write goes to a temporary file in the same directory, is fsync'ed and renamed over the target,
so an interrupted job never leaves a truncated checkpoint. Files load with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from smart.errors import InputError

_log = logging.getLogger(__name__)

__all__ = [
    "CHECKPOINT_FORMAT",
    "MODEL_FORMAT",
    "atomic_save",
    "fingerprint_diff",
    "frozen_checksum",
    "get_rng_state",
    "load_checkpoint",
    "load_trained",
    "set_rng_state",
    "trainable_state_dict",
]

CHECKPOINT_FORMAT = "smart-train-checkpoint-v1"
MODEL_FORMAT = "smart-trainable-v1"


# ------------------------------------------------------------------------------------------ writing
def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file next to ``path``, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ------------------------------------------------------------------------------------------ state
def trainable_state_dict(module: nn.Module, *, prefix: str = "") -> dict[str, torch.Tensor]:
    """{name: CPU copy} of the parameters that require grad (the only state training changes)."""
    return {prefix + n: p.detach().to("cpu", copy=True) for n, p in module.named_parameters() if p.requires_grad}


def load_trainable_state(module: nn.Module, state: Mapping[str, torch.Tensor], *, prefix: str = "",
                         source: str | Path | None = None) -> None:
    """Copy ``state`` into the trainable parameters of ``module``; the key sets must match exactly."""
    params = {prefix + n: p for n, p in module.named_parameters() if p.requires_grad}
    wanted = {k for k in state if k.startswith(prefix)} if prefix else set(state)
    missing, unexpected = sorted(set(params) - wanted), sorted(wanted - set(params))
    if missing or unexpected:
        raise InputError(f"trainable parameters do not match the model (missing {missing[:3]}, unexpected "
                         f"{unexpected[:3]}): the file was written for another configuration", path=source)
    with torch.no_grad():
        for k, p in params.items():
            v = state[k]
            if v.shape != p.shape:
                raise InputError(f"parameter {k} has shape {tuple(v.shape)}, the model {tuple(p.shape)}", path=source)
            p.copy_(v.to(p.device, p.dtype))


def state_sha256(*states: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over (name, dtype, shape, bytes) of every tensor of ``states``, in name order: what
    ``model.pt`` records of its trained weights when written and checks when loaded (one flipped bit in a
    tensor changes it; torch's own reader does not notice)."""
    h = hashlib.sha256()
    for i, state in enumerate(states):
        for k in sorted(state):
            v = state[k].detach().to("cpu").contiguous()
            h.update(f"{i}:{k}:{v.dtype}:{tuple(v.shape)}:".encode())
            h.update(v.view(torch.uint8).numpy().tobytes() if v.numel() else b"")
    return h.hexdigest()


def frozen_checksum(*modules: nn.Module | None) -> str:
    """A cheap identity of the frozen weights: sha256 over (name, shape, float64 sum, abs-sum) per frozen
    parameter. A resume with different frozen weights (another CLIP file, another random init) fails."""
    h = hashlib.sha256()
    for m_i, module in enumerate(modules):
        if module is None:
            continue
        with torch.no_grad():
            for n, p in module.named_parameters():
                if p.requires_grad or p.device.type == "meta":
                    continue
                x = p.detach().to("cpu", torch.float64)  # device-independent sums
                h.update(f"{m_i}:{n}:{tuple(p.shape)}:{x.sum().item():.10e}:{x.abs().sum().item():.10e}".encode())
    return h.hexdigest()[:16]


def get_rng_state() -> dict[str, Any]:
    """python ``random``, numpy (legacy global), torch CPU and (when present) every CUDA device."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]), int(np_state[3]),
                  float(np_state[4])),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    random.setstate(_as_tuple(state["python"]))
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.int64).astype(np.uint32), int(pos), int(has_gauss),
                         float(gauss)))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available():
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        else:
            _log.warning("checkpoint holds %d CUDA RNG states, this machine has %d devices: CUDA RNG not restored",
                         len(cuda), torch.cuda.device_count())


def _as_tuple(x):
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


# ------------------------------------------------------------------------------------------ fingerprints
def fingerprint_diff(saved: Mapping[str, Any], current: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two (nested) fingerprints."""
    out = []
    for k in sorted(set(saved) | set(current), key=str):
        a, b = saved.get(k, "<absent>"), current.get(k, "<absent>")
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += fingerprint_diff(a, b, f"{prefix}{k}.")
        elif _canon(a) != _canon(b):
            out.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return out


def _canon(x):
    return json.dumps(x, sort_keys=True, default=str)


# ------------------------------------------------------------------------------------------ loading
def load_checkpoint(path: str | Path, *, fingerprint: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Read a ``last.pt``; with ``fingerprint``, refuse (``InputError``) one written by another run."""
    path = Path(path)
    if not path.is_file():
        raise InputError("resume checkpoint not found", path=path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated / foreign file
        raise InputError(f"cannot read checkpoint ({type(exc).__name__}: {exc})", path=path) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"not a SMART training checkpoint (expected format {CHECKPOINT_FORMAT!r})", path=path)
    if fingerprint is not None:
        diff = fingerprint_diff(ckpt["fingerprint"], fingerprint)
        if diff:
            raise InputError("refusing to resume: the checkpoint was written by a run with a different "
                             "configuration (" + "; ".join(diff[:8]) + (" ..." if len(diff) > 8 else "") +
                             "). Delete it or pass --resume never to start afresh.", path=path, field="resume")
    return ckpt


def load_trained(path: str | Path, *, device: str | torch.device | None = None,
                 text_cache_dir: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a trained :class:`~smart.model.smart.SmartModel` from ``model.pt``.

    The frozen parts are rebuilt from the stored model config under the stored seed (so the random
    init of the mini/test CLIPs is reproduced), then the trainable state is loaded.

    Returns:
        (model in eval mode, the file's metadata: ``model_config``, ``train_config``, ``iteration``,
        ``generator_state`` (a tuned generator's parameters, or empty), ``source``, …).
    """
    from smart.model.smart import build_model

    path = Path(path)
    if not path.is_file():
        raise InputError("trained model file not found", path=path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, not a torch file, pickled objects
        raise InputError(f"cannot read the trained-model file (truncated or not written by `python -m smart "
                         f"train`: {type(exc).__name__}: {str(exc).splitlines()[0][:200]})", path=path) from None
    if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
        raise InputError(f"not a SMART trained-model file (expected format {MODEL_FORMAT!r})", path=path)
    missing = [k for k in ("model_config", "trainable_state", "seed") if k not in data]
    if missing:
        raise InputError(f"the trained-model file lacks {missing}", path=path)
    if data.get("weights_sha256"):  # recorded when written (files of older versions have none)
        got = state_sha256(data["trainable_state"], data.get("generator_state") or {})
        if got != data["weights_sha256"]:
            raise InputError(f"its trained weights changed since they were written (SHA-256 {got[:12]}…, recorded "
                             f"{data['weights_sha256'][:12]}…): the file is corrupted; retrain the cell (e.g. "
                             f"`snakemake --cores all --forcerun <its train rule>`) or restore it", path=path,
                             field="weights_sha256")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(data["seed"]))
        try:
            model = build_model(data["model_config"], text_cache_dir=text_cache_dir)
        except (TypeError, KeyError) as exc:
            raise InputError(f"its model config cannot be built ({exc})", path=path, field="model_config") from None
    if data.get("frozen_checksum") and frozen_checksum(model) != data["frozen_checksum"]:
        _log.warning("%s: the rebuilt frozen weights differ from the training run's (checksum %s != %s)",
                     path, frozen_checksum(model), data["frozen_checksum"])
    load_trainable_state(model, data["trainable_state"], source=path)
    if device is not None:
        model.to(device)
    model.eval()
    meta = {k: v for k, v in data.items() if k != "trainable_state"}
    return model, meta
