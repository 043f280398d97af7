"""The DAG: dvc.yaml is generated and current, Snakemake and DVC agree, and a micro profile runs end to end."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import smart.paths as P
from smart.config import load_params
from smart.dag import all_targets, cell_metrics, render_dvc
from smart.experiment import Experiment
from smart.pipeline import render

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


def _snakemake_rules(proj: Path, config: dict | None = None) -> dict:
    """The rules of the Snakefile as Snakemake itself builds them (its Python API, no job run)."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings, StorageSettings

    cwd = os.getcwd()
    os.chdir(proj)
    try:
        with SnakemakeApi(OutputSettings()) as api:
            wf = api.workflow(resource_settings=ResourceSettings(cores=1), config_settings=ConfigSettings(
                config=config or {}), storage_settings=StorageSettings(), snakefile=proj / "Snakefile")
            return {r.name: {"input": list(r.input), "output": list(r.output), "params": dict(r.params.values),
                             "code": r.params.code, "cmd": r.params.cmd, "shell": r.shellcmd,
                             "resources": dict(r.resources)}
                    for r in wf._workflow.rules if r.name != "all"}
    finally:
        os.chdir(cwd)


def _inside(path: str, dirs) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in dirs)


# A user dataset (params.yaml user_datasets) listed by a cell that reads cached proposals and by one
# that runs its generator on the fly: its stages must agree in both engines too.
USER_OVERRIDE = {
    "user_datasets": {"mine": {"images": "my/images", "panoptic_json": "my/pan.json", "semseg_dir": "my/sem"}},
    "cells": {"smart": {"seeds": [0, 1, 2], "datasets": ["ade150", "mine"]},
              "fig2b_scratch": {"model": {"tune_mask_generator": True}, "datasets": ["mine"],
                                "train": {"generator": "swinb_scratch", "mini": {"iterations": 1400}}}},
}


def _merged(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@pytest.mark.parametrize("profile", ["mini", "paper", "mini+user"])
def test_snakemake_and_dvc_run_the_same_stages(profile):
    """Parity of the two engines, stage by stage: the same command, the same data inputs (a DVC directory
    dependency holds the files Snakemake reads in it), the same outputs, the same params keys and values,
    and the same code (DVC hashes the paths, Snakemake gets their content hash)."""
    from smart.dag import code_digest

    over = {"profile": profile.split("+")[0], **(USER_OVERRIDE if profile.endswith("+user") else {})}
    exp = Experiment.from_params(_merged(load_params(REPO / "params.yaml"), over))
    dvc = render_dvc(exp)["stages"]
    if profile.endswith("+user"):
        assert {"check_dataset-mine", "cache_proposals-mini-swinb-mine", "table_user"} <= set(dvc)
        assert "user_datasets.mine" in dvc["eval-smart-s0"]["params"]
        assert {"my/images", "my/pan.json", "my/pan", "my/sem"} <= set(dvc["eval-fig2b_scratch-s0"]["deps"])
    rules = _snakemake_rules(REPO, over)
    assert len(rules) == len(dvc)
    by_rule = {"".join(ch if ch.isalnum() else "_" for ch in name): name for name in dvc}
    assert set(rules) == set(by_rule)
    for rule, sm in rules.items():
        st = dvc[by_rule[rule]]
        where = f"{by_rule[rule]}: "
        # the same command; under Snakemake, jobs read params.yaml as resolved with --config overrides
        assert sm["cmd"] == st["cmd"].replace("--params params.yaml", "--params .smart/params.yaml"), where
        assert sm["shell"] == "{params.cmd} > {log} 2>&1"
        code = [d for d in st["deps"] if d.startswith("smart/")]
        data = [d for d in st["deps"] if not d.startswith("smart/")]
        assert code, where + "no code dependency"
        assert sm["code"] == code_digest(tuple(code)), where + "code"
        assert all(_inside(f, data) for f in sm["input"]), where + f"inputs {sm['input']} vs deps {data}"
        assert all(any(_inside(f, [d]) for f in sm["input"]) for d in data), where + f"deps {data} vs {sm['input']}"
        outs = [next(iter(o)) if isinstance(o, dict) else o for o in st["outs"]]
        assert all(_inside(f, outs) for f in sm["output"]), where + "outputs"
        for o in outs:  # a DVC out is a Snakemake output, or a directory (holding Snakemake's files, or DVC-only)
            assert o in sm["output"] or not Path(o).suffix, where + o
        assert list(sm["params"]) == st.get("params", []), where + "params keys"
        for key, value in sm["params"].items():
            assert value == exp.get(key), where + key


def test_config_overrides_reach_the_jobs(tmp_path):
    """`snakemake --config profile=paper`: the jobs read the resolved params, override included, and an
    override reruns only what reads the keys it changes."""
    proj = tmp_path / "proj"
    proj.mkdir()
    shutil.copy(REPO / "Snakefile", proj / "Snakefile")
    shutil.copytree(REPO / "workflow", proj / "workflow")
    (proj / "smart").symlink_to(REPO / "smart")
    shutil.copy(REPO / "params.yaml", proj / "params.yaml")
    base = _snakemake_rules(proj)
    assert Experiment.load(proj / ".smart/params.yaml").params == Experiment.load(proj / "params.yaml").params
    rules = _snakemake_rules(proj, {"profile": "paper"})
    assert all("--params .smart/params.yaml" in r["cmd"] for r in rules.values() if "--params" in r["cmd"])
    job_view = Experiment.load(proj / ".smart/params.yaml")
    assert job_view.profile == "paper" and "table3f_eva01g" in job_view.cells
    train = rules["train_smart_swinb_s0"]["resources"]  # cluster resources of the paper profile's stages
    assert (train["gpu"], train["runtime"], train["slurm_partition"]) == (1, 2880, "gpu")
    assert rules["prepare_coco"]["resources"]["slurm_partition"] == "cpu"
    assert "runtime" not in base["train_smart_s0"]["resources"]  # the mini profile runs on one machine
    eval_keys = {k: v for k, v in load_params(proj / "params.yaml")["eval"].items()}
    tweaked = _snakemake_rules(proj, {"eval": {**eval_keys, "overlap_threshold": 0.7}})
    assert Experiment.load(proj / ".smart/params.yaml").eval["overlap_threshold"] == 0.7
    changed = {n for n, r in tweaked.items() if (r["params"], r["cmd"], r["code"]) != (
        base[n]["params"], base[n]["cmd"], base[n]["code"])}
    assert changed == {n for n in base if n.startswith("eval_")} | {"qualitative"}, changed


def test_the_paper_profile_dag_builds(tmp_path):
    """profile: paper — the same rules resolve to the real datasets, the hub generators and every cell
    (paper-only ones included); dvc.yaml renders for it too."""
    proj = tmp_path / "proj"
    proj.mkdir()
    for f in ("Snakefile", "params.yaml"):
        shutil.copy(REPO / f, proj / f)
    shutil.copytree(REPO / "workflow", proj / "workflow")
    (proj / "smart").symlink_to(REPO / "smart")
    for ckpt in load_params(REPO / "params.yaml")["convert_generators"].values():  # the user downloads it
        (proj / ckpt).parent.mkdir(parents=True, exist_ok=True)
        (proj / ckpt).write_bytes(b"")
    r = subprocess.run(["snakemake", "-n", "--quiet", "rules", "--config", "profile=paper"], cwd=proj,
                       capture_output=True, text=True, env=_env())
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "prepare_coco" in r.stdout and "eval_table3f_eva01g_s0" in r.stdout and "pretrain_clip" not in r.stdout
    dvc = render_dvc(Experiment.load(REPO / "params.yaml").with_profile("paper"))
    assert "train-table3f_vitb16-s0" in dvc["stages"] and "prepare-coco" in dvc["stages"]
    assert "cache_proposals-swinb-coco_train" in dvc["stages"]


def test_every_table_and_figure_is_a_target():
    exp = Experiment.load(REPO / "params.yaml")
    targets = set(all_targets(exp))
    for name in P.TABLES:
        assert P.table(name) in targets
    for name in P.FIGURES:
        assert P.figure_files(name)[0] in targets
    stages = render_dvc(exp)["stages"]
    for name in P.TABLES + P.FIGURES:
        assert name in stages


def test_table4_compare_cells_get_refer_jobs_and_feed_the_table():
    from smart.dag import build_stages, report_inputs

    exp = Experiment.load(REPO / "params.yaml")
    compare = exp.report["table4"]["compare"]
    assert compare, "params.yaml compares tuning choices in Table 4"
    names = {st.name for st in build_stages(exp)}
    inputs = set(report_inputs(exp, "table4"))
    for cell in [exp.report["table4"]["cell"], *compare]:
        for seed in exp.cell(cell).seeds:
            assert f"refer-{cell}-s{seed}" in names
            assert P.refer_metrics(cell, seed) in inputs


def test_seeds_and_grid_of_the_mini_profile():
    exp = Experiment.load(REPO / "params.yaml")
    assert exp.profile == "mini"
    for cell in exp.report["table1"]:
        c = exp.cell(cell)
        assert c.train.iterations == 0 or len(c.seeds) >= 3, cell  # a training-free cell runs once
    for cell in set(exp.report["table3"]["d_components"].values()):
        c = exp.cell(cell)
        assert c.train.iterations == 0 or len(c.seeds) >= 3, cell


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
                     "f_vlm_backbone": {"ViT-B-16": "table3f_vitb16", "ViT-L-14-336": "smart"},
                     "g_interpretation": {"smart": "smart"}}
    rep["table4"]["compare"] = []  # compared cells' refer jobs: test_table4_compare_cells_get_refer_jobs...
    rep["fig6"] = {"iterations": ["fig6_iters_a", "smart"], "fraction": ["fig6_data_a", "smart"]}
    return params


def _micro_project(tmp_path: Path, params: dict | None = None) -> Path:
    proj = tmp_path / "proj"
    proj.mkdir(parents=True)
    for f in ("Snakefile", ".dvcignore", ".gitignore"):
        shutil.copy(REPO / f, proj / f)
    shutil.copytree(REPO / "workflow", proj / "workflow")
    shutil.copytree(REPO / "profiles", proj / "profiles")
    (proj / "smart").symlink_to(REPO / "smart")  # DVC hashes the code it depends on
    params = params or micro_params()
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (proj / "dvc.yaml").write_text(render(params))
    return proj


def _run(cmd, proj, env, timeout=900):
    r = subprocess.run(cmd, cwd=proj, capture_output=True, text=True, env=env, timeout=timeout)
    assert r.returncode == 0, " ".join(cmd) + "\n" + r.stdout[-4000:] + r.stderr[-4000:]
    return r


# Table 2 reports measured speeds, and the run records hold timings: everything else a run writes under
# results/ is the same bytes on a rerun (training summaries, curves and configs, evaluation details,
# pretraining records, every table and figure).
MEASURED = ("results/benchmarks", "results/table2.")


def _snapshot(proj: Path) -> dict:
    out = {}
    for f in sorted((proj / "results").rglob("*")):
        rel = str(f.relative_to(proj))
        if f.is_file() and not (f.suffix == ".pt" or f.name == ".gitignore" or rel.endswith(".run.json")
                                or rel.startswith(MEASURED) or "/.scratch/" in rel):
            out[rel] = f.read_bytes()
    return out


MEASURED_STAGES = ("benchmark-", "table2")  # stages whose outputs hold measured speeds


def _dvc_changed(proj: Path, env) -> set[str]:
    """The stages `dvc status` reports (empty when everything is up to date)."""
    out = _run(["dvc", "status", "--json"], proj, env).stdout
    return set(json.loads(out or "{}"))


def _nothing_to_do(proj: Path, env) -> None:
    r = _run(["snakemake", "-n", "--cores", "1"], proj, env)
    assert "Nothing to be done" in r.stdout + r.stderr, r.stdout[-3000:] + r.stderr[-3000:]


@pytest.mark.slow
def test_micro_dag_through_snakemake_and_dvc(tmp_path):
    """The whole DAG (every rule kind, every table and figure) built from scratch twice at once, by
    `dvc repro` in one checkout and by Snakemake in another (one core each): the two builds are the same
    bytes (but for measured speeds), and each engine takes the other's build as up to date; one param
    change reruns only what depends on it; a copy of the built checkout elsewhere has nothing to do in
    either engine."""
    dvc_proj = _micro_project(tmp_path / "dvc")
    sm_proj = _micro_project(tmp_path / "snakemake")
    env = _env()
    params = load_params(dvc_proj / "params.yaml")
    exp = Experiment.from_params(params)
    for proj in (dvc_proj, sm_proj):
        subprocess.run(["git", "init", "-q"], cwd=proj, check=True, env=env)
        subprocess.run(["dvc", "init", "-q"], cwd=proj, check=True, env=env)
    sm = subprocess.Popen(["snakemake", "--cores", "1"], cwd=sm_proj, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    try:
        _run(["dvc", "repro"], dvc_proj, env)
    finally:
        sm_out = sm.communicate(timeout=900)[0]
    assert sm.returncode == 0, sm_out[-4000:]
    for name in P.TABLES + P.FIGURES:
        for f in P.report_outputs(name):
            assert (dvc_proj / f).is_file(), f
    for cell in exp.cells:
        for f in cell_metrics(exp, cell):
            assert (dvc_proj / f).is_file(), f
    assert "SMART-SwinB (ours: smart_swinb)" in (dvc_proj / "results/table1.csv").read_text()
    assert _dvc_changed(dvc_proj, env) == set()

    # The same bytes from both engines, and each takes the other's build as its own.
    first = _snapshot(dvc_proj)
    assert len(first) > 60 and any(k.endswith("summary.json") for k in first)
    second = _snapshot(sm_proj)
    assert sorted(second) == sorted(first)
    for k, data in first.items():
        assert second[k] == data, k
    _nothing_to_do(dvc_proj, env)  # after a complete `dvc repro`, Snakemake agrees
    # DVC's record holds for Snakemake's build (its cache: the objects DVC stored when it built them)
    shutil.copy(dvc_proj / "dvc.lock", sm_proj / "dvc.lock")
    _run(["dvc", "cache", "dir", "--local", str(dvc_proj / ".dvc" / "cache")], sm_proj, env)
    changed = _dvc_changed(sm_proj, env)
    assert all(c.startswith(MEASURED_STAGES) for c in changed), changed

    # One param change: only the stages that depend on it run again, and `dvc params diff` shows it.
    for cmd in (["git", "add", "-A"], ["git", "commit", "-q", "-m", "micro run"]):
        subprocess.run(cmd, cwd=dvc_proj, check=True, env=env, capture_output=True)
    params["cells"]["fig6_iters_a"]["train"]["mini"]["iterations"] = 2
    (dvc_proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (dvc_proj / "dvc.yaml").write_text(render(params))
    r = _run(["dvc", "repro"], dvc_proj, env)
    ran = set(re.findall(r"Running stage '([^']+)'", r.stdout))
    assert ran == {"train-fig6_iters_a-s0", "eval-fig6_iters_a-s0", "fig6"}, ran
    r = _run(["dvc", "params", "diff"], dvc_proj, env)
    assert "cells.fig6_iters_a.train.mini.iterations" in r.stdout
    _nothing_to_do(dvc_proj, env)

    # The built checkout copied elsewhere (as to a cluster's scratch disk): nothing to do in either engine.
    moved = tmp_path / "elsewhere" / "proj"
    moved.parent.mkdir()
    subprocess.run(["cp", "-a", str(dvc_proj), str(moved)], check=True)
    _nothing_to_do(moved, env)
    assert _dvc_changed(moved, env) == set()


def test_the_local_profile_loads_automatically(tmp_path):
    """profiles/default is found beside the Snakefile from any working directory: no --cores needed, and its
    settings (one GPU job at a time, keep going, rerun incomplete jobs) are in force."""
    import yaml

    prof = yaml.safe_load((REPO / "profiles/default/profile.yaml").read_text())
    assert prof["cores"] == "all" and prof["resources"] == {"gpu": 1}
    assert prof["rerun-incomplete"] is True and prof["keep-going"] is True
    for cwd in (REPO, tmp_path):  # from the checkout, and from elsewhere with --snakefile
        r = subprocess.run(["snakemake", "-n", "--quiet", "rules", "--snakefile", str(REPO / "Snakefile"),
                            "--directory", str(REPO), "results/table1.csv"], cwd=cwd, capture_output=True,
                           text=True, env=_env())
        assert r.returncode == 0, r.stderr[-2000:]
        assert "workflow specific profile" in r.stderr and "profiles/default" in r.stderr


def _wait_for(cond, timeout=600.0, what="condition"):
    import time

    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.extended
@pytest.mark.faults
def test_snakemake_or_dvc_killed_during_training(tmp_path):
    """SIGKILL to Snakemake (or to `dvc repro`) while a training job runs leaves that job as an orphan; the
    documented rerun keeps its work (it waits for the orphan, then finds the training finished or resumes
    it) and ends with the bytes of an uninterrupted training."""
    import signal

    params = micro_params()
    params["cells"]["smart"] = {"seeds": [0], "train": {"mini": {"iterations": 60, "checkpoint_period": 10}}}
    proj = _micro_project(tmp_path, params)
    env = _env()
    target = P.train_outputs("smart", 0)["model"]
    scratch = proj / "results/train/smart/.scratch/s0"
    # the training's inputs first, so that the kill lands in the training job
    _run(["snakemake", "--cores", "2", P.proposals_manifest("mini-swinb", "coco_train"), *P.mini_clip_files()],
         proj, env)

    sm = subprocess.Popen(["snakemake", "--cores", "1", target], cwd=proj, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    _wait_for(lambda: (scratch / "last.pt").is_file() or sm.poll() is not None, what="the first checkpoint")
    assert sm.poll() is None, "training ended before the kill"
    sm.send_signal(signal.SIGKILL)  # Snakemake only: its training job lives on as an orphan
    sm.wait()
    _run(["snakemake", "--unlock"], proj, env)
    _run(["snakemake", "--cores", "1", target], proj, env)  # the profile's rerun-incomplete redoes the job
    log = (proj / P.log("train", "smart/s0")).read_text()
    assert "at iteration 60/60" in log, log[-3000:]  # the orphan's training was kept, not redone

    ref = tmp_path / "ref"
    r = subprocess.run([sys.executable, "-m", "smart", "train", "--params", "params.yaml", "--cell", "smart", "--seed",
                        "0", "--out", str(ref), "--proposals", "data/proposals/mini-swinb/coco_train", "--threads",
                        "1"], cwd=proj, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    out = proj / P.train_dir("smart", 0)
    for f in ("model.pt", "metrics.jsonl", "summary.json"):
        assert (out / f).read_bytes() == (ref / f).read_bytes(), f

    # the same through DVC: killed mid-training, `dvc repro` again resumes from the checkpoint
    subprocess.run(["git", "init", "-q"], cwd=proj, check=True, env=env)
    subprocess.run(["dvc", "init", "-q"], cwd=proj, check=True, env=env)
    _run(["dvc", "commit", "-f", "-q", "--with-deps", "train-smart-s0"], proj, env)  # record what Snakemake built
    shutil.rmtree(scratch)
    dv = subprocess.Popen(["dvc", "repro", "--force", "--single-item", "train-smart-s0"], cwd=proj, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(lambda: (scratch / "last.pt").is_file() or dv.poll() is not None, what="the first checkpoint")
    assert dv.poll() is None, "training ended before the kill"
    dv.send_signal(signal.SIGKILL)
    dv.wait()
    _run(["dvc", "repro", "--single-item", "train-smart-s0"], proj, env)
    for f in ("model.pt", "metrics.jsonl", "summary.json"):
        assert (out / f).read_bytes() == (ref / f).read_bytes(), f
    assert "up to date" in _run(["dvc", "status", "train-smart-s0"], proj, env).stdout.lower()
