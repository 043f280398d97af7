"""Total and trainable parameter counts of a model config, by group (``python -m smart model-summary``).

The model is built on the ``meta`` device (shapes only: no memory, no weights, about a second even for
ViT-L/14-336), so the paper configuration's trainable count (26,438,193, "26M" in the paper; spec
§4.5) can be checked on any machine.
"""

from __future__ import annotations

# The paper reports 26M trainable parameters (§5.3); spec §4.5 accepts [25.5M, 26.5M] for ViT-L.
PAPER_TRAINABLE_RANGE = (25_500_000, 26_500_000)


def summarize(cfg) -> dict:
    from smart.model.smart import build_model

    model = build_model(cfg, device="meta")
    counts = model.parameter_counts()
    return {"config": cfg.to_dict(), "groups": {k: v for k, v in counts.items() if k != "all"},
            "total": counts["all"]["total"], "trainable": counts["all"]["trainable"]}
