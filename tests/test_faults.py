"""Fault injection: a job killed with SIGKILL at a random moment, then rerun with the same command, keeps
what was finished, resumes what was not, and ends with results byte-identical to an uninterrupted run —
for training, proposal caching, evaluation and a table; and a Snakemake killed while a training runs
leaves an orphan whose finished work the rerun keeps.

Kill points are drawn from a seeded generator (reproducible), at moments read from the job's own
progress (checkpoints and shards on disk), so each kill lands inside the work and not before it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.extended, pytest.mark.faults]

REPO = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(20261206)


def _env() -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", DVC_NO_ANALYTICS="1", PYTHONUNBUFFERED="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _smart(*args) -> list[str]:
    return [sys.executable, "-m", "smart", *map(str, args)]


def _run(cmd, cwd=None, timeout=600) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=_env(), timeout=timeout)
    assert r.returncode == 0, " ".join(map(str, cmd)) + "\n" + r.stdout[-3000:] + r.stderr[-3000:]
    return r


def _kill_when(cmd, ready, *, cwd=None, timeout=300) -> bool:
    """Start ``cmd`` and SIGKILL it as soon as ``ready()`` holds; False if it ended first."""
    p = subprocess.Popen(cmd, cwd=cwd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.monotonic()
    try:
        while p.poll() is None and time.monotonic() - t0 < timeout:
            if ready():
                p.send_signal(signal.SIGKILL)
                p.wait()
                return True
            time.sleep(0.02)
        return False
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def _files(d: Path) -> dict[str, bytes]:
    return {str(f.relative_to(d)): f.read_bytes() for f in sorted(d.rglob("*"))
            if f.is_file() and not f.name.endswith(".run.json")}


def test_training_killed_anywhere_resumes_to_the_same_bytes(tiny_train_params, mini_root, tmp_path):
    cmd = ["train", "--params", tiny_train_params, "--cell", "smart", "--seed", 0, "--root", mini_root, "--threads", 1]
    _run(_smart(*cmd, "--out", tmp_path / "ref"))
    ref = _files(tmp_path / "ref")
    out = tmp_path / "run"
    scratch = tmp_path / ".scratch" / "run"
    for k in sorted(RNG.choice(np.arange(1, 6), size=2, replace=False)):  # kill after the k-th checkpoint
        def ready(k=int(k)):
            import torch

            try:
                return torch.load(scratch / "last.pt", weights_only=True)["iteration"] >= 2 * k
            except Exception:  # not there yet, or being replaced
                return False

        assert _kill_when(_smart(*cmd, "--out", out), ready), f"training ended before checkpoint {k}"
        assert not out.exists() or not (out / "model.pt").exists()
    r = _run(_smart(*cmd, "--out", out))
    assert "resumed from" in r.stderr
    assert _files(out) == ref
    # killed after it finished writing: the rerun rewrites the same outputs without training
    for f in out.iterdir():
        f.unlink()
    r = _run(_smart(*cmd, "--out", out))
    assert "at iteration 12/12" in r.stderr and _files(out) == ref


def test_caching_killed_anywhere_resumes_to_the_same_bytes(tiny_train_params, tiny_gen_dir, mini_root, tmp_path):
    cmd = ["cache-proposals", "coco", "--generator", tiny_gen_dir, "--params", tiny_train_params, "--root", mini_root,
           "--threads", 1]
    _run(_smart(*cmd, "--out", tmp_path / "ref"))
    ref = _files(tmp_path / "ref")
    out = tmp_path / "run"
    k = int(RNG.integers(1, 5))
    assert _kill_when(_smart(*cmd, "--out", out), lambda: len(list(out.glob("shard-*.npz"))) >= k)
    assert not (out / "manifest.json").exists()
    _run(_smart(*cmd, "--out", out))
    assert _files(out) == ref


def test_evaluation_and_table_killed_leave_nothing_partial(tiny_train_params, trained, mini_root, tmp_path):
    ev = ["eval-cell", "--params", tiny_train_params, "--cell", "smart", "--seed", 0, "--model", trained / "model.pt",
          "--datasets", "ade150", "pc59", "--root", mini_root, "--threads", 1]
    out = lambda d: ["--out-dir", d / "m", "--detail-dir", d / "d"]  # noqa: E731
    _run(_smart(*ev, *out(tmp_path / "ref")))
    ref = _files(tmp_path / "ref")
    run = tmp_path / "run"
    delay = float(RNG.uniform(2.0, 6.0))  # model loading and the first benchmark take a few seconds
    t0 = time.monotonic()
    _kill_when(_smart(*ev, *out(run)), lambda: time.monotonic() - t0 > delay)
    for f in run.rglob("*"):  # whatever was written is whole: a result file is written at once, or not at all
        assert not f.name.startswith(".") and "partial" not in f.name, f
    _run(_smart(*ev, *out(run)))
    assert _files(run) == ref

    metrics = tmp_path / "metrics"
    shutil.copytree(run / "m", metrics / "smart" / "s0")
    tab = ["table", "table3a", "--params", tiny_train_params, "--metrics-dir", metrics]
    _run(_smart(*tab, "--out", tmp_path / "ref.csv"))
    t0 = time.monotonic()
    delay = float(RNG.uniform(0.2, 1.5))
    _kill_when(_smart(*tab, "--out", tmp_path / "t.csv"), lambda: time.monotonic() - t0 > delay)
    assert not list(tmp_path.glob(".t.*partial"))
    _run(_smart(*tab, "--out", tmp_path / "t.csv"))
    for ext in ("csv", "md", "tex"):
        assert (tmp_path / f"t.{ext}").read_bytes() == (tmp_path / f"ref.{ext}").read_bytes()
