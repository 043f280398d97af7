"""Bad panoptic input: every error is an InputError naming the file, the image and the segment."""

from __future__ import annotations

import json

import numpy as np
import pytest
from evalfixtures import cats, img, rgb_png, score, seg, write_set
from PIL import Image

from smart.errors import InputError
from smart.eval.panoptic import PanopticAccumulator, evaluate_panoptic_files

A, B = 1, 2
CATS = cats((A, "a", 1), (B, "b", 0))
GT = np.array([[1, 1, 2, 2], [1, 1, 2, 2]])
PRED = np.array([[5, 5, 6, 6], [5, 5, 6, 6]])


def good_gt(image_id="im1"):
    return img(image_id, GT, [seg(1, A, GT), seg(2, B, GT)])


def good_pred(image_id="im1"):
    return img(image_id, PRED, [seg(5, A), seg(6, B)])


def check(tmp_path, gt_images, pred_images, *needles, via=("stream", "files"), categories=CATS):
    for v in via:
        with pytest.raises(InputError) as ei:
            score(tmp_path / v, gt_images, pred_images, categories, v)
        msg = str(ei.value)
        for n in needles:
            assert n in msg, (v, msg)
    return msg


def test_valid_fixture_passes(tmp_path):
    for v in ("stream", "files"):
        assert score(tmp_path / v, [good_gt()], [good_pred()], CATS, v)["All"]["pq"] == 1.0


def test_missing_prediction_names_the_image(tmp_path):
    check(tmp_path, [good_gt("im1"), good_gt("im2")], [good_pred("im1")], "im2", "no prediction",
          via=["files"])


def test_image_id_type_mismatch_is_explained(tmp_path):
    msg = check(tmp_path, [good_gt(7)], [good_pred("7")], "no prediction", "must match exactly",
                via=["files"])
    assert "'7'" in msg


def test_extra_prediction_images_are_ignored_with_a_warning(tmp_path, caplog):
    gj, gd = write_set(tmp_path / "l", "gt", [good_gt("im1")], CATS)
    pj, pd = write_set(tmp_path / "l", "pred", [good_pred("im1"), good_pred("zz9")])
    for strict in (True, False):
        caplog.clear()
        assert evaluate_panoptic_files(gj, pj, gd, pd, strict=strict, show_progress=False)["All"]["pq"] == 1.0
        assert "zz9" in caplog.text and "not in the GT" in caplog.text


def test_duplicate_image_ids(tmp_path):
    check(tmp_path, [good_gt("im1"), good_gt("im1")], [good_pred("im1")], "im1", "duplicate", via=["files"])
    check(tmp_path / "p", [good_gt("im1")], [good_pred("im1"), good_pred("im1")], "im1", "duplicate",
          via=["files"])
    acc = PanopticAccumulator(CATS)
    acc.add("im1", GT, good_gt()["segments"], PRED, good_pred()["segments"])
    with pytest.raises(InputError, match="im1"):
        acc.add("im1", GT, good_gt()["segments"], PRED, good_pred()["segments"])


def test_duplicate_gt_segment_id(tmp_path):
    g = img("im1", GT, [seg(1, A, GT), seg(2, B, GT), seg(2, B, GT)])
    check(tmp_path, [g], [good_pred()], "im1", "segment 2", "duplicate")


def test_duplicate_pred_segment_id(tmp_path):
    p = img("im1", PRED, [seg(5, A), seg(6, B), seg(5, B)])
    check(tmp_path, [good_gt()], [p], "im1", "segment 5", "duplicate")


def test_pred_segment_in_png_not_in_json(tmp_path):
    p = img("im1", PRED, [seg(5, A)])
    check(tmp_path, [good_gt()], [p], "im1", "segment 6",
          "in the prediction PNG but not in its segments_info")


def test_pred_segment_in_json_not_in_png(tmp_path):
    p = img("im1", PRED, [seg(5, A), seg(6, B), seg(77, B)])
    check(tmp_path, [good_gt()], [p], "im1", "segment 77", "not in the PNG")


def test_gt_segment_in_png_not_in_json(tmp_path):
    g = img("im1", GT, [seg(1, A, GT)])
    check(tmp_path, [g], [good_pred()], "im1", "segment 2", "GT PNG but not in its segments_info")


def test_gt_segment_in_json_not_in_png(tmp_path):
    g = img("im1", GT, [seg(1, A, GT), seg(2, B, GT), seg(3, B, area=4)])
    check(tmp_path, [g], [good_pred()], "im1", "segment 3", "not in the PNG", "--empty-gt-stuff")


def test_empty_gt_stuff_admits_stuff_only(tmp_path):
    """With empty_gt_stuff, a stuff segment without pixels is accepted; a thing or crowd one is not."""
    g = img("im1", GT, [seg(1, A, GT), seg(2, B, GT), seg(3, B, area=4)])
    for v in ("stream", "files"):
        res = score(tmp_path / f"ok_{v}", [g], [good_pred()], CATS, v, empty_gt_stuff=True)
        assert res["per_class"][B]["fn"] == 1 and res["per_class"][B]["tp"] == 1
    for bad in (seg(3, A, area=4), seg(3, B, area=4, iscrowd=1)):
        g = img("im1", GT, [seg(1, A, GT), seg(2, B, GT), bad])
        for v in ("stream", "files"):
            with pytest.raises(InputError) as ei:
                score(tmp_path / f"bad_{v}_{bad['category_id']}_{bad['iscrowd']}", [g], [good_pred()], CATS, v,
                      empty_gt_stuff=True)
            assert "segment 3" in str(ei.value) and "not in the PNG" in str(ei.value)


def test_unknown_prediction_category(tmp_path):
    p = img("im1", PRED, [seg(5, A), seg(6, 42)])
    check(tmp_path, [good_gt()], [p], "im1", "segment 6", "unknown category_id 42")


def test_unknown_gt_category(tmp_path):
    g = img("im1", GT, [seg(1, A, GT), seg(2, 42, GT)])
    check(tmp_path, [g], [good_pred()], "im1", "segment 2", "category_id 42")


def test_segment_id_zero_listed(tmp_path):
    p = img("im1", PRED, [seg(5, A), seg(6, B), seg(0, B)])
    check(tmp_path, [good_gt()], [p], "im1", "segment 0", "VOID")


def test_missing_gt_fields(tmp_path):
    g = img("im1", GT, [seg(1, A, GT), {"id": 2, "category_id": B, "area": 4}])
    check(tmp_path, [g], [good_pred()], "im1", "segment 2", "iscrowd")
    g = img("im1", GT, [seg(1, A, GT), {"id": 2, "category_id": B, "iscrowd": 0}])
    check(tmp_path / "b", [g], [good_pred()], "im1", "segment 2", "area")


def test_wrong_png_size(tmp_path):
    p = img("im1", np.array([[5, 5, 6, 6, 6]]), [seg(5, A), seg(6, B)])
    check(tmp_path, [good_gt()], [p], "im1", "5x1", "4x2")


def test_missing_prediction_png(tmp_path):
    gj, gd = write_set(tmp_path, "gt", [good_gt()], CATS)
    pj, pd = write_set(tmp_path, "pred", [good_pred()])
    (pd / "im1.png").unlink()
    with pytest.raises(InputError, match="im1") as ei:
        evaluate_panoptic_files(gj, pj, gd, pd, show_progress=False)
    assert "not found" in str(ei.value) and "im1.png" in str(ei.value)


def test_non_rgb_png(tmp_path):
    gj, gd = write_set(tmp_path, "gt", [good_gt()], CATS)
    pj, pd = write_set(tmp_path, "pred", [good_pred()])
    Image.fromarray(PRED.astype(np.uint8), mode="L").save(pd / "im1.png")
    with pytest.raises(InputError, match="RGB") as ei:
        evaluate_panoptic_files(gj, pj, gd, pd, show_progress=False)
    assert "im1" in str(ei.value)


def test_malformed_json(tmp_path):
    gj, gd = write_set(tmp_path, "gt", [good_gt()], CATS)
    pj, pd = write_set(tmp_path, "pred", [good_pred()])
    pj.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        evaluate_panoptic_files(gj, pj, gd, pd, show_progress=False)
    pj.write_text(json.dumps({"foo": []}))
    with pytest.raises(InputError, match="annotations"):
        evaluate_panoptic_files(gj, pj, gd, pd, show_progress=False)
    gj.write_text(json.dumps({"annotations": []}))
    with pytest.raises(InputError, match="categories"):
        evaluate_panoptic_files(gj, pj, gd, pd, show_progress=False)


def test_category_without_isthing():
    with pytest.raises(InputError, match="isthing"):
        PanopticAccumulator([{"id": 1, "name": "x"}])


def test_errors_from_worker_processes_keep_image_and_segment(tmp_path):
    gts = [good_gt(f"im{i}") for i in range(6)]
    preds = [good_pred(f"im{i}") for i in range(6)]
    preds[4] = img("im4", PRED, [seg(5, A)])
    gj, gd = write_set(tmp_path, "gt", gts, CATS)
    pj, pd = write_set(tmp_path, "pred", preds)
    with pytest.raises(InputError) as ei:
        evaluate_panoptic_files(gj, pj, gd, pd, workers=2, show_progress=False)
    assert "im4" in str(ei.value) and "segment 6" in str(ei.value) and str(pd) in str(ei.value)


def test_rgba_png_is_accepted(tmp_path):
    gj, gd = write_set(tmp_path, "gt", [good_gt()], CATS)
    pj, pd = write_set(tmp_path, "pred", [good_pred()])
    rgb = np.asarray(Image.open(pd / "im1.png"))
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]), mode="RGBA").save(pd / "im1.png")
    assert evaluate_panoptic_files(gj, pj, gd, pd, show_progress=False)["All"]["pq"] == 1.0
    rgb_png(pd / "im1.png", PRED)  # restore
