"""Command-line entry point: ``python -m smart <verb> ...``.

Each verb lives in its own module, imported only when the verb runs, so that light verbs (dataset
preparation, evaluation, tables) start without importing torch. A verb module provides ``HELP`` (one
line), ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from smart.errors import InputError

# verb -> module implementing it
COMMANDS: dict[str, str] = {
    "make-mini": "smart.data.mini.cli",
    "show-dataset": "smart.data.show",
    "check-dataset": "smart.data.check",
    "prepare": "smart.data.prepare.cli",
    "evaluate": "smart.eval.cli",
    "table": "smart.report.cli",
    "figure": "smart.report.cli_figure",
    "pretrain-clip": "smart.train.cli_clip",
    "train": "smart.train.cli_train",
    "pretrain-generator": "smart.train.cli_generator",
    "cache-proposals": "smart.data.cli_proposals",
    "model-summary": "smart.model.summary",
    "eval-cell": "smart.eval.cli_cell",
    "benchmark": "smart.eval.cli_benchmark",
    "eval-refer": "smart.eval.cli_refer",
    "paper-smoke": "smart.smoke",
    "convert-generator": "smart.model.cli_convert",
}


def _load(verb: str):
    return importlib.import_module(COMMANDS[verb])


def build_parser(verbs: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m smart", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for verb in verbs if verbs is not None else COMMANDS:
        try:
            module = _load(verb)
        except ModuleNotFoundError as exc:  # a verb whose optional module is absent
            if not exc.name or not exc.name.startswith("smart"):
                raise
            continue
        p = sub.add_parser(verb, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.add_argument("--log", default=None, help="also write the log to this file")
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Import only the module of the verb asked for (fast start); fall back to all for --help.
    verb = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser([verb] if verb in COMMANDS else None)
    args = parser.parse_args(argv)
    from smart.utils.logging import setup_logging

    setup_logging(args.log)
    try:
        return int(args._module.run(args) or 0)
    except InputError as exc:
        logging.getLogger("smart").error("%s", exc)
        print(f"error: {exc}", file=sys.stderr)
        return 2
