"""Contrastive pretraining of the mini profile's CLIP on the mini world's caption corpus.

The mini profile needs a CLIP that knows every concept of the world — including the combinations
held out from segmentation training — before SMART tunes it, as OpenAI's CLIP knows ADE's classes
before anyone trains on COCO. This module trains an ``open_clip.CLIP`` (open_clip's own architecture,
tokenizer and ``ClipLoss``) on the WebDataset shards written by ``make-mini captions`` and saves it as
an ordinary open_clip checkpoint directory (``open_clip_config.json`` + ``open_clip_model.safetensors``)
that loads with ``open_clip.create_model("local-dir:<dir>")`` — the same call path as real weights.

Batches mix *hard-negative groups* (images of one scene that differ only in the things' fill
pattern, the attribute slowest to learn) with random samples, so both pattern and stuff texture are
learned within CPU-minutes.

Evaluation (``zero_shot``): freshly drawn single-object images of every thing class and stuff-only
images of every stuff class, classified against all class names of their kind with the 14-template
prompt ensemble, reported per class group (``world.Concept.group``: seen by the COCO-like segmentation
training, novel combinations, novel attributes; ``held_out`` = both novel groups).
"""

from __future__ import annotations

import io
import json
import logging
import math
import tarfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from smart import provenance
from smart.errors import DatasetError
from smart.train.pretrain_config import MiniClipConfig  # noqa: F401 (re-exported)
from smart.utils.perf import attention_backend

_log = logging.getLogger(__name__)

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


# --------------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------------


@dataclass
class CaptionCorpus:
    images: np.ndarray  # (N, S, S, 3) uint8
    captions: list[str]
    groups: np.ndarray  # (N,) group id, -1 = ungrouped
    group_ids: np.ndarray = field(default=None)  # unique group ids (groups of equal size)

    def __post_init__(self):
        self.group_ids = np.unique(self.groups[self.groups >= 0])


def load_corpus(captions_dir: str | Path) -> CaptionCorpus:
    """Read every WebDataset shard listed in ``<captions_dir>/manifest.json``."""
    captions_dir = Path(captions_dir)
    man_path = captions_dir / "manifest.json"
    try:
        manifest = json.loads(man_path.read_text())
    except FileNotFoundError:
        raise DatasetError("caption corpus manifest not found (run `python -m smart make-mini captions`)",
                           path=man_path) from None
    samples: dict[str, dict] = {}
    for shard in manifest["shards"]:
        path = captions_dir / shard
        try:
            with tarfile.open(path) as tar:
                for m in tar.getmembers():
                    key, _, ext = m.name.partition(".")
                    samples.setdefault(key, {})[ext] = tar.extractfile(m).read()
        except (OSError, tarfile.TarError) as exc:
            raise DatasetError(f"cannot read shard ({exc})", path=path) from None
    keys = sorted(samples)
    images, caps, groups = [], [], []
    for k in keys:
        s = samples[k]
        if not {"png", "txt", "json"} <= set(s):
            raise DatasetError(f"sample {k} lacks one of .png/.txt/.json", path=captions_dir, field=k)
        images.append(np.asarray(Image.open(io.BytesIO(s["png"])).convert("RGB")))
        caps.append(s["txt"].decode())
        groups.append(json.loads(s["json"])["group"])
    if not images:
        raise DatasetError("caption corpus is empty", path=captions_dir)
    return CaptionCorpus(np.stack(images), caps, np.asarray(groups))


def to_tensor(images: np.ndarray, size: int) -> torch.Tensor:
    """(N, S, S, 3) uint8 → (N, 3, size, size) float, CLIP-normalised."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    mean = torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def sample_batch(corpus: CaptionCorpus, batch: int, grouped_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of one batch: whole hard-negative groups first, then random samples (no duplicates)."""
    idx: list[int] = []
    if grouped_fraction > 0 and len(corpus.group_ids):
        n_grouped = int(round(batch * grouped_fraction))
        size = int((corpus.groups == corpus.group_ids[0]).sum())
        n_groups = min(n_grouped // max(size, 1), len(corpus.group_ids))
        for g in rng.choice(corpus.group_ids, size=n_groups, replace=False):
            idx += np.flatnonzero(corpus.groups == g).tolist()
    taken = set(idx)
    while len(idx) < batch:
        for i in rng.integers(0, len(corpus.captions), size=batch):
            if int(i) not in taken:
                idx.append(int(i))
                taken.add(int(i))
                if len(idx) == batch:
                    break
    return np.asarray(idx[:batch])


# --------------------------------------------------------------------------------------------------
# model I/O
# --------------------------------------------------------------------------------------------------


def build_model(cfg: MiniClipConfig):
    import open_clip

    torch.manual_seed(cfg.seed)
    return open_clip.CLIP(**cfg.model_cfg())


def save_checkpoint_dir(model, cfg: MiniClipConfig, out_dir: str | Path) -> Path:
    """Write an open_clip ``local-dir`` checkpoint: config JSON + safetensors weights (atomically)."""
    from safetensors.torch import save_file

    from smart.io import write_checksums

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    conf = {"model_cfg": cfg.model_cfg(),
            "preprocess_cfg": {"mean": list(OPENAI_MEAN), "std": list(OPENAI_STD), "interpolation": "bilinear",
                               "resize_mode": "squash"},
            "smart": {"config": asdict(cfg)}}
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    tmp = out_dir / ".open_clip_model.safetensors.partial"
    save_file(state, str(tmp))
    tmp.replace(out_dir / "open_clip_model.safetensors")
    (out_dir / "open_clip_config.json").write_text(json.dumps(conf, indent=1) + "\n")
    write_checksums(out_dir, ["open_clip_config.json", "open_clip_model.safetensors"])  # checked at every load
    return out_dir


def load_local(model_dir: str | Path):
    """(model, tokenizer) through open_clip's own loader, exactly as for any local checkpoint."""
    import open_clip

    name = f"local-dir:{Path(model_dir)}"
    model = open_clip.create_model(name)
    return model.eval(), open_clip.get_tokenizer(name)


# --------------------------------------------------------------------------------------------------
# zero-shot evaluation
# --------------------------------------------------------------------------------------------------

@torch.no_grad()
def classify(model, tokenizer, images: torch.Tensor, synonyms: list[list[str]]) -> torch.Tensor:
    """Arg-max class per image: cosine similarity with the 14-template synonym embeddings, max over
    each class's synonyms (the text classifier of :mod:`smart.model.text`)."""
    from smart.model.text import encode_vocabulary

    text = encode_vocabulary(model.encode_text, tokenizer, synonyms)
    img = F.normalize(model.encode_image(images).float(), dim=-1)  # (N, E)
    sim = img @ text.synonyms.T  # (N, S)
    K = text.num_classes
    per_class = torch.full((img.shape[0], K), -torch.inf).scatter_reduce(
        1, text.synonym_class.expand(img.shape[0], -1), sim, reduce="amax")  # (N, K): max over synonyms
    return per_class.argmax(-1)


def zero_shot(model, tokenizer, *, image_size: int, world_size: int = 96, per_class: int = 10, seed: int = 123) -> dict:
    """Zero-shot accuracy on freshly drawn single-thing and stuff-only images (never trained on)."""
    from smart.data.mini.world import (
        DOMAINS,
        GROUPS,
        Canvas,
        ClassSampler,
        Domain,
        build_universe,
        render_scene,
    )

    U = build_universe()
    things = [c for c in U if c.isthing]
    stuff = [c for c in U if not c.isthing]
    canvas = Canvas(world_size)
    rng = np.random.default_rng(seed)
    single = Domain("single", things=(1, 1), radius=(0.25, 0.38), stuff_layout="line")
    res: dict = {}
    for kind, concepts in (("things", things), ("stuff", stuff)):
        imgs, labels = [], []
        for k, c in enumerate(concepts):
            # things on a random stuff background; stuff alone (one region of the class)
            sampler = ClassSampler.build(stuff if kind == "things" else [c])
            for _ in range(per_class):
                if kind == "things":
                    s = render_scene(canvas, single, sampler, rng, thing_override=[c], allow_crowd=False)
                else:
                    s = render_scene(canvas, DOMAINS["coco"], sampler, rng, n_things=0)
                imgs.append(s.image)
                labels.append(k)
        x = to_tensor(np.stack(imgs), image_size)
        pred = classify(model, tokenizer, x, [list(c.synonyms) for c in concepts])
        labels_t = torch.as_tensor(labels)
        correct = (pred == labels_t).numpy()
        group = np.asarray([concepts[i].group for i in labels])
        res[kind] = {"accuracy": float(correct.mean()), "accuracy_seen": float(correct[group == "seen"].mean()),
                     "accuracy_held_out": float(correct[group != "seen"].mean()),
                     **{f"accuracy_{g}": float(correct[group == g].mean()) for g in GROUPS if g != "seen"},
                     "classes": len(concepts), "chance": 1.0 / len(concepts), "images": len(labels)}
    return res


# --------------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------------


def train(cfg: MiniClipConfig, captions_dir: str | Path, out_dir: str | Path, *, metrics_path: str | Path | None = None) -> dict:
    """Train the mini CLIP and save it; returns the summary (also written to ``<out_dir>/summary.json``)."""
    import open_clip
    from open_clip.loss import ClipLoss

    from smart.utils.logging import progress

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    corpus = load_corpus(captions_dir)
    # open_clip's bundled SimpleTokenizer (BPE vocabulary of 49408), at the model's context length.
    tokenizer = open_clip.get_tokenizer("RN50", context_length=cfg.context_length)
    tokens = tokenizer(corpus.captions)
    model = build_model(cfg)
    model.train()
    from smart.train.optim import LRSchedule, decay_groups

    opt = torch.optim.AdamW(decay_groups(model.named_parameters(), weight_decay=cfg.weight_decay,
                                         names=("logit_scale",)), lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6,
                            fused=True)  # one kernel per step (52 -> ~15 ms per step here)
    # linear warm-up (step + 1) / warmup, then constant
    sched = torch.optim.lr_scheduler.LambdaLR(opt, LRSchedule(schedule="constant", iterations=cfg.steps,
                                                              warmup_iters=cfg.warmup, warmup_mode="linear"))
    loss_fn = ClipLoss()
    device_type = "cuda" if next(model.parameters()).is_cuda else "cpu"
    records = []
    t0 = time.time()
    losses = []
    bar = progress(range(cfg.steps), desc="mini CLIP", unit="step")
    # CPU: the math SDPA path (see attention_backend)
    with attention_backend(device_type):
        for step in bar:
            idx = sample_batch(corpus, cfg.batch_size, cfg.grouped_fraction, rng)
            x = to_tensor(corpus.images[idx], cfg.image_size)
            with torch.autocast(device_type, dtype=torch.bfloat16, enabled=cfg.bf16):
                img_f, txt_f, scale = model(x, tokens[idx])
                loss = loss_fn(img_f.float(), txt_f.float(), scale.float())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            losses.append(loss.item())
            if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
                rec = {"step": step + 1, "loss": float(np.mean(losses[-cfg.log_every:])), "lr": sched.get_last_lr()[0],
                       "logit_scale": float(model.logit_scale.exp()), "seconds": round(time.time() - t0, 1)}
                _log.info("step %d/%d loss %.3f lr %.2e %.1f s", rec["step"], cfg.steps, rec["loss"], rec["lr"], rec["seconds"])
                records.append(rec)
    if metrics_path:  # the training curve, timings in its run record
        provenance.write_jsonl_result(metrics_path, records)
    train_seconds = time.time() - t0
    model.eval()
    summary = {"steps": cfg.steps, "train_seconds": round(train_seconds, 1),
               "steps_per_minute": round(cfg.steps / max(train_seconds, 1e-9) * 60, 1),
               "final_loss": float(np.mean(losses[-cfg.log_every:])), "samples": len(corpus.captions),
               "parameters": sum(p.numel() for p in model.parameters())}
    save_checkpoint_dir(model, cfg, out_dir)  # saved before evaluation: a failing evaluation loses nothing
    zs = zero_shot(model, tokenizer, image_size=cfg.image_size, per_class=cfg.eval_per_class)
    summary["zero_shot"] = zs
    provenance.write_result(Path(out_dir) / "summary.json", summary)
    _log.info("zero-shot: things %.1f%% (novel attributes %.1f%%), stuff %.1f%% (novel attributes %.1f%%)",
              100 * zs["things"]["accuracy"], 100 * zs["things"]["accuracy_novel_attribute"],
              100 * zs["stuff"]["accuracy"], 100 * zs["stuff"]["accuracy_novel_attribute"])
    return summary
