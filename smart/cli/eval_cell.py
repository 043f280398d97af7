"""``python -m smart eval-cell``: score one seed of a cell on its benchmarks.

Example::

    python -m smart eval-cell --params params.yaml --cell smart_swinb --seed 0 \\
        --model results/train/smart_swinb/s0/model.pt --proposals-root data/proposals/mini-swinb \\
        --datasets coco ade150 --out-dir results/metrics/smart_swinb/s0 --detail-dir results/eval/smart_swinb/s0

Writes ``<out-dir>/<dataset>.json`` (flat numbers in percent: PQ, SQ, RQ, PQ_th, …, mIoU, fwIoU, mACC,
pACC, and in the mini world PQ / mIoU per class group — ``PQ_seen``, ``PQ_novel_comb``, ``PQ_novel_attr``,
``mIoU_seen``, … — the files ``dvc metrics diff`` compares) and ``<detail-dir>/<dataset>.json`` (per-class
results, definitions, thresholds, provenance). Proposals are read from ``<proposals-root>/<dataset>``
(caches of ``cache-proposals``); a cell that tuned its mask generator runs it on the fly instead, and
an oracle-generator cell uses the ground-truth masks.
"""

from __future__ import annotations

import argparse

from smart.cli.cell_run import add_cell_arguments, open_cell_run

HELP = "evaluate one seed of a trained cell (PQ / mIoU) on its benchmarks"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_cell_arguments(p)
    p.add_argument("--datasets", nargs="+", default=None, help="benchmarks (default: the cell's `datasets`)")
    p.add_argument("--proposals-root", default=None,
                   help="directory holding one proposal cache per dataset (default: run the generator on the fly)")
    p.add_argument("--out-dir", required=True, help="directory of the flat metrics files (<dataset>.json)")
    p.add_argument("--detail-dir", required=True, help="directory of the detailed result files (<dataset>.json)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N images (smoke runs)")


def run(args) -> int:
    import logging
    from pathlib import Path

    from smart.data.mini.groups import groups_by_name
    from smart.data.registry import Dataset
    from smart.eval.cell import (
        eval_settings,
        evaluate_model,
        generator_proposals,
        result_record,
        store_proposals,
    )
    from smart.io import write_json
    from smart.provenance import write_result

    log = logging.getLogger("smart.eval.cell")
    run_ = open_cell_run(args)
    profile, spec, root, device, model, meta = (run_.profile, run_.spec, run_.root, run_.device,
                                                        run_.model, run_.meta)
    settings = eval_settings(run_.exp, oracle=spec.oracle)
    tcfg = meta.get("train_config") or {}
    pad = float(tcfg.get("proposal_pad_logit", -20.0))
    gen_state = meta.get("generator_state") or {}
    datasets = args.datasets or list(spec.datasets)
    builtin = [d for d in datasets if d not in run_.exp.user_datasets]
    # the mini world's benchmarks: PQ / mIoU per class group too (None on real datasets)
    groups = groups_by_name(root) if builtin else None
    on_the_fly = spec.oracle != "generator" and (gen_state or args.proposals_root is None)
    if on_the_fly:  # built once, used for every benchmark
        fly = generator_proposals(run_.generator_config(args), state=gen_state, device=device, source=args.model,
                                  test_time=run_.test_time())
    for name in datasets:
        ds = Dataset.open(name, profile=profile, root=root, user=run_.exp.user_datasets)
        if spec.oracle == "generator":
            props, how = None, "oracle generator (ground-truth masks)"
        elif on_the_fly:
            props = fly.for_dataset(name)
            how = (f"generator on the fly ({fly.describe()})"
                   + (" (tuned weights from model.pt)" if gen_state else ""))
        else:
            path = Path(args.proposals_root) / name
            props, how = store_proposals(path, pad_logit=pad), f"cache {path}"
        log.info("eval %s seed %d on %s (%d images): proposals from %s, oracle %s", args.cell, args.seed, name,
                 len(ds), how, spec.oracle)
        result = evaluate_model(model, ds, settings=settings, proposals=props, device=device, pad_logit=pad,
                                limit=args.limit, desc=f"eval {args.cell}/s{args.seed}/{name}")
        provenance = {"cell": args.cell, "seed": args.seed, "dataset": name, "profile": profile,
                      "model": str(args.model), "model_cell": meta.get("cell"), "iterations": meta.get("iteration"),
                      "proposals": how, "settings": settings.to_dict(), "limit": args.limit,
                      "device": str(device)}
        flat, detail = result_record(result, provenance=provenance, groups=groups if name in builtin else None)
        write_result(Path(args.detail_dir) / f"{name}.json", detail)
        write_json(Path(args.out_dir) / f"{name}.json", flat)
        shown = ", ".join(f"{k} {flat[k]:.1f}" for k in ("PQ", "mIoU") if flat.get(k) is not None)
        print(f"{args.cell}/s{args.seed} {name}: {shown} ({result['num_images']} images, {result['seconds']:.1f} s)")
    return 0
