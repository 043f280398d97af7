"""Small performance helpers shared by the trainers (each one measured where it is used)."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext


def attention_backend(device_type: str) -> AbstractContextManager:
    """The scaled-dot-product-attention backend for a training loop on ``device_type``.

    On CPUs the math path (softmax(QKᵀ/√d)·V composed of batched matmuls) is used. At short sequences
    and narrow heads PyTorch's CPU flash-attention kernel is much slower in the backward pass: for the
    mini CLIP (65 image / 32 text tokens, head width 64, batch 128, one thread) a training step took
    0.74 s with it and 0.51 s with the math path (bf16 autocast). On GPUs PyTorch's own choice stands.
    """
    if device_type != "cpu":
        return nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.MATH)


def inference_autocast(device_type: str, enabled: bool = True, *, cpu: bool = False) -> AbstractContextManager:
    """bf16 autocast for the SMART forward at inference (the CLIP classifier: both streams and the heads).

    On CUDA with ``enabled`` every matmul, convolution and attention of the classifier runs in bfloat16
    (fp32 accumulation); softmax, layer norms and the losses stay in float32 under autocast's rules, and
    post-processing casts the logits back to float32. On CPU nothing changes unless ``cpu=True``
    (benchmarks and tests): the mini profile's CPU results stay fp32 and byte-reproducible.

    Args:
        device_type: ``"cuda"`` or ``"cpu"`` (``torch.device.type``).
        enabled: the run's ``bf16`` setting (params.yaml ``eval.bf16``, ``predict --fp32``).
        cpu: apply autocast on CPU as well (CPUs with avx512_bf16 / AMX run it 2x faster at 448-896 px).
    """
    if not enabled or (device_type == "cpu" and not cpu) or device_type not in ("cuda", "cpu"):
        return nullcontext()
    import torch

    return torch.autocast(device_type=device_type, dtype=torch.bfloat16)
