"""``python -m smart evaluate {panoptic,semantic}``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from evalfixtures import cats, img, random_panoptic, seg, write_set

from smart.cli import main
from smart.eval.io import write_label_png
from smart.eval.panoptic import evaluate_panoptic_files

ROOT = Path(__file__).resolve().parents[2]
CATS = cats((0, "wall", 0), (1, "floor", 0), (2, "person", 1), (3, "car", 1))


@pytest.fixture
def pan_files(tmp_path):
    g, p = random_panoptic(np.random.default_rng(11), 5, CATS, string_ids=True)
    gj, gd = write_set(tmp_path, "gt", g, CATS)
    pj, pd = write_set(tmp_path, "pred", p)
    return gj, gd, pj, pd


def test_panoptic_cli_writes_the_metrics_json(tmp_path, pan_files, capsys):
    gj, gd, pj, pd = pan_files
    out = tmp_path / "m" / "pan.json"
    rc = main(["evaluate", "panoptic", "--gt-json", str(gj), "--gt-dir", str(gd), "--pred-json", str(pj),
               "--pred-dir", str(pd), "--out", str(out), "--no-progress", "--log", str(tmp_path / "log.txt")])
    assert rc == 0
    data = json.loads(out.read_text())
    for split in ("All", "Things", "Stuff"):
        assert set(data[split]) == {"pq", "sq", "rq", "n"}
    ref = evaluate_panoptic_files(gj, pj, gd, pd, show_progress=False)
    assert data["All"] == ref["All"] and data["Things"] == ref["Things"]
    assert set(data["per_class"]) == {"0", "1", "2", "3"}
    assert "panopticapi" in data["definitions"]["implementation"]
    assert "PQ" in capsys.readouterr().out
    assert (tmp_path / "log.txt").exists()


def test_panoptic_cli_bad_input_exits_2_naming_image_and_segment(tmp_path, capsys):
    gt = np.array([[1, 1, 2, 2]])
    gj, gd = write_set(tmp_path, "gt", [img("im1", gt, [seg(1, 0, gt), seg(2, 2, gt)])], CATS)
    pj, pd = write_set(tmp_path, "pred", [img("im1", gt, [seg(1, 0)])])  # segment 2 not in the JSON
    rc = main(["evaluate", "panoptic", "--gt-json", str(gj), "--pred-json", str(pj), "--no-progress"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "im1" in err and "segment 2" in err


def test_panoptic_cli_empty_gt_stuff(tmp_path, capsys):
    """A GT stuff segment without pixels (Mask2Former's ADE20K-150 GT): an error that names the flag,
    and with the flag a false negative of its category."""
    gt = np.array([[1, 1, 2, 2]])
    gj, gd = write_set(tmp_path, "gt", [img("im1", gt, [seg(1, 0, gt), seg(2, 2, gt), seg(3, 1, area=5)])], CATS)
    pj, pd = write_set(tmp_path, "pred", [img("im1", gt, [seg(1, 0), seg(2, 2)])])
    args = ["evaluate", "panoptic", "--gt-json", str(gj), "--pred-json", str(pj), "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "segment 3" in err and "--empty-gt-stuff" in err
    out = tmp_path / "m.json"
    assert main(args + ["--empty-gt-stuff", "--out", str(out)]) == 0
    per_class = json.loads(out.read_text())["per_class"]
    assert per_class["1"]["fn"] == 1 and per_class["0"]["tp"] == 1 and per_class["2"]["tp"] == 1


def test_semantic_cli(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for i in range(4):
        g = rng.integers(0, 5, size=(8, 9))
        g[0] = 255
        write_label_png(tmp_path / "gt" / f"x{i}.png", g)
        write_label_png(tmp_path / "pred" / f"x{i}.png", rng.integers(0, 5, size=(8, 9)))
    (tmp_path / "names.txt").write_text("a\nb\nc\nd\ne\n")
    out = tmp_path / "sem.json"
    rc = main(["evaluate", "semantic", "--gt-dir", str(tmp_path / "gt"), "--pred-dir", str(tmp_path / "pred"),
               "--num-classes", "5", "--ignore-label", "255", "--out", str(out), "--workers", "2",
               "--class-names", str(tmp_path / "names.txt"), "--no-progress"])
    assert rc == 0
    data = json.loads(out.read_text())
    assert {"mIoU", "mIoU_d2v06", "fwIoU", "pACC", "mACC", "per_class", "definitions"} <= set(data)
    assert data["per_class"]["4"]["name"] == "e"
    assert 0 < data["mIoU"] < 100
    printed = capsys.readouterr().out
    assert "mIoU" in printed and "detectron2 HEAD" in printed  # the definition is printed
    assert "f3c1bc19" in data["definitions"]["mIoU"]


def test_semantic_cli_bad_label_exits_2(tmp_path, capsys):
    write_label_png(tmp_path / "gt" / "a.png", np.array([[1, 7]]))
    write_label_png(tmp_path / "pred" / "a.png", np.array([[1, 1]]))
    rc = main(["evaluate", "semantic", "--gt-dir", str(tmp_path / "gt"), "--pred-dir", str(tmp_path / "pred"),
               "--num-classes", "5", "--ignore-label", "255", "--no-progress"])
    assert rc == 2
    assert "'a'" in capsys.readouterr().err


def test_module_entry_point(tmp_path, pan_files):
    gj, gd, pj, pd = pan_files
    out = tmp_path / "m.json"
    r = subprocess.run([sys.executable, "-m", "smart", "evaluate", "panoptic", "--gt-json", str(gj),
                        "--pred-json", str(pj), "--out", str(out)], capture_output=True, text=True,
                       cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text())["All"]["n"] >= 1
