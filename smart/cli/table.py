"""``python -m smart table NAME``: regenerate one paper table from the pipeline's results.

Examples::

    python -m smart table table1 --params params.yaml --out results/table1.csv
    python -m smart table table3a --params params.yaml --out results/table3a.csv

Which cells fill which rows is params.yaml ``report``; the paper's numbers come from
``smart/report/paper_numbers.yaml``. Every table is written as ``.csv`` + ``.md`` + ``.tex``.
"""

from __future__ import annotations

import argparse

from smart.cli.context import RunContext, add_run_arguments

HELP = "write a paper table (CSV + .md + .tex) from the pipeline's results, next to the paper's numbers"



def add_arguments(p: argparse.ArgumentParser) -> None:
    from smart.paths import TABLES, USER_TABLE

    p.add_argument("name", choices=TABLES + (USER_TABLE,), help=f"which table ({USER_TABLE}: your own benchmarks)")
    add_run_arguments(p, root=False)
    p.add_argument("--metrics-dir", default="results/metrics", help="directory of <cell>/s<seed>/<dataset>.json")
    p.add_argument("--train-dir", default="results/train", help="directory of <cell>/s<seed>/summary.json")
    p.add_argument("--benchmark", default=None, help="Table 2: the benchmark JSON (default results/benchmarks/<cell>.json)")
    p.add_argument("--out", required=True, help="output CSV path (.md and .tex are written next to it)")


def run(args) -> int:
    from smart.paths import benchmark_file
    from smart.report.tables import TABLE3, build_table1, build_table3, paper_numbers, write_table

    exp = RunContext(args).experiment
    params, profile = exp.params, exp.profile
    numbers = paper_numbers()
    decimals = None
    if args.name == "table_user":
        from smart.report.tables import build_user_table

        df = build_user_table(exp, metrics_dir=args.metrics_dir)
        caption = "The user's own benchmarks (params.yaml user_datasets): PQ / SQ / RQ and mIoU, mean ± std over seeds"
    elif args.name == "table1":
        df = build_table1(params=params, metrics_dir=args.metrics_dir, profile=profile)
        caption = numbers["table1"]["caption"]
    elif args.name in TABLE3:
        df = build_table3(args.name, params=params, metrics_dir=args.metrics_dir, profile=profile)
        key = TABLE3[args.name][0]
        caption = (f"{numbers['table3']['caption']} ({key.replace('_', ' ', 1)})" if key in numbers["table3"] else
                   "Readings of the paper the method spec chose between (not a table of the paper): SMA with a "
                   "residual query, and a soft Eq. 5 attention bias through which the classification loss reaches "
                   "the Distribution Adapter; ADE150 PQ / mIoU, with the mini world's class groups")
    elif args.name == "table2":
        from smart.report.table2 import DECIMALS, build_table2

        decimals = DECIMALS
        cell = params["report"]["table2"]["cell"]
        bench = args.benchmark or benchmark_file(cell)
        df = build_table2(params=params, benchmark_json=bench, train_dir=args.train_dir,
                          metrics_dir=args.metrics_dir, profile=profile)
        caption = numbers["table2"]["caption"]
    else:  # table4
        from smart.report.table4 import build_table4

        df = build_table4(params=params, metrics_dir=args.metrics_dir, profile=profile)
        caption = numbers["table4"]["caption"]
    write_table(df, args.out, caption=caption, decimals=decimals)
    n = int((df["source"] == "reproduced").sum()) if "source" in df else len(df)
    print(f"wrote {args.out} ({len(df)} rows, {n} reproduced)")
    return 0
