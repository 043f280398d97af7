"""Qualitative figures (the analogue of the paper's Figs. 4 and 5): for the first images of each
benchmark, a grid with one row per image and the columns input / ground truth / frozen baseline / SMART,
each segmentation coloured, named on the segments and with a legend (:mod:`smart.visualize`).

Both models run as evaluation runs them (:func:`smart.predict.load_predictor` with the benchmark's
test-time generator settings and the DAG's thresholds), with the generator on the fly. Panoptic
benchmarks show panoptic segments (instances in shades of their class colour), semantic-only ones
semantic maps. Written by ``python -m smart qualitative`` to ``results/figures/qualitative/<dataset>.png``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def gt_segmentation(sample: dict, ignore_label: int) -> tuple[np.ndarray, list[dict]]:
    """A decoded sample's ground truth as (id map, segments ``{"id", "train_id", "isthing"}``)."""
    from smart.visualize import segments_from_labels

    if "pan_ids" in sample:
        ids = np.asarray(sample["pan_ids"])
        segs = [{"id": s["id"], "train_id": s["train_id"], "isthing": s["isthing"]} for s in sample["segments_info"]]
        return ids, segs
    return segments_from_labels(sample["sem_seg"], ignore_label=ignore_label)


def prediction_segmentation(result: dict) -> tuple[np.ndarray, list[dict]]:
    """A :class:`smart.predict.Predictor` result as (id map, segments): panoptic where there is one."""
    from smart.visualize import segments_from_labels

    if "pan_ids" in result:
        return result["pan_ids"], result["segments"]
    return segments_from_labels(result["sem_label"])


def make_qualitative(*, exp: Any, dataset: str, models: dict[str, Any], out: str | Path, images: int,
                     root: str | None) -> Path:
    """One benchmark's grid: ``models`` maps a column title to a :class:`smart.predict.Predictor`
    built for this benchmark (its vocabulary and test-time settings)."""
    from smart.data.registry import Dataset
    from smart.io import save_image_atomic
    from smart.visualize import grid, palette_of, render

    ds = Dataset.open(dataset, profile=exp.profile, root=root, user=exp.user_datasets)
    names = ds.vocab.names
    palette = palette_of(ds.vocab)
    rows = []
    for i in range(min(images, len(ds))):
        sample = ds[i]
        img = sample["image"]
        row = [render(img, np.zeros(img.shape[:2], np.int32), [], names, palette=palette, legend=False,
                      void_dim=1.0)]
        ids, segs = gt_segmentation(sample, ds.ignore_label)
        row.append(render(img, ids, segs, names, palette=palette))
        for predictor in models.values():
            ids, segs = prediction_segmentation(predictor([img])[0])
            row.append(render(img, ids, segs, names, palette=palette))
        rows.append(row)
    pic = grid(rows, column_titles=["input", "ground truth", *models])
    out = Path(out)
    save_image_atomic(pic, out, "PNG")
    return out
