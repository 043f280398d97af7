"""Your own dataset as a benchmark (params.yaml ``user_datasets``; smart/data/registry.py UserDataset):
declared, checked like the built-in ones, scored with the same protocol, shown in its own table, and
every bad declaration named."""

import json
import os

import numpy as np
import pytest
import yaml
from PIL import Image

from smart.config import load_params
from smart.errors import ConfigError, DatasetError, InputError
from smart.experiment import Experiment
from smart.io import id2rgb

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CATEGORIES = [{"id": 7, "name": "red disc", "synonyms": ["red disc", "red circle"], "isthing": 1},
              {"id": 9, "name": "green ground", "isthing": 0},
              {"id": 11, "name": "blue sky", "synonyms": ["blue sky", "sky"], "isthing": 0}]


def write_dataset(root, n: int = 3, size: int = 64):
    """A small COCO-panoptic dataset with semantic label PNGs: sky above, ground below, 1-2 red discs."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    images, annotations = [], []
    for i in range(n):
        name = f"img{i:02d}"
        img = np.zeros((size, size, 3), np.uint8)
        ids = np.zeros((size, size), np.int64)
        sem = np.full((size, size), 255, np.uint8)
        horizon = size // 2 + int(rng.integers(-8, 8))
        sky, ground = yy < horizon, yy >= horizon
        img[sky], img[ground] = (60, 90, 230), (40, 170, 50)
        ids[sky], ids[ground] = 1, 2
        segs = [{"id": 1, "category_id": 11, "iscrowd": 0}, {"id": 2, "category_id": 9, "iscrowd": 0}]
        sem[sky], sem[ground] = 2, 1
        for k in range(1 + i % 2):
            cy, cx = rng.integers(12, size - 12, 2)
            disc = (yy - cy) ** 2 + (xx - cx) ** 2 < 36
            img[disc] = (220, 30, 30)
            ids[disc] = 3 + k
            sem[disc] = 0
            segs.append({"id": 3 + k, "category_id": 7, "iscrowd": 0})
        segs = [s for s in segs if (ids == s["id"]).any()]
        for s in segs:
            s["area"] = int((ids == s["id"]).sum())
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "panoptic").mkdir(exist_ok=True)
        (root / "labels").mkdir(exist_ok=True)
        Image.fromarray(img).save(root / "images" / f"{name}.jpg", quality=95)
        Image.fromarray(id2rgb(ids)).save(root / "panoptic" / f"{name}.png")
        Image.fromarray(sem).save(root / "labels" / f"{name}.png")
        images.append({"id": i, "file_name": f"{name}.jpg", "height": size, "width": size})
        annotations.append({"image_id": i, "file_name": f"{name}.png", "segments_info": segs})
    (root / "panoptic.json").write_text(json.dumps({"images": images, "annotations": annotations,
                                                     "categories": CATEGORIES}))
    return {"images": str(root / "images"), "panoptic_json": str(root / "panoptic.json"),
            "semseg_dir": str(root / "labels"), "description": "discs in a field"}


@pytest.fixture()
def mine(tmp_path):
    return write_dataset(tmp_path / "mine")


def _exp(params: dict, **over) -> Experiment:
    return Experiment.from_params({**params, **over}, source="test.yaml")


def test_a_declared_dataset_is_a_benchmark_of_any_cell(mine):
    from smart.data.registry import Dataset

    params = load_params("params.yaml")
    cells = {**params["cells"], "smart": {"datasets": ["ade150", "mine"]}}
    exp = _exp(params, user_datasets={"mine": mine}, cells=cells)
    assert exp.cell("smart").datasets == ("ade150", "mine") and exp.user_cells() == ["smart"]
    ds = Dataset.open("mine", profile="mini", root="unused", user=exp.user_datasets)
    assert len(ds) == 3 and ds.spec.task == "panoptic" and ds.vocab.names == ["red disc", "green ground", "blue sky"]
    assert ds.vocab.thing_mask == [True, False, False] and ds.vocab[2].synonyms == ("blue sky", "sky")
    s = ds[1]
    assert s["image"].shape == (64, 64, 3) and s["sem_seg"].max() == 2 and len(s["segments_info"]) >= 3
    # a cell may not list a dataset that is not declared
    with pytest.raises(ConfigError, match=r"cells\.smart\.datasets.*user_datasets"):
        _exp(params, cells={**params["cells"], "smart": {"datasets": ["mine"]}})


@pytest.mark.parametrize("change, error, match", [
    (lambda d: d.update(images="nowhere"), DatasetError, r"nowhere.*user_datasets\.mine\.images"),
    (lambda d: d.update(semseg_dir="nolabels"), DatasetError, r"user_datasets\.mine\.semseg_dir"),
    (lambda d: d.pop("panoptic_json"), ConfigError, "categories"),
    (lambda d: d.update(colour="red"), ConfigError, r"user_datasets\.mine\.colour"),
    (lambda d: d.update(ignore_label="x"), ConfigError, r"user_datasets\.mine\.ignore_label"),
    (lambda d: d.pop("images"), ConfigError, r"user_datasets\.mine\.images"),
])
def test_bad_declarations_are_named(mine, change, error, match):
    from smart.data.registry import Dataset

    decl = dict(mine)
    change(decl)
    with pytest.raises(error, match=match):
        exp = _exp(load_params("params.yaml"), user_datasets={"mine": decl})
        Dataset.open("mine", profile="mini", root=".", user=exp.user_datasets)


def test_names_and_annotations_are_checked(mine, tmp_path):
    from smart.data.registry import Dataset

    params = load_params("params.yaml")
    with pytest.raises(ConfigError, match="built-in"):
        _exp(params, user_datasets={"ade150": mine})
    with pytest.raises(ConfigError, match="lower-case"):
        _exp(params, user_datasets={"My Data": mine})
    data = json.loads(open(mine["panoptic_json"]).read())
    data["annotations"][0]["segments_info"][0]["category_id"] = 99  # unknown category id
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    exp = _exp(params, user_datasets={"mine": {**mine, "panoptic_json": str(bad),
                                                "panoptic_dir": str(tmp_path / "mine" / "panoptic")}})
    with pytest.raises(DatasetError, match=r"unknown category_id 99"):
        Dataset.open("mine", profile="mini", root=".", user=exp.user_datasets)
    data["categories"].append({"id": 12, "name": "sky"})  # a name that is another class's synonym
    data["annotations"][0]["segments_info"][0]["category_id"] = 11
    bad.write_text(json.dumps(data))
    with pytest.raises(InputError, match="'sky' appears"):
        Dataset.open("mine", profile="mini", root=".", user=exp.user_datasets)


def test_semantic_only_dataset_with_a_category_file(mine, tmp_path):
    from smart.data.registry import Dataset

    (tmp_path / "cats.json").write_text(json.dumps(CATEGORIES))
    decl = {"images": mine["images"], "semseg_dir": mine["semseg_dir"], "categories": str(tmp_path / "cats.json")}
    exp = _exp(load_params("params.yaml"), user_datasets={"sem": decl})
    ds = Dataset.open("sem", profile="mini", root=".", user=exp.user_datasets)
    assert ds.spec.task == "semantic" and len(ds) == 3 and "pan_ids" not in ds[0]


def test_scored_with_the_same_protocol(mine):
    """The oracle chain (ground-truth masks labelled by their class) is perfect on a user dataset too."""
    import torch

    from smart.data.registry import Dataset
    from smart.eval.cell import EvalSettings, evaluate_model, gt_targets
    from smart.model.config import get_preset
    from smart.model.mask_generator import OracleMaskGenerator
    from smart.model.smart import build_model

    exp = _exp(load_params("params.yaml"), user_datasets={"mine": mine})
    ds = Dataset.open("mine", profile="mini", root=".", user=exp.user_datasets)
    torch.manual_seed(0)
    model = build_model(get_preset("tiny-test").replace(da_layers=0)).eval()

    def props(samples, images):
        t = [gt_targets(s, len(ds.vocab), ds.ignore_label) for s in samples]
        return OracleMaskGenerator(num_queries=max(len(x["labels"]) for x in t))(t)["mask_logits"]

    r = evaluate_model(model, ds, settings=EvalSettings(oracle="classifier"), proposals=props)
    assert r["panoptic"]["All"]["pq"] == pytest.approx(1.0) and r["semantic"]["mIoU"] == pytest.approx(100.0)
    assert r["panoptic"]["Things"]["n"] == 1 and r["panoptic"]["Stuff"]["n"] == 2


def test_check_eval_and_table_verbs(trained, mine, tmp_path):
    """check-dataset, eval-cell and the user table, as the DAG runs them."""
    import torch

    from smart.cli import main as cli

    params = yaml.safe_load((trained / "params.yaml").read_text())
    params["user_datasets"] = {"mine": mine}
    params["cells"]["smart"] = {"datasets": ["ade150", "mine"]}
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(params))
    assert cli(["check-dataset", "mine", "--params", str(p), "--out", str(tmp_path / "check.json")]) == 0
    stats = json.loads((tmp_path / "check.json").read_text())
    assert stats["images"] == 3 and stats["num_classes"] == 3
    assert cli(["show-dataset", "mine", "--params", str(p), "--out", str(tmp_path / "grid.png")]) == 0
    torch.manual_seed(1)
    assert cli(["eval-cell", "--params", str(p), "--cell", "smart", "--seed", "0", "--model",
                str(trained / "model.pt"), "--datasets", "mine", "--out-dir", str(tmp_path / "metrics/smart/s0"),
                "--detail-dir", str(tmp_path / "d"), "--threads", "1"]) == 0
    flat = json.loads((tmp_path / "metrics/smart/s0/mine.json").read_text())
    assert {"PQ", "SQ", "RQ", "mIoU"} <= set(flat)
    assert cli(["table", "table_user", "--params", str(p), "--metrics-dir", str(tmp_path / "metrics"), "--out",
                str(tmp_path / "table_user.csv")]) == 0
    import pandas as pd

    df = pd.read_csv(tmp_path / "table_user.csv")
    assert df["cell"].tolist() == ["smart"]
    assert df.loc[0, "mine_PQ"] == pytest.approx(flat["PQ"], abs=0.005)  # the table keeps 2 decimals
    assert df.loc[0, "mine_mIoU"] == pytest.approx(flat["mIoU"], abs=0.005)
