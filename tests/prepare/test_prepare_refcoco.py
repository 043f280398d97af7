import json
import pickle

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from smart.data.prepare import refcoco
from smart.data.prepare.runner import prepare_dataset
from smart.errors import DatasetError

# pycocotools' decode() uses a NumPy-1 idiom that NumPy 2 flags with a DeprecationWarning
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

MASK_101 = np.zeros((8, 10), np.uint8)
MASK_101[1:3, 1:4] = 1  # polygon [1,1, 4,1, 4,3, 1,3]: x in [1, 4), y in [1, 3)
MASK_102 = np.zeros((8, 10), np.uint8)
MASK_102[4:6, 5:7] = 1  # first polygon
MASK_102[4:7, 8:9] = 1  # second polygon, merged
MASK_103 = np.zeros((6, 6), np.uint8)
MASK_103[1:4, 1] = 1  # uncompressed RLE [7, 3, 26] (column-major)

IMG9 = {"id": 9, "file_name": "coco/train2014/COCO_train2014_000000000009.jpg", "height": 8, "width": 10}
IMG25 = {"id": 25, "file_name": "coco/train2014/COCO_train2014_000000000025.jpg", "height": 6, "width": 6}


def _check_seg(seg, expected):
    assert isinstance(seg["counts"], str)
    assert seg["size"] == list(expected.shape)
    np.testing.assert_array_equal(mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()}),
                                  expected)


@pytest.mark.parametrize("name", ["refcoco", "refcoco+"])
def test_prepare_exact(tmp_path, builders, make_ctx, name):
    root = tmp_path / "datasets"
    builders.refer(root / "raw", name)
    builders.coco2014(root)
    assert prepare_dataset(make_ctx(root), name)
    out = root / "refer" / name
    assert sorted(p.name for p in out.iterdir()) == ["testA.json", "train.json", "val.json"]

    val = json.loads((out / "val.json").read_text())
    info = val["info"]
    assert info["dataset"] == name and info["split"] == "val" and info["split_by"] == "unc"
    assert val["images"] == [IMG9]
    assert len(val["refs"]) == 1
    ref = val["refs"][0]
    assert {k: v for k, v in ref.items() if k != "segmentation"} == {
        "ref_id": 0, "image_id": 9, "category_id": 1, "sentences": ["man on left", "left guy"],
        "bbox": [1.0, 1.0, 3.0, 2.0]}
    _check_seg(ref["segmentation"], MASK_101)

    test_a = json.loads((out / "testA.json").read_text())
    assert test_a["images"] == [IMG9]
    assert [r["ref_id"] for r in test_a["refs"]] == [1]
    assert test_a["refs"][0]["sentences"] == ["dog"] and test_a["refs"][0]["category_id"] == 18
    assert test_a["refs"][0]["bbox"] == [5.0, 4.0, 4.0, 3.0]
    _check_seg(test_a["refs"][0]["segmentation"], MASK_102)

    train = json.loads((out / "train.json").read_text())
    assert train["images"] == [IMG9, IMG25]  # sorted by id
    assert [r["ref_id"] for r in train["refs"]] == [2, 3]  # pickle order
    assert train["refs"][1]["sentences"] == [f"{name} person"]
    _check_seg(train["refs"][0]["segmentation"], MASK_103)
    _check_seg(train["refs"][1]["segmentation"], MASK_101)
    assert (root / f".prepared/{name}.json").is_file()


def _py2_pickle(obj) -> bytes:
    """A protocol-2 pickle as Python 2 writes it: ``str`` as (UTF-8) byte strings (SHORT_BINSTRING)."""
    import struct

    def enc(o):
        if isinstance(o, str):
            b = o.encode("utf-8")
            return b"U" + bytes([len(b)]) + b
        if isinstance(o, int):
            return b"J" + struct.pack("<i", o)
        if isinstance(o, list):
            return b"](" + b"".join(enc(v) for v in o) + b"e"
        if isinstance(o, dict):
            return b"}(" + b"".join(enc(k) + enc(v) for k, v in o.items()) + b"u"
        raise TypeError(o)

    return b"\x80\x02" + enc(obj) + b"."


def test_python2_pickle(tmp_path, builders):
    d = builders.refer(tmp_path / "raw", "refcoco")
    refs, _ = builders.refer_raw("refcoco")
    (d / "refs(unc).p").write_bytes(_py2_pickle(refs))
    assert refcoco.load_refs(d / "refs(unc).p") == refs  # plain ASCII: Python 3's default decoding
    refs[0]["sentences"][0]["sent"] = "caf\u00e9 man"
    (d / "refs(unc).p").write_bytes(_py2_pickle(refs))
    with pytest.raises(UnicodeDecodeError):
        pickle.loads((d / "refs(unc).p").read_bytes())
    loaded = refcoco.load_refs(d / "refs(unc).p")
    assert loaded == refs and loaded[0]["sentences"][0]["sent"] == "caf\u00e9 man"


def _setup(tmp_path, builders):
    root = tmp_path / "datasets"
    d = builders.refer(root / "raw", "refcoco")
    builders.coco2014(root)
    return root, d


def _rewrite_refs(d, fn):
    with open(d / "refs(unc).p", "rb") as f:
        refs = pickle.load(f)
    fn(refs)
    with open(d / "refs(unc).p", "wb") as f:
        pickle.dump(refs, f)


def test_unknown_annotation(tmp_path, builders):
    root, d = _setup(tmp_path, builders)
    _rewrite_refs(d, lambda refs: refs[2].update(ann_id=999))
    with pytest.raises(DatasetError) as ei:
        refcoco.convert(d, "refcoco", root / "refer/refcoco", image_root=root)
    assert "refs(unc).p" in str(ei.value) and "refs[2].ann_id" in str(ei.value)


def test_unknown_category(tmp_path, builders):
    root, d = _setup(tmp_path, builders)
    _rewrite_refs(d, lambda refs: refs[1].update(category_id=5))
    with pytest.raises(DatasetError) as ei:
        refcoco.convert(d, "refcoco", root / "refer/refcoco", image_root=root)
    assert "refs(unc).p" in str(ei.value) and "refs[1].category_id" in str(ei.value)


def test_bad_segmentation(tmp_path, builders):
    root, d = _setup(tmp_path, builders)
    inst = json.loads((d / "instances.json").read_text())
    inst["annotations"][1]["segmentation"] = "oops"
    (d / "instances.json").write_text(json.dumps(inst))
    with pytest.raises(DatasetError) as ei:
        refcoco.convert(d, "refcoco", root / "refer/refcoco", image_root=root)
    assert "instances.json" in str(ei.value) and "annotations[1].segmentation" in str(ei.value)


def test_missing_image(tmp_path, builders):
    root, d = _setup(tmp_path, builders)
    img = root / "coco/train2014/COCO_train2014_000000000025.jpg"
    img.unlink()
    with pytest.raises(DatasetError) as ei:
        refcoco.convert(d, "refcoco", root / "refer/refcoco", image_root=root)
    assert str(img) in str(ei.value) and "images[id=25]" in str(ei.value)


def test_empty_refs(tmp_path, builders):
    root, d = _setup(tmp_path, builders)
    _rewrite_refs(d, lambda refs: refs.clear())
    with pytest.raises(DatasetError) as ei:
        refcoco.convert(d, "refcoco", root / "refer/refcoco", image_root=root)
    assert "refs(unc).p" in str(ei.value) and "empty" in str(ei.value)


def test_missing_raw(tmp_path, make_ctx):
    with pytest.raises(DatasetError) as ei:
        prepare_dataset(make_ctx(tmp_path), "refcoco+")
    assert str(tmp_path / "raw/refcoco+/refs(unc).p") in str(ei.value) and "--download" in str(ei.value)
