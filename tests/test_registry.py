import json
import shutil

import numpy as np
import pytest
from PIL import Image

from smart.data.registry import ALIASES, Dataset, read_panoptic_png
from smart.errors import DatasetError


@pytest.mark.parametrize("alias", list(ALIASES))
def test_every_mini_dataset_loads(mini_root, alias):
    ds = Dataset.open(alias, root=mini_root)
    s = ds[0]
    H, W = s["image"].shape[:2]
    assert s["image"].dtype == np.uint8 and (H, W) == (64, 64)
    if ds.spec.task == "panoptic":
        assert set(np.unique(s["pan_ids"]).tolist()) - {0} == {x["id"] for x in s["segments_info"]}
    if ds.spec.task == "semantic":
        assert s["sem_seg"].shape == (H, W)


@pytest.fixture()
def coco_copy(mini_root, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(mini_root / "coco", root / "coco")
    shutil.copytree(mini_root / "vocab", root / "vocab")
    return root


def _edit_json(path, fn):
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def test_missing_root_and_directory(tmp_path, coco_copy):
    with pytest.raises(DatasetError, match="dataset root does not exist"):
        Dataset.open("coco", root=tmp_path / "nope")
    shutil.rmtree(coco_copy / "coco/panoptic_val2017")
    with pytest.raises(DatasetError) as e:
        Dataset.open("coco", root=coco_copy)
    assert "panoptic_val2017" in str(e.value) and "missing" in str(e.value)


def test_corrupt_image_names_the_file(coco_copy):
    ds = Dataset.open("coco", root=coco_copy)
    path = ds.records[3]["file_name"]
    with open(path, "wb") as f:
        f.write(b"not a png")
    with pytest.raises(DatasetError) as e:
        ds[3]
    assert path in str(e.value) and "cannot decode image" in str(e.value)


def test_segment_in_json_but_not_in_png(coco_copy):
    jpath = coco_copy / "coco/annotations/panoptic_val2017.json"
    _edit_json(jpath, lambda d: d["annotations"][0]["segments_info"].append(
        {"id": 4242, "category_id": d["categories"][0]["id"], "iscrowd": 0}))
    ds = Dataset.open("coco", root=coco_copy)
    with pytest.raises(DatasetError) as e:
        ds[0]
    assert "4242" in str(e.value) and "segments_info" in str(e.value) and "no pixels" in str(e.value)
    assert ds.records[0]["pan_seg_file"] in str(e.value)


def test_segment_in_png_but_not_in_json(coco_copy):
    jpath = coco_copy / "coco/annotations/panoptic_val2017.json"
    removed = {}
    _edit_json(jpath, lambda d: removed.setdefault("id", d["annotations"][1]["segments_info"].pop()["id"]))
    ds = Dataset.open("coco", root=coco_copy)
    with pytest.raises(DatasetError) as e:
        ds[1]
    assert str(removed["id"]) in str(e.value) and "not in segments_info" in str(e.value)


def test_unknown_category_and_duplicate_segment(coco_copy):
    jpath = coco_copy / "coco/annotations/panoptic_val2017.json"
    _edit_json(jpath, lambda d: d["annotations"][2]["segments_info"][0].__setitem__("category_id", 999))
    with pytest.raises(DatasetError) as e:
        Dataset.open("coco", root=coco_copy)
    assert "unknown category_id 999" in str(e.value) and "annotations[2].segments_info[0].category_id" in str(e.value)
    assert str(jpath) in str(e.value)
    _edit_json(jpath, lambda d: d["annotations"][2]["segments_info"][0].__setitem__("category_id", d["categories"][0]["id"]))
    _edit_json(jpath, lambda d: d["annotations"][2]["segments_info"].append(dict(d["annotations"][2]["segments_info"][0])))
    with pytest.raises(DatasetError, match="duplicate segment id"):
        Dataset.open("coco", root=coco_copy)


def test_empty_split(coco_copy):
    jpath = coco_copy / "coco/annotations/panoptic_val2017.json"
    _edit_json(jpath, lambda d: d.__setitem__("annotations", []))
    with pytest.raises(DatasetError) as e:
        Dataset.open("coco", root=coco_copy)
    assert "split is empty" in str(e.value) and "coco_2017_val_panoptic" in str(e.value)


def test_semantic_label_errors(mini_root, tmp_path):
    root = tmp_path / "r"
    shutil.copytree(mini_root / "pascal_ctx_d2", root / "pascal_ctx_d2")
    shutil.copytree(mini_root / "vocab", root / "vocab")
    ds = Dataset.open("pc59", root=root)
    lab = ds.records[0]["sem_seg_file"]
    Image.fromarray(np.full((64, 64), 200, np.uint8)).save(lab)  # beyond the 16 classes, not 255
    with pytest.raises(DatasetError) as e:
        ds[0]
    assert lab in str(e.value) and "exceed" in str(e.value)
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(lab)
    with pytest.raises(DatasetError, match="annotation is 12x10 but the image is 64x64"):
        ds[0]
    img = ds.records[1]["file_name"]
    (root / "pascal_ctx_d2/images/validation" / img.split("/")[-1]).unlink()
    with pytest.raises(DatasetError, match="no image for label map"):
        Dataset.open("pc59", root=root)


def test_panoptic_png_decoding(tmp_path):
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 1] = (1, 2, 3)
    Image.fromarray(rgb).save(tmp_path / "p.png")
    ids = read_panoptic_png(tmp_path / "p.png")
    assert ids[0, 1] == 1 + 2 * 256 + 3 * 65536 and ids[0, 0] == 0


def test_unknown_dataset_name():
    with pytest.raises(DatasetError, match="unknown dataset 'ade9000'"):
        Dataset.open("ade9000")
