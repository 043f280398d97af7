"""``python -m smart eval-refer``: Table 4 ("CLIP knowledge preservation") for one seed of a cell.

Zero-shot referring image segmentation (oIoU) with CLIP before and after SMART tuning
(:mod:`smart.eval.refer`). Example::

    python -m smart eval-refer --params params.yaml --cell smart --seed 0 \\
        --model results/train/smart/s0/model.pt --datasets refcoco refcoco+ \\
        --out results/metrics/refer/smart/s0.json --detail results/eval/refer/smart/s0.json

Reads ``--params`` (the cell, its seeds, the profile's data root and, when ``model.pt`` does not
record it, the cell's mask generator), ``--model`` and the generator weights it names (e.g.
``data/models/mini-swinb``), and ``<root>/refer/{refcoco,refcoco+}/val.json`` with its images.

Writes ``--out``: numbers only (percent), ``{"refcoco": {"oIoU_before", "oIoU_after", "mIoU_before",
"mIoU_after"}, "refcoco+": {…}}``, in the mini world also ``oIoU_<group>_<before|after>`` per group of the
referred class (``seen``, ``novel_comb``, ``novel_attr``; the file ``dvc metrics diff`` compares), and ``--detail``:
``{"refcoco": {"before": {…}, "after": {…}}, …, "provenance": {…}}`` with counts, timings and provenance.

The proposals come from the cell's frozen mask generator run on the fly (the pretrained generator
weights, also for a cell that tuned its generator), identical for "before" and "after".
"""

from __future__ import annotations

import argparse

import smart.paths as P
from smart.cli.cell_run import add_cell_arguments, open_cell_run

HELP = "Table 4: zero-shot referring segmentation (oIoU) with CLIP before / after SMART tuning"

DEFAULT_DATASETS = P.REFER_DATASETS


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_cell_arguments(p)
    p.add_argument("--datasets", nargs="+", default=list(DEFAULT_DATASETS),
                   help="referring benchmarks (default: refcoco refcoco+)")
    p.add_argument("--out", required=True, help="metrics file (numbers only, percent)")
    p.add_argument("--detail", required=True, help="detail file (counts, timings, provenance)")
    p.add_argument("--limit", type=int, default=None, help="score only the first N refs (smoke runs)")


def _round(v):
    return None if v is None else round(float(v), 4)


def run(args) -> int:
    import logging
    import time

    from smart.data.mini.groups import GROUPS, SHORT, groups_by_index
    from smart.data.registry import Dataset
    from smart.eval.cell import generator_proposals
    from smart.eval.refer import evaluate_referring, untuned_model
    from smart.io import write_json
    from smart.provenance import write_result

    log = logging.getLogger("smart.eval.refer")
    t_start = time.perf_counter()
    run_ = open_cell_run(args)
    profile, root, device, after, meta = run_.profile, run_.root, run_.device, run_.model, run_.meta
    before = untuned_model(meta, device=device)
    gcfg = run_.generator_config(args)
    props = generator_proposals(gcfg, state=None, device=device, source=args.model, test_time=run_.test_time())
    how = f"frozen generator {gcfg.get('name')!r} on the fly ({gcfg.get('pretrained')})"

    groups = groups_by_index(root)  # mini world: universe index -> class group; None on real data
    metrics: dict[str, dict] = {}
    detail: dict[str, dict] = {}
    for name in args.datasets:
        ds = Dataset.open(name, profile=profile, root=root)
        props.for_dataset(name)
        log.info("eval-refer %s seed %d on %s (%d refs): proposals from %s", args.cell, args.seed, name, len(ds), how)
        res = evaluate_referring({"before": before, "after": after}, ds, props, device=device, limit=args.limit,
                                 desc=f"refer {args.cell}/s{args.seed}/{name}", groups=groups)
        metrics[name] = {f"{k}_{when}": _round(res[when][k]) for k in ("oIoU", "mIoU") for when in ("before", "after")}
        if groups is not None:  # the mini world: oIoU per group of the referred class (oIoU_novel_attr_after, ...)
            metrics[name].update({f"oIoU_{SHORT[g]}_{when}": _round(res[when]["groups"].get(g, {}).get("oIoU"))
                                  for g in GROUPS for when in ("before", "after")})
        detail[name] = {"dataset": ds.name, "num_refs_total": len(ds),
                        **{when: {k: (_round(v) if k in ("oIoU", "mIoU") else v) for k, v in r.items()}
                           for when, r in res.items()}}
        print(f"{args.cell}/s{args.seed} {name}: oIoU {res['before']['oIoU']:.1f} -> {res['after']['oIoU']:.1f} "
              f"(mIoU {res['before']['mIoU']:.1f} -> {res['after']['mIoU']:.1f}; "
              f"{res['after']['num_expressions']} expressions, {res['after']['num_images']} images, "
              f"{res['after']['seconds']:.1f} s)")
    detail["provenance"] = {
        "table": "Table 4 (CLIP knowledge preservation)", "cell": args.cell, "seed": args.seed, "profile": profile,
        "root": str(root), "model": str(args.model), "model_cell": meta.get("cell"), "iterations": meta.get("iteration"),
        "before": "model config built under the model's seed, no trained state (pretrained CLIP)",
        "after": "trained state of --model", "proposals": how, "generator_config": gcfg,
        "selection": "argmax cosine(CLIP mask-token embedding without SMA, raw-expression text embedding); "
                     "proposals covering no CLIP patch skipped",
        "binarisation": "bilinear to image size, sigmoid >= 0.5", "limit": args.limit, "device": str(device),
        "seconds": round(time.perf_counter() - t_start, 2)}
    write_result(args.detail, detail)
    write_json(args.out, metrics)
    return 0
