"""Bad input that used to pass silently or end in a traceback: each is now one error naming the file and
the field, raised before any work is done."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from smart.errors import ConfigError, DatasetError

REPO = Path(__file__).resolve().parents[1]


def test_a_repeated_yaml_key_is_an_error(tmp_path):
    from smart.config import load_params

    text = (REPO / "params.yaml").read_text()
    dup = text.replace("  overlap_threshold: 0.8\n", "  overlap_threshold: 0.8\n  overlap_threshold: 0.5\n", 1)
    assert dup != text
    (tmp_path / "params.yaml").write_text(dup)
    with pytest.raises(ConfigError, match=r"params.yaml: the key 'overlap_threshold' appears twice .*lines \d+ and"):
        load_params(tmp_path / "params.yaml")


def test_snakemake_refuses_a_repeated_key_when_the_dag_is_parsed(tmp_path):
    import shutil

    shutil.copy(REPO / "Snakefile", tmp_path / "Snakefile")
    shutil.copytree(REPO / "workflow", tmp_path / "workflow")
    (tmp_path / "smart").symlink_to(REPO / "smart")
    text = (REPO / "params.yaml").read_text()
    (tmp_path / "params.yaml").write_text(text.replace("profile: mini", "profile: mini\nprofile: paper", 1))
    r = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1"], cwd=tmp_path, capture_output=True,
                       text=True)
    assert r.returncode != 0 and "the key 'profile' appears twice" in r.stdout + r.stderr


@pytest.mark.parametrize("reader", ["label", "panoptic"])
def test_a_jpeg_named_png_is_refused_as_labels(tmp_path, reader):
    from smart.io import read_label_map, read_panoptic_png

    arr = np.zeros((16, 16, 3), np.uint8)
    arr[4:12, 4:12] = 7
    path = tmp_path / "labels.png"
    Image.fromarray(arr[..., 0] if reader == "label" else arr).save(path, format="JPEG")
    with pytest.raises(DatasetError, match=r"labels.png.*stored as JPEG, a lossy format"):
        (read_label_map if reader == "label" else read_panoptic_png)(path)
    Image.fromarray(arr[..., 0] if reader == "label" else arr).save(path, format="PNG")
    (read_label_map if reader == "label" else read_panoptic_png)(path)  # the same pixels as PNG are fine
