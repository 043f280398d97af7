"""CLIP mask classifier invariants (method-spec.md §4.14) on tiny random-init open_clip models."""

from __future__ import annotations

import copy

import pytest
import torch
from clipfixtures import full_masks, random_masks, single_thread  # noqa: F401 (autouse)

from smart.errors import ConfigError
from smart.model.clip_classifier import (
    ClipMaskClassifier,
    SplitMultiheadAttention,
    UnsupportedTowerError,
    build_mask_attention,
    create_clip,
    resize_pos_embed,
)
from smart.model.sma import TaskInformationExtraction


def _clip(name="smart-tiny-vit", seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return create_clip(name).to(dtype).eval()


def test_split_attention_reproduces_packed_mha():
    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(64, 4, batch_first=True).double().eval()
    with torch.no_grad():
        mha.in_proj_bias.normal_()  # non-zero biases so their split is tested too
        mha.out_proj.bias.normal_()
    split = SplitMultiheadAttention.from_packed(mha)
    x = torch.randn(3, 11, 64, dtype=torch.float64)
    causal = torch.full((11, 11), float("-inf"), dtype=torch.float64).triu(1)
    for mask in (None, causal):
        ref = mha(x, x, x, need_weights=False, attn_mask=mask)[0]
        out = split(x, x, x, need_weights=False, attn_mask=mask)[0]
        torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    # the weights are copies of the packed rows
    D = 64
    assert torch.equal(split.q_proj.weight, mha.in_proj_weight[:D])
    assert torch.equal(split.k_proj.weight, mha.in_proj_weight[D:2 * D])
    assert torch.equal(split.v_proj.weight, mha.in_proj_weight[2 * D:])
    assert torch.equal(split.v_proj.bias, mha.in_proj_bias[2 * D:])


def test_image_stream_reproduces_open_clip_encode_image():
    clip = _clip()
    ref_clip = copy.deepcopy(clip)  # packed q/k/v, untouched
    clf = ClipMaskClassifier(clip=clip, image_size=32)
    images = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        ref = ref_clip.encode_image(images)
        torch.testing.assert_close(clf.encode_image(images), ref, rtol=1e-10, atol=1e-10)
        # open_clip's own forward still works on the split model (drop-in attention)
        torch.testing.assert_close(clip.encode_image(images), ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", ["smart-tiny-vit", "smart-tiny-eva"])
def test_mask_tokens_equal_encode_image_with_full_masks_and_cls(name):
    """SMA off, no tuning, DA identity, masks covering every patch, mask tokens see CLS:
    every mask token's final embedding equals CLIP's pooled image embedding."""
    clip = _clip(name)
    ref_clip = copy.deepcopy(clip)
    clf = ClipMaskClassifier(clip=clip, image_size=32, mask_attend_cls=True)
    images = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        ref = ref_clip.encode_image(images)  # (B, E)
        _, xm, mask = clf.forward_tokens(images, full_masks(2, 5, 8).double())
        z = clf.tower.head(xm)  # (B, Q, E)
    assert z.shape == (2, 5, ref.shape[-1])
    torch.testing.assert_close(z, ref[:, None].expand_as(z), rtol=1e-9, atol=1e-9)
    assert not mask.empty.any()


def test_image_tokens_unchanged_by_mask_tokens():
    clip = _clip()
    clf = ClipMaskClassifier(clip=clip, image_size=32)
    images = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        x1, _, _ = clf.forward_tokens(images, random_masks(1, 3, 8).double())
        x2, _, _ = clf.forward_tokens(images, random_masks(1, 7, 8, seed=1).double())
        ref = clf.tower.head(x1[:, 0])
        torch.testing.assert_close(clf.encode_image(images), ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(x1, x2, rtol=0, atol=0)


def test_patches_only_default_is_finite_and_differs():
    clip = _clip()
    clf = ClipMaskClassifier(clip=clip, image_size=32)
    with torch.no_grad():
        z = clf(torch.randn(2, 3, 32, 32, dtype=torch.float64), random_masks(2, 4, 8).double())
    assert z.shape == (2, 4, 32) and torch.isfinite(z).all()


def test_eq5_single_pixel_unblocks_exactly_its_patch():
    # 32x32 input, patch 8 -> 4x4 grid; one pixel at (13, 27) lies in patch (1, 3) = index 7
    logits = torch.full((1, 2, 32, 32), -10.0)
    logits[0, 0, 13, 27] = 10.0
    logits[0, 1, 0, 0] = 10.0  # a corner pixel -> patch 0
    m = build_mask_attention(logits, image_hw=(32, 32), patch_size=8)
    assert m.bias.shape == (1, 2, 16) and m.bias.dtype == torch.float32
    assert m.visible[0, 0].nonzero().flatten().tolist() == [7]
    assert m.visible[0, 1].nonzero().flatten().tolist() == [0]
    assert (m.bias[0, 0] == 0).sum() == 1 and torch.isinf(m.bias[0, 0]).sum() == 15
    assert set(m.bias.unique().tolist()) == {0.0, float("-inf")}
    # lower-resolution proposals are upsampled bilinearly first (h/4 of the input here)
    low = torch.full((1, 1, 8, 8), -10.0)
    low[0, 0, 3, 6] = 10.0
    vis = build_mask_attention(low, image_hw=(32, 32), patch_size=8).visible[0, 0]
    assert vis.any() and vis.sum() <= 4
    assert vis.view(4, 4)[1:3, 2:4].any()


@pytest.mark.parametrize("guard", ["argmax", "cls"])
def test_empty_mask_guard_no_nan(guard):
    clip = _clip()
    clf = ClipMaskClassifier(clip=clip, image_size=32, empty_mask_guard=guard,
                             tie=TaskInformationExtraction(width=64, text_dim=32, dim=8).double())
    masks = random_masks(2, 3, 8).double()
    masks[0, 1] = -20.0  # an all-zero proposal
    masks[0, 1, 2, 5] = -5.0  # still empty, but with a best patch
    tgt = torch.nn.functional.normalize(torch.randn(4, 32, dtype=torch.float64), dim=-1)
    with torch.no_grad():
        m = clf.build_attention_mask(masks)
        z = clf(torch.randn(2, 3, 32, 32, dtype=torch.float64), masks, tgt)
    assert m.empty[0, 1] and m.empty.sum() == 1
    assert torch.isfinite(z).all()
    if guard == "argmax":
        # the patch holding the highest logit (pixel (2, 5) at 8x8 -> (8..11, 20..23) at 32 -> patch (1, 2) = 6)
        assert m.visible[0, 1].nonzero().flatten().tolist() == [6]
        assert not m.with_cls
    else:
        assert m.with_cls and m.bias[0, 1, 0] == 0 and torch.isinf(m.bias[0, 1, 1:]).all()
        assert torch.isinf(m.bias[0, 0, 0])  # non-empty rows do not see CLS


def test_pos_embed_resize_identity_and_shape():
    torch.manual_seed(0)
    pos = torch.randn(1 + 16, 8)
    assert resize_pos_embed(pos, (4, 4)) is pos  # native size: identity
    big = resize_pos_embed(pos, (7, 7))
    assert big.shape == (1 + 49, 8)
    assert torch.equal(big[0], pos[0])  # CLS row kept
    const = torch.ones(1 + 16, 8)
    torch.testing.assert_close(resize_pos_embed(const, (6, 6)), torch.ones(37, 8))  # bilinear preserves constants
    # bilinear (align_corners=False), not open_clip's bicubic
    ref = torch.nn.functional.interpolate(pos[1:].reshape(1, 4, 4, 8).permute(0, 3, 1, 2), size=(7, 7),
                                          mode="bilinear", align_corners=False).permute(0, 2, 3, 1).reshape(49, 8)
    torch.testing.assert_close(big[1:], ref)


def test_classifier_resizes_pos_embed_to_image_size():
    clip = _clip(dtype=torch.float32)
    clf = ClipMaskClassifier(clip=clip, image_size=56)
    assert clf.tower.grid == (7, 7)
    assert clip.visual.positional_embedding.shape == (1 + 49, 64)
    z = clf(torch.randn(1, 3, 56, 56), random_masks(1, 2, 14))
    assert z.shape == (1, 2, 32)
    with pytest.raises(ConfigError):
        ClipMaskClassifier(clip=_clip(dtype=torch.float32), image_size=60)  # not a multiple of 8


def test_paper_clip_towers_wrap_on_meta():
    for name, width, grid in (("ViT-L-14-336-quickgelu", 1024, 64), ("ViT-B-16-quickgelu", 768, 56)):
        clf = ClipMaskClassifier(clip=create_clip(name, device="meta"), image_size=896)
        assert clf.width == width and clf.tower.grid == (grid, grid)
        assert clf.tower.visual.positional_embedding.shape == (1 + grid * grid, width)
    eva = ClipMaskClassifier(clip=create_clip("EVA01-g-14-plus", device="meta"), image_size=896)
    assert eva.width == 1408 and eva.embed_dim == 1024 and len(eva.tower.blocks) == 40
    assert eva.tower.trunk.pos_embed.shape == (1, 1 + 64 * 64, 1408)
    assert eva.tower.blocks[0].attn.k_proj.bias is None  # EVA has no key bias


def test_unsupported_tower_raises_clear_error():
    from open_clip.transformer import VisionTransformer

    class Fake(torch.nn.Module):
        pass

    with pytest.raises(UnsupportedTowerError, match="not supported"):
        from smart.model.clip_classifier import wrap_visual_tower
        wrap_visual_tower(Fake())
    vit = VisionTransformer(image_size=32, patch_size=8, width=64, layers=1, heads=2, mlp_ratio=4.0,
                            output_dim=32, pool_type="avg")
    with pytest.raises(UnsupportedTowerError, match="pooling"):
        from smart.model.clip_classifier import wrap_visual_tower
        wrap_visual_tower(vit)
