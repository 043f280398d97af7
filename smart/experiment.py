"""The experiment: params.yaml read and validated once, with every cell resolved.

``Experiment.load("params.yaml")`` is the one entry point to the pipeline's parameters. It checks every
section (unknown or missing keys, types, ranges; errors name the key path), resolves each cell of the
active profile (its seeds, benchmarks, model config and training schedule, with ``cell_defaults``,
``model.<profile>`` and ``train_defaults.<profile>`` applied), and is then read-only.

The same object is built by the Snakefile (from Snakemake's ``config``, so ``--config`` overrides are
included), by the ``dvc.yaml`` generator (:mod:`smart.dag`) and by every job (``--params``), so the
DAG and the jobs agree by construction. Torch-free: building it imports no model code.

Example::

    exp = Experiment.load("params.yaml")
    cell = exp.cell("table3a_all")
    cell.model.tune            # 'all'
    cell.train_for(seed=1).lr  # the resolved schedule of seed 1
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smart.config import (
    PROFILES,
    CellSpec,
    TrainConfig,
    cell_spec,
    check_report,
    check_schema,
    load_params,
    mini_generator_params,
    model_config,
    proposals_params,
    section,
    train_config,
)
from smart.errors import ConfigError

# Every top-level section of params.yaml (an unknown one is a misspelling: its overrides would do nothing).
SECTIONS = ("profile", "data", "mini_world", "mini_clip", "model", "cells", "cell_defaults", "eval",
            "train_defaults", "convert_generators", "mini_generators", "proposals", "report", "user_datasets")
OPTIONAL_SECTIONS = {"user_datasets": {}}  # value when absent (params files written before it existed)
DATA_SCHEMA: dict[str, Any] = {"mini_root": str, "paper_root": str, "download": bool, "count_check": bool}


@dataclass(frozen=True)
class Cell:
    """One resolved cell of the grid.

    Args:
        spec: seeds, benchmarks, oracle and ``model_from`` (:class:`smart.config.CellSpec`).
        model: the resolved :class:`smart.model.config.SmartModelConfig` (of ``model_cell`` for an
            evaluation-only cell).
        train: the resolved :class:`smart.config.TrainConfig` (seed of the config: the first seed).
    """

    spec: CellSpec
    model: Any
    train: TrainConfig

    name = property(lambda self: self.spec.name)
    seeds = property(lambda self: self.spec.seeds)
    datasets = property(lambda self: self.spec.datasets)
    oracle = property(lambda self: self.spec.oracle)
    trained = property(lambda self: self.spec.trained)
    model_cell = property(lambda self: self.spec.model_cell)

    @property
    def uses_store(self) -> bool:
        """Whether the cell reads cached proposals (False: it tunes its generator, which runs on the fly)."""
        return not self.model.tune_mask_generator

    @property
    def generator(self) -> str:
        """The mask generator's cache name: its ``name`` (mini: ``mini-swinb``) or its key (paper: ``swinb``)."""
        return self.train.generators[self.train.generator].get("name") or self.train.generator

    def train_for(self, seed: int) -> TrainConfig:
        """The schedule of one of the cell's seeds."""
        if seed not in self.seeds:
            raise ConfigError(f"seed {seed} is not one of the cell's seeds {list(self.seeds)}",
                              field=f"cells.{self.name}.seeds")
        return self.train.replace(seed=int(seed))


@dataclass(frozen=True)
class Experiment:
    """params.yaml, validated, with the active profile's cells resolved (see the module docstring).

    Args:
        params: the validated mapping (a deep copy of what was read; do not mutate).
        source: the file it came from (named in errors), or a description.
        profile: ``mini`` or ``paper``.
        cells: every cell that runs in the profile, in params.yaml order.
        user_datasets: the user's own benchmarks (``user_datasets``: name →
            :class:`smart.data.registry.UserDataset`), usable in any cell's ``datasets:``.
    """

    params: dict
    source: str
    profile: str
    cells: Mapping[str, Cell] = field(repr=False)
    user_datasets: Mapping[str, Any] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def load(cls, path: str | Path = "params.yaml") -> Experiment:
        return cls.from_params(load_params(path), source=str(path))

    @classmethod
    def for_job(cls, path: str | Path, *, profile: str | None = None) -> Experiment:
        """What a job reads: the params file it was given (``--params``), under ``--profile`` if set."""
        exp = cls.load(path)
        return exp if profile in (None, exp.profile) else exp.with_profile(profile)

    @classmethod
    def from_params(cls, params: Mapping, *, source: str = "params.yaml") -> Experiment:
        """Validate every section once and resolve the active profile's cells."""
        params = copy.deepcopy(dict(params))
        for key in params:  # a misspelt section would silently do nothing
            if key not in SECTIONS:
                raise ConfigError(f"unknown section (allowed: {', '.join(SECTIONS)})", path=source, field=str(key))
        for key, default in OPTIONAL_SECTIONS.items():
            if params.get(key) is None:
                params[key] = copy.deepcopy(default)
        for key in SECTIONS:
            if key not in params:
                raise ConfigError("missing section", path=source, field=key)
        from smart.data.registry import user_datasets

        user = user_datasets(params["user_datasets"], source=source)
        profile = params["profile"]
        if profile not in PROFILES:
            raise ConfigError(f"expected one of {', '.join(PROFILES)}, got {profile!r}", path=source, field="profile")
        check_schema(params["data"], DATA_SCHEMA, key="data", source=source)
        section(params, "train_defaults", source=source)
        proposals_params(params, profile=profile, source=source)
        section(params, "eval", source=source)
        section(params, "cell_defaults", source=source)
        if profile == "mini":
            from smart.train.pretrain_config import MiniClipConfig

            section(params, "mini_world", source=source)
            MiniClipConfig.from_dict(section(params, "mini_clip", source=source), source=source)
            for name in section(params, "mini_generators", source=source):
                mini_generator_params(params, name, source=source)
        conv = params["convert_generators"]
        if conv is not None and not isinstance(conv, dict):
            raise ConfigError("expected a mapping of converted directory -> detectron2 checkpoint", path=source,
                              field="convert_generators")
        cells_section = params["cells"]
        if not isinstance(cells_section, dict) or not cells_section:
            raise ConfigError("expected a non-empty mapping of cell name -> overrides", path=source, field="cells")
        cells: dict[str, Cell] = {}
        for name, over in cells_section.items():
            if profile == "mini" and (over or {}).get("paper_only"):
                continue
            spec = cell_spec(params, name, source=source)
            src = spec.model_cell
            cells[name] = Cell(spec=spec, model=model_config(params, src, profile=profile, source=source),
                               train=train_config(params, src, profile=profile, seed=spec.seeds[0], source=source))
        for name, c in cells.items():
            if c.spec.model_from and c.spec.model_from not in cells:
                raise ConfigError(f"{c.spec.model_from!r} does not run in the {profile} profile", path=source,
                                  field=f"cells.{name}.model_from")
        check_report(params, source=source)
        return cls(params=params, source=source, profile=profile, cells=cells, user_datasets=user)

    # ------------------------------------------------------------------ lookups
    def cell(self, name: str) -> Cell:
        if name not in self.cells:
            why = "runs in the paper profile only" if name in self.params["cells"] else \
                f"unknown cell; have {', '.join(self.cells)}"
            raise ConfigError(why, path=self.source, field=f"cells.{name}")
        return self.cells[name]

    @property
    def root(self) -> str:
        """The dataset root of the profile ($DETECTRON2_DATASETS)."""
        return self.params["data"]["mini_root" if self.profile == "mini" else "paper_root"]

    @property
    def mini(self) -> bool:
        return self.profile == "mini"

    @property
    def report(self) -> dict:
        return self.params["report"]

    @property
    def eval(self) -> dict:
        return self.params["eval"]

    @property
    def proposals(self) -> dict:
        """``proposals.<profile>``: the test-time generator settings (caches and on-the-fly generators)."""
        return self.params["proposals"][self.profile]

    def proposal_config(self):
        """``proposals.<profile>`` as a :class:`smart.data.proposals.ProposalCacheConfig`."""
        from smart.data.proposals import ProposalCacheConfig

        return ProposalCacheConfig.from_dict(self.proposals, source=self.source, key=f"proposals.{self.profile}")

    def train_defaults(self) -> dict:
        return self.params["train_defaults"][self.profile]

    def user_cells(self) -> list[str]:
        """The cells that list a user dataset (the rows of the user-dataset table)."""
        return [n for n, c in self.cells.items() if set(c.datasets) & set(self.user_datasets)]

    def get(self, dotted: str) -> Any:
        """The value at a dotted params key (``cells.smart.model``); what DVC's ``params:`` name."""
        value: Any = self.params
        for part in dotted.split("."):
            if not isinstance(value, dict) or part not in value:
                raise KeyError(dotted)
            value = value[part]
        return value

    def with_profile(self, profile: str) -> Experiment:
        """The same params under another profile (what ``--config profile=paper`` gives)."""
        return Experiment.from_params({**self.params, "profile": profile}, source=self.source)
