"""``python -m smart make-mini``: write one benchmark of the mini open-vocabulary world."""

from __future__ import annotations

import argparse

HELP = "generate a benchmark of the mini open-vocabulary world (COCO/ADE/Mapillary/PASCAL-like, captions, referring)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from smart.data.mini.generate import BENCHMARKS

    p.add_argument("benchmark", choices=list(BENCHMARKS) + ["all"], help="which part of the world to write")
    p.add_argument("--params", default="params.yaml", help="params file holding the mini_world section")
    p.add_argument("--out", required=True, help="output root (the mini $DETECTRON2_DATASETS)")
    p.add_argument("--workers", type=int, default=2, help="drawing processes")


def run(args) -> int:
    from smart.config import load_params, section
    from smart.data.mini.generate import BENCHMARKS, generate

    cfg = section(load_params(args.params), "mini_world", source=args.params)
    todo = BENCHMARKS if args.benchmark == "all" else (args.benchmark,)
    for b in todo:
        generate(b, args.out, cfg, workers=args.workers)
    return 0
