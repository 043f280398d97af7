"""Real-dataset download and conversion: ``python -m smart prepare DATASET``.

One module per benchmark, each with conversion functions that take explicit paths (so that tests
and other tools can call them) and a ``prepare(ctx)`` entry point used by the CLI:

* :mod:`.coco` — COCO panoptic 2017 → ``coco/panoptic_semseg_{train,val}2017`` (133-class semseg);
* :mod:`.ade20k` — ADE20K-150 → ``annotations_detectron2`` and ``ade20k_panoptic_{train,val}``;
* :mod:`.ade847` — full ADE20K 2021_17_01 → 847-class 16-bit TIFFs;
* :mod:`.pascal_context` — PASCAL Context 59 (PNG) and 459 (16-bit TIFF);
* :mod:`.mapillary` — Mapillary Vistas v1.2 (layout verification only);
* :mod:`.refcoco` — RefCOCO / RefCOCO+ (UNC splits) → ``refer/<name>/<split>.json``;
* :mod:`.download` — resumable, checksummed HTTP downloads and archive extraction;
* :mod:`.checks` — the post-preparation checks (validation counts, panoptic ids, semseg range).

Layout and conversion rules: ``docs/datasets.md`` (§1-§6, §8). Outputs are written atomically
(temporary file + rename) and existing outputs are kept, so an interrupted run continues where it
stopped; ``<root>/.prepared/<dataset>.json`` is written only when a dataset is complete.
"""

DATASETS = (
    "coco",
    "ade20k_150",
    "ade20k_847",
    "pascal_ctx_59",
    "pascal_ctx_459",
    "mapillary_vistas",
    "refcoco",
    "refcoco+",
)

# Order used by ``prepare all``: public downloads first, PC-459 after PC-59, the datasets that need a
# personal (registration) download last.
ALL_ORDER = (
    "coco",
    "ade20k_150",
    "pascal_ctx_59",
    "pascal_ctx_459",
    "refcoco",
    "refcoco+",
    "ade20k_847",
    "mapillary_vistas",
)

# What a dataset's preparation reads from another's (the DAG orders the prepare jobs by it): PC-459
# reuses PC-59's image copy; RefCOCO+ shares RefCOCO's COCO train2014 download (one writer at a time).
REQUIRES: dict[str, tuple[str, ...]] = {
    "pascal_ctx_459": ("pascal_ctx_59",),
    "refcoco+": ("refcoco",),
}
