import os

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
