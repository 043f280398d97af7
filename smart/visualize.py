"""Pictures of segmentations: an image with its segments coloured, named on the segments, and a legend.

Used by ``python -m smart predict`` (one overlay per image) and by the qualitative figures of the DAG
(``python -m smart figure qualitative``: input / ground truth / frozen baseline / SMART, paper Figs. 4-5).
Everything is drawn with PIL (no matplotlib), so a picture costs milliseconds.

A segmentation is given as an id map plus a list of segments ``{"id", "train_id", "isthing"}``; a semantic
label map is turned into that form by :func:`segments_from_labels`. Colours come from
:func:`smart.data.show.class_colours` (one per class); instances of a thing class get shades of it and a
white outline.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from smart.data.show import class_colours

MIN_SIDE = 384  # small images are enlarged (nearest) to at least this short side, so labels stay legible


def font(size: int) -> ImageFont.ImageFont:
    """PIL's built-in scalable font at ``size`` px (a bitmap font where FreeType is missing)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType
        return ImageFont.load_default()


def palette_of(vocab) -> np.ndarray:
    """(K, 3) uint8 colours of a :class:`smart.data.categories.Vocabulary`: its own where it has them."""
    pal = class_colours(max(len(vocab), 1))
    for c in vocab:
        if c.color is not None:
            pal[c.train_id] = c.color
    return pal


def segments_from_labels(labels: np.ndarray, *, ignore_label: int | None = None) -> tuple[np.ndarray, list[dict]]:
    """(H, W) semantic label map → (id map, segments): one stuff-like segment per class present."""
    labels = np.asarray(labels)
    ids = np.zeros(labels.shape, np.int32)  # 0 = unlabelled
    segments = []
    for k, c in enumerate(int(c) for c in np.unique(labels) if ignore_label is None or c != ignore_label):
        ids[labels == c] = k + 1
        segments.append({"id": k + 1, "train_id": c, "isthing": False})
    return ids, segments


def _edges(ids: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels whose right or lower neighbour belongs to another segment."""
    e = np.zeros(ids.shape, bool)
    e[:, :-1] |= ids[:, :-1] != ids[:, 1:]
    e[:-1, :] |= ids[:-1, :] != ids[1:, :]
    return e


def _label_point(mask: np.ndarray) -> tuple[int, int] | None:
    """(row, col) of the pixel of ``mask`` farthest from its border (where a label fits best)."""
    from scipy.ndimage import distance_transform_edt

    if not mask.any():
        return None
    step = max(1, max(mask.shape) // 160)  # a coarse grid is precise enough to place a label
    small = mask[::step, ::step]
    if not small.any():
        small, step = mask, 1
    d = distance_transform_edt(np.pad(small, 1))[1:-1, 1:-1]  # (h, w) distance to the nearest outside pixel
    r, c = np.unravel_index(int(np.argmax(d)), d.shape)
    return int(r) * step + step // 2, int(c) * step + step // 2


def render(image: np.ndarray, ids: np.ndarray, segments: Sequence[dict], names: Sequence[str], *,
           palette: np.ndarray | None = None, alpha: float = 0.55, title: str | None = None,
           labels: bool = True, legend: bool = True, min_side: int = MIN_SIDE,
           void_dim: float = 0.5) -> Image.Image:
    """An overlay picture of one segmentation.

    Args:
        image: (H, W, 3) uint8 RGB.
        ids: (H, W) segment ids (0 = no segment), same size as ``image``.
        segments: ``{"id", "train_id", "isthing"}`` per segment (``train_id`` indexes ``names``).
        names: class names in contiguous order (the legend and the labels).
        palette: (K, 3) uint8 class colours (default :func:`class_colours`).
        alpha: opacity of the colours over the image.
        title: a line above the picture.
        labels: write each segment's class name on it (segments too small for the text are skipped).
        legend: a column right of the picture naming every class shown, with its colour.
        min_side: enlarge (nearest) so that the short side is at least this many pixels.
        void_dim: brightness of pixels that no segment covers (1.0: unchanged).

    Returns:
        an RGB PIL image.
    """
    image = np.asarray(image, np.uint8)
    ids = np.asarray(ids)
    if ids.shape != image.shape[:2]:
        raise ValueError(f"segment map {ids.shape} and image {image.shape[:2]} differ in size")
    palette = class_colours(max(len(names), 1)) if palette is None else np.asarray(palette, np.uint8)
    scale = max(1, -(-min_side // max(1, min(ids.shape))))  # integer factor: pixels stay square
    if scale > 1:
        image = image.repeat(scale, 0).repeat(scale, 1)
        ids = ids.repeat(scale, 0).repeat(scale, 1)
    H, W = ids.shape
    colour = np.zeros((H, W, 3), np.float32)
    covered = np.zeros((H, W), bool)
    shown: list[int] = []
    for k, s in enumerate(segments):
        m = ids == s["id"]  # (H, W)
        col = palette[s["train_id"]].astype(np.float32)
        if s.get("isthing"):
            col = np.clip(col * (0.75 + 0.5 * ((k * 0.37) % 1.0)), 0, 255)  # instances: shades of the class colour
        colour[m] = col
        covered |= m
        if s["train_id"] not in shown:
            shown.append(s["train_id"])
    out = image.astype(np.float32)
    out[covered] = (1 - alpha) * out[covered] + alpha * colour[covered]
    out[~covered] *= void_dim
    out[_edges(ids) & (covered | np.roll(covered, -1, 0) | np.roll(covered, -1, 1))] = 255.0
    pic = Image.fromarray(np.clip(out + 0.5, 0, 255).astype(np.uint8))
    size = max(11, min(H, W) // 24)
    f = font(size)
    if labels:
        draw = ImageDraw.Draw(pic)
        for s in segments:
            m = ids == s["id"]
            name = names[s["train_id"]]
            w = draw.textlength(name, font=f)
            if m.sum() < 2 * w * size:  # too small for its name
                continue
            pt = _label_point(m)
            if pt is not None:
                r, c = pt
                x = min(max(c - w / 2, 0), W - w)
                y = min(max(r - size / 2, 0), H - size)
                draw.text((x, y), name, fill=(255, 255, 255), font=f, stroke_width=max(1, size // 8),
                          stroke_fill=(0, 0, 0))
    if not legend and not title:
        return pic
    pad = size // 2
    rows = [names[t] for t in sorted(shown, key=lambda t: names[t])] if legend else []
    probe = ImageDraw.Draw(pic)
    legend_w = (int(max((probe.textlength(n, font=f) for n in rows), default=0)) + size + 3 * pad) if rows else 0
    title_h = size + 2 * pad if title else 0
    canvas = Image.new("RGB", (W + legend_w, max(H + title_h, title_h + pad + len(rows) * (size + pad))),
                       (255, 255, 255))
    canvas.paste(pic, (0, title_h))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((pad, pad), title, fill=(0, 0, 0), font=f)
    by_name = {names[t]: t for t in shown}
    for i, n in enumerate(rows):
        y = title_h + pad + i * (size + pad)
        draw.rectangle([W + pad, y, W + pad + size, y + size], fill=tuple(int(v) for v in palette[by_name[n]]),
                       outline=(0, 0, 0))
        draw.text((W + 2 * pad + size, y), n, fill=(0, 0, 0), font=f)
    return canvas


def grid(rows: Sequence[Sequence[Image.Image]], *, column_titles: Sequence[str] = (), gap: int = 8,
         title_size: int = 18) -> Image.Image:
    """Pictures in rows and columns (each cell top-left aligned), with a title above each column."""
    ncol = max(len(r) for r in rows)
    col_w = [max(r[j].width for r in rows if j < len(r)) for j in range(ncol)]
    row_h = [max(p.height for p in r) for r in rows]
    f = font(title_size)
    head = title_size + 2 * gap if column_titles else 0
    canvas = Image.new("RGB", (sum(col_w) + gap * (ncol + 1), head + sum(row_h) + gap * (len(rows) + 1)),
                       (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    x = gap
    for j, t in enumerate(column_titles):
        draw.text((x, gap), t, fill=(0, 0, 0), font=f)
        x += col_w[j] + gap
    y = head + gap
    for r, h in zip(rows, row_h):
        x = gap
        for j, p in enumerate(r):
            canvas.paste(p, (x, y))
            x += col_w[j] + gap
        y += h + gap
    return canvas
