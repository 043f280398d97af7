"""Hand-computed PQ cases, one per rule of docs/evaluation.md §1 (test vectors V1–V8 of §1.4).

Every case runs through both the streaming accumulator and the file-based (PNG + JSON) path.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from evalfixtures import cats, img, rgb_png, score, seg, write_set

from smart.eval.io import id2rgb, read_panoptic_png, rgb2id, write_metrics_json
from smart.eval.panoptic import PanopticAccumulator, evaluate_panoptic_files

VIA = pytest.mark.parametrize("via", ["stream", "files"])
A, B, C, D = 1, 2, 3, 4
CATS = cats((A, "a", 1), (B, "b", 0), (C, "c", 1), (D, "d", 0))


def pc(res, cat):
    return res["per_class"][cat]


# --- V1: IoU exactly 0.5 does not match
@VIA
def test_v1_iou_exactly_half_does_not_match(tmp_path, via):
    gt = [[1, 1, 2, 2], [1, 1, 2, 2]]  # g (A, 4 px) | h (B, 4 px)
    pred = [[5] * 4, [5] * 4]  # p (A) covers both: IoU(g, p) = 4 / (8 + 4 - 4) = 0.5
    res = score(tmp_path, [img(1, gt, [seg(1, A, gt), seg(2, B, gt)])], [img(1, pred, [seg(5, A)])],
                CATS, via)
    assert (pc(res, A)["tp"], pc(res, A)["fp"], pc(res, A)["fn"]) == (0, 1, 1)
    assert (pc(res, B)["tp"], pc(res, B)["fp"], pc(res, B)["fn"]) == (0, 0, 1)
    assert pc(res, A)["pq"] == 0.0 and pc(res, B)["pq"] == 0.0
    assert res["All"] == {"pq": 0.0, "sq": 0.0, "rq": 0.0, "n": 2}


@VIA
def test_v1b_iou_just_above_half_matches(tmp_path, via):
    gt = [[1, 1, 2, 2], [1, 1, 2, 2]]
    pred = [[5, 5, 5, 5], [5, 5, 5, 0]]  # p (A, 7 px) covers g and 3 px of h: IoU = 4 / 7
    res = score(tmp_path, [img(1, gt, [seg(1, A, gt), seg(2, B, gt)])], [img(1, pred, [seg(5, A)])],
                CATS, via)
    assert (pc(res, A)["tp"], pc(res, A)["fp"], pc(res, A)["fn"]) == (1, 0, 0)
    assert pc(res, A)["pq"] == 4 / 7 and pc(res, A)["sq"] == 4 / 7 and pc(res, A)["rq"] == 1.0
    assert pc(res, B)["fn"] == 1
    assert res["All"]["pq"] == pytest.approx((4 / 7 + 0) / 2, abs=1e-15)


# --- V2: predicted pixels on VOID leave the union
@VIA
def test_v2_void_pixels_removed_from_union(tmp_path, via):
    gt = [[1, 1, 0, 0], [1, 1, 0, 0]]  # g (A, 4 px) next to 4 VOID px
    pred = [[5] * 4, [5] * 4]  # p covers g and the VOID: union = 8 + 4 - 4 - 4 = 4
    res = score(tmp_path, [img(1, gt, [seg(1, A, gt)])], [img(1, pred, [seg(5, A)])], CATS, via)
    assert pc(res, A)["tp"] == 1 and pc(res, A)["iou_sum"] == 1.0
    assert res["All"] == {"pq": 1.0, "sq": 1.0, "rq": 1.0, "n": 1}


# --- V3a: unmatched prediction mostly on VOID is ignored
@VIA
def test_v3a_prediction_mostly_on_void_is_ignored(tmp_path, via):
    gt = [[0, 0, 0, 0], [0, 2, 2, 2]]  # 5 VOID px, h (B, 3 px)
    pred = [[5] * 4, [5] * 4]  # p (A, 8 px): 5/8 on VOID > 0.5
    res = score(tmp_path, [img(1, gt, [seg(2, B, gt)])], [img(1, pred, [seg(5, A)])], CATS, via)
    assert (pc(res, A)["tp"], pc(res, A)["fp"], pc(res, A)["fn"]) == (0, 0, 0)
    assert pc(res, A)["counted"] is False  # A has no GT: left out of n
    assert pc(res, B)["fn"] == 1
    assert res["All"]["n"] == 1 and res["Things"]["n"] == 0


@VIA
def test_v3a_half_on_void_is_a_false_positive(tmp_path, via):
    gt = [[0, 0, 0, 0], [2, 2, 2, 2]]  # 4 VOID px: 4/8 is not > 0.5
    pred = [[5] * 4, [5] * 4]
    res = score(tmp_path, [img(1, gt, [seg(2, B, gt)])], [img(1, pred, [seg(5, A)])], CATS, via)
    assert pc(res, A)["fp"] == 1 and pc(res, A)["counted"] is True


# --- V3b: crowd absorbs only same-category predictions
@VIA
@pytest.mark.parametrize("pred_cat, expect_fp", [(B, 0), (A, 1)])
def test_v3b_crowd_absorbs_same_category_only(tmp_path, via, pred_cat, expect_fp):
    gt = [[3, 3, 3, 0], [3, 3, 3, 0]]  # crowd c (B, 6 px) + 2 VOID px
    pred = [[5] * 4, [5] * 4]  # p: 6 px on c, 2 on VOID
    res = score(tmp_path, [img(1, gt, [seg(3, B, gt, iscrowd=1)])], [img(1, pred, [seg(5, pred_cat)])],
                CATS, via)
    assert pc(res, pred_cat)["fp"] == expect_fp
    assert pc(res, B)["fn"] == 0  # crowd is never a false negative
    assert pc(res, B)["tp"] == 0  # and never matched
    if pred_cat == B:
        assert pc(res, B)["counted"] is False and res["All"]["n"] == 0
        assert math.isnan(res["All"]["pq"])
    else:
        assert pc(res, A)["counted"] is True and pc(res, A)["pq"] == 0.0


@VIA
def test_crowd_and_void_add_up(tmp_path, via):
    gt = [[3, 3, 3, 0], [2, 2, 2, 2]]  # crowd c (B, 3 px), 1 VOID, h (B, 4 px)
    pred = [[5, 5, 5, 5], [5, 0, 0, 0]]  # p (B, 5 px): 3 on crowd + 1 on VOID = 4/5 > 0.5 -> ignored
    res = score(tmp_path, [img(1, gt, [seg(3, B, gt, iscrowd=1), seg(2, B, gt)])],
                [img(1, pred, [seg(5, B)])], CATS, via)
    assert (pc(res, B)["tp"], pc(res, B)["fp"], pc(res, B)["fn"]) == (0, 0, 1)


@VIA
def test_prediction_exactly_on_crowd_is_not_a_match(tmp_path, via):
    gt = [[3, 3, 1, 1], [3, 3, 1, 1]]
    pred = [[5, 5, 6, 6], [5, 5, 6, 6]]  # p equals the crowd segment, q equals g
    res = score(tmp_path, [img(1, gt, [seg(3, B, gt, iscrowd=1), seg(1, A, gt)])],
                [img(1, pred, [seg(5, B), seg(6, A)])], CATS, via)
    assert (pc(res, B)["tp"], pc(res, B)["fp"], pc(res, B)["fn"]) == (0, 0, 0)
    assert (pc(res, A)["tp"], pc(res, A)["fp"], pc(res, A)["fn"]) == (1, 0, 0)


# --- V4: only the last crowd segment of a category absorbs
@VIA
@pytest.mark.parametrize("pred_on, order, expect_fp", [
    ("c1", ("c1", "c2"), 1),  # dict holds c2: overlap 0 -> FP
    ("c2", ("c1", "c2"), 0),  # on the surviving crowd -> ignored
    ("c1", ("c2", "c1"), 0),  # reversed segments_info order: c1 survives
])
def test_v4_last_crowd_segment_wins(tmp_path, via, pred_on, order, expect_fp):
    gt = [[1, 1, 2, 2], [1, 1, 2, 2]]  # c1 = id 1, c2 = id 2, both crowd of B
    col = slice(0, 2) if pred_on == "c1" else slice(2, 4)
    pred = np.zeros((2, 4), dtype=np.int64)
    pred[:, col] = 9
    sid = {"c1": 1, "c2": 2}
    segs = [seg(sid[c], B, gt, iscrowd=1) for c in order]
    res = score(tmp_path, [img(1, gt, segs)], [img(1, pred, [seg(9, B)])], CATS, via)
    assert pc(res, B)["fp"] == expect_fp
    assert pc(res, B)["fn"] == 0


# --- V5: category inclusion; SQ averages tp=0 as 0
@VIA
def test_v5_category_inclusion_and_split_means(tmp_path, via):
    gt = [[1, 1, 2, 2], [1, 1, 2, 2]]  # g, h both A
    pred = [[5, 5, 6, 6], [5, 5, 6, 6]]  # p (A) = g, q (D) on h
    res = score(tmp_path, [img(1, gt, [seg(1, A, gt), seg(2, A, gt)])],
                [img(1, pred, [seg(5, A), seg(6, D)])], CATS, via)
    assert pc(res, C)["counted"] is False and pc(res, C)["pq"] == 0.0  # no GT, no prediction
    assert pc(res, D)["counted"] is True
    assert (pc(res, D)["pq"], pc(res, D)["sq"], pc(res, D)["rq"]) == (0, 0, 0)
    assert pc(res, A)["pq"] == 1 / 1.5 and pc(res, A)["sq"] == 1.0 and pc(res, A)["rq"] == 1 / 1.5
    assert res["All"]["n"] == 2
    assert res["All"]["pq"] == (1 / 1.5 + 0.0) / 2
    assert res["All"]["sq"] == 0.5  # D's SQ 0 is averaged in: mean PQ != mean SQ * mean RQ
    assert res["All"]["rq"] == (1 / 1.5) / 2
    assert res["Things"] == {"pq": 1 / 1.5, "sq": 1.0, "rq": 1 / 1.5, "n": 1}  # A only (C excluded)
    assert res["Stuff"] == {"pq": 0.0, "sq": 0.0, "rq": 0.0, "n": 1}  # D only (B excluded)


@VIA
def test_crowd_only_category_with_absorbed_prediction_is_excluded(tmp_path, via):
    gt = [[3, 3, 1, 1], [3, 3, 1, 1]]
    pred = [[5, 5, 6, 6], [5, 5, 6, 6]]
    res = score(tmp_path, [img(1, gt, [seg(3, B, gt, iscrowd=1), seg(1, A, gt)])],
                [img(1, pred, [seg(5, B), seg(6, A)])], CATS, via)
    assert pc(res, B)["counted"] is False
    assert res["All"]["n"] == 1 and res["Stuff"]["n"] == 0


# --- V6: GT area comes from the JSON
@VIA
def test_v6_gt_area_from_json(tmp_path, via):
    gt = [[1, 1, 1, 1], [1, 1, 1, 1]]  # 8 px in the PNG
    pred = [[5] * 4, [5] * 4]
    res = score(tmp_path, [img(1, gt, [seg(1, A, area=10)])], [img(1, pred, [seg(5, A)])], CATS, via)
    assert pc(res, A)["iou_sum"] == 0.8  # union = 8 + 10 - 8
    assert res["All"]["pq"] == 0.8 and res["All"]["sq"] == 0.8 and res["All"]["rq"] == 1.0


@VIA
def test_prediction_area_is_the_pixel_count(tmp_path, via):
    gt = [[1, 1, 1, 1], [1, 1, 0, 0]]
    pred = [[5, 5, 5, 5], [5, 5, 0, 0]]
    res = score(tmp_path, [img(1, gt, [seg(1, A, gt)])],
                [img(1, pred, [{"id": 5, "category_id": A, "area": 1000}])], CATS, via)
    assert res["All"]["pq"] == 1.0


# --- V7: category id 0 is a real category
@VIA
def test_v7_category_zero_is_scored(tmp_path, via):
    ade = cats((0, "wall", 0), (1, "building", 0), (12, "person", 1))
    gt = [[7, 7, 0, 0], [7, 7, 8, 8]]  # wall (cat 0) id 7, VOID, person id 8
    pred = [[3, 3, 0, 0], [3, 3, 4, 4]]
    res = score(tmp_path, [img("ADE_val_00000001", gt, [seg(7, 0, gt), seg(8, 12, gt)])],
                [img("ADE_val_00000001", pred, [seg(3, 0), seg(4, 12)])], ade, via)
    assert pc(res, 0)["tp"] == 1 and pc(res, 0)["counted"] is True and pc(res, 0)["pq"] == 1.0
    assert res["All"] == {"pq": 1.0, "sq": 1.0, "rq": 1.0, "n": 2}
    assert res["Stuff"]["n"] == 1 and res["Things"]["n"] == 1


# --- V8: split with no counted category
@VIA
def test_v8_empty_split_is_nan_and_null_in_json(tmp_path, via):
    stuff = cats((1, "sky", 0), (2, "grass", 0))
    gt = [[1, 1, 2, 2]]
    pred = [[5, 5, 6, 6]]
    res = score(tmp_path, [img(1, gt, [seg(1, 1, gt), seg(2, 2, gt)])],
                [img(1, pred, [seg(5, 1), seg(6, 2)])], stuff, via)
    assert res["Things"]["n"] == 0
    assert all(math.isnan(res["Things"][k]) for k in ("pq", "sq", "rq"))
    assert res["Stuff"] == res["All"] == {"pq": 1.0, "sq": 1.0, "rq": 1.0, "n": 2}
    out = tmp_path / "m.json"
    write_metrics_json(out, res)
    data = json.loads(out.read_text())
    assert data["Things"] == {"pq": None, "sq": None, "rq": None, "n": 0}
    assert "null" in data["definitions"]["empty_split"]


# --- other rules of §1.1–1.3
def test_rgb_id_encoding(tmp_path):
    ids = np.array([[0, 1, 255, 256], [257, 65536, 65536 * 3 + 256 * 2 + 1, 256**3 - 1]])
    rgb = id2rgb(ids)
    assert rgb[1, 2].tolist() == [1, 2, 3]  # R + 256 G + 256^2 B
    assert rgb2id(rgb).tolist() == ids.tolist()
    rgb_png(tmp_path / "x.png", ids)
    assert read_panoptic_png(tmp_path / "x.png").tolist() == ids.tolist()


@VIA
def test_large_segment_ids(tmp_path, via):
    big1, big2 = 65536 * 200 + 256 * 17 + 3, 256**3 - 1
    gt = [[big1, big1, big2, big2]]
    pred = [[big2, big2, big1, big1]]  # ids swapped between GT and prediction: ids are arbitrary
    res = score(tmp_path, [img(1, gt, [seg(big1, A, gt), seg(big2, B, gt)])],
                [img(1, pred, [seg(big2, A), seg(big1, B)])], CATS, via)
    assert res["All"] == {"pq": 1.0, "sq": 1.0, "rq": 1.0, "n": 2}


@VIA
def test_categories_must_agree_to_match(tmp_path, via):
    gt = [[1, 1, 1, 1]]
    pred = [[5, 5, 5, 5]]  # perfect overlap, wrong category
    res = score(tmp_path, [img(1, gt, [seg(1, A, gt)])], [img(1, pred, [seg(5, C)])], CATS, via)
    assert (pc(res, A)["fn"], pc(res, C)["fp"], pc(res, A)["tp"]) == (1, 1, 0)


@VIA
def test_predicted_void_is_never_scored(tmp_path, via):
    gt = [[1, 1, 2, 2]]
    pred = [[0, 0, 0, 0]]
    res = score(tmp_path, [img(1, gt, [seg(1, A, gt), seg(2, B, gt)])], [img(1, pred, [])], CATS, via)
    assert (pc(res, A)["fn"], pc(res, B)["fn"]) == (1, 1)
    assert sum(pc(res, c)["fp"] for c in (A, B, C, D)) == 0


@VIA
def test_counts_and_ious_accumulate_over_images(tmp_path, via):
    gt1 = [[1, 1, 1, 1]]
    pr1 = [[5, 5, 5, 0]]  # IoU 3/4
    gt2 = [[1, 1, 1, 2]]
    pr2 = [[5, 5, 5, 5]]  # g (3 px) IoU 3/4; h (B) FN
    res = score(tmp_path, [img(1, gt1, [seg(1, A, gt1)]), img(2, gt2, [seg(1, A, gt2), seg(2, B, gt2)])],
                [img(1, pr1, [seg(5, A)]), img(2, pr2, [seg(5, A)])], CATS, via)
    assert (pc(res, A)["tp"], pc(res, A)["fp"], pc(res, A)["fn"]) == (2, 0, 0)
    assert pc(res, A)["iou_sum"] == 1.5 and pc(res, A)["sq"] == 0.75
    assert res["Things"] == {"pq": 0.75, "sq": 0.75, "rq": 1.0, "n": 1}


def test_categories_come_from_the_gt_json(tmp_path):
    gt = [[1, 1, 2, 2]]
    pred = [[5, 5, 6, 6]]
    gj, gd = write_set(tmp_path, "gt", [img(1, gt, [seg(1, A, gt), seg(2, B, gt)])], CATS)
    # the prediction JSON's categories are wrong (isthing swapped, extra class) and must be ignored
    pj, pd = write_set(tmp_path, "pred", [img(1, pred, [seg(5, A), seg(6, B)])],
                       cats((A, "a", 0), (B, "b", 1), (99, "zz", 1)))
    res = evaluate_panoptic_files(gj, pj, gd, pd, show_progress=False)
    assert res["Things"]["n"] == 1 and res["Stuff"]["n"] == 1
    assert 99 not in res["per_class"]
    assert list(res["per_class"]) == [A, B, C, D]  # GT JSON order


def test_folders_default_to_json_path_without_extension(tmp_path):
    gt = [[1, 1, 2, 2]]
    gj, _ = write_set(tmp_path, "gt", [img(1, gt, [seg(1, A, gt), seg(2, B, gt)])], CATS)
    pj, _ = write_set(tmp_path, "pred", [img(1, gt, [seg(1, A), seg(2, B)])])
    res = evaluate_panoptic_files(gj, pj, show_progress=False)
    assert res["All"]["pq"] == 1.0


@VIA
def test_string_image_ids(tmp_path, via):
    gt = [[1, 1, 2, 2]]
    pred = [[5, 5, 6, 6]]
    res = score(tmp_path, [img("ADE_val_00000001", gt, [seg(1, A, gt), seg(2, B, gt)]),
                           img("mapillary/abc-123", gt, [seg(1, A, gt), seg(2, B, gt)])],
                [img("ADE_val_00000001", pred, [seg(5, A), seg(6, B)]),
                 img("mapillary/abc-123", pred, [seg(5, A), seg(6, C)])], CATS, via)
    assert (pc(res, A)["tp"], pc(res, B)["tp"], pc(res, B)["fn"], pc(res, C)["fp"]) == (2, 1, 1, 1)


@VIA
def test_gt_png_id_missing_from_json_is_neither_void_nor_segment_when_lenient(tmp_path, via):
    gt = [[1, 1, 4, 4], [1, 1, 4, 4]]  # id 4 is in the PNG only
    pred = [[5, 5, 6, 6], [5, 5, 6, 6]]  # q lies on id 4: not on VOID, so it is an FP
    res = score(tmp_path, [img(1, gt, [seg(1, A, gt)])], [img(1, pred, [seg(5, A), seg(6, A)])], CATS, via,
                strict=False)
    assert (pc(res, A)["tp"], pc(res, A)["fp"], pc(res, A)["fn"]) == (1, 1, 0)


def test_lenient_duplicate_segment_keeps_last_record():
    gt = np.array([[1, 1, 2, 2]])
    pred = np.array([[5, 5, 6, 6]])
    acc = PanopticAccumulator(CATS, strict=False)
    acc.add(1, gt, [seg(1, C, area=2), seg(1, A, area=2), seg(2, B, area=2)], pred, [seg(5, A), seg(6, B)])
    res = acc.summary()
    assert (pc(res, A)["tp"], pc(res, C)["fn"]) == (1, 0)


def test_per_class_holds_counts_names_and_all_categories(tmp_path):
    gt = [[1, 1, 2, 2]]
    res = score(tmp_path, [img(1, gt, [seg(1, A, gt), seg(2, B, gt)])], [img(1, gt, [seg(1, A), seg(2, B)])],
                CATS, "files")
    assert set(res["per_class"]) == {A, B, C, D}
    e = res["per_class"][A]
    assert {"pq", "sq", "rq", "tp", "fp", "fn", "name", "isthing", "counted"} <= set(e)
    assert e["name"] == "a" and e["isthing"] == 1
    assert res["definitions"]["implementation"].startswith("smart.eval.panoptic")


def test_summary_can_take_the_categories():
    gt = np.array([[1, 1, 2, 2]])
    acc = PanopticAccumulator(CATS)
    acc.add(1, gt, [seg(1, A, gt), seg(2, B, gt)], gt, [seg(1, A), seg(2, B)])
    res = acc.summary(cats((B, "b", 0), (A, "a", 1)))
    assert list(res["per_class"]) == [B, A] and res["All"]["n"] == 2
    assert acc.summary()["All"] == res["All"]


def test_printed_table_is_percent_with_n():
    from smart.eval.panoptic import format_table

    res = {"All": {"pq": 0.5565, "sq": 0.9167, "rq": 0.5952, "n": 2},
           "Things": {"pq": 0.8214, "sq": 1.0, "rq": 0.8214, "n": 1},
           "Stuff": {"pq": float("nan"), "sq": float("nan"), "rq": float("nan"), "n": 0}}
    lines = format_table(res).splitlines()
    assert lines[2].split() == ["All", "|", "55.6", "91.7", "59.5", "2"]
    assert lines[4].split() == ["Stuff", "|", "nan", "nan", "nan", "0"]


@pytest.mark.parametrize("kind", ["blocks", "noise"])
def test_pair_counts_equal_numpy_unique(kind, tmp_path):
    from smart.eval.io import id2rgb
    from smart.eval.panoptic import _pair_counts

    rng = np.random.default_rng(0)
    if kind == "blocks":  # run-length path
        gt = np.repeat(np.repeat(rng.integers(0, 256**3, (6, 7)), 9, 0), 11, 1)
        pred = np.roll(np.repeat(np.repeat(rng.integers(0, 256**3, (5, 7)), 11, 0), 11, 1)[:54, :77], 3, 1)
    else:  # full-sort fallback
        gt = rng.integers(0, 5, (54, 77)) * 1000003
        pred = rng.integers(0, 5, (54, 77))
    key = gt.astype(np.uint64) * np.uint64(256**3) + pred.astype(np.uint64)
    keys, counts = np.unique(key, return_counts=True)
    want = (keys // 256**3).tolist(), (keys % 256**3).tolist(), counts.tolist()
    assert _pair_counts(gt, pred) == want
    assert _pair_counts(gt.astype(np.uint32), pred) == want  # what the PNG reader returns, mixed with int64

    # the PNG reader's 32-bit unpacking gives the ids of rgb2id, for RGB and RGBA files
    from PIL import Image

    from smart.io import read_panoptic_png, rgb2id

    for mode in ("RGB", "RGBA"):
        rgb = id2rgb(gt)
        arr = rgb if mode == "RGB" else np.concatenate([rgb, np.full(gt.shape + (1,), 200, np.uint8)], axis=2)
        f = tmp_path / f"{kind}_{mode}.png"
        Image.fromarray(arr).save(f)
        got = read_panoptic_png(f, dtype=np.uint32)
        assert got.dtype == np.uint32 and np.array_equal(got, rgb2id(arr)) and np.array_equal(got, gt)


def test_truncated_or_corrupt_panoptic_png_is_named(tmp_path):
    from PIL import Image

    from smart.errors import DatasetError
    from smart.io import read_panoptic_png

    ids = np.repeat(np.arange(1, 65, dtype=np.int64).reshape(8, 8), 8, 0)[:, :8].repeat(8, 1)  # (64, 64)
    f = tmp_path / "p.png"
    Image.fromarray(id2rgb(ids)).save(f)
    assert np.array_equal(read_panoptic_png(f), ids)
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError) as e:
        read_panoptic_png(f, image_id=7)
    assert "cannot read panoptic PNG: image file is truncated" in str(e.value) and str(f) in str(e.value)
    assert "image 7" in str(e.value)
