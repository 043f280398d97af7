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
    # the Detail API's 59 evaluation ids, sorted (its ``eval_orders`` list), = fc-clip's table without 0
    from smart.data.prepare.fixtures import PC59_IDS

    assert pc.pc59_full_ids() == PC59_IDS == (
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


def _voc_out(root):
    return root / "VOCdevkit/VOC2010", root / "pascal_ctx_d2"


def _edit_detail(root, fn):
    path = root / "VOCdevkit/VOC2010/trainval_merged.json"
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))
    return path


def test_pc59_needs_no_mat_files(pascal_root):
    """PC-59 is read from trainval_merged.json alone (the reference's source); on the fixture, whose JSON
    holds the 59 classes' regions of the .mat maps, both raw formats give the same labels."""
    import shutil

    voc, out = _voc_out(pascal_root)
    mats = {p.stem: pc.read_label_map(p) for p in (voc / "trainval").glob("*.mat")}
    shutil.rmtree(voc / "trainval")
    assert pc.convert_pc59(voc, out)["written"] == 3
    for (split, stem), exp in EXPECTED_59.items():
        got = np.asarray(Image.open(out / "annotations_ctx59" / split / f"{stem}.png"))
        np.testing.assert_array_equal(got, exp)
        np.testing.assert_array_equal(got, pc._lut59()[mats[stem]])  # the .mat route


def test_detail_paint_order(pascal_root):
    """Overlapping segments: the later one in the JSON wins; a repeated id keeps the first one's place."""
    from pycocotools import mask as mask_utils

    def rle(m):
        r = mask_utils.encode(np.asfortranarray(np.array(m, dtype=np.uint8)))
        return {"size": [int(v) for v in r["size"]], "counts": r["counts"].decode()}

    def edit(d):
        img = 2008000002
        d["annos_segmentation"] = [a for a in d["annos_segmentation"] if a["image_id"] != img] + [
            {"id": 900, "image_id": img, "category_id": 9, "segmentation": rle([[1, 1], [1, 1]])},
            {"id": 901, "image_id": img, "category_id": 2, "segmentation": rle([[0, 1], [0, 1]])},
            {"id": 902, "image_id": img, "category_id": 440, "segmentation": rle([[0, 0], [1, 1]])},
            # uncompressed RLE, and a repeated id: replaces 901's content at 901's place (before 902)
            {"id": 901, "image_id": img, "category_id": 18, "segmentation": {"size": [2, 2], "counts": [2, 2]}},
        ]

    _edit_detail(pascal_root, edit)
    voc, out = _voc_out(pascal_root)
    pc.convert_pc59(voc, out)
    # bag (9 -> 1) everywhere, bed (18 -> 2) on the right column, wall (440 -> 55) on the bottom row
    np.testing.assert_array_equal(np.asarray(Image.open(out / "annotations_ctx59/validation/2008_000002.png")),
                                  [[1, 2], [55, 55]])


def test_class_outside_the_59(pascal_root):
    def edit(d):
        d["annos_segmentation"][0]["category_id"] = 1  # accordion: one of the other 400 classes
    path = _edit_detail(pascal_root, edit)
    with pytest.raises(DatasetError) as ei:
        pc.convert_pc59(*_voc_out(pascal_root))
    msg = str(ei.value)
    assert str(path) in msg and "[1]" in msg and "not among the 59 classes" in msg


def test_detail_size_and_rle_errors(pascal_root, builders):
    def wrong_size(d):
        d["annos_segmentation"][0]["segmentation"]["size"] = [9, 9]
    path = _edit_detail(pascal_root, wrong_size)
    with pytest.raises(DatasetError) as ei:
        pc.convert_pc59(*_voc_out(pascal_root))
    assert str(path) in str(ei.value) and "annos_segmentation[0].segmentation.size" in str(ei.value)

    def polygon(d):
        d["annos_segmentation"][0]["segmentation"] = [[0, 0, 1, 0, 1, 1]]
    _edit_detail(pascal_root, polygon)
    with pytest.raises(DatasetError, match="expected an RLE segmentation"):
        pc.convert_pc59(*_voc_out(pascal_root))

    builders.pascal(pascal_root)  # fresh files

    def image_size(d):
        d["images"][1]["width"] = 3
        for a in d["annos_segmentation"]:
            if a["image_id"] == d["images"][1]["image_id"]:
                a["segmentation"] = {"size": [2, 3], "counts": [6]}
    _edit_detail(pascal_root, image_size)
    with pytest.raises(DatasetError) as ei:
        pc.convert_pc59(*_voc_out(pascal_root))
    assert "images[1]" in str(ei.value) and "2008_000002.jpg" in str(ei.value) and "3x2" in str(ei.value)


def test_pc459_unknown_label_id(pascal_root):
    voc, out = _voc_out(pascal_root)
    pc.convert_pc59(voc, out)
    mat = voc / "trainval/2008_000002.mat"
    scipy.io.savemat(str(mat), {"LabelMap": np.array([[9, 18], [19, 460]], dtype=np.uint16)})
    with pytest.raises(DatasetError) as ei:
        pc.convert_pc459(voc, out)
    msg = str(ei.value)
    assert str(mat) in msg and "[LabelMap]" in msg and "460" in msg


def test_pc459_missing_and_corrupt_mat(pascal_root):
    voc, out = _voc_out(pascal_root)
    pc.convert_pc59(voc, out)
    mat = voc / "trainval/2008_000003.mat"
    mat.write_bytes(b"MATLAB 5.0 garbage")
    with pytest.raises(DatasetError) as ei:
        pc.convert_pc459(voc, out)
    assert str(mat) in str(ei.value) and "[LabelMap]" in str(ei.value)
    mat.unlink()
    with pytest.raises(DatasetError) as ei:
        pc.convert_pc459(voc, out)
    assert str(mat) in str(ei.value) and "missing" in str(ei.value)
    scipy.io.savemat(str(mat), {"Other": np.zeros((2, 3))})
    with pytest.raises(DatasetError) as ei:
        pc.convert_pc459(voc, out)
    assert "no LabelMap" in str(ei.value)


def test_pc459_size_mismatch(pascal_root):
    voc, out = _voc_out(pascal_root)
    pc.convert_pc59(voc, out)
    mat = voc / "trainval/2008_000002.mat"
    scipy.io.savemat(str(mat), {"LabelMap": np.zeros((3, 3), dtype=np.uint16)})
    with pytest.raises(DatasetError) as ei:
        pc.convert_pc459(voc, out)
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
