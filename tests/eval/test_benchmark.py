"""The Table 2 efficiency benchmark (smart/eval/benchmark.py, smart/cli/benchmark.py) on a tiny world.

Tiny random-init CLIP (``tiny-test`` preset) and tiny random Mask2Former; 64 px images; CPU (the
CUDA test runs only where a GPU is present).
"""

import json

import pytest
import torch

from smart.data.proposals import ProposalCacheConfig
from smart.errors import InputError

TINY_GEN = {"name": "tiny", "backend": "hf", "pretrained": None, "resize": False, "top_k": 6}
BRIEF_KEYS = {"fps", "seconds", "images", "memory_gb", "memory_kind", "peak_rss_gb", "ms_generator", "ms_classifier",
              "ms_postprocess", "device", "threads", "cell", "seed", "dataset", "git_sha"}


@pytest.fixture(scope="module")
def root(make_world):
    """The vocabulary and a 3-image ADE-like split (ade150: panoptic + semantic GT)."""
    return make_world(("vocab", "ade"), coco_train=4, ade_val=3)


@pytest.fixture(scope="module")
def parts():
    """A tiny SMART model and its tiny generator as a proposal function (CPU)."""
    from smart.eval.cell import generator_proposals
    from smart.model.config import get_preset
    from smart.model.smart import build_model

    torch.manual_seed(0)
    model = build_model(get_preset("tiny-test")).eval()
    props = generator_proposals(TINY_GEN, state=None, device="cpu", source="test",
                                test_time=ProposalCacheConfig()).for_dataset("ade150")
    return model, props


def _ade150(root):
    from smart.data.registry import Dataset

    return Dataset.open("ade150", root=root)


def test_benchmark_model_times_every_stage(root, parts):
    from smart.eval.benchmark import benchmark_model

    model, props = parts
    r = benchmark_model(model, _ade150(root), proposals=props, device="cpu", images=2, warmup=1)
    assert r["images"] == 2 and r["warmup"] == 1 and r["batch_size"] == 1
    assert r["fps"] == pytest.approx(2 / r["seconds"])
    for k in ("ms_generator", "ms_classifier", "ms_postprocess"):
        assert r[k] > 0
    assert r["ms_generator"] + r["ms_classifier"] + r["ms_postprocess"] == pytest.approx(r["ms_total"])
    assert r["memory_kind"] == "cpu_peak_rss" and r["memory_gb"] >= 0
    assert r["peak_rss_gb"] > 0 and r["peak_rss_gb"] >= r["memory_gb"]
    assert r["rss_peak_scope"] in ("timed_loop", "process")
    assert r["threads"] == torch.get_num_threads() and r["device"] and r["device_type"] == "cpu"
    assert r["tasks"] == ["semantic", "panoptic"] and r["dtype"] == "float32" and r["autocast"] is None
    assert r["image_size_mean"] == [64.0, 64.0]


def test_benchmark_model_rejects_bad_counts(root, parts):
    from smart.eval.benchmark import benchmark_model

    model, props = parts
    ds = _ade150(root)
    with pytest.raises(InputError, match="3 images|has 3"):
        benchmark_model(model, ds, proposals=props, images=4, warmup=0)
    with pytest.raises(InputError, match="positive"):
        benchmark_model(model, ds, proposals=props, images=0)
    with pytest.raises(InputError, match="warm-up"):
        benchmark_model(model, ds, proposals=props, images=1, warmup=-1)


def test_peak_rss_reset_and_growth():
    from smart.eval.benchmark import current_rss_bytes, peak_rss_bytes, reset_peak_rss

    scoped = reset_peak_rss()
    before = peak_rss_bytes()
    block = bytearray(64 * 2**20)
    block[::4096] = b"\1" * len(block[::4096])  # touch every page
    assert peak_rss_bytes() >= before + (60 * 2**20 if scoped else 0)
    del block
    if current_rss_bytes() is not None:
        assert current_rss_bytes() > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_benchmark_model_on_cuda(root):
    from smart.eval.benchmark import benchmark_model
    from smart.eval.cell import generator_proposals
    from smart.model.config import get_preset
    from smart.model.smart import build_model

    torch.manual_seed(0)
    model = build_model(get_preset("tiny-test")).eval().cuda()
    props = generator_proposals(TINY_GEN, state=None, device="cuda", source="test",
                                test_time=ProposalCacheConfig()).for_dataset("ade150")
    r = benchmark_model(model, _ade150(root), proposals=props, device="cuda", images=2, warmup=1)
    assert r["memory_kind"] == "cuda_max_allocated" and r["memory_gb"] > 0
    assert r["device_type"] == "cuda" and r["device"] == torch.cuda.get_device_name(0)
    assert r["autocast"].startswith("bfloat16")


def _write_model(path):
    """A model.pt as ``python -m smart train`` writes it (random init, tiny generator)."""
    from smart.model.config import get_preset
    from smart.model.smart import build_model
    from smart.train.checkpoint import MODEL_FORMAT, atomic_save, trainable_state_dict

    cfg = get_preset("tiny-test")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model(cfg)
    atomic_save({"format": MODEL_FORMAT, "cell": "smart", "model_config": cfg.to_dict(), "train_config": {},
                 "seed": 0, "iteration": 0, "trainable_state": trainable_state_dict(model), "generator_state": {},
                 "generator_config": dict(TINY_GEN)}, path)


def test_cli_writes_the_benchmark_record(root, tmp_path, capsys):
    from smart.cli import main

    model = tmp_path / "model.pt"
    _write_model(model)
    out = tmp_path / "bench" / "smart.json"
    rc = main(["benchmark", "--params", "params.yaml", "--cell", "smart", "--seed", "0", "--model", str(model),
               "--profile", "mini", "--root", str(root), "--out", str(out), "--images", "2", "--warmup", "1",
               "--threads", "1", "--device", "cpu"])
    assert rc == 0
    rec = json.loads(out.read_text())
    assert BRIEF_KEYS - {"git_sha"} <= set(rec) and "git_sha" not in rec  # provenance: in the run record
    assert "git_sha" in json.loads((tmp_path / "bench" / "smart.json.run.json").read_text())
    assert rec["cell"] == "smart" and rec["seed"] == 0 and rec["dataset"] == "ade150" and rec["images"] == 2
    assert rec["threads"] == 1 and rec["memory_kind"] == "cpu_peak_rss" and rec["fps"] > 0
    assert rec["generator"]["name"] == "tiny" and rec["generator_tuned"] is False
    assert "FPS" in capsys.readouterr().out

    rc = main(["benchmark", "--params", "params.yaml", "--cell", "smart", "--seed", "99", "--model", str(model),
               "--root", str(root), "--out", str(out)])
    assert rc == 2
    assert "seed 99" in capsys.readouterr().err


def test_benchmark_counts_the_work_of_every_stage(root, parts):
    """gflops_per_image = generator + classifier + post-processing work of one image, counted by shapes."""
    from torch.utils.flop_counter import FlopCounterMode

    from smart.eval.benchmark import _image, benchmark_model
    from smart.model.inference import postprocess

    model, props = parts
    ds = _ade150(root)
    r = benchmark_model(model, ds, proposals=props, device="cpu", images=1, warmup=0)
    x = torch.from_numpy(_image(ds, 0).copy()).permute(2, 0, 1)[None].float()  # (1, 3, H, W)
    text = model.encode_text(ds.vocab)
    counts = []
    for step in ("generator", "classifier", "post"):
        c = FlopCounterMode(display=False)
        with torch.no_grad(), c:
            if step == "generator":
                p = props([{"image_id": 0}], x)
            elif step == "classifier":
                out = model(x, p, text)
            else:
                postprocess(out, is_thing=ds.vocab.thing_mask, output_sizes=x.shape[-2:],
                            tasks=("semantic", "panoptic"))
        counts.append(c.get_total_flops() / 1e9)
    assert min(counts) > 0  # each stage does counted work
    assert r["gflops_per_image"] == pytest.approx(sum(counts), rel=1e-9)
    assert r["compiled"] is False


def test_benchmark_bf16_classifier_on_cpu_when_asked(root, parts):
    from smart.eval.benchmark import benchmark_model

    model, props = parts
    dtypes = set()
    hook = model.classifier.clip.visual.transformer.resblocks[0].mlp.c_fc.register_forward_hook(
        lambda m, i, o: dtypes.add(o.dtype))
    try:
        r = benchmark_model(model, _ade150(root), proposals=props, device="cpu", images=1, warmup=0)
        assert r["autocast"] is None and dtypes == {torch.float32}  # eval.bf16 is for CUDA: CPU stays fp32
        dtypes.clear()
        r = benchmark_model(model, _ade150(root), proposals=props, device="cpu", images=1, warmup=0, cpu_bf16=True)
        assert r["autocast"] == "bfloat16 (classifier)" and dtypes == {torch.bfloat16}
        dtypes.clear()
        r = benchmark_model(model, _ade150(root), proposals=props, device="cpu", images=1, warmup=0, cpu_bf16=True,
                            bf16=False)
        assert r["autocast"] is None and dtypes == {torch.float32}
    finally:
        hook.remove()
