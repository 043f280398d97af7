"""detectron2 Mask2Former R50 COCO-panoptic → transformers conversion (smart/model/convert_d2.py)."""

from __future__ import annotations

import pickle
import shutil
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from smart.errors import InputError
from smart.model.convert_d2 import (
    R50_PANOPTIC,
    convert_d2_checkpoint,
    convert_d2_state_dict,
    d2_checkpoint_shapes,
    load_d2_checkpoint,
    map_d2_key,
    r50_coco_panoptic_config,
    write_random_d2_checkpoint,
)

N_PARAMS = 44_036_998  # transformers Mask2Former R50 COCO panoptic (133 classes, 100 queries)


def _meta_target(num_labels: int = 133, num_queries: int = 100) -> dict:
    """The transformers state dict (shapes and dtypes only, on the meta device: no memory, no init)."""
    from transformers import Mask2FormerForUniversalSegmentation

    from smart.model.mask_generator import _quiet_transformers

    with torch.device("meta"), _quiet_transformers():
        model = Mask2FormerForUniversalSegmentation(r50_coco_panoptic_config(num_labels=num_labels,
                                                                             num_queries=num_queries))
    return model.state_dict()


@pytest.fixture(scope="module")
def target():
    return _meta_target()


@pytest.fixture(scope="module")
def d2_state():
    """A random state dict with the real keys and shapes (in memory, no file)."""
    rng = np.random.default_rng(0)
    return OrderedDict((k, rng.standard_normal(s).astype(np.float32))
                       for k, s in d2_checkpoint_shapes().items())


# --------------------------------------------------------------------------------------------------
# configuration and key list


def test_config_matches_the_mask2former_yaml():
    cfg = r50_coco_panoptic_config()
    bb = cfg.backbone_config
    assert bb.model_type == "resnet" and bb.layer_type == "bottleneck"
    assert list(bb.depths) == [3, 4, 6, 3] and list(bb.hidden_sizes) == [256, 512, 1024, 2048]
    assert bb.embedding_size == 64 and bb.num_channels == 3 and bb.hidden_act == "relu"
    # detectron2 STRIDE_IN_1X1: False → the stride sits in the 3x3 conv; res2 has stride 1
    assert bb.downsample_in_bottleneck is False and bb.downsample_in_first_stage is False
    assert list(bb.out_features) == ["stage1", "stage2", "stage3", "stage4"]
    assert (cfg.hidden_dim, cfg.num_queries, cfg.num_attention_heads) == (256, 100, 8)
    assert cfg.dim_feedforward == 2048
    assert (cfg.decoder_layers, cfg.encoder_layers, cfg.encoder_feedforward_dim) == (10, 6, 1024)
    assert (cfg.feature_size, cfg.mask_feature_size, cfg.common_stride) == (256, 256, 4)
    assert cfg.num_labels == 133 and cfg.id2label[0] == "person" and len(cfg.id2label) == 133
    assert cfg.pre_norm is False and cfg.enforce_input_projection is False and cfg.dropout == 0.0
    assert (cfg.no_object_weight, cfg.class_weight, cfg.mask_weight, cfg.dice_weight) == (0.1, 2.0, 5.0, 5.0)
    assert (cfg.train_num_points, cfg.oversample_ratio, cfg.importance_sample_ratio) == (12544, 3.0, 0.75)
    assert list(cfg.feature_strides) == [4, 8, 16, 32]
    other = r50_coco_panoptic_config(num_labels=7, num_queries=20)
    assert (other.num_labels, other.num_queries) == (7, 20)


def test_stem_and_batchnorm_match_detectron2(target):
    from transformers import ResNetBackbone

    from smart.model.mask_generator import _quiet_transformers

    with torch.device("meta"), _quiet_transformers():
        rn = ResNetBackbone(r50_coco_panoptic_config().backbone_config)
    conv = rn.embedder.embedder.convolution  # detectron2 BasicStem: 7x7/2, pad 3, no bias
    assert (conv.kernel_size, conv.stride, conv.padding, conv.bias) == ((7, 7), (2, 2), (3, 3), None)
    pool = rn.embedder.pooler  # F.max_pool2d(kernel_size=3, stride=2, padding=1)
    assert (pool.kernel_size, pool.stride, pool.padding) == (3, 2, 1)
    bns = [m for m in rn.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 53 and all(m.eps == R50_PANOPTIC["norm_eps"] for m in bns)  # FrozenBN eps 1e-5
    block = rn.encoder.stages[1].layers[0]  # res3.0: stride 2 in conv2 (3x3), as STRIDE_IN_1X1 False
    assert block.layer[0].convolution.stride == (1, 1) and block.layer[1].convolution.stride == (2, 2)
    assert block.shortcut.convolution.stride == (2, 2)


def test_key_list_has_the_real_architecture():
    shapes = d2_checkpoint_shapes()
    assert len(shapes) == 558 and len(d2_checkpoint_shapes(with_criterion=False)) == 557

    def count(prefix: str) -> int:
        return sum(k.startswith(prefix) for k in shapes)

    assert count("backbone.") == 265 and count("sem_seg_head.pixel_decoder.") == 117
    assert count("sem_seg_head.predictor.") == 175 and "criterion.empty_weight" in shapes
    assert shapes["backbone.stem.conv1.weight"] == (64, 3, 7, 7)
    assert shapes["backbone.res2.0.shortcut.weight"] == (256, 64, 1, 1)
    assert "backbone.res2.1.shortcut.weight" not in shapes
    assert shapes["backbone.res5.2.conv3.weight"] == (2048, 512, 1, 1)
    assert shapes["sem_seg_head.pixel_decoder.input_proj.0.0.weight"] == (256, 2048, 1, 1)  # res5 first
    assert shapes["sem_seg_head.pixel_decoder.input_proj.2.0.weight"] == (256, 512, 1, 1)
    assert shapes["sem_seg_head.pixel_decoder.adapter_1.weight"] == (256, 256, 1, 1)  # res2
    enc, dec = "sem_seg_head.pixel_decoder.transformer.encoder.layers.", "sem_seg_head.predictor."
    assert shapes[enc + "5.self_attn.sampling_offsets.weight"] == (192, 256)  # 8 heads x 3 lvl x 4 pts x 2
    assert shapes[dec + "transformer_self_attention_layers.8.self_attn.in_proj_weight"] == (768, 256)
    assert dec + "transformer_ffn_layers.9.linear1.weight" not in shapes  # DEC_LAYERS - 1 = 9 layers
    assert shapes["sem_seg_head.predictor.class_embed.weight"] == (134, 256)
    assert not any(".input_proj." in k for k in shapes if "predictor" in k)  # ENFORCE_INPUT_PROJ False
    bn_stats = sum(int(np.prod(s)) for k, s in shapes.items() if k.endswith(("running_mean", "running_var")))
    n = sum(int(np.prod(s)) for s in shapes.values())
    assert n - bn_stats - 134 == N_PARAMS  # the detectron2 parameters = the transformers parameters


def test_every_key_maps_once_with_the_right_shape(target, d2_state):
    targets_seen: list[str] = []
    for key, shape in d2_checkpoint_shapes().items():
        mapped = map_d2_key(key)
        assert mapped, key
        for tkey, part in mapped:
            assert tkey in target, (key, tkey)
            want = tuple(target[tkey].shape)
            assert want == (shape if part is None else (shape[0] // 3, *shape[1:])), (key, tkey)
            targets_seen.append(tkey)
    assert len(targets_seen) == len(set(targets_seen)) == 594  # 558 keys, 9 x 2 in_proj split in 3
    left = set(target) - set(targets_seen)
    assert left and all(k.endswith("num_batches_tracked") for k in left) and len(left) == 53

    converted, mapping = convert_d2_state_dict(d2_state, target)
    assert len(mapping) == len(d2_state) == 558  # every source key consumed
    assert sum(len(v) for v in mapping.values()) == len(converted) == 594
    assert set(converted) == set(target) - left  # no transformers tensor left at its init


def test_convert_state_dict_split_and_values(target, d2_state):
    converted, mapping = convert_d2_state_dict(d2_state, target)
    src = "sem_seg_head.predictor.transformer_self_attention_layers.4.self_attn.in_proj_weight"
    dec = "model.transformer_module.decoder.layers."
    q, k, v = (converted[f"{dec}4.self_attn.{n}_proj.weight"] for n in "qkv")
    np.testing.assert_array_equal(torch.cat([q, k, v]).numpy(), d2_state[src])
    np.testing.assert_array_equal(q.numpy(), d2_state[src][:256])
    np.testing.assert_array_equal(
        converted["model.transformer_module.decoder.layers.4.self_attn.v_proj.bias"].numpy(),
        d2_state[src.replace("weight", "bias")][512:])
    cross = "sem_seg_head.predictor.transformer_cross_attention_layers.2.multihead_attn.in_proj_weight"
    assert mapping[cross] == ["model.transformer_module.decoder.layers.2.cross_attn.in_proj_weight"]
    tm = "model.transformer_module."
    assert mapping["sem_seg_head.predictor.query_feat.weight"] == [tm + "queries_features.weight"]  # content
    assert mapping["sem_seg_head.predictor.query_embed.weight"] == [tm + "queries_embedder.weight"]  # pos.
    assert mapping["backbone.res4.3.conv2.norm.running_var"] == [
        "model.pixel_level_module.encoder.encoder.stages.2.layers.3.layer.1.normalization.running_var"]
    assert mapping["sem_seg_head.pixel_decoder.transformer.level_embed"] == [
        "model.pixel_level_module.decoder.level_embed"]
    assert mapping["sem_seg_head.predictor.class_embed.bias"] == ["class_predictor.bias"]
    assert all(t.dtype == torch.float32 for t in converted.values())


def test_legacy_layouts_and_optional_keys_are_accepted(target, d2_state):
    ref, _ = convert_d2_state_dict(d2_state, target)
    legacy = OrderedDict()
    for k, v in d2_state.items():
        k = k.replace("sem_seg_head.pixel_decoder.", "sem_seg_head.")  # MaskFormerHead version < 2
        k = k.replace("predictor.query_feat.", "predictor.static_query.")  # decoder version < 2
        legacy["module." + k] = v
    del legacy["module.criterion.empty_weight"]  # a loss buffer: rebuilt from the config when absent
    legacy["pixel_mean"] = np.zeros((3, 1, 1), np.float32)  # preprocessing buffers are skipped
    got, mapping = convert_d2_state_dict(legacy, target)
    assert set(got) == set(ref) - {"criterion.empty_weight"} and len(mapping) == 557
    assert all(torch.equal(got[k], ref[k]) for k in got)


def _expect_error(state, target, *needles):
    with pytest.raises(InputError) as exc:
        convert_d2_state_dict(state, target, path="ckpt.pkl")
    msg = str(exc.value)
    for n in needles:
        assert n in msg, (n, msg)
    return exc.value


def test_corrupted_checkpoints_name_the_key_and_shapes(target, d2_state):
    bad = OrderedDict(d2_state)
    key = "sem_seg_head.pixel_decoder.transformer.encoder.layers.2.linear1.weight"
    bad[key] = np.zeros((1000, 256), np.float32)
    err = _expect_error(bad, target, key, "(1000, 256)", "(1024, 256)",
                        "model.pixel_level_module.decoder.encoder.layers.2.fc1.weight", "ckpt.pkl")
    assert err.field == key and err.path == "ckpt.pkl"

    bad = OrderedDict(d2_state)
    del bad["backbone.res3.1.conv2.norm.running_mean"]
    _expect_error(bad, target, "missing", "backbone.res3.1.conv2.norm.running_mean",
                  "pixel_level_module.encoder.encoder.stages.1.layers.1.layer.1.normalization.running_mean",
                  "(128,)")

    bad = OrderedDict(d2_state)
    bad["sem_seg_head.predictor.extra_head.weight"] = np.zeros((5, 7), np.float32)
    _expect_error(bad, target, "unmapped", "sem_seg_head.predictor.extra_head.weight", "(5, 7)")

    bad = OrderedDict(d2_state)  # a 10th decoder layer: mapped name, but the model has 9
    bad["sem_seg_head.predictor.transformer_ffn_layers.9.norm.weight"] = np.zeros(256, np.float32)
    _expect_error(bad, target, "transformer_ffn_layers.9.norm.weight", "does not have")

    bad = OrderedDict(d2_state)  # a packed in_proj of the wrong width
    key = "sem_seg_head.predictor.transformer_self_attention_layers.0.self_attn.in_proj_weight"
    bad[key] = np.zeros((512, 256), np.float32)
    _expect_error(bad, target, key, "(512, 256)", "(768, 256)", "q/k/v")

    # the three at once: all reported
    bad = OrderedDict(d2_state)
    bad["backbone.stem.conv1.weight"] = np.zeros((64, 3, 3, 3), np.float32)
    del bad["sem_seg_head.predictor.level_embed.weight"]
    bad["foo"] = np.zeros(3, np.float32)
    _expect_error(bad, target, "3 problem(s)", "backbone.stem.conv1.weight", "(64, 3, 3, 3)", "(64, 3, 7, 7)",
                  "sem_seg_head.predictor.level_embed.weight", "'foo'")

    # another class count: the hint names the option
    _expect_error(d2_state, _meta_target(num_labels=80), "class_embed", "(134, 256)", "(81, 256)",
                  "--num-labels")


def test_load_d2_checkpoint_formats(tmp_path):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    pkl = tmp_path / "m.pkl"
    with open(pkl, "wb") as f:
        pickle.dump({"model": {"x": a}, "__author__": "someone", "matching_heuristics": False}, f)
    state, meta = load_d2_checkpoint(pkl)
    assert list(state) == ["x"] and np.array_equal(state["x"], a) and meta["__author__"] == "someone"
    pth = tmp_path / "m.pth"
    torch.save({"model": {"x": torch.from_numpy(a)}, "iteration": 5}, pth)
    state, meta = load_d2_checkpoint(pth)
    assert torch.equal(state["x"], torch.from_numpy(a)) and meta == {"iteration": 5}
    torch.save({"x": torch.from_numpy(a)}, tmp_path / "bare.pth")  # a bare state dict
    assert list(load_d2_checkpoint(tmp_path / "bare.pth")[0]) == ["x"]
    with pytest.raises(InputError, match="not found"):
        load_d2_checkpoint(tmp_path / "nope.pkl")
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle")
    with pytest.raises(InputError, match="unpickle"):
        load_d2_checkpoint(tmp_path / "junk.pkl")


def test_random_checkpoint_file_format(tmp_path):
    path = write_random_d2_checkpoint(tmp_path / "r.pkl", seed=3, num_labels=5, num_queries=7)
    with open(path, "rb") as f:
        data = pickle.load(f)
    assert data["matching_heuristics"] is False and "__author__" in data
    model = data["model"]
    assert list(model) == list(d2_checkpoint_shapes(num_labels=5, num_queries=7))
    assert model._metadata["sem_seg_head"]["version"] == 2  # detectron2 keeps the keys as they are
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 and np.isfinite(v).all()
               for v in model.values())
    variances = [v for k, v in model.items() if k.endswith("running_var")]
    assert len(variances) == 53 and all((v > 0).all() for v in variances)
    assert model["sem_seg_head.predictor.class_embed.weight"].shape == (6, 256)
    np.testing.assert_allclose(model["criterion.empty_weight"], [1, 1, 1, 1, 1, 0.1], rtol=1e-6)
    again = write_random_d2_checkpoint(tmp_path / "r2.pkl", seed=3, num_labels=5, num_queries=7)
    assert again.read_bytes() == path.read_bytes() and not list(tmp_path.glob("*.partial"))
    path.unlink()
    again.unlink()


# --------------------------------------------------------------------------------------------------
# end to end (the full 44M-parameter model)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("convert_d2")
    pkl = write_random_d2_checkpoint(root / "random.pkl", seed=0)
    summary = convert_d2_checkpoint(pkl, root / "generator")
    yield pkl, root / "generator", summary
    shutil.rmtree(root, ignore_errors=True)  # ~350 MB


@pytest.mark.slow
@pytest.mark.extended
@pytest.mark.paper
def test_converted_weights_equal_the_checkpoint(converted):
    from safetensors.torch import load_file

    pkl, out, summary = converted
    assert (summary["source_keys"], summary["target_tensors"], summary["parameters"]) == (558, 594, N_PARAMS)
    state, _ = load_d2_checkpoint(pkl)
    saved = load_file(str(out / "model.safetensors"))
    # every transformers tensor comes from the checkpoint, except the 53 BN step counters (zero)
    counters = [k for k in saved if k.endswith("num_batches_tracked")]
    assert len(counters) == 53 and all(int(saved[k]) == 0 for k in counters)
    checked = 0
    for src, value in state.items():
        mapped = map_d2_key(src)
        for tkey, part in mapped:
            want = torch.from_numpy(value)
            if part is not None:
                n = want.shape[0] // 3
                want = want[part * n:(part + 1) * n]
            assert torch.equal(saved[tkey], want), (src, tkey)
            checked += 1
    assert checked + len(counters) == len(saved) == 647
    # a few by name, from different parts
    pre, dec = "model.pixel_level_module.", "model.transformer_module.decoder."
    pairs = {
        "backbone.stem.conv1.weight": pre + "encoder.embedder.embedder.convolution.weight",
        "backbone.res5.0.shortcut.norm.running_var":
            pre + "encoder.encoder.stages.3.layers.0.shortcut.normalization.running_var",
        "sem_seg_head.pixel_decoder.input_proj.1.0.weight": pre + "decoder.input_projections.1.0.weight",
        "sem_seg_head.pixel_decoder.layer_1.norm.bias": pre + "decoder.layer_1.1.bias",
        "sem_seg_head.predictor.mask_embed.layers.2.weight": dec + "mask_predictor.mask_embedder.2.0.weight",
        "sem_seg_head.predictor.decoder_norm.weight": dec + "layernorm.weight",
        "sem_seg_head.predictor.transformer_ffn_layers.8.norm.bias": dec + "layers.8.final_layer_norm.bias",
        "criterion.empty_weight": "criterion.empty_weight",
    }
    for src, tkey in pairs.items():
        np.testing.assert_array_equal(saved[tkey].numpy(), state[src], err_msg=src)
    in_proj = state["sem_seg_head.predictor.transformer_self_attention_layers.6.self_attn.in_proj_weight"]
    np.testing.assert_array_equal(saved[dec + "layers.6.self_attn.k_proj.weight"].numpy(), in_proj[256:512])


@pytest.mark.slow
@pytest.mark.extended
@pytest.mark.paper
def test_converted_generator_loads_and_runs(converted):
    from smart.model.mask_generator import Mask2FormerGenerator

    _, out, _ = converted
    gen = Mask2FormerGenerator.from_pretrained(out)
    assert gen.num_queries == 100 and gen.num_classes == 133 and not gen.tune and not gen.model.training
    assert gen.pixel_mean == R50_PANOPTIC["pixel_mean"] and gen.pixel_std == R50_PANOPTIC["pixel_std"]
    assert (gen.resize, gen.min_size, gen.max_size, gen.size_divisibility) == (True, 800, 1333, 32)
    assert gen.model.config.backbone_config.downsample_in_bottleneck is False
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        o = gen(x)
    assert o["mask_logits"].shape == (1, 100, 16, 16) and o["class_logits"].shape == (1, 100, 134)
    assert all(torch.isfinite(v).all() for v in o.values())
    assert not list(out.parent.glob(".generator.*"))  # no temporary directory left


@pytest.mark.slow
@pytest.mark.extended
@pytest.mark.paper
def test_interrupted_conversion_leaves_no_output(converted, tmp_path, monkeypatch):
    from smart.model.mask_generator import Mask2FormerGenerator

    pkl, _, _ = converted

    def broken_save(self, path):
        (Path(path) / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(Mask2FormerGenerator, "save_pretrained", broken_save)
    with pytest.raises(KeyboardInterrupt):
        convert_d2_checkpoint(pkl, tmp_path / "gen")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.extended
@pytest.mark.paper
def test_cli_convert_generator(converted, tmp_path, capsys):
    from smart.cli import main
    from smart.model.mask_generator import Mask2FormerGenerator

    pkl, _, _ = converted
    out = tmp_path / "gen"
    assert main(["convert-generator", str(pkl), str(out)]) == 0
    assert "558 checkpoint keys" in capsys.readouterr().out
    assert Mask2FormerGenerator.from_pretrained(out).num_classes == 133
    # an existing output is not replaced without --overwrite; a bad checkpoint is a one-line error
    assert main(["convert-generator", str(pkl), str(out)]) == 2
    assert "overwrite" in capsys.readouterr().err
    bad = tmp_path / "bad.pkl"
    with open(bad, "wb") as f:
        pickle.dump({"model": {"backbone.stem.conv1.weight": np.zeros((64, 3, 7, 7), np.float32)},
                     "__author__": "x"}, f)
    assert main(["convert-generator", str(bad), str(tmp_path / "gen2"), "--num-queries", "100"]) == 2
    err = capsys.readouterr().err
    assert "missing" in err and "bad.pkl" in err and not (tmp_path / "gen2").exists()
    shutil.rmtree(out)
