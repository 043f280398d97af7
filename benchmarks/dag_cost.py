"""Where a DAG run's CPU-seconds went: sums the ``resources:`` line every ``python -m smart`` job writes at
its end (CPU seconds of the process and its children, wall seconds, peak RSS) over the job logs.

    python benchmarks/dag_cost.py [--logs logs] [--markdown]

Jobs are grouped by their log folder (``logs/<stage kind>/…``; the mini world's caption corpus and the
two pretraining kinds are split out). Run it right after a run: a log holds its job's last run only.
"""

from __future__ import annotations

import argparse
import re
from collections import defaultdict
from pathlib import Path

LINE = re.compile(r"resources: (\S+) cpu ([\d.]+) s wall ([\d.]+) s max_rss (\d+) MB")


def group_of(rel: Path) -> str:
    parts = rel.with_suffix("").parts
    kind = parts[0]
    if kind == "mini_world":
        return "mini world: captions" if parts[-1] == "captions" else "mini world: benchmarks"
    if kind == "pretrain":
        return f"pretrain {parts[-1]}"
    if kind == "proposals":
        return "proposal caches (COCO train)" if parts[-1] == "coco_train" else "proposal caches (benchmarks)"
    return kind


def collect(logs: Path) -> dict[str, list[float]]:
    """{group: [jobs, cpu s, wall s, max peak MB]} over every log with a resources line."""
    out: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0, 0.0])
    for f in sorted(logs.rglob("*.log")):
        m = None
        for m in LINE.finditer(f.read_text(errors="replace")):
            pass  # the last line: the job's final run
        if m is None:
            continue
        g = out[group_of(f.relative_to(logs))]
        g[0] += 1
        g[1] += float(m.group(2))
        g[2] += float(m.group(3))
        g[3] = max(g[3], float(m.group(4)))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--logs", type=Path, default=Path("logs"))
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = ap.parse_args(argv)
    groups = collect(args.logs)
    if not groups:
        print(f"no 'resources:' lines under {args.logs}")
        return 1
    rows = sorted(groups.items(), key=lambda kv: -kv[1][1])
    total = [sum(v[i] for _, v in rows) for i in range(3)]
    if args.markdown:
        print("| stage | jobs | CPU-s | wall-s | peak RSS (MB) |\n|---|---:|---:|---:|---:|")
        for k, (n, cpu, wall, rss) in rows:
            print(f"| {k} | {n:.0f} | {cpu:.0f} | {wall:.0f} | {rss:.0f} |")
        print(f"| total | {total[0]:.0f} | {total[1]:.0f} | {total[2]:.0f} | |")
    else:
        for k, (n, cpu, wall, rss) in rows:
            print(f"{k:34s} {n:4.0f} jobs  cpu {cpu:8.1f} s  wall {wall:8.1f} s  peak {rss:6.0f} MB")
        print(f"{'total':34s} {total[0]:4.0f} jobs  cpu {total[1]:8.1f} s  wall {total[2]:8.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
