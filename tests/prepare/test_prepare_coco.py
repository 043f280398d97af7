import json

import numpy as np
import pytest
from PIL import Image

from smart.cli import main
from smart.data.prepare import coco as coco_mod
from smart.data.prepare.runner import prepare_dataset
from smart.errors import DatasetError

# Hand-written expected 133-class maps (detectron2 COCO order: person 0, car 2, toothbrush 79,
# banner 80, sky-other-merged 119, rug-merged 132; VOID 255; the crowd car segment is included).
EXPECTED = {
    "val": {
        "000000000001": [[0, 0, 255, 2, 2],
                         [0, 0, 255, 2, 2],
                         [132, 132, 132, 132, 255],
                         [132, 132, 132, 132, 255]],
        "000000000002": [[119, 119, 119, 119],
                         [79, 79, 80, 80],
                         [79, 79, 80, 80]],
    },
    "train": {
        "000000000003": [[0, 0, 255],
                         [132, 132, 132]],
    },
}


def _read(path):
    img = Image.open(path)
    assert img.mode == "L"
    return np.asarray(img)


@pytest.mark.parametrize("workers", [1, 2])
def test_convert_val_exact(coco_root, workers):
    coco = coco_root / "coco"
    out = coco / "panoptic_semseg_val2017"
    res = coco_mod.convert_panoptic_to_semseg(coco / "annotations/panoptic_val2017.json",
                                              coco / "panoptic_val2017", out, workers=workers)
    assert res == {"images": 2, "written": 2}
    for stem, exp in EXPECTED["val"].items():
        got = _read(out / f"{stem}.png")
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, np.array(exp, dtype=np.uint8))
    assert sorted(p.name for p in out.iterdir()) == ["000000000001.png", "000000000002.png"]


def test_prepare_cli_and_stamp(coco_root):
    rc = main(["prepare", "coco", "--root", str(coco_root), "--skip-count-check", "--workers", "1"])
    assert rc == 0
    for split, maps in EXPECTED.items():
        for stem, exp in maps.items():
            got = _read(coco_root / f"coco/panoptic_semseg_{split}2017/{stem}.png")
            np.testing.assert_array_equal(got, exp)
    stamp = json.loads((coco_root / ".prepared/coco.json").read_text())
    assert stamp["dataset"] == "coco"
    assert stamp["counts"]["panoptic_semseg_val2017"] == 2
    assert stamp["count_check"] is False


def test_resume_keeps_existing_outputs(coco_root, make_ctx):
    out = coco_root / "coco/panoptic_semseg_val2017"
    out.mkdir(parents=True)
    sentinel = np.full((4, 5), 7, dtype=np.uint8)
    Image.fromarray(sentinel).save(out / "000000000001.png")
    res = coco_mod.convert_panoptic_to_semseg(coco_root / "coco/annotations/panoptic_val2017.json",
                                              coco_root / "coco/panoptic_val2017", out)
    assert res == {"images": 2, "written": 1}
    np.testing.assert_array_equal(_read(out / "000000000001.png"), sentinel)  # not redone
    np.testing.assert_array_equal(_read(out / "000000000002.png"), EXPECTED["val"]["000000000002"])
    assert not list(out.glob(".*partial"))


def test_stamp_skips_second_run(coco_root, make_ctx, caplog):
    ctx = make_ctx(coco_root)
    assert prepare_dataset(ctx, "coco") is True
    (coco_root / "coco/panoptic_semseg_val2017/000000000002.png").unlink()
    assert prepare_dataset(ctx, "coco") is False  # stamp present: nothing done
    assert not (coco_root / "coco/panoptic_semseg_val2017/000000000002.png").exists()
    ctx.force = True
    assert prepare_dataset(ctx, "coco") is True
    assert (coco_root / "coco/panoptic_semseg_val2017/000000000002.png").exists()


def test_count_check(coco_root, make_ctx):
    ctx = make_ctx(coco_root, skip_count_check=False)
    with pytest.raises(DatasetError) as ei:
        prepare_dataset(ctx, "coco")
    msg = str(ei.value)
    assert "val2017" in msg and "5000" in msg and "found 2" in msg
    assert not (coco_root / ".prepared/coco.json").exists()  # no stamp on failure


def test_count_check_cli_exit_code(coco_root, capsys):
    rc = main(["prepare", "coco", "--root", str(coco_root), "--workers", "1"])
    assert rc == 2
    assert "expected 5000" in capsys.readouterr().err


def test_root_from_environment(coco_root, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(coco_root))
    assert main(["prepare", "coco", "--skip-count-check", "--workers", "1"]) == 0
    assert (coco_root / ".prepared/coco.json").is_file()


def _edit_json(path, fn):
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def _convert_val(root):
    coco = root / "coco"
    coco_mod.convert_panoptic_to_semseg(coco / "annotations/panoptic_val2017.json", coco / "panoptic_val2017",
                                        coco / "panoptic_semseg_val2017")


def test_unknown_category(coco_root):
    jpath = coco_root / "coco/annotations/panoptic_val2017.json"
    _edit_json(jpath, lambda d: d["annotations"][1]["segments_info"][2].update(category_id=12))
    with pytest.raises(DatasetError) as ei:
        _convert_val(coco_root)
    msg = str(ei.value)
    assert str(jpath) in msg and "annotations[1].segments_info[2].category_id" in msg and "12" in msg


def test_png_id_missing_from_json(coco_root):
    jpath = coco_root / "coco/annotations/panoptic_val2017.json"
    _edit_json(jpath, lambda d: d["annotations"][0]["segments_info"].pop(1))  # drop the crowd car (id 5)
    with pytest.raises(DatasetError) as ei:
        _convert_val(coco_root)
    msg = str(ei.value)
    assert str(jpath) in msg and "annotations[0].segments_info" in msg
    assert "[5]" in msg and "000000000001.png" in msg


def test_json_id_missing_from_png(coco_root):
    jpath = coco_root / "coco/annotations/panoptic_val2017.json"
    _edit_json(jpath, lambda d: d["annotations"][1]["segments_info"].append(
        {"id": 4242, "category_id": 1, "iscrowd": 0}))
    with pytest.raises(DatasetError) as ei:
        _convert_val(coco_root)
    msg = str(ei.value)
    assert "annotations[1].segments_info" in msg and "4242" in msg and "000000000002.png" in msg


def test_corrupt_png(coco_root):
    png = coco_root / "coco/panoptic_val2017/000000000002.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DatasetError) as ei:
        _convert_val(coco_root)
    assert str(png) in str(ei.value) and "panoptic PNG" in str(ei.value)


def test_empty_split(coco_root):
    jpath = coco_root / "coco/annotations/panoptic_val2017.json"
    _edit_json(jpath, lambda d: d.update(annotations=[]))
    with pytest.raises(DatasetError) as ei:
        _convert_val(coco_root)
    assert str(jpath) in str(ei.value) and "[annotations]" in str(ei.value) and "empty" in str(ei.value)


def test_missing_directory(coco_root, make_ctx):
    import shutil

    shutil.rmtree(coco_root / "coco/panoptic_train2017")
    with pytest.raises(DatasetError) as ei:
        prepare_dataset(make_ctx(coco_root), "coco")
    assert str(coco_root / "coco/panoptic_train2017") in str(ei.value) and "--download" in str(ei.value)


def test_semseg_value_check(coco_root, make_ctx):
    out = coco_root / "coco/panoptic_semseg_val2017"
    out.mkdir(parents=True)
    Image.fromarray(np.full((4, 5), 140, dtype=np.uint8)).save(out / "000000000001.png")  # stale bad output
    with pytest.raises(DatasetError) as ei:
        prepare_dataset(make_ctx(coco_root), "coco")
    assert "000000000001.png" in str(ei.value) and "140" in str(ei.value)
