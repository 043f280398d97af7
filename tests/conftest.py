import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

SMALL_WORLD = {
    "seed": 0,
    "image_size": 64,
    "sizes": {"coco_train": 60, "coco_val": 12, "ade_val": 12, "mapillary_val": 12, "pascal_val": 12, "refer_val": 12},
    "captions": {"num_images": 24, "image_size": 32, "shard_size": 10, "group_size": 4},
}


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """The tests run tiny models: one intra-op thread avoids oversubscription stalls (notably when
    the machine's 2 cores are shared) and is as fast as two for these sizes."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def small_world_cfg():
    return {k: (dict(v) if isinstance(v, dict) else v) for k, v in SMALL_WORLD.items()}


@pytest.fixture(scope="session")
def mini_root(tmp_path_factory, small_world_cfg):
    """A small mini world on disk (every benchmark), shared by the tests of a session."""
    from smart.data.mini.generate import BENCHMARKS, generate

    root = tmp_path_factory.mktemp("mini")
    for b in BENCHMARKS:
        generate(b, root, small_world_cfg, workers=1)
    return root


@pytest.fixture(scope="session")
def make_world(tmp_path_factory):
    """``make_world(units, name, **sizes)``: a tiny mini world (64 px, 2 images per split unless
    ``sizes`` says otherwise) with only the given generation units, in a fresh directory."""
    from smart.data.mini.generate import generate

    def make(units, name: str = "world", **sizes):
        cfg = {"seed": 0, "image_size": 64,
               "sizes": {**dict.fromkeys(SMALL_WORLD["sizes"], 2), **sizes},
               "captions": {"num_images": 4, "image_size": 32, "shard_size": 10, "group_size": 4}}
        root = tmp_path_factory.mktemp(name)
        for unit in units:
            generate(unit, root, cfg, workers=1)
        return root

    return make


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A params file (tiny random CLIP and generator) and a model.pt of its `smart` cell."""
    import torch
    import yaml

    from smart.config import load_params
    from smart.model.config import get_preset
    from smart.model.smart import build_model
    from smart.train.checkpoint import atomic_save, frozen_checksum, trainable_state_dict

    d = tmp_path_factory.mktemp("trained")
    torch.manual_seed(0)
    # no void class: every proposal competes for pixels, so the random model predicts segments
    model = build_model(get_preset("tiny-test").replace(void_class=False)).eval()
    params = load_params("params.yaml")
    params["mini_world"]["image_size"] = 64  # the small test world's side
    params["model"]["mini"] = {"preset": "tiny-test", "void_class": False}
    params["eval"]["overlap_threshold"] = 0.0  # the random generator's masks overlap a lot
    params["train_defaults"]["mini"]["generators"]["swinb"] = {
        "name": "tiny", "backend": "hf", "pretrained": None, "resize": False, "top_k": 6}
    (d / "params.yaml").write_text(yaml.safe_dump(params))
    atomic_save({"format": "smart-trainable-v1", "cell": "smart", "model_config": model.config.to_dict(),
                 "train_config": {"proposal_pad_logit": -20.0}, "seed": 0, "iteration": 0,
                 "trainable_state": trainable_state_dict(model), "generator_state": {}, "generator_config": None,
                 "frozen_checksum": frozen_checksum(model)}, d / "model.pt")
    return d


@pytest.fixture(scope="session")
def tiny_gen_dir(tmp_path_factory) -> Path:
    """A tiny random mask generator saved to disk (the same weights in every process)."""
    import torch

    from smart.model.mask_generator import build_mask_generator

    torch.manual_seed(0)
    gen = tmp_path_factory.mktemp("gen") / "tiny"
    build_mask_generator({"name": "tiny", "backend": "hf", "pretrained": None, "resize": False}).save_pretrained(gen)
    return gen


@pytest.fixture(scope="session")
def tiny_train_params(trained, tiny_gen_dir, tmp_path_factory) -> Path:
    """The tiny model's params with its generator on disk, a training long enough to be killed in (12
    iterations, a checkpoint every 2) and caches of small shards."""
    import yaml

    params = yaml.safe_load((trained / "params.yaml").read_text())
    params["train_defaults"]["mini"]["generators"]["swinb"]["pretrained"] = str(tiny_gen_dir)
    params["train_defaults"]["mini"].update(iterations=12, batch_size=2, crop_size=64, log_period=1,
                                            checkpoint_period=2)
    params["proposals"]["mini"].update(shard_size=2, top_k=6)
    p = tmp_path_factory.mktemp("faults") / "params.yaml"
    p.write_text(yaml.safe_dump(params))
    return p
