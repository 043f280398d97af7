"""The CLIP side of SMART (paper §4): mask classifier, SMA, Distribution Adapter, QPT, text classifier.

Public API::

    from smart.model import SmartModelConfig, build_model, get_preset
    model = build_model(get_preset("tiny-test"))
    out = model(images_0_255, proposal_mask_logits, vocabulary)   # pred_logits, pred_masks, ...

Importing this package does not import open_clip; the builders do, on first use.
"""

from smart.model.config import (
    LORA_TARGETS,
    TUNE_TARGETS,
    SmartModelConfig,
    get_preset,
    list_presets,
    load_model_config,
    register_preset,
)

__all__ = [
    "LORA_TARGETS", "TUNE_TARGETS", "SmartModelConfig", "build_model", "get_preset", "list_presets",
    "load_model_config", "register_preset",
]


def build_model(*args, **kwargs):
    """See :func:`smart.model.smart.build_model` (imported lazily: it needs torch and open_clip)."""
    from smart.model.smart import build_model as _build

    return _build(*args, **kwargs)
