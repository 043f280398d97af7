"""Write the mini open-vocabulary world to disk in the real benchmarks' formats.

The output directory is laid out like ``$DETECTRON2_DATASETS`` for the real data (see
``docs/datasets.md`` and :mod:`smart.data.registry`), so one set of loaders reads both profiles:

========================  ==============================================================  =========
mini benchmark            files (relative to the root)                                      mirrors
========================  ==============================================================  =========
``coco``                  ``coco/{train2017,val2017}/``, ``coco/annotations/panoptic_*.json``,  COCO panoptic 2017
                          ``coco/panoptic_*2017/``, ``coco/panoptic_semseg_*2017/``
``ade`` (150 and 847)     ``ADEChallengeData2016/{images/validation, ade20k_panoptic_val*,     ADE20K-150, A-847
                          annotations_detectron2/validation}``, ``ADE20K_2021_17_01/
                          {images,annotations}_detectron2/validation`` (16-bit TIFF)
``mapillary``             ``mapillary_vistas/validation/{images,panoptic,labels}``             Mapillary Vistas
``pascal`` (59 and 459)   ``pascal_ctx_d2/{images,annotations_ctx59,annotations_ctx459}/       PASCAL Context
                          validation`` (459 as 16-bit TIFF)
``refer``                 ``refer/{refcoco,refcoco+}/val.json``, ``refer/images/``            RefCOCO(+) (converted)
``captions``              ``captions/shard-*.tar`` (WebDataset: ``.png`` + ``.txt`` + ``.json``)  web image-text data
========================  ==============================================================  =========

Images are lossless PNG (the real sets use JPEG; every loader accepts either). Annotation formats
are the real ones: panoptic PNG with ids ``R + 256 G + 256^2 B`` plus a JSON ``segments_info``;
semantic label PNGs with 255 as ignore (Mapillary: ignore = number of classes), and 16-bit TIFFs with
65535 as ignore where the real set uses them (A-847, PC-459).

The ``vocab`` part writes the category tables to ``vocab/categories_with_synonyms.json`` (same schema
as the packaged FC-CLIP table, same dataset keys, plus ``universe``) and ``vocab/<key>_with_prompt_eng.txt``
files; ``vocab/world.json`` records the universe, the seen/unseen split and each benchmark's vocabulary.

Every image is drawn from its own generator seeded by ``(seed, benchmark, split, index)``, so outputs
do not depend on the number of worker processes.
"""

from __future__ import annotations

import io
import json
import logging
import os
import tarfile
import time
import zlib
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image

from smart.data.categories import Category, Vocabulary, write_synonym_txt, write_vocab_json
from smart.data.mini.world import (
    DOMAINS,
    GROUPS,
    NOVEL_ATTRIBUTES,
    STUFF_TEXTURES,
    THING_PATTERNS,
    Canvas,
    ClassSampler,
    Concept,
    Domain,
    Scene,
    build_universe,
    pluralise,
    render_scene,
)
from smart.errors import ConfigError
from smart.io import bbox_of, id2rgb, rgb2id, write_json
from smart.provenance import git_sha, run_record_path
from smart.utils.logging import progress

_log = logging.getLogger(__name__)

BENCHMARKS = ("vocab", "coco", "ade", "mapillary", "pascal", "refer", "captions")

# Vocabulary of each benchmark: numbers of things (seen, novel combination, novel attribute), then of
# stuff (same groups) drawn from the universe (world.Concept.group; "seen" = in the COCO-like training set).
VOCAB_SPEC = {
    "coco_panoptic": (12, 0, 0, 12, 0, 0),  # exactly the seen part of the universe
    "ade20k_847": (12, 12, 11, 12, 12, 4),  # the whole universe
    "ade20k_150": (6, 6, 4, 6, 6, 2),  # the frequent part of ADE
    "mapillary_vistas": (5, 5, 3, 4, 4, 2),
    "pascal_ctx_459": (10, 10, 8, 10, 10, 3),
    "pascal_ctx_59": (4, 4, 2, 4, 4, 1),  # the frequent part of PASCAL Context (drawn from 459)
}
# Relative frequency of the classes outside the frequent sub-vocabulary in shared-image benchmarks.
RARE_WEIGHT = 0.2


# --------------------------------------------------------------------------------------------------
# Vocabularies
# --------------------------------------------------------------------------------------------------


def _pick(rng, pool: list[Concept], n: int) -> list[Concept]:
    if n > len(pool):
        raise ConfigError(f"asked for {n} concepts from a pool of {len(pool)}")
    idx = sorted(rng.choice(len(pool), size=n, replace=False).tolist())
    return [pool[i] for i in idx]


def benchmark_vocabularies(seed: int) -> dict[str, list[Concept]]:
    """The concepts of each benchmark (sorted by universe index). Deterministic in ``seed``."""
    U = build_universe()
    rng = np.random.default_rng([seed, 7919])

    def groups(pool):
        return [[c for c in pool if c.isthing == thing and c.group == g] for thing in (True, False) for g in GROUPS]

    def draw(pool, spec):
        out = []
        for g, n in zip(groups(pool), spec):
            out += _pick(rng, g, n)
        return sorted(out, key=lambda c: c.index)

    v = {"coco_panoptic": draw(U, VOCAB_SPEC["coco_panoptic"]), "ade20k_847": list(U)}
    v["ade20k_150"] = draw(U, VOCAB_SPEC["ade20k_150"])
    v["mapillary_vistas"] = draw(U, VOCAB_SPEC["mapillary_vistas"])
    v["pascal_ctx_459"] = draw(U, VOCAB_SPEC["pascal_ctx_459"])
    v["pascal_ctx_59"] = draw(v["pascal_ctx_459"], VOCAB_SPEC["pascal_ctx_59"])
    return v


def _category_id(key: str, concept: Concept, position: int) -> int:
    """Dataset category ids follow each real benchmark's convention."""
    if key == "coco_panoptic":
        return concept.index + 1  # sparse ids, as COCO's 1..200
    if key == "ade20k_847":
        return 1000 + concept.index  # "full-ADE object ids", with trainId = position
    if key == "mapillary_vistas":
        return position + 1  # 1..K
    return position  # ADE-150, PASCAL Context: 0..K-1


def to_vocabulary(key: str, concepts: list[Concept]) -> Vocabulary:
    cats = tuple(
        Category(id=_category_id(key, c, i), name=c.name, synonyms=c.synonyms, isthing=c.isthing,
                 train_id=i, color=c.color)
        for i, c in enumerate(concepts)
    )
    return Vocabulary(key, cats)


# --------------------------------------------------------------------------------------------------
# Small writers
# --------------------------------------------------------------------------------------------------


def _save_png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format="PNG", compress_level=6)


def _save_tif16(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.astype(np.uint16)).save(path, format="TIFF")


def _write_json(path: Path, obj) -> None:
    write_json(path, obj, indent=None)


def _color_id(rgb) -> int:
    """The panoptic segment id whose PNG colour is ``rgb``."""
    return int(rgb2id(np.asarray(rgb, np.uint8).reshape(1, 1, 3))[0, 0])


def panoptic_of(scene: Scene, vocab: Vocabulary, concept_to_cat: dict[int, Category], rng) -> tuple[np.ndarray, list[dict]]:
    """Panoptic id map and ``segments_info`` of a scene, keeping only classes of ``vocab``."""
    S = scene.image.shape[0]
    ids = np.zeros((S, S), np.uint32)
    infos, used = [], {0}
    for seg in scene.stuff + scene.things:
        cat = concept_to_cat.get(seg.concept.index)
        if cat is None or not seg.mask.any():
            continue  # outside this benchmark's vocabulary: VOID
        base = np.asarray(cat.color, np.int32)
        sid = _color_id(base)
        while sid in used:  # instances: the category colour with a small seeded jitter
            sid = _color_id(np.clip(base + rng.integers(-30, 31, 3), 0, 255))
        used.add(sid)
        ids[seg.mask] = sid
        infos.append({"id": int(sid), "category_id": int(cat.id), "iscrowd": int(seg.iscrowd),
                      "area": int(seg.mask.sum()), "bbox": bbox_of(seg.mask)})
    return ids, infos


def semantic_of(scene: Scene, concept_to_cat: dict[int, Category], ignore: int, dtype) -> np.ndarray:
    S = scene.image.shape[0]
    sem = np.full((S, S), ignore, dtype)
    for seg in scene.stuff + scene.things:
        cat = concept_to_cat.get(seg.concept.index)
        if cat is not None:
            sem[seg.mask] = cat.train_id
    return sem


def _categories_json(vocab: Vocabulary) -> list[dict]:
    return [{"id": c.id, "name": c.name, "supercategory": "thing" if c.isthing else "stuff",
             "isthing": int(c.isthing), "color": list(c.color)} for c in vocab]


# --------------------------------------------------------------------------------------------------
# Parallel rendering of image batches
# --------------------------------------------------------------------------------------------------

_BENCH_CODE = {name: zlib.crc32(name.encode()) for name in BENCHMARKS}
_SPLIT_CODE = {"train": 1, "val": 2}


@dataclass(frozen=True)
class Job:
    """Everything a worker needs to draw and write images ``start..stop`` of one split."""

    kind: str
    root: str
    seed: int
    split: str
    start: int
    stop: int
    size: int
    extra: dict


def _rng(job: Job, i: int) -> np.random.Generator:
    return np.random.default_rng([job.seed, _BENCH_CODE[job.kind], _SPLIT_CODE.get(job.split, 3), i])


def _run_jobs(jobs: list[Job], workers: int, desc: str) -> list:
    results = []
    total = sum(j.stop - j.start for j in jobs)
    bar = progress(total=total, desc=desc, unit="img")
    if workers <= 1:
        for j in jobs:
            results.append(_work(j))
            bar.update(j.stop - j.start)
    else:
        with get_context("fork").Pool(workers) as pool:
            for j, r in zip(jobs, pool.imap(_work, jobs)):
                results.append(r)
                bar.update(j.stop - j.start)
    bar.close()
    return results


def _chunks(kind, root, seed, split, n, size, extra, chunk=200) -> list[Job]:
    return [Job(kind, str(root), seed, split, s, min(n, s + chunk), size, extra) for s in range(0, n, chunk)]


def _work(job: Job):
    return {"coco": _work_coco, "ade": _work_ade, "mapillary": _work_mapillary, "pascal": _work_pascal,
            "refer": _work_refer, "captions": _work_captions}[job.kind](job)


def _vocabs(seed: int) -> dict[str, Vocabulary]:
    return {k: to_vocabulary(k, v) for k, v in benchmark_vocabularies(seed).items()}


def _lookup(vocab: Vocabulary, concepts: list[Concept]) -> dict[int, Category]:
    return {c.index: vocab[i] for i, c in enumerate(concepts)}


def _work_coco(job: Job):
    concepts = benchmark_vocabularies(job.seed)["coco_panoptic"]
    vocab = to_vocabulary("coco_panoptic", concepts)
    lut = _lookup(vocab, concepts)
    sampler = ClassSampler.build(concepts)
    canvas, root = Canvas(job.size), Path(job.root)
    images, anns = [], []
    for i in range(job.start, job.stop):
        rng = _rng(job, i)
        scene = render_scene(canvas, DOMAINS["coco"], sampler, rng)
        image_id = (1 if job.split == "train" else 5) * 10**6 + i
        name = f"{image_id:012d}"
        _save_png(root / f"coco/{job.split}2017/{name}.png", scene.image)
        ids, infos = panoptic_of(scene, vocab, lut, rng)
        _save_png(root / f"coco/panoptic_{job.split}2017/{name}.png", id2rgb(ids))
        # 133-class-style semantic GT from the panoptic GT: crowd included, VOID = 255.
        _save_png(root / f"coco/panoptic_semseg_{job.split}2017/{name}.png",
                  semantic_of(scene, lut, 255, np.uint8))
        images.append({"id": image_id, "file_name": f"{name}.png", "height": job.size, "width": job.size})
        anns.append({"image_id": image_id, "file_name": f"{name}.png", "segments_info": infos})
    return images, anns


def _ade_sampler(seed: int) -> tuple[dict, ClassSampler]:
    v = benchmark_vocabularies(seed)
    frequent = {c.index for c in v["ade20k_150"]}
    w = {c.index: (1.0 if c.index in frequent else RARE_WEIGHT) for c in v["ade20k_847"]}
    return v, ClassSampler.build(v["ade20k_847"], w)


def _work_ade(job: Job):
    v, sampler = _ade_sampler(job.seed)
    v150, v847 = to_vocabulary("ade20k_150", v["ade20k_150"]), to_vocabulary("ade20k_847", v["ade20k_847"])
    lut150, lut847 = _lookup(v150, v["ade20k_150"]), _lookup(v847, v["ade20k_847"])
    canvas, root = Canvas(job.size), Path(job.root)
    images, anns = [], []
    a = "ADEChallengeData2016"
    for i in range(job.start, job.stop):
        rng = _rng(job, i)
        scene = render_scene(canvas, DOMAINS["ade"], sampler, rng)
        stem = f"ADE_val_{i + 1:08d}"
        _save_png(root / f"{a}/images/validation/{stem}.png", scene.image)
        _save_png(root / f"ADE20K_2021_17_01/images_detectron2/validation/{stem}.png", scene.image)
        ids, infos = panoptic_of(scene, v150, lut150, rng)
        _save_png(root / f"{a}/ade20k_panoptic_val/{stem}.png", id2rgb(ids))
        _save_png(root / f"{a}/annotations_detectron2/validation/{stem}.png", semantic_of(scene, lut150, 255, np.uint8))
        _save_tif16(root / f"ADE20K_2021_17_01/annotations_detectron2/validation/{stem}.tif",
                    semantic_of(scene, lut847, 65535, np.uint16))
        images.append({"id": stem, "file_name": f"{stem}.png", "height": job.size, "width": job.size})
        anns.append({"image_id": stem, "file_name": f"{stem}.png", "segments_info": infos})
    return images, anns


def _work_mapillary(job: Job):
    concepts = benchmark_vocabularies(job.seed)["mapillary_vistas"]
    vocab = to_vocabulary("mapillary_vistas", concepts)
    lut = _lookup(vocab, concepts)
    sampler = ClassSampler.build(concepts)
    canvas, root = Canvas(job.size), Path(job.root)
    images, anns = [], []
    for i in range(job.start, job.stop):
        rng = _rng(job, i)
        scene = render_scene(canvas, DOMAINS["mapillary"], sampler, rng)
        key = f"mv{zlib.crc32(f'{job.seed}-{i}'.encode()):08x}{i:05d}"  # string ids, like Mapillary's keys
        base = root / "mapillary_vistas/validation"
        _save_png(base / f"images/{key}.png", scene.image)
        ids, infos = panoptic_of(scene, vocab, lut, rng)
        _save_png(base / f"panoptic/{key}.png", id2rgb(ids))
        _save_png(base / f"labels/{key}.png", semantic_of(scene, lut, len(vocab), np.uint8))
        images.append({"id": key, "file_name": f"{key}.png", "height": job.size, "width": job.size})
        anns.append({"image_id": key, "file_name": f"{key}.png", "segments_info": infos})
    return images, anns


def _work_pascal(job: Job):
    v = benchmark_vocabularies(job.seed)
    frequent = {c.index for c in v["pascal_ctx_59"]}
    w = {c.index: (1.0 if c.index in frequent else RARE_WEIGHT) for c in v["pascal_ctx_459"]}
    sampler = ClassSampler.build(v["pascal_ctx_459"], w)
    v59, v459 = to_vocabulary("pascal_ctx_59", v["pascal_ctx_59"]), to_vocabulary("pascal_ctx_459", v["pascal_ctx_459"])
    lut59, lut459 = _lookup(v59, v["pascal_ctx_59"]), _lookup(v459, v["pascal_ctx_459"])
    canvas, root = Canvas(job.size), Path(job.root)
    for i in range(job.start, job.stop):
        rng = _rng(job, i)
        scene = render_scene(canvas, DOMAINS["pascal"], sampler, rng)
        stem = f"2010_{i + 1:06d}"
        base = root / "pascal_ctx_d2"
        _save_png(base / f"images/validation/{stem}.png", scene.image)
        _save_png(base / f"annotations_ctx59/validation/{stem}.png", semantic_of(scene, lut59, 255, np.uint8))
        _save_tif16(base / f"annotations_ctx459/validation/{stem}.tif", semantic_of(scene, lut459, 65535, np.uint16))
    return None


# --------------------------------------------------------------------------------------------------
# Referring expressions (RefCOCO-like) and captions (web data)
# --------------------------------------------------------------------------------------------------

_WHERE = {"left": ("on the left", "left"), "right": ("on the right", "right"),
          "top": ("at the top", "upper"), "bottom": ("at the bottom", "lower")}


def _location_words(mask: np.ndarray, others: list[np.ndarray]) -> str | None:
    """A location phrase that singles out ``mask`` among same-class ``others`` (or None)."""
    ys, xs = np.nonzero(mask)
    cy, cx = ys.mean(), xs.mean()
    cands = []
    oc = [(np.nonzero(o)[0].mean(), np.nonzero(o)[1].mean()) for o in others]
    if all(cx < x - 4 for _, x in oc):
        cands.append("left")
    if all(cx > x + 4 for _, x in oc):
        cands.append("right")
    if all(cy < y - 4 for y, _ in oc):
        cands.append("top")
    if all(cy > y + 4 for y, _ in oc):
        cands.append("bottom")
    return cands[0] if cands else None


def _work_refer(job: Job):
    """Scenes over the whole universe; one target per image and flavour.

    ``refcoco``: the target may share its class with distractors and is then named with a location
    phrase ("the dotted blue object on the left"). ``refcoco+``: no location words — the target's
    class is unique in the image and the expression names its appearance only.
    """
    from pycocotools import mask as mask_utils

    U = build_universe()
    sampler = ClassSampler.build(U)
    canvas, root = Canvas(job.size), Path(job.root)
    out = {"refcoco": [], "refcoco+": []}
    images = []
    for i in range(job.start, job.stop):
        rng = _rng(job, i)
        # Two to four things, often with a same-class pair so that locations are needed.
        t0 = sampler.thing(rng)
        others = [sampler.thing(rng) for _ in range(int(rng.integers(1, 4)))]
        if rng.uniform() < 0.5:
            others[0] = t0
        scene = render_scene(canvas, DOMAINS["coco"], sampler, rng, thing_override=[t0] + others, allow_crowd=False)
        stem = f"ref_{i:06d}"
        _save_png(root / f"refer/images/{stem}.png", scene.image)
        image_id = i + 1
        images.append({"id": image_id, "file_name": f"refer/images/{stem}.png", "height": job.size, "width": job.size})
        things = [t for t in scene.things if not t.iscrowd]
        order = rng.permutation(len(things))
        for flavour in ("refcoco", "refcoco+"):
            for k in order:
                t = things[int(k)]
                same = [o.mask for o in things if o is not t and o.concept.index == t.concept.index]
                syn = t.concept.synonyms[int(rng.integers(len(t.concept.synonyms)))]
                if flavour == "refcoco+":
                    if same:
                        continue
                    sents = [f"the {syn}", syn]
                else:
                    if same:
                        where = _location_words(t.mask, same)
                        if where is None:
                            continue
                        phrase, adj = _WHERE[where]
                        sents = [f"the {syn} {phrase}", f"{adj} {syn}"]
                    else:
                        sents = [f"the {syn}", syn]
                rle = mask_utils.encode(np.asfortranarray(t.mask.astype(np.uint8)))
                rle["counts"] = rle["counts"].decode("ascii")
                out[flavour].append({"ref_id": len(out[flavour]), "image_id": image_id,
                                     "category_id": t.concept.index, "sentences": sents,
                                     "segmentation": rle, "bbox": bbox_of(t.mask)})
                break
    return images, out


def caption_of(scene: Scene, rng) -> str:
    """A web-style caption naming the things (with counts) and the stuff, with random synonyms."""
    words = ["a", "two", "three", "four", "five", "six", "seven"]
    counts: dict[int, list] = {}
    for t in scene.things:
        counts.setdefault(t.concept.index, [t.concept, 0])[1] += 1

    def syn(c: Concept) -> str:
        return c.synonyms[int(rng.integers(len(c.synonyms)))]

    thing_parts = []
    for concept, n in counts.values():
        s = syn(concept)
        thing_parts.append(f"{words[min(n, 7) - 1]} {s}" if n == 1 else f"{words[min(n, 7) - 1]} {pluralise(s)}")
    stuff_parts = [syn(s.concept) for s in scene.stuff if s.mask.any()]

    def join(parts):
        return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]

    if not thing_parts:
        return f"a photo of {join(stuff_parts)}."
    templates = ["a photo of {t} on {s}.", "{t} in front of {s}.", "an image showing {s} with {t}."]
    return templates[int(rng.integers(len(templates)))].format(t=join(thing_parts), s=join(stuff_parts))


def _work_captions(job: Job):
    """One tar shard of (png, txt, json) samples.

    Mix (after the mini-world prototype): 15% stuff only, 25% one large object, 60% scenes. Half of
    the samples come in *hard-negative groups* of ``group`` images that share one layout and differ
    in one attribute only: either every thing's fill pattern (``pattern`` groups) or every stuff
    region's texture (``texture`` groups; stuff-only images always vary texture). Without them a
    contrastive model separates captions by colour and object count alone and never binds the
    pattern and texture words.
    """
    U = build_universe()
    sampler = ClassSampler.build(U)
    size, out_size, group = job.size, job.extra["image_size"], job.extra["group"]
    canvas = Canvas(size)
    shard = Path(job.root) / f"captions/shard-{job.start // job.extra['shard_size']:05d}.tar"
    shard.parent.mkdir(parents=True, exist_ok=True)
    tmp = shard.with_suffix(".tar.tmp")
    big = Domain("single", things=(1, 1), radius=(0.25, 0.38), stuff_layout="line")
    patterns, textures = list(THING_PATTERNS), list(STUFF_TEXTURES)
    by_key = {c.key: c for c in U}

    def shift(c: Concept, k: int) -> Concept:
        if c.isthing:
            return by_key[f"thing/{patterns[(patterns.index(c.a) + k) % len(patterns)]}/{c.b}"]
        return by_key[f"stuff/{textures[(textures.index(c.a) + k) % len(textures)]}/{c.b}"]

    with tarfile.open(tmp, "w") as tar:
        i = job.start
        while i < job.stop:
            rng = _rng(job, i)
            u = rng.uniform()
            kind = "stuff" if u < 0.15 else "single" if u < 0.40 else "scene"
            domain = DOMAINS[str(rng.choice(["coco", "ade", "mapillary", "pascal"]))]
            n = 0 if kind == "stuff" else None
            if kind == "single":
                domain, n = big, 1
            grouped = rng.uniform() < 0.5 and i + group <= job.stop
            gkind = "texture" if kind == "stuff" or rng.uniform() < 0.5 else "pattern"
            if grouped:
                n_t = n if n is not None else int(rng.integers(domain.things[0], domain.things[1] + 1))
                base_things = [sampler.thing(rng) for _ in range(n_t)]
                base_stuff = sampler.stuff_distinct(rng, 3)
                state = rng.bit_generator.state
                variants = []
                for k in range(group):  # one seed => one layout; only the chosen attribute moves
                    r2 = np.random.default_rng()
                    r2.bit_generator.state = state
                    things = [shift(c, k) for c in base_things] if gkind == "pattern" else base_things
                    stuff = [shift(c, k) for c in base_stuff] if gkind == "texture" else base_stuff
                    variants.append(render_scene(canvas, domain, sampler, r2, thing_override=things,
                                                 stuff_override=stuff, allow_crowd=False))
                gid = i
            else:
                variants = [render_scene(canvas, domain, sampler, rng, n_things=n, allow_crowd=False)]
                gid, gkind = -1, None
            for scene in variants:
                img = Image.fromarray(scene.image)
                if out_size != size:
                    img = img.resize((out_size, out_size), Image.BILINEAR)
                buf = io.BytesIO()
                img.save(buf, format="PNG", compress_level=1)  # 4x faster than the default 6; 30 000 images
                cap = caption_of(scene, rng)
                meta = {"group": gid, "group_kind": gkind, "things": sorted({t.concept.index for t in scene.things}),
                        "stuff": sorted({s.concept.index for s in scene.stuff if s.mask.any()})}
                key = f"{i:08d}"
                for ext, data in (("png", buf.getvalue()), ("txt", cap.encode()), ("json", json.dumps(meta).encode())):
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size, info.mtime = len(data), 0
                    tar.addfile(info, io.BytesIO(data))
                i += 1
    os.replace(tmp, shard)
    return shard.name


# --------------------------------------------------------------------------------------------------
# Benchmark writers
# --------------------------------------------------------------------------------------------------


def _panoptic_json(images, anns, vocab: Vocabulary, description: str) -> dict:
    return {"info": {"description": description}, "licenses": [], "images": images,
            "annotations": anns, "categories": _categories_json(vocab)}


def _collect(results):
    images, anns = [], []
    for im, an in results:
        images += im
        anns += an
    return images, anns


def write_vocabularies(root: Path, seed: int) -> None:
    concepts = benchmark_vocabularies(seed)
    vocabs = {k: to_vocabulary(k, v) for k, v in concepts.items()}
    U = build_universe()
    vocabs["universe"] = Vocabulary("universe", tuple(
        Category(id=c.index, name=c.name, synonyms=c.synonyms, isthing=c.isthing, train_id=c.index, color=c.color)
        for c in U))
    out = root / "vocab"
    out.mkdir(parents=True, exist_ok=True)
    write_vocab_json(out / "categories_with_synonyms.json", vocabs)
    for k, v in vocabs.items():
        write_synonym_txt(out / f"{k}_with_prompt_eng.txt", v)
    world = {
        "seed": seed,
        "universe": [{"index": c.index, "key": c.key, "name": c.name, "isthing": c.isthing,
                      "seen_in_coco_train": c.seen_in_coco, "group": c.group} for c in U],
        "vocabularies": {k: [c.index for c in v] for k, v in concepts.items()},
        "held_out": [c.index for c in U if not c.seen_in_coco],
        "novel_attributes": sorted(NOVEL_ATTRIBUTES),
        "groups": {g: [c.index for c in U if c.group == g] for g in GROUPS},
    }
    _write_json(out / "world.json", world)


def generate(benchmark: str, root: str | Path, cfg: dict, *, workers: int = 2) -> dict:
    """Write one mini benchmark under ``root``; returns a summary (also written as a stamp file).

    Args:
        benchmark: one of :data:`BENCHMARKS`.
        root: the mini ``$DETECTRON2_DATASETS`` directory.
        cfg: the ``mini_world`` section of params.yaml (seed, image_size, split sizes, captions).
        workers: processes used for drawing.
    """
    if benchmark not in BENCHMARKS:
        raise ConfigError(f"unknown mini benchmark {benchmark!r}; choose from {', '.join(BENCHMARKS)}",
                          field="benchmark")
    root = Path(root)
    seed, size = int(cfg["seed"]), int(cfg["image_size"])
    sizes = cfg["sizes"]
    t0 = time.time()
    vocabs = _vocabs(seed)
    summary: dict = {"benchmark": benchmark, "seed": seed, "image_size": size}
    if benchmark == "vocab":
        write_vocabularies(root, seed)
        summary["vocabularies"] = {k: len(v) for k, v in vocabs.items()}
    elif benchmark == "coco":
        for split in ("train", "val"):
            n = int(sizes[f"coco_{split}"])
            images, anns = _collect(_run_jobs(_chunks("coco", root, seed, split, n, size, {}), workers, f"coco {split}"))
            _write_json(root / f"coco/annotations/panoptic_{split}2017.json",
                        _panoptic_json(images, anns, vocabs["coco_panoptic"], f"mini COCO-like panoptic {split}"))
            summary[f"{split}_images"] = n
    elif benchmark == "ade":
        n = int(sizes["ade_val"])
        images, anns = _collect(_run_jobs(_chunks("ade", root, seed, "val", n, size, {}), workers, "ade val"))
        _write_json(root / "ADEChallengeData2016/ade20k_panoptic_val.json",
                    _panoptic_json(images, anns, vocabs["ade20k_150"], "mini ADE-like panoptic val"))
        summary["val_images"] = n
    elif benchmark == "mapillary":
        n = int(sizes["mapillary_val"])
        images, anns = _collect(_run_jobs(_chunks("mapillary", root, seed, "val", n, size, {}), workers, "mapillary val"))
        _write_json(root / "mapillary_vistas/validation/panoptic/panoptic_2018.json",
                    _panoptic_json(images, anns, vocabs["mapillary_vistas"], "mini Mapillary-like panoptic val"))
        summary["val_images"] = n
    elif benchmark == "pascal":
        n = int(sizes["pascal_val"])
        _run_jobs(_chunks("pascal", root, seed, "val", n, size, {}), workers, "pascal val")
        summary["val_images"] = n
    elif benchmark == "refer":
        n = int(sizes["refer_val"])
        results = _run_jobs(_chunks("refer", root, seed, "val", n, size, {}), workers, "refer val")
        images = [im for r in results for im in r[0]]
        for flavour in ("refcoco", "refcoco+"):
            refs = [ref for r in results for ref in r[1][flavour]]
            for k, ref in enumerate(refs):
                ref["ref_id"] = k
            _write_json(root / f"refer/{flavour}/val.json",
                        {"info": {"description": f"mini {flavour}-like referring expressions",
                                  "category_ids": "universe indices"},
                         "images": images, "refs": refs})
            summary[f"{flavour}_refs"] = len(refs)
        summary["val_images"] = n
    elif benchmark == "captions":
        c = cfg["captions"]
        n, shard = int(c["num_images"]), int(c["shard_size"])
        extra = {"image_size": int(c["image_size"]), "group": int(c["group_size"]), "shard_size": shard}
        shards = _run_jobs(_chunks("captions", root, seed, "captions", n, size, extra, chunk=shard), workers, "captions")
        _write_json(root / "captions/manifest.json",
                    {"format": "webdataset", "num_samples": n, "shards": shards, "image_size": extra["image_size"],
                     "group_size": extra["group"], "fields": {"png": "image", "txt": "caption",
                                                              "json": "group id (-1 = ungrouped), group_kind "
                                                                      "(pattern | texture), concept indices"}})
        summary["samples"] = n
    seconds = round(time.time() - t0, 2)
    _write_json(root / f".mini/{benchmark}.json", summary)  # the stamp DVC hashes: no timing in it
    write_json(run_record_path(root / f".mini/{benchmark}.json"), {"seconds": seconds, "git_sha": git_sha()})
    _log.info("mini %s written to %s in %.1f s", benchmark, root, seconds)
    return {**summary, "seconds": seconds}
