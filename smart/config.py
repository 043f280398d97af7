"""params.yaml: loading and validation.

params.yaml is the single source of truth of the pipeline: every value is written out explicitly
(no hidden defaults), and an invalid or missing key stops with an error that names it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from smart.errors import ConfigError
from smart.paths import ALL_DATASETS, EVAL_DATASETS, REFER_DATASETS, TABLE3_PARTS
from smart.schema import check_fields, check_schema, from_mapping, number  # noqa: F401 (check_schema: re-exported)

# Schema of the mini_world section: key -> type (nested dicts are checked recursively).
MINI_WORLD_SCHEMA: dict[str, Any] = {
    "seed": int,
    "image_size": int,
    "sizes": {"coco_train": int, "coco_val": int, "ade_val": int, "mapillary_val": int,
              "pascal_val": int, "refer_val": int},
    "captions": {"num_images": int, "image_size": int, "shard_size": int, "group_size": int},
}


class _DuplicateKey(yaml.YAMLError):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key repeated in one mapping is an error (plain YAML keeps the last
    value silently, so an edit to the first copy would do nothing)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                continue  # let the base class report unhashable keys
            if key in seen:
                raise _DuplicateKey(f"the key {key!r} appears twice in one mapping (lines {seen[key] + 1} and "
                                    f"{key_node.start_mark.line + 1}): the first value would be ignored")
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | Path, what: str = "YAML file") -> object:
    """A YAML file with every mapping's keys unique; errors name the file (and line)."""
    path = Path(path)
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 (a safe loader)
    except FileNotFoundError:
        raise ConfigError(f"{what} not found", path=path) from None
    except _DuplicateKey as exc:
        raise ConfigError(str(exc), path=path) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML ({exc})", path=path) from None


def load_params(path: str | Path = "params.yaml") -> dict:
    """params.yaml as a mapping (keys unique in every mapping; see :func:`load_yaml`)."""
    data = load_yaml(path, "params file")
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping at the top level", path=path)
    return data


def reject_unknown(value: dict, allowed, *, key: str, source: str | Path | None = None, shown=None) -> None:
    """Every key of ``value`` must be in ``allowed``; the error names the first other one (and lists
    ``shown``, default ``allowed``)."""
    for k in value:
        if k not in allowed:
            raise ConfigError(f"unknown key (allowed: {', '.join(shown if shown is not None else allowed)})",
                              path=source, field=f"{key}.{k}")


def check_keys(value: Any, allowed, *, key: str, source: str | Path | None = None) -> None:
    """``value`` must be a mapping with exactly the keys ``allowed``; errors name the key."""
    if not isinstance(value, dict):
        raise ConfigError(f"expected a mapping, got {type(value).__name__}", path=source, field=key)
    for k in allowed:
        if k not in value:
            raise ConfigError("missing key", path=source, field=f"{key}.{k}")
    reject_unknown(value, allowed, key=key, source=source)


SCHEMAS = {"mini_world": MINI_WORLD_SCHEMA}
PROFILES = ("mini", "paper")


def section(params: dict, key: str, *, source: str | Path | None = None) -> dict:
    """One top-level section of params, validated against its schema where one exists."""
    if key not in params:
        raise ConfigError("missing section", path=source, field=key)
    value = params[key]
    if key in SCHEMAS:
        check_schema(value, SCHEMAS[key], key=key, source=source)
    if key == "train_defaults":
        _check_train_defaults(value, source)
    if key == "eval":
        check_keys(value, EVAL_KEYS, key="eval", source=source)
        try:
            EvalSettings(**value)
        except ConfigError as exc:
            raise ConfigError(exc.message, path=source, field=exc.field) from None
    if key == "mini_world":
        if value["image_size"] < 32 or value["image_size"] % 8:
            raise ConfigError("image_size must be a multiple of 8 and at least 32", path=source,
                              field="mini_world.image_size")
        if value["captions"]["shard_size"] < 1 or value["captions"]["group_size"] < 1:
            raise ConfigError("shard_size and group_size must be positive", path=source, field="mini_world.captions")
    return value


CELL_KEYS = {"model", "train", "paper_only", "seeds", "datasets", "oracle", "model_from"}


def cell_names(params: dict) -> list[str]:
    """The cells of the experiment grid that run in the active profile."""
    cells = section(params, "cells")
    if not isinstance(cells, dict) or not cells:
        raise ConfigError("expected a non-empty mapping of cell name -> overrides", field="cells")
    mini = params.get("profile") == "mini"
    return [c for c, v in cells.items() if not (mini and (v or {}).get("paper_only"))]


def model_config(params: dict, cell: str, *, profile: str | None = None, source: str | Path | None = None):
    """The resolved :class:`~smart.model.config.SmartModelConfig` of one cell: the profile's ``model``
    entry with the cell's ``model`` overrides on top. Errors name the params key."""
    from smart.model.config import SmartModelConfig

    profile = profile or params.get("profile")
    models = section(params, "model", source=source)
    if profile not in models:
        raise ConfigError(f"no model entry for profile {profile!r}", path=source, field=f"model.{profile}")
    overrides = _cell_overrides(params, cell, source)
    merged = {**(models[profile] or {}), **(overrides.get("model") or {})}
    try:
        return SmartModelConfig.from_dict(merged, source=source)
    except ConfigError as exc:
        field = exc.field
        where = f"cells.{cell}.model.{field}" if field in (overrides.get("model") or {}) else f"model.{profile}.{field}"
        raise ConfigError(exc.message, path=source, field=where) from None


# ---------------------------------------------------------------------------------------- training
# params.yaml ``train_defaults.<profile>`` (every key written out) + a cell's ``train:`` overrides.
# Field names of smart.model.criterion.CriterionConfig and smart.model.mask_generator.GeneratorConfig,
# spelled out here so that validating params.yaml needs no torch (tests check they stay in sync).
CRITERION_KEYS = ("class_weight", "mask_weight", "dice_weight", "eos_coef", "num_points", "oversample_ratio",
                  "importance_sample_ratio")
GENERATOR_KEYS = ("name", "backend", "pretrained", "num_labels", "num_queries", "tune_mask_generator", "top_k",
                  "score_mode", "resize", "min_size", "max_size", "size_divisibility", "pixel_mean", "pixel_std",
                  "amp", "d2_config_file")
LR_SCHEDULES = ("step", "poly", "cosine", "constant")
# Keys that change how a run is carried out but not its numbers: a resume may change them.
TRAIN_OPERATIONAL_KEYS = ("num_workers", "log_period", "checkpoint_period", "grad_checkpointing")


@dataclass(frozen=True)
class TrainConfig:
    """One cell's resolved training schedule (``docs/method-spec.md`` §2.6, §4.7, §4.11).

    Defaults are the paper profile's values; params.yaml writes every key out explicitly.
    """

    iterations: int = 10000  # optimizer steps (paper: 10k for the ablations, 25k for Table 1)
    batch_size: int = 16  # global batch over all ranks (detectron2 IMS_PER_BATCH)
    crop_size: int = 1024  # LSJ output side in pixels (FixedSizeCrop)
    min_scale: float = 0.1  # LSJ ResizeScale range (of crop_size)
    max_scale: float = 2.0
    flip_prob: float = 0.5  # horizontal flip probability
    fraction: float = 1.0  # share of the training images used (Fig. 6); nested subsets for one seed
    lr: float = 1e-4  # AdamW base lr (§5.3)
    weight_decay: float = 0.05
    decay_ndim_only: bool = True  # decay only >= 2-D weights (nanoGPT grouping, spec §4.7 [REC])
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    schedule: str = "step"  # step (M2F multi-step, spec §4.7 [REC]) | poly | cosine | constant
    lr_steps: tuple[float, ...] = (0.88889, 0.96296)  # step milestones as fractions of iterations
    lr_gamma: float = 0.1  # step decay factor
    poly_power: float = 0.9  # poly schedule exponent
    min_lr_factor: float = 0.0  # floor of the poly / cosine decay (fraction of lr)
    warmup_iters: int = 10  # linear warmup length
    warmup_factor: float = 0.001  # lr factor at iteration 0 of the warmup (detectron2 default)
    grad_clip: float = 0.01  # full-model gradient L2-norm clipping (M2F / MaskCLIP); 0 = off
    backbone_multiplier: float = 0.1  # lr multiplier of the mask generator's backbone when it is tuned
    bf16: bool = True  # bf16 autocast (CUDA only; CPU runs stay fp32)
    grad_checkpointing: bool = True  # activation checkpointing of the CLIP blocks
    find_unused_parameters: bool = False  # DDP flag (multi-GPU)
    seed: int = 0
    num_workers: int = 8  # DataLoader workers per rank
    log_period: int = 20  # iterations between metric lines
    checkpoint_period: int = 1000  # iterations between scratch last.pt checkpoints
    proposal_stride: int = 4  # proposal masks at crop_size / stride (Mask2Former's 1/4 resolution)
    proposal_pad_logit: float = -20.0  # proposal logit in the LSJ padding (outside every mask)
    generator: str = "swinb"  # key of ``generators``: the on-the-fly mask generator (no --proposals)
    generators: dict = field(default_factory=lambda: {"swinb": {}})  # name -> GeneratorConfig fields
    criterion: dict = field(default_factory=dict)  # CriterionConfig fields (loss weights, points)

    def __post_init__(self):
        check_fields(self)
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self, field_of=lambda k: k, source: str | Path | None = None) -> None:
        """Ranges and rules between fields (the types are checked by :mod:`smart.schema`)."""
        def err(key: str, msg: str):
            return ConfigError(msg, path=source, field=field_of(key))

        for name in ("iterations", "batch_size", "crop_size", "warmup_iters", "seed", "num_workers",
                     "log_period", "checkpoint_period", "proposal_stride"):
            v = getattr(self, name)
            lo = 0 if name in ("iterations", "warmup_iters", "seed", "num_workers") else 1  # 0 its: untrained
            if v < lo:
                raise err(name, f"expected an integer >= {lo}, got {v}")
        if self.crop_size < 8:
            raise err("crop_size", f"expected at least 8 px, got {self.crop_size}")
        if not 0 < self.min_scale <= self.max_scale:
            raise err("min_scale", f"need 0 < min_scale <= max_scale, got {self.min_scale}, {self.max_scale}")
        for name, lo_open, hi in (("flip_prob", False, 1), ("fraction", True, 1), ("lr_gamma", True, 1),
                                  ("min_lr_factor", False, 1), ("warmup_factor", True, 1)):
            v = getattr(self, name)
            if (v <= 0 if lo_open else v < 0) or v > hi:
                raise err(name, f"expected a value in {'(' if lo_open else '['}0, {hi}], got {v}")
        for name in ("lr", "eps", "poly_power"):
            if getattr(self, name) <= 0:
                raise err(name, f"must be positive, got {getattr(self, name)}")
        for name in ("weight_decay", "grad_clip", "backbone_multiplier"):
            if getattr(self, name) < 0:
                raise err(name, f"must be >= 0, got {getattr(self, name)}")
        if not all(0 <= b < 1 for b in self.betas):
            raise err("betas", f"expected two numbers in [0, 1), got {self.betas!r}")
        if self.schedule not in LR_SCHEDULES:
            raise err("schedule", f"expected one of {', '.join(LR_SCHEDULES)}, got {self.schedule!r}")
        if not all(0 < s <= 1 for s in self.lr_steps) or list(self.lr_steps) != sorted(self.lr_steps):
            raise err("lr_steps", f"expected increasing fractions of the iterations in (0, 1], got {self.lr_steps!r}")
        for k in self.criterion:
            if k not in CRITERION_KEYS:
                raise err(f"criterion.{k}", f"unknown key (allowed: {', '.join(CRITERION_KEYS)})")
        if not self.generators:
            raise err("generators", "expected a non-empty mapping of generator name -> settings")
        for name, g in self.generators.items():
            if not isinstance(g, dict):
                raise err(f"generators.{name}", "expected a mapping of mask-generator settings")
            for k in g:
                if k not in GENERATOR_KEYS:
                    raise err(f"generators.{name}.{k}", f"unknown key (allowed: {', '.join(GENERATOR_KEYS)})")
        if self.generator not in self.generators:
            raise err("generator", f"unknown generator {self.generator!r}; have {', '.join(self.generators)}")

    # ------------------------------------------------------------------ derived
    @property
    def generator_config(self) -> dict:
        """The chosen on-the-fly mask generator's settings (``GeneratorConfig`` fields)."""
        return dict(self.generators[self.generator])

    def milestones(self) -> list[int]:
        """Step-schedule milestones in iterations (10k → 8889, 9630; 25k → 22222, 24074)."""
        return [round(f * self.iterations) for f in self.lr_steps]

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"], d["lr_steps"] = list(self.betas), list(self.lr_steps)
        return d

    def fingerprint(self) -> dict[str, Any]:
        """The fields that determine the numbers of a run (what a resume must not change)."""
        d = self.to_dict()
        for k in TRAIN_OPERATIONAL_KEYS + ("generators",):
            d.pop(k)
        d["generator_config"] = self.generator_config
        return d

    def replace(self, **overrides) -> TrainConfig:
        return TrainConfig.from_dict({**self.to_dict(), **overrides})

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str | Path | None = None, field_of=lambda k: k,
                  require_all: bool = False) -> TrainConfig:
        """Build from a mapping; errors name ``field_of(key)`` (e.g. ``train_defaults.mini.lr``)."""
        d = dict(data) if isinstance(data, dict) else data
        if isinstance(d, dict):
            for key in ("generators", "criterion"):
                if key in d and d[key] is None:
                    d[key] = {}
        return from_mapping(cls, d, field_of=field_of, source=source, require_all=require_all)


def _merge(base: dict, over: dict) -> dict:
    """Recursive dict merge: mappings merge key by key, anything else replaces."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _check_train_defaults(value: Any, source: str | Path | None) -> None:
    if not isinstance(value, dict):
        raise ConfigError("expected a mapping of profile -> training settings", path=source, field="train_defaults")
    for prof in value:
        if prof not in PROFILES:
            raise ConfigError(f"unknown profile (allowed: {', '.join(PROFILES)})", path=source,
                              field=f"train_defaults.{prof}")
    for prof in PROFILES:
        if prof not in value:
            raise ConfigError("missing key", path=source, field=f"train_defaults.{prof}")
        TrainConfig.from_dict(value[prof], source=source, require_all=True,
                              field_of=lambda k, p=prof: f"train_defaults.{p}.{k}".rstrip("."))


def _cell_overrides(params: dict, cell: str, source: str | Path | None) -> dict:
    cells = section(params, "cells", source=source)
    if not isinstance(cells, dict) or cell not in cells:
        have = ", ".join(cells) if isinstance(cells, dict) else ""
        raise ConfigError(f"unknown cell; have {have}", path=source, field=f"cells.{cell}")
    overrides = cells[cell] or {}
    if not isinstance(overrides, dict):
        raise ConfigError("expected a mapping", path=source, field=f"cells.{cell}")
    reject_unknown(overrides, CELL_KEYS, key=f"cells.{cell}", source=source, shown=sorted(CELL_KEYS))
    return overrides


def train_config(params: dict, cell: str, *, profile: str | None = None, seed: int | None = None,
                 source: str | Path | None = None) -> TrainConfig:
    """The resolved :class:`TrainConfig` of one cell: ``train_defaults.<profile>``, then the cell's
    ``train:`` keys, then the cell's ``train.<profile>:`` keys (profile-only overrides, e.g. Table 1's
    25k iterations in the paper profile only). Mappings (``criterion``, ``generators``) merge key by
    key. Errors name the params key at fault."""
    profile = profile or params.get("profile")
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r} (allowed: {', '.join(PROFILES)})", path=source,
                          field="profile")
    defaults = section(params, "train_defaults", source=source)[profile]
    over = _cell_overrides(params, cell, source).get("train") or {}
    if not isinstance(over, dict):
        raise ConfigError("expected a mapping", path=source, field=f"cells.{cell}.train")
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    origin = {}
    common = {}
    for k, v in over.items():
        if k in PROFILES:
            if not isinstance(v, dict):
                raise ConfigError("expected a mapping", path=source, field=f"cells.{cell}.train.{k}")
            reject_unknown(v, names, key=f"cells.{cell}.train.{k}", source=source, shown=sorted(names))
            continue
        reject_unknown({k: v}, names, key=f"cells.{cell}.train", source=source,
                       shown=sorted(names | set(PROFILES)))
        common[k] = v
        origin[k] = f"cells.{cell}.train.{k}"
    specific = over.get(profile) or {}
    for k in specific:
        origin[k] = f"cells.{cell}.train.{profile}.{k}"
    merged = _merge(_merge(defaults, common), specific)

    def field_of(key: str) -> str:
        top = key.split(".")[0]
        if top in origin:
            return origin[top] + key[len(top):]
        return f"train_defaults.{profile}.{key}"

    if seed is not None:  # one run of the cell's seed list (cells.<cell>.seeds)
        merged = {**merged, "seed": int(seed)}
    return TrainConfig.from_dict(merged, source=source, field_of=field_of)


# --------------------------------------------------------------------------------------------------
# Mask-generator sections (issue 5): mini_generators (pretraining) and proposals (caching).


# proposals.<profile>: see smart/data/proposals.py ProposalCacheConfig. The test-time generator settings
# (how many proposals, how they are scored, at which size each dataset is seen) are used alike by the
# caches and by the generators that run on the fly at evaluation (cells that tune their generator).
PROPOSALS_SCHEMA: dict[str, Any] = {
    "top_k": int, "shard_size": int, "logit_clamp": number, "logit_stride": int, "score_mode": str,
    "test_sizes": (dict, type(None)),
}
# Datasets a test size can be given for (``default`` covers the others).
TEST_SIZE_DATASETS = ("default",) + ALL_DATASETS


def check_test_sizes(value: Any, *, key: str, source: str | Path | None = None) -> None:
    """``test_sizes``: null (no resize) or ``{default: [min, max], <dataset>: [min, max], …}``."""
    if value is None:
        return
    if not isinstance(value, dict) or "default" not in value:
        raise ConfigError("expected null (no resize) or a mapping with a 'default' entry", path=source, field=key)
    reject_unknown(value, TEST_SIZE_DATASETS, key=key, source=source)
    for d, v in value.items():
        if (not isinstance(v, list) or len(v) != 2 or any(isinstance(x, bool) or not isinstance(x, int) for x in v)
                or not 0 < v[0] <= v[1]):
            raise ConfigError(f"expected [shortest side, longest side] with 0 < shortest <= longest, got {v!r}",
                              path=source, field=f"{key}.{d}")


def proposals_params(params: dict, *, profile: str | None = None, source: str | Path | None = None) -> dict:
    """The validated ``proposals.<profile>`` entry (every key present, no unknown key, types)."""
    profile = profile or params.get("profile")
    props = section(params, "proposals", source=source)
    if not isinstance(props, dict) or profile not in props:
        raise ConfigError(f"no entry for profile {profile!r} (proposals: {{mini: {{...}}, paper: {{...}}}})",
                          path=source, field=f"proposals.{profile}")
    reject_unknown(props, PROFILES, key="proposals", source=source)
    entry = props[profile]
    check_proposals_entry(entry, key=f"proposals.{profile}", source=source)
    return entry


def check_proposals_entry(entry: Any, *, key: str, source: str | Path | None = None) -> None:
    """One ``proposals.<profile>`` entry: every key present, no unknown key, types and ranges."""
    check_schema(dict(entry) if isinstance(entry, Mapping) else entry, PROPOSALS_SCHEMA, key=key, source=source)
    for k in ("top_k", "shard_size", "logit_stride"):
        if entry[k] < 1:
            raise ConfigError(f"expected a positive integer, got {entry[k]!r}", path=source, field=f"{key}.{k}")
    if not 0 < entry["logit_clamp"] < 1e4:
        raise ConfigError(f"expected a positive number, got {entry['logit_clamp']!r}", path=source,
                          field=f"{key}.logit_clamp")
    if entry["score_mode"] not in ("objectness", "max_class"):
        raise ConfigError(f"unknown score_mode {entry['score_mode']!r} (objectness | max_class)", path=source,
                          field=f"{key}.score_mode")
    check_test_sizes(entry["test_sizes"], key=f"{key}.test_sizes", source=source)


def mini_generator_params(params: dict, name: str, *, source: str | Path | None = None) -> dict:
    """The validated ``mini_generators.<name>`` entry (every key present, no unknown key, types)."""
    gens = section(params, "mini_generators", source=source)
    if not isinstance(gens, dict) or not gens:
        raise ConfigError("expected a non-empty mapping of generator name -> settings", path=source,
                          field="mini_generators")
    if name not in gens:
        raise ConfigError(f"no entry for generator {name!r}; have {', '.join(gens)}", path=source,
                          field=f"mini_generators.{name}")
    from smart.train.pretrain_config import GeneratorPretrainConfig  # torch-free

    GeneratorPretrainConfig.from_dict(gens[name], name=name, source=source, require_all=True)
    return gens[name]


# --------------------------------------------------------------------------------------------------
# The experiment grid (issue 6): seeds, evaluation datasets and evaluation-only cells.

CELL_DEFAULTS_SCHEMA: dict[str, Any] = {"seeds": list, "datasets": list}
SCHEMAS["cell_defaults"] = CELL_DEFAULTS_SCHEMA
ORACLES = ("none", "generator", "classifier")


@dataclass(frozen=True)
class EvalSettings:
    """Inference and evaluation settings (params.yaml ``eval``; ``oracle`` comes from the cell)."""

    object_mask_threshold: float = 0.0  # open-vocabulary REC (FC-CLIP): the learned void class filters
    overlap_threshold: float = 0.8
    mask_threshold: float = 0.5
    batch_size: int = 16  # images per forward (images of one size are batched together)
    bf16: bool = True  # CUDA: bf16 autocast through the CLIP classifier and the mask upsampling (CPU: fp32)
    oracle: str = "none"  # none | generator (GT masks as proposals) | classifier (GT labels by best overlap)

    def __post_init__(self):
        check_fields(self, field_of=lambda k: f"eval.{k}")  # the types (smart.schema), then the ranges
        if self.oracle not in ORACLES:
            raise ConfigError(f"unknown oracle {self.oracle!r} (allowed: {', '.join(ORACLES)})", field="oracle")
        for name in ("object_mask_threshold", "overlap_threshold", "mask_threshold"):
            v = getattr(self, name)
            if not 0 <= v <= 1:
                raise ConfigError(f"expected a number in [0, 1], got {v!r}", field=f"eval.{name}")
        if self.batch_size < 1:
            raise ConfigError(f"expected a positive integer, got {self.batch_size!r}", field="eval.batch_size")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# params.yaml ``eval``: the fields of EvalSettings but the cell's ``oracle``
EVAL_KEYS = tuple(f.name for f in dataclasses.fields(EvalSettings) if f.name != "oracle")


@dataclass(frozen=True)
class CellSpec:
    """How one cell of ``cells:`` runs: its seeds, the benchmarks it is scored on, and — for an
    evaluation-only cell (Fig. 2a oracles) — the cell whose trained models it evaluates."""

    name: str
    seeds: tuple[int, ...]
    datasets: tuple[str, ...]
    oracle: str = "none"  # none | generator | classifier
    model_from: str | None = None  # evaluate this cell's models (no training of its own)

    @property
    def trained(self) -> bool:
        return self.model_from is None

    @property
    def model_cell(self) -> str:
        """The cell whose ``model.pt`` files this cell's evaluation reads."""
        return self.model_from or self.name


def _seed_list(value: Any, field: str, source) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"expected a non-empty list of seeds, got {value!r}", path=source, field=field)
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ConfigError(f"expected non-negative integer seeds, got {v!r}", path=source, field=field)
    if len(set(value)) != len(value):
        raise ConfigError(f"duplicate seeds in {value}", path=source, field=field)
    return tuple(value)


def _dataset_list(value: Any, field: str, source, user: Any = None) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"expected a non-empty list of datasets, got {value!r}", path=source, field=field)
    allowed = list(EVAL_DATASETS) + [str(k) for k in (user or {})]
    for v in value:
        if v not in allowed:
            raise ConfigError(f"unknown evaluation dataset {v!r} (allowed: {', '.join(allowed)}; your own "
                              f"benchmarks are declared in user_datasets)", path=source, field=field)
    return tuple(dict.fromkeys(value))


def cell_spec(params: dict, cell: str, *, source: str | Path | None = None) -> CellSpec:
    """The resolved :class:`CellSpec` of ``cells.<cell>`` (``cell_defaults`` fill seeds / datasets)."""
    over = _cell_overrides(params, cell, source)
    defaults = section(params, "cell_defaults", source=source)
    seeds = _seed_list(over.get("seeds", defaults["seeds"]),
                       f"cells.{cell}.seeds" if "seeds" in over else "cell_defaults.seeds", source)
    datasets = _dataset_list(over.get("datasets", defaults["datasets"]),
                             f"cells.{cell}.datasets" if "datasets" in over else "cell_defaults.datasets", source,
                             user=params.get("user_datasets"))
    oracle = over.get("oracle", "none")
    if oracle not in ORACLES:
        raise ConfigError(f"unknown oracle {oracle!r} (allowed: {', '.join(ORACLES)})", path=source,
                          field=f"cells.{cell}.oracle")
    model_from = over.get("model_from")
    if model_from is not None:
        cells = section(params, "cells", source=source)
        if model_from not in cells or model_from == cell:
            raise ConfigError(f"model_from must name another cell, got {model_from!r}", path=source,
                              field=f"cells.{cell}.model_from")
        if (cells[model_from] or {}).get("model_from"):
            raise ConfigError(f"{model_from!r} is itself an evaluation-only cell", path=source,
                              field=f"cells.{cell}.model_from")
        for k in ("model", "train"):
            if k in over:
                raise ConfigError(f"an evaluation-only cell (model_from) takes no {k!r} overrides", path=source,
                                  field=f"cells.{cell}.{k}")
        src_seeds = cell_spec(params, model_from, source=source).seeds
        missing = [s for s in seeds if s not in src_seeds]
        if missing:
            raise ConfigError(f"seeds {missing} are not trained by cell {model_from!r} (its seeds: {list(src_seeds)})",
                              path=source, field=f"cells.{cell}.seeds")
    elif oracle != "none":
        raise ConfigError("an oracle cell evaluates another cell's models: set model_from", path=source,
                          field=f"cells.{cell}.model_from")
    return CellSpec(cell, seeds, datasets, oracle, model_from)


# params.yaml ``report``: which cells fill which table rows / figure bars (smart.report).
REPORT_KEYS = ("table1", "table2", "table3", "table4", "fig2", "fig6")
REPORT_OPTIONAL = ("qualitative",)  # absent: no qualitative figures
TABLE3_KEYS = tuple(TABLE3_PARTS.values())


def check_report(params: dict, *, source: str | Path | None = None) -> dict:
    """Validate ``report``: known keys, and every cell it names is a cell of ``cells``."""
    rep = section(params, "report", source=source)
    cells = section(params, "cells", source=source)
    if not isinstance(rep, dict):
        raise ConfigError(f"expected a mapping, got {type(rep).__name__}", path=source, field="report")
    check_keys({k: v for k, v in rep.items() if k not in REPORT_OPTIONAL}, REPORT_KEYS, key="report", source=source)

    def cell(name: Any, field: str) -> None:
        if not isinstance(name, str) or name not in cells:
            raise ConfigError(f"unknown cell {name!r}", path=source, field=field)

    for c in rep["table1"]:
        cell(c, f"report.table1.{c}")
    for k in ("cell", "dataset", "images"):
        if k not in rep["table2"]:
            raise ConfigError("missing key", path=source, field=f"report.table2.{k}")
    cell(rep["table2"]["cell"], "report.table2.cell")
    if rep["table2"]["dataset"] not in EVAL_DATASETS:
        raise ConfigError(f"unknown dataset {rep['table2']['dataset']!r}", path=source, field="report.table2.dataset")
    for part in TABLE3_KEYS:
        if part not in rep["table3"]:
            raise ConfigError("missing key (every part of Table 3 names its rows' cells)", path=source,
                              field=f"report.table3.{part}")
    for part, rows in rep["table3"].items():
        if part not in TABLE3_KEYS:
            raise ConfigError(f"unknown part (allowed: {', '.join(TABLE3_KEYS)})", path=source,
                              field=f"report.table3.{part}")
        for setting, c in rows.items():
            if not isinstance(setting, str):  # DVC sorts param keys: mixed int / str keys break it
                raise ConfigError(f"row keys must be strings (quote {setting!r})", path=source,
                                  field=f"report.table3.{part}.{setting}")
            cell(c, f"report.table3.{part}.{setting}")
    cell(rep["table4"].get("cell"), "report.table4.cell")
    for i, c in enumerate(rep["table4"].get("compare") or []):
        cell(c, f"report.table4.compare[{i}]")
    for d in rep["table4"].get("datasets") or []:
        if d not in REFER_DATASETS:
            raise ConfigError(f"unknown referring dataset {d!r}", path=source, field="report.table4.datasets")
    for fig, parts in rep["fig2"].items():
        for bar, c in parts.items():
            cell(c, f"report.fig2.{fig}.{bar}")
    if "qualitative" in rep:
        q = rep["qualitative"]
        check_keys(q, ("baseline", "smart", "images"), key="report.qualitative", source=source)
        cell(q["baseline"], "report.qualitative.baseline")
        cell(q["smart"], "report.qualitative.smart")
        if not isinstance(q["images"], int) or isinstance(q["images"], bool) or not 1 <= q["images"] <= 32:
            raise ConfigError(f"expected an integer 1..32, got {q['images']!r}", path=source,
                              field="report.qualitative.images")
    for axis, cs in rep["fig6"].items():
        if axis not in ("iterations", "fraction"):
            raise ConfigError("unknown axis (allowed: iterations, fraction)", path=source, field=f"report.fig6.{axis}")
        for i, c in enumerate(cs):
            cell(c, f"report.fig6.{axis}[{i}]")
    return rep
