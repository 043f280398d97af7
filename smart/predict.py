"""Segment any images with any vocabulary using a trained SMART model (``python -m smart predict``).

The chain is the one evaluation uses (:func:`smart.eval.cell.evaluate_model`): the frozen mask generator
proposes masks on the fly (or the tuned one a cell trained), the SMART model classifies them against the
vocabulary's text embeddings, and :func:`smart.model.inference.postprocess` (Mask2Former's panoptic /
semantic inference) turns them into segments, under the same thresholds as the DAG (params.yaml
``eval``). What predict adds is what real images need:

* **vocabularies** — ``"cat, kitten; dog; grass; sky"`` (``;`` separates classes, ``,`` synonyms, as
  ODISE's demo), a file (one class per line, or the FC-CLIP ``ID:name,synonym`` format, or a JSON
  category list), or a benchmark's table (``--dataset ade150``). Every name must be unique and
  non-blank. Classes are things (one segment per instance) unless named in ``stuff``.
* **images** — files, folders and globs; anything PIL decodes (JPEG, PNG, WebP, ...); EXIF
  orientation applied; grayscale, palette, 16-bit and CMYK converted to RGB; transparency composited
  on white. Every image is decoded once before anything is written, so an unreadable or truncated file
  stops the run with its name and leaves the output folder untouched.
* **any size** — an image larger than the test size (the profile's ``proposals.<profile>.test_sizes``
  ``default``: shortest side 800, longest ≤ 1333 in the paper profile; the mini world's image side in the
  mini profile) is first reduced to it (bilinear with anti-aliasing, exactly the generator's own test-time
  resize), segmented at that size, and its id maps are enlarged back to the original size (nearest).
  Smaller images go through unchanged (the generator enlarges its own input), as in evaluation.

Outputs in ``--out``: ``panoptic/<name>.png`` (COCO-panoptic RGB id encoding) and one ``panoptic.json``
(COCO-panoptic format: images, annotations, categories; panopticapi reads it),
``semantic/<name>.png`` (contiguous class index per pixel, listed in ``predict.json``), and
``overlay/<name>.png`` (segments coloured and named, with a legend), plus ``predict.json`` (vocabulary,
settings, checkpoint, timing). Every file is written atomically; the JSON files last.
"""

from __future__ import annotations

import glob
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from smart.data.categories import Category, Vocabulary, check_names, norm_name, read_synonym_txt
from smart.errors import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
USER_VOCAB_KEY = "user"


# --------------------------------------------------------------------------------------------------
# vocabularies


def parse_vocabulary(text: str) -> list[list[str]]:
    """``"cat, kitten; dog"`` → ``[["cat", "kitten"], ["dog"]]`` (``;`` or new lines separate classes)."""
    classes = []
    for part in re.split(r"[;\n]", text):
        if not part.strip():
            continue
        classes.append([s.strip() for s in part.split(",")])
    return classes


def build_vocabulary(classes: Sequence[Sequence[str]], *, stuff: Iterable[str] = (), isthing: Sequence[bool] | None = None,
                     ids: Sequence[int] | None = None, source: str | None = None) -> Vocabulary:
    """A checked :class:`Vocabulary` from synonym lists; ids 1..K unless given; ``stuff`` names (any
    synonym) mark stuff classes, else ``isthing`` flags, else every class is a thing."""
    classes = [list(c) for c in classes]
    check_names(classes, source=source)
    index = {norm_name(s): i for i, syns in enumerate(classes) for s in syns}
    flags = list(isthing) if isthing is not None else [True] * len(classes)
    for name in stuff:
        if norm_name(name) not in index:
            raise InputError(f"--stuff names {name!r}, which is not a class of the vocabulary", field="--stuff")
        flags[index[norm_name(name)]] = False
    ids = list(ids) if ids is not None else list(range(1, len(classes) + 1))
    cats = tuple(Category(id=int(ids[i]), name=syns[0], synonyms=tuple(syns), isthing=bool(flags[i]), train_id=i)
                 for i, syns in enumerate(classes))
    return Vocabulary(USER_VOCAB_KEY, cats)


def read_vocabulary_file(path: str | Path, *, stuff: Iterable[str] = ()) -> Vocabulary:
    """A vocabulary file: JSON (a category list ``[{"name", "synonyms"?, "isthing"?, "id"?}]``, or
    ``{"categories": [...]}``), the FC-CLIP text format (``ID:name,synonym`` per line), or plain text (one
    class per line, synonyms separated by commas; ``;`` also separates classes; ``#`` starts a comment)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("vocabulary file not found", path=path, field="--vocab-file")
    if path.suffix.lower() == ".json":
        from smart.io import load_json

        data = load_json(path, "vocabulary file")
        items = data.get("categories") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise InputError("expected a list of categories (or {\"categories\": [...]})", path=path)
        for i, it in enumerate(items):
            if not isinstance(it, dict) or not isinstance(it.get("name"), str):
                raise InputError("a category needs a \"name\"", path=path, field=f"categories[{i}]")
        classes = [list(it.get("synonyms") or [it["name"]]) for it in items]
        flags = [bool(it.get("isthing", 1)) for it in items]
        ids = [int(it["id"]) for it in items] if all("id" in it for it in items) else None
        return build_vocabulary(classes, stuff=stuff, isthing=flags, ids=ids, source=str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError("not a UTF-8 text file", path=path, field="--vocab-file") from None
    lines = [ln for ln in (raw.split("#", 1)[0].strip() for raw in text.splitlines()) if ln]
    if lines and all(re.match(r"^-?\d+\s*:", ln) for ln in lines):
        pairs = read_synonym_txt(path)
        return build_vocabulary([list(s) for _, s in pairs], ids=[i for i, _ in pairs], stuff=stuff, source=str(path))
    return build_vocabulary(parse_vocabulary("\n".join(lines)), stuff=stuff, source=str(path))


# --------------------------------------------------------------------------------------------------
# images


def collect_images(inputs: Sequence[str]) -> list[Path]:
    """Files, folders (searched recursively for image suffixes) and globs → sorted unique paths per input."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in this folder", path=p)
        elif p.is_file():
            found = [p]
        elif glob.has_magic(item):
            found = sorted(Path(q) for q in glob.glob(item, recursive=True)
                           if Path(q).is_file() and Path(q).suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise InputError("the pattern matches no image file", path=item)
        else:
            raise InputError("no such file or folder", path=item)
        out.extend(found)
    seen, unique = set(), []
    for p in out:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    if not unique:
        raise InputError("no input images")
    return unique


def output_names(paths: Sequence[Path]) -> list[str]:
    """One output stem per image: the file stem, made unique with ``-2``, ``-3``, ... where stems repeat."""
    names, used = [], set()
    for p in paths:
        stem = re.sub(r"[^\w.+-]", "_", p.stem) or "image"
        name, k = stem, 2
        while name.lower() in used:
            name, k = f"{stem}-{k}", k + 1
        used.add(name.lower())
        names.append(name)
    return names


def load_image(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB of any image PIL decodes: EXIF orientation applied, transparency composited on
    white, grayscale / palette / 16-bit / CMYK converted. An unreadable or truncated file is an
    :class:`~smart.errors.InputError` naming it."""
    from PIL import Image, ImageOps

    from smart.io import open_image

    img = open_image(path, "image")  # decodes fully: truncated data fails here
    try:
        img = ImageOps.exif_transpose(img)
    except Exception as exc:  # a corrupt EXIF block
        raise InputError(f"cannot apply its EXIF orientation ({exc})", path=path, field="image") from None
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16/32-bit grey: scale the used range to 8 bits
        a = np.asarray(img, dtype=np.float64)
        hi = a.max() if a.size and a.max() > 255 else 255.0
        img = Image.fromarray(np.clip(a * (255.0 / hi) + 0.5, 0, 255).astype(np.uint8), mode="L")
    elif img.mode == "F":
        a = np.asarray(img, dtype=np.float64)
        hi = a.max() if a.size and a.max() > 1.0 else 1.0
        img = Image.fromarray(np.clip(a * (255.0 / hi) + 0.5, 0, 255).astype(np.uint8), mode="L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise InputError("the image is empty", path=path, field="image")
    return arr


def working_size(h: int, w: int, test_size: tuple[int, int]) -> tuple[int, int]:
    """The size an (h, w) image is segmented at: reduced to the test size when larger, else unchanged."""
    from smart.model.mask_generator import resize_shortest_edge_size

    nh, nw = resize_shortest_edge_size(h, w, *test_size)
    return (nh, nw) if nh * nw < h * w else (h, w)


def default_test_size(exp: Any) -> tuple[int, int]:
    """The generator's input size for images of any size: the profile's default test size
    (``proposals.<profile>.test_sizes.default``), or, where the profile does not resize (the mini world,
    whose images all have one side), that side with Mask2Former's 800:1333 aspect bound."""
    pc = exp.proposal_config()
    if pc.test_sizes is not None:
        return next((mn, mx) for d, mn, mx in pc.test_sizes if d == "default")
    side = int(exp.params["mini_world"]["image_size"])
    return side, round(side * 1333 / 800)


# --------------------------------------------------------------------------------------------------
# the predictor


@dataclass(frozen=True)
class PredictSettings:
    """What ``predict`` runs under (recorded in ``predict.json``)."""

    task: str = "panoptic"  # panoptic (panoptic + semantic outputs) | semantic
    object_mask_threshold: float = 0.0
    overlap_threshold: float = 0.8
    mask_threshold: float = 0.5
    batch_size: int = 4
    test_size: tuple[int, int] = (800, 1333)  # (shortest side, longest side) of the generator's input
    top_k: int | None = None
    score_mode: str = "objectness"
    bf16: bool = True  # CUDA: bf16 autocast through the classifier and mask upsampling (CPU: fp32)

    def __post_init__(self):
        from smart.config import EvalSettings
        from smart.errors import ConfigError

        if self.task not in ("panoptic", "semantic"):
            raise InputError(f"--task must be panoptic or semantic, got {self.task!r}", field="--task")
        try:  # the thresholds and batch size obey the rules of the DAG's `eval` section
            EvalSettings(object_mask_threshold=self.object_mask_threshold, overlap_threshold=self.overlap_threshold,
                         mask_threshold=self.mask_threshold, batch_size=self.batch_size)
        except ConfigError as exc:
            raise InputError(exc.message, field="--" + str(exc.field).split(".")[-1].replace("_", "-")) from None
        if len(self.test_size) != 2 or not 0 < self.test_size[0] <= self.test_size[1]:
            raise InputError(f"needs 0 < shortest <= longest, got {self.test_size}", field="--test-size")

    def to_dict(self) -> dict:
        return asdict(self)


def checkpoint_generator(meta: dict, *, exp: Any = None, path: str | Path = "") -> dict:
    """The mask generator a trained model was trained with: recorded in ``model.pt`` (on-the-fly training,
    or the train config's ``generators[generator]``), else its cell's in the params file."""
    gcfg = meta.get("generator_config")
    tcfg = meta.get("train_config") or {}
    if not gcfg and isinstance(tcfg.get("generators"), dict) and tcfg.get("generator") in tcfg["generators"]:
        gcfg = tcfg["generators"][tcfg["generator"]]
    if not gcfg and exp is not None and meta.get("cell") in exp.cells:
        gcfg = exp.cell(meta["cell"]).train.generator_config
    if not gcfg:
        raise InputError("the file names no mask generator and its cell is not in the params file", path=path,
                         field="generator_config")
    return dict(gcfg)


def load_predictor(checkpoint: str | Path, *, exp: Any, vocab: Vocabulary, settings: PredictSettings, device: Any,
                   text_cache_dir: str | None = None, dataset: str | None = None,
                   expect_cell: str | None = None) -> tuple[Predictor, dict]:
    """A :class:`Predictor` from a ``model.pt`` (the model and the generator it was trained with).

    Args:
        checkpoint: the trained-model file.
        exp: the :class:`smart.experiment.Experiment` (test-time generator settings of the profile).
        vocab, settings, device: see :class:`Predictor`.
        text_cache_dir: on-disk cache of vocabulary embeddings (None: none).
        dataset: segment as evaluation does on this benchmark (its test-time generator settings);
            None: ``settings.test_size``.
        expect_cell: fail unless the file was trained for this cell.

    Returns:
        (predictor, the file's metadata).
    """
    from smart.data.sources import generator_proposals
    from smart.train.checkpoint import load_trained

    model, meta = load_trained(checkpoint, device=device, text_cache_dir=text_cache_dir)
    if expect_cell is not None and meta.get("cell") not in (None, expect_cell):
        raise InputError(f"the file was trained for cell {meta.get('cell')!r}, not {expect_cell!r}",
                         path=checkpoint, field="cell")
    gcfg = checkpoint_generator(meta, exp=exp, path=checkpoint)
    fly = generator_proposals(gcfg, state=meta.get("generator_state") or {}, device=device, source=str(checkpoint),
                              test_time=exp.proposal_config())
    if dataset is not None:
        fly.for_dataset(dataset)
    return Predictor(model=model, proposals=fly, vocab=vocab, settings=settings, device=device,
                     configure=dataset is None), {**meta, "generator_config": gcfg}


class Predictor:
    """A trained SMART model and its mask generator, ready to segment images with one vocabulary.

    Args:
        model: a :class:`~smart.model.smart.SmartModel` in eval mode on ``device``.
        proposals: a :class:`smart.data.sources.OnTheFlyProposals` (the generator) on ``device``.
        vocab: the vocabulary (contiguous order = semantic label values).
        settings: thresholds, batch size and test size.
        device: where both models run.
        configure: apply ``settings``' test size, top-k and score to the generator (False: the caller set
            them, e.g. a benchmark's test-time settings; images are then never reduced beforehand).
    """

    def __init__(self, *, model: Any, proposals: Any, vocab: Vocabulary, settings: PredictSettings, device: Any,
                 configure: bool = True):
        from smart.model.inference import InferenceConfig

        self.model, self.proposals, self.vocab, self.settings, self.device = model, proposals, vocab, settings, device
        self.test_size = settings.test_size if configure else None
        if configure:
            gen = {"resize": True, "min_size": settings.test_size[0], "max_size": settings.test_size[1],
                   "score_mode": settings.score_mode}
            if settings.top_k is not None:
                gen["top_k"] = settings.top_k
            proposals.use_settings(gen)
        self.icfg = InferenceConfig.from_settings(settings)
        self.tasks = ("semantic", "panoptic") if settings.task == "panoptic" else ("semantic",)
        self.text = model.encode_text(vocab)  # once per vocabulary (memoised, and cached on disk)

    def __call__(self, images: Sequence[np.ndarray]) -> list[dict]:
        """Segment images of any sizes (batched by equal working size).

        Returns, per image: ``sem_label`` (H, W) int64 contiguous classes and, for the panoptic task,
        ``pan_ids`` (H, W) int32 segment ids (0 = none) with ``segments`` ``[{"id", "train_id",
        "category_id", "isthing", "area", "bbox"}]``, at the image's original size.
        """
        sizes = [working_size(*im.shape[:2], self.test_size) if self.test_size else tuple(im.shape[:2])
                 for im in images]
        out: list[dict | None] = [None] * len(images)
        order = sorted(range(len(images)), key=lambda i: sizes[i])  # equal working sizes side by side
        groups: list[list[int]] = []
        for i in order:
            if groups and sizes[groups[-1][0]] == sizes[i] and len(groups[-1]) < self.settings.batch_size:
                groups[-1].append(i)
            else:
                groups.append([i])
        for g in groups:
            for i, r in zip(g, self._batch([images[i] for i in g], sizes[g[0]])):
                out[i] = r
        return out  # type: ignore[return-value]

    def _batch(self, images: Sequence[np.ndarray], size: tuple[int, int]) -> list[dict]:
        import torch
        import torch.nn.functional as F

        from smart.io import bbox_of
        from smart.model.inference import postprocess
        from smart.utils.perf import inference_autocast

        x = torch.stack([torch.from_numpy(np.array(im, dtype=np.uint8)).permute(2, 0, 1) for im in images])  # (B, 3, H, W)
        x = x.to(self.device).float()
        if tuple(x.shape[-2:]) != size:  # the generator's own test-time resize, done once for both models
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True).clamp(0, 255)
        with torch.inference_mode():
            props = self.proposals(None, x)  # (B, Q, h, w) mask logits over each image
            with inference_autocast(x.device.type, self.settings.bf16):
                o = self.model(x, props, self.text)  # pred_logits (B, Q, K+1), pred_masks (B, Q, h, w)
            res = postprocess(o, is_thing=self.vocab.thing_mask, output_sizes=size, tasks=self.tasks, cfg=self.icfg)
        results = []
        for im, r in zip(images, res):
            H, W = im.shape[:2]
            sem = r["sem_label"]  # (h, w) int64
            if tuple(sem.shape) != (H, W):
                sem = F.interpolate(sem[None, None].float(), size=(H, W), mode="nearest")[0, 0].long()  # (H, W)
            item = {"sem_label": sem.cpu().numpy().astype(np.int64)}
            if "panoptic_seg" in r:
                seg, info = r["panoptic_seg"]  # (h, w) int32 ids, [{"id", "category_id" (contiguous), "isthing"}]
                if tuple(seg.shape) != (H, W):
                    seg = F.interpolate(seg[None, None].float(), size=(H, W), mode="nearest")[0, 0]
                ids = seg.cpu().numpy().astype(np.int32)  # (H, W)
                segments = []
                for s in info:
                    m = ids == s["id"]
                    if not m.any():  # vanished in the nearest enlargement (a sub-pixel segment)
                        continue
                    c = int(s["category_id"])
                    segments.append({"id": int(s["id"]), "train_id": c, "category_id": self.vocab[c].id,
                                     "isthing": bool(s["isthing"]), "area": int(m.sum()), "bbox": bbox_of(m)})
                kept = {s["id"] for s in segments}
                ids[~np.isin(ids, list(kept))] = 0
                item.update(pan_ids=ids, segments=segments)
            results.append(item)
        return results


# --------------------------------------------------------------------------------------------------
# the verb's work


def iter_batches(paths: Sequence[Path], batch_size: int) -> Iterator[list[tuple[int, Path, np.ndarray]]]:
    """(index, path, decoded image) in chunks of ``batch_size`` images."""
    chunk = []
    for i, p in enumerate(paths):
        chunk.append((i, p, load_image(p)))
        if len(chunk) == batch_size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def check_images(paths: Sequence[Path]) -> list[tuple[int, int]]:
    """Decode every image once (nothing is written before all are known good); their (H, W)."""
    from smart.utils.logging import progress

    sizes = []
    for p in progress(paths, desc="check images", unit="img"):
        sizes.append(load_image(p).shape[:2])
    return sizes


def run_predict(predictor: Predictor, paths: Sequence[Path], out: str | Path, *, record: dict,
                sizes: Sequence[tuple[int, int]] | None = None) -> dict:
    """Segment ``paths`` into ``out`` (see the module docstring for the files); the run summary.
    ``sizes``: the images' (H, W) from :func:`check_images`, if the caller has checked them already."""
    from smart.io import atomic_path, id2rgb, save_image_atomic, write_json, write_label_png
    from smart.utils.logging import progress
    from smart.visualize import palette_of, render, segments_from_labels

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError("--out exists and is not a folder", path=out, field="--out")
    names = output_names(paths)
    t_check = time.perf_counter()
    sizes = check_images(paths) if sizes is None else list(sizes)
    check_seconds = time.perf_counter() - t_check
    vocab, task = predictor.vocab, predictor.settings.task
    cls_names = vocab.names
    palette = palette_of(vocab)
    images_json, annotations = [], []
    t0 = time.perf_counter()
    bar = progress(total=len(paths), desc="predict", unit="img")
    for chunk in iter_batches(paths, max(predictor.settings.batch_size, 1)):
        results = predictor([im for _, _, im in chunk])
        for (i, p, im), r in zip(chunk, results):
            name = names[i]
            H, W = sizes[i]
            sem_path = out / "semantic" / f"{name}.png"
            with atomic_path(sem_path) as tmp:
                write_label_png(tmp, r["sem_label"], num_classes=len(vocab), compress_level=1)
            if task == "panoptic":
                save_image_atomic(id2rgb(r["pan_ids"]), out / "panoptic" / f"{name}.png", "PNG", compress_level=1)
                ids, segs = r["pan_ids"], r["segments"]
            else:
                ids, segs = segments_from_labels(r["sem_label"])
            pic = render(im, ids, segs, cls_names, palette=palette)
            save_image_atomic(pic, out / "overlay" / f"{name}.png", "PNG", compress_level=1)
            images_json.append({"id": name, "file_name": p.name, "height": H, "width": W, "path": str(p)})
            if task == "panoptic":
                annotations.append({"image_id": name, "file_name": f"{name}.png", "segments_info": [
                    {"id": s["id"], "category_id": s["category_id"], "iscrowd": 0, "area": s["area"],
                     "bbox": s["bbox"]} for s in r["segments"]]})
        bar.update(len(chunk))
    bar.close()
    seconds = time.perf_counter() - t0
    categories = [{"id": c.id, "name": c.name, "synonyms": list(c.synonyms), "isthing": int(c.isthing),
                   "color": [int(v) for v in palette[c.train_id]], "semantic_label": c.train_id} for c in vocab]
    if task == "panoptic":
        write_json(out / "panoptic.json", {"images": images_json, "annotations": annotations,
                                           "categories": [{k: v for k, v in c.items() if k != "synonyms"
                                                           and k != "semantic_label"} for c in categories]},
                   indent=None)
    summary = {"num_images": len(paths), "seconds": round(seconds, 3), "check_seconds": round(check_seconds, 3),
               "images_per_s": round(len(paths) / seconds, 3) if seconds > 0 else None}
    write_json(out / "predict.json", {**record, "settings": predictor.settings.to_dict(), "categories": categories,
                                      "semantic_png": "pixel value = the class's semantic_label (contiguous index)",
                                      "images": images_json, **summary})
    return summary


def describe_vocabulary(vocab: Vocabulary) -> str:
    return "; ".join(", ".join(c.synonyms) + ("" if c.isthing else " (stuff)") for c in vocab)
