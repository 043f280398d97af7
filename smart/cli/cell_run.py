"""Shared setup of the verbs that run a trained cell (``eval-cell``, ``eval-refer``, ``benchmark``).

Each of them loads params, checks that the seed is one of the cell's, picks the dataset root, the
torch threads and the device, loads ``model.pt`` and finds the mask generator the cell was trained
with. :func:`add_cell_arguments` declares the common flags and :func:`open_cell_run` does the rest.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from smart.cli.context import RunContext, add_run_arguments


def add_cell_arguments(p: argparse.ArgumentParser) -> None:
    """``--cell --seed --model`` and the shared ``--params --profile --root --device --threads``."""
    p.add_argument("--cell", required=True, help="cell of params.yaml `cells:`")
    p.add_argument("--seed", type=int, required=True, help="which of the cell's seeds")
    p.add_argument("--model", required=True, help="model.pt written by `python -m smart train`")
    add_run_arguments(p, device=True, threads=True)


@dataclass
class CellRun:
    """What a verb needs to run one seed of a trained cell."""

    exp: Any  # smart.experiment.Experiment (params read once)
    spec: Any  # smart.config.CellSpec
    root: str
    device: Any  # torch.device
    model: Any  # SmartModel in eval mode
    meta: dict  # model.pt metadata (load_trained)

    @property
    def profile(self) -> str:
        return self.exp.profile

    def test_time(self):
        """The profile's test-time generator settings (``proposals.<profile>``) as a
        :class:`smart.data.proposals.ProposalCacheConfig`."""
        return self.exp.proposal_config()

    def generator_config(self, args) -> dict:
        """The mask generator the model was trained with: the one recorded in ``model.pt`` (on-the-fly
        training), else the cell's generator as params.yaml defines it (training from a cache)."""
        from smart.errors import InputError

        gcfg = self.meta.get("generator_config")
        if not gcfg:
            gcfg = self.exp.cell(self.spec.model_cell).train.generator_config
        if not gcfg:
            raise InputError("no mask generator for this cell", path=args.model, field="generator_config")
        return gcfg


def open_cell_run(args) -> CellRun:
    """Validate the cell and seed, set threads and device, and load the trained model."""
    from smart.errors import ConfigError
    from smart.train.checkpoint import load_trained

    ctx = RunContext(args)
    exp = ctx.experiment
    cell = exp.cell(args.cell)
    if args.seed not in cell.seeds:
        raise ConfigError(f"seed {args.seed} is not one of the cell's seeds {list(cell.seeds)}", path=args.params,
                          field=f"cells.{args.cell}.seeds")
    device = ctx.device()
    model, meta = load_trained(args.model, device=device)
    return CellRun(exp=exp, spec=cell.spec, root=ctx.root, device=device, model=model, meta=meta)
