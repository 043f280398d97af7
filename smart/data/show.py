"""A grid of a dataset's images with their annotation overlay (``python -m smart show-dataset``).

Each cell shows an image and, next to it, its panoptic segments (things outlined, each instance its
own shade of the class colour), its semantic map, or its referring target with the expression. A
legend names every class that appears in the grid.
"""

from __future__ import annotations

import colorsys
import textwrap
from pathlib import Path

import numpy as np


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


def draw_grid(name: str, *, out: str | Path, profile: str = "mini", root: str | None = None, num: int = 8,
              start: int = 0, user: dict | None = None) -> str:
    """Draw ``num`` images of dataset ``name`` from index ``start`` with their overlays and a legend into
    ``out`` (PNG or PDF, written atomically); returns the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from smart.data.registry import Dataset

    ds = Dataset.open(name, profile=profile, root=root, user=user)
    idx = list(range(start, min(len(ds), start + num)))
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
    title = f"{ds.name} ({profile}): {len(ds)} images, {len(ds.vocab)} classes"
    fig.suptitle(title, fontsize=9)
    if shown:
        handles = [Patch(color=palette[t] / 255.0, label=f"{ds.vocab[t].name}{' (thing)' if ds.vocab[t].isthing else ''}")
                   for t in sorted(shown)]
        fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=5.5, frameon=False,
                   bbox_to_anchor=(0.5, -0.02 - 0.022 * (len(handles) // 4)))
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    from smart.io import atomic_path

    fmt = "png" if str(out).endswith(".png") else None
    with atomic_path(out) as tmp:  # creates the folder; a failed save leaves nothing partial
        fig.savefig(tmp, format=fmt or Path(out).suffix.lstrip("."), dpi=150, bbox_inches="tight",
                    metadata={"Software": None} if fmt == "png" else None)
    plt.close(fig)
    return title
