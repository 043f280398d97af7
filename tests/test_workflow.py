"""The DAG: dvc.yaml is generated and current, Snakemake and DVC agree, and a micro profile runs end to end."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import smart.paths as P
from smart.config import load_params
from smart.pipeline import build_dvc, dvc_outs, render

REPO = Path(__file__).resolve().parents[1]
MICRO_WORLD = {
    "seed": 0, "image_size": 64,
    "sizes": {"coco_train": 16, "coco_val": 6, "ade_val": 6, "mapillary_val": 6, "pascal_val": 6, "refer_val": 6},
    "captions": {"num_images": 8, "image_size": 32, "shard_size": 8, "group_size": 4},
}


def _env():
    env = dict(os.environ, DVC_NO_ANALYTICS="1", ITERATIVE_DO_NOT_TRACK="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env


def test_dvc_yaml_is_up_to_date():
    r = subprocess.run([sys.executable, "-m", "smart.pipeline", "dvc-yaml", "--check"], cwd=REPO,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_dvc_outs_are_snakemake_targets():
    params = load_params(REPO / "params.yaml")
    outs = dvc_outs(build_dvc(params))
    stamps_and_files = [o for o in outs if Path(o).suffix]  # the DVC-only directory outs have no suffix
    targets = set(P.all_targets(params))
    assert set(P.table1_inputs(params)) <= set(stamps_and_files)
    # every DVC-declared result is a Snakemake target or a sibling output of one
    siblings = {"results/table1.md", "results/table1.tex"}
    for cell in P.TRAINED_CELLS:
        siblings |= {f"{P.train_dir(cell)}/model.pt", f"{P.train_dir(cell)}/metrics.jsonl"}
    assert {o for o in stamps_and_files if o.startswith("results/")} <= targets | siblings
    r = subprocess.run(["snakemake", "-n", "--cores", "1", *stamps_and_files], cwd=REPO,
                       capture_output=True, text=True, env=_env())
    assert r.returncode == 0, r.stdout + r.stderr


def _micro_project(tmp_path: Path) -> Path:
    proj = tmp_path / "proj"
    proj.mkdir()
    shutil.copy(REPO / "Snakefile", proj / "Snakefile")
    shutil.copytree(REPO / "workflow", proj / "workflow")
    (proj / "smart").symlink_to(REPO / "smart")  # DVC hashes the code it depends on
    params = load_params(REPO / "params.yaml")
    params["mini_world"] = MICRO_WORLD
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (proj / "dvc.yaml").write_text(render(params))
    return proj


@pytest.mark.slow
def test_micro_dag_through_snakemake_and_dvc(tmp_path):
    proj = _micro_project(tmp_path)
    env = _env()
    r = subprocess.run(["snakemake", "--cores", "2", "results/table1.csv"], cwd=proj, capture_output=True,
                       text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    table = (proj / "results/table1.csv").read_text()
    assert "SMART-SwinB" in table
    for ds in ("coco_train",) + P.EVAL_DATASETS:
        assert (proj / P.dataset_check(ds)).exists()
    first = {p: p.read_bytes() for p in (proj / "results/datasets").iterdir()}
    # The same DAG through DVC, from scratch: identical dataset statistics and table.
    shutil.rmtree(proj / "results")
    shutil.rmtree(proj / "data")
    subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=proj, check=True, env=env)
    r = subprocess.run(["dvc", "repro", "table1"], cwd=proj, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert (proj / "dvc.lock").exists()
    for p, data in first.items():
        assert p.read_bytes() == data, p.name
    assert (proj / "results/table1.csv").read_text() == table
    r = subprocess.run(["dvc", "status", "table1"], cwd=proj, capture_output=True, text=True, env=env)
    assert "up to date" in r.stdout.lower(), r.stdout
