"""``python -m smart model-summary``: total and trainable parameter counts of a model config, by group.

The model is built on the ``meta`` device (shapes only: no memory, no weights, about a second even for
ViT-L/14-336), so the paper configuration's trainable count (26,438,193, "26M" in the paper; spec
§4.5) can be checked on any machine (:mod:`smart.model.summary`).
"""

from __future__ import annotations

import argparse
import json
import sys

from smart.cli.context import RunContext, add_run_arguments
from smart.errors import ConfigError

HELP = "print total and trainable parameter counts of a model config (by group)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--config", help="model config JSON (fields of SmartModelConfig, optionally 'preset')")
    src.add_argument("--preset", help="a named preset (see --list)")
    src.add_argument("--cell", help="a cell of params.yaml (with --params and --profile)")
    add_run_arguments(parser, root=False)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a field (VALUE parsed as JSON, else a string); repeatable")
    parser.add_argument("--list", action="store_true", help="list the presets and exit")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--materialize", action="store_true",
                        help="build with real (random) weights on CPU instead of the meta device")


def _parse_set(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"expected KEY=VALUE, got {item!r}", field="--set")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def run(args: argparse.Namespace) -> int:
    from smart.model.config import SmartModelConfig, get_preset, list_presets, load_model_config, preset_help
    from smart.model.summary import PAPER_TRAINABLE_RANGE, summarize

    if args.list:
        for name in list_presets():
            print(f"{name:22s} {preset_help(name)}")
        return 0
    if args.config:
        cfg = load_model_config(args.config)
    elif args.cell:
        cfg = RunContext(args).experiment.cell(args.cell).model
    else:
        cfg = get_preset(args.preset or "paper")
    if args.set:
        cfg = SmartModelConfig.from_dict({**cfg.to_dict(), **_parse_set(args.set)})
    if args.materialize:
        from smart.model.smart import build_model

        counts = build_model(cfg).parameter_counts()
        result = {"config": cfg.to_dict(), "groups": {k: v for k, v in counts.items() if k != "all"},
                  "total": counts["all"]["total"], "trainable": counts["all"]["trainable"]}
    else:
        result = summarize(cfg)
    result["preset"] = args.preset if not args.config else None
    if args.json:
        json.dump(result, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    print(f"model: {cfg.clip_model} at {cfg.image_size}px  (tune={cfg.tune}, "
          f"sma={cfg.sma}, da_layers={cfg.da_layers}, lora_rank={cfg.lora_rank})")
    print(f"{'group':12s} {'total':>14s} {'trainable':>14s}")
    for name, c in result["groups"].items():
        print(f"{name:12s} {c['total']:>14,d} {c['trainable']:>14,d}")
    print(f"{'all':12s} {result['total']:>14,d} {result['trainable']:>14,d}")
    lo, hi = PAPER_TRAINABLE_RANGE
    if cfg.clip_model.startswith("ViT-L-14-336"):
        ok = lo <= result["trainable"] <= hi
        print(f"paper reports 26M trainable: {result['trainable'] / 1e6:.2f}M "
              f"{'within' if ok else 'OUTSIDE'} [{lo / 1e6:.1f}M, {hi / 1e6:.1f}M]")
    return 0
