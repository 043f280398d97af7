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

HELP = "train one SMART cell (AdamW, LSJ, exact resume from a scratch last.pt, DDP under torchrun)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="params file (model, train_defaults, cells)")
    p.add_argument("--cell", required=True, help="cell of params.yaml `cells:`")
    p.add_argument("--profile", choices=("mini", "paper"), default=None,
                   help="profile (default: params.yaml `profile`)")
    p.add_argument("--root", default=None,
                   help="dataset root ($DETECTRON2_DATASETS; default: params.yaml data.mini_root / data.paper_root)")
    p.add_argument("--out", required=True, help="output directory (model.pt, metrics.jsonl, summary.json, config.json)")
    p.add_argument("--proposals", default=None,
                   help="proposal store directory (default: run the cell's frozen generator on the fly)")
    p.add_argument("--resume", default="auto",
                   help="auto (continue from the scratch last.pt if present) | never | PATH of a checkpoint")
    p.add_argument("--scratch", default=None, help="scratch directory of last.pt (default: OUT/../.scratch/NAME)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--dataset", default="coco_train", help="training split (registry name)")
    p.add_argument("--seed", type=int, default=None,
                   help="one of the cell's seeds (default: the resolved train config's `seed`)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU)")


def run(args) -> int:
    import torch

    from smart.config import load_params, model_config, train_config
    from smart.train.loop import train

    params = load_params(args.params)
    profile = args.profile or params.get("profile")
    mcfg = model_config(params, args.cell, profile=profile, source=args.params)
    tcfg = train_config(params, args.cell, profile=profile, seed=args.seed, source=args.params)
    root = args.root
    if root is None:
        data = params.get("data") or {}
        root = data.get("mini_root" if profile == "mini" else "paper_root")
        if root is None:
            from smart.errors import ConfigError

            raise ConfigError("no dataset root: pass --root", path=args.params, field=f"data.{profile}_root")
    if args.threads:
        torch.set_num_threads(args.threads)
    summary = train(model_cfg=mcfg, train_cfg=tcfg, root=root, out=args.out, profile=profile,
                    proposals=args.proposals, resume=args.resume, scratch=args.scratch, device=args.device,
                    dataset=args.dataset, cell=args.cell)
    if summary:
        print(f"trained {args.cell}: {summary['iterations']} iterations, {summary['it_per_s']:.2f} it/s, "
              f"final loss {summary.get('final_loss', float('nan')):.4g} -> {args.out}")
    return 0
