"""Where mask proposals come from, in training and in evaluation alike.

* :class:`StoreSource` — proposals read from a cache written by ``python -m smart cache-proposals``
  (the frozen generator run once per image; :mod:`smart.data.proposals`);
* :class:`GeneratorSource` — a mask generator run on the fly on each (augmented) batch: frozen, or
  tuned with SMART (Table 3e, Fig. 2b);
* :func:`build_proposal_source` — the training side's choice between the two;
* :func:`store_proposals`, :class:`OnTheFlyProposals`, :func:`generator_proposals` — the evaluation
  side: batches of padded proposals, and a generator under the profile's test-time settings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from smart.errors import ConfigError, InputError

if TYPE_CHECKING:
    from smart.config import TrainConfig


class StoreSource:
    """Cached proposals: any object with ``.get(image_id) -> {"mask_logits": (K, h, w), ...}`` (duck-typed;
    ``smart.data.proposals.ProposalStore`` is one).

    The mask logits must cover the image's field of view. If the record also carries the generator's
    ``input_size`` (Hp, Wp) (padded input) and ``image_size`` (h, w) (the image inside it), the
    padding is cropped off first. Augmentation resamples them with the image (:mod:`smart.train.augment`).
    """

    kind = "store"
    trainable = False

    def __init__(self, store: Any, *, name: str | None = None):
        if not callable(getattr(store, "get", None)):
            raise InputError("a proposal store needs a .get(image_id) method", field="proposals")
        self.store = store
        self.name = name or type(store).__name__

    def get(self, image_id: Any, *, image_size: tuple[int, int] | None = None) -> torch.Tensor:
        """(K, h, w) float32 mask logits of one image, covering the image (padding removed).

        ``image_size``: the (H, W) of the image being read; proposals recorded for another size (the image
        changed since the cache was written) are refused, naming the command that rebuilds the cache.
        """
        try:
            rec = self.store.get(image_id)
        except KeyError:
            raise InputError(f"no proposals for image {image_id!r}", path=self.name, field="proposals") from None
        if rec is None or "mask_logits" not in rec:
            raise InputError(f"no mask_logits for image {image_id!r}", path=self.name, field="proposals")
        made_for = rec.get("original_size")
        if image_size is not None and made_for is not None and tuple(made_for) != tuple(image_size):
            raise InputError(f"stale cache: the proposals of image {image_id!r} were made for a {made_for[1]}x"
                             f"{made_for[0]} image, which is now {image_size[1]}x{image_size[0]}; rebuild the cache "
                             f"(`snakemake --cores all --forcerun <its cache_proposals rule>`, or delete the folder "
                             f"and rerun)", path=self.name, field="original_size")
        m = torch.as_tensor(np.asarray(rec["mask_logits"], dtype=np.float32) if not isinstance(
            rec["mask_logits"], torch.Tensor) else rec["mask_logits"]).float()
        if m.dim() != 3:
            raise InputError(f"mask_logits of image {image_id!r} must be (K, h, w), got {tuple(m.shape)}",
                             path=self.name, field="proposals")
        if "input_size" in rec and "image_size" in rec:
            (Hp, Wp), (hi, wi) = rec["input_size"], rec["image_size"]
            h, w = m.shape[-2:]
            rows, cols = max(1, round(h * hi / Hp)), max(1, round(w * wi / Wp))
            m = m[:, :rows, :cols]
        return m

    def check_coverage(self, image_ids: Sequence[Any]) -> None:
        """Fail early (naming the store and the first missing ids) if training images lack proposals."""
        have = getattr(self.store, "image_ids", None)
        if have is None:
            return
        have = {str(i) for i in have}
        missing = [i for i in image_ids if str(i) not in have]
        if missing:
            raise InputError(f"{len(missing)} of {len(image_ids)} training images have no proposals "
                             f"(first: {missing[:5]})", path=self.name, field="proposals")

    def describe(self) -> dict[str, Any]:
        n = getattr(self.store, "image_ids", None)
        return {"kind": self.kind, "name": self.name, "num_images": len(n) if n is not None else -1}


class GeneratorSource:
    """Proposals computed on the fly, on the augmented batch, by a mask generator
    (``smart.model.mask_generator``): frozen (no grad, eval) unless ``tune_mask_generator`` (Table 3e)."""

    kind = "generator"

    def __init__(self, generator: nn.Module, *, config: dict[str, Any] | None = None):
        self.generator = generator
        self.config = dict(config or {})

    @property
    def trainable(self) -> bool:
        return bool(getattr(self.generator, "tune", False))

    def propose(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB 0-255 on the generator's device → (B, Q, h, w) mask logits covering the images."""
        batch = self.generator.preprocess(images)
        out = self.generator(batch["pixel_values"])
        m = out["mask_logits"]  # (B, Q, hm, wm) over the padded input
        Hp, Wp = batch["pixel_values"].shape[-2:]
        (hi, wi) = batch["image_sizes"][0]
        if (Hp, Wp) != (hi, wi):
            rows, cols = max(1, round(m.shape[-2] * hi / Hp)), max(1, round(m.shape[-1] * wi / Wp))
            m = m[..., :rows, :cols]
        return m

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "config": {k: (list(v) if isinstance(v, tuple) else v)
                                              for k, v in self.config.items()}}


def build_proposal_source(proposals: Any, *, train_cfg: TrainConfig, model_cfg: Any,
                          device: torch.device) -> StoreSource | GeneratorSource:
    """``proposals``: None (on-the-fly generator ``train_cfg.generator``), a store directory, or an
    object with ``.get(image_id)``."""
    if proposals is not None:
        if model_cfg.tune_mask_generator:
            raise ConfigError("tune_mask_generator trains the generator, so it needs on-the-fly proposals: "
                              "drop --proposals for this cell", field="model.tune_mask_generator")
        if isinstance(proposals, (str, Path)):
            path = Path(proposals)
            if not path.exists():
                raise InputError("proposal store not found", path=path, field="--proposals")
            try:
                from smart.data.proposals import ProposalStore
            except ImportError as exc:
                raise InputError(f"cannot read proposal stores: {exc}", path=path, field="--proposals") from None
            return StoreSource(ProposalStore.open(path), name=str(path))
        return StoreSource(proposals)
    from smart.model.mask_generator import build_mask_generator

    gcfg = {**train_cfg.generator_config, "tune_mask_generator": bool(model_cfg.tune_mask_generator)}
    for k in ("pixel_mean", "pixel_std"):
        if isinstance(gcfg.get(k), list):
            gcfg[k] = tuple(gcfg[k])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(train_cfg.seed + 1)  # the random init of the tiny/mini generators is reproducible
        try:
            generator = build_mask_generator(gcfg)
        except (TypeError, ValueError, KeyError) as exc:
            raise ConfigError(f"bad mask-generator settings: {exc}",
                              field=f"generators.{train_cfg.generator}") from None
        except OSError as exc:  # a missing local directory / unreachable hub name
            raise InputError(f"cannot load the mask generator {gcfg.get('pretrained')!r}: {exc}",
                             path=gcfg.get("pretrained"), field=f"generators.{train_cfg.generator}.pretrained") from None
    return GeneratorSource(generator.to(device), config=gcfg)


def _pad_stack(props: list[torch.Tensor], pad_logit: float) -> torch.Tensor:
    """B × (K_b, h, w) → (B, K, h, w), missing proposals filled with ``pad_logit`` (empty masks)."""
    K = max(p.shape[0] for p in props)
    h, w = props[0].shape[-2:]
    out = torch.full((len(props), K, h, w), float(pad_logit))  # (B, K, h, w)
    for b, p in enumerate(props):
        if tuple(p.shape[-2:]) != (h, w):
            raise InputError(f"proposals of one batch differ in size: {tuple(p.shape[-2:])} vs {(h, w)}",
                             field="proposals")
        out[b, :p.shape[0]] = p
    return out


def store_proposals(path: str | Path, *, pad_logit: float) -> Callable:
    """Proposals read from a cache written by ``python -m smart cache-proposals``."""
    from smart.data.proposals import ProposalStore

    path = Path(path)
    if not path.exists():
        raise InputError("proposal store not found (run cache-proposals first)", path=path, field="--proposals")
    source = StoreSource(ProposalStore.open(path), name=str(path))

    def fn(samples: list[dict], images: torch.Tensor) -> torch.Tensor:
        return _pad_stack([source.get(s["image_id"], image_size=s["image"].shape[:2]) for s in samples],
                          pad_logit)  # (B, K, h, w)

    return fn


class OnTheFlyProposals:
    """Proposals of a mask generator run at evaluation (a cell that tuned its generator, the benchmark,
    referring segmentation), made under the same test-time settings as the caches of the profile
    (``proposals.<profile>``: test size of each dataset, top-k, score). Call :meth:`for_dataset` before
    the images of a dataset; the object is then ``fn(samples, images) -> (B, Q, h, w)`` mask logits."""

    def __init__(self, generator: torch.nn.Module, *, config: dict, test_time: Any):
        """
        Args:
            generator: a built mask generator (frozen or with tuned weights loaded), on its device.
            config: its generator config (recorded by :meth:`describe`).
            test_time: a :class:`smart.data.proposals.ProposalCacheConfig` (``test_time(dataset)``).
        """
        self.generator, self.test_time = generator, test_time
        self.source = GeneratorSource(generator, config=config)
        self.settings: dict = {}

    def for_dataset(self, name: str) -> OnTheFlyProposals:
        return self.use_settings(self.test_time.test_time(name))

    def use_settings(self, settings: dict) -> OnTheFlyProposals:
        """Apply test-time generator settings (``resize``, ``min_size``, ``max_size``, ``top_k``,
        ``score_mode``) directly, e.g. ``python -m smart predict``'s test size for images of any size."""
        self.settings = dict(settings)
        self.generator.set_test_time(self.settings)
        return self

    def __call__(self, samples: list[dict], images: torch.Tensor) -> torch.Tensor:
        if not self.settings:
            raise RuntimeError("OnTheFlyProposals.for_dataset(name) must be called before the first batch")
        return self.source.propose(images).float()  # (B, Q, h, w) over each image's field of view

    def describe(self) -> str:
        s = self.settings
        size = f"shortest side {s['min_size']} / max {s['max_size']}" if s.get("resize") else "no resize"
        return f"top {s.get('top_k')} by {s.get('score_mode')}, {size}"


def generator_proposals(gcfg: dict, *, state: dict | None, device: torch.device | str, source: str,
                        test_time: Any) -> OnTheFlyProposals:
    """A mask generator (with a tuned generator's weights when given) run on the fly under the profile's
    test-time settings ``test_time`` (:class:`smart.data.proposals.ProposalCacheConfig`)."""
    from smart.model.mask_generator import build_mask_generator
    from smart.train.checkpoint import load_trainable_state

    gcfg = dict(gcfg)
    for k in ("pixel_mean", "pixel_std"):
        if isinstance(gcfg.get(k), list):
            gcfg[k] = tuple(gcfg[k])
    gcfg.pop("tune_mask_generator", None)
    try:
        generator = build_mask_generator({**gcfg, "tune_mask_generator": bool(state)})
    except OSError as exc:
        raise InputError(f"cannot load the mask generator {gcfg.get('pretrained')!r}: {exc}",
                         path=gcfg.get("pretrained"), field="generator") from None
    if state:
        load_trainable_state(generator, state, source=source)
    generator.eval().to(device)
    return OnTheFlyProposals(generator, config=gcfg, test_time=test_time)
