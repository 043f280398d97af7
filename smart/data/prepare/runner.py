"""Run the preparation of one real benchmark (``python -m smart prepare``; flags in :mod:`smart.cli.prepare`)."""

from __future__ import annotations

import logging

from smart.errors import DatasetError, InputError

from .common import CONVERTERS, Context, converter_version, read_stamp, stamp_path

log = logging.getLogger("smart.prepare")


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


def prepare_dataset(ctx: Context, name: str) -> bool:
    """Prepare one dataset; returns False if it was skipped because its stamp exists."""
    stamp = read_stamp(ctx.root, name)
    if stamp is not None and stamp.get("converter", 1) < converter_version(name):
        _version, what, remove = CONVERTERS[name]
        raise DatasetError(f"{name} was prepared by converter version {stamp.get('converter', 1)}; version "
                           f"{converter_version(name)} writes other output ({what}). Remove {remove} under "
                           f"{ctx.root} and this stamp, then run `python -m smart prepare {name}` again",
                           path=stamp_path(ctx.root, name), field="converter")
    if not ctx.force and stamp is not None:
        log.info("%s: already prepared (%s); use --force to run again", name, stamp_path(ctx.root, name))
        return False
    log.info("%s: preparing under %s", name, ctx.root)
    _step(name)(ctx)
    log.info("%s: done (%s)", name, stamp_path(ctx.root, name))
    return True
