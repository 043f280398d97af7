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
* ``--workers`` — processes for the per-image conversions (default: CPU count, at most 8).
* ``--force`` — run again although ``<root>/.prepared/<dataset>.json`` says the dataset is done
  (complete outputs are still kept; delete them to regenerate).

``all`` prepares every dataset in the order coco, ade20k_150, pascal_ctx_59, pascal_ctx_459,
refcoco, refcoco+, ade20k_847, mapillary_vistas and stops at the first error.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from smart.errors import InputError

from . import ALL_ORDER, DATASETS
from .common import Context, read_stamp, stamp_path

HELP = "download (optional), convert and check a real benchmark dataset (COCO, ADE, PASCAL Context, ...)"

log = logging.getLogger("smart.prepare")


def _default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", choices=[*DATASETS, "all"], help="the dataset to prepare, or all")
    parser.add_argument("--root", default=None,
                        help="datasets root (default: $DETECTRON2_DATASETS, else ./datasets)")
    parser.add_argument("--download", action="store_true",
                        help="download and extract the public raw archives first")
    parser.add_argument("--raw-dir", default=None,
                        help="where archives are downloaded and RefCOCO raw data lives (default: <root>/raw)")
    parser.add_argument("--skip-count-check", action="store_true",
                        help="do not require the benchmark's validation image counts")
    parser.add_argument("--workers", type=int, default=_default_workers(),
                        help="worker processes for per-image conversions (default: %(default)s)")
    parser.add_argument("--force", action="store_true",
                        help="run even if the dataset's .prepared stamp exists")


def _step(name: str):
    if name == "coco":
        from .coco import prepare
        return prepare
    if name == "ade20k_150":
        from .ade20k import prepare
        return prepare
    if name == "ade20k_847":
        from .ade847 import prepare
        return prepare
    if name == "pascal_ctx_59":
        from .pascal_context import prepare_pc59
        return prepare_pc59
    if name == "pascal_ctx_459":
        from .pascal_context import prepare_pc459
        return prepare_pc459
    if name == "mapillary_vistas":
        from .mapillary import prepare
        return prepare
    if name in ("refcoco", "refcoco+"):
        from .refcoco import prepare
        return lambda ctx: prepare(ctx, name)
    raise InputError(f"unknown dataset {name!r}", field="dataset")


def make_context(args: argparse.Namespace) -> Context:
    root = Path(args.root if args.root else os.environ.get("DETECTRON2_DATASETS") or "datasets")
    raw = Path(args.raw_dir) if args.raw_dir else root / "raw"
    if args.workers < 1:
        raise InputError("must be >= 1", field="--workers")
    return Context(root=root, raw_dir=raw, download=bool(args.download),
                   skip_count_check=bool(args.skip_count_check), workers=int(args.workers),
                   force=bool(getattr(args, "force", False)))


def prepare_dataset(ctx: Context, name: str) -> bool:
    """Prepare one dataset; returns False if it was skipped because its stamp exists."""
    if not ctx.force and read_stamp(ctx.root, name) is not None:
        log.info("%s: already prepared (%s); use --force to run again", name, stamp_path(ctx.root, name))
        return False
    log.info("%s: preparing under %s", name, ctx.root)
    _step(name)(ctx)
    log.info("%s: done (%s)", name, stamp_path(ctx.root, name))
    return True


def run(args: argparse.Namespace) -> int:
    ctx = make_context(args)
    names = ALL_ORDER if args.dataset == "all" else (args.dataset,)
    for name in names:
        prepare_dataset(ctx, name)
    return 0
