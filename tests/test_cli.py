import json
import subprocess
import sys

import pytest
from PIL import Image

from smart.cli import COMMANDS, main


@pytest.mark.parametrize("name", ["coco_train", "ade150", "ade847", "mapillary", "pc59", "pc459", "refcoco", "refcoco+"])
def test_show_dataset_draws_a_grid(mini_root, tmp_path, name):
    out = tmp_path / f"{name}.png"
    assert main(["show-dataset", name, "--root", str(mini_root), "--out", str(out), "-n", "4"]) == 0
    with Image.open(out) as im:
        assert im.size[0] > 400 and im.size[1] > 150


def test_check_dataset_writes_statistics(mini_root, tmp_path):
    out = tmp_path / "ade150.json"
    assert main(["check-dataset", "ade150", "--root", str(mini_root), "--out", str(out)]) == 0
    stats = json.loads(out.read_text())
    assert stats["images"] == 12 and stats["num_classes"] == 30
    assert stats["held_out_classes_present"]
    assert set(stats["novel_attribute_classes_present"]) <= set(stats["held_out_classes_present"])
    assert 0 < stats["ignored_pixel_fraction"] < 0.5


def test_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys):
    assert main(["check-dataset", "coco", "--root", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "missing" in err and "Traceback" not in err


def test_verbs_are_registered():
    out = subprocess.run([sys.executable, "-m", "smart", "--help"], capture_output=True, text=True, check=True).stdout
    for verb in ("make-mini", "show-dataset", "check-dataset", "table"):
        assert verb in COMMANDS and verb in out


def test_make_mini_reads_params(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("""
mini_world:
  seed: 3
  image_size: 64
  sizes: {coco_train: 2, coco_val: 2, ade_val: 2, mapillary_val: 2, pascal_val: 2, refer_val: 2}
  captions: {num_images: 4, image_size: 32, shard_size: 4, group_size: 2}
""")
    assert main(["make-mini", "pascal", "--params", str(params), "--out", str(tmp_path / "w"), "--workers", "1"]) == 0
    stamp = json.loads((tmp_path / "w/.mini/pascal.json").read_text())
    assert stamp["val_images"] == 2 and stamp["seed"] == 3
    params.write_text(params.read_text().replace("seed: 3", "seed: three"))
    assert main(["make-mini", "pascal", "--params", str(params), "--out", str(tmp_path / "w")]) == 2
