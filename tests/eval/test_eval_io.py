"""Writers: COCO-panoptic predictions, semantic PNGs, metrics JSON."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from smart.errors import InputError
from smart.eval.io import PanopticPredictionWriter, read_panoptic_png, to_jsonable, write_metrics_json
from smart.eval.summary import flat_metrics, metrics_record


def test_panoptic_writer_round_trip(tmp_path):
    ids = np.array([[0, 3, 3], [70000, 70000, 3]])
    with PanopticPredictionWriter(tmp_path / "pred.json", categories=[{"id": 1, "isthing": 1}]) as w:
        w.add("ADE_val_00000001", ids, [{"id": 3, "category_id": 1, "isthing": True, "area": 99},
                                        {"id": 70000, "category_id": 0}])
    data = json.loads((tmp_path / "pred.json").read_text())
    ann = data["annotations"][0]
    assert ann["image_id"] == "ADE_val_00000001" and ann["file_name"] == "ADE_val_00000001.png"
    assert ann["segments_info"] == [{"id": 3, "category_id": 1, "area": 3, "iscrowd": 0, "isthing": 1},
                                    {"id": 70000, "category_id": 0, "area": 2, "iscrowd": 0}]
    assert read_panoptic_png(tmp_path / "pred" / "ADE_val_00000001.png").tolist() == ids.tolist()
    assert data["categories"] == [{"id": 1, "isthing": 1}]


@pytest.mark.parametrize("segments, needle", [
    ([{"id": 3, "category_id": 1}], "segment 5"),  # id 5 in the map, not listed
    ([{"id": 3, "category_id": 1}, {"id": 5, "category_id": 1}, {"id": 8, "category_id": 1}], "segment 8"),
    ([{"id": 3, "category_id": 1}, {"id": 3, "category_id": 1}, {"id": 5, "category_id": 1}], "duplicate"),
])
def test_panoptic_writer_rejects_inconsistent_segments(tmp_path, segments, needle):
    w = PanopticPredictionWriter(tmp_path / "p.json")
    with pytest.raises(InputError, match=needle) as ei:
        w.add(42, np.array([[3, 5]]), segments)
    assert "image 42" in str(ei.value)


def test_metrics_json_null_for_nan_and_numpy_types(tmp_path):
    obj = {"a": np.float64("nan"), "b": np.int64(3), 7: [np.float32(0.5), math.inf], "c": np.array([1, 2])}
    assert to_jsonable(obj) == {"a": None, "b": 3, "7": [0.5, None], "c": [1, 2]}
    write_metrics_json(tmp_path / "x" / "m.json", obj)
    assert json.loads((tmp_path / "x" / "m.json").read_text())["a"] is None


def test_combined_record_is_labelled():
    pan = {s: {"pq": 0.5, "sq": 0.75, "rq": 2 / 3, "n": 2} for s in ("All", "Things", "Stuff")}
    pan["definitions"] = {"implementation": "smart.eval.panoptic"}
    sem = {"mIoU": 40.0, "mIoU_d2v06": 30.0, "fwIoU": 50.0, "mACC": 60.0, "pACC": 70.0,
           "definitions": {"mIoU": "detectron2 HEAD"}}
    flat = flat_metrics(pan, sem)
    assert flat["PQ"] == 50.0 and flat["RQ_st"] == pytest.approx(200 / 3) and flat["mIoU_d2v06"] == 30.0
    rec = metrics_record(pan, sem, {"git_commit": "abc"})
    assert rec["definitions"]["panoptic"]["implementation"] == "smart.eval.panoptic"
    assert rec["definitions"]["semantic"]["mIoU"] == "detectron2 HEAD"
    assert rec["definitions"]["provenance"]["git_commit"] == "abc"


def test_group_metrics_average_the_classes_of_each_group():
    from smart.eval.summary import group_metrics

    pan = {"per_class": {"0": {"name": "a", "pq": 0.5, "counted": True}, "1": {"name": "b", "pq": 0.1, "counted": True},
                         "2": {"name": "c", "pq": 0.0, "counted": False}, "3": {"name": "d", "pq": 0.9, "counted": True}}}
    sem = {"per_class": {"0": {"name": "a", "IoU": 40.0}, "1": {"name": "b", "IoU": None},
                         "2": {"name": "c", "IoU": 10.0}, "3": {"name": "d", "IoU": 30.0}}}
    groups = {"a": "seen", "b": "seen", "c": "novel_attribute", "d": "novel_combination"}
    m = group_metrics(pan, sem, groups)
    assert m["PQ_seen"] == pytest.approx(30.0) and m["PQ_novel_comb"] == pytest.approx(90.0)
    assert math.isnan(m["PQ_novel_attr"])  # its only class is not counted (no TP, FP or FN)
    assert m["mIoU_seen"] == 40.0 and m["mIoU_novel_attr"] == 10.0 and m["mIoU_novel_comb"] == 30.0
    assert set(flat_metrics(pan | {"All": {"pq": 0.5, "sq": 0.8, "rq": 0.6}, "Things": {"pq": 0.5, "sq": 0.8, "rq": 0.6},
                                   "Stuff": {"pq": 0.5, "sq": 0.8, "rq": 0.6}}, None, groups)) >= {
        "PQ", "PQ_seen", "PQ_novel_comb", "PQ_novel_attr"}
