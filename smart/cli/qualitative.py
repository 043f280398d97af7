"""``python -m smart qualitative``: the qualitative figures (paper Figs. 4-5) of every benchmark.

Example::

    python -m smart qualitative --params params.yaml --out-dir results/figures/qualitative

Reads ``report.qualitative`` (``baseline`` and ``smart`` cells, ``images`` per benchmark); the benchmarks
are the ``smart`` cell's ``datasets``. Writes ``<out-dir>/<dataset>.png`` (see
:mod:`smart.report.qualitative`).
"""

from __future__ import annotations

import argparse

from smart.cli.context import add_run_arguments

HELP = "qualitative figures: input / ground truth / frozen baseline / SMART on each benchmark"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out-dir", required=True, help="folder of the figures (<dataset>.png)")
    p.add_argument("--datasets", nargs="+", default=None, help="benchmarks (default: the smart cell's datasets)")
    add_run_arguments(p, device=True, threads=True)


def run(args) -> int:
    from pathlib import Path

    from smart import paths as P
    from smart.cli.context import RunContext
    from smart.data.registry import open_vocabulary
    from smart.errors import ConfigError
    from smart.predict import PredictSettings, load_predictor
    from smart.report.qualitative import make_qualitative

    ctx = RunContext(args)
    exp = ctx.experiment
    q = exp.report.get("qualitative")
    if not q:
        raise ConfigError("no report.qualitative entry", path=ctx.params_path, field="report.qualitative")
    device = ctx.device()
    ev = exp.eval
    columns = {"frozen baseline": exp.cell(q["baseline"]), "SMART": exp.cell(q["smart"])}
    datasets = args.datasets or list(columns["SMART"].datasets)
    for name in datasets:
        vocab = open_vocabulary(name, profile=exp.profile, root=ctx.root, user=exp.user_datasets)
        models = {}
        for title, cell in columns.items():
            settings = PredictSettings(task="panoptic", object_mask_threshold=ev["object_mask_threshold"],
                                       overlap_threshold=ev["overlap_threshold"], mask_threshold=ev["mask_threshold"],
                                       batch_size=1, bf16=ev["bf16"])
            ckpt = P.train_outputs(cell.model_cell, cell.seeds[0])["model"]
            models[f"{title} ({cell.name})"], _ = load_predictor(ckpt, exp=exp, vocab=vocab, settings=settings,
                                                                  device=device, dataset=name,
                                                                  expect_cell=cell.model_cell)
        out = make_qualitative(exp=exp, dataset=name, models=models, out=Path(args.out_dir) / f"{name}.png",
                               images=q["images"], root=ctx.root)
        print(f"wrote {out}")
    return 0
