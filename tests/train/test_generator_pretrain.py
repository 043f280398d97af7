"""Mini Mask2Former pretraining (smart/train/generator_pretrain.py, `python -m smart pretrain-generator`)."""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from smart.cli import main
from smart.config import load_params, mini_generator_params
from smart.data.registry import Dataset
from smart.errors import ConfigError
from smart.model.mask_generator import Mask2FormerGenerator
from smart.train import generator_pretrain as gp
from smart.train.generator_pretrain import GeneratorPretrainConfig, batch_plan, train_generator

REPO = Path(__file__).resolve().parents[2]
# A few steps at batch 2 on the 64-px test world: fast, but every code path (flip, warm-up, cosine, clip).
TINY = {"steps": 4, "batch_size": 2, "log_every": 2, "warmup": 1, "train_num_points": 256, "eval_batch_size": 6}



@pytest.fixture
def keep_log_handlers():
    """smart.cli.main resets the root logger's handlers; give pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def _params_with(tmp_path: Path, name: str, **entry) -> Path:
    params = load_params(REPO / "params.yaml")
    params["mini_generators"][name].update(entry)
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(params, sort_keys=False))
    return p


def test_params_entries_are_complete_and_valid():
    params = load_params(REPO / "params.yaml")
    for name in ("mini-r50", "mini-swinb"):
        entry = mini_generator_params(params, name, source="params.yaml")
        cfg = GeneratorPretrainConfig.from_dict(entry, name=name)
        assert set(entry) == set(GeneratorPretrainConfig.__dataclass_fields__)  # every value explicit
        assert cfg.batch_size == 16 and 100 <= cfg.steps <= 1000 and cfg.hflip
        assert cfg.train_dataset == "coco_train" and cfg.eval_datasets == ("coco", "ade150")


@pytest.mark.parametrize("key, value, field", [
    ("stepz", 3, "mini_generators.mini-r50.stepz"),  # unknown key
    ("lr", "1e-3", "mini_generators.mini-r50.lr"),  # YAML 1.1 reads 1e-3 as a string
    ("batch_size", 0, "mini_generators.mini-r50.batch_size"),
    ("schedule", "step", "mini_generators.mini-r50.schedule"),
])
def test_invalid_params_name_the_field(key, value, field):
    params = copy.deepcopy(load_params(REPO / "params.yaml"))
    params["mini_generators"]["mini-r50"][key] = value
    with pytest.raises(ConfigError) as e:
        entry = mini_generator_params(params, "mini-r50", source="p.yaml")
        GeneratorPretrainConfig.from_dict(entry, name="mini-r50", source="p.yaml")
    assert e.value.field == field and "p.yaml" in str(e.value)
    del params["mini_generators"]["mini-r50"]["seed"]
    with pytest.raises(ConfigError, match="missing key") as e:
        mini_generator_params(params, "mini-r50")
    assert e.value.field == "mini_generators.mini-r50.seed"
    with pytest.raises(ConfigError) as e:
        mini_generator_params(params, "mini-vit")
    assert e.value.field == "mini_generators.mini-vit"


def test_batch_plan_is_a_pure_function_of_seed_and_step():
    a = batch_plan(7, num_samples=10, batch_size=4, seed=3, hflip=True)
    b = batch_plan(7, num_samples=10, batch_size=4, seed=3, hflip=True)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    # every sample exactly once per epoch (5 steps of 2 = one epoch of 10)
    epoch = np.concatenate([batch_plan(s, num_samples=10, batch_size=2, seed=0, hflip=False)[0] for s in range(5)])
    assert sorted(epoch.tolist()) == list(range(10))
    assert not batch_plan(0, num_samples=10, batch_size=4, seed=0, hflip=False)[1].any()
    flips = np.concatenate([batch_plan(s, num_samples=10, batch_size=4, seed=0, hflip=True)[1] for s in range(50)])
    assert 0.35 < flips.mean() < 0.65


def test_cli_trains_saves_a_loadable_checkpoint_and_writes_metrics(mini_root, tmp_path, keep_log_handlers):
    params = _params_with(tmp_path, "mini-r50", **TINY)
    out, metrics = tmp_path / "models" / "mini-r50", tmp_path / "results" / "mini-r50.json"
    assert main(["pretrain-generator", "mini-r50", "--params", str(params), "--root", str(mini_root),
                 "--out", str(out), "--metrics", str(metrics), "--threads", "1"]) == 0
    m = json.loads(metrics.read_text())
    run = json.loads((tmp_path / "results" / "mini-r50.json.run.json").read_text())  # timing: the run record
    assert m["steps"] == 4 and "steps_per_s" not in m and run["steps_per_s"] > 0 and 0.8e6 < m["parameters"] < 1.1e6
    for ds in ("coco", "ade150"):
        for kind in ("things", "stuff"):
            r = m["recall"][ds][kind]
            assert r["segments"] > 0
            assert 0 <= r["recall_objectness"] <= r["recall_any"] <= 1
    assert set(m["closed_set_pq"]) == {"coco"} and m["closed_set_pq"]["coco"]["num_images"] == 12
    assert "All" in m["closed_set_pq"]["coco"] and "recall_any" in m["definitions"]
    curve = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in curve] == [2, 4] and all(np.isfinite(r["loss"]) for r in curve)
    assert not (tmp_path / "models" / ".mini-r50.scratch").exists()  # scratch removed after success

    # the output directory loads exactly like a real checkpoint directory, frozen, mini settings
    gen = Mask2FormerGenerator.from_pretrained(out)
    vocab = Dataset.open("coco", root=mini_root).vocab
    assert gen.num_classes == len(vocab) and not gen.tune and gen.resize is False
    assert [gen.model.config.id2label[i] for i in range(len(vocab))] == vocab.names
    assert not any(p.requires_grad for p in gen.parameters())
    x = torch.randint(0, 256, (1, 3, 64, 64), generator=torch.Generator().manual_seed(0)).float()
    pred = gen.predict(x)
    assert pred["mask_logits"].shape == (1, 20, 16, 16) and torch.isfinite(pred["mask_logits"]).all()
    meta = json.loads((out / gp.SUMMARY_FILE).read_text())
    assert meta["config"]["steps"] == 4 and meta["classes"] == vocab.names


class _Killed(Exception):
    pass


def test_interrupted_run_resumes_bit_identically(mini_root, tmp_path, monkeypatch):
    cfg = replace(GeneratorPretrainConfig(), **{**TINY, "log_every": 3})  # a curve record spans the checkpoint
    kw = {"root": mini_root, "checkpoint_every": 2, "evaluate": False}
    full = train_generator("mini-r50", cfg, out_dir=tmp_path / "a", **kw)
    assert full["resumed_from_step"] == 0

    def kill_at_3(step):
        if step == 3:
            raise _Killed

    monkeypatch.setattr(gp, "_after_step", kill_at_3)
    with pytest.raises(_Killed):
        train_generator("mini-r50", cfg, out_dir=tmp_path / "b", **kw)
    assert (gp.scratch_dir(tmp_path / "b") / "last.pt").is_file()
    assert not (tmp_path / "b" / "model.safetensors").exists()  # no declared output before the end
    monkeypatch.setattr(gp, "_after_step", lambda step: None)
    resumed = train_generator("mini-r50", cfg, out_dir=tmp_path / "b", **kw)
    assert resumed["resumed_from_step"] == 2

    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)  # deterministic given the seed, and resume is exact
    curve_a = [json.loads(x)["loss"] for x in (tmp_path / "a" / "train_log.jsonl").read_text().splitlines()]
    curve_b = [json.loads(x)["loss"] for x in (tmp_path / "b" / "train_log.jsonl").read_text().splitlines()]
    assert len(curve_a) == 2 and curve_a == curve_b
