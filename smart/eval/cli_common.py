"""Shared setup of the verbs that run a trained cell (``eval-cell``, ``eval-refer``, ``benchmark``).

Each of them loads params, checks that the seed is one of the cell's, picks the dataset root, the
torch threads and the device, loads ``model.pt`` and finds the mask generator the cell was trained
with. :func:`add_cell_arguments` declares the common flags and :func:`open_cell_run` does the rest.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any


def add_cell_arguments(p: argparse.ArgumentParser, *, params_help: str) -> None:
    """``--params --cell --seed --model --profile --root --device --threads``."""
    p.add_argument("--params", default="params.yaml", help=params_help)
    p.add_argument("--cell", required=True, help="cell of params.yaml `cells:`")
    p.add_argument("--seed", type=int, required=True, help="which of the cell's seeds")
    p.add_argument("--model", required=True, help="model.pt written by `python -m smart train`")
    p.add_argument("--profile", choices=("mini", "paper"), default=None, help="default: params.yaml `profile`")
    p.add_argument("--root", default=None, help="dataset root (default: params.yaml data.<profile>_root)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU)")


@dataclass
class CellRun:
    """What a verb needs to run one seed of a trained cell."""

    params: dict
    profile: str
    spec: Any  # smart.config.CellSpec
    root: str
    device: Any  # torch.device
    model: Any  # SmartModel in eval mode
    meta: dict  # model.pt metadata (load_trained)

    def test_time(self, args):
        """The profile's test-time generator settings (``proposals.<profile>``) as a
        :class:`smart.data.proposals.ProposalCacheConfig`."""
        from smart.config import proposals_params
        from smart.data.proposals import ProposalCacheConfig

        return ProposalCacheConfig.from_dict(proposals_params(self.params, profile=self.profile, source=args.params),
                                             source=args.params, key=f"proposals.{self.profile}")

    def generator_config(self, args) -> dict:
        """The mask generator the model was trained with: the one recorded in ``model.pt`` (on-the-fly
        training), else the cell's generator as params.yaml defines it (training from a cache)."""
        from smart.config import train_config
        from smart.errors import InputError

        gcfg = self.meta.get("generator_config")
        if not gcfg:
            gcfg = train_config(self.params, self.spec.model_cell, profile=self.profile, seed=args.seed,
                                source=args.params).generator_config
        if not gcfg:
            raise InputError("no mask generator for this cell", path=args.model, field="generator_config")
        return gcfg


def open_cell_run(args) -> CellRun:
    """Validate the cell and seed, set threads and device, and load the trained model."""
    import torch

    from smart.config import cell_spec, load_params
    from smart.errors import ConfigError, InputError
    from smart.train.checkpoint import load_trained

    params = load_params(args.params)
    profile = args.profile or params.get("profile")
    spec = cell_spec(params, args.cell, source=args.params)
    if args.seed not in spec.seeds:
        raise ConfigError(f"seed {args.seed} is not one of the cell's seeds {list(spec.seeds)}", path=args.params,
                          field=f"cells.{args.cell}.seeds")
    root = args.root or (params.get("data") or {}).get("mini_root" if profile == "mini" else "paper_root")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("CUDA was requested but is not available", field="--device")
    model, meta = load_trained(args.model, device=device)
    return CellRun(params=params, profile=profile, spec=spec, root=root, device=device, model=model, meta=meta)
