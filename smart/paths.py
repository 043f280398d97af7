"""Where every artifact of the pipeline lives: the one map from (stage, wildcards) to paths.

Both the Snakefile and dvc.yaml (and their parity test) use these functions, so a path is written
in exactly one place.
"""

from __future__ import annotations

from pathlib import Path

# Evaluation datasets (aliases of smart.data.registry) in Table 1 column order.
EVAL_DATASETS = ("coco", "ade150", "mapillary", "ade847", "pc59", "pc459")
REFER_DATASETS = ("refcoco", "refcoco+")
ALL_DATASETS = ("coco_train",) + EVAL_DATASETS + REFER_DATASETS

# Cells trained by the DAG so far (the experiment grid of params.yaml `cells:` grows into this).
TRAINED_CELLS = ("smart",)

# Which generation/preparation unit produces each dataset, per profile.
MINI_UNIT = {"coco_train": "coco", "coco": "coco", "ade150": "ade", "ade847": "ade", "mapillary": "mapillary",
             "pc59": "pascal", "pc459": "pascal", "refcoco": "refer", "refcoco+": "refer"}
PAPER_UNIT = {"coco_train": "coco", "coco": "coco", "ade150": "ade20k_150", "ade847": "ade20k_847",
              "mapillary": "mapillary_vistas", "pc59": "pascal_ctx_59", "pc459": "pascal_ctx_459",
              "refcoco": "refcoco", "refcoco+": "refcoco+"}
# Directories each mini unit writes (relative to the mini root); DVC tracks them as outputs.
MINI_UNIT_DIRS = {
    "vocab": ("vocab",), "coco": ("coco",), "ade": ("ADEChallengeData2016", "ADE20K_2021_17_01"),
    "mapillary": ("mapillary_vistas",), "pascal": ("pascal_ctx_d2",), "refer": ("refer",), "captions": ("captions",),
}


def profile(params: dict) -> str:
    return params["profile"]


def data_root(params: dict) -> str:
    return params["data"]["mini_root"] if profile(params) == "mini" else params["data"]["paper_root"]


def mini_stamp(params: dict, unit: str) -> str:
    return f"{params['data']['mini_root']}/.mini/{unit}.json"


def paper_stamp(params: dict, unit: str) -> str:
    return f"{params['data']['paper_root']}/.prepared/{unit}.json"


def dataset_ready(params: dict, dataset: str) -> list[str]:
    """The stamp files that must exist before ``dataset`` can be read."""
    if profile(params) == "mini":
        return [mini_stamp(params, "vocab"), mini_stamp(params, MINI_UNIT[dataset])]
    return [paper_stamp(params, PAPER_UNIT[dataset])]


def dataset_check(dataset: str) -> str:
    return f"results/datasets/{dataset}.json"


def dataset_grid(dataset: str) -> str:
    return f"results/figures/datasets/{dataset}.png"


def mini_clip_dir(params: dict) -> str:
    """The mini profile's pretrained CLIP (an open_clip ``local-dir`` checkpoint)."""
    return "data/models/mini_clip"


def mini_clip_files(params: dict) -> list[str]:
    d = mini_clip_dir(params)
    return [f"{d}/open_clip_config.json", f"{d}/open_clip_model.safetensors"]


def mini_generator_dir(name: str) -> str:
    """A mini mask generator pretrained in the DAG (HF ``save_pretrained`` directory)."""
    return f"data/models/{name}"


def mini_generator_files(name: str) -> list[str]:
    d = mini_generator_dir(name)
    return [f"{d}/config.json", f"{d}/model.safetensors", f"{d}/smart_mask_generator.json"]


def cell_generator(params: dict, cell: str) -> str:
    """The mask generator (registry name, e.g. ``mini-swinb``) a cell's training uses."""
    from smart.config import train_config

    tc = train_config(params, cell, profile=profile(params))
    return tc.generators[tc.generator]["name"]


def proposals_dir(generator: str, dataset: str) -> str:
    return f"data/proposals/{generator}/{dataset}"


def proposals_manifest(generator: str, dataset: str) -> str:
    return f"{proposals_dir(generator, dataset)}/manifest.json"


def train_dir(cell: str) -> str:
    return f"results/train/{cell}"


def train_summary(cell: str) -> str:
    return f"{train_dir(cell)}/summary.json"


def pretrain_metrics(name: str) -> str:
    return f"results/pretrain/{name}.json"


def table(name: str) -> str:
    return f"results/{name}.csv"


def table1_inputs(params: dict) -> list[str]:
    return [dataset_check(d) for d in ("coco_train",) + EVAL_DATASETS]


def all_targets(params: dict) -> list[str]:
    out = [table("table1")]
    out += [dataset_check(d) for d in ALL_DATASETS]
    out += [dataset_grid(d) for d in ALL_DATASETS]
    if profile(params) == "mini":
        out.append(mini_stamp(params, "captions"))
        out.append(pretrain_metrics("mini_clip"))
        out += [pretrain_metrics(g) for g in params["mini_generators"]]
    out += [train_summary(c) for c in TRAINED_CELLS]
    return out


def log(stage: str, name: str) -> str:
    return f"logs/{stage}/{name}.log"


def bench(stage: str, name: str) -> str:
    return f"benchmarks/{stage}/{name}.tsv"


def as_path(p: str) -> Path:
    return Path(p)
