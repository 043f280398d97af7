import io
import json
import shutil
import zipfile

import numpy as np
import pytest
from PIL import Image

from smart.cli import main
from smart.data.prepare import ALL_ORDER, DATASETS
from smart.data.prepare.runner import prepare_dataset
from smart.errors import DatasetError

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_all(tmp_path, builders, capsys):
    root = tmp_path / "datasets"
    builders.coco(root)
    builders.ade(root)
    builders.ade847(root, ade_level=True)
    builders.pascal(root)
    builders.mapillary(root)
    builders.refer(root / "raw", "refcoco")
    builders.refer(root / "raw", "refcoco+")
    builders.coco2014(root)
    rc = main(["prepare", "all", "--root", str(root), "--skip-count-check", "--workers", "1"])
    assert rc == 0, capsys.readouterr().err
    stamps = [p for p in (root / ".prepared").glob("*.json") if not p.name.endswith(".run.json")]
    assert sorted(p.stem for p in stamps) == sorted(DATASETS)
    assert "prepared_at" not in (root / ".prepared/coco.json").read_text()  # when: in the run record
    assert "prepared_at" in (root / ".prepared/coco.json.run.json").read_text()
    assert ALL_ORDER.index("pascal_ctx_59") < ALL_ORDER.index("pascal_ctx_459")
    # a second run only reports the stamps
    assert main(["prepare", "all", "--root", str(root), "--skip-count-check"]) == 0


def test_error_exit_code_and_message(tmp_path, capsys):
    rc = main(["prepare", "ade20k_150", "--root", str(tmp_path)])
    assert rc == 2
    err = capsys.readouterr().err
    assert "error:" in err and str(tmp_path / "ADEChallengeData2016") in err


def test_nested_coco_zip_is_extracted(coco_root, make_ctx):
    """The panoptic PNGs ship as annotations/panoptic_<split>2017.zip inside the annotation zip."""
    coco = coco_root / "coco"
    for split in ("train", "val"):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for p in sorted((coco / f"panoptic_{split}2017").iterdir()):
                zf.writestr(f"panoptic_{split}2017/{p.name}", p.read_bytes())
        (coco / f"annotations/panoptic_{split}2017.zip").write_bytes(buf.getvalue())
        shutil.rmtree(coco / f"panoptic_{split}2017")
    assert prepare_dataset(make_ctx(coco_root), "coco")
    np.testing.assert_array_equal(np.asarray(Image.open(coco / "panoptic_semseg_train2017/000000000003.png")),
                                  [[0, 0, 255], [132, 132, 132]])
    assert "panoptic_val2017.zip" in json.loads((coco_root / "checksums.json").read_text())


def test_error_from_worker_process(coco_root, make_ctx):
    png = coco_root / "coco/panoptic_val2017/000000000002.png"
    png.write_bytes(b"broken")
    with pytest.raises(DatasetError) as ei:
        prepare_dataset(make_ctx(coco_root, workers=2), "coco")
    assert str(png) in str(ei.value) and "[panoptic PNG]" in str(ei.value)


def test_archive_layout_mismatch(tmp_path, make_ctx):
    root = tmp_path / "datasets"
    (root / "raw").mkdir(parents=True)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("wrong_top/index_ade20k.pkl", b"x")
    (root / "raw/ADE20K_2021_17_01.zip").write_bytes(buf.getvalue())
    with pytest.raises(DatasetError) as ei:
        prepare_dataset(make_ctx(root), "ade20k_847")
    msg = str(ei.value)
    assert str(root / "raw/ADE20K_2021_17_01.zip") in msg and "ADE20K_2021_17_01/index_ade20k.pkl" in msg


def test_bad_workers(tmp_path):
    assert main(["prepare", "coco", "--root", str(tmp_path), "--workers", "0"]) == 2
