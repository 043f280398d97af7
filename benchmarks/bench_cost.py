"""Cost curves: time and peak memory of one inference and one training step of the SMART classifier
against the number of proposals Q and the input side S; writes a CSV and a figure.

    python benchmarks/bench_cost.py                       # mini configuration, CPU
    python benchmarks/bench_cost.py --preset paper --device cuda --amp   # paper configuration, GPU

What is measured, per point (batch 1, ``--repeats`` timed runs after one warm-up, the median kept):

* ``infer_ms``: ``SmartModel.forward`` (Distribution Adapter, CLIP with Q mask tokens, SMA, text
  classifier) under ``no_grad``, text embeddings precomputed (they are once per vocabulary);
* ``post_ms``: panoptic and semantic post-processing to the S×S input (``smart.model.inference``);
* ``train_ms``: forward, the Mask2Former-style set criterion (Hungarian matching, BCE + dice on
  sampled points, CE) on 10 ground-truth masks, backward and an AdamW step of the trainable parameters;
* ``*_peak_mb``: on CUDA ``torch.cuda.max_memory_allocated`` (weights included); on the CPU the peak
  resident set's growth over the start of the step (``/proc/self/clear_refs`` resets the peak), so
  the weights are not in it.

The mask generator is not in the loop (its proposals are cached in the pipeline): proposals are random
mask logits at S/4, the generator's output stride. The two sweeps: Q over ``--proposals`` at the
configuration's own input side, S over ``--sizes`` at the configuration's own Q (mini: 64 px, Q 20;
paper: 896 px, Q 100). The model is the preset's, randomly initialised (speed and memory do not depend
on the weights; the ``mini`` preset's CLIP has the mini CLIP's width, depth and patch size). The log-log
growth exponents between successive points are printed at the end. Output: ``docs/cost/<preset>_<device>
.csv`` and ``.png`` (``--plot-only CSV`` redraws a figure).
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from smart.eval.benchmark import _sync, cpu_model_name, peak_rss_bytes, reset_peak_rss  # noqa: E402

# the configuration's own operating point: (input side S, proposals Q, classes K)
OWN = {"mini": (64, 20, 150), "paper": (896, 100, 150), "tiny-test": (32, 8, 10)}  # tiny-test: the tests
FIELDS = ("preset", "device", "device_name", "threads", "dtype", "sweep", "proposals", "input_size", "tokens",
          "infer_ms", "post_ms", "train_ms", "infer_peak_mb", "train_peak_mb")


def build(preset: str, device: torch.device, side: int):
    """The configuration's model, randomly initialised, with its CLIP input side set to ``side``."""
    from smart.model.config import get_preset
    from smart.model.smart import build_model

    torch.manual_seed(0)
    model = build_model(get_preset(preset).replace(clip_pretrained=None, image_size=side), device=device)
    return model.eval()


def patch_of(model) -> int:
    p = getattr(model.clip.visual, "patch_size", None)
    return int(p[0] if isinstance(p, (tuple, list)) else p) if p else 0


def _vocab(k: int) -> list[list[str]]:
    return [[f"class {i}"] for i in range(k)]


def _peak_start(device: torch.device) -> int:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return 0
    reset_peak_rss()
    return peak_rss_bytes()


def _peak_mb(device: torch.device, start: int) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) / 2**20
    return max(0, peak_rss_bytes() - start) / 2**20


def measure(model, criterion, text, *, side: int, q: int, device: torch.device, amp: bool, repeats: int) -> dict:
    """One (S, Q) point: median times of inference / post-processing / training step and peak memory."""
    from smart.model.inference import postprocess

    g = torch.Generator().manual_seed(0)
    k = text.classes.shape[0]
    images = (torch.rand(1, 3, side, side, generator=g) * 255).to(device)  # (1, 3, S, S)
    props = (torch.randn(1, q, side // 4, side // 4, generator=g) * 4).to(device)  # (1, Q, S/4, S/4)
    n_gt = 10
    masks = torch.zeros(n_gt, side, side, dtype=torch.bool)  # (N, S, S): 10 random boxes
    for i in range(n_gt):
        y, x = torch.randint(0, side // 2, (2,), generator=g).tolist()
        masks[i, y:y + side // 2, x:x + side // 2] = True
    targets = [{"labels": torch.randint(0, k, (n_gt,), generator=g).to(device), "masks": masks.to(device)}]
    is_thing = [i % 3 != 0 for i in range(k)]
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=1e-6)
    ac = torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp)

    def infer():
        with torch.no_grad(), ac:
            return model(images, props, text)

    def post(out):
        postprocess({k2: v.float() for k2, v in out.items() if k2 in ("pred_logits", "pred_masks")},
                    is_thing=is_thing, input_size=(side, side), image_sizes=[(side, side)],
                    output_sizes=[(side, side)])

    def train():
        model.train()
        with ac:
            out = model(images, props, text)
        loss = criterion({"pred_logits": out["pred_logits"].float(), "pred_masks": out["pred_masks"].float()},
                         targets)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        model.eval()

    out = infer()  # the post-processing input (post-processing does not change it)
    res = {}
    for name, fn in (("infer", infer), ("post", lambda: post(out)), ("train", train)):
        times = []
        start = _peak_start(device)
        for r in range(repeats + 1):  # the first run is warm-up
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            if r:
                times.append(time.perf_counter() - t0)
        res[f"{name}_ms"] = round(1000 * statistics.median(times), 2)
        if name != "post":
            res[f"{name}_peak_mb"] = round(_peak_mb(device, start), 1)
    return res


def slopes(rows: list[dict], x: str, y: str) -> list[float]:
    """Log-log growth exponents between successive points (1 = linear, 2 = quadratic in x)."""
    out = []
    for a, b in zip(rows, rows[1:]):
        if a[y] > 0 and b[y] > 0 and b[x] != a[x]:
            out.append(round(math.log(b[y] / a[y]) / math.log(b[x] / a[x]), 2))
    return out


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5))
    for col, (sweep, x, label) in enumerate((("proposals", "proposals", "proposals Q"),
                                             ("input_size", "input_size", "input side S (px)"))):
        sub = sorted((r for r in rows if r["sweep"] == sweep), key=lambda r: int(r[x]))
        xs = [int(r[x]) for r in sub]
        ax = axes[0][col]
        for key, name in (("infer_ms", "inference"), ("post_ms", "post-processing"), ("train_ms", "training step")):
            ax.plot(xs, [float(r[key]) for r in sub], marker="o", label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(xs, [str(v) for v in xs])
        ax.minorticks_off()
        ax.set_xlabel(label)
        ax.set_ylabel("time (ms, batch 1)")
        ax.legend()
        ax.grid(True, which="both", alpha=0.3)
        ax = axes[1][col]
        for key, name in (("infer_peak_mb", "inference"), ("train_peak_mb", "training step")):
            ax.plot(xs, [max(float(r[key]), 1.0) for r in sub], marker="o", label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(xs, [str(v) for v in xs])
        ax.minorticks_off()
        ax.set_xlabel(label)
        ax.set_ylabel("peak memory (MB; CPU: RSS growth, floor 1 MB)" if rows[0]["device"] == "cpu"
                      else "peak memory (MB, weights included)")
        ax.legend()
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=sorted(OWN), default="mini")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--amp", action="store_true", help="bf16 autocast through the classifier")
    ap.add_argument("--proposals", type=int, nargs="+", default=[20, 50, 100, 150, 200])
    ap.add_argument("--sizes", type=int, nargs="+", default=[224, 320, 448, 640, 896])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None, help="CSV (default docs/cost/<preset>_<device>.csv)")
    ap.add_argument("--figure", type=Path, default=None, help="PNG (default beside the CSV)")
    ap.add_argument("--plot-only", type=Path, default=None, help="redraw the figure of this CSV; run nothing")
    args = ap.parse_args(argv)
    if args.plot_only is not None:
        rows = list(csv.DictReader(args.plot_only.open()))
        r0 = rows[0]
        fig = args.figure or args.plot_only.with_suffix(".png")
        plot(rows, fig, f"SMART classifier cost, {r0['preset']} configuration, {r0['device_name']} "
                        f"({r0['threads']} threads, {r0['dtype']}), batch 1")
        print(f"wrote {fig}")
        return 0

    from smart.model.criterion import build_criterion

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    side0, q0, k = OWN[args.preset]
    criterion = build_criterion(None, num_classes=k)
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model_name()
    out = args.out or ROOT / "docs" / "cost" / f"{args.preset}_{device.type}.csv"
    rows = []
    points = [("proposals", side0, q) for q in args.proposals] + [("input_size", s, q0) for s in args.sizes]
    model, text, built = None, None, None
    for sweep, side, q in points:
        if built != side:  # the CLIP input side is part of the model (its position embeddings)
            model = None
            model = build(args.preset, device, side)
            text = model.encode_text(_vocab(k))  # once per vocabulary
            built = side
        r = measure(model, criterion, text, side=side, q=q, device=device, amp=args.amp, repeats=args.repeats)
        patch = patch_of(model)
        row = {"preset": args.preset, "device": device.type, "device_name": dev_name, "threads": args.threads,
               "dtype": "bf16" if args.amp else "fp32", "sweep": sweep, "proposals": q, "input_size": side,
               "tokens": (side // patch) ** 2 if patch else "", **r}
        rows.append(row)
        print(f"{sweep:10s} S={side:4d} Q={q:4d}  infer {r['infer_ms']:9.2f} ms  post {r['post_ms']:9.2f} ms  "
              f"train {r['train_ms']:9.2f} ms  peak infer {r['infer_peak_mb']:8.1f} MB  "
              f"train {r['train_peak_mb']:8.1f} MB", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    for sweep, x in (("proposals", "proposals"), ("input_size", "input_size")):
        sub = sorted((r for r in rows if r["sweep"] == sweep), key=lambda r: r[x])
        for y in ("infer_ms", "train_ms", "train_peak_mb"):
            print(f"growth exponent of {y} in {x}: {slopes(sub, x, y)}")
    fig = args.figure or out.with_suffix(".png")
    plot(rows, fig, f"SMART classifier cost, {args.preset} configuration, {dev_name} "
                    f"({args.threads} threads, {'bf16' if args.amp else 'fp32'}), batch 1")
    print(f"wrote {out} and {fig} (MB = 2**20 bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
