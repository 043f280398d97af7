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

HELP = "cache the top-K mask proposals of a frozen mask generator for a dataset split (sharded, compact)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", help="dataset split (registry name or alias, e.g. coco_train, coco, ade150)")
    p.add_argument("--generator", required=True, help="generator checkpoint directory, mini name or hub name")
    p.add_argument("--models-dir", default="data/models", help="where mini generator names are looked up")
    p.add_argument("--params", default="params.yaml", help="params file holding the proposals section")
    p.add_argument("--root", default=None, help="dataset root (default: the profile's, data/mini for mini)")
    p.add_argument("--profile", default=None, help="mini | paper (default: params profile)")
    p.add_argument("--out", required=True, help="output cache directory")
    p.add_argument("--batch-size", type=int, default=16, help="images per generator forward")
    p.add_argument("--limit", type=int, default=None, help="cache only the first N images (development)")
    p.add_argument("--overwrite", action="store_true", help="replace a cache of another generator/dataset in --out")
    p.add_argument("--device", default="cpu", help="torch device of the generator")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")


def run(args) -> int:
    import torch

    from smart.config import load_params, proposals_params
    from smart.data.proposals import (
        ProposalCacheConfig,
        cache_proposals,
        generator_identity,
        resolve_generator,
    )
    from smart.data.registry import Dataset
    from smart.errors import ConfigError
    from smart.model.mask_generator import Mask2FormerGenerator, build_mask_generator

    params = load_params(args.params)
    profile = args.profile or params.get("profile", "mini")
    cfg = ProposalCacheConfig.from_dict(proposals_params(params, profile=profile, source=args.params),
                                        source=args.params, key=f"proposals.{profile}")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    ds = Dataset.open(args.dataset, profile=profile, root=args.root)
    entry = ((params.get("train_defaults") or {}).get(profile) or {}).get("generators", {}).get(args.generator)
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
    gen.to(args.device)
    man = cache_proposals(gen, ds, args.out, cfg, generator_id=ident, dataset_alias=args.dataset,
                          batch_size=args.batch_size, overwrite=args.overwrite, limit=args.limit)
    print(f"{man['num_images']} images of {man['dataset']} -> {args.out}: K={man['top_k']}, "
          f"{len(man['shards'])} shards ({man['_reused_shards']} reused), "
          f"{man['bytes_per_image'] / 1024:.1f} KB/image ({man['encoding']['name']})")
    return 0
