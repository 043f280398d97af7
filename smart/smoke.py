"""``python -m smart paper-smoke``: run the paper profile's whole DAG on a CPU, offline, in minutes.

Every rule kind of the paper profile runs for real — prepare → check → convert the R50 generator →
cache proposals (Swin-B and R50) → train (QPT on ViT-L/14-336, SMA, DA, void) → eval-cell on all six
benchmarks → benchmark → eval-refer → every table and figure — with:

* **the paper's architectures, random weights, built offline**: open_clip ``ViT-L-14-336-quickgelu``
  (both towers, saved once as a local weight file that every job loads), the Swin-B (IN21k, 384)
  COCO-panoptic Mask2Former from its shipped hyperparameters
  (:data:`smart.model.mask_generator.PAPER_CONFIGS`), and the R50 one written as a detectron2 model-zoo
  checkpoint with the real key names and shapes, converted in the DAG (``convert-generator``);
* **a tiny data tree in the real layouts**, written in each dataset's raw format
  (:mod:`smart.data.prepare.fixtures`, enlarged ``--scale`` times) and converted by the DAG's
  ``prepare`` jobs (no download, no count check);
* **declared reductions** (``REDUCTIONS``, also written to ``smoke.json``): a few training iterations
  at batch 1, a smaller CLIP input and generator test size, plain class names (one prompt per class
  instead of synonyms × 14 templates), and a reduced grid of cells.

Nothing is downloaded: ``HF_HUB_OFFLINE=1`` for every job. The run lives in its own directory
(``--out``, default ``build/paper-smoke``) with its own ``params.yaml`` (derived from the repository's,
``profile: paper``), so it never touches the repository's ``results/``. A second run reuses what is
done (Snakemake); ``--force`` starts again.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import yaml

import smart.paths as P

CLIP_MODEL = "ViT-L-14-336-quickgelu"
CLIP_FILE = "models/clip/ViT-L-14-336-quickgelu-random.pt"
SWINB_DIR = "models/mask2former-swin-base-IN21k-coco-panoptic-random"
R50_PKL = "models/mask2former/maskformer2_R50_bs16_50ep/model_final_random.pkl"
R50_DIR = "models/mask2former-r50-coco-panoptic"
EVAL_DATASETS = list(P.EVAL_DATASETS)


def repo_root() -> Path:
    """The checkout holding the Snakefile and params.yaml (the package is installed from it)."""
    root = Path(__file__).resolve().parents[1]
    if not (root / "Snakefile").is_file() or not (root / "params.yaml").is_file():
        from smart.errors import InputError

        raise InputError("the smoke run needs the repository checkout (Snakefile, params.yaml) next to the "
                         "installed package: install with `pip install -e .` from a clone", path=root)
    return root


def reductions(*, image_size: int, iterations: int, test_size: list[int], scale: int) -> dict[str, str]:
    """What the smoke run changes from the paper's setup (recorded in smoke.json and printed)."""
    return {
        "weights": "random (nothing downloaded); every architecture is the paper's",
        "data": f"a few images per benchmark in the real layouts, the prepare tests' raw fixtures x{scale}",
        "clip_input": f"{image_size} px instead of 896 (positional embeddings resized to it, as to 896)",
        "generator_test_size": f"shortest side {test_size[0]} / max {test_size[1]} instead of 800 / 1333 "
                               f"(Mapillary x1.25 of it instead of 1024 / 2560)",
        "training": f"{iterations} iterations at batch 1, LSJ crop 256, instead of 25k / 10k at batch 16, crop 1024",
        "class_names": "plain: one prompt per class instead of synonyms x 14 templates",
        "grid": "cells smart_swinb, smart_r50 (seed 0, six benchmarks), frozen, table3e_maskgen, the Fig. 2a "
                "oracles; Table 3 / Fig. 2b / Fig. 6 rows mapped onto them",
    }


def smoke_params(base: dict, *, image_size: int, iterations: int, test_size: list[int]) -> dict:
    """The repository's params with ``profile: paper`` and the smoke reductions."""
    p = copy.deepcopy(base)
    p["profile"] = "paper"
    p["data"].update(paper_root="datasets", download=False, count_check=False)
    p["model"]["paper"] = {"preset": "paper", "clip_model": CLIP_MODEL, "clip_pretrained": CLIP_FILE,
                           "image_size": image_size, "class_names": "plain"}
    tr = p["train_defaults"]["paper"]
    tr.update(iterations=iterations, batch_size=1, crop_size=256, num_workers=0, log_period=1,
              checkpoint_period=1, warmup_iters=1)
    tr["generators"] = {
        "swinb": {"backend": "hf", "pretrained": SWINB_DIR, "resize": False, "top_k": None},
        "r50": {"backend": "hf", "pretrained": R50_DIR, "resize": False, "top_k": None},
        "swinb_scratch": {"name": "swinb-in21k-coco-panoptic", "backend": "hf", "pretrained": None,
                          "resize": False, "top_k": None},
    }
    p["convert_generators"] = {R50_DIR: R50_PKL}
    mapillary = [int(test_size[0] * 1.25), int(test_size[1] * 1.25)]
    p["proposals"]["paper"]["test_sizes"] = {"default": list(test_size), "mapillary": mapillary}
    cells = p["cells"]
    one = {"seeds": [0], "datasets": EVAL_DATASETS}
    p["cells"] = {
        "smart_swinb": {**cells["smart_swinb"], **one, "train": {"generator": "swinb"}},
        "smart_r50": {**cells["smart_r50"], **one, "train": {"generator": "r50"}},
        "frozen": {**cells["frozen"], "datasets": EVAL_DATASETS},
        "table3e_maskgen": cells["table3e_maskgen"],
        "fig2a_oracle_generator": {**cells["fig2a_oracle_generator"], "model_from": "frozen"},
        "fig2a_oracle_classifier": {**cells["fig2a_oracle_classifier"], "model_from": "frozen"},
    }
    p["cell_defaults"] = {"seeds": [0], "datasets": ["ade150"]}
    p["eval"]["batch_size"] = 2
    rep = p["report"]
    rep["table1"] = {"smart_swinb": "SMART-SwinB", "smart_r50": "SMART-R50", "frozen": "Frozen baseline"}
    rep["table2"] = {"cell": "smart_swinb", "dataset": "ade150", "images": 2}
    rep["table3"] = {"a_tuned_parameters": {"q": "smart_swinb"}, "b_lora_rank": {"smart": "smart_swinb"},
                     "c_da_layers": {"2": "smart_swinb"},
                     "d_components": {"baseline": "frozen", "sma_qpt": "smart_swinb"},
                     "e_extra_tuning": {"smart": "smart_swinb", "mask_generator": "table3e_maskgen"},
                     "f_vlm_backbone": {"ViT-L-14-336": "smart_swinb"},
                     "g_interpretation": {"smart": "smart_swinb"}}
    rep["table4"] = {"cell": "smart_swinb", "compare": [], "datasets": ["refcoco", "refcoco+"]}
    rep["fig2"] = {"a": {"baseline": "frozen", "oracle_generator": "fig2a_oracle_generator",
                         "oracle_classifier": "fig2a_oracle_classifier"},
                   "b": {"pretrained_frozen": "smart_swinb", "scratch": "table3e_maskgen"}}
    rep["fig6"] = {"iterations": ["smart_swinb"], "fraction": ["smart_swinb"]}
    return p


def write_weights(out: Path, *, seed: int = 0) -> dict[str, float]:
    """The paper's three networks with random weights, written once (seconds per network)."""
    import torch

    from smart.model.clip_classifier import create_clip
    from smart.model.convert_d2 import write_random_d2_checkpoint
    from smart.model.mask_generator import Mask2FormerGenerator, tiny_mask2former_config

    times = {}
    clip_file = out / CLIP_FILE
    if not clip_file.is_file():
        t = time.perf_counter()
        torch.manual_seed(seed)
        clip = create_clip(CLIP_MODEL)
        clip_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = clip_file.with_suffix(".tmp")
        torch.save(clip.state_dict(), tmp)
        tmp.replace(clip_file)
        times["clip"] = time.perf_counter() - t
    swinb = out / SWINB_DIR
    if not (swinb / "smart_mask_generator.json").is_file():
        from transformers import Mask2FormerForUniversalSegmentation

        t = time.perf_counter()
        torch.manual_seed(seed + 1)
        model = Mask2FormerForUniversalSegmentation(tiny_mask2former_config("swinb-in21k-coco-panoptic"))
        Mask2FormerGenerator(model=model).save_pretrained(swinb)  # test-time settings: proposals.paper
        times["swinb"] = time.perf_counter() - t
    pkl = out / R50_PKL
    if not pkl.is_file():
        t = time.perf_counter()
        pkl.parent.mkdir(parents=True, exist_ok=True)
        write_random_d2_checkpoint(pkl, seed=seed + 2)
        times["r50_pkl"] = time.perf_counter() - t
    return times


def setup(out: Path, *, scale: int, image_size: int, iterations: int, test_size: list[int]) -> dict:
    """Raw data, random weights and params.yaml of a smoke run in ``out``."""
    from smart.config import load_params
    from smart.data.prepare.fixtures import build_all

    out.mkdir(parents=True, exist_ok=True)
    if not (out / "datasets/.raw-fixtures").is_file():
        build_all(out / "datasets", scale=scale)
        (out / "datasets/.raw-fixtures").write_text(f"scale {scale}\n")
    times = write_weights(out)
    params = smoke_params(load_params(repo_root() / "params.yaml"), image_size=image_size, iterations=iterations,
                          test_size=test_size)
    red = reductions(image_size=image_size, iterations=iterations, test_size=test_size, scale=scale)
    header = ("# Paper-profile smoke run (python -m smart paper-smoke): the repository's params.yaml with\n"
              "# profile: paper and these reductions:\n" + "".join(f"#   {k}: {v}\n" for k, v in red.items()))
    text = header + yaml.safe_dump(params, sort_keys=False)
    if not (out / "params.yaml").is_file() or (out / "params.yaml").read_text() != text:
        (out / "params.yaml").write_text(text)
    return {"reductions": red, "setup_seconds": {k: round(v, 1) for k, v in times.items()}}
