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
    """The mask generator a cell's training uses, as it names the proposal caches: its ``name`` (the
    mini generators, e.g. ``mini-swinb``) or else its key in ``generators`` (paper: ``swinb``, ``r50``)."""
    from smart.config import train_config

    tc = train_config(params, cell, profile=profile(params))
    return tc.generators[tc.generator].get("name") or tc.generator


def generator_source(params: dict, generator: str) -> str:
    """What ``cache-proposals --generator`` loads for a cache name: the mini generator's directory, or
    the paper profile's pretrained weights (a hub name or a local directory)."""
    if profile(params) == "mini":
        return mini_generator_dir(generator)
    gens = params["train_defaults"][profile(params)]["generators"]
    g = gens.get(generator) or next((v for v in gens.values() if v.get("name") == generator), None)
    if not g or not g.get("pretrained"):
        raise KeyError(f"no pretrained weights for generator {generator!r} in train_defaults.paper.generators")
    return str(g["pretrained"])


def cache_generator_arg(params: dict, generator: str) -> str:
    """What ``cache-proposals --generator`` gets for a cache name: the mini generator's directory, or the
    paper generator's key in ``train_defaults.paper.generators`` (any backend training accepts)."""
    if profile(params) == "mini":
        return mini_generator_dir(generator)
    generator_source(params, generator)  # fails early, naming the generator, without pretrained weights
    gens = params["train_defaults"][profile(params)]["generators"]
    return generator if generator in gens else next(k for k, v in gens.items() if v.get("name") == generator)


def generator_files(params: dict, generator: str) -> list[str]:
    """What caching with a generator (its cache name) needs besides the data: the mini generator's
    files, or the paper generator's converted directory when the DAG converts it."""
    if profile(params) == "mini":
        return mini_generator_files(generator)
    return converted_generator_files(params, generator_source(params, generator))


def cell_uses_store(params: dict, cell: str) -> bool:
    """Whether a trained cell reads cached proposals (False: its generator runs on the fly, tuned)."""
    from smart.config import model_config

    return not model_config(params, cell, profile=profile(params)).tune_mask_generator


def cells(params: dict) -> list[str]:
    """The cells of the grid that run in the active profile (params.yaml order)."""
    from smart.config import cell_names

    return cell_names(params)


def trained_cells(params: dict) -> list[str]:
    from smart.config import cell_spec

    return [c for c in cells(params) if cell_spec(params, c).trained]


def seeds(params: dict, cell: str) -> tuple[int, ...]:
    from smart.config import cell_spec

    return cell_spec(params, cell).seeds


def eval_datasets(params: dict, cell: str) -> tuple[str, ...]:
    from smart.config import cell_spec

    return cell_spec(params, cell).datasets


def proposals_dir(generator: str, dataset: str) -> str:
    return f"data/proposals/{generator}/{dataset}"


def proposals_root(generator: str) -> str:
    return f"data/proposals/{generator}"


def proposals_manifest(generator: str, dataset: str) -> str:
    return f"{proposals_dir(generator, dataset)}/manifest.json"


def train_dir(cell: str, seed: int | str) -> str:
    return f"results/train/{cell}/s{seed}"


def train_summary(cell: str, seed: int | str) -> str:
    return f"{train_dir(cell, seed)}/summary.json"


def train_outputs(cell: str, seed: int | str) -> dict[str, str]:
    d = train_dir(cell, seed)
    return {"summary": f"{d}/summary.json", "model": f"{d}/model.pt", "metrics": f"{d}/metrics.jsonl",
            "config": f"{d}/config.json"}


def metrics_file(cell: str, seed: int | str, dataset: str) -> str:
    """Flat metrics (numbers only, percent) of one (cell, seed, dataset): what ``dvc metrics diff`` compares."""
    return f"results/metrics/{cell}/s{seed}/{dataset}.json"


def eval_detail(cell: str, seed: int | str, dataset: str) -> str:
    return f"results/eval/{cell}/s{seed}/{dataset}.json"


def cell_metrics(params: dict, cell: str) -> list[str]:
    """Every metrics file of a cell (all its seeds × datasets)."""
    return [metrics_file(cell, s, d) for s in seeds(params, cell) for d in eval_datasets(params, cell)]


def eval_inputs(params: dict, cell: str, seed: int | str) -> list[str]:
    """What evaluating one seed of a cell reads: the model and the proposal caches (or the generator)."""
    from smart.config import cell_spec

    spec = cell_spec(params, cell)
    src = spec.model_cell
    out = [train_outputs(src, seed)["model"]]
    for d in spec.datasets:
        out += dataset_ready(params, d)
    if spec.oracle != "generator" and cell_uses_store(params, src):
        gen = cell_generator(params, src)
        out += [proposals_manifest(gen, d) for d in spec.datasets]
    elif spec.oracle != "generator":  # a tuned generator: built from its pretrained files + model.pt's state
        out += generator_inputs(params, src)
    if profile(params) == "mini":
        out += mini_clip_files(params)
    return out


def train_inputs(params: dict, cell: str) -> list[str]:
    out = dataset_ready(params, "coco_train")
    if cell_uses_store(params, cell):
        out.append(proposals_manifest(cell_generator(params, cell), "coco_train"))
    else:
        out += generator_inputs(params, cell)
    if profile(params) == "mini":
        out += mini_clip_files(params)
    return out


def refer_metrics(cell: str, seed: int | str) -> str:
    return f"results/metrics/refer/{cell}/s{seed}.json"


def refer_detail(cell: str, seed: int | str) -> str:
    return f"results/eval/refer/{cell}/s{seed}.json"


def benchmark_file(cell: str) -> str:
    return f"results/benchmarks/{cell}.json"


def pretrain_metrics(name: str) -> str:
    return f"results/pretrain/{name}.json"


TABLES = ("table1", "table2", "table3a", "table3b", "table3c", "table3d", "table3e", "table3f", "table4")
FIGURES = ("fig2", "fig6")
TABLE3_PARTS = {"table3a": "a_tuned_parameters", "table3b": "b_lora_rank", "table3c": "c_da_layers",
                "table3d": "d_components", "table3e": "e_extra_tuning", "table3f": "f_vlm_backbone"}


def table(name: str) -> str:
    return f"results/{name}.csv"


def table_files(name: str) -> list[str]:
    return [f"results/{name}.{ext}" for ext in ("csv", "md", "tex")]


def figure_files(name: str) -> list[str]:
    return [f"results/figures/{name}.pdf", f"results/figures/{name}.png"]


def fig6_plots() -> list[str]:
    return ["results/plots/fig6_iters.csv", "results/plots/fig6_data.csv"]


def _run_cells(params: dict, names) -> list[str]:
    """The runnable cells among ``names`` (paper-only cells drop out of the mini profile)."""
    active = set(cells(params))
    return [c for c in dict.fromkeys(names) if c in active]


def report_cells(params: dict, what: str) -> list[str]:
    """The cells whose metrics a table or figure reads."""
    rep = params["report"]
    if what == "table1":
        return _run_cells(params, rep["table1"])
    if what == "table2":
        return _run_cells(params, [rep["table2"]["cell"]])
    if what in TABLE3_PARTS:
        return _run_cells(params, rep["table3"][TABLE3_PARTS[what]].values())
    if what == "fig2":
        return _run_cells(params, [c for part in rep["fig2"].values() for c in part.values()])
    if what == "fig6":
        return _run_cells(params, [c for part in rep["fig6"].values() for c in part])
    if what == "table4":
        return _run_cells(params, [rep["table4"]["cell"]])
    raise KeyError(what)


def report_inputs(params: dict, what: str) -> list[str]:
    """Files a table or figure is built from."""
    if what == "table4":
        cell = params["report"]["table4"]["cell"]
        return [refer_metrics(cell, s) for s in seeds(params, cell)] if cell in cells(params) else []
    out = [f for c in report_cells(params, what) for f in cell_metrics(params, c)]
    if what == "table2":
        cell = params["report"]["table2"]["cell"]
        out += [benchmark_file(cell)]
        out += [train_outputs(cell, s)[k] for s in seeds(params, cell) for k in ("summary", "config")]
    return out


def generator_inputs(params: dict, cell: str) -> list[str]:
    """The pretrained generator a cell's on-the-fly proposals need (mini profile: built in the DAG; paper
    profile: a generator converted from a detectron2 checkpoint in the DAG)."""
    from smart.config import train_config

    gcfg = train_config(params, cell, profile=profile(params)).generator_config
    if not gcfg.get("pretrained"):
        return []
    if profile(params) == "mini":
        return mini_generator_files(gcfg["name"])
    return converted_generator_files(params, str(gcfg["pretrained"]))


# Operational cache of vocabulary text embeddings shared by the DAG's jobs (keyed by model, weights,
# vocabulary and templates; see smart.model.text.TextEmbeddingCache).
TEXT_CACHE = "data/text_cache"


def converted_generators(params: dict) -> dict[str, str]:
    """Paper profile: ``{converted directory: detectron2 checkpoint}`` of the generators that the DAG
    converts (params.yaml ``convert_generators``; ``python -m smart convert-generator``)."""
    if profile(params) == "mini":
        return {}
    return {str(k): str(v) for k, v in (params.get("convert_generators") or {}).items()}


def converted_generator_files(params: dict, directory: str) -> list[str]:
    """The completion marker of a converted generator directory (written last), if the DAG converts it."""
    return [f"{directory}/smart_mask_generator.json"] if directory in converted_generators(params) else []


def benchmark_inputs(params: dict, cell: str) -> list[str]:
    seed = seeds(params, cell)[0]
    out = [train_outputs(cell, seed)["model"]] + dataset_ready(params, params["report"]["table2"]["dataset"])
    out += generator_inputs(params, cell)
    if profile(params) == "mini":
        out += mini_clip_files(params)
    return out


def refer_inputs(params: dict, cell: str, seed: int | str) -> list[str]:
    out = [train_outputs(cell, seed)["model"]]
    out += [f for d in params["report"]["table4"]["datasets"] for f in dataset_ready(params, d)]
    out += generator_inputs(params, cell)
    if profile(params) == "mini":
        out += mini_clip_files(params)
    return out


def report_outputs(what: str) -> list[str]:
    if what in FIGURES:
        return figure_files(what) + (fig6_plots() if what == "fig6" else [])
    return table_files(what)


def table1_inputs(params: dict) -> list[str]:
    return report_inputs(params, "table1")


def all_targets(params: dict) -> list[str]:
    out = [table(t) for t in TABLES] + [figure_files(f)[0] for f in FIGURES]
    out += [dataset_check(d) for d in ALL_DATASETS]
    out += [dataset_grid(d) for d in ALL_DATASETS]
    if profile(params) == "mini":
        out.append(mini_stamp(params, "captions"))
        out.append(pretrain_metrics("mini_clip"))
        out += [pretrain_metrics(g) for g in params["mini_generators"]]
    for c in cells(params):
        out += cell_metrics(params, c)
    return out


def log(stage: str, name: str) -> str:
    return f"logs/{stage}/{name}.log"


def bench(stage: str, name: str) -> str:
    return f"benchmarks/{stage}/{name}.tsv"


def as_path(p: str) -> Path:
    return Path(p)
