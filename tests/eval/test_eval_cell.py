"""Evaluation of a trained cell (smart/eval/cell.py): oracle invariants and the eval-cell verb."""

import json
import os

import numpy as np
import pytest
import torch

from smart.data.registry import Dataset
from smart.eval.cell import EvalSettings, _size_groups, evaluate_model, gt_targets
from smart.model.config import get_preset
from smart.model.mask_generator import OracleMaskGenerator
from smart.model.smart import build_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = get_preset("tiny-test").replace(da_layers=0)  # identity DA: the proposals pass unchanged
    return build_model(cfg).eval()


def _gt_proposals(dataset):
    """Proposals = the ground-truth masks (what an oracle generator gives)."""
    K = len(dataset.vocab)

    def fn(samples, images):
        targets = [gt_targets(s, K, dataset.ignore_label) for s in samples]
        q = max([len(t["labels"]) for t in targets] + [1])
        return OracleMaskGenerator(num_queries=q)(targets)["mask_logits"]

    return fn


@pytest.mark.parametrize("name", ["ade150", "pc59"])
def test_oracle_generator_and_classifier_is_perfect(mini_root, model, name):
    """GT masks labelled by their GT class must score PQ 100 and mIoU 100: the whole inference and
    evaluation chain (DA, post-processing, id conversion, accumulators) loses nothing."""
    ds = Dataset.open(name, profile="mini", root=mini_root)
    settings = EvalSettings(oracle="classifier", batch_size=3)
    r = evaluate_model(model, ds, settings=settings, proposals=_gt_proposals(ds), limit=5)
    assert r["num_images"] == 5
    assert r["semantic"]["mIoU"] == pytest.approx(100.0)
    if name == "ade150":
        assert r["panoptic"]["All"]["pq"] == pytest.approx(1.0)
    else:
        assert r["panoptic"] is None


def test_oracle_generator_with_a_random_classifier_is_imperfect(mini_root, model):
    ds = Dataset.open("ade150", profile="mini", root=mini_root)
    r = evaluate_model(model, ds, settings=EvalSettings(oracle="generator"), proposals=None, limit=4)
    assert 0.0 <= r["panoptic"]["All"]["pq"] < 1.0
    assert r["semantic"]["mIoU"] < 100.0


def test_batching_does_not_change_results(mini_root, model):
    ds = Dataset.open("coco", profile="mini", root=mini_root)
    gen = np.random.default_rng(0)
    cache = {}

    def props(samples, images):  # fixed random proposals per image
        out = []
        for s in samples:
            if s["image_id"] not in cache:
                cache[s["image_id"]] = torch.from_numpy(gen.normal(0, 3, (6, 16, 16)).astype(np.float32))
            out.append(cache[s["image_id"]])
        return torch.stack(out)

    a = evaluate_model(model, ds, settings=EvalSettings(batch_size=1), proposals=props, limit=4)
    b = evaluate_model(model, ds, settings=EvalSettings(batch_size=4), proposals=props, limit=4)
    assert a["panoptic"]["All"] == pytest.approx(b["panoptic"]["All"])
    assert a["semantic"]["mIoU"] == pytest.approx(b["semantic"]["mIoU"], abs=1e-9)


def test_size_groups():
    assert _size_groups([(2, 2), (2, 2), (3, 3), (2, 2)], 2) == [[0, 1], [2], [3]]
    assert _size_groups([(1, 1)] * 5, 2) == [[0, 1], [2, 3], [4]]


def test_bad_settings_name_the_field():
    from smart.errors import ConfigError

    with pytest.raises(ConfigError, match="oracle"):
        EvalSettings(oracle="both")
    with pytest.raises(ConfigError, match=r"eval\.batch_size"):
        EvalSettings(batch_size=0)


def test_eval_cell_verb_writes_flat_metrics(mini_root, tmp_path, model):
    """A model.pt written for a cell → eval-cell → flat numeric metrics + a detail file."""
    import yaml

    from smart.cli import main as cli
    from smart.config import load_params
    from smart.train.checkpoint import atomic_save, frozen_checksum, trainable_state_dict

    params = load_params("params.yaml")
    params["model"]["mini"] = {"preset": "tiny-test", "da_layers": 0}
    params["train_defaults"]["mini"]["generators"]["swinb"] = {
        "name": "tiny", "backend": "hf", "pretrained": None, "resize": False, "top_k": 6}
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(params))
    atomic_save({"format": "smart-trainable-v1", "cell": "smart", "model_config": model.config.to_dict(),
                 "train_config": {"proposal_pad_logit": -20.0}, "seed": 0, "iteration": 0,
                 "trainable_state": trainable_state_dict(model), "generator_state": {}, "generator_config": None,
                 "frozen_checksum": frozen_checksum(model)}, tmp_path / "model.pt")
    # the rebuilt frozen CLIP must equal this one: build under the stored seed
    torch.manual_seed(0)
    rc = cli(["eval-cell", "--params", str(p), "--cell", "smart", "--seed", "0", "--model", str(tmp_path / "model.pt"),
              "--datasets", "ade150", "pc59", "--root", str(mini_root), "--limit", "3",
              "--out-dir", str(tmp_path / "m"), "--detail-dir", str(tmp_path / "d"), "--threads", "1"])
    assert rc == 0
    flat = json.loads((tmp_path / "m" / "ade150.json").read_text())
    assert set(flat) >= {"PQ", "SQ", "RQ", "PQ_th", "PQ_st", "mIoU", "fwIoU", "mACC", "pACC"}
    assert all(v is None or isinstance(v, float) for v in flat.values())
    pc = json.loads((tmp_path / "m" / "pc59.json").read_text())
    assert "PQ" not in pc and "mIoU" in pc
    detail = json.loads((tmp_path / "d" / "ade150.json").read_text())
    assert detail["provenance"]["cell"] == "smart" and detail["num_images"] == 3
    assert detail["provenance"]["settings"]["object_mask_threshold"] == 0.0
    # the mini world: PQ / mIoU per class group, each the mean over the group's classes of the detail file
    from smart.data.mini.groups import groups_by_name

    groups = groups_by_name(mini_root)
    for g, short in (("seen", "seen"), ("novel_combination", "novel_comb"), ("novel_attribute", "novel_attr")):
        pqs = [c["pq"] for c in detail["panoptic"]["per_class"].values() if c["counted"] and groups[c["name"]] == g]
        ious = [c["IoU"] for c in detail["semantic"]["per_class"].values()
                if c["IoU"] is not None and groups[c["name"]] == g]
        assert flat[f"PQ_{short}"] == (round(100 * sum(pqs) / len(pqs), 4) if pqs else None)
        assert flat[f"mIoU_{short}"] == (round(sum(ious) / len(ious), 4) if ious else None)
        assert f"mIoU_{short}" in pc
    # an unknown seed of the cell is refused, naming the key
    rc = cli(["eval-cell", "--params", str(p), "--cell", "table3a_k", "--seed", "7", "--model",
              str(tmp_path / "model.pt"), "--out-dir", str(tmp_path / "m2"), "--detail-dir", str(tmp_path / "d2")])
    assert rc == 2
