"""The run context every verb shares: the params file, the profile, the dataset root, the device, the
torch threads and the worker processes — each flag declared once, with one default and one meaning.

A verb declares the flags it takes with :func:`add_run_arguments` and reads them through
:class:`RunContext`::

    def add_arguments(p):
        add_run_arguments(p, device=True, threads=True)

    def run(args):
        ctx = RunContext(args)
        exp = ctx.experiment        # params.yaml, validated once (smart.experiment)
        ctx.root, ctx.profile       # --root / --profile, else what the params file says
        device = ctx.device()       # --device auto|cpu|cuda[:N], checked; sets --threads
"""

from __future__ import annotations

import argparse
from functools import cached_property
from pathlib import Path
from typing import Any

from smart.errors import ConfigError, InputError

PARAMS_DEFAULT = "params.yaml"


def add_run_arguments(p: argparse.ArgumentParser, *, params: bool = True, profile: bool = True, root: bool = True,
                      device: bool = False, threads: bool = False, workers: bool = False) -> None:
    """Declare the shared flags a verb takes (each with the same default and help in every verb)."""
    if params:
        p.add_argument("--params", default=PARAMS_DEFAULT,
                       help="params file (default: params.yaml; under Snakemake, .smart/params.yaml)")
    if profile:
        p.add_argument("--profile", choices=("mini", "paper"), default=None,
                       help="mini | paper (default: the params file's `profile`, else mini)")
    if root:
        p.add_argument("--root", default=None,
                       help="dataset root ($DETECTRON2_DATASETS; default: the profile's data.<profile>_root in "
                            "the params file)")
    if device:
        p.add_argument("--device", default="auto", help="auto (CUDA when available) | cpu | cuda | cuda:N")
    if threads:
        p.add_argument("--threads", type=int, default=None,
                       help="torch intra-op threads (default: torch's; the DAG gives 1 per job)")
    if workers:
        p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")


class RunContext:
    """What a verb's flags resolve to (see the module docstring)."""

    def __init__(self, args: argparse.Namespace):
        self.args = args

    # ------------------------------------------------------------------ params
    @property
    def params_path(self) -> str:
        return getattr(self.args, "params", None) or PARAMS_DEFAULT

    @cached_property
    def experiment(self):
        """params file → :class:`smart.experiment.Experiment`, validated whole, under ``--profile``."""
        from smart.experiment import Experiment

        return Experiment.for_job(self.params_path, profile=getattr(self.args, "profile", None))

    def section(self, key: str) -> Any:
        """One validated section of the params file, for verbs that read only that section (``mini_world``,
        ``mini_clip``, …) and may run on a params file that holds only it."""
        from smart.config import load_params, section

        return section(load_params(self.params_path), key, source=self.params_path)

    @cached_property
    def _params_or_none(self) -> dict | None:
        """The raw params when a params file is present (verbs that run without one fall back to defaults);
        read once."""
        from smart.config import load_params

        if not Path(self.params_path).exists():
            if self.params_path != PARAMS_DEFAULT:
                raise ConfigError("params file not found", path=self.params_path)
            return None
        return load_params(self.params_path)

    @cached_property
    def user_datasets(self) -> dict:
        """The params file's ``user_datasets`` (name → :class:`smart.data.registry.UserDataset`), checked;
        empty without a params file."""
        from smart.data.registry import user_datasets

        return user_datasets((self._params_or_none or {}).get("user_datasets"), source=self.params_path)

    # ------------------------------------------------------------------ profile and root
    @cached_property
    def profile(self) -> str:
        if getattr(self.args, "profile", None):
            return self.args.profile
        return (self._params_or_none or {}).get("profile") or "mini"

    @cached_property
    def root(self) -> str | None:
        """``--root``, else the profile's root in the params file, else None (the dataset registry's default:
        ``data/mini`` or ``$DETECTRON2_DATASETS``)."""
        if getattr(self.args, "root", None):
            return self.args.root
        data = (self._params_or_none or {}).get("data") or {}
        return data.get("mini_root" if self.profile == "mini" else "paper_root")

    # ------------------------------------------------------------------ device and threads
    def device(self):
        """``--device`` as a torch.device (``auto``: CUDA when available); sets ``--threads`` first."""
        import torch

        self.set_threads()
        name = getattr(self.args, "device", "auto") or "auto"
        dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise InputError("CUDA was requested but is not available", field="--device")
        return dev

    def set_threads(self) -> None:
        threads = getattr(self.args, "threads", None)
        if threads:
            import torch

            torch.set_num_threads(threads)

    @property
    def workers(self) -> int:
        return max(1, int(getattr(self.args, "workers", 1) or 1))

