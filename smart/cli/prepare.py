"""``python -m smart prepare DATASET``: download (optional), convert and check a real benchmark.

Usage::

    python -m smart prepare {coco,ade20k_150,ade20k_847,pascal_ctx_59,pascal_ctx_459,
                             mapillary_vistas,refcoco,refcoco+,all}
        [--root DIR] [--download] [--raw-dir DIR] [--skip-count-check] [--workers N] [--force]

* ``--root`` — the datasets root (default ``$DETECTRON2_DATASETS``, else ``./datasets``); layout as in
  ``docs/datasets.md`` §1, with ADE20K-847 under ``<root>/ADE20K_2021_17_01``.
* ``--download`` — fetch the public archives (resumable, checksummed; see
  :mod:`smart.data.prepare.download`) into ``--raw-dir`` (default ``<root>/raw``) and extract them.
  Mapillary Vistas and ADE20K-847 need a registration: the command says where to put the zip.
* ``--skip-count-check`` — accept validation sets whose size differs from the benchmark's.
* ``--workers`` — processes for the per-image conversions (default 1; the DAG gives 8).
* ``--force`` — run again although ``<root>/.prepared/<dataset>.json`` says the dataset is done
  (complete outputs are still kept; delete them to regenerate).

``all`` prepares every dataset in the order coco, ade20k_150, pascal_ctx_59, pascal_ctx_459,
refcoco, refcoco+, ade20k_847, mapillary_vistas and stops at the first error.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from smart.cli.context import RunContext, add_run_arguments
from smart.errors import InputError

HELP = "download (optional), convert and check a real benchmark dataset (COCO, ADE, PASCAL Context, ...)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from smart.data.prepare import DATASETS

    parser.add_argument("dataset", choices=[*DATASETS, "all"], help="the dataset to prepare, or all")
    parser.add_argument("--root", default=None,
                        help="datasets root (default: $DETECTRON2_DATASETS, else ./datasets)")
    parser.add_argument("--download", action="store_true",
                        help="download and extract the public raw archives first")
    parser.add_argument("--raw-dir", default=None,
                        help="where archives are downloaded and RefCOCO raw data lives (default: <root>/raw)")
    parser.add_argument("--skip-count-check", action="store_true",
                        help="do not require the benchmark's validation image counts")
    parser.add_argument("--force", action="store_true",
                        help="run even if the dataset's .prepared stamp exists")
    add_run_arguments(parser, params=False, profile=False, root=False, workers=True)


def make_context(args: argparse.Namespace):
    from smart.data.prepare.common import Context

    root = Path(args.root if args.root else os.environ.get("DETECTRON2_DATASETS") or "datasets")
    raw = Path(args.raw_dir) if args.raw_dir else root / "raw"
    if args.workers < 1:
        raise InputError("must be >= 1", field="--workers")
    return Context(root=root, raw_dir=raw, download=bool(args.download),
                   skip_count_check=bool(args.skip_count_check), workers=RunContext(args).workers,
                   force=bool(getattr(args, "force", False)))


def run(args: argparse.Namespace) -> int:
    from smart.data.prepare import ALL_ORDER
    from smart.data.prepare.runner import prepare_dataset

    ctx = make_context(args)
    for name in ALL_ORDER if args.dataset == "all" else (args.dataset,):
        prepare_dataset(ctx, name)
    return 0
