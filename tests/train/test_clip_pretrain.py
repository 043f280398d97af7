import json

import numpy as np
import pytest
import torch

from smart.config import load_params, section
from smart.errors import ConfigError, DatasetError
from smart.train.clip_pretrain import (
    MiniClipConfig,
    load_corpus,
    load_local,
    sample_batch,
    train,
)

TINY = dict(embed_dim=32, image_size=32, patch_size=8, vision_width=32, vision_layers=1, vision_head_width=16,
            context_length=32, text_width=32, text_heads=2, text_layers=1, steps=3, batch_size=8, warmup=1,
            log_every=1, bf16=False, eval_per_class=1)


def test_params_section_is_valid():
    cfg = MiniClipConfig.from_dict(section(load_params("params.yaml"), "mini_clip"))
    assert cfg.image_size % cfg.patch_size == 0 and cfg.steps > 0


@pytest.mark.parametrize("bad,field", [({"stepz": 3}, "mini_clip.stepz"), ({"grouped_fraction": 2.0}, "mini_clip.grouped_fraction"),
                                       ({"image_size": 30}, "mini_clip.image_size"), ({"lr": -1.0}, "mini_clip.lr")])
def test_bad_config_names_the_key(bad, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        MiniClipConfig.from_dict({**TINY, **bad})


def test_batches_keep_hard_negative_groups_whole(mini_root):
    corpus = load_corpus(mini_root / "captions")
    rng = np.random.default_rng(0)
    idx = sample_batch(corpus, 12, 0.5, rng)
    assert len(idx) == len(set(idx.tolist())) == 12
    head = corpus.groups[idx[:4]]  # 0.5 * 12 = 6 grouped slots -> one whole group of 4 first
    assert len(set(head.tolist())) == 1 and head[0] >= 0
    assert sorted(idx[:4].tolist()) == np.flatnonzero(corpus.groups == head[0]).tolist()


def test_training_saves_an_open_clip_checkpoint_that_loads_back(mini_root, tmp_path):
    torch.manual_seed(0)
    cfg = MiniClipConfig.from_dict(TINY)
    out = tmp_path / "clip"
    summary = train(cfg, mini_root / "captions", out, metrics_path=tmp_path / "curve.jsonl")
    assert summary["steps"] == 3 and np.isfinite(summary["final_loss"])
    for kind, n in (("things", 35), ("stuff", 28)):
        zs = summary["zero_shot"][kind]
        assert 0.0 <= zs["accuracy"] <= 1.0 and zs["classes"] == n and zs["images"] == n
        for g in ("seen", "held_out", "novel_combination", "novel_attribute"):  # per class group
            assert 0.0 <= zs[f"accuracy_{g}"] <= 1.0
    curve = [json.loads(line) for line in (tmp_path / "curve.jsonl").read_text().splitlines()]
    assert [r["step"] for r in curve] == [1, 2, 3]
    model, tokenizer = load_local(out)  # open_clip's own loader, "local-dir:" schema
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        a = model.encode_image(x)
    assert a.shape == (2, 32)
    assert tokenizer(["a photo of a striped red object."]).shape == (1, 32)
    # the same weights as trained (a second training run with the same seed gives the same checkpoint)
    train(cfg, mini_root / "captions", tmp_path / "clip2")
    model2, _ = load_local(tmp_path / "clip2")
    with torch.no_grad():
        assert torch.equal(model2.encode_image(x), a)


def test_missing_corpus_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="make-mini captions"):
        load_corpus(tmp_path)
