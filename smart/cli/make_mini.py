"""``python -m smart make-mini``: write one benchmark of the mini open-vocabulary world."""

from __future__ import annotations

import argparse

from smart.cli.context import RunContext, add_run_arguments

HELP = "generate a benchmark of the mini open-vocabulary world (COCO/ADE/Mapillary/PASCAL-like, captions, referring)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from smart.data.mini.generate import BENCHMARKS

    p.add_argument("benchmark", choices=list(BENCHMARKS) + ["all"], help="which part of the world to write")
    p.add_argument("--out", required=True, help="output root (the mini $DETECTRON2_DATASETS)")
    add_run_arguments(p, profile=False, root=False, workers=True)


def run(args) -> int:
    from smart.data.mini.generate import BENCHMARKS, generate

    ctx = RunContext(args)
    cfg = ctx.section("mini_world")  # the only section it reads (a params file may hold only it)
    todo = BENCHMARKS if args.benchmark == "all" else (args.benchmark,)
    for b in todo:
        generate(b, args.out, cfg, workers=ctx.workers)
    return 0
