import json
import shutil

import numpy as np
import pytest

from smart.data.prepare import mapillary
from smart.data.prepare.runner import prepare_dataset
from smart.errors import DatasetError


def test_verify_ok(mapillary_root, make_ctx):
    assert mapillary.verify(mapillary_root / "mapillary_vistas") == {"images": 2}
    assert prepare_dataset(make_ctx(mapillary_root), "mapillary_vistas")
    stamp = json.loads((mapillary_root / ".prepared/mapillary_vistas.json").read_text())
    assert stamp["counts"]["validation/images"] == 2


def test_count_check(mapillary_root, make_ctx):
    with pytest.raises(DatasetError) as ei:
        prepare_dataset(make_ctx(mapillary_root, skip_count_check=False), "mapillary_vistas")
    assert "validation/images" in str(ei.value) and "2000" in str(ei.value)


def _val(root):
    return root / "mapillary_vistas/validation"


def test_missing_label(mapillary_root):
    path = _val(mapillary_root) / "labels/img_b.png"
    path.unlink()
    with pytest.raises(DatasetError) as ei:
        mapillary.verify(mapillary_root / "mapillary_vistas")
    assert str(path) in str(ei.value) and "[labels]" in str(ei.value)


def test_png_id_not_in_json(mapillary_root, builders):
    path = _val(mapillary_root) / "panoptic/img_a.png"
    builders.write_png(path, builders.ids_to_rgb(np.array([[1, 1, 0], [2, 2, 77]])))
    with pytest.raises(DatasetError) as ei:
        mapillary.verify(mapillary_root / "mapillary_vistas")
    msg = str(ei.value)
    assert "panoptic_2018.json" in msg and "annotations[0].segments_info" in msg and "77" in msg


def test_unknown_category(mapillary_root):
    jpath = _val(mapillary_root) / "panoptic/panoptic_2018.json"
    data = json.loads(jpath.read_text())
    data["annotations"][1]["segments_info"][0]["category_id"] = 66
    jpath.write_text(json.dumps(data))
    with pytest.raises(DatasetError) as ei:
        mapillary.verify(mapillary_root / "mapillary_vistas")
    assert str(jpath) in str(ei.value) and "annotations[1].segments_info[0].category_id" in str(ei.value)


def test_image_without_annotation(mapillary_root):
    jpath = _val(mapillary_root) / "panoptic/panoptic_2018.json"
    data = json.loads(jpath.read_text())
    data["annotations"].pop(0)
    jpath.write_text(json.dumps(data))
    with pytest.raises(DatasetError) as ei:
        mapillary.verify(mapillary_root / "mapillary_vistas")
    assert str(jpath) in str(ei.value) and "images[0].id" in str(ei.value)


def test_v2_layout_hint(mapillary_root):
    val = _val(mapillary_root)
    (val / "v1.2").mkdir()
    shutil.move(str(val / "labels"), str(val / "v1.2/labels"))
    with pytest.raises(DatasetError) as ei:
        mapillary.verify(mapillary_root / "mapillary_vistas")
    assert "v1.2" in str(ei.value) and str(val / "labels") in str(ei.value)


def test_missing_dataset_and_manual_download(tmp_path, make_ctx):
    with pytest.raises(DatasetError) as ei:
        prepare_dataset(make_ctx(tmp_path), "mapillary_vistas")
    assert "mapillary_vistas" in str(ei.value) and "register" in str(ei.value)
    with pytest.raises(DatasetError) as ei:
        prepare_dataset(make_ctx(tmp_path, download=True), "mapillary_vistas")
    msg = str(ei.value)
    assert "no public URL" in msg and str(tmp_path / "raw/mapillary-vistas-dataset_public_v1.2.zip") in msg
