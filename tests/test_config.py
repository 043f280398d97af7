import copy

import pytest
import yaml

from smart.config import load_params, section
from smart.errors import ConfigError


def test_repository_params_are_valid():
    params = load_params("params.yaml")
    assert params["profile"] == "mini"
    section(params, "mini_world", source="params.yaml")


@pytest.mark.parametrize("edit,field", [
    (lambda w: w["sizes"].pop("ade_val"), "mini_world.sizes.ade_val"),
    (lambda w: w.__setitem__("colour", 1), "mini_world.colour"),
    (lambda w: w["captions"].__setitem__("num_images", "many"), "mini_world.captions.num_images"),
    (lambda w: w.__setitem__("image_size", 90), "mini_world.image_size"),
    (lambda w: w["sizes"].__setitem__("coco_train", -1), "mini_world.sizes.coco_train"),
])
def test_invalid_params_name_the_key(edit, field):
    params = copy.deepcopy(load_params("params.yaml"))
    edit(params["mini_world"])
    with pytest.raises(ConfigError) as e:
        section(params, "mini_world", source="params.yaml")
    assert field in str(e.value)


def test_unreadable_params_file(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(p)
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "missing.yaml")
    p.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(ConfigError, match="mapping"):
        load_params(p)


@pytest.mark.parametrize("edit,field", [
    (lambda r: r["table3"].pop("g_interpretation"), "report.table3.g_interpretation"),
    (lambda r: r["table4"].__setitem__("compare", ["no_such_cell"]), "report.table4.compare[0]"),
])
def test_report_errors_name_the_key(edit, field):
    from smart.experiment import Experiment

    params = copy.deepcopy(load_params("params.yaml"))
    edit(params["report"])
    with pytest.raises(ConfigError) as e:
        Experiment.from_params(params, source="params.yaml")
    assert field in str(e.value)
