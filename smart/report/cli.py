"""``python -m smart table NAME``: regenerate one paper table from the pipeline's metrics."""

from __future__ import annotations

import argparse

HELP = "write a paper table (CSV + .md + .tex) from the metric files, next to the paper's numbers"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", choices=["table1"], help="which table")
    p.add_argument("--metrics-dir", default="results/metrics", help="directory of <cell>/<dataset>.json metrics")
    p.add_argument("--cell", action="append", default=[], metavar="CELL=METHOD",
                   help="a reproduced cell and the paper row it reproduces (repeatable)")
    p.add_argument("--profile", default="mini", choices=["mini", "paper"])
    p.add_argument("--out", required=True, help="output CSV path")


def run(args) -> int:
    from smart.errors import ConfigError
    from smart.report.tables import build_table1, paper_numbers, write_table

    cells = {}
    for item in args.cell:
        cell, sep, method = item.partition("=")
        if not sep:
            raise ConfigError(f"expected CELL=METHOD, got {item!r}", field="--cell")
        cells[cell] = method
    df = build_table1(metrics_dir=args.metrics_dir, cells=cells, profile=args.profile)
    write_table(df, args.out, caption=paper_numbers()["table1"]["caption"])
    print(f"wrote {args.out} ({len(df)} rows, {sum(df['source'] == 'reproduced')} reproduced)")
    return 0
