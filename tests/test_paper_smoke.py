"""The paper profile runs for real, offline: its whole DAG on tiny data with the paper's architectures
(``python -m smart paper-smoke``), and the prepared GPU check (``benchmarks/gpu_paper.py``) on the CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import smart.paths as P
from smart.config import load_params
from smart.dag import cell_metrics
from smart.experiment import Experiment
from smart.smoke import EVAL_DATASETS, smoke_params

REPO = Path(__file__).resolve().parents[1]


def test_smoke_params_are_the_paper_profile_with_declared_reductions():
    p = smoke_params(load_params(REPO / "params.yaml"), image_size=224, iterations=2, test_size=[256, 384])
    assert p["profile"] == "paper" and p["model"]["paper"]["preset"] == "paper"
    assert p["model"]["paper"]["clip_model"] == "ViT-L-14-336-quickgelu"
    assert p["proposals"]["paper"]["top_k"] == 100  # the paper's test protocol is kept
    assert p["proposals"]["paper"]["test_sizes"] == {"default": [256, 384], "mapillary": [320, 480]}
    gens = p["train_defaults"]["paper"]["generators"]
    assert gens["r50"]["pretrained"] in p["convert_generators"]  # R50 converted inside the DAG
    exp = Experiment.from_params(p)
    for cell in ("smart_swinb", "smart_r50", "frozen"):
        assert list(exp.cell(cell).datasets) == EVAL_DATASETS
    kinds = set()
    for cell in exp.cells.values():
        kinds.add("store" if cell.uses_store else "on the fly")
    assert kinds == {"store", "on the fly"}


@pytest.mark.slow
@pytest.mark.extended
@pytest.mark.paper
def test_paper_profile_smoke_run(tmp_path):
    """Every rule kind of the paper profile: prepare, check, convert, cache (Swin-B and R50), train,
    eval-cell on all six benchmarks, benchmark, eval-refer, every table and figure."""
    out = tmp_path / "smoke"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-m", "smart", "paper-smoke", "--out", str(out), "--cores", "2"],
                       capture_output=True, text=True, env=env, timeout=1500)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    exp = Experiment.load(out / "params.yaml")
    for name in P.TABLES + P.FIGURES:
        for f in P.report_outputs(name):
            assert (out / f).is_file(), f
    for cell in exp.cells:
        for f in cell_metrics(exp, cell):
            m = json.loads((out / f).read_text())
            assert m, f  # flat metrics of every benchmark
    for gen in ("swinb", "r50"):
        man = json.loads((out / P.proposals_manifest(gen, "ade150")).read_text())
        assert man["top_k"] == 100 and man["generator_settings"]["min_size"] == 256
    man = json.loads((out / P.proposals_manifest("swinb", "mapillary")).read_text())
    assert man["generator_settings"]["min_size"] == 320  # Mapillary's own test size
    cfg = json.loads((out / "results/train/smart_swinb/s0/config.json").read_text())
    assert cfg["model"]["clip_model"] == "ViT-L-14-336-quickgelu" and cfg["model"]["sma"] and cfg["model"]["void_class"]
    assert cfg["model"]["tune"] == "q" and cfg["model"]["da_layers"] == 2
    detail = json.loads((out / "results/eval/table3e_maskgen/s0/ade150.json").read_text())
    assert "top 100" in detail["provenance"]["proposals"] and "256" in detail["provenance"]["proposals"]
    info = json.loads((out / "smoke.json").read_text())
    assert info["returncode"] == 0 and info["reductions"]["clip_input"].startswith("224 px")


@pytest.mark.slow
@pytest.mark.extended
@pytest.mark.paper
def test_gpu_paper_script_runs_on_cpu(tmp_path):
    """The prepared GPU check, at small sizes on the CPU (its plumbing; the figures come from a GPU)."""
    res = tmp_path / "gpu.json"
    r = subprocess.run([sys.executable, str(REPO / "benchmarks/gpu_paper.py"), "--out", str(tmp_path / "w"),
                        "--json", str(res), "--device", "cpu", "--image-size", "224", "--test-size", "128", "256",
                        "--crop", "128", "--batch", "1", "--iterations", "2", "--skip", "0", "--images", "1",
                        "--warmup", "0", "--scale", "8", "--workers", "0", "--class-names", "plain"],
                       capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=1800)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    out = json.loads(res.read_text())
    assert out["device"] == "cpu" and out["train"]["step_seconds_median"] > 0
    assert out["train"]["gpu_hours_25k_x16"] > 0
    inf = out["inference"]
    assert set(inf) == {"fp32", "bf16", "bf16_compile"}
    for name, rec in inf.items():
        assert rec["fps"] > 0 and rec["gflops_per_image"] > 0 and rec["achieved_tflops"] > 0, name
        assert rec["autocast"] is None and rec["inference_precision"] == "fp32"  # eval.bf16 is for CUDA
        assert rec["peak_fraction"] is None  # a CPU has no listed peak
    assert inf["bf16_compile"]["compiled"] and not inf["bf16"]["compiled"]
    assert inf["fp32"]["gflops_per_image"] == pytest.approx(inf["bf16"]["gflops_per_image"])
    assert yaml.safe_load((tmp_path / "w/params.yaml").read_text())["model"]["paper"]["image_size"] == 224
