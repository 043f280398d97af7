"""The inference precision switch (params.yaml ``eval.bf16``, smart.utils.perf.inference_autocast) and
torch.compile of the classifier, on the tiny random-init model (CPU)."""

import pytest
import torch

from smart.utils.perf import inference_autocast


@pytest.fixture(scope="module")
def tiny():
    from smart.model.config import get_preset
    from smart.model.smart import build_model

    torch.manual_seed(0)
    model = build_model(get_preset("tiny-test")).eval()
    g = torch.Generator().manual_seed(1)
    images = torch.rand(2, 3, 64, 64, generator=g) * 255  # (B, 3, H, W)
    props = torch.randn(2, 12, 16, 16, generator=g) * 4  # (B, Q, h, w)
    text = model.encode_text([["red thing"], ["blue thing"], ["green ground"], ["grey stone"]])
    return model, images, props, text


def test_cpu_stays_fp32_unless_asked(tiny):
    model, images, props, text = tiny
    with torch.no_grad():
        ref = model(images, props, text)
        with inference_autocast("cpu", True):  # the DAG's setting on a CPU: no change at all
            same = model(images, props, text)
    assert ref["pred_logits"].dtype == torch.float32
    assert torch.equal(ref["pred_logits"], same["pred_logits"]) and torch.equal(ref["pred_masks"], same["pred_masks"])
    assert isinstance(inference_autocast("cuda", False), type(inference_autocast("cpu", True)))  # off: no autocast


def test_bf16_through_the_classifier_matches_fp32(tiny):
    """Every stream (CLIP tower with mask tokens, SMA, DA, heads) runs in bf16 and lands near fp32."""
    from smart.model.inference import postprocess

    model, images, props, text = tiny
    with torch.no_grad():
        ref = model(images, props, text)
        with inference_autocast("cpu", True, cpu=True):
            out = model(images, props, text)
    assert out["pred_logits"].dtype == torch.bfloat16  # the classifier's matmuls ran in bf16
    a, b = ref["pred_logits"].softmax(-1), out["pred_logits"].float().softmax(-1)
    assert (a - b).abs().max() < 0.05  # bf16 keeps ~3 significant digits
    assert (a.argmax(-1) == b.argmax(-1)).float().mean() >= 0.9
    res = postprocess(out, is_thing=[True, True, False, False], output_sizes=(64, 64), tasks=("semantic", "panoptic"))
    assert res[0]["sem_label"].shape == (64, 64)  # post-processing takes bf16 logits (it computes in fp32)


@pytest.mark.extended
@pytest.mark.paper
def test_compiled_classifier_gives_the_eager_outputs(tiny):
    """``python -m smart benchmark --compile``: torch.compile of the SMART forward (inductor, CPU here)."""
    model, images, props, text = tiny
    compiled = torch.compile(model)
    with torch.no_grad():
        ref = model(images, props, text)
        out = compiled(images, props, text)
    torch.testing.assert_close(out["pred_logits"], ref["pred_logits"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out["pred_masks"], ref["pred_masks"], rtol=1e-4, atol=1e-4)
