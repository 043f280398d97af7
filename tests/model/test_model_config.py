"""Model config validation, the preset registry, the paper parameter count and ``model-summary``."""

from __future__ import annotations

import json

import pytest
import torch
from clipfixtures import single_thread  # noqa: F401 (autouse)

from smart.cli import main
from smart.errors import ConfigError
from smart.model import SmartModelConfig, build_model, get_preset, list_presets, load_model_config

PAPER_TRAINABLE = 24 * (1024 * 1024 + 1024) + (1024 * 256 + 256) + (768 * 256 + 256) + (768 * 1024 + 1024) \
    + (16 * 9 + 16) + (16 * 9 + 1) + 768  # QPT + g_q/g_k/g_v + DA + void = 26,438,193 (spec §4.5)


def test_defaults_are_the_spec_recommendations():
    cfg = SmartModelConfig()
    assert (cfg.clip_model, cfg.image_size, cfg.sma_dim, cfg.sma_residual, cfg.tune, cfg.da_layers) == \
        ("ViT-L-14-336-quickgelu", 896, 256, False, "q", 2)
    assert cfg.sma_layers == "all" and cfg.empty_mask_guard == "argmax" and not cfg.mask_attend_cls
    assert SmartModelConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("key,value", [
    ("tune", "qq"), ("da_layers", 4), ("lora_rank", -1), ("sma_dim", 0), ("qpt_scope", "x"),
    ("sma", "yes"), ("sma_layers", [0, -1]), ("lora_targets", ["q", "z"]), ("image_size", 2.5),
])
def test_bad_values_name_the_key(key, value):
    with pytest.raises(ConfigError) as exc:
        SmartModelConfig.from_dict({key: value})
    assert exc.value.field == key


def test_unknown_key_and_contradictions():
    with pytest.raises(ConfigError, match="unknown key") as exc:
        SmartModelConfig.from_dict({"tunes": "q"})
    assert exc.value.field == "tunes"
    with pytest.raises(ConfigError) as exc:
        SmartModelConfig.from_dict({"lora_rank": 8})  # LoRA with QPT on
    assert exc.value.field == "lora_rank"
    with pytest.raises(ConfigError, match="folded into tune") as exc:
        SmartModelConfig.from_dict({"qpt": False, "tune": "k"})
    assert exc.value.field == "qpt"


def test_legacy_qpt_switch_reads_as_tune():
    """``qpt`` (older params files and checkpoints) is folded into ``tune``: false means tune none."""
    assert SmartModelConfig.from_dict({"qpt": False}).tune == "none"
    assert SmartModelConfig.from_dict({"qpt": False, "tune": "none", "lora_rank": 8}).lora_rank == 8
    assert SmartModelConfig.from_dict({"qpt": True, "tune": "qk"}).tune == "qk"
    assert SmartModelConfig.from_dict({"qpt": True}) == SmartModelConfig()
    assert "qpt" not in SmartModelConfig().to_dict()
    with pytest.raises(ConfigError, match="expected true or false"):
        SmartModelConfig.from_dict({"qpt": "no"})


def test_presets_all_valid_and_cover_table3():
    names = list_presets()
    for n in names:
        assert isinstance(get_preset(n), SmartModelConfig)
    for t in ("none", "q", "k", "v", "qk", "qv", "qkv", "mlp", "all"):
        assert get_preset(f"table3a-{t}").tune == t
    assert [get_preset(f"table3b-lora{r}").lora_rank for r in (8, 16, 32, 64, 128, 256)] == [8, 16, 32, 64, 128, 256]
    assert [get_preset(f"table3c-da{n}").da_layers for n in range(4)] == [0, 1, 2, 3]
    assert not get_preset("table3d-baseline").sma and get_preset("table3d-sma").tune == "none"
    assert get_preset("table3e-text").tune_text_encoder and get_preset("table3e-maskgen").tune_mask_generator
    assert get_preset("table3f-eva01g").clip_model == "EVA01-g-14-plus"
    assert {"paper", "mini", "tiny-test"} <= set(names)
    with pytest.raises(ConfigError):
        get_preset("nope")


def test_config_file_with_preset(tmp_path):
    p = tmp_path / "m.json"
    p.write_text(json.dumps({"preset": "tiny-test", "da_layers": 3}))
    cfg = load_model_config(p)
    assert cfg.da_layers == 3 and cfg.clip_model == "smart-tiny-vit"
    p.write_text(json.dumps({"preset": "tiny-test", "da_layers": 7}))
    with pytest.raises(ConfigError) as exc:
        load_model_config(p)
    assert exc.value.field == "da_layers" and exc.value.path == str(p)


def test_paper_trainable_parameter_count():
    """The paper reports 26M trainable parameters; the default ViT-L config gives 26,438,193."""
    model = build_model(get_preset("paper"), device="meta")
    counts = model.parameter_counts()
    assert counts["all"]["trainable"] == PAPER_TRAINABLE
    assert 25_500_000 <= counts["all"]["trainable"] <= 26_500_000
    assert counts["clip_visual"]["trainable"] == 25_190_400  # QPT alone
    assert counts["sma"]["trainable"] == 1_246_720
    assert counts["clip_text"]["trainable"] == 0
    # 427,944,193 open_clip parameters + (4097 - 577) x 1024 resized positional rows + SMA/DA/void
    assert counts["all"]["total"] == 427_944_193 + (4097 - 577) * 1024 + 1_246_720 + 305 + 768


def test_model_summary_cli_json(capsys):
    assert main(["model-summary", "--preset", "paper", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["trainable"] == PAPER_TRAINABLE
    assert set(out["groups"]) == {"clip_visual", "clip_text", "lora", "sma", "adapter", "void"}
    assert main(["model-summary", "--preset", "paper", "--set", "lora_rank=8",
                 "--set", "tune=none", "--json"]) == 0
    lora = json.loads(capsys.readouterr().out)
    assert lora["groups"]["lora"]["trainable"] == 24 * 4 * 8 * (1024 + 1024)


def test_model_summary_cli_config_errors(tmp_path, capsys):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"tune": "qq"}))
    assert main(["model-summary", "--config", str(p)]) == 2
    assert "tune" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.extended
@pytest.mark.paper
def test_paper_model_materialises_on_cpu():
    """The real-memory build of the paper configuration (about 1.7 GB of float32, random init)."""
    torch.manual_seed(0)
    model = build_model(get_preset("paper").replace(clip_pretrained=None))
    assert model.parameter_counts()["all"]["trainable"] == PAPER_TRAINABLE
