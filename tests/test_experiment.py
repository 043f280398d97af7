"""params.yaml read once: the Experiment (smart/experiment.py), the shared run context of the verbs
(smart/cli/context.py), the type-driven validator (smart/schema.py) and run records (smart/provenance.py)."""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from smart.cli.context import RunContext, add_run_arguments
from smart.config import load_params
from smart.errors import ConfigError
from smart.experiment import Experiment
from smart.provenance import read_run_record, split, write_result
from smart.schema import check_value

REPO = Path(__file__).resolve().parents[1]
PARAMS = load_params(REPO / "params.yaml")


def test_the_experiment_resolves_every_cell_without_torch():
    code = ("import sys; from smart.experiment import Experiment; e = Experiment.load('params.yaml'); "
            "print(len(e.cells), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    n, torch_loaded = out.split()
    assert int(n) > 30 and torch_loaded == "False"
    exp = Experiment.load(REPO / "params.yaml")
    assert exp.cell("table3a_all").model.tune == "all" and exp.cell("smart").model.tune == "q"
    assert exp.cell("frozen").model.tune == "none" and exp.cell("frozen").train.iterations == 0
    assert exp.cell("fig2a_oracle_generator").model_cell == "frozen"
    assert exp.cell("fig2b_scratch").uses_store is False and exp.cell("smart").generator == "mini-swinb"
    assert exp.cell("smart").train_for(2).seed == 2
    with pytest.raises(ConfigError, match="paper profile only"):
        exp.cell("table3f_vitb16")
    assert "table3f_vitb16" in exp.with_profile("paper").cells
    assert exp.root == "data/mini" and exp.with_profile("paper").root == "datasets"


@pytest.mark.parametrize("edit, field", [
    (lambda p: p.update(trian_defaults={}), "trian_defaults"),  # a misspelt section
    (lambda p: p.pop("eval"), "eval"),
    (lambda p: p["cells"]["smart"].update(model={"tune": "qq"}), "cells.smart.model.tune"),
    (lambda p: p["cells"]["smart"].update(train={"lr": "fast"}), "cells.smart.train.lr"),
    (lambda p: p["train_defaults"]["mini"].update(betas=[0.9]), "train_defaults.mini.betas"),
    (lambda p: p["mini_clip"].update(steps="many"), "mini_clip.steps"),
    (lambda p: p["mini_generators"]["mini-r50"].pop("seed"), "mini_generators.mini-r50.seed"),
    (lambda p: p["proposals"]["mini"].update(top_k=0), "proposals.mini.top_k"),
    (lambda p: p["eval"].update(overlap_threshold=1.5), "eval.overlap_threshold"),  # a range, torch-free
    (lambda p: p["eval"].update(batch_size=2.5), "eval.batch_size"),
    (lambda p: p["data"].update(download="yes"), "data.download"),
    (lambda p: p["report"]["table1"].update(nope="X"), "report.table1.nope"),
])
def test_one_validation_names_the_key_path(edit, field):
    params = copy.deepcopy(PARAMS)
    edit(params)
    with pytest.raises(ConfigError) as exc:
        Experiment.from_params(params, source="p.yaml")
    assert exc.value.field == field and "p.yaml" in str(exc.value)


def test_old_params_files_with_qpt_still_read():
    params = copy.deepcopy(PARAMS)
    params["cells"]["table3d_sma"]["model"] = {"sma": True, "qpt": False}
    assert Experiment.from_params(params).cell("table3d_sma").model.tune == "none"
    params["cells"]["table3d_sma"]["model"] = {"qpt": False, "tune": "k"}
    with pytest.raises(ConfigError, match="folded into tune"):
        Experiment.from_params(params)


def test_types_come_from_annotations():
    assert check_value([0.9, 0.99], tuple[float, float], field="b") == (0.9, 0.99)
    assert check_value(2, float, field="x") == 2.0 and isinstance(check_value(2, float, field="x"), float)
    assert check_value(None, str | None, field="x") is None
    assert check_value([1, 2], str | tuple[int, ...], field="x") == (1, 2)
    for value, tp in ((True, int), ("1", float), (1, bool), ([1, "a"], tuple[int, ...]), (float("nan"), float)):
        with pytest.raises(ConfigError) as exc:
            check_value(value, tp, field="k.e.y")
        assert exc.value.field.startswith("k.e.y")


def _args(argv, **kw):
    p = argparse.ArgumentParser()
    add_run_arguments(p, **kw)
    return p.parse_args(argv)


def test_run_context_resolves_the_shared_flags(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    ctx = RunContext(_args([], device=True, threads=True, workers=True))
    assert (ctx.profile, ctx.root, ctx.workers, ctx.args.device) == ("mini", "data/mini", 1, "auto")
    ctx = RunContext(_args(["--profile", "paper"]))
    assert ctx.root == "datasets" and ctx.experiment.profile == "paper"
    assert RunContext(_args(["--root", "elsewhere"])).root == "elsewhere"
    monkeypatch.chdir(tmp_path)  # no params file here: the registry's defaults
    assert RunContext(_args([])).root is None and RunContext(_args([])).profile == "mini"
    with pytest.raises(ConfigError, match="not found"):
        RunContext(_args(["--params", "missing.yaml"])).profile  # noqa: B018


def test_run_records_keep_timing_out_of_results(tmp_path):
    rec = {"PQ": 1.5, "seconds": 3.2, "provenance": {"cell": "x", "git_sha": "abc"}, "lines": [{"time": 1}]}
    stable, volatile = split(rec)
    assert stable == {"PQ": 1.5, "provenance": {"cell": "x"}, "lines": [{"time": 1}]}
    assert volatile == {"seconds": 3.2, "provenance": {"git_sha": "abc"}}
    out = tmp_path / "r.json"
    write_result(out, rec)
    first = out.read_bytes()
    write_result(out, {**rec, "seconds": 9.9})  # a rerun: same result bytes, new timing
    assert out.read_bytes() == first and json.loads(first) == stable
    assert read_run_record(out)["seconds"] == 9.9 and "git_sha" in read_run_record(out)
    for name in (".gitignore", ".dvcignore"):
        assert "*.run.json" in (REPO / name).read_text()


def test_dag_params_file_round_trips(tmp_path, monkeypatch):
    from smart.dag import resolved_params_file

    monkeypatch.chdir(tmp_path)
    exp = Experiment.from_params({**PARAMS, "profile": "paper"})
    path = resolved_params_file(exp)
    assert path == ".smart/params.yaml" and Experiment.load(path).params == exp.params
    mtime = Path(path).stat().st_mtime_ns
    assert resolved_params_file(exp) == path and Path(path).stat().st_mtime_ns == mtime  # unchanged: not rewritten
    assert yaml.safe_load(Path(path).read_text())["profile"] == "paper"


def test_no_import_cycle_between_config_evaluation_and_training():
    """The params layer imports neither evaluation nor training; proposal sources live in smart.data."""
    code = ("import sys, smart.config, smart.experiment, smart.dag; "
            "print(sorted(m for m in sys.modules if m.startswith(('smart.eval', 'smart.train.loop', 'torch'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    import smart.data.sources as sources

    assert {"StoreSource", "GeneratorSource", "OnTheFlyProposals"} <= set(vars(sources))
