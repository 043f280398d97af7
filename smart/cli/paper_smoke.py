"""``python -m smart paper-smoke``: the paper profile's whole DAG offline on tiny data with the paper's
architectures (random weights); see :mod:`smart.smoke` for what is reduced and why."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from smart.smoke import repo_root, setup

HELP = "run the paper profile's whole DAG offline on tiny data with the paper's architectures (random weights)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="build/paper-smoke", help="the smoke run's directory (its own params.yaml)")
    p.add_argument("--scale", type=int, default=24, help="enlargement of the raw fixtures (images ~100-150 px)")
    p.add_argument("--image-size", type=int, default=224, help="CLIP input side (the paper: 896)")
    p.add_argument("--iterations", type=int, default=2, help="training iterations per cell (batch 1)")
    p.add_argument("--test-size", type=int, nargs=2, default=[256, 384], metavar=("SHORT", "LONG"),
                   help="the generator's test size (the paper: 800 1333)")
    p.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="snakemake --cores")
    p.add_argument("--setup-only", action="store_true", help="write data, weights and params.yaml, do not run")
    p.add_argument("--force", action="store_true", help="delete --out first")


def run(args) -> int:
    out = Path(args.out).resolve()
    if args.force and out.exists():
        shutil.rmtree(out)
    t0 = time.perf_counter()
    info = setup(out, scale=args.scale, image_size=args.image_size, iterations=args.iterations,
                 test_size=list(args.test_size))
    print("paper-profile smoke run in", out)
    for k, v in info["reductions"].items():
        print(f"  reduced {k}: {v}")
    info["setup_seconds"]["total"] = round(time.perf_counter() - t0, 1)
    if args.setup_only:
        return 0
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    cmd = ["snakemake", "--snakefile", str(repo_root() / "Snakefile"), "--directory", str(out),
           "--cores", str(args.cores), "--rerun-incomplete", "--printshellcmds"]
    t1 = time.perf_counter()
    rc = subprocess.run(cmd, env=env).returncode
    info.update(command=" ".join(cmd), dag_seconds=round(time.perf_counter() - t1, 1), returncode=rc,
                python=sys.version.split()[0])
    (out / "smoke.json").write_text(json.dumps(info, indent=2) + "\n")
    if rc != 0:
        print(f"error: the smoke DAG failed (exit {rc}); logs under {out / 'logs'}", file=sys.stderr)
        return 1
    print(f"paper-profile smoke run: DAG done in {info['dag_seconds']:.0f} s (setup "
          f"{info['setup_seconds']['total']:.0f} s); tables in {out / 'results'}")
    return 0

