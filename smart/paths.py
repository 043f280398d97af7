"""Where every artifact of the pipeline lives: the one map from (stage, names) to paths.

Pure functions of names only (no params): :mod:`smart.dag` builds every stage's inputs and outputs
from them, and the jobs and reports read the same files through them.
"""

from __future__ import annotations

# Evaluation datasets (aliases of smart.data.registry) in Table 1 column order.
EVAL_DATASETS = ("coco", "ade150", "mapillary", "ade847", "pc59", "pc459")
REFER_DATASETS = ("refcoco", "refcoco+")
ALL_DATASETS = ("coco_train",) + EVAL_DATASETS + REFER_DATASETS

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

TABLES = ("table1", "table2", "table3a", "table3b", "table3c", "table3d", "table3e", "table3f", "table3g", "table4")
FIGURES = ("fig2", "fig6")
USER_TABLE = "table_user"  # every cell scored on the user's own benchmarks (params.yaml user_datasets)
TABLE3_PARTS = {"table3a": "a_tuned_parameters", "table3b": "b_lora_rank", "table3c": "c_da_layers",
                "table3d": "d_components", "table3e": "e_extra_tuning", "table3f": "f_vlm_backbone",
                "table3g": "g_interpretation"}
# The params.yaml ``report`` entry of each table or figure.
REPORT_KEY = {t: "table3" for t in TABLE3_PARTS}
FIG6_PLOTS = ("results/plots/fig6_iters.csv", "results/plots/fig6_data.csv")

# Operational cache of vocabulary text embeddings shared by the DAG's jobs (keyed by model, weights,
# vocabulary and templates; see smart.model.text.TextEmbeddingCache).
TEXT_CACHE = "data/text_cache"
# The mini profile's pretrained CLIP (an open_clip ``local-dir`` checkpoint).
MINI_CLIP_DIR = "data/models/mini_clip"


# ------------------------------------------------------------------------------------------ datasets
def mini_stamp(root: str, unit: str) -> str:
    return f"{root}/.mini/{unit}.json"


def paper_stamp(root: str, unit: str) -> str:
    return f"{root}/.prepared/{unit}.json"


def dataset_check(dataset: str) -> str:
    return f"results/datasets/{dataset}.json"


def dataset_grid(dataset: str) -> str:
    return f"results/figures/datasets/{dataset}.png"


# ------------------------------------------------------------------------------------------ models
def mini_clip_files() -> tuple[str, ...]:
    return (f"{MINI_CLIP_DIR}/open_clip_config.json", f"{MINI_CLIP_DIR}/open_clip_model.safetensors",
            f"{MINI_CLIP_DIR}/SHA256SUMS")


def mini_generator_dir(name: str) -> str:
    """A mini mask generator pretrained in the DAG (HF ``save_pretrained`` directory)."""
    return f"data/models/{name}"


def mini_generator_files(name: str) -> tuple[str, ...]:
    d = mini_generator_dir(name)
    return (f"{d}/config.json", f"{d}/model.safetensors", f"{d}/smart_mask_generator.json", f"{d}/SHA256SUMS")


def converted_marker(directory: str) -> str:
    """The completion marker of a generator converted from detectron2 (written last)."""
    return f"{directory}/smart_mask_generator.json"


def pretrain_metrics(name: str) -> str:
    return f"results/pretrain/{name}.json"


# ------------------------------------------------------------------------------------------ proposals
def proposals_root(generator: str) -> str:
    return f"data/proposals/{generator}"


def proposals_dir(generator: str, dataset: str) -> str:
    return f"{proposals_root(generator)}/{dataset}"


def proposals_manifest(generator: str, dataset: str) -> str:
    return f"{proposals_dir(generator, dataset)}/manifest.json"


# ------------------------------------------------------------------------------------------ cells
def train_dir(cell: str, seed: int | str) -> str:
    return f"results/train/{cell}/s{seed}"


def train_outputs(cell: str, seed: int | str) -> dict[str, str]:
    d = train_dir(cell, seed)
    return {"summary": f"{d}/summary.json", "model": f"{d}/model.pt", "metrics": f"{d}/metrics.jsonl",
            "config": f"{d}/config.json"}


def metrics_dir(cell: str, seed: int | str) -> str:
    return f"results/metrics/{cell}/s{seed}"


def metrics_file(cell: str, seed: int | str, dataset: str) -> str:
    """Flat metrics (numbers only, percent) of one (cell, seed, dataset): what ``dvc metrics diff`` compares."""
    return f"{metrics_dir(cell, seed)}/{dataset}.json"


def eval_detail_dir(cell: str, seed: int | str) -> str:
    return f"results/eval/{cell}/s{seed}"


def eval_detail(cell: str, seed: int | str, dataset: str) -> str:
    return f"{eval_detail_dir(cell, seed)}/{dataset}.json"


def refer_metrics(cell: str, seed: int | str) -> str:
    return f"results/metrics/refer/{cell}/s{seed}.json"


def refer_detail(cell: str, seed: int | str) -> str:
    return f"results/eval/refer/{cell}/s{seed}.json"


def benchmark_file(cell: str) -> str:
    return f"results/benchmarks/{cell}.json"


# ------------------------------------------------------------------------------------------ reports
def table(name: str) -> str:
    return f"results/{name}.csv"


def table_files(name: str) -> list[str]:
    return [f"results/{name}.{ext}" for ext in ("csv", "md", "tex")]


def figure_files(name: str) -> list[str]:
    return [f"results/figures/{name}.pdf", f"results/figures/{name}.png"]


QUALITATIVE_DIR = "results/figures/qualitative"


def qualitative_figure(dataset: str) -> str:
    """Input / ground truth / frozen baseline / SMART on a few images of one benchmark (Figs. 4-5)."""
    return f"{QUALITATIVE_DIR}/{dataset}.png"


def report_outputs(what: str) -> list[str]:
    if what in FIGURES:
        return figure_files(what) + (list(FIG6_PLOTS) if what == "fig6" else [])
    return table_files(what)


# ------------------------------------------------------------------------------------------ run records
def log(stage: str, name: str) -> str:
    """A job's log (stdout and stderr)."""
    return f"logs/{stage}/{name}.log"


def run_record(output: str) -> str:
    """Timing and provenance of the job that wrote ``output`` (kept out of the tracked results, so that a
    rerun with nothing changed leaves them byte-identical)."""
    return f"logs/runs/{output}.run.json"
