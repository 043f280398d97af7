"""``python -m smart train``: train one cell of the experiment grid (single process or under torchrun).

Examples::

    python -m smart train --params params.yaml --cell smart --seed 0 --profile mini --root data/mini \\
        --out results/train/smart/s0 [--proposals data/proposals/mini-swinb/coco_train] [--resume auto]
    torchrun --nproc_per_node 4 -m smart train --params params.yaml --cell smart_swinb --profile paper \\
        --root datasets --out results/train/smart_swinb/s0

The model config is ``model.<profile>`` + ``cells.<cell>.model``; the schedule is
``train_defaults.<profile>`` + ``cells.<cell>.train`` (see ``smart.config.train_config``).
"""

from __future__ import annotations

import argparse

from smart.cli.context import RunContext, add_run_arguments

HELP = "train one SMART cell (AdamW, LSJ, exact resume from a scratch last.pt, DDP under torchrun)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cell", required=True, help="cell of params.yaml `cells:`")
    p.add_argument("--out", required=True, help="output directory (model.pt, metrics.jsonl, summary.json, config.json)")
    p.add_argument("--proposals", default=None,
                   help="proposal store directory (default: run the cell's frozen generator on the fly)")
    p.add_argument("--resume", default="auto",
                   help="auto (continue from the scratch last.pt if present) | never | PATH of a checkpoint")
    p.add_argument("--scratch", default=None, help="scratch directory of last.pt (default: OUT/../.scratch/NAME)")
    p.add_argument("--dataset", default="coco_train", help="training split (registry name)")
    p.add_argument("--seed", type=int, default=None,
                   help="one of the cell's seeds (default: the resolved train config's `seed`)")
    add_run_arguments(p, device=True, threads=True)


def run(args) -> int:
    from smart.train.loop import train

    ctx = RunContext(args)
    cell = ctx.experiment.cell(args.cell)
    mcfg, tcfg = cell.model, cell.train_for(cell.seeds[0] if args.seed is None else args.seed)
    root, profile = ctx.root, ctx.experiment.profile
    ctx.set_threads()
    summary = train(model_cfg=mcfg, train_cfg=tcfg, root=root, out=args.out, profile=profile,
                    proposals=args.proposals, resume=args.resume, scratch=args.scratch, device=args.device,
                    dataset=args.dataset, cell=args.cell)
    if summary:
        print(f"trained {args.cell}: {summary['iterations']} iterations, {summary['it_per_s']:.2f} it/s, "
              f"final loss {summary.get('final_loss', float('nan')):.4g} -> {args.out}")
    return 0
