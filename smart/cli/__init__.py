"""Command-line entry point: ``python -m smart <verb> ...``.

Each verb lives in its own module of this package, imported only when the verb runs, so that light verbs
(dataset preparation, evaluation, tables) start without importing torch. A verb module provides ``HELP``
(one line), ``add_arguments(parser)`` and ``run(args) -> int``; the flags verbs share (``--params``,
``--profile``, ``--root``, ``--device``, ``--threads``, ``--workers``) are declared and resolved in one
place, :mod:`smart.cli.context`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import time

from smart.errors import InputError

# verb -> module implementing it (all in smart/cli/; the shared flags are in smart/cli/context.py)
COMMANDS: dict[str, str] = {
    "make-mini": "smart.cli.make_mini",
    "show-dataset": "smart.cli.show_dataset",
    "check-dataset": "smart.cli.check_dataset",
    "prepare": "smart.cli.prepare",
    "evaluate": "smart.cli.evaluate",
    "table": "smart.cli.table",
    "figure": "smart.cli.figure",
    "pretrain-clip": "smart.cli.pretrain_clip",
    "train": "smart.cli.train",
    "pretrain-generator": "smart.cli.pretrain_generator",
    "cache-proposals": "smart.cli.cache_proposals",
    "model-summary": "smart.cli.model_summary",
    "eval-cell": "smart.cli.eval_cell",
    "benchmark": "smart.cli.benchmark",
    "eval-refer": "smart.cli.eval_refer",
    "paper-smoke": "smart.cli.paper_smoke",
    "convert-generator": "smart.cli.convert_generator",
    "predict": "smart.cli.predict",
    "qualitative": "smart.cli.qualitative",
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


def _log_resources(verb: str | None, t0: float) -> None:
    """One log line with what the verb cost: CPU seconds (this process and its finished children, user +
    system), wall seconds and peak RSS. ``benchmarks/dag_cost.py`` sums these lines over a DAG run's logs."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
    logging.getLogger("smart").info("resources: %s cpu %.1f s wall %.1f s max_rss %.0f MB", verb, cpu,
                                    time.perf_counter() - t0, max(me.ru_maxrss, kids.ru_maxrss) / 1024)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Import only the module of the verb asked for (fast start); fall back to all for --help.
    verb = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser([verb] if verb in COMMANDS else None)
    args = parser.parse_args(argv)
    from smart.utils.logging import setup_logging

    setup_logging(args.log)
    t0 = time.perf_counter()
    try:
        code = int(args._module.run(args) or 0)
        _log_resources(verb, t0)
        return code
    except InputError as exc:
        logging.getLogger("smart").error("%s", exc)
        print(f"error: {exc}", file=sys.stderr)
        return 2
