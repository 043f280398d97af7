"""Text classifier (templates, max over synonyms, void, cache), SMA (Eqs. 3-4) and the DA."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from clipfixtures import VOCAB, random_masks, single_thread  # noqa: F401 (autouse)

from smart.data.categories import builtin_vocab
from smart.model import build_model, get_preset
from smart.model.adapter import DistributionAdapter
from smart.model.sma import TaskInformationExtraction
from smart.model.text import VILD_TEMPLATES, TextClassifier, TextEmbeddings, encode_vocabulary


def test_templates_are_the_14_vild_prompts():
    assert len(VILD_TEMPLATES) == 14 and len(set(VILD_TEMPLATES)) == 14
    assert VILD_TEMPLATES[0] == "a photo of a {}." and VILD_TEMPLATES[1] == "This is a photo of a {}"
    assert all(t.count("{}") == 1 for t in VILD_TEMPLATES)


def test_encode_vocabulary_template_average_and_tgt():
    calls = []

    def fake_encode(ids):  # one random but deterministic vector per prompt
        calls.append(ids.shape[0])
        g = torch.Generator().manual_seed(int(ids.sum()))
        return torch.randn(ids.shape[0], 8, generator=g)

    def fake_tok(texts):
        return torch.tensor([[sum(map(ord, t)), len(t)] for t in texts])

    emb = encode_vocabulary(fake_encode, fake_tok, VOCAB, batch_size=50)
    S = sum(len(s) for s in VOCAB)
    assert emb.synonyms.shape == (S, 8) and emb.classes.shape == (4, 8)
    assert sum(calls) == S * 14 and max(calls) <= 50
    assert emb.synonym_class.tolist() == [0, 0, 1, 2, 2, 2, 3]
    torch.testing.assert_close(emb.synonyms.norm(dim=-1), torch.ones(S))
    # TGT of class 2 = normalised mean of its three synonym embeddings
    torch.testing.assert_close(emb.classes[2], F.normalize(emb.synonyms[3:6].mean(0), dim=0))
    first = encode_vocabulary(fake_encode, fake_tok, VOCAB, tgt_mode="first")
    torch.testing.assert_close(first.classes[2], first.synonyms[3])


def test_classifier_max_over_synonyms_and_void():
    syn = F.normalize(torch.randn(5, 6), dim=-1)
    text = TextEmbeddings(syn, torch.tensor([0, 0, 1, 1, 1]), F.normalize(torch.randn(2, 6), dim=-1))
    clf = TextClassifier(embed_dim=6)
    z = torch.randn(2, 3, 6)
    logits = clf(z, text, torch.tensor(100.0).log())
    assert logits.shape == (2, 3, 3)
    cos = F.normalize(z, dim=-1) @ syn.t()
    torch.testing.assert_close(logits[..., 0], 100 * cos[..., :2].amax(-1))
    torch.testing.assert_close(logits[..., 1], 100 * cos[..., 2:].amax(-1))
    void = F.normalize(clf.void_embedding, dim=0)
    torch.testing.assert_close(logits[..., 2], 100 * F.normalize(z, dim=-1) @ void)
    # the scale is clamped at 100
    torch.testing.assert_close(clf(z, text, torch.tensor(10.0)), logits)


def test_model_text_cache(tmp_path):
    torch.manual_seed(0)
    model = build_model(get_preset("tiny-test"), text_cache_dir=str(tmp_path))
    e1 = model.encode_text(VOCAB)
    files = list(tmp_path.glob("*.pt"))
    assert len(files) == 1 and files[0].stem == e1.key
    model2 = build_model(get_preset("tiny-test"), text_cache_dir=str(tmp_path))  # different random weights
    model2.load_state_dict(model.state_dict())
    e2 = model2.encode_text(VOCAB)  # same weights -> same key -> read from disk
    assert e2.key == e1.key
    torch.testing.assert_close(e2.synonyms, e1.synonyms)
    e3 = model.encode_text(VOCAB[:3])
    assert e3.key != e1.key and e3.num_classes == 3
    plain = build_model(get_preset("tiny-test").replace(class_names="plain"))
    assert plain.encode_text(VOCAB).synonyms.shape[0] == 4  # raw first names only


@pytest.mark.parametrize("preset", ["tiny-test", "tiny-test-eva"])
def test_truncated_text_encoder_equals_encode_text(preset):
    """Dropping the padding after the batch's last end-of-text keeps every prompt's embedding (causal
    mask, EOT pooling); towers of another kind keep their own encode_text."""
    from smart.model.text import truncated_text_encoder

    torch.manual_seed(0)
    model = build_model(get_preset(preset))
    clip = model.clip
    ids = model.tokenizer(["cat", "a photo of a small kitty.", "sky with many clouds over the green grass"])
    enc = truncated_text_encoder(clip)
    if preset == "tiny-test-eva":  # the timm (EVA) tower's CLIP keeps its own encode_text
        assert enc is None or torch.allclose(enc(ids), clip.encode_text(ids), atol=1e-5)
        return
    with torch.no_grad():
        full, short = clip.encode_text(ids), enc(ids)
    assert short.shape == full.shape
    torch.testing.assert_close(short, full, atol=1e-5, rtol=1e-5)
    assert truncated_text_encoder(torch.nn.Linear(2, 2)) is None


def test_tuned_text_tower_is_not_read_from_the_cache_of_its_pretrained_weights():
    """A tuned text encoder is identified by its values, so a cached embedding of the untuned weights
    (same weight file / tag) is never served for it."""
    torch.manual_seed(0)
    frozen = build_model(get_preset("tiny-test"))
    tuned = build_model(get_preset("tiny-test").replace(tune_text_encoder=True))
    tuned.load_state_dict(frozen.state_dict())  # same values: only the identity rule differs
    for m in (frozen, tuned):  # as if both were loaded from the same pretrained weights
        m.config = m.config.replace(clip_pretrained="some-tag")
        m._weights_id = None
    assert "tag:some-tag" in frozen.text_cache_key(VOCAB) or frozen._weights_id == "tag:some-tag"
    assert tuned._weights_id is None and tuned.text_cache_key(VOCAB) != frozen.text_cache_key(VOCAB)
    assert tuned._weights_id.startswith("random:")


def test_model_accepts_a_builtin_vocabulary():
    model = build_model(get_preset("tiny-test"))
    vocab = builtin_vocab("pascal_voc_21")
    out = model(torch.rand(1, 3, 32, 32) * 255, random_masks(1, 3, 8), vocab)
    assert out["pred_logits"].shape == (1, 3, len(vocab) + 1)
    assert torch.isfinite(out["pred_logits"]).all()


def test_sma_shapes_and_literal_no_residual():
    torch.manual_seed(0)
    tie = TaskInformationExtraction(width=64, text_dim=32, dim=16)
    u = torch.randn(2, 5, 64)
    tgt = F.normalize(torch.randn(7, 32), dim=-1)
    k, v = tie.project_targets(tgt)
    assert k.shape == (7, 16) and v.shape == (7, 64)
    out = tie(u, k, v)
    assert out.shape == (2, 5, 64)
    # Eq. 3: a convex mix of g_v(TGT) rows
    att = (tie.g_q(u) @ k.t() / 4.0).softmax(-1)
    torch.testing.assert_close(out, att @ v)
    res = TaskInformationExtraction(width=64, text_dim=32, dim=16, residual=True)
    res.load_state_dict(tie.state_dict())
    torch.testing.assert_close(res(u, k, v), u + out)
    n_params = sum(p.numel() for p in tie.parameters())
    assert n_params == (64 * 16 + 16) + (32 * 16 + 16) + (32 * 64 + 64)


def test_sma_is_one_shared_module_used_in_every_block():
    model = build_model(get_preset("tiny-test"))
    calls = []
    h = model.classifier.tie.register_forward_hook(lambda *a: calls.append(1))
    model(torch.rand(1, 3, 32, 32) * 255, random_masks(1, 2, 8), VOCAB)
    h.remove()
    assert len(calls) == len(model.classifier.tower.blocks)
    only = build_model(get_preset("tiny-test").replace(sma_layers=[1]))
    calls.clear()
    only.classifier.tie.register_forward_hook(lambda *a: calls.append(1))
    only(torch.rand(1, 3, 32, 32) * 255, random_masks(1, 2, 8), VOCAB)
    assert len(calls) == 1


@pytest.mark.parametrize("layers", [0, 1, 2, 3])
def test_distribution_adapter_identity_at_init(layers):
    da = DistributionAdapter(num_layers=layers, hidden=4)
    m = random_masks(2, 3, 12)
    out = da(m)
    assert out.shape == m.shape
    torch.testing.assert_close(out, m)
    n = sum(p.numel() for p in da.parameters())
    assert n == {0: 0, 1: 10, 2: (4 * 9 + 4) + (4 * 9 + 1), 3: 40 + (16 * 9 + 4) + 37}[layers]
    if layers:
        # trainable: a BCE step moves the output away from the input
        opt = torch.optim.SGD(da.parameters(), lr=1.0)
        F.binary_cross_entropy_with_logits(da(m), (m < 0).float()).backward()
        opt.step()
        assert not torch.allclose(da(m), m)


def test_paper_da_parameter_count():
    assert sum(p.numel() for p in DistributionAdapter(num_layers=2, hidden=16).parameters()) == 305


def test_soft_mask_bias_matches_the_hard_test_and_keeps_gradient():
    """mask_bias: soft is log σ(max logit − threshold) per patch: ≥ log ½ exactly where Eq. 5 lets the patch in."""
    from smart.model.clip_classifier import build_mask_attention

    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(2, 5, 16, 16, generator=g) * 3).requires_grad_(True)  # (B, Q, h, w)
    hard = build_mask_attention(logits, image_hw=(32, 32), patch_size=8, threshold=0.5)
    soft = build_mask_attention(logits, image_hw=(32, 32), patch_size=8, threshold=0.5, soft=True)
    assert not hard.bias.requires_grad and soft.bias.requires_grad
    assert soft.bias.shape == hard.bias.shape == (2, 5, 16)
    assert torch.equal(soft.visible, hard.visible)
    assert torch.equal(soft.bias.detach() >= torch.log(torch.tensor(0.5)), soft.visible)
    assert torch.isfinite(soft.bias).all() and (soft.bias <= 0).all()
    soft.bias.sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


@pytest.mark.parametrize("mask_bias, reached", [("hard", False), ("soft", True)])
def test_classification_loss_reaches_the_adapter_only_through_a_soft_bias(mask_bias, reached):
    torch.manual_seed(0)
    model = build_model(get_preset("tiny-test").replace(mask_bias=mask_bias)).train()
    images = torch.rand(2, 3, 32, 32) * 255
    props = torch.randn(2, 6, 8, 8) * 3  # (B, Q, h, w)
    out = model(images, props, VOCAB)
    out["pred_logits"].logsumexp(-1).sum().backward()  # a classification loss only
    grads = [p.grad for p in model.adapter.parameters()]
    got = any(g_ is not None and g_.abs().sum() > 0 for g_ in grads)
    assert got is reached
