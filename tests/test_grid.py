"""The experiment grid of params.yaml: cell specs, seeds, evaluation-only cells, eval settings."""

import copy

import pytest

from smart.config import cell_names, cell_spec, check_report, load_params, train_config
from smart.errors import ConfigError
from smart.eval.cell import eval_settings

PARAMS = load_params("params.yaml")


def test_every_cell_resolves():
    for cell in cell_names(PARAMS):
        spec = cell_spec(PARAMS, cell)
        assert spec.seeds and spec.datasets
        if spec.trained:
            for seed in spec.seeds:
                assert train_config(PARAMS, cell, profile="mini", seed=seed).seed == seed


def test_defaults_and_overrides():
    assert cell_spec(PARAMS, "table3a_k").seeds == tuple(PARAMS["cell_defaults"]["seeds"])
    assert cell_spec(PARAMS, "table3a_k").datasets == ("ade150",)
    assert len(cell_spec(PARAMS, "smart_swinb").datasets) == 6
    o = cell_spec(PARAMS, "fig2a_oracle_generator")
    assert not o.trained and o.model_cell == "frozen" and o.oracle == "generator"
    assert train_config(PARAMS, "frozen", profile="mini").iterations == 0
    assert train_config(PARAMS, "fig6_iters_a", profile="paper").iterations == 100


@pytest.mark.parametrize("change, field", [
    (lambda c: c["smart"].update(seeds=[]), "cells.smart.seeds"),
    (lambda c: c["smart"].update(seeds=[0, 0]), "cells.smart.seeds"),
    (lambda c: c["smart"].update(seeds=[-1]), "cells.smart.seeds"),
    (lambda c: c["smart"].update(datasets=["ade151"]), "cells.smart.datasets"),
    (lambda c: c["fig2a_oracle_generator"].update(model_from="nope"), "cells.fig2a_oracle_generator.model_from"),
    (lambda c: c["fig2a_oracle_generator"].update(oracle="psychic"), "cells.fig2a_oracle_generator.oracle"),
    (lambda c: c["fig2a_oracle_generator"].update(seeds=[5]), "cells.fig2a_oracle_generator.seeds"),
    (lambda c: c["fig2a_oracle_generator"].update(model={"sma": False}), "cells.fig2a_oracle_generator.model"),
    (lambda c: c["smart"].update(oracle="generator"), "cells.smart.model_from"),
    (lambda c: c["smart"].update(seed=[1]), "cells.smart.seed"),
])
def test_invalid_cells_name_the_key(change, field):
    p = copy.deepcopy(PARAMS)
    change(p["cells"])
    with pytest.raises(ConfigError) as e:
        cell_spec(p, "fig2a_oracle_generator" if "fig2a" in field else "smart", source="params.yaml")
    assert field in str(e.value)


def test_eval_settings():
    s = eval_settings(PARAMS, oracle="classifier")
    assert s.object_mask_threshold == 0.0 and s.overlap_threshold == 0.8 and s.oracle == "classifier"
    p = copy.deepcopy(PARAMS)
    p["eval"]["overlap_treshold"] = 0.5
    with pytest.raises(ConfigError, match=r"eval\.overlap_treshold"):
        eval_settings(p)
    p = copy.deepcopy(PARAMS)
    p["eval"]["overlap_threshold"] = 1.5
    with pytest.raises(ConfigError, match=r"eval\.overlap_threshold"):
        eval_settings(p)


@pytest.mark.parametrize("change, field", [
    (lambda r: r["table1"].update(nope="SMART-R50"), "report.table1.nope"),
    (lambda r: r["table3"]["c_da_layers"].update({"4": "table3c_da4"}), "report.table3.c_da_layers.4"),
    (lambda r: r["table3"]["c_da_layers"].update({5: "smart"}), "report.table3.c_da_layers.5"),
    (lambda r: r["table3"].update(g_other={}), "report.table3.g_other"),
    (lambda r: r["fig6"]["iterations"].append("fig6_iters_z"), "report.fig6.iterations[5]"),
    (lambda r: r["table2"].update(dataset="ade"), "report.table2.dataset"),
    (lambda r: r.pop("fig2"), "report.fig2"),
])
def test_invalid_report_names_the_key(change, field):
    p = copy.deepcopy(PARAMS)
    check_report(p)
    change(p["report"])
    with pytest.raises(ConfigError) as e:
        check_report(p, source="params.yaml")
    assert field in str(e.value)
