"""``python -m smart figure NAME``: draw a paper figure (PDF + PNG) from the pipeline's metric files.

Examples::

    python -m smart figure fig2 --params params.yaml --metrics-dir results/metrics --out results/figures/fig2.pdf
    python -m smart figure fig6 --params params.yaml --metrics-dir results/metrics \\
        --out results/figures/fig6.pdf --plots-dir results/plots

Fig. 2 (oracle analysis; frozen pretrained vs. newly trained mask generator) reads the ADE150 metrics
of the cells of params.yaml ``report.fig2``; Fig. 6 (training length and data size) those of
``report.fig6`` and also writes the DVC plot data ``<plots-dir>/fig6_iters.csv`` and
``<plots-dir>/fig6_data.csv``. The PNG is written next to the PDF (same stem).
"""

from __future__ import annotations

import argparse

from smart.cli.context import RunContext, add_run_arguments

HELP = "draw a paper figure (fig2, fig6) as PDF + PNG from the metric files"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from smart.paths import FIGURES

    p.add_argument("name", choices=FIGURES, help="which figure")
    p.add_argument("--metrics-dir", default="results/metrics",
                   help="directory of <cell>/s<seed>/<dataset>.json metrics")
    p.add_argument("--out", default=None, help="output PDF (default: results/figures/NAME.pdf); PNG alongside")
    p.add_argument("--plots-dir", default="results/plots", help="fig6: directory of the DVC plot CSVs")
    add_run_arguments(p, root=False)


def run(args) -> int:
    from smart.paths import figure_files
    from smart.report.figures import make_fig2, make_fig6

    exp = RunContext(args).experiment
    params, profile = exp.params, exp.profile
    out = args.out or figure_files(args.name)[0]
    if args.name == "fig2":
        written = make_fig2(params, args.metrics_dir, out, profile=profile, source=args.params)
    else:
        written = make_fig6(params, args.metrics_dir, out, args.plots_dir, profile=profile, source=args.params)
    print("wrote " + ", ".join(str(p) for p in written))
    return 0
