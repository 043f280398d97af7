"""``python -m smart check-dataset NAME``: decode and validate every sample, write statistics.

Reads each image and annotation through the registry (which raises a clear error on any
inconsistency) and writes a JSON summary: image count, classes present, per-class pixel fractions,
ignored-pixel fraction and, in the mini profile, which present classes are held out from the
COCO-like training set (:mod:`smart.data.check`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from smart.cli.context import RunContext, add_run_arguments

HELP = "validate every sample of a dataset and write its statistics (classes present, held-out classes)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="dataset name or alias")
    p.add_argument("--out", default=None, help="write the statistics JSON here")
    p.add_argument("--limit", type=int, default=None, help="check only the first N samples")
    add_run_arguments(p)


def run(args) -> int:
    from smart.data.check import dataset_stats
    from smart.data.registry import Dataset

    ctx = RunContext(args)
    ds = Dataset.open(args.name, profile=ctx.profile, root=ctx.root, user=ctx.user_datasets)
    stats = dataset_stats(ds, args.limit)
    text = json.dumps(stats, indent=1) + "\n"
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    print(f"{ds.name}: {stats['images']} images, {stats['classes_present']}/{stats['num_classes']} classes present, "
          f"{stats['ignored_pixel_fraction']:.1%} pixels ignored"
          + (f", {len(stats['held_out_classes_present'])} held-out classes" if "held_out_classes_present" in stats
             else "")
          + (f" ({len(stats['novel_attribute_classes_present'])} with a novel attribute)"
             if "novel_attribute_classes_present" in stats else ""))
    return 0
