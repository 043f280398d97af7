"""The SMART trainer (smart/train/loop.py, optim.py, checkpoint.py, smart/cli/train.py) on a tiny mini world.

Tiny random-init CLIP (``tiny-test`` preset) and tiny random Mask2Former; 64 px crops; CPU only.
"""

import copy
import json
import os
import socket

import numpy as np
import pytest
import torch
import yaml

from smart.config import (
    CRITERION_KEYS,
    GENERATOR_KEYS,
    TrainConfig,
    load_params,
    section,
    train_config,
)
from smart.errors import ConfigError, InputError
from smart.model.config import get_preset

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TINY_GEN = {"tiny": {"name": "tiny", "backend": "hf", "pretrained": None, "resize": False, "top_k": 6}}


@pytest.fixture(scope="module")
def root(make_world):
    """A COCO-like train split of 16 images (64 px) with its vocabulary."""
    return make_world(("vocab", "coco"), coco_train=16)


def tiny_cfg(**kw) -> TrainConfig:
    base = {"iterations": 6, "batch_size": 2, "crop_size": 64, "min_scale": 0.5, "max_scale": 1.5, "num_workers": 0,
            "log_period": 1, "checkpoint_period": 3, "bf16": False, "grad_checkpointing": False, "warmup_iters": 2,
            "generator": "tiny", "generators": copy.deepcopy(TINY_GEN), "criterion": {"num_points": None}, "lr": 1e-3}
    base.update(kw)
    return TrainConfig(**base)


class FakeStore:
    """An in-memory proposal store (duck-typed like smart.data.proposals.ProposalStore)."""

    def __init__(self, image_ids, K=5, size=16):
        self.image_ids = list(image_ids)
        self.K, self.size = K, size

    def get(self, image_id):
        if image_id not in self.image_ids:
            raise KeyError(image_id)
        g = torch.Generator().manual_seed(int(image_id) % 1_000_003)
        return {"mask_logits": (torch.randn(self.K, self.size, self.size, generator=g) * 4).numpy(),
                "scores": torch.rand(self.K, generator=g).numpy()}


def store_for(root, drop=0):
    from smart.data.registry import Dataset

    ids = [r["image_id"] for r in Dataset.open("coco_train", root=root).records]
    return FakeStore(ids[drop:])


def read_metrics(path):
    return [json.loads(ln) for ln in path.read_text().splitlines()]


def trainable(path):
    return torch.load(path, map_location="cpu", weights_only=True)["trainable_state"]


# ------------------------------------------------------------------------------------ resume
def test_resume_is_exact(root, tmp_path):
    """6 iterations uninterrupted == 3 (checkpoint) + 1 lost iteration + resume + 3: bitwise."""
    from smart.train.loop import train

    model_cfg = get_preset("tiny-test")
    a, b = tmp_path / "a", tmp_path / "b"
    sa = train(model_cfg=model_cfg, train_cfg=tiny_cfg(), root=root, out=a, resume="never")
    assert sa["iterations"] == 6 and sa["start_iteration"] == 0
    stopped = train(model_cfg=model_cfg, train_cfg=tiny_cfg(), root=root, out=b, resume="never", stop_after=4)
    assert stopped == {"stopped_at": 4}
    scratch = tmp_path / ".scratch" / "b"
    assert (scratch / "last.pt").is_file() and not (b / "model.pt").exists()
    assert torch.load(scratch / "last.pt", weights_only=True)["iteration"] == 3
    sb = train(model_cfg=model_cfg, train_cfg=tiny_cfg(), root=root, out=b, resume="auto")
    assert sb["start_iteration"] == 3
    final = torch.load(scratch / "last.pt", weights_only=True)  # the scratch keeps the finished state
    assert final["final"] and final["iteration"] == 6 and "optimizer" not in final

    ta, tb = trainable(a / "model.pt"), trainable(b / "model.pt")
    assert ta.keys() == tb.keys() and any("q_proj" in k for k in ta)
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k
    ma, mb = read_metrics(a / "metrics.jsonl"), read_metrics(b / "metrics.jsonl")
    assert [r["iteration"] for r in ma] == [r["iteration"] for r in mb] == [1, 2, 3, 4, 5, 6]
    for ra, rb in zip(ma, mb):
        for key in ("loss", "loss_ce", "loss_mask", "loss_dice", "lr", "grad_norm"):
            assert ra[key] == rb[key], (ra["iteration"], key)
    assert set(ma[0]) >= {"iteration", "loss", "lr"} and not set(ma[0]) & {"time", "data_time", "it_per_s"}
    timing = json.loads((b / "metrics.jsonl.run.json").read_text())["lines"]  # per-line timing: the run record
    assert len(timing) == 6 and set(timing[0]) >= {"time", "data_time", "it_per_s", "max_mem"}
    summary = json.loads((b / "summary.json").read_text())  # numbers only (a DVC metric), no timing
    assert summary["iterations"] == 6 and summary["trainable_params"] > 0 and "it_per_s" not in summary
    assert json.loads((b / "summary.json.run.json").read_text())["it_per_s"] > 0
    assert all(isinstance(v, (int, float)) for v in summary.values())
    assert json.loads((b / "config.json").read_text())["train"]["iterations"] == 6
    # outputs lost after the run (Snakemake deletes those of a job it saw killed): rewritten, nothing retrained
    written = {f: (b / f).read_bytes() for f in ("model.pt", "metrics.jsonl", "summary.json", "config.json")}
    for f in written:
        (b / f).unlink()
    again = train(model_cfg=model_cfg, train_cfg=tiny_cfg(), root=root, out=b, resume="auto")
    assert again["start_iteration"] == 6
    assert {f: (b / f).read_bytes() for f in written} == written


# ------------------------------------------------------------------------------------ proposal store
def test_store_source_refusal_and_load_trained(root, tmp_path):
    from smart.train.checkpoint import load_trained
    from smart.train.loop import train

    model_cfg = get_preset("tiny-test")
    out = tmp_path / "s"
    cfg = tiny_cfg(iterations=2, checkpoint_period=1)
    assert train(model_cfg=model_cfg, train_cfg=cfg, root=root, out=out, proposals=store_for(root),
                 resume="never", stop_after=1) == {"stopped_at": 1}
    # resuming an explicit checkpoint of another configuration is refused, naming the differing key
    ckpt = tmp_path / ".scratch" / "s" / "last.pt"
    with pytest.raises(InputError, match=r"different configuration.*lr"):
        train(model_cfg=model_cfg, train_cfg=cfg.replace(lr=5e-4), root=root, out=out, proposals=store_for(root),
              resume=ckpt)
    with pytest.raises(InputError, match=r"different configuration.*da_layers"):
        train(model_cfg=model_cfg.replace(da_layers=1), train_cfg=cfg, root=root, out=out,
              proposals=store_for(root), resume=ckpt)
    # the store must cover the training images
    with pytest.raises(InputError, match="have no proposals"):
        train(model_cfg=model_cfg, train_cfg=cfg, root=root, out=out, proposals=store_for(root, drop=3),
              resume="never")
    summary = train(model_cfg=model_cfg, train_cfg=cfg, root=root, out=out, proposals=store_for(root))
    assert summary["start_iteration"] == 1
    data = torch.load(out / "model.pt", weights_only=True)
    assert data["source"]["kind"] == "store" and data["model_config"]["clip_model"] == "smart-tiny-vit"
    n_all = sum(p.numel() for p in __import__("smart.model.smart", fromlist=["x"]).build_model(model_cfg).parameters())
    n_saved = sum(v.numel() for v in data["trainable_state"].values())
    assert n_saved < n_all / 10  # only the trainable state
    model, meta = load_trained(out / "model.pt")
    assert meta["iteration"] == 2
    for n, p in model.named_parameters():
        if p.requires_grad:
            assert torch.equal(p.detach(), data["trainable_state"][n])


# ------------------------------------------------------------------------------------ Table 3(e)
def test_tuned_mask_generator_is_trained_and_needs_on_the_fly_proposals(root, tmp_path):
    from smart.train.loop import train

    cfg = tiny_cfg(iterations=1, checkpoint_period=1)
    model_cfg = get_preset("tiny-test").replace(tune_mask_generator=True)
    with pytest.raises(ConfigError, match="tune_mask_generator"):
        train(model_cfg=model_cfg, train_cfg=cfg, root=root, out=tmp_path / "x", proposals=store_for(root))
    train(model_cfg=model_cfg, train_cfg=cfg, root=root, out=tmp_path / "g")
    gen_state = torch.load(tmp_path / "g" / "model.pt", weights_only=True)["generator_state"]
    assert gen_state and any("backbone" in k or "encoder" in k for k in gen_state)

    from smart.model.mask_generator import build_mask_generator

    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed + 1)
        fresh = build_mask_generator({**TINY_GEN["tiny"], "tune_mask_generator": True})
    fresh_state = dict(fresh.named_parameters())
    changed = [k for k, v in gen_state.items() if not torch.equal(v, fresh_state[k].detach())]
    assert changed  # the generator was updated


# ------------------------------------------------------------------------------------ CLI + params
def _write_params(tmp_path, **train_over):
    params = load_params("params.yaml")
    params["model"]["mini"] = {"preset": "tiny-test"}
    mini = params["train_defaults"]["mini"]
    mini.update(iterations=2, batch_size=2, crop_size=64, log_period=1, checkpoint_period=1, generator="swinb",
                generators={"swinb": dict(TINY_GEN["tiny"]), "r50": dict(TINY_GEN["tiny"]),
                            "swinb_scratch": dict(TINY_GEN["tiny"])}, **train_over)
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(params, sort_keys=False))
    return p


def test_cli_train_and_bad_input(root, tmp_path, capsys):
    from smart.cli import main

    p = _write_params(tmp_path)
    out = tmp_path / "results" / "train" / "smart_r50"
    rc = main(["train", "--params", str(p), "--cell", "smart_r50", "--profile", "mini", "--root", str(root),
               "--out", str(out), "--threads", "1"])
    assert rc == 0
    for f in ("model.pt", "metrics.jsonl", "summary.json", "config.json"):
        assert (out / f).is_file(), f
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["train"]["generator"] == "r50" and cfg["proposals"]["kind"] == "generator"
    assert len(read_metrics(out / "metrics.jsonl")) == 2
    assert (out / "model.pt").stat().st_size < 2_000_000

    assert main(["train", "--params", str(p), "--cell", "nope", "--root", str(root), "--out", str(out)]) == 2
    assert "cells.nope" in capsys.readouterr().err
    params = yaml.safe_load(p.read_text())
    params["cells"]["smart"] = {"train": {"learning_rate": 1.0}}
    p.write_text(yaml.safe_dump(params))
    assert main(["train", "--params", str(p), "--cell", "smart", "--root", str(root), "--out", str(out)]) == 2
    assert "cells.smart.train.learning_rate" in capsys.readouterr().err
    # the whole file is validated before any job starts: another cell's error stops it too
    assert main(["train", "--params", str(p), "--cell", "smart_r50", "--root", str(root), "--out", str(out)]) == 2
    assert "cells.smart.train.learning_rate" in capsys.readouterr().err
    _write_params(tmp_path)
    assert main(["train", "--params", str(p), "--cell", "smart_r50", "--root", str(root), "--out", str(out),
                 "--proposals", str(tmp_path / "missing")]) == 2
    assert "proposal store not found" in capsys.readouterr().err


def test_train_config_from_params():
    params = load_params("params.yaml")
    section(params, "train_defaults", source="params.yaml")
    mini, paper = train_config(params, "smart", profile="mini"), train_config(params, "smart", profile="paper")
    assert (paper.batch_size, paper.crop_size, paper.iterations, paper.lr, paper.weight_decay) == (16, 1024, 10000,
                                                                                                   1e-4, 0.05)
    assert paper.milestones() == [8889, 9630]
    assert mini.batch_size == 8 and mini.crop_size <= 96 and mini.iterations <= 300
    t1 = train_config(params, "smart_swinb", profile="paper")
    assert t1.iterations == 25000 and t1.milestones() == [22222, 24074]
    assert train_config(params, "smart_swinb", profile="mini").iterations == mini.iterations  # paper-only override
    r50 = train_config(params, "smart_r50", profile="paper").generator_config  # converted from detectron2
    assert r50["backend"] == "hf" and r50["pretrained"] in params["convert_generators"]
    # cell overrides merge and bad keys are named
    p = copy.deepcopy(params)
    p["cells"]["fig6_it100"] = {"train": {"iterations": 100, "fraction": 0.5, "criterion": {"eos_coef": 0.2}}}
    c = train_config(p, "fig6_it100", profile="mini")
    assert (c.iterations, c.fraction, c.criterion["eos_coef"], c.criterion["class_weight"]) == (100, 0.5, 0.2, 2.0)
    for bad, field in [({"fraction": 0}, "cells.x.train.fraction"), ({"paper": {"lrr": 1}}, "cells.x.train.paper.lrr"),
                       ({"criterion": {"foo": 1}}, "cells.x.train.criterion.foo"),
                       ({"generator": "vit"}, "cells.x.train.generator"), ({"betas": [0.9]}, "cells.x.train.betas")]:
        p["cells"]["x"] = {"train": bad}
        with pytest.raises(ConfigError) as e:
            train_config(p, "x", profile="paper", source="params.yaml")
        assert field in str(e.value) and "params.yaml" in str(e.value)
    q = copy.deepcopy(params)
    del q["train_defaults"]["mini"]["seed"]
    with pytest.raises(ConfigError, match=r"train_defaults\.mini\.seed"):
        section(q, "train_defaults")
    with pytest.raises(ConfigError, match="unknown cell"):
        train_config(params, "nope", profile="mini")


def test_schema_key_lists_match_the_dataclasses():
    import dataclasses

    from smart.model.criterion import CriterionConfig
    from smart.model.mask_generator import GeneratorConfig

    assert set(CRITERION_KEYS) == {f.name for f in dataclasses.fields(CriterionConfig)}
    assert set(GENERATOR_KEYS) == {f.name for f in dataclasses.fields(GeneratorConfig)}


# ------------------------------------------------------------------------------------ optim
def test_schedule_groups_and_clipping():
    from smart.model.smart import build_model
    from smart.train.optim import LRSchedule, build_optimizer, build_scheduler, clip_gradients

    s = LRSchedule.from_config(TrainConfig(iterations=10000))
    assert s(0) == pytest.approx(0.001) and s(5) == pytest.approx(0.5005) and s(10) == 1.0
    assert s(8888) == 1.0 and s(8889) == pytest.approx(0.1) and s(9630) == pytest.approx(0.01)
    poly = LRSchedule.from_config(TrainConfig(iterations=100, schedule="poly", warmup_iters=0))
    cos = LRSchedule.from_config(TrainConfig(iterations=100, schedule="cosine", warmup_iters=0, min_lr_factor=0.1))
    assert poly(0) == 1.0 and poly(100) == 0.0 and cos(50) == pytest.approx(0.55) and cos(100) == pytest.approx(0.1)

    torch.manual_seed(0)
    model = build_model(get_preset("tiny-test").replace(fq_lr_multiplier=0.1))
    cfg = TrainConfig(iterations=100, warmup_iters=0)
    opt = build_optimizer(model, cfg)
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs["clip_decay"] == pytest.approx(1e-5) and lrs["new_decay"] == pytest.approx(1e-4)
    assert {g["name"]: g["weight_decay"] for g in opt.param_groups}["new_no_decay"] == 0.0
    sched = build_scheduler(opt, TrainConfig(iterations=10, warmup_iters=0, lr_steps=(0.5,)))
    for _ in range(5):
        opt.step()  # no gradients yet: a no-op, but keeps the step order torch expects
        sched.step()
    assert {g["name"]: g["lr"] for g in opt.param_groups}["clip_decay"] == pytest.approx(1e-6)
    params = model.trainable_parameters()
    for p in params:
        p.grad = torch.ones_like(p)
    norm = clip_gradients(params, 0.01)
    assert norm == pytest.approx(sum(p.numel() for p in params) ** 0.5, rel=1e-4)
    total = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))
    assert float(total) == pytest.approx(0.01, rel=1e-3)


# ------------------------------------------------------------------------------------ DDP (gloo, CPU)
def _ddp_worker(rank, world, root, out, port, result_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), HF_HUB_OFFLINE="1")
    torch.set_num_threads(1)
    import torch.distributed as dist

    import smart.model.smart as smart_model
    from smart.train import loop

    dist.init_process_group("gloo")  # joined, not created, by the trainer
    seen, built = [], []
    orig_get, orig_build = loop.TrainSamples.__getitem__, smart_model.build_model

    def spy_get(self, pos):
        seen.append(int(pos))
        return orig_get(self, pos)

    def spy_build(*a, **k):
        built.append(orig_build(*a, **k))
        return built[-1]

    loop.TrainSamples.__getitem__ = spy_get
    smart_model.build_model = spy_build
    loop.train(model_cfg=get_preset("tiny-test"), train_cfg=tiny_cfg(iterations=2, batch_size=4, checkpoint_period=1),
               root=root, out=out, proposals=store_for(root), resume="never")
    state = {n: p.detach().clone() for n, p in built[0].named_parameters() if p.requires_grad}
    torch.save({"seen": seen, "state": state}, os.path.join(result_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_cpu_ranks(root, tmp_path):
    """torchrun-style 2-process run with gloo: per-rank data shards, rank-0 files, identical weights."""
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "ddp"
    mp.spawn(_ddp_worker, args=(2, str(root), str(out), port, str(tmp_path)), nprocs=2)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["seen"] == [0, 1, 4, 5] and r1["seen"] == [2, 3, 6, 7]  # contiguous slices of each global batch
    saved = trainable(out / "model.pt")  # written by rank 0
    for k, v in saved.items():  # DDP kept the ranks in sync, and training moved the weights
        assert torch.equal(r0["state"][k], v) and torch.equal(r1["state"][k], v), k
    assert json.loads((out / "summary.json").read_text())["world_size"] == 2
    assert len(read_metrics(out / "metrics.jsonl")) == 2
    assert not np.isnan(read_metrics(out / "metrics.jsonl")[-1]["loss"])


def test_a_scratch_of_edited_params_is_set_aside(root, tmp_path, caplog):
    """params edited after an interrupted run: the DAG reruns the job, which keeps the old scratch aside
    and starts afresh instead of refusing to run."""
    from smart.train.loop import train

    model_cfg = get_preset("tiny-test")
    out = tmp_path / "s"
    cfg = tiny_cfg(iterations=2, checkpoint_period=1)
    train(model_cfg=model_cfg, train_cfg=cfg, root=root, out=out, proposals=store_for(root), stop_after=1)
    with caplog.at_level("WARNING", logger="smart.train"):
        summary = train(model_cfg=model_cfg, train_cfg=cfg.replace(lr=5e-4), root=root, out=out,
                        proposals=store_for(root))
    assert summary["start_iteration"] == 0 and (out / "model.pt").is_file()
    kept = tmp_path / ".scratch" / "s" / "set-aside" / "last.pt"
    assert torch.load(kept, weights_only=True)["iteration"] == 1
    assert "different configuration" in caplog.text and "set-aside" in caplog.text


def test_one_trainer_per_scratch(tmp_path):
    """A second trainer on the same scratch waits for the first (its lock is released however it ends)."""
    import subprocess
    import sys
    import time

    from smart.train.loop import ScratchLock

    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from smart.train.loop import ScratchLock; "
        f"lock = ScratchLock(Path({str(tmp_path)!r})); lock.acquire(); print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.monotonic()
        killer = subprocess.Popen([sys.executable, "-c", f"import time, os; time.sleep(1.0); os.kill({holder.pid}, 9)"])
        lock = ScratchLock(tmp_path)
        lock.acquire()  # blocks until the holder is killed (-9 releases its lock)
        assert time.monotonic() - t0 >= 0.9
        lock.release()
        killer.wait()
    finally:
        holder.kill()
        holder.wait()
