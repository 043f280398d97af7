"""``python -m smart benchmark``: inference speed and memory of one trained cell (paper Table 2).

Example::

    python -m smart benchmark --params params.yaml --cell smart_swinb --seed 0 \\
        --model results/train/smart_swinb/s0/model.pt --out results/benchmarks/smart_swinb.json

Times the mask generator (run on the fly) + SMART classification + panoptic and semantic
post-processing at batch size 1, after ``--warmup`` untimed images, over ``--images`` images of
``--dataset`` (defaults: params.yaml ``report.table2``); see :mod:`smart.eval.benchmark` for the
protocol and how memory is measured. Writes one JSON record: ``fps``, ``seconds``, ``images``,
``memory_gb``, ``memory_kind``, ``peak_rss_gb``, ``ms_generator``, ``ms_classifier``,
``ms_postprocess``, ``device``, ``threads``, ``cell``, ``seed``, ``dataset``, ``git_sha`` and more
provenance.
"""

from __future__ import annotations

import argparse

from smart.cli.cell_run import add_cell_arguments, open_cell_run

HELP = "time end-to-end inference (FPS, memory) of a trained cell at batch size 1 (Table 2)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_cell_arguments(p)
    p.add_argument("--out", required=True, help="output JSON file")
    p.add_argument("--dataset", default=None, help="benchmark dataset (default: params.yaml report.table2.dataset)")
    p.add_argument("--images", type=int, default=None, help="timed images (default: report.table2.images)")
    p.add_argument("--warmup", type=int, default=5, help="untimed warm-up images before timing")
    p.add_argument("--compile", action="store_true",
                   help="run the classifier through torch.compile (compiled during warm-up; not the DAG's default)")
    p.add_argument("--fp32", action="store_true", help="keep the classifier in float32 on CUDA (eval.bf16: false)")
    p.add_argument("--cpu-bf16", action="store_true",
                   help="bf16 autocast through the classifier on CPU too (eval.bf16 applies on CUDA only)")


def run(args) -> int:
    import logging

    import torch

    from smart.data.registry import Dataset
    from smart.errors import ConfigError
    from smart.eval.benchmark import benchmark_model
    from smart.eval.cell import eval_settings, generator_proposals
    from smart.model.inference import InferenceConfig
    from smart.provenance import write_result

    log = logging.getLogger("smart.eval.benchmark")
    run_ = open_cell_run(args)
    params, spec = run_.exp.params, run_.spec
    if spec.oracle != "none":
        raise ConfigError(f"the benchmark times a cell's own mask generator and classifier; {args.cell!r} is an "
                          f"oracle cell ({spec.oracle})", path=args.params, field=f"cells.{args.cell}.oracle")
    bench = (params.get("report") or {}).get("table2") or {}
    dataset = args.dataset or bench.get("dataset")
    if not dataset:
        raise ConfigError("no benchmark dataset: pass --dataset or set report.table2.dataset", path=args.params,
                          field="report.table2.dataset")
    images = args.images if args.images is not None else bench.get("images", 100)
    settings = eval_settings(run_.exp)
    profile, root, device, model, meta = run_.profile, run_.root, run_.device, run_.model, run_.meta
    gen_state = meta.get("generator_state") or {}
    gcfg = run_.generator_config(args)
    proposals = generator_proposals(gcfg, state=gen_state, device=device, source=args.model,
                                    test_time=run_.test_time()).for_dataset(dataset)
    ds = Dataset.open(dataset, profile=profile, root=root)
    icfg = InferenceConfig.from_settings(settings)
    log.info("benchmark %s seed %d on %s: %d warm-up + %d timed images, batch 1, device %s, %d threads",
             args.cell, args.seed, dataset, args.warmup, images, device, torch.get_num_threads())
    result = benchmark_model(model, ds, proposals=proposals, device=device, images=images, warmup=args.warmup,
                             inference=icfg, generator_amp=bool(gcfg.get("amp", True)),
                             bf16=settings.bf16 and not args.fp32,
                             cpu_bf16=args.cpu_bf16, compile=args.compile)
    record = {**result, "cell": args.cell, "seed": args.seed, "dataset": dataset, "profile": profile,
              "model": str(args.model), "iterations": meta.get("iteration"),
              "generator": {**{k: gcfg.get(k) for k in ("name", "backend", "pretrained")}, **proposals.settings},
              "generator_tuned": bool(gen_state), "inference": icfg.to_dict()}
    write_result(args.out, record, keys={"git_sha"})  # speeds are what Table 2 reports
    print(f"{args.cell}/s{args.seed} {dataset}: {result['fps']:.2f} FPS, {result['memory_gb']:.3f} GB "
          f"({result['memory_kind']}), generator {result['ms_generator']:.1f} ms + classifier "
          f"{result['ms_classifier']:.1f} ms + postprocess {result['ms_postprocess']:.1f} ms per image "
          f"({result['images']} images, {result['device']}, {result['threads']} threads)")
    return 0
