"""QPT / Table 3 switches: what is trainable, and that only it changes under AdamW + weight decay."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from clipfixtures import VOCAB, random_masks, single_thread  # noqa: F401 (autouse)

from smart.model import build_model, get_preset
from smart.model.config import TABLE3B_LORA_RANKS, TUNE_TARGETS
from smart.model.qpt import DeltaLinear, LoRALinear


def _model(**overrides):
    torch.manual_seed(0)
    return build_model(get_preset("tiny-test").replace(**overrides))


def _loss(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(2, 3, 40, 40, generator=g) * 255
    masks = random_masks(2, 4, 10, seed=seed)
    out = model(images, masks, VOCAB)
    target = torch.randint(0, len(VOCAB) + 1, (2, 4), generator=g)
    # a CE term on the classes and a BCE term on the DA-adapted masks, like the real criterion
    ce = F.cross_entropy(out["pred_logits"].flatten(0, 1), target.flatten())
    bce = F.binary_cross_entropy_with_logits(out["pred_masks"], (masks > 0).float().flip(-1))
    return ce + bce


def _step(model, wd=0.05):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=wd)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    _loss(model).backward()
    opt.step()
    return {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}


def test_qpt_changes_only_query_projections_sma_da_void():
    model = _model()  # tune=q, SMA on, DA 2 layers
    changed = _step(model)
    allowed_prefixes = ("classifier.tie.", "adapter.", "text_classifier.void_embedding")
    clip_changed = {n for n in changed if not n.startswith(allowed_prefixes)}
    n_blocks = len(model.classifier.tower.blocks)
    expected = {f"classifier.clip.visual.transformer.resblocks.{i}.attn.q_proj.{w}"
                for i in range(n_blocks) for w in ("weight", "bias")}
    assert clip_changed == expected  # k/v (bit-identical despite wd 0.05), out_proj, MLP, LNs, text untouched
    assert {"classifier.tie.g_q.weight", "classifier.tie.g_k.weight", "classifier.tie.g_v.weight"} <= changed
    assert "adapter.body.2.weight" in changed  # the DA is trained by the mask loss
    assert "text_classifier.void_embedding" in changed


def test_trainable_set_per_cell():
    counts = _model().parameter_counts()
    width, n_blocks = 64, 2
    assert counts["clip_visual"]["trainable"] == n_blocks * (width * width + width)
    assert counts["clip_text"]["trainable"] == 0
    base = _model(sma=False, tune="none")
    assert base.parameter_counts()["all"]["trainable"] == counts["adapter"]["trainable"] + counts["void"]["trainable"]
    text = _model(tune_text_encoder=True).parameter_counts()
    assert text["clip_text"]["trainable"] == text["clip_text"]["total"] - 1  # all but logit_scale


@pytest.mark.parametrize("tune", list(TUNE_TARGETS))
def test_every_tune_value_builds_and_trains(tune):
    model = _model(tune=tune)
    changed = _step(model)
    visual = {n for n in changed if n.startswith("classifier.clip.visual.")}
    if tune == "none":
        assert not visual
    elif tune == "all":
        assert "classifier.clip.visual.conv1.weight" in visual
    else:
        keys = {"q": "attn.q_proj", "k": "attn.k_proj", "v": "attn.v_proj", "mlp": "mlp."}
        wanted = {keys[t] for t in TUNE_TARGETS[tune]}
        assert visual and all(any(w in n for w in wanted) for n in visual)
        for t in set(keys) - set(TUNE_TARGETS[tune]):
            assert not any(keys[t] in n for n in visual)


@pytest.mark.parametrize("rank", TABLE3B_LORA_RANKS)
def test_every_lora_rank_builds_and_trains(rank):
    model = _model(tune="none", lora_rank=rank)
    attn = model.classifier.tower.blocks[0].attn
    assert isinstance(attn.q_proj, LoRALinear) and isinstance(attn.out_proj, LoRALinear)
    counts = model.parameter_counts()
    assert counts["lora"]["trainable"] == 2 * 4 * rank * (64 + 64)  # blocks x {q,k,v,o} x r x (in + out)
    changed = _step(model)
    visual = {n for n in changed if n.startswith("classifier.clip.visual.")}
    assert visual and all("lora_" in n for n in visual)


def test_lora_is_identity_at_init():
    torch.manual_seed(0)
    lin = torch.nn.Linear(16, 8)
    lora = LoRALinear(lin, rank=4, alpha=2.0)
    x = torch.randn(3, 16)
    torch.testing.assert_close(lora(x), lin(x))
    assert lora.scaling == 1.0 and not lin.weight.requires_grad


def test_delta_param_keeps_pretrained_weight_frozen():
    model = _model(qpt_param="delta")
    attn = model.classifier.tower.blocks[0].attn
    assert isinstance(attn.q_proj, DeltaLinear)
    w0 = attn.q_proj.base.weight.detach().clone()
    changed = _step(model)
    assert torch.equal(attn.q_proj.base.weight, w0)
    assert any("q_proj.delta_weight" in n for n in changed)


def test_mask_only_scope_trains_a_copy():
    model = _model(qpt_scope="mask_only")
    changed = _step(model)
    visual = {n for n in changed if n.startswith("classifier.clip.visual.")}
    assert visual and all("q_proj_mask" in n for n in visual)


def test_grad_checkpointing_matches():
    torch.manual_seed(0)
    m1 = _model()
    m2 = _model(grad_checkpointing=True)
    m2.load_state_dict(m1.state_dict())
    for m in (m1, m2):
        m.train()
        _loss(m).backward()
    g1 = m1.classifier.tower.blocks[0].attn.q_proj.weight.grad
    g2 = m2.classifier.tower.blocks[0].attn.q_proj.weight.grad
    torch.testing.assert_close(g1, g2)


def test_param_groups_decay_rule():
    model = _model()
    groups = {g["name"]: g for g in model.param_groups(lr=1e-4, weight_decay=0.05)}
    n = sum(len(g["params"]) for g in groups.values())
    assert n == len(model.trainable_parameters())
    assert groups["clip_decay"]["weight_decay"] == 0.05 and groups["clip_no_decay"]["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in groups["new_decay"]["params"])
    void = model.text_classifier.void_embedding
    assert any(p is void for p in groups["new_no_decay"]["params"])


def test_bf16_autocast_cpu():
    model = _model()
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = _loss(model)
    loss.backward()
    assert torch.isfinite(loss)
    assert model.classifier.tower.blocks[0].attn.q_proj.weight.grad is not None


def test_eva_tower_trains_q_only_and_resizes():
    torch.manual_seed(0)
    model = build_model(get_preset("tiny-test-eva").replace(image_size=48))
    trunk = model.clip.visual.trunk
    assert trunk.pos_embed.shape == (1, 1 + 36, 64)
    changed = _step(model)
    visual = {n for n in changed if n.startswith("classifier.clip.visual.")}
    assert visual == {f"classifier.clip.visual.trunk.blocks.{i}.attn.q_proj.{w}"
                      for i in range(2) for w in ("weight", "bias")}
