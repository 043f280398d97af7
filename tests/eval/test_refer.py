"""Table 4 zero-shot referring segmentation (smart/eval/refer.py, smart/cli/eval_refer.py).

Hand-made tensors for the oIoU arithmetic and the cosine selection; a tiny random-init CLIP
(``tiny-test`` preset) and a tiny random Mask2Former on a 4-image referring mini world end to end.
"""

from __future__ import annotations

import json
import os

import pytest
import torch

from smart.data.proposals import ProposalCacheConfig
from smart.eval.refer import (
    OIoUAccumulator,
    binarise_selected,
    encode_expressions,
    evaluate_referring,
    image_groups,
    mask_embeddings,
    select_proposals,
    untuned_model,
    without_sma,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TINY_GEN = {"name": "tiny", "backend": "hf", "pretrained": None, "resize": False, "top_k": 6}


def box(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
    m = torch.zeros(h, w, dtype=torch.bool)
    m[y0:y1, x0:x1] = True
    return m


# ------------------------------------------------------------------------------------ arithmetic
def test_oiou_is_cumulative_and_miou_is_the_mean():
    acc = OIoUAccumulator()
    # expression 1: 2x2 prediction, 2x2 GT, overlap 2 pixels -> I 2, U 6
    iou1 = acc.add(box(4, 4, 0, 2, 0, 2)[None], box(4, 4, 0, 2, 1, 3))
    # expression 2: one pixel inside a 3x3 GT -> I 1, U 9
    iou2 = acc.add(box(4, 4, 1, 2, 1, 2)[None], box(4, 4, 0, 3, 0, 3)[None])
    assert iou1.tolist() == pytest.approx([2 / 6]) and iou2.tolist() == pytest.approx([1 / 9])
    s = acc.summary()
    assert (s["intersection"], s["union"], s["num_expressions"]) == (3, 15, 2)
    assert s["oIoU"] == pytest.approx(100 * 3 / 15)  # 20.0, not the mean of the IoUs
    assert s["mIoU"] == pytest.approx(100 * (2 / 6 + 1 / 9) / 2)
    # an expression with empty prediction and empty GT counts 0 and adds nothing to I or U
    acc.add(torch.zeros(1, 4, 4, dtype=torch.bool), torch.zeros(4, 4, dtype=torch.bool))
    s = acc.summary()
    assert s["oIoU"] == pytest.approx(20.0) and s["mIoU"] == pytest.approx(100 * (2 / 6 + 1 / 9) / 3)
    assert OIoUAccumulator().summary()["oIoU"] is None


def test_selection_takes_the_highest_cosine_not_the_largest_dot_product():
    mask_emb = torch.tensor([[100.0, 0.0, 0.0],  # huge norm, cosine 0.6 with the text
                             [0.0, 1.0, 0.0],  # cosine 0.8
                             [0.7, 0.7, 0.0]])  # cosine 0.98 / 0.99: the best
    text = torch.tensor([[0.6, 0.8, 0.0],
                         [-1.0, 0.0, 0.0],  # cosines -1, 0, -0.71: proposal 1
                         [0.0, 0.0, 5.0]])  # orthogonal to all: first index wins ties (0)
    assert select_proposals(mask_emb, text).tolist() == [2, 1, 0]
    valid = torch.tensor([True, True, False])  # proposal 2 is empty: never picked
    assert select_proposals(mask_emb, text, valid).tolist() == [1, 1, 0]
    none_valid = torch.zeros(3, dtype=torch.bool)  # every proposal empty: all are candidates
    assert select_proposals(mask_emb, text, none_valid).tolist() == [2, 1, 0]


def test_selected_proposal_is_upsampled_binarised_and_scored():
    # three (2, 2) proposals over a (4, 4) image; logits +-5 give crisp halves after bilinear upsampling
    props = torch.full((3, 2, 2), -5.0)
    props[0, :, 0] = 5.0  # left half
    props[1, 0, :] = 5.0  # top half
    props[2] = 5.0  # everything
    mask_emb = torch.eye(3)  # proposal q's embedding = e_q
    text = torch.tensor([[0.1, 1.0, 0.0], [1.0, 0.2, 0.0]])  # -> top half, left half
    idx = select_proposals(mask_emb, text)
    assert idx.tolist() == [1, 0]
    pred = binarise_selected(props, idx, (4, 4))  # (2, 4, 4)
    assert torch.equal(pred[0], box(4, 4, 0, 2, 0, 4)) and torch.equal(pred[1], box(4, 4, 0, 4, 0, 2))
    gt = box(4, 4, 0, 2, 0, 2)  # top-left quarter, for both expressions
    acc = OIoUAccumulator()
    acc.add(pred, gt)
    assert acc.summary()["oIoU"] == pytest.approx(100 * (4 + 4) / (8 + 8))
    # logit exactly 0 is foreground (sigmoid >= 0.5)
    assert binarise_selected(torch.zeros(1, 2, 2), torch.tensor([0]), (2, 2)).all()


def test_image_groups_keep_first_appearance_order():
    recs = [{"image_id": 5}, {"image_id": 3}, {"image_id": 5}, {"image_id": 7}, {"image_id": 3}]
    assert image_groups(recs) == [[0, 2], [1, 4], [3]]


# ------------------------------------------------------------------------------------ tiny models
@pytest.fixture(scope="module")
def world(make_world):
    return make_world(("vocab", "refer"), "refer_world", refer_val=4)


@pytest.fixture(scope="module")
def meta():
    from smart.model.config import get_preset

    return {"seed": 3, "model_config": get_preset("tiny-test").to_dict()}


@pytest.fixture(scope="module")
def proposals():
    from smart.eval.cell import generator_proposals

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return generator_proposals(TINY_GEN, state=None, device="cpu", source="test",
                                test_time=ProposalCacheConfig()).for_dataset("ade150")


def write_model(path, meta: dict, state: dict) -> None:
    from smart.train.checkpoint import MODEL_FORMAT, atomic_save

    atomic_save({"format": MODEL_FORMAT, "cell": "smart", "model_config": meta["model_config"], "seed": meta["seed"],
                 "iteration": 0, "trainable_state": state, "generator_state": {}, "generator_config": TINY_GEN},
                path)


def tuned_state(model) -> dict[str, torch.Tensor]:
    """The model's trainable state with every q_proj weight moved (a stand-in for SMART tuning)."""
    from smart.train.checkpoint import trainable_state_dict

    state = trainable_state_dict(model)
    g = torch.Generator().manual_seed(1)
    qs = [k for k in state if "q_proj.weight" in k]
    assert qs
    for k in qs:
        state[k] = state[k] + 0.5 * torch.randn(state[k].shape, generator=g)
    return state


def test_untuned_model_is_reproducible_and_sma_is_bypassed(meta, world, proposals):
    from smart.data.registry import Dataset

    a, b = untuned_model(meta), untuned_model(meta)
    for (n, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(p, q), n
    ds = Dataset.open("refcoco", root=world)
    image = torch.tensor(ds[0]["image"]).permute(2, 0, 1)[None].float()  # (1, 3, H, W)
    props = proposals([ds[0]], image)  # (1, Q, h, w)
    tie = a.classifier.tie
    assert tie is not None  # the tiny-test preset has SMA on ...
    with pytest.raises(ValueError, match="SMA is on"):
        a.classifier.forward_tokens(a.preprocess(image), props, None)
    z, empty = mask_embeddings(a, image, props)  # ... and the referring path runs without it
    assert a.classifier.tie is tie  # restored
    assert z.shape == (1, props.shape[1], a.classifier.embed_dim) and empty.shape == props.shape[:2]
    assert torch.allclose(z.norm(dim=-1), torch.ones(z.shape[:2]), atol=1e-5)
    with torch.no_grad():  # SMA weights do not influence the referring embeddings
        for p in tie.parameters():
            p.add_(1.0)
    assert torch.equal(mask_embeddings(a, image, props)[0], z)
    with pytest.raises(RuntimeError), without_sma(a):
        raise RuntimeError
    assert a.classifier.tie is tie
    t = encode_expressions(a, ["the red object", "a blue thing on the left", "x"], batch_size=2)
    assert t.shape == (3, a.classifier.embed_dim)
    assert torch.allclose(t.norm(dim=-1), torch.ones(3), atol=1e-5)


def test_before_equals_after_at_init_and_differs_after_q_tuning(meta, world, proposals, tmp_path):
    from smart.data.registry import Dataset
    from smart.train.checkpoint import load_trained, trainable_state_dict

    before = untuned_model(meta)
    write_model(tmp_path / "init.pt", meta, trainable_state_dict(before))
    write_model(tmp_path / "tuned.pt", meta, tuned_state(before))
    same, _ = load_trained(tmp_path / "init.pt")
    tuned, _ = load_trained(tmp_path / "tuned.pt")
    ds = Dataset.open("refcoco", root=world)
    res = evaluate_referring({"before": before, "same": same, "tuned": tuned}, ds, proposals, limit=3)
    assert res["before"] == res["same"]
    assert res["before"]["num_refs"] == 3 and res["before"]["num_images"] == 3
    assert res["before"]["num_expressions"] == sum(len(r["sentences"]) for r in ds.records[:3])
    assert 0.0 <= res["before"]["oIoU"] <= 100.0
    image = torch.tensor(ds[0]["image"]).permute(2, 0, 1)[None].float()  # (1, 3, H, W)
    props = proposals([ds[0]], image)  # (1, Q, h, w)
    z_before = mask_embeddings(before, image, props)[0]
    assert torch.equal(z_before, mask_embeddings(same, image, props)[0])
    assert not torch.allclose(z_before, mask_embeddings(tuned, image, props)[0], atol=1e-4)
    # the text tower is not tuned: expressions embed identically
    assert torch.equal(encode_expressions(before, ["the red object"]), encode_expressions(tuned, ["the red object"]))


def test_cli_writes_flat_metrics_and_detail(meta, world, tmp_path, capsys):
    from smart.cli import main

    before = untuned_model(meta)
    write_model(tmp_path / "model.pt", meta, tuned_state(before))
    out, detail = tmp_path / "m" / "s0.json", tmp_path / "d" / "s0.json"
    rc = main(["eval-refer", "--params", "params.yaml", "--cell", "smart", "--seed", "0", "--model",
               str(tmp_path / "model.pt"), "--profile", "mini", "--root", str(world), "--datasets", "refcoco",
               "refcoco+", "--limit", "2", "--out", str(out), "--detail", str(detail), "--device", "cpu",
               "--threads", "1"])
    assert rc == 0
    m = json.loads(out.read_text())
    assert set(m) == {"refcoco", "refcoco+"}
    groups = [f"oIoU_{g}_{w}" for g in ("seen", "novel_comb", "novel_attr") for w in ("before", "after")]
    for v in m.values():  # the mini world: oIoU per group of the referred class as well
        assert set(v) == {"oIoU_before", "oIoU_after", "mIoU_before", "mIoU_after", *groups}
        assert all(isinstance(x, float) and 0 <= x <= 100 for k, x in v.items() if k not in groups)
        assert any(v[k] is not None for k in groups)
    d = json.loads(detail.read_text())
    for when in ("before", "after"):  # the groups split the expressions
        parts = d["refcoco"][when]["groups"]
        assert sum(p["num_expressions"] for p in parts.values()) == d["refcoco"][when]["num_expressions"]
        assert sum(p["intersection"] for p in parts.values()) == d["refcoco"][when]["intersection"]
        assert sum(p["union"] for p in parts.values()) == d["refcoco"][when]["union"]
    assert d["refcoco"]["before"]["oIoU"] == m["refcoco"]["oIoU_before"]
    assert d["refcoco+"]["after"]["num_refs"] == 2 and d["refcoco"]["num_refs_total"] == 4
    assert d["provenance"]["cell"] == "smart" and d["provenance"]["limit"] == 2
    assert "refcoco:" in capsys.readouterr().out
    rc = main(["eval-refer", "--params", "params.yaml", "--cell", "smart", "--seed", "0", "--model",
               str(tmp_path / "missing.pt"), "--root", str(world), "--out", str(out), "--detail", str(detail)])
    assert rc == 2 and "trained model file not found" in capsys.readouterr().err
