"""The DAG: dvc.yaml is generated and current, Snakemake and DVC agree, and a micro profile runs end to end."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import smart.paths as P
from smart.config import load_params, train_config
from smart.pipeline import build_dvc, dvc_outs, render

REPO = Path(__file__).resolve().parents[1]
MICRO_WORLD = {
    "seed": 0, "image_size": 64,
    "sizes": {"coco_train": 16, "coco_val": 6, "ade_val": 6, "mapillary_val": 6, "pascal_val": 6, "refer_val": 6},
    "captions": {"num_images": 8, "image_size": 32, "shard_size": 8, "group_size": 4},
}


def _env():
    env = dict(os.environ, DVC_NO_ANALYTICS="1", ITERATIVE_DO_NOT_TRACK="1", GIT_AUTHOR_NAME="t",
               GIT_AUTHOR_EMAIL="t@example.org", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.org")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env


def test_dvc_yaml_is_up_to_date():
    r = subprocess.run([sys.executable, "-m", "smart.pipeline", "dvc-yaml", "--check"], cwd=REPO,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("profile", ["mini", "paper"])
def test_dvc_deps_cover_snakemake_inputs(profile):
    """Every file a Snakemake training or evaluation job reads is a DVC dependency of its stage (or lies
    in a directory that is), so DVC reruns the stage when it changes."""
    from smart.pipeline import stage_name

    params = load_params(REPO / "params.yaml")
    params["profile"] = profile
    stages = build_dvc(params)["stages"]

    def missing(files, deps):
        return [f for f in files if not any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps)]

    for cell in P.cells(params):
        for seed in P.seeds(params, cell):
            deps = stages[stage_name("eval", f"{cell}-s{seed}")]["deps"]
            assert not missing(P.eval_inputs(params, cell, seed), deps), cell
    for cell in P.trained_cells(params):
        for seed in P.seeds(params, cell):
            deps = stages[stage_name("train", f"{cell}-s{seed}")]["deps"]
            assert not missing(P.train_inputs(params, cell), deps), cell


def test_dvc_outs_are_snakemake_targets():
    params = load_params(REPO / "params.yaml")
    outs = dvc_outs(build_dvc(params))
    stamps_and_files = [o for o in outs if Path(o).suffix]  # the DVC-only directory outs have no suffix
    targets = set(P.all_targets(params))
    assert set(P.table1_inputs(params)) <= set(stamps_and_files)
    # every DVC-declared result is a Snakemake target or a sibling output of one
    siblings = set()
    for name in P.TABLES + P.FIGURES:
        siblings |= set(P.report_outputs(name))
    for cell in P.trained_cells(params):
        for seed in P.seeds(params, cell):
            siblings |= set(P.train_outputs(cell, seed).values())
    for cell in P.cells(params):
        for seed in P.seeds(params, cell):
            siblings |= {P.eval_detail(cell, seed, d) for d in P.eval_datasets(params, cell)}
    rep = params["report"]
    siblings |= {P.benchmark_file(rep["table2"]["cell"])}
    for seed in P.seeds(params, rep["table4"]["cell"]):
        siblings |= {P.refer_metrics(rep["table4"]["cell"], seed), P.refer_detail(rep["table4"]["cell"], seed)}
    assert {o for o in stamps_and_files if o.startswith("results/")} <= targets | siblings
    r = subprocess.run(["snakemake", "-n", "--cores", "1", *stamps_and_files], cwd=REPO,
                       capture_output=True, text=True, env=_env())
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_paper_profile_dag_builds(tmp_path):
    """profile: paper — the same rules resolve to the real datasets, the hub generators and every cell
    (paper-only ones included); dvc.yaml generates for it too."""
    r = subprocess.run(["snakemake", "-n", "--quiet", "rules", "--config", "profile=paper"], cwd=REPO,
                       capture_output=True, text=True, env=_env())
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "prepare_dataset" in r.stdout and "eval_table3f_eva01g" in r.stdout and "pretrain_clip" not in r.stdout
    params = load_params(REPO / "params.yaml")
    params["profile"] = "paper"
    dvc = build_dvc(params)
    assert "train-table3f_vitb16-s0" in dvc["stages"] and "prepare-coco" in dvc["stages"]
    assert "cache_proposals-swinb-coco_train" in dvc["stages"]


def test_every_table_and_figure_is_a_target():
    params = load_params(REPO / "params.yaml")
    targets = set(P.all_targets(params))
    for name in P.TABLES:
        assert P.table(name) in targets
    for name in P.FIGURES:
        assert P.figure_files(name)[0] in targets
    stages = build_dvc(params)["stages"]
    for name in P.TABLES + P.FIGURES:
        assert name in stages


def test_seeds_and_grid_of_the_mini_profile():
    params = load_params(REPO / "params.yaml")
    assert params["profile"] == "mini"
    for cell in params["report"]["table1"]:
        tc = train_config(params, cell, profile="mini")
        assert tc.iterations == 0 or len(P.seeds(params, cell)) >= 3, cell  # a training-free cell runs once
    for cell in set(params["report"]["table3"]["d_components"].values()):
        tc = train_config(params, cell, profile="mini")
        assert tc.iterations == 0 or len(P.seeds(params, cell)) >= 3, cell


# ------------------------------------------------------------------------------------ micro profile
def micro_params() -> dict:
    """params.yaml shrunk to seconds per job, keeping one cell of every kind (trained on cached proposals,
    several seeds, training-free, oracle evaluation-only, a generator trained inside SMART's training on
    on-the-fly proposals, Fig. 6 lengths and fractions, a paper-only cell) and every table and figure."""
    params = load_params(REPO / "params.yaml")
    params["mini_world"] = MICRO_WORLD
    clip = params["mini_clip"]
    clip.update(image_size=32, patch_size=8, steps=2, batch_size=8, warmup=1, log_every=1, eval_per_class=1)
    params["model"]["mini"]["image_size"] = 32
    params["mini_generators"].pop("mini-r50")  # no cell of the micro grid uses it
    for g in params["mini_generators"].values():
        g.update(steps=2, batch_size=2, warmup=1, log_every=1, eval_batch_size=4, train_num_points=64)
    params["train_defaults"]["mini"].update(iterations=2, batch_size=2, crop_size=64, log_period=1,
                                            checkpoint_period=1)
    cells = params["cells"]
    params["cells"] = {
        "smart_swinb": {**cells["smart_swinb"], "seeds": [0, 1], "datasets": ["coco", "ade150", "pc59"]},
        "frozen": {**cells["frozen"], "datasets": ["ade150", "mapillary"]},
        "smart": {"seeds": [0]},
        "table3f_vitb16": cells["table3f_vitb16"],
        "fig2a_oracle_generator": cells["fig2a_oracle_generator"],
        "fig2a_oracle_classifier": cells["fig2a_oracle_classifier"],
        "fig2b_scratch": {**cells["fig2b_scratch"], "train": {"generator": "swinb_scratch", "mini": {"iterations": 2}}},
        "fig6_iters_a": {"train": {"mini": {"iterations": 1}}},
        "fig6_data_a": {"train": {"fraction": 0.5}, "datasets": ["ade150"]},
    }
    rep = params["report"]
    rep["table1"] = {"smart_swinb": "SMART-SwinB", "frozen": "Frozen baseline"}
    rep["table2"]["images"] = 2
    rep["table3"] = {"a_tuned_parameters": {"q": "smart"}, "b_lora_rank": {"smart": "smart"},
                     "c_da_layers": {"2": "smart"},
                     "d_components": {"baseline": "frozen", "sma_qpt": "smart"},
                     "e_extra_tuning": {"smart": "smart"},
                     "f_vlm_backbone": {"ViT-B-16": "table3f_vitb16", "ViT-L-14-336": "smart"}}
    rep["fig6"] = {"iterations": ["fig6_iters_a", "smart"], "fraction": ["fig6_data_a", "smart"]}
    return params


def _micro_project(tmp_path: Path, params: dict | None = None) -> Path:
    proj = tmp_path / "proj"
    proj.mkdir()
    shutil.copy(REPO / "Snakefile", proj / "Snakefile")
    shutil.copytree(REPO / "workflow", proj / "workflow")
    (proj / "smart").symlink_to(REPO / "smart")  # DVC hashes the code it depends on
    params = params or micro_params()
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (proj / "dvc.yaml").write_text(render(params))
    return proj


def _run(cmd, proj, env, timeout=900):
    r = subprocess.run(cmd, cwd=proj, capture_output=True, text=True, env=env, timeout=timeout)
    assert r.returncode == 0, " ".join(cmd) + "\n" + r.stdout[-4000:] + r.stderr[-4000:]
    return r


DETERMINISTIC = ("results/metrics", "results/datasets", "results/table1.csv", "results/table3d.csv",
                 "results/table4.csv", "results/figures/fig2.png", "results/figures/fig6.pdf", "results/plots")


def _snapshot(proj: Path) -> dict:
    out = {}
    for rel in DETERMINISTIC:
        p = proj / rel
        files = sorted(p.rglob("*")) if p.is_dir() else [p]
        for f in files:
            if f.is_file():
                out[str(f.relative_to(proj))] = f.read_bytes()
    return out


@pytest.mark.slow
def test_micro_dag_through_snakemake_and_dvc(tmp_path):
    """The whole DAG (every rule kind, every table and figure) through Snakemake, then from scratch
    through `dvc repro` with identical results; then one param change reruns only what depends on it."""
    proj = _micro_project(tmp_path)
    env = _env()
    _run(["snakemake", "--cores", "2"], proj, env)
    params = load_params(proj / "params.yaml")
    for name in P.TABLES + P.FIGURES:
        for f in P.report_outputs(name):
            assert (proj / f).is_file(), f
    for cell in P.cells(params):
        for f in P.cell_metrics(params, cell):
            assert (proj / f).is_file(), f
    table1 = (proj / "results/table1.csv").read_text()
    assert "SMART-SwinB (ours: smart_swinb)" in table1
    first = _snapshot(proj)
    assert len(first) > 30

    # The same DAG through DVC, from scratch: identical metrics, tables and figures.
    shutil.rmtree(proj / "results")
    shutil.rmtree(proj / "data")
    subprocess.run(["git", "init", "-q"], cwd=proj, check=True, env=env)
    subprocess.run(["dvc", "init", "-q"], cwd=proj, check=True, env=env)
    _run(["dvc", "repro"], proj, env)
    assert (proj / "dvc.lock").exists()
    second = _snapshot(proj)
    assert sorted(second) == sorted(first)
    for k, data in first.items():
        assert second[k] == data, k
    assert "up to date" in _run(["dvc", "status"], proj, env).stdout.lower()

    # One param change: only the stages that depend on it run again, and `dvc params diff` shows it.
    for cmd in (["git", "add", "-A"], ["git", "commit", "-q", "-m", "micro run"]):
        subprocess.run(cmd, cwd=proj, check=True, env=env, capture_output=True)
    params["cells"]["fig6_iters_a"]["train"]["mini"]["iterations"] = 2
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (proj / "dvc.yaml").write_text(render(params))
    r = _run(["dvc", "repro"], proj, env)
    ran = set(re.findall(r"Running stage '([^']+)'", r.stdout))
    assert ran == {"train-fig6_iters_a-s0", "eval-fig6_iters_a-s0", "fig6"}, ran
    r = _run(["dvc", "params", "diff"], proj, env)
    assert "cells.fig6_iters_a.train.mini.iterations" in r.stdout
