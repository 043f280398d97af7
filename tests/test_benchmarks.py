"""The benchmark scripts' plumbing (their figures come from runs on real hardware, never from tests)."""

import csv
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))


def test_cost_curves_write_csv_and_figure(tmp_path):
    import bench_cost

    out = tmp_path / "cost.csv"
    assert bench_cost.main(["--preset", "tiny-test", "--proposals", "4", "8", "--sizes", "32", "64",
                            "--repeats", "1", "--threads", "1", "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [(r["sweep"], int(r["proposals"]), int(r["input_size"])) for r in rows] == [
        ("proposals", 4, 32), ("proposals", 8, 32), ("input_size", 8, 32), ("input_size", 8, 64)]
    assert [int(r["tokens"]) for r in rows if r["sweep"] == "input_size"] == [4 * 4, 8 * 8]  # patch 8
    for r in rows:
        assert float(r["infer_ms"]) > 0 and float(r["train_ms"]) > 0 and float(r["post_ms"]) > 0
    assert out.with_suffix(".png").stat().st_size > 10_000
    rising = [{"x": 1, "y": 1.0}, {"x": 2, "y": 4.0}, {"x": 4, "y": 8.0}]
    assert bench_cost.slopes(rising, "x", "y") == [2.0, 1.0]  # quadratic, then linear


def test_every_job_logs_its_resources_and_dag_cost_sums_them(tmp_path):
    import dag_cost

    r = subprocess.run([sys.executable, "-m", "smart", "make-mini", "vocab", "--params", str(REPO / "params.yaml"),
                        "--out", str(tmp_path / "mini")], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    assert dag_cost.LINE.search(r.stderr).group(1) == "make-mini", r.stderr[-2000:]
    logs = tmp_path / "logs"
    (logs / "train" / "smart").mkdir(parents=True)
    (logs / "pretrain").mkdir()
    (logs / "train" / "smart" / "s0.log").write_text(
        "x | INFO | smart | resources: train cpu 1.0 s wall 9.0 s max_rss 10 MB\n"  # an earlier run
        "x | INFO | smart | resources: train cpu 20.5 s wall 21.0 s max_rss 1000 MB\n")
    (logs / "train" / "smart" / "s1.log").write_text("resources: train cpu 19.5 s wall 20.0 s max_rss 1100 MB\n")
    (logs / "pretrain" / "mini_clip.log").write_text("resources: pretrain-clip cpu 200.0 s wall 201.0 s max_rss 1 MB\n")
    (logs / "pretrain" / "broken.log").write_text("killed before the end\n")
    groups = dag_cost.collect(logs)
    assert groups["train"] == [2, 40.0, 41.0, 1100.0]
    assert groups["pretrain mini_clip"][:2] == [1, 200.0]
    r = subprocess.run([sys.executable, str(REPO / "benchmarks/dag_cost.py"), "--logs", str(logs), "--markdown"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "| train | 2 | 40 | 41 | 1100 |" in r.stdout and "| total | 3 | 240 |" in r.stdout
