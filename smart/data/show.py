"""``python -m smart show-dataset NAME --out grid.png``: a grid of images with their annotation overlay.

Each cell shows an image and, next to it, its panoptic segments (things outlined, each instance its
own shade of the class colour), its semantic map, or its referring target with the expression. A
legend names every class that appears in the grid.
"""

from __future__ import annotations

import argparse
import colorsys
import textwrap

import numpy as np

HELP = "draw a grid of a dataset's images with their panoptic/semantic/referring overlay and a legend"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="dataset name or alias (coco, coco_train, ade150, ade847, mapillary, pc59, pc459, refcoco, refcoco+)")
    p.add_argument("--out", required=True, help="output PNG (or PDF) path")
    p.add_argument("--profile", default="mini", choices=["mini", "paper"])
    p.add_argument("--root", default=None, help="dataset root (default: data/mini or $DETECTRON2_DATASETS)")
    p.add_argument("-n", "--num", type=int, default=8, help="number of images")
    p.add_argument("--start", type=int, default=0, help="index of the first image")


def class_colours(n: int) -> np.ndarray:
    """n well-separated colours (golden-ratio hues, alternating lightness)."""
    out = []
    for i in range(n):
        h = (i * 0.618033988749895) % 1.0
        l = 0.45 if i % 2 else 0.6
        out.append(colorsys.hls_to_rgb(h, l, 0.85))
    return (np.asarray(out) * 255).astype(np.uint8).reshape(-1, 3)


def overlay(sample: dict, ignore_label: int, palette: np.ndarray) -> tuple[np.ndarray, set[int]]:
    """An RGB annotation rendering and the set of train ids it shows."""
    img = sample["image"].astype(np.float32)
    H, W = img.shape[:2]
    vis = np.zeros((H, W, 3), np.float32)
    shown: set[int] = set()
    if "pan_ids" in sample:
        ids = sample["pan_ids"]
        for k, seg in enumerate(sample["segments_info"]):
            m = ids == seg["id"]
            col = palette[seg["train_id"]].astype(np.float32)
            if seg["isthing"]:
                col = np.clip(col * (0.75 + 0.5 * ((k * 0.37) % 1.0)), 0, 255)
            vis[m] = col
            shown.add(seg["train_id"])
            if seg["isthing"]:  # outline instances
                edge = m & ~(np.roll(m, 1, 0) & np.roll(m, -1, 0) & np.roll(m, 1, 1) & np.roll(m, -1, 1))
                vis[edge] = 255 if not seg["iscrowd"] else (255, 0, 255)
    elif "sem_seg" in sample:
        sem = sample["sem_seg"]
        valid = sem != ignore_label
        vis[valid] = palette[sem[valid].astype(np.int64)]
        shown |= set(np.unique(sem[valid]).tolist())
    elif "mask" in sample:
        vis = img * 0.35
        vis[sample["mask"]] = img[sample["mask"]]
        edge = sample["mask"] & ~(np.roll(sample["mask"], 1, 0) & np.roll(sample["mask"], -1, 0)
                                  & np.roll(sample["mask"], 1, 1) & np.roll(sample["mask"], -1, 1))
        vis[edge] = (255, 255, 0)
    return vis.astype(np.uint8), shown


def run(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from smart.data.registry import Dataset

    ds = Dataset.open(args.name, profile=args.profile, root=args.root)
    idx = list(range(args.start, min(len(ds), args.start + args.num)))
    palette = class_colours(len(ds.vocab))
    cols = 4
    rows = -(-len(idx) // cols)
    fig, axes = plt.subplots(rows, cols * 2, figsize=(cols * 2 * 1.6, rows * 1.9 + 0.3), squeeze=False)
    shown: set[int] = set()
    for ax in axes.ravel():
        ax.axis("off")
    for k, i in enumerate(idx):
        s = ds[i]
        vis, ids = overlay(s, ds.ignore_label, palette)
        shown |= ids
        a0, a1 = axes[k // cols, 2 * (k % cols)], axes[k // cols, 2 * (k % cols) + 1]
        a0.imshow(s["image"], interpolation="nearest")
        a1.imshow(vis, interpolation="nearest")
        a0.set_title(str(s["image_id"])[-14:], fontsize=6)
        if "sentences" in s:
            a1.set_title("\n".join(textwrap.wrap(s["sentences"][0], 26)), fontsize=5)
    title = f"{ds.name} ({args.profile}): {len(ds)} images, {len(ds.vocab)} classes"
    fig.suptitle(title, fontsize=9)
    if shown:
        handles = [Patch(color=palette[t] / 255.0, label=f"{ds.vocab[t].name}{' (thing)' if ds.vocab[t].isthing else ''}")
                   for t in sorted(shown)]
        fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=5.5, frameon=False,
                   bbox_to_anchor=(0.5, -0.02 - 0.022 * (len(handles) // 4)))
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(args.out, dpi=150, bbox_inches="tight", metadata={"Software": None} if str(args.out).endswith(".png") else None)
    plt.close(fig)
    print(f"wrote {args.out}: {title}")
    return 0
