import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from smart.data.mini.generate import benchmark_vocabularies, generate
from smart.data.mini.world import (
    DOMAINS,
    GROUPS,
    NOVEL_ATTRIBUTES,
    STUFF_FAMILIES,
    STUFF_TEXTURES,
    THING_COLOURS,
    THING_PATTERNS,
    Canvas,
    ClassSampler,
    build_universe,
    render_scene,
)
from smart.data.registry import Dataset

U = build_universe()
HELD_OUT = {c.name for c in U if not c.seen_in_coco}
NOVEL_ATTR = {c.name for c in U if c.group == "novel_attribute"}


def test_universe_is_attribute_product_with_unique_names():
    assert len(U) == 63 and sum(c.isthing for c in U) == 35  # 5 patterns x 7 colours, 7 textures x 4 families
    synonyms = [s for c in U for s in c.synonyms]
    assert len(synonyms) == len(set(synonyms)), "a synonym names two classes"
    assert len({c.name for c in U}) == 63


def test_groups_seen_novel_combinations_and_novel_attributes():
    by = {g: [c for c in U if c.group == g] for g in GROUPS}
    assert [len(by[g]) for g in GROUPS] == [24, 24, 15]
    assert HELD_OUT == {c.name for g in ("novel_combination", "novel_attribute") for c in by[g]}
    # the seen classes show every base attribute, never a novel one
    base_patterns, base_colours = set(THING_PATTERNS) - NOVEL_ATTRIBUTES, set(THING_COLOURS) - NOVEL_ATTRIBUTES
    things = [c for c in by["seen"] if c.isthing]
    stuff = [c for c in by["seen"] if not c.isthing]
    assert {c.a for c in things} == base_patterns and {c.b for c in things} == base_colours
    assert {c.a for c in stuff} == set(STUFF_TEXTURES) - NOVEL_ATTRIBUTES and {c.b for c in stuff} == set(STUFF_FAMILIES)
    # novel combinations: base attributes only; novel attributes: exactly the classes with one
    assert all(c.a not in NOVEL_ATTRIBUTES and c.b not in NOVEL_ATTRIBUTES for c in by["novel_combination"])
    assert {c.name for c in by["novel_attribute"]} == {c.name for c in U if {c.a, c.b} & NOVEL_ATTRIBUTES}
    assert NOVEL_ATTRIBUTES <= set(THING_COLOURS) | set(THING_PATTERNS) | set(STUFF_TEXTURES)


def test_vocabularies_nest_and_hold_out():
    v = benchmark_vocabularies(0)
    idx = {k: {c.index for c in cs} for k, cs in v.items()}
    assert all(c.seen_in_coco for c in v["coco_panoptic"])
    assert idx["ade20k_150"] <= idx["ade20k_847"] and idx["pascal_ctx_59"] <= idx["pascal_ctx_459"]
    assert len(idx["ade20k_847"]) > len(idx["ade20k_150"]) and len(idx["pascal_ctx_459"]) > len(idx["pascal_ctx_59"])
    for key in ("ade20k_150", "ade20k_847", "mapillary_vistas", "pascal_ctx_59", "pascal_ctx_459"):
        groups = {c.group for c in v[key]}
        assert groups == set(GROUPS), key  # every evaluation vocabulary has all three groups
        assert {c.group for c in v[key] if c.isthing} == set(GROUPS), key
    assert benchmark_vocabularies(0) == v  # deterministic


def test_held_out_classes_never_occur_in_coco_training_split(mini_root):
    ds = Dataset.open("coco_train", root=mini_root)
    assert len(ds) == 60
    for rec in ds.records:  # the annotations
        for seg in rec["segments_info"]:
            assert ds.vocab[seg["train_id"]].name not in HELD_OUT
    for i in range(len(ds)):  # and the pixels
        s = ds[i]
        labels = np.unique(s["sem_seg"])
        assert all(ds.vocab[int(t)].name not in HELD_OUT for t in labels if t != 255)
    # the vocabulary itself has no held-out class
    assert not {c.name for c in ds.vocab} & HELD_OUT


def test_every_training_pixel_is_of_a_seen_class_without_a_novel_attribute(mini_root):
    """Each pixel of the COCO-like training split: VOID, or a segment whose class is seen and has no
    novel attribute (white, ringed, wavy), read from the panoptic PNG and its segments_info."""
    from smart.data.mini.groups import groups_by_name

    groups = groups_by_name(mini_root)
    ds = Dataset.open("coco_train", root=mini_root)
    for i in range(len(ds)):
        s = ds[i]
        ids = np.asarray(s["pan_ids"])  # (H, W) segment id per pixel, 0 = VOID
        cls = {seg["id"]: ds.vocab[seg["train_id"]].name for seg in s["segments_info"]}
        for sid in np.unique(ids):
            if sid == 0:
                continue
            name = cls[int(sid)]
            assert groups[name] == "seen" and name not in NOVEL_ATTR, (s["image_id"], name)
            assert not set(name.split()) & NOVEL_ATTRIBUTES


def test_novel_attributes_are_in_the_caption_corpus_and_the_benchmarks(mini_root):
    words = set()
    for shard in sorted((Path(mini_root) / "captions").glob("*.tar")):
        with tarfile.open(shard) as tar:
            for m in tar.getmembers():
                if m.name.endswith(".txt"):
                    words |= set(tar.extractfile(m).read().decode().replace(",", " ").replace(".", " ").split())
    assert NOVEL_ATTRIBUTES <= words  # the mini CLIP reads them in captions
    for name in ("ade150", "ade847"):
        ds = Dataset.open(name, root=mini_root)
        present = {ds.vocab[int(t)].name for i in range(len(ds)) for t in np.unique(ds[i]["sem_seg"])
                   if t != ds.ignore_label}
        assert present & NOVEL_ATTR, name


@pytest.mark.parametrize("name", ["ade150", "ade847", "mapillary", "pc59", "pc459"])
def test_evaluation_sets_contain_held_out_classes(mini_root, name):
    ds = Dataset.open(name, root=mini_root)
    present = set()
    for i in range(len(ds)):
        sem = ds[i]["sem_seg"]
        present |= {ds.vocab[int(t)].name for t in np.unique(sem) if t != ds.ignore_label}
    assert present & HELD_OUT
    assert present & NOVEL_ATTR


def _digest(root: Path, sub: str) -> str:
    h = hashlib.sha256()
    for p in sorted((root / sub).rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_generation_is_deterministic_and_independent_of_workers(tmp_path, small_world_cfg):
    cfg = json.loads(json.dumps(small_world_cfg))
    cfg["sizes"]["mapillary_val"] = 9
    generate("mapillary", tmp_path / "a", cfg, workers=1)
    generate("mapillary", tmp_path / "b", cfg, workers=2)
    assert _digest(tmp_path / "a", "mapillary_vistas") == _digest(tmp_path / "b", "mapillary_vistas")
    cfg["seed"] = 1
    generate("mapillary", tmp_path / "c", cfg, workers=1)
    assert _digest(tmp_path / "a", "mapillary_vistas") != _digest(tmp_path / "c", "mapillary_vistas")


def test_domains_have_different_image_statistics():
    canvas = Canvas(64)

    def stats(domain):
        rng = np.random.default_rng(0)
        sampler = ClassSampler.build(U)
        area, count, bright = [], [], []
        for _ in range(40):
            s = render_scene(canvas, DOMAINS[domain], sampler, rng)
            area += [t.mask.mean() for t in s.things if not t.iscrowd]
            count.append(len(s.things))
            bright.append(s.image.mean())
        return np.mean(area), np.mean(count), np.mean(bright)

    coco, mv = stats("coco"), stats("mapillary")
    assert mv[0] < 0.5 * coco[0]  # smaller objects
    assert mv[1] > coco[1]  # more clutter
    assert mv[2] < coco[2]  # darker


def test_file_formats_match_the_real_benchmarks(mini_root):
    with Image.open(next((mini_root / "ADE20K_2021_17_01/annotations_detectron2/validation").iterdir())) as im:
        assert np.asarray(im).dtype == np.uint16
    with Image.open(next((mini_root / "pascal_ctx_d2/annotations_ctx459/validation").iterdir())) as im:
        assert np.asarray(im).dtype == np.uint16
    pan = json.loads((mini_root / "coco/annotations/panoptic_val2017.json").read_text())
    assert {"images", "annotations", "categories"} <= set(pan)
    assert all(isinstance(im["id"], int) for im in pan["images"])
    ade = json.loads((mini_root / "ADEChallengeData2016/ade20k_panoptic_val.json").read_text())
    assert all(isinstance(im["id"], str) for im in ade["images"])  # string ids, as ADE
    mv = Dataset.open("mapillary", root=mini_root)
    assert mv.ignore_label == len(mv.vocab)  # Mapillary: ignore = number of classes
    vocab = json.loads((mini_root / "vocab/categories_with_synonyms.json").read_text())
    assert set(vocab) >= {"coco_panoptic", "ade20k_150", "ade20k_847", "mapillary_vistas", "pascal_ctx_59",
                          "pascal_ctx_459", "universe"}
    line = (mini_root / "vocab/coco_panoptic_with_prompt_eng.txt").read_text().splitlines()[0]
    cid, names = line.split(":")
    assert int(cid) >= 1 and len(names.split(",")) == 3


def test_caption_corpus_is_webdataset_with_hard_negative_groups(mini_root):
    manifest = json.loads((mini_root / "captions/manifest.json").read_text())
    assert manifest["num_samples"] == 24 and len(manifest["shards"]) == 3
    samples = {}
    for shard in manifest["shards"]:
        with tarfile.open(mini_root / "captions" / shard) as tar:
            for m in tar.getmembers():
                key, ext = m.name.split(".")
                samples.setdefault(key, {})[ext] = tar.extractfile(m).read()
    assert len(samples) == 24
    groups = {}
    for key, s in samples.items():
        assert set(s) == {"png", "txt", "json"}
        assert Image.open(io.BytesIO(s["png"])).size == (32, 32)
        meta = json.loads(s["json"])
        assert s["txt"].decode().strip()
        if meta["group"] >= 0:
            groups.setdefault(meta["group"], []).append((s["txt"].decode(), meta))
    assert groups, "expected at least one hard-negative group"
    for members in groups.values():
        assert len(members) == 4
        kind = {m["group_kind"] for _, m in members}
        assert len(kind) == 1
        fixed = "stuff" if kind == {"pattern"} else "things"
        moving = "things" if fixed == "stuff" else "stuff"
        assert len({tuple(m[fixed]) for _, m in members}) == 1  # the other attribute is shared
        assert len({tuple(m[moving]) for _, m in members}) == 4  # each member has its own classes
        assert len({t for t, _ in members}) == 4  # and its own caption


def test_referring_sets(mini_root):
    for name in ("refcoco", "refcoco+"):
        ds = Dataset.open(name, root=mini_root)
        for i in range(len(ds)):
            s = ds[i]
            assert s["mask"].any()
            if name == "refcoco+":
                assert not any(w in " ".join(s["sentences"]) for w in ("left", "right", "top", "bottom", "upper", "lower"))
