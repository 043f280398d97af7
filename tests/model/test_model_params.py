"""Every Table 3 switch is reachable from params.yaml: each cell resolves to the matching preset."""

import copy

import pytest

from smart.config import cell_names, load_params, model_config
from smart.errors import ConfigError
from smart.model.config import get_preset

PARAMS = load_params("params.yaml")
CELL_TO_PRESET = {
    "smart": "paper", "table3a_all": "table3a-all", "table3a_mlp": "table3a-mlp", "table3a_qkv": "table3a-qkv",
    "table3a_qv": "table3a-qv", "table3a_qk": "table3a-qk", "table3a_v": "table3a-v", "table3a_k": "table3a-k",
    **{f"table3b_lora{r}": f"table3b-lora{r}" for r in (256, 128, 64, 32, 16, 8)},
    "table3c_da0": "table3c-da0", "table3c_da1": "table3c-da1", "table3c_da3": "table3c-da3",
    "frozen": "table3d-baseline", "table3d_sma": "table3d-sma", "table3e_text": "table3e-text",
    "table3e_maskgen": "table3e-maskgen", "table3f_vitb16": "table3f-vitb16", "table3f_eva01g": "table3f-eva01g",
}


@pytest.mark.parametrize("cell", list(CELL_TO_PRESET))
def test_paper_profile_cells_equal_the_table3_presets(cell):
    assert model_config(PARAMS, cell, profile="paper") == get_preset(CELL_TO_PRESET[cell])


def test_every_cell_resolves_in_the_mini_profile():
    for cell in cell_names(PARAMS):
        cfg = model_config(PARAMS, cell, profile="mini")
        assert cfg.clip_model.startswith("local-dir:") or cell.startswith("table3f")
    assert "table3f_eva01g" not in cell_names(PARAMS)  # paper-only cells are skipped in the mini profile


def test_bad_cell_overrides_name_the_key():
    p = copy.deepcopy(PARAMS)
    p["cells"]["table3c_da1"]["model"]["da_layers"] = 7
    with pytest.raises(ConfigError) as e:
        model_config(p, "table3c_da1", profile="paper", source="params.yaml")
    assert "cells.table3c_da1.model.da_layers" in str(e.value)
    p["cells"]["bad"] = {"modle": {}}
    with pytest.raises(ConfigError, match=r"cells\.bad\.modle"):
        model_config(p, "bad", profile="paper")
    with pytest.raises(ConfigError, match="unknown cell"):
        model_config(p, "nope", profile="paper")
