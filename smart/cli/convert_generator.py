"""``python -m smart convert-generator IN.pkl OUT_DIR``: convert the detectron2 Mask2Former R50
COCO-panoptic checkpoint into a transformers mask-generator directory.

Example::

    python -m smart convert-generator model_final_94dc52.pkl data/models/m2f-r50-coco-panoptic

``IN.pkl`` is the Mask2Former model-zoo file ``maskformer2_R50_bs16_50ep/model_final_94dc52.pkl`` (a
``.pth`` with a ``model`` dict also works). ``OUT_DIR`` is written atomically and loads with
``Mask2FormerGenerator.from_pretrained`` (e.g. ``proposals.generator`` / ``--generator OUT_DIR``);
detectron2 is not needed. See :mod:`smart.model.convert_d2` for the mapping and its sources.
"""

from __future__ import annotations

import argparse

HELP = "convert the detectron2 Mask2Former R50 COCO-panoptic checkpoint (.pkl) into a transformers generator"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="detectron2 checkpoint (model-zoo .pkl, or .pth with a 'model' dict)")
    p.add_argument("out_dir", help="output generator directory (for Mask2FormerGenerator.from_pretrained)")
    p.add_argument("--num-labels", type=int, default=133, help="closed-set classes of the checkpoint (133)")
    p.add_argument("--num-queries", type=int, default=100, help="object queries of the checkpoint (100)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty OUT_DIR")


def run(args) -> int:
    from smart.model.convert_d2 import convert_d2_checkpoint

    s = convert_d2_checkpoint(args.checkpoint, args.out_dir, num_labels=args.num_labels,
                              num_queries=args.num_queries, overwrite=args.overwrite)
    print(f"{args.checkpoint} -> {s['out_dir']}: {s['source_keys']} checkpoint keys -> {s['target_tensors']} "
          f"transformers tensors, {s['parameters'] / 1e6:.1f}M parameters (author: {s['author']})")
    return 0
