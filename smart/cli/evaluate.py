"""``python -m smart evaluate {panoptic,semantic}``: score predictions on any COCO-panoptic / label-map data.

Panoptic (fractions, as panopticapi ``pq_compute`` returns them)::

    python -m smart evaluate panoptic --gt-json G --gt-dir GD --pred-json P --pred-dir PD --out m.json

writes ``All``, ``Things``, ``Stuff`` (each ``pq, sq, rq, n``), ``per_class`` and ``definitions``.

Semantic (percent, as detectron2 ``SemSegEvaluator``)::

    python -m smart evaluate semantic --gt-dir GD --pred-dir PD --num-classes N --ignore-label L --out m.json

writes ``mIoU`` (detectron2 HEAD), ``mIoU_d2v06``, ``fwIoU``, ``pACC``, ``mACC``, ``per_class`` and
``definitions``. Label maps are paired by relative path without extension (.png, .tif, .tiff).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from smart.cli.context import add_run_arguments
from smart.errors import InputError

HELP = "score predictions: panoptic (PQ as panopticapi) or semantic (mIoU as detectron2)"

log = logging.getLogger("smart.eval")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=None, help="metrics JSON to write (NaN is written as null)")
    add_run_arguments(p, params=False, profile=False, root=False, workers=True)
    p.add_argument("--lenient", action="store_true",
                   help="only reject what the reference rejects; log the other inconsistencies as warnings")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    # The top-level CLI adds --log to the verb's parser; accept it after the mode too.
    p.add_argument("--log", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="mode", metavar="MODE", required=True)
    p = sub.add_parser("panoptic", help="Panoptic Quality of COCO-panoptic predictions (JSON + PNGs)",
                       description="PQ/SQ/RQ as cocodataset/panopticapi pq_compute (fractions)")
    p.add_argument("--gt-json", type=Path, required=True,
                   help="GT COCO panoptic JSON (categories are taken from it)")
    p.add_argument("--gt-dir", type=Path, default=None,
                   help="GT PNG folder (default: GT JSON path without .json)")
    p.add_argument("--pred-json", type=Path, required=True,
                   help="prediction JSON (annotations with segments_info)")
    p.add_argument("--pred-dir", type=Path, default=None,
                   help="prediction PNG folder (default: prediction JSON path without .json)")
    p.add_argument("--empty-gt-stuff", action="store_true",
                   help="accept GT stuff segments listed with no pixel in the GT PNG, counted as false "
                        "negatives as panopticapi does (Mask2Former's ADE20K-150 panoptic GT has them)")
    _common(p)

    s = sub.add_parser("semantic", help="mIoU / fwIoU / pACC of semantic label maps",
                       description="detectron2 SemSegEvaluator metrics (percent); mIoU = HEAD definition, "
                                   "mIoU_d2v06 = v0.6 definition")
    s.add_argument("--gt-dir", type=Path, required=True, help="GT label maps (.png / .tif)")
    s.add_argument("--pred-dir", type=Path, required=True, help="predicted label maps, same relative names")
    s.add_argument("--num-classes", type=int, required=True, help="number of classes K (labels 0..K-1)")
    s.add_argument("--ignore-label", type=int, required=True, help="GT label to ignore (e.g. 255, 65535)")
    s.add_argument("--class-names", type=Path, default=None,
                   help="optional text file with one class name per line (K lines)")
    _common(s)


def _read_names(path: Path | None, k: int) -> list[str] | None:
    if path is None:
        return None
    try:
        names = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except FileNotFoundError:
        raise InputError("class-name file not found", path=path) from None
    if len(names) != k:
        raise InputError(f"{len(names)} class names for --num-classes {k}", path=path)
    return names


def run(args: argparse.Namespace) -> int:
    from smart.eval.io import write_metrics_json

    if args.workers < 1:
        raise InputError(f"--workers must be >= 1, got {args.workers}", field="--workers")
    if args.mode == "panoptic":
        from smart.eval.panoptic import evaluate_panoptic_files, format_table

        res = evaluate_panoptic_files(args.gt_json, args.pred_json, args.gt_dir, args.pred_dir,
                                      workers=args.workers, strict=not args.lenient,
                                      empty_gt_stuff=args.empty_gt_stuff, show_progress=not args.no_progress)
        print(format_table(res))
        log.info("PQ implementation: %s", res["definitions"]["implementation"])
    else:
        from smart.eval.semantic import evaluate_semantic_files, format_summary

        if args.num_classes < 1:
            raise InputError(f"--num-classes must be >= 1, got {args.num_classes}", field="--num-classes")
        res = evaluate_semantic_files(args.gt_dir, args.pred_dir, args.num_classes, args.ignore_label,
                                      class_names=_read_names(args.class_names, args.num_classes),
                                      workers=args.workers, strict=not args.lenient,
                                      show_progress=not args.no_progress)
        print(format_summary(res))
        log.info("mIoU definition: %s", res["definitions"]["mIoU"])
    if args.out is not None:
        write_metrics_json(args.out, res)
        log.info("wrote %s", args.out)
    return 0
