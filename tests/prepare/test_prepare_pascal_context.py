import json

import numpy as np
import pytest
import scipy.io
import tifffile
from PIL import Image

from smart.data.prepare import pascal_context as pc
from smart.data.prepare.runner import prepare_dataset
from smart.errors import DatasetError

I8, I16 = 255, 65535

# PC-59 (aeroplane 2 -> 0, bag 9 -> 1, bed 18 -> 2, bedclothes 19 -> 3, bench 22 -> 4, person 284 -> 36,
# table 397 -> 49 ("diningtable"), wall 440 -> 55, water 445 -> 56, window 454 -> 57, wood 458 -> 58;
# accordion 1, wool 459 and 0 -> 255)
EXPECTED_59 = {
    ("validation", "2008_000001"): [[I8, 0, 0, 49, 49],
                                    [I8, 0, 0, 49, 49],
                                    [I8, 58, 58, 36, 36],
                                    [I8, I8, 58, 36, 36]],
    ("validation", "2008_000002"): [[1, 2],
                                    [3, 4]],
    ("training", "2008_000003"): [[55, 56, 57],
                                  [I8, I8, I8]],
}
# PC-459: 0 -> 65535, else value - 1
EXPECTED_459 = {
    ("validation", "2008_000001"): [[I16, 1, 1, 396, 396],
                                    [I16, 1, 1, 396, 396],
                                    [458, 457, 457, 283, 283],
                                    [0, 0, 457, 283, 283]],
    ("validation", "2008_000002"): [[8, 17],
                                    [18, 21]],
    ("training", "2008_000003"): [[439, 444, 453],
                                  [I16, I16, I16]],
}


def test_pc59_full_ids():
    # the Detail API's 59 evaluation ids, sorted (its ``eval_orders`` list)
    assert pc.pc59_full_ids() == (
        2, 9, 18, 19, 22, 23, 25, 31, 33, 34, 44, 45, 46, 59, 65, 68, 72, 80, 85, 98, 104, 105, 113, 115,
        144, 158, 159, 162, 187, 189, 207, 220, 232, 258, 259, 260, 284, 295, 296, 308, 324, 326, 347, 349,
        354, 355, 360, 366, 368, 397, 415, 416, 420, 424, 427, 440, 445, 454, 458)


def test_prepare_pc59_and_pc459_exact(pascal_root, make_ctx):
    ctx = make_ctx(pascal_root)
    assert prepare_dataset(ctx, "pascal_ctx_59")
    assert prepare_dataset(ctx, "pascal_ctx_459")
    d2 = pascal_root / "pascal_ctx_d2"
    for (split, stem), exp in EXPECTED_59.items():
        img = Image.open(d2 / "annotations_ctx59" / split / f"{stem}.png")
        assert img.mode == "L"
        np.testing.assert_array_equal(np.asarray(img), np.array(exp, dtype=np.uint8))
        # the JPEG is copied byte for byte
        assert (d2 / "images" / split / f"{stem}.jpg").read_bytes() == \
            (pascal_root / "VOCdevkit/VOC2010/JPEGImages" / f"{stem}.jpg").read_bytes()
    for (split, stem), exp in EXPECTED_459.items():
        path = d2 / "annotations_ctx459" / split / f"{stem}.tif"
        got = np.asarray(Image.open(path))
        assert got.dtype == np.uint16
        np.testing.assert_array_equal(got, np.array(exp, dtype=np.uint16))
        np.testing.assert_array_equal(tifffile.imread(path), got)
    # the test-phase image is in neither split
    assert sorted(p.name for p in (d2 / "images/validation").iterdir()) == \
        ["2008_000001.jpg", "2008_000002.jpg"]
    assert sorted(p.name for p in (d2 / "images/training").iterdir()) == ["2008_000003.jpg"]
    stamp = json.loads((pascal_root / ".prepared/pascal_ctx_59.json").read_text())
    assert stamp["counts"]["images/validation"] == 2


def test_pc459_needs_pc59(pascal_root, make_ctx):
    with pytest.raises(DatasetError) as ei:
        prepare_dataset(make_ctx(pascal_root), "pascal_ctx_459")
    assert "pascal_ctx_d2/images/validation" in str(ei.value) and "pascal_ctx_59" in str(ei.value)


def test_count_check(pascal_root, make_ctx):
    with pytest.raises(DatasetError) as ei:
        prepare_dataset(make_ctx(pascal_root, skip_count_check=False), "pascal_ctx_59")
    assert "images/validation" in str(ei.value) and "5104" in str(ei.value) and "found 2" in str(ei.value)


def test_resume(pascal_root):
    voc, out = pascal_root / "VOCdevkit/VOC2010", pascal_root / "pascal_ctx_d2"
    assert pc.convert_pc59(voc, out)["written"] == 3
    (out / "annotations_ctx59/validation/2008_000002.png").unlink()
    assert pc.convert_pc59(voc, out)["written"] == 1
    assert pc.convert_pc459(voc, out)["written"] == 3
    assert pc.convert_pc459(voc, out)["written"] == 0


def test_unknown_label_id(pascal_root):
    mat = pascal_root / "VOCdevkit/VOC2010/trainval/2008_000002.mat"
    scipy.io.savemat(str(mat), {"LabelMap": np.array([[9, 18], [19, 460]], dtype=np.uint16)})
    with pytest.raises(DatasetError) as ei:
        pc.convert_pc59(pascal_root / "VOCdevkit/VOC2010", pascal_root / "pascal_ctx_d2")
    msg = str(ei.value)
    assert str(mat) in msg and "[LabelMap]" in msg and "460" in msg


def test_missing_and_corrupt_mat(pascal_root):
    voc = pascal_root / "VOCdevkit/VOC2010"
    mat = voc / "trainval/2008_000003.mat"
    mat.write_bytes(b"MATLAB 5.0 garbage")
    with pytest.raises(DatasetError) as ei:
        pc.convert_pc59(voc, pascal_root / "pascal_ctx_d2")
    assert str(mat) in str(ei.value) and "[LabelMap]" in str(ei.value)
    mat.unlink()
    with pytest.raises(DatasetError) as ei:
        pc.convert_pc59(voc, pascal_root / "pascal_ctx_d2")
    assert str(mat) in str(ei.value) and "missing" in str(ei.value)
    scipy.io.savemat(str(mat), {"Other": np.zeros((2, 3))})
    with pytest.raises(DatasetError) as ei:
        pc.convert_pc59(voc, pascal_root / "pascal_ctx_d2")
    assert "no LabelMap" in str(ei.value)


def test_size_mismatch(pascal_root):
    mat = pascal_root / "VOCdevkit/VOC2010/trainval/2008_000002.mat"
    scipy.io.savemat(str(mat), {"LabelMap": np.zeros((3, 3), dtype=np.uint16)})
    with pytest.raises(DatasetError) as ei:
        pc.convert_pc59(pascal_root / "VOCdevkit/VOC2010", pascal_root / "pascal_ctx_d2")
    assert str(mat) in str(ei.value) and "size" in str(ei.value)


def test_empty_split(pascal_root):
    path = pascal_root / "VOCdevkit/VOC2010/trainval_merged.json"
    data = json.loads(path.read_text())
    for img in data["images"]:
        if img["phase"] == "val":
            img["phase"] = "test"
    path.write_text(json.dumps(data))
    with pytest.raises(DatasetError) as ei:
        pc.convert_pc59(pascal_root / "VOCdevkit/VOC2010", pascal_root / "pascal_ctx_d2")
    assert str(path) in str(ei.value) and "images[].phase" in str(ei.value) and "empty split" in str(ei.value)


def test_missing_phase_field(pascal_root):
    path = pascal_root / "VOCdevkit/VOC2010/trainval_merged.json"
    data = json.loads(path.read_text())
    del data["images"][1]["phase"]
    path.write_text(json.dumps(data))
    with pytest.raises(DatasetError) as ei:
        pc.convert_pc59(pascal_root / "VOCdevkit/VOC2010", pascal_root / "pascal_ctx_d2")
    assert str(path) in str(ei.value) and "images[1].phase" in str(ei.value)


def test_missing_voc(tmp_path, make_ctx):
    with pytest.raises(DatasetError) as ei:
        prepare_dataset(make_ctx(tmp_path), "pascal_ctx_59")
    assert "trainval_merged.json" in str(ei.value) and "--download" in str(ei.value)
