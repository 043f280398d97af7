import json
import zlib

import numpy as np
import pytest
from PIL import Image

from smart.data.prepare import ade20k
from smart.data.prepare.runner import prepare_dataset
from smart.errors import DatasetError

# Mask2Former's ADE20K palette (prepare_ade20k_pan_seg.py PALETTE), written out by hand:
WALL = 120 + 120 * 256 + 120 * 65536  # category 0 -> (120, 120, 120)
SKY = 6 + 230 * 256 + 230 * 65536  # category 2 -> (6, 230, 230)
FLOOR = 80 + 50 * 256 + 50 * 65536  # category 3 -> (80, 50, 50)
BED = 204 + 5 * 256 + 255 * 65536  # category 7 -> (204, 5, 255)
PERSON = 150 + 5 * 256 + 61 * 65536  # category 12 -> (150, 5, 61)

EXPECTED_SEM = {
    "validation": {
        "ADE_val_00000001.png": [[0, 0, 0, 0, 3, 3],
                                 [0, 7, 7, 0, 3, 3],
                                 [255, 7, 7, 12, 12, 3],
                                 [255, 15, 15, 12, 12, 3]],
        "ADE_val_00000002.png": [[2, 7, 7, 0],
                                 [0, 7, 7, 0],
                                 [7, 7, 0, 0]],
    },
    "training": {"ADE_train_00000001.png": [[0, 0, 7], [3, 3, 7]]},
}


def _jittered(stem, base, taken, n):
    """Independent re-statement of the documented jitter rule (seed [0, crc32(stem)])."""
    rng = np.random.default_rng([0, zlib.crc32(stem.encode())])
    out = []
    for _ in range(n):
        color = tuple(base)
        while color in taken:
            color = tuple(int(v) for v in np.clip(np.array(base) + rng.integers(-30, 31, size=3), 0, 255))
        taken.add(color)
        out.append(color[0] + 256 * color[1] + 65536 * color[2])
    return out


def _ids(path):
    rgb = np.asarray(Image.open(path)).astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def test_semantic_exact(ade_root):
    ade = ade_root / "ADEChallengeData2016"
    for split, maps in EXPECTED_SEM.items():
        res = ade20k.convert_semantic(ade / "annotations" / split, ade / "annotations_detectron2" / split)
        assert res["images"] == len(maps)
        for name, exp in maps.items():
            got = np.asarray(Image.open(ade / "annotations_detectron2" / split / name))
            assert got.dtype == np.uint8
            np.testing.assert_array_equal(got, exp)


def _convert_val(ade_root, **kw):
    ade = ade_root / "ADEChallengeData2016"
    return ade20k.convert_panoptic(ade / "images/validation", ade / "annotations/validation",
                                   ade / "annotations_instance/validation", ade / "ade20k_panoptic_val",
                                   ade / "ade20k_panoptic_val.json", **kw)


def test_panoptic_exact(ade_root):
    res = _convert_val(ade_root)
    assert res == {"images": 2, "written": 2}
    ade = ade_root / "ADEChallengeData2016"
    F, P = FLOOR, PERSON
    np.testing.assert_array_equal(_ids(ade / "ade20k_panoptic_val/ADE_val_00000001.png"), [
        [WALL, WALL, WALL, WALL, F, F],
        [WALL, BED, BED, WALL, F, F],
        [0, BED, BED, P, P, F],
        [0, 0, 0, P, P, P],  # table pixels (thing, no instance) stay VOID; the person covers a floor pixel
    ])
    # (the draws for this stem never hit a reserved stuff colour, so only black and BED are "taken")
    j3, j5 = _jittered("ADE_val_00000002", (204, 5, 255), {(0, 0, 0), (204, 5, 255)}, 2)
    assert len({BED, j3, j5}) == 3
    np.testing.assert_array_equal(_ids(ade / "ade20k_panoptic_val/ADE_val_00000002.png"), [
        [j3, BED, BED, WALL],  # the sky pixel is covered by bed instance G=3: no sky pixel is left
        [WALL, BED, BED, WALL],
        [j5, j5, WALL, WALL],
    ])
    # Areas and boxes are those of the painted masks, as in the reference: the floor segment keeps the
    # pixel the person covers (area 6, not 5), and the sky segment is listed with no pixel in the PNG.
    data = json.loads((ade / "ade20k_panoptic_val.json").read_text())
    assert data["images"] == [
        {"id": "ADE_val_00000001", "file_name": "ADE_val_00000001.jpg", "width": 6, "height": 4},
        {"id": "ADE_val_00000002", "file_name": "ADE_val_00000002.jpg", "width": 4, "height": 3},
    ]
    assert data["annotations"] == [
        {"image_id": "ADE_val_00000001", "file_name": "ADE_val_00000001.png", "segments_info": [
            {"id": WALL, "category_id": 0, "area": 6, "bbox": [0, 0, 4, 2], "iscrowd": 0},
            {"id": FLOOR, "category_id": 3, "area": 6, "bbox": [4, 0, 2, 4], "iscrowd": 0},
            {"id": BED, "category_id": 7, "area": 4, "bbox": [1, 1, 2, 2], "iscrowd": 0},
            {"id": PERSON, "category_id": 12, "area": 5, "bbox": [3, 2, 3, 2], "iscrowd": 0},
        ]},
        {"image_id": "ADE_val_00000002", "file_name": "ADE_val_00000002.png", "segments_info": [
            {"id": WALL, "category_id": 0, "area": 5, "bbox": [0, 0, 4, 3], "iscrowd": 0},
            {"id": SKY, "category_id": 2, "area": 1, "bbox": [0, 0, 1, 1], "iscrowd": 0},
            {"id": BED, "category_id": 7, "area": 4, "bbox": [1, 0, 2, 2], "iscrowd": 0},
            {"id": j3, "category_id": 7, "area": 1, "bbox": [0, 0, 1, 1], "iscrowd": 0},
            {"id": j5, "category_id": 7, "area": 2, "bbox": [0, 2, 2, 1], "iscrowd": 0},
        ]},
    ]
    cats = data["categories"]
    assert len(cats) == 150 and sum(c["isthing"] for c in cats) == 100
    assert cats[0] == {"id": 0, "name": "wall", "isthing": 0, "color": [120, 120, 120]}
    assert cats[7] == {"id": 7, "name": "bed", "isthing": 1, "color": [204, 5, 255]}
    assert cats[8]["name"] == "window "  # the reference's names, trailing space included
    assert cats[12]["color"] == [150, 5, 61] and cats[12]["isthing"] == 1
    assert cats[149] == {"id": 149, "name": "flag", "isthing": 1, "color": [92, 0, 255]}


def test_panoptic_byte_reproducible_and_resume(ade_root, tmp_path):
    ade = ade_root / "ADEChallengeData2016"
    _convert_val(ade_root, journal=tmp_path / "j.jsonl")
    first = {p.name: p.read_bytes() for p in (ade / "ade20k_panoptic_val").iterdir()}
    first_json = (ade / "ade20k_panoptic_val.json").read_bytes()
    assert not (tmp_path / "j.jsonl").exists()  # journal removed once the JSON is written
    # an interrupted run: JSON missing, one PNG missing, journal holding the other image
    (ade / "ade20k_panoptic_val.json").unlink()
    (ade / "ade20k_panoptic_val/ADE_val_00000002.png").unlink()
    data = json.loads(first_json)
    (tmp_path / "j.jsonl").write_text(
        json.dumps({"key": "ADE_val_00000001", "value": [data["images"][0], data["annotations"][0]]})
        + "\n{\"key\": \"ADE_val_0000", encoding="utf-8")  # truncated last line
    res = _convert_val(ade_root, journal=tmp_path / "j.jsonl")
    assert res == {"images": 2, "written": 1}
    assert {p.name: p.read_bytes() for p in (ade / "ade20k_panoptic_val").iterdir()} == first
    assert (ade / "ade20k_panoptic_val.json").read_bytes() == first_json
    # a complete output is kept as is
    assert _convert_val(ade_root) == {"images": 2, "written": 0}


def test_instance_mapping_default_and_file(ade_root):
    m = ade20k.default_instance_mapping()
    assert len(m) == 100
    # first / some / last rows of Mask2Former's ade20k_instance_catid_mapping.txt (1-based there)
    assert (m[0], m[1], m[2], m[3], m[4], m[99]) == (7, 8, 10, 12, 14, 149)
    ade = ade_root / "ADEChallengeData2016"
    lines = ["Instacne100\tSceneParse150\tFullADE20K"]
    lines += [f"{k + 1}\t\t{v + 1}\t\t{1000 + k}" for k, v in sorted(m.items())]
    lines.insert(6, "5\t\t15\t\t783")  # a repeated instance row, as in the real file
    (ade / "ade20k_instance_catid_mapping.txt").write_text("\n".join(lines) + "\n")
    assert ade20k.find_instance_mapping(ade) == m
    (ade / "ade20k_instance_catid_mapping.txt").write_text("header\n1 2 3\n")
    with pytest.raises(DatasetError) as ei:
        ade20k.find_instance_mapping(ade)
    assert "ade20k_instance_catid_mapping.txt" in str(ei.value) and "SceneParse150" in str(ei.value)


def test_prepare_full(ade_root, make_ctx):
    assert prepare_dataset(make_ctx(ade_root), "ade20k_150")
    ade = ade_root / "ADEChallengeData2016"
    train = json.loads((ade / "ade20k_panoptic_train.json").read_text())
    assert train["annotations"][0]["segments_info"] == [
        {"id": WALL, "category_id": 0, "area": 2, "bbox": [0, 0, 2, 1], "iscrowd": 0},
        {"id": FLOOR, "category_id": 3, "area": 2, "bbox": [0, 1, 2, 1], "iscrowd": 0},
        {"id": BED, "category_id": 7, "area": 2, "bbox": [2, 0, 1, 2], "iscrowd": 0},
    ]
    np.testing.assert_array_equal(
        np.asarray(Image.open(ade / "annotations_detectron2/training/ADE_train_00000001.png")),
        [[0, 0, 7], [3, 3, 7]])
    assert (ade_root / ".prepared/ade20k_150.json").is_file()
    assert not list((ade_root / ".prepared/work").glob("*.jsonl"))


def test_count_check(ade_root, make_ctx):
    with pytest.raises(DatasetError) as ei:
        prepare_dataset(make_ctx(ade_root, skip_count_check=False), "ade20k_150")
    assert "images/validation" in str(ei.value) and "2000" in str(ei.value) and "found 2" in str(ei.value)


def _write_instance(ade_root, stem, r, g):
    path = ade_root / f"ADEChallengeData2016/annotations_instance/validation/{stem}.png"
    r, g = np.array(r), np.array(g)
    Image.fromarray(np.stack([r, g, np.zeros_like(r)], -1).astype(np.uint8)).save(path)
    return path


def test_instance_with_two_classes(ade_root):
    path = _write_instance(ade_root, "ADE_val_00000002", [[1, 1, 1, 0], [0, 2, 1, 0], [1, 1, 0, 0]],
                           [[3, 1, 1, 0], [0, 1, 1, 0], [5, 5, 0, 0]])
    with pytest.raises(DatasetError) as ei:
        _convert_val(ade_root)
    msg = str(ei.value)
    assert str(path) in msg and "G=1" in msg and "several instance classes" in msg


def test_unknown_instance_class(ade_root):
    path = _write_instance(ade_root, "ADE_val_00000002", [[1, 1, 1, 0], [0, 1, 1, 0], [101, 101, 0, 0]],
                           [[3, 1, 1, 0], [0, 1, 1, 0], [5, 5, 0, 0]])
    with pytest.raises(DatasetError) as ei:
        _convert_val(ade_root)
    msg = str(ei.value)
    assert str(path) in msg and "G=5 (R channel)" in msg and "101" in msg


def test_unknown_semantic_class(ade_root):
    path = ade_root / "ADEChallengeData2016/annotations/validation/ADE_val_00000002.png"
    Image.fromarray(np.array([[3, 8, 8, 1], [1, 8, 8, 1], [8, 8, 1, 151]], dtype=np.uint8)).save(path)
    with pytest.raises(DatasetError) as ei:
        _convert_val(ade_root)
    assert str(path) in str(ei.value) and "pixel values" in str(ei.value) and "151" in str(ei.value)


def test_corrupt_instance_png(ade_root):
    path = ade_root / "ADEChallengeData2016/annotations_instance/validation/ADE_val_00000001.png"
    path.write_bytes(b"not a png")
    with pytest.raises(DatasetError) as ei:
        _convert_val(ade_root)
    assert str(path) in str(ei.value) and "instance PNG" in str(ei.value)


def test_size_mismatch(ade_root):
    path = ade_root / "ADEChallengeData2016/annotations/validation/ADE_val_00000001.png"
    Image.fromarray(np.ones((2, 2), dtype=np.uint8)).save(path)
    with pytest.raises(DatasetError) as ei:
        _convert_val(ade_root)
    assert str(path) in str(ei.value) and "[size]" in str(ei.value)


def test_missing_instance_dir(ade_root, make_ctx):
    import shutil

    shutil.rmtree(ade_root / "ADEChallengeData2016/annotations_instance")
    with pytest.raises(DatasetError) as ei:
        prepare_dataset(make_ctx(ade_root), "ade20k_150")
    assert "annotations_instance" in str(ei.value) and "missing directory" in str(ei.value)


def test_empty_split(ade_root):
    for p in (ade_root / "ADEChallengeData2016/images/validation").iterdir():
        p.unlink()
    with pytest.raises(DatasetError) as ei:
        _convert_val(ade_root)
    assert "images/validation" in str(ei.value) and "empty split" in str(ei.value)


def test_prepared_gt_loads_and_scores_as_panopticapi(ade_root, make_ctx):
    """The reference's GT (a stuff segment with no pixel) loads, is no target, and counts as a false
    negative when the GT is scored against itself, as panopticapi counts it."""
    from smart.data.registry import Dataset
    from smart.eval.cell import gt_targets
    from smart.eval.panoptic import evaluate_panoptic_files

    assert prepare_dataset(make_ctx(ade_root), "ade20k_150")
    ds = Dataset.open("ade150", profile="paper", root=ade_root)
    s = ds[1]  # ADE_val_00000002: the sky segment has no pixel
    assert SKY in {x["id"] for x in s["segments_info"]} and not (s["pan_ids"] == SKY).any()
    t = gt_targets(s, len(ds.vocab), 255)
    assert t["masks"].shape[0] == 4 and 2 not in t["labels"].tolist() and bool(t["masks"].flatten(1).any(1).all())

    ade = ade_root / "ADEChallengeData2016"
    gt_json, png_dir = ade / "ade20k_panoptic_val.json", ade / "ade20k_panoptic_val"
    data = json.loads(gt_json.read_text())
    pred = {"annotations": [dict(a, segments_info=[x for x in a["segments_info"]
                                                   if (_ids(png_dir / a["file_name"]) == x["id"]).any()])
                            for a in data["annotations"]]}
    pred_json = ade_root / "pred.json"
    pred_json.write_text(json.dumps(pred))
    with pytest.raises(Exception, match="--empty-gt-stuff"):
        evaluate_panoptic_files(gt_json, pred_json, png_dir, png_dir, show_progress=False)
    res = evaluate_panoptic_files(gt_json, pred_json, png_dir, png_dir, empty_gt_stuff=True, show_progress=False)
    assert res["per_class"][2]["fn"] == 1 and res["per_class"][2]["tp"] == 0  # the covered sky
    assert sum(c["fn"] for c in res["per_class"].values()) == 1
    assert all(c["fp"] == 0 for c in res["per_class"].values())
    # the floor of image 1 matches with IoU 5/6: its union takes the JSON area (6), not its 5 pixels
    assert res["per_class"][3]["iou_sum"] == pytest.approx(5 / 6) and res["per_class"][3]["tp"] == 1
    # a thing segment without pixels stays an error of the loader
    data["annotations"][1]["segments_info"].append({"id": 99, "category_id": 7, "area": 1, "bbox": [0, 0, 1, 1],
                                                    "iscrowd": 0})
    gt_json.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match="no pixels"):
        Dataset.open("ade150", profile="paper", root=ade_root)[1]


def test_id_check_admits_empty_stuff_only(ade_root):
    from smart.data.prepare import checks

    _convert_val(ade_root)
    ade = ade_root / "ADEChallengeData2016"
    json_path, png_dir = ade / "ade20k_panoptic_val.json", ade / "ade20k_panoptic_val"
    assert checks.check_panoptic_ids(json_path, png_dir, empty_stuff=True) == 2
    with pytest.raises(DatasetError, match=f"segments_info ids \\[{SKY}\\] do not occur"):
        checks.check_panoptic_ids(json_path, png_dir)  # the covered sky
    data = json.loads(json_path.read_text())
    data["annotations"][0]["segments_info"].append({"id": 77, "category_id": 7, "area": 1, "bbox": [0, 0, 1, 1],
                                                    "iscrowd": 0})  # a bed (thing) without pixels
    json_path.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match="ids \\[77\\] do not occur"):
        checks.check_panoptic_ids(json_path, png_dir, empty_stuff=True)


def test_output_of_an_earlier_converter_is_refused(ade_root, make_ctx):
    assert prepare_dataset(make_ctx(ade_root), "ade20k_150")
    stamp_file = ade_root / ".prepared/ade20k_150.json"
    stamp = json.loads(stamp_file.read_text())
    assert stamp["converter"] == 2
    del stamp["converter"]  # a stamp written before converters had versions
    stamp_file.write_text(json.dumps(stamp))
    kept = (ade_root / "ADEChallengeData2016/ade20k_panoptic_val.json").read_bytes()
    with pytest.raises(DatasetError) as ei:
        prepare_dataset(make_ctx(ade_root, force=True), "ade20k_150")
    msg = str(ei.value)
    assert str(stamp_file) in msg and "converter version 1" in msg and "ade20k_panoptic_val" in msg
    assert (ade_root / "ADEChallengeData2016/ade20k_panoptic_val.json").read_bytes() == kept  # nothing touched
