"""Run the preparation of one real benchmark (``python -m smart prepare``; flags in :mod:`smart.cli.prepare`)."""

from __future__ import annotations

import logging

from smart.errors import InputError

from .common import Context, read_stamp, stamp_path

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
    if not ctx.force and read_stamp(ctx.root, name) is not None:
        log.info("%s: already prepared (%s); use --force to run again", name, stamp_path(ctx.root, name))
        return False
    log.info("%s: preparing under %s", name, ctx.root)
    _step(name)(ctx)
    log.info("%s: done (%s)", name, stamp_path(ctx.root, name))
    return True
