"""``python -m smart pretrain-generator NAME``: pretrain a mini Mask2Former mask generator.

Example::

    python -m smart pretrain-generator mini-swinb --params params.yaml --root data/mini \\
        --out data/models/mini-swinb --metrics results/pretrain/mini-swinb.json

Reads ``mini_generators.<NAME>`` from the params file, trains on the COCO-like train split and writes
a ``save_pretrained`` directory to ``--out`` (loadable with ``Mask2FormerGenerator.from_pretrained``),
the training curve (``--train-log``, default ``<out>/train_log.jsonl``) and the summary JSON
(``--metrics``: mask recall on COCO-like and ADE-like val, native closed-set PQ, steps/s, parameters).
An interrupted run continues from its scratch checkpoint (``.<out>.scratch/last.pt``).
"""

from __future__ import annotations

import argparse
import math

from smart.cli.context import RunContext, add_run_arguments

HELP = "pretrain a mini Mask2Former mask generator (mini-r50 | mini-swinb) on the COCO-like train split"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="generator name: a key of params mini_generators (and of TINY_CONFIGS)")
    p.add_argument("--out", required=True, help="output checkpoint directory (save_pretrained format)")
    p.add_argument("--metrics", default=None, help="summary JSON (recall, PQ, steps/s, parameters)")
    p.add_argument("--train-log", default=None, help="JSON-lines training curve (default <out>/train_log.jsonl)")
    p.add_argument("--checkpoint-every", type=int, default=100,
                   help="steps between scratch checkpoints for resuming (0 = none)")
    p.add_argument("--no-resume", action="store_true", help="ignore an existing scratch checkpoint")
    add_run_arguments(p, profile=False, threads=True)


def _f(v, scale: float = 1.0) -> str:
    if v is None or math.isnan(v):
        return "n/a"
    return f"{v:.3f}" if scale == 1.0 else f"{scale * v:.1f}"


def run(args) -> int:
    from smart.config import mini_generator_params
    from smart.provenance import write_result
    from smart.train.generator_pretrain import GeneratorPretrainConfig, train_generator

    ctx = RunContext(args)
    cfg = GeneratorPretrainConfig.from_dict(mini_generator_params(ctx.experiment.params, args.name,
                                                                  source=args.params),
                                            name=args.name, source=args.params)
    ctx.set_threads()
    summary = train_generator(args.name, cfg, root=ctx.root or "data/mini", out_dir=args.out, curve_path=args.train_log,
                              checkpoint_every=args.checkpoint_every, resume=not args.no_resume)
    if args.metrics:
        write_result(args.metrics, summary)
    parts = [(f"{args.name}: {summary['parameters'] / 1e6:.2f}M parameters, {summary['steps']} steps in "
              f"{summary['train_seconds']:.0f} s ({summary['steps_per_s']:.2f} steps/s)")]
    for ds, r in summary.get("recall", {}).items():
        parts.append(f"{ds} recall@0.5 things {_f(r['things']['recall_any'])} (objectness "
                     f"{_f(r['things']['recall_objectness'])}), stuff {_f(r['stuff']['recall_any'])} (objectness "
                     f"{_f(r['stuff']['recall_objectness'])})")
    for key, label in (("closed_set_pq", "closed-set PQ (0.8/0.8)"), ("closed_set_pq_thr0", "PQ (0.0/0.8)")):
        for ds, r in summary.get(key, {}).items():
            parts.append(f"{ds} {label} {_f(r['All']['pq'], 100)} (things {_f(r['Things']['pq'], 100)}, "
                         f"stuff {_f(r['Stuff']['pq'], 100)})")
    print("; ".join(parts))
    return 0
