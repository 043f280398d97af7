"""Convert the detectron2 Mask2Former R50 COCO-panoptic checkpoint into a transformers Mask2Former.

SMART-R50 (paper §5.3) uses the Mask2Former model-zoo checkpoint
``maskformer2_R50_bs16_50ep/model_final_94dc52.pkl`` (facebookresearch/Mask2Former, config
``configs/coco/panoptic-segmentation/maskformer2_R50_bs16_50ep.yaml``). No transformers checkpoint of
it exists and transformers' conversion script only handles Swin backbones, so this module maps the
detectron2 state dict onto ``Mask2FormerForUniversalSegmentation`` with a transformers ``ResNetConfig``
ResNet-50 backbone, and writes a :class:`~smart.model.mask_generator.Mask2FormerGenerator` directory
(``Mask2FormerGenerator.from_pretrained(out_dir)`` loads it; detectron2 is not needed).

Source of every hyperparameter (Mask2Former commit 9b0651c, detectron2 ``config/defaults.py``):

* ``Base-COCO-PanopticSegmentation.yaml``: ``MODEL.BACKBONE.NAME: build_resnet_backbone``,
  ``RESNETS.DEPTH: 50`` (blocks [3, 4, 6, 3], bottleneck), ``RESNETS.STEM_OUT_CHANNELS: 64``,
  ``RESNETS.STRIDE_IN_1X1: False`` (torchvision-style: the stride of a bottleneck sits in its 3x3
  conv = transformers ``downsample_in_bottleneck=False``), ``RESNETS.OUT_FEATURES: [res2..res5]``,
  ``PIXEL_MEAN: [123.675, 116.280, 103.530]``, ``PIXEL_STD: [58.395, 57.120, 57.375]``, ``INPUT.FORMAT:
  RGB``.
* detectron2 defaults: ``RESNETS.NORM: FrozenBN`` (``FrozenBatchNorm2d``, eps 1e-5 = the eps of
  ``nn.BatchNorm2d``, identical in eval mode), ``NUM_GROUPS: 1``, ``WIDTH_PER_GROUP: 64`` (bottleneck
  widths 64/128/256/512), ``RES2_OUT_CHANNELS: 256`` (stage widths 256/512/1024/2048),
  ``RES5_DILATION: 1``, ``INPUT.MIN_SIZE_TEST: 800``, ``INPUT.MAX_SIZE_TEST: 1333``. The stem
  (``BasicStem``) is a 7x7/2 conv (pad 3, no bias), FrozenBN, ReLU and a 3x3/2 max-pool (pad 1), the
  same as transformers' ``ResNetEmbeddings``; the first stage has stride 1
  (``downsample_in_first_stage=False``).
* ``maskformer2_R50_bs16_50ep.yaml``: ``SEM_SEG_HEAD.NUM_CLASSES: 133``, ``CONVS_DIM: 256``
  (``feature_size``), ``MASK_DIM: 256`` (``mask_feature_size``), ``NORM: GN``,
  ``PIXEL_DECODER_NAME: MSDeformAttnPixelDecoder``, ``IN_FEATURES: [res2..res5]``,
  ``DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES: [res3, res4, res5]``, ``COMMON_STRIDE: 4``,
  ``TRANSFORMER_ENC_LAYERS: 6`` (``encoder_layers``); ``MASK_FORMER.HIDDEN_DIM: 256``,
  ``NUM_OBJECT_QUERIES: 100``, ``NHEADS: 8``, ``DROPOUT: 0.0``, ``DIM_FEEDFORWARD: 2048``,
  ``DEC_LAYERS: 10`` (9 decoder layers + the prediction on the learnable queries; transformers'
  ``decoder_layers`` counts the same way), ``PRE_NORM: False``, ``ENFORCE_INPUT_PROJ: False`` (so the
  decoder has no input projections), ``SIZE_DIVISIBILITY: 32``, ``NO_OBJECT_WEIGHT: 0.1``,
  ``CLASS_WEIGHT: 2.0``, ``MASK_WEIGHT: 5.0``, ``DICE_WEIGHT: 5.0``, ``TRAIN_NUM_POINTS: 12544``,
  ``OVERSAMPLE_RATIO: 3.0``, ``IMPORTANCE_SAMPLE_RATIO: 0.75``, ``DEEP_SUPERVISION: True``,
  ``IGNORE_VALUE: 255``.
* fixed in the Mask2Former code: deformable-encoder FFN width 1024 (``MSDeformAttnPixelDecoder.from_config``),
  4 sampling points, 3 feature levels, GroupNorm(32), a 3-layer mask MLP.

Key mapping (every source key maps to one target, except the packed self-attention ``in_proj`` which
is split; conventions checked against both codes):

* backbone ``backbone.stem.conv1.*`` → ``…encoder.embedder.embedder.{convolution,normalization}``,
  ``backbone.res{s}.{b}.conv{c}[.norm].*`` → ``…encoder.encoder.stages.{s-2}.layers.{b}.layer.{c-1}.*``,
  ``….shortcut[.norm].*`` → ``….shortcut.{convolution,normalization}.*``; FrozenBN
  weight/bias/running_mean/running_var → BatchNorm2d of the same names (``num_batches_tracked`` is
  not in the checkpoint and stays 0).
* pixel decoder ``sem_seg_head.pixel_decoder.*`` → ``model.pixel_level_module.decoder.*``: both codes
  order ``input_proj`` / ``input_projections`` and the encoder ``level_embed`` from low to high
  resolution (res5, res4, res3), so indices map unchanged; ``adapter_1``/``layer_1`` (the res2 FPN
  level) → ``adapter_1.0``/``.1`` and ``layer_1.0``/``.1``; encoder ``norm1/linear1/linear2/norm2`` →
  ``self_attn_layer_norm/fc1/fc2/final_layer_norm``; ``mask_features`` → ``mask_projection``.
* decoder ``sem_seg_head.predictor.*`` → ``model.transformer_module.*``: ``query_feat`` (content) →
  ``queries_features``, ``query_embed`` (positional) → ``queries_embedder``, ``level_embed`` →
  ``level_embed``; per layer the self-attention ``nn.MultiheadAttention.in_proj_{weight,bias}`` (rows
  q | k | v) is split into ``self_attn.{q,k,v}_proj`` (transformers' own attention class), while the
  cross-attention stays an ``nn.MultiheadAttention`` (``in_proj_*`` copied packed); the three
  ``norm`` → ``cross_attn_layer_norm``, ``self_attn_layer_norm``, ``final_layer_norm``;
  ``decoder_norm`` → ``decoder.layernorm``; ``mask_embed.layers.{i}`` →
  ``decoder.mask_predictor.mask_embedder.{i}.0``; ``class_embed`` → ``class_predictor`` (top level).
* ``criterion.empty_weight`` (a loss buffer) → ``criterion.empty_weight`` when present; otherwise it
  is rebuilt from ``NO_OBJECT_WEIGHT``.

Also accepted: a torch ``.pth`` (``{"model": state_dict}`` or a bare state dict), a ``module.``
prefix, and the legacy key layout that detectron2 upgrades on load (pixel-decoder keys directly
under ``sem_seg_head.`` and ``predictor.static_query``). ``pixel_mean``/``pixel_std`` buffers, if a
checkpoint has them, set the generator's normalisation. Any other key, a missing key or a shape
mismatch raises :class:`~smart.errors.InputError` naming the key(s) and shapes.

:func:`write_random_d2_checkpoint` writes a checkpoint with the real key names and shapes (derived
from the detectron2/Mask2Former module structure: 265 backbone + 117 pixel-decoder + 175
transformer-decoder keys + ``criterion.empty_weight`` = **558 keys**, 557 without the loss buffer;
44.09M values, 44.04M of them parameters) and random values, for the tests and an offline smoke run of the pipeline.

Unpickling runs code from the file (as detectron2's own loader does): convert only trusted files.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from smart.errors import InputError

log = logging.getLogger(__name__)

__all__ = [
    "R50_PANOPTIC",
    "build_r50_coco_panoptic_model",
    "convert_d2_checkpoint",
    "convert_d2_state_dict",
    "d2_checkpoint_shapes",
    "load_d2_checkpoint",
    "map_d2_key",
    "r50_coco_panoptic_config",
    "write_random_d2_checkpoint",
]

# The hyperparameters of maskformer2_R50_bs16_50ep.yaml (+ its base and detectron2's defaults); see
# the module docstring for the file each value comes from.
R50_PANOPTIC: dict[str, Any] = {
    "resnet_depths": (3, 4, 6, 3),  # RESNETS.DEPTH 50
    "stem_out_channels": 64,  # RESNETS.STEM_OUT_CHANNELS
    "res2_out_channels": 256,  # RESNETS.RES2_OUT_CHANNELS (default)
    "bottleneck_channels": 64,  # NUM_GROUPS 1 x WIDTH_PER_GROUP 64 (defaults)
    "stride_in_1x1": False,  # RESNETS.STRIDE_IN_1X1
    "norm_eps": 1e-5,  # FrozenBatchNorm2d
    "conv_dim": 256,  # SEM_SEG_HEAD.CONVS_DIM
    "mask_dim": 256,  # SEM_SEG_HEAD.MASK_DIM
    "enc_layers": 6,  # SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS
    "enc_ffn": 1024,  # hard-coded in MSDeformAttnPixelDecoder.from_config
    "enc_levels": 3,  # DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES res3..res5
    "enc_points": 4,  # MSDeformAttn n_points (MSDeformAttnTransformerEncoderOnly default)
    "common_stride": 4,  # SEM_SEG_HEAD.COMMON_STRIDE
    "gn_groups": 32,  # nn.GroupNorm(32, conv_dim) / get_norm("GN")
    "hidden_dim": 256,  # MASK_FORMER.HIDDEN_DIM
    "nheads": 8,  # MASK_FORMER.NHEADS
    "dim_feedforward": 2048,  # MASK_FORMER.DIM_FEEDFORWARD
    "dec_layers": 10,  # MASK_FORMER.DEC_LAYERS (9 layers + the learnable-query prediction)
    "dropout": 0.0,  # MASK_FORMER.DROPOUT
    "pre_norm": False,  # MASK_FORMER.PRE_NORM
    "enforce_input_proj": False,  # MASK_FORMER.ENFORCE_INPUT_PROJ
    "num_classes": 133,  # SEM_SEG_HEAD.NUM_CLASSES
    "num_queries": 100,  # MASK_FORMER.NUM_OBJECT_QUERIES
    "no_object_weight": 0.1,  # MASK_FORMER.NO_OBJECT_WEIGHT
    "class_weight": 2.0,  # MASK_FORMER.CLASS_WEIGHT
    "mask_weight": 5.0,  # MASK_FORMER.MASK_WEIGHT
    "dice_weight": 5.0,  # MASK_FORMER.DICE_WEIGHT
    "train_num_points": 12544,  # MASK_FORMER.TRAIN_NUM_POINTS
    "oversample_ratio": 3.0,  # MASK_FORMER.OVERSAMPLE_RATIO
    "importance_sample_ratio": 0.75,  # MASK_FORMER.IMPORTANCE_SAMPLE_RATIO
    "deep_supervision": True,  # MASK_FORMER.DEEP_SUPERVISION
    "ignore_value": 255,  # SEM_SEG_HEAD.IGNORE_VALUE
    "size_divisibility": 32,  # MASK_FORMER.SIZE_DIVISIBILITY
    "pixel_mean": (123.675, 116.280, 103.530),  # MODEL.PIXEL_MEAN (RGB)
    "pixel_std": (58.395, 57.120, 57.375),  # MODEL.PIXEL_STD
    "min_size_test": 800,  # INPUT.MIN_SIZE_TEST (default)
    "max_size_test": 1333,  # INPUT.MAX_SIZE_TEST (default)
}

_BACKBONE = "model.pixel_level_module.encoder."
_PIXEL_DECODER = "model.pixel_level_module.decoder."
_TRANSFORMER = "model.transformer_module."
_OPTIONAL_TARGETS = ("criterion.empty_weight",)  # rebuilt from the config when the checkpoint lacks it
_IGNORED_SOURCES = ("pixel_mean", "pixel_std")  # preprocessing buffers, read separately


# --------------------------------------------------------------------------------------------------
# configuration


def r50_coco_panoptic_config(*, num_labels: int = 133, num_queries: int = 100):
    """The transformers ``Mask2FormerConfig`` of Mask2Former R50 COCO panoptic (``R50_PANOPTIC``).

    The backbone is a transformers ``ResNetConfig`` ResNet-50 (bottleneck, depths [3, 4, 6, 3], widths
    [256, 512, 1024, 2048], stem 64, stride in the 3x3 conv, out_features stage1..stage4 = res2..res5).
    With ``num_labels == 133`` the COCO-panoptic class names (contiguous detectron2 order) are set as
    ``id2label``.
    """
    from transformers import Mask2FormerConfig, ResNetConfig

    p = R50_PANOPTIC
    backbone = ResNetConfig(
        num_channels=3, embedding_size=p["stem_out_channels"],
        hidden_sizes=[p["res2_out_channels"] * 2 ** i for i in range(4)], depths=list(p["resnet_depths"]),
        layer_type="bottleneck", hidden_act="relu", downsample_in_first_stage=False,
        downsample_in_bottleneck=p["stride_in_1x1"], out_features=["stage1", "stage2", "stage3", "stage4"])
    kw: dict[str, Any] = {}
    if num_labels == p["num_classes"]:
        try:
            from smart.data.categories import builtin_vocab

            names = [c.name for c in builtin_vocab("coco_panoptic").categories]
            if len(names) == num_labels:
                kw["id2label"] = dict(enumerate(names))
                kw["label2id"] = {n: i for i, n in enumerate(names)}
        except (ImportError, OSError, ValueError) as exc:  # pragma: no cover - the names are cosmetic
            log.debug("no COCO-panoptic names for id2label: %s", exc)
    return Mask2FormerConfig(
        backbone_config=backbone, num_labels=int(num_labels), num_queries=int(num_queries),
        feature_size=p["conv_dim"], mask_feature_size=p["mask_dim"], hidden_dim=p["hidden_dim"],
        encoder_feedforward_dim=p["enc_ffn"], activation_function="relu", encoder_layers=p["enc_layers"],
        decoder_layers=p["dec_layers"], num_attention_heads=p["nheads"], dropout=p["dropout"],
        dim_feedforward=p["dim_feedforward"], pre_norm=p["pre_norm"],
        enforce_input_projection=p["enforce_input_proj"], common_stride=p["common_stride"],
        ignore_value=p["ignore_value"], no_object_weight=p["no_object_weight"],
        class_weight=p["class_weight"], mask_weight=p["mask_weight"], dice_weight=p["dice_weight"],
        train_num_points=p["train_num_points"], oversample_ratio=p["oversample_ratio"],
        importance_sample_ratio=p["importance_sample_ratio"], use_auxiliary_loss=p["deep_supervision"],
        feature_strides=[4, 8, 16, 32], **kw)


def build_r50_coco_panoptic_model(*, num_labels: int = 133, num_queries: int = 100):
    """A randomly initialised transformers ``Mask2FormerForUniversalSegmentation`` of that config."""
    from transformers import Mask2FormerForUniversalSegmentation

    from smart.model.mask_generator import _quiet_transformers

    with _quiet_transformers():  # "Backbone resnet is not a supported model" (it works)
        return Mask2FormerForUniversalSegmentation(
            r50_coco_panoptic_config(num_labels=num_labels, num_queries=num_queries))


# --------------------------------------------------------------------------------------------------
# the detectron2 key list (module structure of detectron2 ResNet + Mask2Former MaskFormerHead)


def d2_checkpoint_shapes(*, num_labels: int = 133, num_queries: int = 100,
                         with_criterion: bool = True) -> OrderedDict[str, tuple[int, ...]]:
    """Key → shape of the detectron2 ``MaskFormer`` state dict of the R50 COCO-panoptic model, in the
    module registration order of ``model.state_dict()``.

    Derived from detectron2 ``modeling/backbone/resnet.py`` (``BasicStem``, ``BottleneckBlock``:
    shortcut, conv1..3, each a ``Conv2d`` with a ``FrozenBatchNorm2d`` ``norm`` holding weight, bias,
    running_mean, running_var), Mask2Former ``pixel_decoder/msdeformattn.py``
    (``MSDeformAttnPixelDecoder``) and ``transformer_decoder/mask2former_transformer_decoder.py``
    (``MultiScaleMaskedTransformerDecoder``), and ``modeling/criterion.py`` (``empty_weight``).
    557 keys (+ ``criterion.empty_weight`` = 558) with the default sizes.
    """
    p = R50_PANOPTIC
    s: OrderedDict[str, tuple[int, ...]] = OrderedDict()

    def conv_frozen_bn(prefix: str, cout: int, cin: int, k: int) -> None:
        s[f"{prefix}.weight"] = (cout, cin, k, k)
        for name in ("weight", "bias", "running_mean", "running_var"):
            s[f"{prefix}.norm.{name}"] = (cout,)

    # backbone (detectron2 ResNet-50)
    conv_frozen_bn("backbone.stem.conv1", p["stem_out_channels"], 3, 7)
    cin, cout, width = p["stem_out_channels"], p["res2_out_channels"], p["bottleneck_channels"]
    for stage, nblocks in enumerate(p["resnet_depths"]):
        for b in range(nblocks):
            pre = f"backbone.res{stage + 2}.{b}"
            block_in = cin if b == 0 else cout
            if block_in != cout:
                conv_frozen_bn(f"{pre}.shortcut", cout, block_in, 1)
            conv_frozen_bn(f"{pre}.conv1", width, block_in, 1)
            conv_frozen_bn(f"{pre}.conv2", width, width, 3)
            conv_frozen_bn(f"{pre}.conv3", cout, width, 1)
        cin, cout, width = cout, cout * 2, width * 2
    stage_channels = [p["res2_out_channels"] * 2 ** i for i in range(4)]  # res2..res5

    # pixel decoder (MSDeformAttnPixelDecoder)
    d, L, H, P = p["conv_dim"], p["enc_levels"], p["nheads"], p["enc_points"]
    pd = "sem_seg_head.pixel_decoder"
    for i, c in enumerate(stage_channels[-L:][::-1]):  # res5, res4, res3 (low → high resolution)
        s[f"{pd}.input_proj.{i}.0.weight"] = (d, c, 1, 1)
        s[f"{pd}.input_proj.{i}.0.bias"] = (d,)
        s[f"{pd}.input_proj.{i}.1.weight"] = (d,)
        s[f"{pd}.input_proj.{i}.1.bias"] = (d,)
    s[f"{pd}.transformer.level_embed"] = (L, d)
    for n in range(p["enc_layers"]):
        e = f"{pd}.transformer.encoder.layers.{n}"
        for name, out in (("sampling_offsets", H * L * P * 2), ("attention_weights", H * L * P),
                          ("value_proj", d), ("output_proj", d)):
            s[f"{e}.self_attn.{name}.weight"] = (out, d)
            s[f"{e}.self_attn.{name}.bias"] = (out,)
        s[f"{e}.norm1.weight"] = s[f"{e}.norm1.bias"] = (d,)
        s[f"{e}.linear1.weight"], s[f"{e}.linear1.bias"] = (p["enc_ffn"], d), (p["enc_ffn"],)
        s[f"{e}.linear2.weight"], s[f"{e}.linear2.bias"] = (d, p["enc_ffn"]), (d,)
        s[f"{e}.norm2.weight"] = s[f"{e}.norm2.bias"] = (d,)
    s[f"{pd}.mask_features.weight"] = (p["mask_dim"], d, 1, 1)
    s[f"{pd}.mask_features.bias"] = (p["mask_dim"],)
    # FPN levels below the encoder: lowest encoder stride 8 (res3) / common stride 4 → 1 level (res2)
    num_fpn = int(np.log2(8) - np.log2(p["common_stride"]))
    for idx, c in enumerate(stage_channels[:num_fpn]):
        s[f"{pd}.adapter_{idx + 1}.weight"] = (d, c, 1, 1)  # GN conv: no bias
        s[f"{pd}.adapter_{idx + 1}.norm.weight"] = s[f"{pd}.adapter_{idx + 1}.norm.bias"] = (d,)
        s[f"{pd}.layer_{idx + 1}.weight"] = (d, d, 3, 3)
        s[f"{pd}.layer_{idx + 1}.norm.weight"] = s[f"{pd}.layer_{idx + 1}.norm.bias"] = (d,)

    # transformer decoder (MultiScaleMaskedTransformerDecoder)
    h, pr = p["hidden_dim"], "sem_seg_head.predictor"
    nlayers = p["dec_layers"] - 1
    for n in range(nlayers):
        a = f"{pr}.transformer_self_attention_layers.{n}"
        s[f"{a}.self_attn.in_proj_weight"], s[f"{a}.self_attn.in_proj_bias"] = (3 * h, h), (3 * h,)
        s[f"{a}.self_attn.out_proj.weight"], s[f"{a}.self_attn.out_proj.bias"] = (h, h), (h,)
        s[f"{a}.norm.weight"] = s[f"{a}.norm.bias"] = (h,)
    for n in range(nlayers):
        a = f"{pr}.transformer_cross_attention_layers.{n}"
        s[f"{a}.multihead_attn.in_proj_weight"], s[f"{a}.multihead_attn.in_proj_bias"] = (3 * h, h), (3 * h,)
        s[f"{a}.multihead_attn.out_proj.weight"], s[f"{a}.multihead_attn.out_proj.bias"] = (h, h), (h,)
        s[f"{a}.norm.weight"] = s[f"{a}.norm.bias"] = (h,)
    for n in range(nlayers):
        a = f"{pr}.transformer_ffn_layers.{n}"
        s[f"{a}.linear1.weight"], s[f"{a}.linear1.bias"] = (p["dim_feedforward"], h), (p["dim_feedforward"],)
        s[f"{a}.linear2.weight"], s[f"{a}.linear2.bias"] = (h, p["dim_feedforward"]), (h,)
        s[f"{a}.norm.weight"] = s[f"{a}.norm.bias"] = (h,)
    s[f"{pr}.decoder_norm.weight"] = s[f"{pr}.decoder_norm.bias"] = (h,)
    s[f"{pr}.query_feat.weight"] = (num_queries, h)
    s[f"{pr}.query_embed.weight"] = (num_queries, h)
    s[f"{pr}.level_embed.weight"] = (3, h)
    if p["conv_dim"] != h or p["enforce_input_proj"]:  # pragma: no cover - not the R50 config
        for i in range(3):
            s[f"{pr}.input_proj.{i}.weight"], s[f"{pr}.input_proj.{i}.bias"] = (h, p["conv_dim"], 1, 1), (h,)
    s[f"{pr}.class_embed.weight"], s[f"{pr}.class_embed.bias"] = (num_labels + 1, h), (num_labels + 1,)
    for i in range(3):
        out = p["mask_dim"] if i == 2 else h
        s[f"{pr}.mask_embed.layers.{i}.weight"], s[f"{pr}.mask_embed.layers.{i}.bias"] = (out, h), (out,)
    if with_criterion:
        s["criterion.empty_weight"] = (num_labels + 1,)
    return s


# --------------------------------------------------------------------------------------------------
# key mapping

_LN = {"norm1": "self_attn_layer_norm", "linear1": "fc1", "linear2": "fc2", "norm2": "final_layer_norm"}
_BN_PARAMS = "weight|bias|running_mean|running_var"

# (pattern on the normalised source key, target template); \g<n> refer to the groups
_BB, _PD, _PR = r"backbone\.", r"sem_seg_head\.pixel_decoder\.", r"sem_seg_head\.predictor\."
_STAGE = _BACKBONE + "encoder.stages.{}.layers.{}."


def _stage(m: re.Match, rest: str) -> str:
    return _STAGE.format(int(m[1]) - 2, m[2]) + rest


# (pattern on the normalised source key, target: a re.expand template, a function of the match, or
# "SPLIT_QKV")
_RULES: list[tuple[re.Pattern, Any]] = [(re.compile(p), t) for p, t in [
    # backbone
    (_BB + r"stem\.conv1\.weight", _BACKBONE + "embedder.embedder.convolution.weight"),
    (_BB + rf"stem\.conv1\.norm\.({_BN_PARAMS})", _BACKBONE + r"embedder.embedder.normalization.\1"),
    (_BB + r"res([2-5])\.(\d+)\.conv([1-3])\.weight",
     lambda m: _stage(m, f"layer.{int(m[3]) - 1}.convolution.weight")),
    (_BB + rf"res([2-5])\.(\d+)\.conv([1-3])\.norm\.({_BN_PARAMS})",
     lambda m: _stage(m, f"layer.{int(m[3]) - 1}.normalization.{m[4]}")),
    (_BB + r"res([2-5])\.(\d+)\.shortcut\.weight", lambda m: _stage(m, "shortcut.convolution.weight")),
    (_BB + rf"res([2-5])\.(\d+)\.shortcut\.norm\.({_BN_PARAMS})",
     lambda m: _stage(m, f"shortcut.normalization.{m[3]}")),
    # pixel decoder
    (_PD + r"input_proj\.(\d+)\.([01])\.(weight|bias)", _PIXEL_DECODER + r"input_projections.\1.\2.\3"),
    (_PD + r"transformer\.level_embed", _PIXEL_DECODER + "level_embed"),
    (_PD + r"transformer\.encoder\.layers\.(\d+)\.self_attn\."
           r"(sampling_offsets|attention_weights|value_proj|output_proj)\.(weight|bias)",
     _PIXEL_DECODER + r"encoder.layers.\1.self_attn.\2.\3"),
    (_PD + r"transformer\.encoder\.layers\.(\d+)\.(norm1|linear1|linear2|norm2)\.(weight|bias)",
     lambda m: _PIXEL_DECODER + f"encoder.layers.{m[1]}.{_LN[m[2]]}.{m[3]}"),
    (_PD + r"mask_features\.(weight|bias)", _PIXEL_DECODER + r"mask_projection.\1"),
    (_PD + r"(adapter|layer)_(\d+)\.weight", _PIXEL_DECODER + r"\1_\2.0.weight"),
    (_PD + r"(adapter|layer)_(\d+)\.norm\.(weight|bias)", _PIXEL_DECODER + r"\1_\2.1.\3"),
    # transformer decoder
    (_PR + r"query_feat\.weight", _TRANSFORMER + "queries_features.weight"),
    (_PR + r"query_embed\.weight", _TRANSFORMER + "queries_embedder.weight"),
    (_PR + r"level_embed\.weight", _TRANSFORMER + "level_embed.weight"),
    (_PR + r"input_proj\.(\d+)\.(weight|bias)", _TRANSFORMER + r"input_projections.\1.\2"),
    (_PR + r"transformer_self_attention_layers\.(\d+)\.self_attn\.in_proj_(weight|bias)", "SPLIT_QKV"),
    (_PR + r"transformer_self_attention_layers\.(\d+)\.self_attn\.out_proj\.(weight|bias)",
     _TRANSFORMER + r"decoder.layers.\1.self_attn.out_proj.\2"),
    (_PR + r"transformer_self_attention_layers\.(\d+)\.norm\.(weight|bias)",
     _TRANSFORMER + r"decoder.layers.\1.self_attn_layer_norm.\2"),
    (_PR + r"transformer_cross_attention_layers\.(\d+)\.multihead_attn\."
           r"(in_proj_weight|in_proj_bias|out_proj\.weight|out_proj\.bias)",
     _TRANSFORMER + r"decoder.layers.\1.cross_attn.\2"),
    (_PR + r"transformer_cross_attention_layers\.(\d+)\.norm\.(weight|bias)",
     _TRANSFORMER + r"decoder.layers.\1.cross_attn_layer_norm.\2"),
    (_PR + r"transformer_ffn_layers\.(\d+)\.linear([12])\.(weight|bias)",
     _TRANSFORMER + r"decoder.layers.\1.fc\2.\3"),
    (_PR + r"transformer_ffn_layers\.(\d+)\.norm\.(weight|bias)",
     _TRANSFORMER + r"decoder.layers.\1.final_layer_norm.\2"),
    (_PR + r"decoder_norm\.(weight|bias)", _TRANSFORMER + r"decoder.layernorm.\1"),
    (_PR + r"mask_embed\.layers\.(\d+)\.(weight|bias)",
     _TRANSFORMER + r"decoder.mask_predictor.mask_embedder.\1.0.\2"),
    (_PR + r"class_embed\.(weight|bias)", r"class_predictor.\1"),
    (r"criterion\.empty_weight", "criterion.empty_weight"),
]]


def _normalise_key(key: str) -> str:
    """Undo the layouts detectron2 accepts on load: a ``module.`` (DDP) prefix, pixel-decoder keys
    directly under ``sem_seg_head.`` (MaskFormerHead version < 2) and ``static_query`` (decoder < 2)."""
    key = key.removeprefix("module.")
    if (key.startswith("sem_seg_head.") and not key.startswith("sem_seg_head.predictor.")
            and not key.startswith("sem_seg_head.pixel_decoder.")):
        key = "sem_seg_head.pixel_decoder." + key[len("sem_seg_head."):]
    return key.replace("sem_seg_head.predictor.static_query.", "sem_seg_head.predictor.query_feat.")


def map_d2_key(key: str) -> list[tuple[str, int | None]] | None:
    """The transformers key(s) of a detectron2 key: ``[(target, part)]`` where ``part`` is None (the
    whole tensor) or 0/1/2 (the q/k/v third, along dim 0, of a packed ``in_proj``); None when the key
    has no rule."""
    key = _normalise_key(key)
    for pattern, target in _RULES:
        m = pattern.fullmatch(key)
        if m is None:
            continue
        if target == "SPLIT_QKV":
            layer, kind = m[1], m[2]
            return [(_TRANSFORMER + f"decoder.layers.{layer}.self_attn.{qkv}_proj.{kind}", i)
                    for i, qkv in enumerate("qkv")]
        return [(target(m) if callable(target) else m.expand(target), None)]
    return None


_EXPECTED_SOURCES: dict[str, str] = {}


def _expected_sources() -> dict[str, str]:
    """transformers key → the detectron2 key that provides it (key names do not depend on C or Q)."""
    if not _EXPECTED_SOURCES:
        for key in d2_checkpoint_shapes():
            for tkey, _ in map_d2_key(key) or []:
                _EXPECTED_SOURCES[tkey] = key
    return _EXPECTED_SOURCES


def _as_tensor(value: Any, key: str, path: str | Path | None):
    import torch

    if isinstance(value, torch.Tensor):
        t = value.detach().cpu()
    elif isinstance(value, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(value))
    else:
        raise InputError(f"value is a {type(value).__name__}, not an array", path=path, field=key)
    if not (t.is_floating_point() or t.dtype in (torch.int64, torch.int32)):
        raise InputError(f"array of dtype {t.dtype} is not numeric", path=path, field=key)
    return t


def convert_d2_state_dict(state: Mapping[str, Any], target: Mapping[str, Any], *,
                          path: str | Path | None = None) -> tuple[dict, dict[str, list[str]]]:
    """Map a detectron2 state dict onto the keys and shapes of a transformers state dict.

    Args:
        state: detectron2 key → numpy array / tensor (``pixel_mean``/``pixel_std`` are skipped).
        target: the transformers model's ``state_dict()`` (shapes and dtypes to match).
        path: the checkpoint, for error messages.

    Returns:
        ``(converted, mapping)``: target key → tensor (target dtype) for every key that comes from the
        checkpoint, and source key → its target keys.

    Raises:
        InputError: listing every unmapped source key, shape mismatch (key and both shapes) and target
            key the checkpoint does not provide (other than ``num_batches_tracked`` and
            ``criterion.empty_weight``).
    """
    converted: dict = {}
    mapping: dict[str, list[str]] = {}
    problems: list[tuple[str, str]] = []  # (key, message)
    claimed: set[str] = set()  # targets some source key maps to (reported once, even when it does not fit)
    for key, value in state.items():
        if key in _IGNORED_SOURCES:
            continue
        targets = map_d2_key(key)
        if targets is None:
            problems.append((key, (f"unmapped source key {key!r} (shape {tuple(np.shape(value))}): no "
                                  "transformers counterpart in the R50 Mask2Former")))
            continue
        src = _as_tensor(value, key, path)
        claimed.update(t for t, _ in targets)
        for tkey, part in targets:
            if tkey not in target:
                problems.append((key, (f"source key {key!r} (shape {tuple(src.shape)}) maps to {tkey!r}, "
                                      "which the transformers model does not have")))
                continue
            want = tuple(target[tkey].shape)
            if part is None:
                piece = src
            else:  # a third of a packed q|k|v in_proj along dim 0
                if src.shape[0] % 3 or (src.shape[0] // 3,) + tuple(src.shape[1:]) != want:
                    problems.append((key, (f"shape mismatch: source {key!r} has shape {tuple(src.shape)}, "
                                          f"expected {(3 * want[0],) + want[1:]} to split into q/k/v "
                                          f"{tkey!r} of shape {want}")))
                    break
                n = src.shape[0] // 3
                piece = src[part * n:(part + 1) * n]
            if tuple(piece.shape) != want:
                hint = (" (set --num-labels / --num-queries to the checkpoint's)"
                        if "class_embed" in key or "query_" in key or "empty_weight" in key else "")
                problems.append((key, (f"shape mismatch: source {key!r} has shape {tuple(piece.shape)}, "
                                      f"transformers {tkey!r} has shape {want}{hint}")))
                continue
            if tkey in converted:
                problems.append((key, f"target {tkey!r} is given twice (second time by {key!r})"))
                continue
            converted[tkey] = piece.to(dtype=target[tkey].dtype).clone()
            mapping.setdefault(key, []).append(tkey)
    missing = [k for k in target if k not in claimed and not k.endswith("num_batches_tracked")
               and k not in _OPTIONAL_TARGETS]
    by_source: dict[str, list[str]] = {}
    for k in missing:
        by_source.setdefault(_expected_sources().get(k, ""), []).append(k)
    for src_key, tkeys in by_source.items():
        shapes = ", ".join(f"{t!r} {tuple(target[t].shape)}" for t in tkeys)
        what = f"checkpoint key {src_key!r} is missing" if src_key else "no checkpoint key provides it"
        problems.append((src_key or tkeys[0], f"missing: {what} (transformers {shapes})"))
    if problems:
        shown = "; ".join(msg for _, msg in problems[:12])
        more = f"; … and {len(problems) - 12} more" if len(problems) > 12 else ""
        raise InputError(f"not the detectron2 Mask2Former R50 checkpoint this converter expects: "
                         f"{len(problems)} problem(s): {shown}{more}", path=path, field=problems[0][0])
    return converted, mapping


# --------------------------------------------------------------------------------------------------
# reading and writing checkpoints


def load_d2_checkpoint(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a detectron2 checkpoint: a model-zoo ``.pkl`` (``{"model": {name: array}, "__author__": …}``)
    or a torch ``.pth`` (``{"model": state_dict, …}`` or a bare state dict).

    Returns:
        ``(state, meta)``: the state dict (insertion order kept) and the other top-level entries
        (``__author__``, ``matching_heuristics``, …; large ones such as an optimizer state dropped).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("checkpoint file not found", path=path)
    data: Any
    if path.suffix == ".pkl":
        try:
            with open(path, "rb") as f:
                data = pickle.load(f, encoding="latin1")
        except Exception as exc:
            raise InputError(f"cannot unpickle the checkpoint: {exc}", path=path) from exc
    else:
        import torch

        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:  # numpy arrays or other objects: trusted-file fallback, as detectron2
            try:
                data = torch.load(path, map_location="cpu", weights_only=False)
            except Exception as exc:
                raise InputError(f"cannot read the checkpoint: {exc}", path=path) from exc
    if not isinstance(data, Mapping):
        raise InputError(f"checkpoint holds a {type(data).__name__}, expected a dict", path=path)
    if "model" in data and isinstance(data["model"], Mapping):
        state = data["model"]
        meta = {k: v for k, v in data.items() if k != "model" and isinstance(v, (str, bool, int, float))}
    else:
        state, meta = data, {}
    if not state or not all(isinstance(k, str) for k in state):
        raise InputError("checkpoint has no state dict of named arrays under 'model'", path=path,
                         field="model")
    if meta.get("matching_heuristics"):
        log.warning("%s asks for detectron2's name-matching heuristics; its keys are mapped by name as is",
                    path)
    return dict(state), meta


def _pixel_stats(state: Mapping[str, Any], name: str, default: tuple[float, ...], path) -> tuple[float, ...]:
    if name not in state:
        return tuple(float(v) for v in default)
    v = np.asarray(_as_tensor(state[name], name, path), dtype=np.float64).reshape(-1)
    if v.shape != (3,):
        raise InputError(f"expected 3 values, got shape {tuple(np.shape(state[name]))}", path=path,
                         field=name)
    return tuple(float(x) for x in v)


def convert_d2_checkpoint(pkl_path: str | Path, out_dir: str | Path, *, num_labels: int = 133,
                          num_queries: int = 100, overwrite: bool = False) -> dict[str, Any]:
    """Convert a detectron2 Mask2Former R50 COCO-panoptic checkpoint into a generator directory.

    The directory is written next to ``out_dir`` under a temporary name and renamed into place at
    the end, so an interrupted run never leaves a directory that looks complete.

    Args:
        pkl_path: the model-zoo ``.pkl`` (or a ``.pth`` with a ``model`` dict).
        out_dir: the directory to write (``Mask2FormerGenerator.from_pretrained(out_dir)`` loads it).
        num_labels: closed-set classes C of the checkpoint (133 for COCO panoptic).
        num_queries: object queries of the checkpoint (100).
        overwrite: replace an existing non-empty ``out_dir``.

    Returns:
        A summary: ``out_dir``, ``source_keys`` (checkpoint keys converted), ``target_tensors``
        (transformers tensors filled), ``parameters``, ``author``.
    """
    import torch

    from smart.model.mask_generator import Mask2FormerGenerator

    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not overwrite:
        raise InputError("output exists and is not empty (use overwrite / --overwrite)", path=out_dir)
    state, meta = load_d2_checkpoint(pkl_path)
    model = build_r50_coco_panoptic_model(num_labels=num_labels, num_queries=num_queries)
    target = model.state_dict()
    converted, mapping = convert_d2_state_dict(state, target, path=pkl_path)
    result = model.load_state_dict(converted, strict=False)
    left = [k for k in result.missing_keys
            if not k.endswith("num_batches_tracked") and k not in _OPTIONAL_TARGETS]
    if left or result.unexpected_keys:  # pragma: no cover - convert_d2_state_dict checked both
        raise RuntimeError(f"load_state_dict: missing {left}, unexpected {result.unexpected_keys}")
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if name.endswith("num_batches_tracked"):
                buf.zero_()
    p = R50_PANOPTIC
    gen = Mask2FormerGenerator(
        model=model, pixel_mean=_pixel_stats(state, "pixel_mean", p["pixel_mean"], pkl_path),
        pixel_std=_pixel_stats(state, "pixel_std", p["pixel_std"], pkl_path), resize=True,
        min_size=p["min_size_test"], max_size=p["max_size_test"], size_divisibility=p["size_divisibility"],
        frozen_batchnorm=True)  # detectron2's R50 uses FrozenBN: a tuned converted generator keeps it fixed

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    old: Path | None = None
    try:
        os.chmod(tmp, 0o755)  # mkdtemp's 0700 would make the generator private to this user
        gen.save_pretrained(tmp)
        if out_dir.exists():
            if out_dir.is_dir() and not any(out_dir.iterdir()):
                out_dir.rmdir()
            else:
                old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
                old.rmdir()
                os.replace(out_dir, old)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and old.exists() and not out_dir.exists():
            os.replace(old, out_dir)
        raise
    if old is not None:
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
    summary = {"out_dir": str(out_dir), "source_keys": len(mapping),
               "target_tensors": sum(len(v) for v in mapping.values()),
               "parameters": sum(t.numel() for t in model.parameters()), "author": meta.get("__author__")}
    log.info("converted %s (%d keys, author %r) -> %s", pkl_path, summary["source_keys"], summary["author"],
             out_dir)
    return summary


def _random_array(rng: np.random.Generator, key: str, shape: tuple[int, ...]) -> np.ndarray:
    """Random values of a plausible scale for one tensor (keeps activations finite and O(1))."""
    if key == "criterion.empty_weight":
        a = np.ones(shape)
        a[-1] = R50_PANOPTIC["no_object_weight"]
        return a.astype(np.float32)
    leaf = key.rsplit(".", 1)[-1]
    is_norm = ".norm." in key or re.search(r"\.norm\d?\.|decoder_norm|input_proj\.\d+\.1\.", key) is not None
    if leaf == "running_mean":
        a = rng.normal(0.0, 0.1, shape)
    elif leaf == "running_var":
        a = rng.uniform(0.5, 2.0, shape)  # positive variances
    elif is_norm and leaf == "weight":
        a = rng.uniform(0.5, 1.5, shape)
    elif is_norm and leaf == "bias":
        a = rng.normal(0.0, 0.1, shape)
    elif "level_embed" in key or key.endswith(("query_feat.weight", "query_embed.weight")):
        a = rng.normal(0.0, 1.0, shape)
    elif "sampling_offsets" in key and leaf == "bias":
        a = rng.normal(0.0, 2.0, shape)  # offsets of a few feature-map pixels
    elif leaf in ("bias", "in_proj_bias"):
        a = rng.normal(0.0, 0.05, shape)
    else:  # conv / linear weights: variance-preserving
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        a = rng.normal(0.0, 1.0 / np.sqrt(fan_in), shape)
        if key.startswith("backbone.") and key.endswith("conv3.weight"):
            a *= 0.5  # damp the residual branches so 16 blocks do not blow up
    return a.astype(np.float32)


def write_random_d2_checkpoint(path: str | Path, *, seed: int = 0, num_labels: int = 133,
                               num_queries: int = 100) -> Path:
    """Write a detectron2-format ``.pkl`` with the real keys and shapes of Mask2Former R50 COCO
    panoptic (:func:`d2_checkpoint_shapes`: 558 keys incl. ``criterion.empty_weight``) and random
    float32 values (BN running variances in [0.5, 2]).

    The file is ``{"model": OrderedDict, "__author__": …, "matching_heuristics": False}``; the
    ``OrderedDict`` carries torch's ``_metadata`` with version 2 of ``MaskFormerHead`` and of the
    decoder, as a ``model.state_dict()`` does, so that detectron2's ``DetectionCheckpointer`` loads
    the pixel-decoder keys as they are (without it, detectron2 would treat them as the legacy
    layout and move them to ``sem_seg_head.pixel_decoder.pixel_decoder.*``).
    """
    path = Path(path)
    rng = np.random.default_rng(seed)
    model: OrderedDict[str, np.ndarray] = OrderedDict()
    for key, shape in d2_checkpoint_shapes(num_labels=num_labels, num_queries=num_queries).items():
        model[key] = _random_array(rng, key, shape)
    model._metadata = OrderedDict([  # type: ignore[attr-defined]
        ("sem_seg_head", {"version": 2}), ("sem_seg_head.predictor", {"version": 2})])
    data = {"model": model, "__author__": f"smart.model.convert_d2 random weights (seed {seed})",
            "matching_heuristics": False}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "wb") as f:
        pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)
    return path
