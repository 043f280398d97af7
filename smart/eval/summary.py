"""Combine panoptic and semantic results into one metrics record per (run, dataset)."""

from __future__ import annotations

import math
from typing import Any, Mapping

_SPLITS = (("All", ""), ("Things", "_th"), ("Stuff", "_st"))


def _pct(v: Any) -> float:
    return math.nan if v is None else 100.0 * float(v)


def flat_metrics(panoptic: Mapping | None = None, semantic: Mapping | None = None,
                 groups: Mapping[str, str] | None = None) -> dict:
    """detectron2-style flat numbers in percent: PQ, SQ, RQ, PQ_th, ..., RQ_st, mIoU, mIoU_d2v06, fwIoU,
    mACC, pACC (only those whose result is given), and with ``groups`` the per-group numbers of
    :func:`group_metrics`."""
    out: dict = {}
    if panoptic is not None:
        for split, suffix in _SPLITS:
            for k in ("pq", "sq", "rq"):
                out[f"{k.upper()}{suffix}"] = _pct(panoptic[split][k])
    if semantic is not None:
        for k in ("mIoU", "mIoU_d2v06", "fwIoU", "mACC", "pACC"):
            out[k] = semantic[k]
    if groups is not None:
        out.update(group_metrics(panoptic, semantic, groups))
    return out


def group_metrics(panoptic: Mapping | None, semantic: Mapping | None, groups: Mapping[str, str]) -> dict:
    """PQ and mIoU over the classes of each group of the mini world (``PQ_seen``, ``PQ_novel_comb``,
    ``PQ_novel_attr``, ``mIoU_seen``, ...; percent), averaged as the overall numbers are: PQ over the
    classes panopticapi counts (with a TP, FP or FN), mIoU over the classes with ground-truth pixels
    (detectron2 HEAD). A group with no such class gets NaN. Classes the mapping does not name are in no group.

    Args:
        panoptic: the PQ summary (``per_class`` entries with ``name``, ``pq``, ``counted``) or None.
        semantic: the mIoU summary (``per_class`` entries with ``name``, ``IoU``; None = no GT pixels) or None.
        groups: class name -> group (:func:`smart.data.mini.groups.groups_by_name`).
    """
    from smart.data.mini.groups import GROUPS, SHORT

    out: dict = {}
    for g in GROUPS:
        if panoptic is not None:
            vals = [c["pq"] for c in panoptic["per_class"].values() if c.get("counted") and groups.get(c["name"]) == g]
            out[f"PQ_{SHORT[g]}"] = 100.0 * sum(vals) / len(vals) if vals else math.nan
        if semantic is not None:
            vals = [c["IoU"] for c in semantic["per_class"].values()  # no GT pixels: IoU None / NaN
                    if c.get("IoU") is not None and math.isfinite(c["IoU"]) and groups.get(c["name"]) == g]
            out[f"mIoU_{SHORT[g]}"] = sum(vals) / len(vals) if vals else math.nan
    return out


def metrics_record(panoptic: Mapping | None = None, semantic: Mapping | None = None,
                   provenance: Mapping | None = None) -> dict:
    """``{"metrics": flat, "panoptic": ..., "semantic": ..., "definitions": {...}}`` for
    :func:`smart.eval.io.write_metrics_json`; each part keeps its own definitions."""
    rec: dict = {"metrics": flat_metrics(panoptic, semantic)}
    definitions: dict = {}
    if panoptic is not None:
        rec["panoptic"] = dict(panoptic)
        definitions["panoptic"] = panoptic.get("definitions")
    if semantic is not None:
        rec["semantic"] = dict(semantic)
        definitions["semantic"] = semantic.get("definitions")
    if provenance:
        definitions["provenance"] = dict(provenance)
    rec["definitions"] = definitions
    return rec
