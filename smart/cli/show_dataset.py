"""``python -m smart show-dataset NAME --out grid.png``: a grid of images with their annotation overlay.

Each cell shows an image and, next to it, its panoptic segments (things outlined, each instance its
own shade of the class colour), its semantic map, or its referring target with the expression. A
legend names every class that appears in the grid (:mod:`smart.data.show`).
"""

from __future__ import annotations

import argparse

from smart.cli.context import RunContext, add_run_arguments

HELP = "draw a grid of a dataset's images with their panoptic/semantic/referring overlay and a legend"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="dataset name or alias (coco, coco_train, ade150, ade847, mapillary, pc59, pc459, "
                                "refcoco, refcoco+)")
    p.add_argument("--out", required=True, help="output PNG (or PDF) path")
    p.add_argument("-n", "--num", type=int, default=8, help="number of images")
    p.add_argument("--start", type=int, default=0, help="index of the first image")
    add_run_arguments(p)


def run(args) -> int:
    from smart.data.show import draw_grid

    ctx = RunContext(args)
    title = draw_grid(args.name, out=args.out, profile=ctx.profile, root=ctx.root, num=args.num, start=args.start,
                      user=ctx.user_datasets)
    print(f"wrote {args.out}: {title}")
    return 0
