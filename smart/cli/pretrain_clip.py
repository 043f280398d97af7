"""``python -m smart pretrain-clip``: pretrain the mini profile's CLIP on the mini caption corpus."""

from __future__ import annotations

import argparse

from smart.cli.context import RunContext, add_run_arguments

HELP = "pretrain the mini CLIP (open_clip architecture) on the mini world's caption corpus"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--captions", required=True, help="caption corpus directory (with manifest.json)")
    p.add_argument("--out", required=True, help="output checkpoint directory (open_clip local-dir format)")
    p.add_argument("--metrics", default=None, help="also write the summary (zero-shot accuracy) here")
    p.add_argument("--train-log", default=None, help="JSON-lines training curve")
    add_run_arguments(p, profile=False, root=False, threads=True)


def run(args) -> int:
    from smart.train.clip_pretrain import MiniClipConfig, train

    ctx = RunContext(args)
    cfg = MiniClipConfig.from_dict(ctx.section("mini_clip"), source=args.params)
    ctx.set_threads()
    summary = train(cfg, args.captions, args.out, metrics_path=args.train_log)
    if args.metrics:
        from smart.provenance import write_result

        write_result(args.metrics, summary)
    zs = summary["zero_shot"]
    print(f"mini CLIP: {summary['steps']} steps in {summary['train_seconds']:.0f} s; zero-shot things "
          f"{100 * zs['things']['accuracy']:.1f}% (novel combinations "
          f"{100 * zs['things']['accuracy_novel_combination']:.1f}%, novel attributes "
          f"{100 * zs['things']['accuracy_novel_attribute']:.1f}%), stuff {100 * zs['stuff']['accuracy']:.1f}% "
          f"(novel combinations {100 * zs['stuff']['accuracy_novel_combination']:.1f}%, novel attributes "
          f"{100 * zs['stuff']['accuracy_novel_attribute']:.1f}%)")
    return 0
