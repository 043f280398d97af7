"""Decode and validate every sample of a dataset and gather statistics (``python -m smart check-dataset``).

Reads each image and annotation through the registry (which raises a clear error on any
inconsistency) and writes a JSON summary: image count, classes present, per-class pixel fractions,
ignored-pixel fraction and, in the mini profile, which present classes are held out from the
COCO-like training set.
"""

from __future__ import annotations

import numpy as np

from smart.data.mini.groups import groups_by_name


def dataset_stats(ds, limit: int | None = None) -> dict:
    from smart.utils.logging import progress

    K = len(ds.vocab)
    pixels = np.zeros(K, np.int64)
    ignored = total = 0
    instances = np.zeros(K, np.int64)
    crowd = 0
    n = len(ds) if limit is None else min(limit, len(ds))
    for i in progress(range(n), desc=f"check {ds.name}", unit="img"):
        s = ds[i]
        if "pan_ids" in s:
            ids = s["pan_ids"]
            total += ids.size
            ignored += int((ids == 0).sum())
            for seg in s["segments_info"]:
                pixels[seg["train_id"]] += int((ids == seg["id"]).sum())
                if seg["isthing"]:
                    instances[seg["train_id"]] += 1
                crowd += seg["iscrowd"]
        elif "sem_seg" in s:
            sem = s["sem_seg"].astype(np.int64)
            valid = sem != ds.ignore_label
            total += sem.size
            ignored += int((~valid).sum())
            pixels += np.bincount(sem[valid], minlength=K)[:K]
        elif "mask" in s:
            total += s["mask"].size
            if s.get("category_id") is not None and ds.vocab.has_id(s["category_id"]):
                t = ds.vocab.by_id(s["category_id"]).train_id
                pixels[t] += int(s["mask"].sum())
                instances[t] += 1
    present = [int(t) for t in np.nonzero(pixels)[0]]
    stats = {
        "dataset": ds.name, "root": str(ds.root), "images": n, "num_classes": K,
        "ignore_label": ds.ignore_label, "ignored_pixel_fraction": round(ignored / max(total, 1), 6),
        "classes_present": len(present), "crowd_segments": int(crowd),
        "per_class": {ds.vocab[t].name: {"pixel_fraction": round(float(pixels[t]) / max(total, 1), 6),
                                         "instances": int(instances[t])} for t in present},
    }
    groups = groups_by_name(ds.root)
    if groups is not None:  # mini profile: which present classes are held out from COCO-like training
        names = [ds.vocab[t].name for t in present]
        stats["held_out_classes_present"] = sorted(n for n in names if groups.get(n, "seen") != "seen")
        stats["novel_attribute_classes_present"] = sorted(n for n in names if groups.get(n) == "novel_attribute")
    return stats
