"""Mask generator wrapper, tiny configs, preprocessing and oracles (smart/model/mask_generator.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from smart.model.mask_generator import (
    BackendUnavailableError,
    GeneratorConfig,
    Mask2FormerGenerator,
    OracleMaskGenerator,
    build_mask_generator,
    list_tiny_configs,
    oracle_classifier_logits,
    preprocess_images,
    resize_shortest_edge_size,
    scores_from_class_logits,
    select_top_k,
    tiny_mask2former_config,
)


@pytest.fixture(scope="module")
def generators():
    torch.manual_seed(0)
    return {n: build_mask_generator(GeneratorConfig(name=n, num_labels=7, resize=False))
            for n in ("mini-r50", "mini-swinb")}


def _batch():
    return torch.randint(0, 256, (2, 3, 96, 96), generator=torch.Generator().manual_seed(0)).float()


@pytest.mark.parametrize("name", ["mini-r50", "mini-swinb"])
def test_tiny_generators_build_forward_and_are_frozen(generators, name):
    g = generators[name]
    assert name in list_tiny_configs()
    assert sum(p.numel() for p in g.parameters() if p.requires_grad) == 0
    g.train()  # a parent calling .train() must not unfreeze dropout / norms
    assert not g.training and not g.model.training
    batch = g.preprocess(_batch())
    assert batch["pixel_values"].shape == (2, 3, 96, 96) and batch["image_sizes"] == [(96, 96)] * 2
    out = g(batch["pixel_values"])
    Q = g.num_queries
    assert out["mask_logits"].shape == (2, Q, 24, 24)
    assert out["class_logits"].shape == (2, Q, 8) and g.num_classes == 7
    assert out["scores"].shape == (2, Q)
    assert all(torch.isfinite(v).all() and not v.requires_grad for v in out.values())
    probs = out["class_logits"].softmax(-1)
    torch.testing.assert_close(out["scores"], 1 - probs[..., -1])


def test_capacities_differ(generators):
    n = {k: sum(p.numel() for p in g.parameters()) for k, g in generators.items()}
    assert 0.8e6 < n["mini-r50"] < 1.1e6
    assert 1.7e6 < n["mini-swinb"] < 2.0e6


@pytest.mark.parametrize("name", ["mini-r50", "mini-swinb"])
def test_save_pretrained_round_trip(generators, name, tmp_path):
    g = generators[name]
    g.top_k = 5
    try:
        g.save_pretrained(tmp_path / name)
        g2 = Mask2FormerGenerator.from_pretrained(tmp_path / name)
        x = g.preprocess(_batch())["pixel_values"]
        a, b = g(x), g2(x)
        assert g2.top_k == 5 and g2.resize is False and not g2.tune
        for k in a:
            assert torch.equal(a[k], b[k]), k
        # the config path loads the same directory
        g3 = build_mask_generator(GeneratorConfig(pretrained=str(tmp_path / name), resize=False, top_k=5))
        assert torch.equal(g3(x)["mask_logits"], a["mask_logits"])
    finally:
        g.top_k = None


def test_tune_mask_generator_makes_it_trainable():
    g = build_mask_generator(GeneratorConfig(name="tiny", resize=False, tune_mask_generator=True))
    assert sum(p.numel() for p in g.parameters() if p.requires_grad) == sum(p.numel() for p in g.parameters())
    g.train()
    assert g.model.training
    out = g(torch.randn(1, 3, 64, 64))
    out["mask_logits"].mean().backward()
    assert any(p.grad is not None for p in g.parameters())


def test_top_k_selection():
    torch.manual_seed(0)
    out = {"scores": torch.rand(2, 6), "mask_logits": torch.randn(2, 6, 3, 3), "class_logits": torch.randn(2, 6, 4)}
    sel = select_top_k(out, 3)
    assert sel["mask_logits"].shape == (2, 3, 3, 3) and sel["class_logits"].shape == (2, 3, 4)
    for b in range(2):
        order = out["scores"][b].argsort(descending=True)[:3]
        assert sel["indices"][b].tolist() == order.tolist()
        assert torch.equal(sel["mask_logits"][b], out["mask_logits"][b, order])
    logits = torch.tensor([[[2.0, 0.0, 1.0]]])
    p = logits.softmax(-1)[0, 0]
    assert scores_from_class_logits(logits, "max_class").item() == pytest.approx(p[0].item())
    assert scores_from_class_logits(logits, "objectness").item() == pytest.approx(1 - p[2].item())


def test_preprocessing_follows_detectron2_resize_and_normalisation():
    assert resize_shortest_edge_size(480, 640, 800, 1333) == (800, 1067)
    assert resize_shortest_edge_size(400, 2000, 800, 1333) == (267, 1333)
    img = np.full((30, 50, 3), (123.675, 116.28, 103.53), dtype=np.float32).astype(np.uint8)
    b = preprocess_images([img, np.zeros((20, 10, 3), np.uint8)], resize=True, min_size=60, max_size=1000)
    assert b["image_sizes"] == [(60, 100), (120, 60)] and b["original_sizes"] == [(30, 50), (20, 10)]
    assert b["pixel_values"].shape == (2, 3, 128, 128)  # padded to a multiple of 32
    assert b["pixel_values"][0, :, :60, :100].abs().max() < 0.02  # mean colour → ≈ 0
    assert b["pixel_values"][0, :, 60:].eq(0).all() and b["pixel_mask"][0, 60:].eq(0).all()
    assert b["pixel_mask"][1, :120, :60].eq(1).all()


def test_detectron2_backend_is_optional():
    try:
        import detectron2  # noqa: F401
        import mask2former  # noqa: F401
    except ImportError:
        with pytest.raises(BackendUnavailableError, match="detectron2"):
            build_mask_generator(GeneratorConfig(backend="detectron2", pretrained="x.pkl", d2_config_file="x.yaml"))
    else:  # pragma: no cover
        pytest.skip("detectron2 is installed")


def test_closed_set_native_inference_runs_at_original_size(generators):
    g = generators["mini-r50"]
    imgs = [np.random.default_rng(0).integers(0, 256, (70, 90, 3), dtype=np.uint8)]
    res = g.closed_set_predict(imgs, is_thing=[True] * 4 + [False] * 3)
    assert res[0]["sem_label"].shape == (70, 90) and res[0]["sem_label"].max() < 7
    pan, segs = res[0]["panoptic_seg"]
    assert pan.shape == (70, 90)
    assert {s["id"] for s in segs} == set(pan.unique().tolist()) - {0}


# -------------------------------------------------------------------------------------------------
# oracles (Fig. 2a)


def _gt_case():
    """4×6 image: sky (stuff, dataset 7) top row, wall (stuff, 0) second row, two persons (thing, 1),
    a crowd person region and a void pixel."""
    from smart.model.criterion import targets_from_panoptic

    ids = np.array([[5, 5, 5, 5, 5, 5],
                    [6, 6, 6, 6, 6, 6],
                    [8, 8, 0, 9, 9, 4],
                    [8, 8, 9, 9, 9, 4]])
    segs = [{"id": 5, "category_id": 7, "train_id": 1, "iscrowd": 0, "isthing": 0},
            {"id": 6, "category_id": 0, "train_id": 2, "iscrowd": 0, "isthing": 0},
            {"id": 8, "category_id": 1, "train_id": 0, "iscrowd": 0, "isthing": 1},
            {"id": 9, "category_id": 1, "train_id": 0, "iscrowd": 0, "isthing": 1},
            {"id": 4, "category_id": 1, "train_id": 0, "iscrowd": 1, "isthing": 1}]
    for s in segs:
        s["area"] = int((ids == s["id"]).sum())
    cats = [{"id": 1, "isthing": 1, "name": "person"}, {"id": 7, "isthing": 0, "name": "sky"},
            {"id": 0, "isthing": 0, "name": "wall"}]
    return ids, segs, cats, targets_from_panoptic(ids, segs)


def test_oracle_generator_and_classifier_give_pq_100():
    from smart.eval.panoptic import PanopticAccumulator
    from smart.model.inference import panoptic_for_eval, postprocess

    ids, segs, cats, target = _gt_case()
    is_thing, dataset_ids = [True, False, False], [1, 7, 0]
    gen = OracleMaskGenerator(num_queries=6, num_classes=3)
    props = gen([target])
    assert props["mask_logits"].shape == (1, 6, 4, 6) and props["scores"][0].tolist() == [1] * 4 + [0] * 2
    assert torch.equal(props["mask_logits"][0, :4] > 0, target["masks"])
    cls = oracle_classifier_logits(props["mask_logits"], [target], num_classes=3)
    torch.testing.assert_close(cls, props["class_logits"])  # the two oracles agree on GT proposals
    res = postprocess({"pred_logits": cls, "pred_masks": props["mask_logits"]}, is_thing=is_thing)
    pan_ids, pan_segs = panoptic_for_eval(*res[0]["panoptic_seg"], dataset_ids=dataset_ids, is_thing=is_thing)
    acc = PanopticAccumulator(cats)
    acc.add(0, ids, segs, pan_ids, pan_segs)
    summary = acc.summary()
    assert summary["All"]["pq"] == pytest.approx(1.0) and summary["All"]["n"] == 3
    sem = res[0]["sem_label"].numpy()
    labelled = np.isin(ids, [5, 6, 8, 9])
    train_id = {5: 1, 6: 2, 8: 0, 9: 0}
    assert all(sem[y, x] == train_id[ids[y, x]] for y, x in zip(*np.nonzero(labelled)))


def test_oracle_classifier_uses_the_best_overlap_and_void_for_no_overlap():
    _, _, _, target = _gt_case()
    m = torch.full((1, 3, 2, 3), -5.0)  # proposals at half resolution (bilinear-resized to 4×6)
    m[0, 0, 0, :] = 5.0  # top half ≈ sky + wall rows: equal IoU → the first GT (sky)
    m[0, 1, 1, :2] = 5.0  # bottom-left ≈ person 8
    cls = oracle_classifier_logits(m, [target], num_classes=3)
    assert cls.argmax(-1)[0].tolist() == [1, 0, 3]  # query 2 overlaps nothing → void
    empty = {"labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, 4, 6, dtype=torch.bool)}
    assert oracle_classifier_logits(m, [empty], num_classes=3).argmax(-1).eq(3).all()


def test_oracle_generator_needs_enough_queries():
    _, _, _, target = _gt_case()
    with pytest.raises(ValueError, match="queries"):
        OracleMaskGenerator(num_queries=2)([target])


# ------------------------------------------------------------------ the paper's architectures, loading errors
def test_paper_swinb_architecture_is_the_released_one():
    """The shipped Swin-B (IN21k, 384) config builds offline (~107 M parameters, 100 queries, 133
    classes) and check_architecture names a field that differs."""
    from smart.model.mask_generator import PAPER_CONFIGS, check_architecture, tiny_mask2former_config

    cfg = tiny_mask2former_config("swinb-in21k-coco-panoptic")
    assert (cfg.num_queries, cfg.num_labels, cfg.decoder_layers, cfg.hidden_dim) == (100, 133, 10, 256)
    assert list(cfg.backbone_config.depths) == [2, 2, 18, 2] and cfg.backbone_config.window_size == 12
    assert check_architecture(cfg, "swinb-in21k-coco-panoptic") == []
    cfg.decoder_layers = 9
    cfg.backbone_config.embed_dim = 96
    diff = check_architecture(cfg, "swinb-in21k-coco-panoptic")
    assert "decoder_layers: 9 != 10" in diff and "backbone_config.embed_dim: 96 != 128" in diff
    from transformers import Mask2FormerForUniversalSegmentation

    with torch.device("meta"):
        model = Mask2FormerForUniversalSegmentation(PAPER_CONFIGS["swinb-in21k-coco-panoptic"]())
    assert 106e6 < sum(p.numel() for p in model.parameters()) < 108e6


def test_hub_name_without_network_says_how_to_get_the_weights(monkeypatch):
    from smart.errors import InputError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError) as e:
        Mask2FormerGenerator.from_pretrained("facebook/mask2former-swin-base-IN21k-coco-panoptic-not-cached")
    assert "hf download" in str(e.value) and "local directory" in str(e.value)


def test_weights_that_do_not_fit_name_the_first_key_and_both_shapes(tmp_path):
    import json

    from transformers import Mask2FormerForUniversalSegmentation

    from smart.errors import InputError

    torch.manual_seed(0)
    gen = Mask2FormerGenerator(model=Mask2FormerForUniversalSegmentation(tiny_mask2former_config("tiny")),
                               resize=False)
    gen.save_pretrained(tmp_path / "g")
    cfg = json.loads((tmp_path / "g/config.json").read_text())
    cfg["hidden_dim"] = 32
    (tmp_path / "g/config.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match=r"config.json \[sha256\]: the file changed"):  # its recorded checksum
        Mask2FormerGenerator.from_pretrained(tmp_path / "g")
    (tmp_path / "g/SHA256SUMS").unlink()  # a folder edited by hand, with no record to compare with
    with pytest.raises(InputError) as e:
        Mask2FormerGenerator.from_pretrained(tmp_path / "g")
    msg = str(e.value)
    assert "class_predictor.weight is (11, 64) in the weights file and (11, 32)" in msg and str(tmp_path / "g") in msg


def test_clip_weight_file_that_does_not_fit_and_offline_tag(tmp_path, monkeypatch):
    from smart.errors import InputError
    from smart.model.clip_classifier import create_clip

    torch.save(create_clip("smart-tiny-vit").state_dict(), tmp_path / "tiny.pt")
    with pytest.raises(InputError) as e:
        create_clip("ViT-B-16-quickgelu", pretrained=str(tmp_path / "tiny.pt"))
    assert "in the file and" in str(e.value) and e.value.field == "clip_pretrained"
    assert str(tmp_path / "tiny.pt") in str(e.value)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError) as e:
        create_clip("ViT-B-16-quickgelu", pretrained="openai")
    assert "cannot be downloaded" in str(e.value) and "clip_pretrained" in str(e.value)


def test_frozen_batchnorm_stays_fixed_when_the_generator_is_tuned(tmp_path):
    """A generator converted from detectron2 (FrozenBN) keeps BatchNorm statistics and affine fixed when
    tuned; the setting survives save / load. Without it BatchNorm trains (the mini generators)."""
    from transformers import Mask2FormerForUniversalSegmentation

    torch.manual_seed(0)
    model = Mask2FormerForUniversalSegmentation(tiny_mask2former_config("mini-r50"))
    Mask2FormerGenerator(model=model, resize=False, frozen_batchnorm=True).save_pretrained(tmp_path / "g")
    for frozen in (True, False):
        overrides = {} if frozen else {"frozen_batchnorm": False}  # True comes from the saved settings
        gen = Mask2FormerGenerator.from_pretrained(tmp_path / "g", tune=True, **overrides)
        assert gen.frozen_batchnorm is frozen
        gen.train()
        bns = [m for m in gen.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        assert bns and all(m.training is not frozen for m in bns)
        assert all(p.requires_grad is not frozen for m in bns for p in m.parameters())
        before = bns[0].running_mean.clone()
        gen(gen.preprocess([torch.rand(3, 64, 64) * 255])["pixel_values"])["mask_logits"].sum().backward()
        assert torch.equal(bns[0].running_mean, before) is frozen
