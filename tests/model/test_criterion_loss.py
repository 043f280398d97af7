"""Matcher and set criterion (smart/model/criterion.py; method-spec §4.9, paper Eq. 6)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from smart.model.criterion import (
    CriterionConfig,
    HungarianMatcher,
    build_criterion,
    grid_point_coords,
    point_sample,
    targets_from_panoptic,
    uncertain_point_coords,
)


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _toy():
    # 2 queries, K = 2 classes (+ void), 2×2 masks; query 0 is the obvious match of the single target
    logits = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])  # (1, 2, 3)
    masks = torch.tensor([[[[3.0, 3.0], [-3.0, -3.0]], [[-2.0, -2.0], [-2.0, -2.0]]]])  # (1, 2, 2, 2)
    target = {"labels": torch.tensor([0]), "masks": torch.tensor([[[True, True], [False, False]]])}
    return {"pred_logits": logits, "pred_masks": masks}, [target]


def test_loss_equals_hand_computed_values():
    outputs, targets = _toy()
    crit = build_criterion(CriterionConfig(num_points=None), num_classes=2)  # every pixel: exact
    losses = crit(outputs, targets)
    # CE: query 0 → class 0 (weight 1), query 1 → void (weight 0.1); PyTorch's weighted mean
    p0 = math.exp(2) / (math.exp(2) + 2)
    p1_void = math.exp(1) / (math.exp(1) + 2)
    ce = (1.0 * -math.log(p0) + 0.1 * -math.log(p1_void)) / (1.0 + 0.1)
    # BCE of query 0: every pixel has |logit| 3 on the right side
    bce = math.log(1 + math.exp(-3))
    # Dice (+1 smoothing): Σp = 2σ(3) + 2σ(-3) = 2, Σt = 2, Σpt = 2σ(3)
    dice = 1 - (2 * 2 * _sig(3) + 1) / (2 + 2 + 1)
    assert losses["loss_ce"].item() == pytest.approx(ce, rel=1e-5)
    assert losses["loss_mask"].item() == pytest.approx(bce, rel=1e-5)
    assert losses["loss_dice"].item() == pytest.approx(dice, rel=1e-5)
    assert losses["loss"].item() == pytest.approx(2 * ce + 5 * bce + 5 * dice, rel=1e-5)


def test_matcher_cost_matrix_by_hand():
    outputs, targets = _toy()
    C = HungarianMatcher(num_points=None).cost_matrix(outputs["pred_logits"][0], outputs["pred_masks"][0],
                                                       targets[0])
    p = torch.softmax(outputs["pred_logits"][0], -1)[:, 0]
    # query 1: logit -2 everywhere; BCE mean = (2·log(1+e^2) + 2·log(1+e^-2)) / 4
    bce1 = (2 * math.log(1 + math.exp(2)) + 2 * math.log(1 + math.exp(-2))) / 4
    dice1 = 1 - (2 * 2 * _sig(-2) + 1) / (4 * _sig(-2) + 2 + 1)
    bce0 = math.log(1 + math.exp(-3))
    dice0 = 1 - (4 * _sig(3) + 1) / 5
    expect = [-2 * p[0].item() + 5 * bce0 + 5 * dice0, -2 * p[1].item() + 5 * bce1 + 5 * dice1]
    assert C[:, 0].tolist() == pytest.approx(expect, rel=1e-5)


def test_matching_picks_the_obvious_assignment():
    H = W = 8
    t = torch.zeros(2, H, W, dtype=torch.bool)
    t[0, :4] = True  # top half, class 1
    t[1, 4:] = True  # bottom half, class 0
    masks = torch.full((1, 3, H, W), -8.0)
    masks[0, 2, :4] = 8.0  # query 2 ≈ target 0
    masks[0, 0, 4:] = 8.0  # query 0 ≈ target 1
    logits = torch.zeros(1, 3, 3)
    logits[0, 2, 1] = logits[0, 0, 0] = 5.0
    logits[0, 1, 2] = 5.0  # query 1: void
    out = {"pred_logits": logits, "pred_masks": masks}
    targets = [{"labels": torch.tensor([1, 0]), "masks": t}]
    for n in (None, 256):
        (src, tgt), = HungarianMatcher(num_points=n)(out, targets, generator=torch.Generator().manual_seed(0))
        assert dict(zip(src.tolist(), tgt.tolist())) == {0: 1, 2: 0}


def test_image_without_targets_has_only_the_void_ce_term():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 6, requires_grad=True)
    masks = torch.randn(2, 4, 5, 5, requires_grad=True)
    targets = [{"labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, 10, 10, dtype=torch.bool)}] * 2
    crit = build_criterion(None, num_classes=5)
    losses = crit({"pred_logits": logits, "pred_masks": masks}, targets)
    assert losses["loss_mask"].item() == 0.0 and losses["loss_dice"].item() == 0.0
    expect = -F.log_softmax(logits, -1)[..., -1].mean()  # all weights 0.1 → a plain mean
    assert losses["loss_ce"].item() == pytest.approx(expect.item(), rel=1e-6)
    losses["loss"].backward()
    assert logits.grad is not None and masks.grad is not None


def test_mixed_batch_and_seeded_sampling_is_reproducible():
    torch.manual_seed(1)
    logits = torch.randn(2, 5, 4, requires_grad=True)
    masks = torch.randn(2, 5, 12, 12, requires_grad=True)
    t0 = {"labels": torch.tensor([0, 2]), "masks": torch.rand(2, 48, 48) > 0.5}
    t1 = {"labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, 48, 48, dtype=torch.bool)}
    crit = build_criterion({"num_points": 64}, num_classes=3)
    out = {"pred_logits": logits, "pred_masks": masks}
    a = crit(out, [t0, t1], generator=torch.Generator().manual_seed(3))
    b = crit(out, [t0, t1], generator=torch.Generator().manual_seed(3))
    for k in a:
        assert torch.isfinite(a[k]) and a[k].item() == b[k].item()
    a["loss"].backward()
    assert masks.grad[1].abs().sum() == 0 and masks.grad[0].abs().sum() > 0  # image 1 has no matched mask


def test_criterion_matches_transformers_mask2former_loss():
    """Same global RNG stream, batch of one: identical to transformers' port of M2F's criterion."""
    from transformers import Mask2FormerConfig
    from transformers.models.mask2former.modeling_mask2former import Mask2FormerLoss

    torch.manual_seed(0)
    K, Q = 4, 6
    logits = torch.randn(1, Q, K + 1)
    masks = torch.randn(1, Q, 16, 16) * 3
    tmasks = torch.rand(3, 64, 64) > 0.5
    labels = torch.tensor([1, 3, 1])
    hf = Mask2FormerLoss(Mask2FormerConfig(num_labels=K, train_num_points=50),
                         weight_dict={"loss_cross_entropy": 2.0, "loss_mask": 5.0, "loss_dice": 5.0})
    torch.manual_seed(5)
    ref = hf(masks, logits, [tmasks.float()], [labels])
    torch.manual_seed(5)
    ours = build_criterion(CriterionConfig(num_points=50), num_classes=K)(
        {"pred_logits": logits, "pred_masks": masks}, [{"labels": labels, "masks": tmasks}])
    assert ours["loss_ce"].item() == pytest.approx(ref["loss_cross_entropy"].item(), rel=1e-6)
    assert ours["loss_mask"].item() == pytest.approx(ref["loss_mask"].item(), rel=1e-5)
    assert ours["loss_dice"].item() == pytest.approx(ref["loss_dice"].item(), rel=1e-5)


def test_point_sampling_helpers():
    m = torch.arange(12.0).view(1, 3, 4)  # (1, 3, 4)
    vals = point_sample(m, grid_point_coords(3, 4))
    assert vals[0].tolist() == pytest.approx(list(range(12)), abs=1e-5)  # pixel centres are exact
    logits = torch.randn(2, 10, 10)
    c = uncertain_point_coords(logits, num_points=20, oversample_ratio=3, importance_sample_ratio=0.75,
                               generator=torch.Generator().manual_seed(0))
    assert c.shape == (2, 20, 2) and c.min() >= 0 and c.max() <= 1


def test_targets_from_panoptic_drops_crowd():
    ids = np.array([[0, 1, 1], [2, 2, 3]])
    segs = [{"id": 1, "train_id": 4, "iscrowd": 0}, {"id": 2, "train_id": 0, "iscrowd": 1},
            {"id": 3, "train_id": 2, "iscrowd": 0}]
    t = targets_from_panoptic(ids, segs)
    assert t["labels"].tolist() == [4, 2]
    assert t["masks"].dtype == torch.bool and t["masks"].shape == (2, 2, 3)
    assert t["masks"][0].tolist() == [[False, True, True], [False, False, False]]
    assert len(targets_from_panoptic(ids, segs, include_crowd=True)["labels"]) == 3
    empty = targets_from_panoptic(ids, [])
    assert empty["masks"].shape == (0, 2, 3) and empty["labels"].dtype == torch.int64


def test_bad_labels_are_rejected():
    outputs, targets = _toy()
    targets[0]["labels"] = torch.tensor([2])  # = K: the void index is not a valid target
    with pytest.raises(ValueError, match="labels must lie"):
        build_criterion(None, num_classes=2)(outputs, targets)
