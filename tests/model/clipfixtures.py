"""Shared helpers of the CLIP-side model tests (tiny random-init CLIPs; nothing is downloaded)."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

VOCAB = [["cat", "kitty"], ["dog"], ["sky", "heaven", "air"], ["grass"]]


@pytest.fixture(autouse=True)
def single_thread():
    """Tiny-model ops are ~50x slower with 2 intra-op threads on a shared 2-core machine (spin-waiting
    OpenMP workers); one thread is fastest for these sizes. Restored after each test."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def full_masks(B: int, Q: int, size: int) -> torch.Tensor:
    """Mask logits covering every pixel (every patch visible)."""
    return torch.full((B, Q, size, size), 10.0)


def random_masks(B: int, Q: int, size: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, Q, size, size, generator=g) * 4
