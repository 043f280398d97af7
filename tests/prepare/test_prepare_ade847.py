import pickle

import numpy as np
import pytest
import tifffile
from PIL import Image

from smart.data.prepare import ade847
from smart.data.prepare.runner import prepare_dataset
from smart.errors import DatasetError

I = 65535
# wall (2978) -> 0, sky (2420) -> 2, bed (165) -> 7; id 1 (not among the 847) and 0 -> 65535
EXPECTED_VAL = [[0, 0, 2, 2],
                [7, 7, I, I],
                [I, 0, 0, 7]]


def _tif(path):
    a = np.asarray(Image.open(path))
    b = tifffile.imread(path)
    assert a.dtype == np.uint16 and b.dtype == np.uint16
    np.testing.assert_array_equal(a, b)
    return a


@pytest.mark.parametrize("ade_level", [False, True])
def test_prepare_exact(tmp_path, builders, make_ctx, ade_level):
    root = builders.ade847(tmp_path / "datasets", ade_level=ade_level)
    assert prepare_dataset(make_ctx(root), "ade20k_847")
    out = root / "ADE20K_2021_17_01"  # always the loader's path, also for raw data under ade/
    val = _tif(out / "annotations_detectron2/validation/ADE_val_00000001.tif")
    np.testing.assert_array_equal(val, np.array(EXPECTED_VAL, dtype=np.uint16))
    img = Image.open(out / "images_detectron2/validation/ADE_val_00000001.jpg")
    assert img.format == "JPEG" and img.size == (4, 3)

    # 600 x 520 (w x h): short side 520 > 512 -> 512, long side round(600 / 520 * 512) = 591
    big = _tif(out / "annotations_detectron2/training/ADE_train_00000001.tif")
    assert big.shape == (512, 591)
    assert (big[:250] == 0).all() and (big[262:] == 2).all()
    assert set(np.unique(big).tolist()) == {0, 2}
    assert Image.open(out / "images_detectron2/training/ADE_train_00000001.jpg").size == (591, 512)

    # "ADE_frame_..." files are training (second field is not "val"); short side <= 512: no resize
    np.testing.assert_array_equal(_tif(out / "annotations_detectron2/training/ADE_frame_00000001.tif"),
                                  [[7, 7], [7, 7]])
    assert sorted(p.name for p in (out / "annotations_detectron2/validation").iterdir()) == \
        ["ADE_val_00000001.tif"]
    assert (root / ".prepared/ade20k_847.json").is_file()


def test_resize_rules():
    assert ade847.resized_shape(600, 520) == (591, 512)
    assert ade847.resized_shape(520, 600) == (512, 591)
    assert ade847.resized_shape(512, 2000) is None


def test_resized_image_byte_identical_to_reference(tmp_path, builders, make_ctx):
    """A 600 x 520 textured image: decoded by PIL, cv2.resize INTER_LINEAR to 591 x 512, written by PIL
    as JPEG with its defaults (the reference's steps); labels by cv2 INTER_NEAREST."""
    import io

    import cv2

    root = builders.ade847(tmp_path / "datasets")
    assert prepare_dataset(make_ctx(root), "ade20k_847")
    src = root / "ADE20K_2021_17_01/images/ADE/training/urban/street/ADE_train_00000001.jpg"
    arr = np.asarray(Image.open(src))
    assert arr.shape == (520, 600, 3) and arr.std() > 10  # textured, short side over 512
    ref = cv2.resize(arr, (591, 512), interpolation=cv2.INTER_LINEAR)
    buf = io.BytesIO()
    Image.fromarray(ref).save(buf, format="JPEG")
    out = root / "ADE20K_2021_17_01/images_detectron2/training/ADE_train_00000001.jpg"
    assert out.read_bytes() == buf.getvalue()
    # PIL's (antialiasing) bilinear filter gives other pixels: the test tells the two apart
    pil = np.asarray(Image.open(src).resize((591, 512), Image.BILINEAR))
    assert (pil != ref).mean() > 0.2
    # labels: nearest neighbour with OpenCV's index rule (source index = floor(dst * src / dst))
    seg = np.asarray(Image.open(src.with_name("ADE_train_00000001_seg.png")))
    cls = ade847.class_map(seg)
    want = ade847._lut()[cv2.resize(cls, (591, 512), interpolation=cv2.INTER_NEAREST)]
    got = _tif(root / "ADE20K_2021_17_01/annotations_detectron2/training/ADE_train_00000001.tif")
    np.testing.assert_array_equal(got, want)
    rows = np.minimum(np.floor(np.arange(512) * 520 / 512).astype(int), 519)
    np.testing.assert_array_equal(got[:, 0], ade847._lut()[cls[rows, 0]])


def test_resume(tmp_path, builders, make_ctx):
    root = builders.ade847(tmp_path / "datasets")
    src = root / "ADE20K_2021_17_01"
    r1 = ade847.convert(src, src)
    assert r1 == {"validation": 1, "training": 2, "written": 3}
    lab = src / "annotations_detectron2/validation/ADE_val_00000001.tif"
    mtime = lab.stat().st_mtime_ns
    (src / "annotations_detectron2/training/ADE_frame_00000001.tif").unlink()
    r2 = ade847.convert(src, src)
    assert r2["written"] == 1
    assert lab.stat().st_mtime_ns == mtime


def test_count_check(tmp_path, builders, make_ctx):
    root = builders.ade847(tmp_path / "datasets")
    with pytest.raises(DatasetError) as ei:
        prepare_dataset(make_ctx(root, skip_count_check=False), "ade20k_847")
    assert "images_detectron2/validation" in str(ei.value) and "2000" in str(ei.value)


def test_missing_index(tmp_path, make_ctx):
    with pytest.raises(DatasetError) as ei:
        prepare_dataset(make_ctx(tmp_path), "ade20k_847")
    assert "index_ade20k.pkl" in str(ei.value) and "register" in str(ei.value)


def test_bad_index(tmp_path, builders):
    root = builders.ade847(tmp_path / "datasets")
    pkl = root / "ADE20K_2021_17_01/index_ade20k.pkl"
    pkl.write_bytes(pickle.dumps({"folder": ["x"]}))
    with pytest.raises(DatasetError) as ei:
        ade847.convert(pkl.parent, pkl.parent)
    assert str(pkl) in str(ei.value) and "[filename]" in str(ei.value)
    pkl.write_bytes(pickle.dumps({"folder": [], "filename": []}))
    with pytest.raises(DatasetError) as ei:
        ade847.convert(pkl.parent, pkl.parent)
    assert "empty" in str(ei.value)


def test_missing_image_and_corrupt_seg(tmp_path, builders):
    root = builders.ade847(tmp_path / "datasets")
    ds = root / "ADE20K_2021_17_01"
    seg = ds / "images/ADE/validation/abbey/ADE_val_00000001_seg.png"
    seg.write_bytes(b"junk")
    with pytest.raises(DatasetError) as ei:
        ade847.convert(ds, ds)
    assert str(seg) in str(ei.value) and "_seg.png" in str(ei.value)
    (ds / "images/ADE/validation/abbey/ADE_val_00000001.jpg").unlink()
    with pytest.raises(DatasetError) as ei:
        ade847.convert(ds, ds)
    assert "index_ade20k.pkl" in str(ei.value) and "filename[0]" in str(ei.value)
