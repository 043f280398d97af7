"""Combine panoptic and semantic results into one metrics record per (run, dataset)."""

from __future__ import annotations

import math
from typing import Any, Mapping

_SPLITS = (("All", ""), ("Things", "_th"), ("Stuff", "_st"))


def _pct(v: Any) -> float:
    return math.nan if v is None else 100.0 * float(v)


def flat_metrics(panoptic: Mapping | None = None, semantic: Mapping | None = None) -> dict:
    """detectron2-style flat numbers in percent: PQ, SQ, RQ, PQ_th, ..., RQ_st, mIoU, mIoU_d2v06, fwIoU,
    mACC, pACC (only those whose result is given)."""
    out: dict = {}
    if panoptic is not None:
        for split, suffix in _SPLITS:
            for k in ("pq", "sq", "rq"):
                out[f"{k.upper()}{suffix}"] = _pct(panoptic[split][k])
    if semantic is not None:
        for k in ("mIoU", "mIoU_d2v06", "fwIoU", "mACC", "pACC"):
            out[k] = semantic[k]
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
