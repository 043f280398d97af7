"""``python -m smart predict``: segment your own images with your own vocabulary.

Examples::

    python -m smart predict photos/ --vocab "cat, kitten; dog; grass; sky" --stuff "grass; sky" \\
        --cell smart --out predictions/
    python -m smart predict 'shots/**/*.jpg' --dataset ade150 --checkpoint results/train/smart/s0/model.pt \\
        --task semantic --out ade_vocab/

The model is a trained cell of the DAG (``--cell CELL [--seed S]``: ``results/train/<cell>/s<seed>/model.pt``)
or any ``model.pt`` (``--checkpoint``); its mask generator is the one it was trained with. Thresholds,
test size, top-k and batch size default to the DAG's values (params.yaml ``eval`` and
``proposals.<profile>``). See :mod:`smart.predict` for the outputs.
"""

from __future__ import annotations

import argparse

from smart.cli.context import add_run_arguments

HELP = "segment your own images with any vocabulary (panoptic / semantic PNGs, overlays, COCO-panoptic JSON)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", help="image files, folders (searched recursively) or glob patterns")
    v = p.add_mutually_exclusive_group(required=True)
    v.add_argument("--vocab", help='classes separated by ";", synonyms by "," (e.g. "cat, kitten; dog; sky")')
    v.add_argument("--vocab-file", help="vocabulary file: one class per line (synonyms by commas), FC-CLIP "
                                        "ID:name,synonym lines, or a JSON category list")
    v.add_argument("--dataset", help="a benchmark's vocabulary (e.g. ade150, coco, pc59, or a user dataset of "
                                     "params.yaml)")
    p.add_argument("--stuff", default="", help='classes to treat as stuff (one segment per class), separated by ";"')
    m = p.add_mutually_exclusive_group(required=True)
    m.add_argument("--cell", help="a trained cell of params.yaml (results/train/<cell>/s<seed>/model.pt)")
    m.add_argument("--checkpoint", help="a model.pt written by `python -m smart train`")
    p.add_argument("--seed", type=int, default=None, help="with --cell: which seed (default: the cell's first)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--task", choices=("panoptic", "semantic"), default="panoptic",
                   help="panoptic (panoptic + semantic PNGs and the COCO-panoptic JSON) | semantic")
    p.add_argument("--object-mask-threshold", type=float, default=None,
                   help="min class probability of a kept segment (default: params.yaml eval)")
    p.add_argument("--overlap-threshold", type=float, default=None,
                   help="min visible share of a kept segment's mask (default: params.yaml eval)")
    p.add_argument("--mask-threshold", type=float, default=None,
                   help="sigmoid threshold of a mask (default: params.yaml eval)")
    p.add_argument("--test-size", type=int, nargs=2, default=None, metavar=("SHORT", "LONG"),
                   help="generator input: shortest side, longest side (default: the profile's test size)")
    p.add_argument("--top-k", type=int, default=None, help="proposals per image (default: proposals.<profile>)")
    p.add_argument("--batch-size", type=int, default=None, help="images per forward (default: params.yaml eval)")
    p.add_argument("--fp32", action="store_true",
                   help="CUDA: keep the classifier in float32 (default: params.yaml eval.bf16; CPU runs are fp32)")
    p.add_argument("--text-cache", default=None,
                   help="folder caching text embeddings per vocabulary (default: $SMART_TEXT_CACHE, else "
                        "~/.cache/smart/text); 'none' to disable")
    add_run_arguments(p, device=True, threads=True)


def text_cache_dir(arg: str | None) -> str | None:
    import os
    from pathlib import Path

    if arg is not None:
        return None if arg.lower() == "none" else arg
    env = os.environ.get("SMART_TEXT_CACHE")
    if env:
        return env
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "smart" / "text")


def run(args) -> int:
    from pathlib import Path

    from smart.cli.context import RunContext
    from smart.errors import InputError
    from smart.predict import (
        PredictSettings,
        build_vocabulary,
        check_images,
        collect_images,
        default_test_size,
        describe_vocabulary,
        load_predictor,
        parse_vocabulary,
        read_vocabulary_file,
        run_predict,
    )

    ctx = RunContext(args)
    exp = ctx.experiment
    stuff = [s.strip() for s in args.stuff.split(";") if s.strip()]
    # everything that can be checked without the model, first
    if args.vocab is not None:
        vocab = build_vocabulary(parse_vocabulary(args.vocab), stuff=stuff, source="--vocab")
    elif args.vocab_file is not None:
        vocab = read_vocabulary_file(args.vocab_file, stuff=stuff)
    else:
        from smart.data.registry import open_vocabulary

        vocab = open_vocabulary(args.dataset, profile=exp.profile, root=ctx.root, user=exp.user_datasets)
        if stuff:
            raise InputError("--stuff applies to --vocab / --vocab-file; a benchmark's table says what is stuff",
                             field="--stuff")
    paths = collect_images(args.images)
    sizes = check_images(paths)  # every image decoded before the model loads and anything is written
    ev = exp.eval
    pc = exp.proposal_config()
    test_size = tuple(args.test_size) if args.test_size is not None else default_test_size(exp)
    settings = PredictSettings(
        task=args.task,
        object_mask_threshold=ev["object_mask_threshold"] if args.object_mask_threshold is None
        else args.object_mask_threshold,
        overlap_threshold=ev["overlap_threshold"] if args.overlap_threshold is None else args.overlap_threshold,
        mask_threshold=ev["mask_threshold"] if args.mask_threshold is None else args.mask_threshold,
        batch_size=ev["batch_size"] if args.batch_size is None else args.batch_size,
        test_size=test_size, top_k=pc.top_k if args.top_k is None else args.top_k, score_mode=pc.score_mode,
        bf16=ev["bf16"] and not args.fp32)
    if settings.top_k is not None and settings.top_k < 1:
        raise InputError(f"must be >= 1, got {settings.top_k}", field="--top-k")

    # the model
    if args.cell is not None:
        from smart import paths as P

        cell = exp.cell(args.cell)
        seed = cell.seeds[0] if args.seed is None else args.seed
        if seed not in cell.seeds:
            raise InputError(f"seed {seed} is not one of the cell's seeds {list(cell.seeds)}",
                             field=f"cells.{args.cell}.seeds")
        model_cell = cell.spec.model_cell
        ckpt = Path(P.train_outputs(model_cell, seed)["model"])
        if not ckpt.is_file():
            raise InputError(f"cell {model_cell!r} seed {seed} is not trained yet: run "
                             f"`snakemake --cores all {ckpt}`", path=ckpt, field="--cell")
    else:
        if args.seed is not None:
            raise InputError("--seed goes with --cell", field="--seed")
        ckpt, model_cell = Path(args.checkpoint), None
    device = ctx.device()
    predictor, meta = load_predictor(ckpt, exp=exp, vocab=vocab, settings=settings, device=device,
                                     text_cache_dir=text_cache_dir(args.text_cache), expect_cell=model_cell)
    print(f"predict: {len(paths)} images, {len(vocab)} classes ({describe_vocabulary(vocab)[:200]}), "
          f"model {ckpt} on {device}")
    record = {"checkpoint": str(ckpt), "cell": meta.get("cell"), "iterations": meta.get("iteration"),
              "profile": exp.profile, "device": str(device), "generator": meta["generator_config"],
              "vocabulary": describe_vocabulary(vocab)}
    summary = run_predict(predictor, paths, args.out, record=record, sizes=sizes)
    print(f"wrote {args.out}: {summary['num_images']} images in {summary['seconds']:.1f} s "
          f"({summary['images_per_s']} images/s)")
    return 0
