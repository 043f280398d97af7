"""``python -m smart cache-proposals DATASET``: cache a frozen mask generator's top-K proposals.

Example::

    python -m smart cache-proposals coco_train --generator mini-swinb --root data/mini \\
        --out data/proposals/mini-swinb/coco_train

``--generator`` is a key of the params file's ``train_defaults.<profile>.generators`` (any backend that
training accepts: ``hf``, or ``detectron2`` with its model-zoo ``.pkl`` and YAML config), a checkpoint
directory, a name under ``--models-dir`` (``data/models/<name>``, the pretrained mini generators) or a
Hugging Face hub name present in the local cache. K, shard size,
encoding and the test-time size of the dataset come from the ``proposals.<profile>`` entry of the params
file. An interrupted run continues where it
stopped; ``manifest.json`` is written last. See :mod:`smart.data.proposals` for the format.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from smart.cli.context import RunContext, add_run_arguments

HELP = "cache the top-K mask proposals of a frozen mask generator for a dataset split (sharded, compact)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", help="dataset split (registry name or alias, e.g. coco_train, coco, ade150)")
    p.add_argument("--generator", required=True, help="generator checkpoint directory, mini name or hub name")
    p.add_argument("--models-dir", default="data/models", help="where mini generator names are looked up")
    p.add_argument("--out", required=True, help="output cache directory")
    p.add_argument("--batch-size", type=int, default=16, help="images per generator forward")
    p.add_argument("--limit", type=int, default=None, help="cache only the first N images (development)")
    p.add_argument("--overwrite", action="store_true", help="replace a cache of another generator/dataset in --out")
    add_run_arguments(p, device=True, threads=True)


def run(args) -> int:
    from smart.data.proposals import (
        cache_proposals,
        generator_identity,
        resolve_generator,
    )
    from smart.data.registry import Dataset
    from smart.errors import ConfigError
    from smart.model.mask_generator import Mask2FormerGenerator, build_mask_generator

    ctx = RunContext(args)
    exp = ctx.experiment
    profile, cfg, device = exp.profile, exp.proposal_config(), ctx.device()
    ds = Dataset.open(args.dataset, profile=profile, root=ctx.root, user=exp.user_datasets)
    entry = exp.train_defaults()["generators"].get(args.generator)
    d2 = False
    if entry is not None and not Path(args.generator).is_dir():  # a generator of the params file, by key
        if not entry.get("pretrained"):
            raise ConfigError("a cache needs pretrained weights", path=args.params,
                              field=f"train_defaults.{profile}.generators.{args.generator}.pretrained")
        d2 = entry.get("backend", "hf") != "hf"
        source = Path(entry["pretrained"]) if d2 else resolve_generator(entry["pretrained"],
                                                                          models_dir=args.models_dir)
    else:
        source = resolve_generator(args.generator, models_dir=args.models_dir)
    if d2:
        gen = build_mask_generator({**entry, "tune_mask_generator": False, "top_k": None, "score_mode": cfg.score_mode})
    else:
        gen = Mask2FormerGenerator.from_pretrained(source, tune=False, top_k=None, score_mode=cfg.score_mode)
    ident = generator_identity(source)
    gen.to(device)
    man = cache_proposals(gen, ds, args.out, cfg, generator_id=ident, dataset_alias=args.dataset,
                          batch_size=args.batch_size, overwrite=args.overwrite, limit=args.limit)
    print(f"{man['num_images']} images of {man['dataset']} -> {args.out}: K={man['top_k']}, "
          f"{len(man['shards'])} shards ({man['_reused_shards']} reused), "
          f"{man['bytes_per_image'] / 1024:.1f} KB/image ({man['encoding']['name']})")
    return 0
