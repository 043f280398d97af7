"""Semantic metrics: detectron2 SemSegEvaluator (HEAD and v0.6 mIoU), evaluation.md §2."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from smart.errors import InputError
from smart.eval.io import read_label_map, write_label_png, write_metrics_json
from smart.eval.semantic import SemSegAccumulator, confusion_matrix, evaluate_semantic_files, semseg_metrics

# 3-class toy (evaluation.md §2.6): class 2 is predicted but absent from the GT; 2 ignore pixels.
TOY_GT = np.array([[0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 255, 255]], dtype=np.uint8)
TOY_PRED = np.array([[0, 0, 0, 0, 0, 1], [1, 1, 2, 2, 2, 0]], dtype=np.uint8)


def test_toy_both_miou_definitions():
    acc = SemSegAccumulator(3, 255, class_names=["a", "b", "c"])
    acc.add(TOY_GT, TOY_PRED, image="toy")
    r = acc.summary()
    # tp = [5, 2, 0], pos_gt = [6, 4, 0], pos_pred = [5, 3, 2]  (ignore pixels dropped)
    iou0, iou1 = 5 / 6, 2 / 5
    assert r["per_class"][0]["IoU"] == pytest.approx(100 * iou0, rel=1e-15)
    assert r["per_class"][1]["IoU"] == pytest.approx(100 * iou1, rel=1e-15)
    assert np.isnan(r["per_class"][2]["IoU"]) and np.isnan(r["per_class"][2]["ACC"])
    assert r["mIoU"] == pytest.approx(100 * (iou0 + iou1) / 2, rel=1e-14)  # GT-present classes: 2
    assert r["mIoU_d2v06"] == pytest.approx(100 * (iou0 + iou1) / 3, rel=1e-14)  # GT or predicted: 3
    assert r["fwIoU"] == pytest.approx(100 * (iou0 * 0.6 + iou1 * 0.4), rel=1e-14)
    assert r["mACC"] == pytest.approx(100 * (5 / 6 + 2 / 4) / 2, rel=1e-14)
    assert r["pACC"] == pytest.approx(70.0, rel=1e-14)
    assert (r["num_classes_with_gt"], r["num_classes_gt_or_pred"]) == (2, 3)
    assert r["per_class"][1]["name"] == "b" and r["per_class"][0]["pos_pred"] == 5
    assert "f3c1bc19" in r["definitions"]["mIoU"] and "v0.6" in r["definitions"]["mIoU_d2v06"]
    assert r["definitions"]["boundary_iou"] == "not computed"


def test_ignore_pixels_do_not_count_anywhere():
    base = SemSegAccumulator(3, 255)
    base.add(TOY_GT, TOY_PRED)
    other = TOY_PRED.copy()
    other[1, 4:] = [1, 1]  # change the predictions on the ignore pixels only
    alt = SemSegAccumulator(3, 255)
    alt.add(TOY_GT, other)
    for k in ("mIoU", "mIoU_d2v06", "fwIoU", "mACC", "pACC"):
        assert base.summary()[k] == alt.summary()[k]


def test_definitions_agree_without_predicted_absent_class():
    gt = np.array([[0, 1, 2, 2]])
    pred = np.array([[0, 2, 2, 1]])
    r = semseg_metrics(confusion_matrix(gt, pred, 3, 255))
    assert r["mIoU"] == r["mIoU_d2v06"]


def test_confusion_matrix_layout_is_pred_by_gt():
    conf = confusion_matrix(np.array([[0, 255]]), np.array([[1, 2]]), 3, 255)
    assert conf.shape == (4, 4) and conf.dtype == np.int64
    assert conf[1, 0] == 1 and conf[2, 3] == 1 and conf.sum() == 2


def _reference(gts, preds, k, ignore):
    """Independent per-class loop (no confusion matrix) for the detectron2 HEAD / v0.6 formulas."""
    tp = np.zeros(k)
    pos_gt = np.zeros(k)
    pos_pred = np.zeros(k)
    for g, p in zip(gts, preds):
        valid = g != ignore
        for c in range(k):
            gc, pc = (g == c) & valid, (p == c) & valid
            tp[c] += np.count_nonzero(gc & pc)
            pos_gt[c] += np.count_nonzero(gc)
            pos_pred[c] += np.count_nonzero(pc)
    present = pos_gt > 0
    iou = tp[present] / (pos_gt + pos_pred - tp)[present]
    return {"mIoU": 100 * iou.mean(), "mIoU_d2v06": 100 * iou.sum() / np.count_nonzero(pos_gt + pos_pred),
            "fwIoU": 100 * np.sum(iou * pos_gt[present] / pos_gt.sum()),
            "mACC": 100 * np.mean(tp[present] / pos_gt[present]), "pACC": 100 * tp.sum() / pos_gt.sum()}


@pytest.mark.parametrize("k, ignore, dtype", [(150, 255, np.uint8), (847, 65535, np.uint16),
                                              (65, 65, np.uint8), (459, 65535, np.uint16)])
def test_matches_independent_reference(k, ignore, dtype):
    rng = np.random.default_rng(k)
    gts, preds = [], []
    acc = SemSegAccumulator(k, ignore)
    for i in range(3):
        g = rng.integers(0, k, size=(40, 57)).astype(dtype)
        g[rng.random(g.shape) < 0.1] = ignore
        g[g % 7 == 3] = ignore  # some classes absent from the GT (but predicted)
        p = np.where(rng.random(g.shape) < 0.6, np.where(g == ignore, 0, g), rng.integers(0, k, size=g.shape))
        p = p.astype(dtype)
        gts.append(g)
        preds.append(p)
        acc.add(g, p, image=i)
    r = acc.summary()
    ref = _reference(gts, preds, k, ignore)
    for key, v in ref.items():
        assert r[key] == pytest.approx(v, rel=1e-12), key
    assert r["num_classes"] == k
    assert r["mIoU_d2v06"] < r["mIoU"]  # predicted-but-absent classes count as 0 only in v0.6


def test_16bit_tiff_and_png_label_maps(tmp_path):
    labels = np.array([[0, 300, 846], [65535, 12, 500]], dtype=np.uint16)
    Image.fromarray(labels).save(tmp_path / "a.tif")
    assert read_label_map(tmp_path / "a.tif").tolist() == labels.tolist()
    write_label_png(tmp_path / "b.png", labels)
    assert read_label_map(tmp_path / "b.png").tolist() == labels.tolist()
    assert Image.open(tmp_path / "b.png").mode.startswith("I")
    small = np.array([[0, 149, 7]])
    write_label_png(tmp_path / "c.png", small, num_classes=150)
    assert Image.open(tmp_path / "c.png").mode == "L"
    assert read_label_map(tmp_path / "c.png").tolist() == small.tolist()


def test_palette_png_gives_indices(tmp_path):
    im = Image.fromarray(np.array([[0, 1], [2, 255]], dtype=np.uint8), mode="L").convert("P")
    im.putpalette([v for i in range(256) for v in (i, 255 - i, 0)])
    im.save(tmp_path / "p.png")
    assert read_label_map(tmp_path / "p.png").tolist() == [[0, 1], [2, 255]]


def _write_pairs(tmp_path, pairs, ext_gt=".png", ext_pred=".png"):
    for name, g, p in pairs:
        for d, a, ext in (("gt", g, ext_gt), ("pred", p, ext_pred)):
            path = tmp_path / d / f"{name}{ext}"
            path.parent.mkdir(parents=True, exist_ok=True)
            if ext == ".tif":
                Image.fromarray(np.asarray(a, dtype=np.uint16)).save(path)
            else:
                write_label_png(path, np.asarray(a))
    return tmp_path / "gt", tmp_path / "pred"


@pytest.mark.parametrize("k, ignore, ext_gt", [(150, 255, ".png"), (847, 65535, ".tif")])
def test_files_equal_streaming_and_workers(tmp_path, k, ignore, ext_gt):
    rng = np.random.default_rng(1)
    pairs = []
    stream = SemSegAccumulator(k, ignore)
    for i in range(9):
        g = rng.integers(0, k, size=(30, 41))
        g[rng.random(g.shape) < 0.2] = ignore
        p = rng.integers(0, k, size=g.shape)
        pairs.append((f"ADE_val_{i:08d}", g, p))
        stream.add(g, p)
    gd, pd = _write_pairs(tmp_path, pairs, ext_gt=ext_gt)
    one = evaluate_semantic_files(gd, pd, k, ignore, show_progress=False)
    two = evaluate_semantic_files(gd, pd, k, ignore, workers=2, show_progress=False)
    s = stream.summary()
    for key in ("mIoU", "mIoU_d2v06", "fwIoU", "mACC", "pACC"):
        assert s[key] == one[key] == two[key]
    assert one["num_images"] == two["num_images"] == 9


def test_nan_classes_are_null_in_json(tmp_path):
    acc = SemSegAccumulator(3, 255)
    acc.add(TOY_GT, TOY_PRED)
    write_metrics_json(tmp_path / "m.json", acc.summary())
    data = json.loads((tmp_path / "m.json").read_text())
    assert data["per_class"]["2"]["IoU"] is None and data["per_class"]["0"]["IoU"] > 0
    assert set(data) >= {"mIoU", "mIoU_d2v06", "fwIoU", "pACC", "mACC", "per_class", "definitions"}


# ------------------------------------------------------------------ bad input
def test_gt_label_out_of_range_names_image():
    with pytest.raises(InputError, match=r"img7.*GT labels \[200\]"):
        SemSegAccumulator(150, 255).add(np.array([[1, 200]]), np.array([[1, 2]]), image="img7")


def test_prediction_out_of_range_names_image():
    with pytest.raises(InputError, match=r"img7.*predicted labels \[150\]"):
        SemSegAccumulator(150, 255).add(np.array([[1, 2]]), np.array([[1, 150]]), image="img7")


def test_size_mismatch_names_image():
    with pytest.raises(InputError, match="img7"):
        SemSegAccumulator(3, 255).add(np.zeros((2, 3), int), np.zeros((3, 2), int), image="img7")


def test_missing_and_extra_prediction_files(tmp_path):
    gd, pd = _write_pairs(tmp_path, [("a", [[0]], [[0]]), ("b", [[1]], [[1]])])
    (pd / "b.png").unlink()
    with pytest.raises(InputError, match="'b'"):
        evaluate_semantic_files(gd, pd, 3, 255, show_progress=False)
    write_label_png(pd / "b.png", np.array([[1]]))
    write_label_png(pd / "zz.png", np.array([[1]]))
    with pytest.raises(InputError, match="zz"):
        evaluate_semantic_files(gd, pd, 3, 255, show_progress=False)
    assert evaluate_semantic_files(gd, pd, 3, 255, strict=False, show_progress=False)["pACC"] == 100.0


def test_file_errors_carry_path_and_image(tmp_path):
    gd, pd = _write_pairs(tmp_path, [("a", [[0, 1]], [[0, 1]]), ("b", [[1, 9]], [[1, 1]])])
    with pytest.raises(InputError) as ei:
        evaluate_semantic_files(gd, pd, 3, 255, workers=2, show_progress=False)
    assert "b.png" in str(ei.value) and "'b'" in str(ei.value) and "[9]" in str(ei.value)


def test_rgb_label_map_is_rejected(tmp_path):
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "x.png")
    with pytest.raises(InputError, match="single-channel"):
        read_label_map(tmp_path / "x.png")
