"""The pipeline's DAG, described once: every job as a :class:`Stage` built from the :class:`Experiment`.

Both engines read this list and nothing else:

* the Snakefile defines one rule per stage (``workflow/rules/stages.smk``): its inputs, outputs,
  params, log, threads and command are the stage's;
* ``dvc.yaml`` is rendered from it (``python -m smart.pipeline dvc-yaml``): one DVC stage per stage,
  with the same command, the same dependencies and outputs, the same params keys and code paths.

A stage declares its data dependencies as DVC sees them (files, or directories that another stage
writes), its outputs (:class:`Out`: a file, or a directory DVC caches and whose listed files Snakemake
tracks), the params keys it reads (DVC ``params:``; in Snakemake their values are rule params, so an
edit reruns the stage in both engines) and the package code it runs (DVC hashes those paths; Snakemake
gets their content hash as a rule param, so both rerun a stage when its code changes, and moving a
checkout changes nothing).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import smart.paths as P
from smart.experiment import Experiment

RESOLVED_DIR = ".smart"  # resolved params files of runs with --config overrides
# Snakemake priorities of the per-cell stages, longest path to the end first (list scheduling): the train
# split's proposal cache gates every training, a training gates its evaluations, a benchmark's cache
# gates only evaluations. Scheduling only: no output depends on it (main job 9:44 -> 9:21, one run each).
PRIORITY = {"train_cache": 8, "train": 5, "cache": 2}


@dataclass(frozen=True)
class Out:
    """One output of a stage.

    Args:
        path: a file, or a directory (``files`` not None).
        cache: DVC caches it (False: a small file tracked by git; DVC ``cache: false``).
        files: for a directory, the files in it that Snakemake tracks (empty: Snakemake does not see
            the directory; it is a DVC-only output written beside a tracked stamp file).
    """

    path: str
    cache: bool = True
    files: tuple[str, ...] | None = None

    @property
    def snakemake(self) -> tuple[str, ...]:
        return (self.path,) if self.files is None else self.files


@dataclass(frozen=True)
class Stage:
    """One job of the DAG (see the module docstring).

    Args:
        name: the DVC stage name (``train-smart-s0``); :attr:`rule` is the Snakemake rule name.
        argv: ``python -m smart`` arguments; ``{params}`` stands for the params file.
        deps: data dependencies (files, or directory outputs of other stages).
        outs: outputs.
        params: dotted params.yaml keys the stage reads.
        code: package files or directories the stage runs.
        log: Snakemake log file (the command's stdout and stderr).
        threads, priority, gpu, local: Snakemake scheduling (``gpu``: the ``gpu`` resource).
    """

    name: str
    argv: tuple[str, ...]
    deps: tuple[str, ...]
    outs: tuple[Out, ...]
    params: tuple[str, ...] = ()
    code: tuple[str, ...] = ()
    log: str = ""
    threads: int = 1
    priority: int = 0
    gpu: int = 0
    local: bool = False

    @property
    def kind(self) -> str:
        """The stage family (``train``, ``eval``, ``cache_proposals``, ``table1`` ...)."""
        return self.name.split("-", 1)[0]

    @property
    def rule(self) -> str:
        return "".join(ch if ch.isalnum() else "_" for ch in self.name)

    def command(self, params_file: str = "params.yaml") -> str:
        return "python -m smart " + " ".join(a.replace("{params}", params_file) for a in self.argv)

    @property
    def outputs(self) -> list[str]:
        """The files Snakemake tracks."""
        return [f for o in self.outs for f in o.snakemake]


def cli_code(verb: str) -> tuple[str, ...]:
    """The command-line code a verb runs: its module in ``smart/cli`` and the shared run context."""
    from smart.cli import COMMANDS

    module = COMMANDS[verb].replace(".", "/") + ".py"
    shared = ("smart/cli/cell_run.py",) if verb in ("eval-cell", "benchmark", "eval-refer") else ()
    return (module, "smart/cli/context.py") + shared


# Cluster resources of the paper profile's stages, per stage family (minutes, MB; the SLURM profile
# supplies the account). GPU stages (``gpu=1``) go to $SMART_SLURM_GPU_PARTITION (default ``gpu``), the
# others to $SMART_SLURM_CPU_PARTITION (default ``cpu``).
CLUSTER = {
    "prepare": {"runtime": 720, "mem_mb": 64000},
    "convert_generator": {"runtime": 60, "mem_mb": 16000},
    "check_dataset": {"runtime": 240, "mem_mb": 16000},
    "dataset_grid": {"runtime": 60, "mem_mb": 16000},
    "cache_proposals": {"runtime": 720, "mem_mb": 64000},
    "train": {"runtime": 2880, "mem_mb": 96000},  # 25k iterations of SMART-SwinB: ~45 GPU hours in the paper
    "eval": {"runtime": 480, "mem_mb": 64000},
    "benchmark": {"runtime": 60, "mem_mb": 64000},
    "refer": {"runtime": 240, "mem_mb": 64000},
    "qualitative": {"runtime": 60, "mem_mb": 32000},
}


def cluster_resources(st: Stage, profile: str) -> dict:
    """The Snakemake resources of a stage: ``gpu``; in the paper profile its cluster runtime, memory and
    SLURM partition (the mini profile's stages are small: they take the cluster's defaults); and the
    SLURM account of ``$SMART_SLURM_ACCOUNT`` when it is set (``profiles/slurm``)."""
    out: dict = {"gpu": st.gpu}
    if profile == "paper" and st.kind in CLUSTER:
        out.update(CLUSTER[st.kind])
        env = "SMART_SLURM_GPU_PARTITION" if st.gpu else "SMART_SLURM_CPU_PARTITION"
        out["slurm_partition"] = os.environ.get(env, "gpu" if st.gpu else "cpu")
    if os.environ.get("SMART_SLURM_ACCOUNT"):
        out["slurm_account"] = os.environ["SMART_SLURM_ACCOUNT"]
    return out


# The mini world's class groups, read by evaluation, the dataset check, referring and the tables (their code
# lives with the world's generator, so the stages that read the groups name it themselves).
GROUP_CODE = ("smart/data/mini/groups.py", "smart/data/mini/world.py")


def stage_name(stage: str, item: str | None = None) -> str:
    """DVC stage names: '@' is reserved for foreach stages, so use '-' (and spell out '+')."""
    return stage if item is None else f"{stage}-{item.replace('+', '_plus')}"


# ------------------------------------------------------------------------------------------ inputs
def dataset_ready(exp: Experiment, dataset: str) -> list[str]:
    """The stamp files that must exist before ``dataset`` can be read (a user dataset: its declared files)."""
    if dataset in exp.user_datasets:
        return exp.user_datasets[dataset].files()
    if exp.mini:
        return [P.mini_stamp(exp.root, "vocab"), P.mini_stamp(exp.root, P.MINI_UNIT[dataset])]
    return [P.paper_stamp(exp.root, P.PAPER_UNIT[dataset])]


def converted_generators(exp: Experiment) -> dict[str, str]:
    """Paper profile: ``{converted directory: detectron2 checkpoint}`` (params ``convert_generators``)."""
    if exp.mini:
        return {}
    return {str(k): str(v) for k, v in (exp.params["convert_generators"] or {}).items()}


def _generator_dir(exp: Experiment, pretrained: str | None) -> list[str]:
    """The directory output of the stage that writes a generator's weights (pretraining or conversion)."""
    if not pretrained:
        return []
    if exp.mini:
        return [str(pretrained)] if str(pretrained) in [P.mini_generator_dir(g) for g in exp.params[
            "mini_generators"]] else []
    return [str(pretrained)] if str(pretrained) in converted_generators(exp) else []


def cache_generator_key(exp: Experiment, generator: str) -> str:
    """What ``cache-proposals --generator`` gets for a cache name: the mini generator's directory, or the
    paper generator's key in ``train_defaults.paper.generators``."""
    if exp.mini:
        return P.mini_generator_dir(generator)
    gens = exp.train_defaults()["generators"]
    key = generator if generator in gens else next((k for k, v in gens.items() if v.get("name") == generator), None)
    if key is None or not gens[key].get("pretrained"):
        from smart.errors import ConfigError

        raise ConfigError(f"no pretrained weights for generator {generator!r}", path=exp.source,
                          field=f"train_defaults.paper.generators.{generator}")
    return key


def generator_weights(exp: Experiment, generator: str) -> list[str]:
    """The directory outputs a proposal cache of ``generator`` (its cache name) reads."""
    if exp.mini:
        return [P.mini_generator_dir(generator)]
    key = cache_generator_key(exp, generator)
    return _generator_dir(exp, exp.train_defaults()["generators"][key]["pretrained"])


def user_keys(datasets) -> tuple[str, ...]:
    """The params keys of the user datasets among ``datasets`` (their declarations)."""
    from smart.data.registry import ALIASES

    return tuple(f"user_datasets.{d}" for d in datasets if d not in ALIASES)


def clip_weights(exp: Experiment) -> list[str]:
    return [P.MINI_CLIP_DIR] if exp.mini else []


# ------------------------------------------------------------------------------------------ stages
def build_stages(exp: Experiment) -> list[Stage]:
    """Every stage of the experiment's DAG, in a stable order (the order of ``dvc.yaml``)."""
    stages: dict[str, Stage] = {}
    prof, root = exp.profile, exp.root

    def add(st: Stage) -> None:
        stages.setdefault(st.name, replace(st, code=cli_code(st.argv[0]) + st.code))

    # ---------------------------------------------------------------- datasets and pretrained models
    if exp.mini:
        for unit, dirs in P.MINI_UNIT_DIRS.items():
            stamp = P.mini_stamp(root, unit)
            add(Stage(stage_name("mini_world", unit), ("make-mini", unit, "--params", "{params}", "--out", root,
                                                        "--workers", "1"),
                      deps=(), outs=(Out(stamp, cache=False),) + tuple(Out(f"{root}/{d}", files=()) for d in dirs),
                      params=("mini_world",), code=("smart/data/mini", "smart/data/categories.py"),
                      log=P.log("mini_world", unit), priority=30 if unit == "captions" else 20))
    else:
        from smart.data.prepare import REQUIRES

        flags = (("--download",) if exp.params["data"]["download"] else ()) + (
            () if exp.params["data"]["count_check"] else ("--skip-count-check",))
        for unit in dict.fromkeys(sorted(P.PAPER_UNIT.values())):
            stamp = P.paper_stamp(root, unit)
            after = tuple(P.paper_stamp(root, u) for u in REQUIRES.get(unit, ()))
            add(Stage(stage_name("prepare", unit), ("prepare", unit, "--root", root, *flags, "--workers", "8"),
                      deps=after, outs=(Out(stamp, cache=False),), params=("data",), code=("smart/data/prepare",),
                      log=P.log("prepare", unit), threads=8))
        for out_dir, checkpoint in converted_generators(exp).items():
            add(Stage(stage_name("convert_generator", Path(out_dir).name), ("convert-generator", checkpoint, out_dir),
                      deps=(checkpoint,), outs=(Out(out_dir, files=(P.converted_marker(out_dir),)),),
                      params=("convert_generators",), code=("smart/model/convert_d2.py",),
                      log=P.log("convert_generator", Path(out_dir).name)))
    if exp.mini:
        clip_dir = P.MINI_CLIP_DIR
        add(Stage("pretrain_clip", ("pretrain-clip", "--params", "{params}", "--captions", f"{root}/captions",
                                    "--out", clip_dir, "--metrics", P.pretrain_metrics("mini_clip"),
                                    "--train-log", "logs/pretrain/mini_clip.jsonl", "--threads", "1"),
                  deps=(P.mini_stamp(root, "captions"),),
                  outs=(Out(clip_dir, files=P.mini_clip_files()), Out(P.pretrain_metrics("mini_clip"), cache=False)),
                  params=("mini_clip",), code=("smart/train/clip_pretrain.py", "smart/train/pretrain_config.py", "smart/utils/perf.py",
                                               "smart/model/text.py"),
                  log=P.log("pretrain", "mini_clip"), priority=25))
        for gen in exp.params["mini_generators"]:
            add(Stage(stage_name("pretrain_generator", gen),
                      ("pretrain-generator", gen, "--params", "{params}", "--root", root, "--out",
                       P.mini_generator_dir(gen), "--metrics", P.pretrain_metrics(gen), "--threads", "1"),
                      deps=(P.mini_stamp(root, "coco"), P.mini_stamp(root, "ade")),
                      outs=(Out(P.mini_generator_dir(gen), files=P.mini_generator_files(gen)),
                            Out(P.pretrain_metrics(gen), cache=False)),
                      params=(f"mini_generators.{gen}",),
                      code=("smart/train/generator_pretrain.py", "smart/train/pretrain_config.py",
                            "smart/model/mask_generator.py"),
                      log=P.log("pretrain", gen), priority=10))
    gpu = 1 if prof == "paper" else 0

    # ---------------------------------------------------------------- proposals, training, evaluation
    def cache(gen: str, ds: str) -> str:
        store = P.proposals_dir(gen, ds)
        add(Stage(stage_name("cache_proposals", f"{gen}-{ds}"),
                  ("cache-proposals", ds, "--generator", cache_generator_key(exp, gen), "--params", "{params}",
                   "--profile", prof, "--root", root, "--out", store, "--threads", "1"),
                  deps=tuple(dataset_ready(exp, ds) + generator_weights(exp, gen)),
                  outs=(Out(store, files=(P.proposals_manifest(gen, ds),)),),
                  params=(f"proposals.{prof}",) + (() if exp.mini else (f"train_defaults.{prof}.generators",))
                  + user_keys([ds]),
                  code=("smart/data/proposals.py", "smart/model/mask_generator.py"),
                  log=P.log("proposals", f"{gen}/{ds}"), gpu=gpu,
                  priority=PRIORITY["train_cache"] if ds == "coco_train" else PRIORITY["cache"]))
        return store

    train_code = ("smart/train", "smart/model", "smart/data/sources.py")
    cell_params = {}
    for name, cell in exp.cells.items():
        own = exp.params["cells"][name] or {}
        cell_params[name] = (f"cells.{name}",) + (() if {"seeds", "datasets"} <= set(own) else ("cell_defaults",))
    for name, cell in exp.cells.items():
        if not cell.trained:
            continue
        gen_dirs = _generator_dir(exp, cell.train.generator_config.get("pretrained"))
        if cell.uses_store:
            src = dataset_ready(exp, "coco_train") + [cache(cell.generator, "coco_train")]
            flag = ("--proposals", P.proposals_dir(cell.generator, "coco_train"))
        else:  # the cell tunes its generator: proposals on the fly, from its pretrained weights
            src, flag = dataset_ready(exp, "coco_train") + gen_dirs, ()
        for seed in cell.seeds:
            o = P.train_outputs(name, seed)
            add(Stage(stage_name("train", f"{name}-s{seed}"),
                      ("train", "--params", "{params}", "--cell", name, "--seed", str(seed), "--profile", prof,
                       "--root", root, "--out", P.train_dir(name, seed), *flag, "--threads", "1"),
                      deps=tuple(src + clip_weights(exp)),
                      outs=(Out(o["summary"], cache=False), Out(o["model"]), Out(o["metrics"], cache=False),
                            Out(o["config"], cache=False)),
                      params=(f"train_defaults.{prof}", f"model.{prof}") + cell_params[name],
                      code=train_code, log=P.log("train", f"{name}/s{seed}"), gpu=gpu, priority=PRIORITY["train"]))
    for name, cell in exp.cells.items():
        src = exp.cell(cell.model_cell)
        fly: tuple[str, ...] = ()
        if cell.oracle == "generator":
            extra, flag = [], ()
        elif src.uses_store:
            extra = [cache(src.generator, d) for d in cell.datasets]
            flag = ("--proposals-root", P.proposals_root(src.generator))
        else:
            fly = (f"proposals.{prof}",)  # its generator runs on the fly with the test-time settings
            extra, flag = _generator_dir(exp, src.train.generator_config.get("pretrained")), ()
        ready = sorted({f for d in cell.datasets for f in dataset_ready(exp, d)})
        for seed in cell.seeds:
            files = tuple(P.metrics_file(name, seed, d) for d in cell.datasets)
            details = tuple(P.eval_detail(name, seed, d) for d in cell.datasets)
            add(Stage(stage_name("eval", f"{name}-s{seed}"),
                      ("eval-cell", "--params", "{params}", "--cell", name, "--seed", str(seed), "--model",
                       P.train_outputs(cell.model_cell, seed)["model"], "--datasets", *cell.datasets, *flag,
                       "--profile", prof, "--root", root, "--out-dir", P.metrics_dir(name, seed), "--detail-dir",
                       P.eval_detail_dir(name, seed), "--threads", "1"),
                      deps=tuple([P.train_outputs(cell.model_cell, seed)["model"]] + extra + ready + clip_weights(exp)),
                      outs=tuple(Out(f, cache=False) for f in files + details),
                      params=("eval",) + cell_params[name] + fly + user_keys(cell.datasets),
                      code=("smart/eval", "smart/model", "smart/data/sources.py") + GROUP_CODE,
                      log=P.log("eval", f"{name}/s{seed}"), gpu=gpu))

    # ---------------------------------------------------------------- Table 2 benchmark, Table 4 refer
    rep = exp.report
    bcell = rep["table2"]["cell"]
    if bcell in exp.cells:
        cell = exp.cell(bcell)
        seed = cell.seeds[0]
        add(Stage(stage_name("benchmark", bcell),
                  ("benchmark", "--params", "{params}", "--cell", bcell, "--seed", str(seed), "--model",
                   P.train_outputs(bcell, seed)["model"], "--profile", prof, "--root", root, "--dataset",
                   rep["table2"]["dataset"], "--images", str(rep["table2"]["images"]), "--threads", "1", "--out",
                   P.benchmark_file(bcell)),
                  deps=tuple([P.train_outputs(bcell, seed)["model"]] + dataset_ready(exp, rep["table2"]["dataset"])
                             + _generator_dir(exp, cell.train.generator_config.get("pretrained")) + clip_weights(exp)),
                  outs=(Out(P.benchmark_file(bcell), cache=False),),
                  params=("report.table2", f"proposals.{prof}") + cell_params[bcell],
                  code=("smart/eval", "smart/model", "smart/data/sources.py"),
                  log=P.log("benchmark", bcell), gpu=gpu))
    for rcell in table4_cells(exp):  # Table 4: the reported cell, then the tuning choices it is compared with
        cell = exp.cell(rcell)
        ready = sorted({f for d in rep["table4"]["datasets"] for f in dataset_ready(exp, d)})
        for seed in cell.seeds:
            m, d = P.refer_metrics(rcell, seed), P.refer_detail(rcell, seed)
            add(Stage(stage_name("refer", f"{rcell}-s{seed}"),
                      ("eval-refer", "--params", "{params}", "--cell", rcell, "--seed", str(seed), "--model",
                       P.train_outputs(rcell, seed)["model"], "--datasets", *rep["table4"]["datasets"], "--profile",
                       prof, "--root", root, "--out", m, "--detail", d, "--threads", "1"),
                      deps=tuple([P.train_outputs(rcell, seed)["model"]] + ready + clip_weights(exp)
                                 + _generator_dir(exp, cell.train.generator_config.get("pretrained"))),
                      outs=(Out(m, cache=False), Out(d, cache=False)),
                      params=("report.table4", f"proposals.{prof}") + cell_params[rcell],
                      code=("smart/eval", "smart/model", "smart/data/sources.py") + GROUP_CODE,
                      log=P.log("refer", f"{rcell}/s{seed}"), gpu=gpu))

    # ---------------------------------------------------------------- dataset checks and pictures
    for ds in P.ALL_DATASETS + tuple(exp.user_datasets):
        ready = tuple(dataset_ready(exp, ds))
        user = ("--params", "{params}") if ds in exp.user_datasets else ()  # its declaration is in the params
        add(Stage(stage_name("check_dataset", ds), ("check-dataset", ds, "--profile", prof, "--root", root, *user,
                                                     "--out", P.dataset_check(ds)),
                  deps=ready, outs=(Out(P.dataset_check(ds), cache=False),), params=user_keys([ds]),
                  code=("smart/data/registry.py", "smart/data/check.py") + GROUP_CODE,
                  log=P.log("check_dataset", ds)))
        add(Stage(stage_name("dataset_grid", ds), ("show-dataset", ds, "--profile", prof, "--root", root, *user,
                                                    "--out", P.dataset_grid(ds)),
                  deps=ready, outs=(Out(P.dataset_grid(ds), cache=False),), params=user_keys([ds]),
                  code=("smart/data/registry.py", "smart/data/show.py"), log=P.log("dataset_grid", ds)))

    # ---------------------------------------------------------------- tables and figures
    for name in P.TABLES + P.FIGURES:
        outs = P.report_outputs(name)
        if name in P.FIGURES:
            argv = ("figure", name, "--params", "{params}", "--profile", prof, "--metrics-dir", "results/metrics",
                    "--out", outs[0]) + (("--plots-dir", "results/plots") if name == "fig6" else ())
        else:
            argv = ("table", name, "--params", "{params}", "--profile", prof, "--out", outs[0])
        add(Stage(name, argv, deps=tuple(report_inputs(exp, name)), outs=tuple(Out(o, cache=False) for o in outs),
                  params=(f"report.{P.REPORT_KEY.get(name, name)}", "cell_defaults")
                  + tuple(f"cells.{c}" for c in report_cells(exp, name))
                  + ((f"train_defaults.{prof}",) if name == "fig6" else ()),
                  code=("smart/report",) + GROUP_CODE, log=P.log("report", name), local=True))
    q = rep.get("qualitative")
    if q and q["baseline"] in exp.cells and q["smart"] in exp.cells:  # Figs. 4-5: the models on a few images
        cols = [exp.cell(q["baseline"]), exp.cell(q["smart"])]
        datasets = cols[1].datasets
        models = [P.train_outputs(c.model_cell, c.seeds[0])["model"] for c in cols]
        gens = [d for c in cols for d in _generator_dir(exp, c.train.generator_config.get("pretrained"))]
        ready = sorted({f for d in datasets for f in dataset_ready(exp, d)})
        add(Stage("qualitative", ("qualitative", "--params", "{params}", "--profile", prof, "--root", root,
                                  "--out-dir", P.QUALITATIVE_DIR, "--threads", "1"),
                  deps=tuple(dict.fromkeys(models + gens + ready + clip_weights(exp))),
                  outs=tuple(Out(P.qualitative_figure(d), cache=False) for d in datasets),
                  params=tuple(dict.fromkeys(("report.qualitative", "eval", f"proposals.{prof}")
                                             + cell_params[cols[0].name] + cell_params[cols[1].name]
                                             + user_keys(datasets))),
                  code=("smart/predict.py", "smart/visualize.py", "smart/report/qualitative.py", "smart/model",
                        "smart/data/sources.py", "smart/data/registry.py"),
                  log=P.log("report", "qualitative"), gpu=gpu))
    if exp.user_cells():  # the user's own benchmarks: one table of every cell scored on them
        outs = P.report_outputs(P.USER_TABLE)
        add(Stage(P.USER_TABLE, ("table", P.USER_TABLE, "--params", "{params}", "--profile", prof, "--out", outs[0]),
                  deps=tuple(report_inputs(exp, P.USER_TABLE)), outs=tuple(Out(o, cache=False) for o in outs),
                  params=("cell_defaults", "user_datasets") + tuple(f"cells.{c}" for c in exp.user_cells()),
                  code=("smart/report",), log=P.log("report", P.USER_TABLE), local=True))
    return list(stages.values())


# ------------------------------------------------------------------------------------------ reports
def table4_cells(exp: Experiment) -> list[str]:
    """Table 4's cells that run in this profile: ``report.table4.cell``, then ``report.table4.compare``."""
    t4 = exp.report["table4"]
    return [c for c in dict.fromkeys([t4["cell"], *(t4.get("compare") or [])]) if c in exp.cells]


def report_cells(exp: Experiment, what: str) -> list[str]:
    """The cells whose results a table or figure reads (paper-only cells drop out of the mini profile)."""
    rep = exp.report
    if what == "table1":
        names = list(rep["table1"])
    elif what == "table2":
        names = [rep["table2"]["cell"]]
    elif what in P.TABLE3_PARTS:
        names = list(rep["table3"][P.TABLE3_PARTS[what]].values())
    elif what == "fig2":
        names = [c for part in rep["fig2"].values() for c in part.values()]
    elif what == "fig6":
        names = [c for part in rep["fig6"].values() for c in part]
    elif what == "table4":
        names = table4_cells(exp)
    else:
        raise KeyError(what)
    return [c for c in dict.fromkeys(names) if c in exp.cells]


def cell_metrics(exp: Experiment, cell: str) -> list[str]:
    """Every metrics file of a cell (all its seeds x datasets)."""
    c = exp.cell(cell)
    return [P.metrics_file(cell, s, d) for s in c.seeds for d in c.datasets]


def report_inputs(exp: Experiment, what: str) -> list[str]:
    """Files a table or figure is built from."""
    if what == "table4":
        return [P.refer_metrics(c, s) for c in table4_cells(exp) for s in exp.cell(c).seeds]
    if what == P.USER_TABLE:
        return [P.metrics_file(c, s, d) for c in exp.user_cells() for s in exp.cell(c).seeds
                for d in exp.cell(c).datasets if d in exp.user_datasets]
    out = [f for c in report_cells(exp, what) for f in cell_metrics(exp, c)]
    if what == "table2" and exp.report["table2"]["cell"] in exp.cells:
        cell = exp.report["table2"]["cell"]
        out += [P.benchmark_file(cell)]
        out += [P.train_outputs(cell, s)[k] for s in exp.cell(cell).seeds for k in ("summary", "config")]
    return out


def all_targets(exp: Experiment) -> list[str]:
    """What ``snakemake`` builds by default: every output of every stage."""
    return [f for st in build_stages(exp) for f in st.outputs]


# ------------------------------------------------------------------------------------------ engines
def snakemake_inputs(stages: list[Stage]) -> dict[str, list[str]]:
    """Each stage's Snakemake inputs: its deps, with a directory output of another stage replaced by the
    files Snakemake tracks in it."""
    tracked = {o.path: o.files for st in stages for o in st.outs if o.files}
    return {st.name: [f for d in st.deps for f in (tracked.get(d) or (d,))] for st in stages}


# The directory holding the ``smart`` package: code paths (``smart/train``) are relative to it, wherever
# the workflow runs (``snakemake --directory``).
CODE_ROOT = Path(__file__).resolve().parent.parent


@lru_cache(maxsize=None)
def _path_digest(path: str) -> str:
    p = CODE_ROOT / path
    if not p.exists():
        raise FileNotFoundError(f"code dependency {path!r} not found under {CODE_ROOT}")
    files = sorted(f for f in p.rglob("*") if f.is_file() and "__pycache__" not in f.parts) if p.is_dir() else [p]
    h = hashlib.sha256()
    for f in files:
        h.update(f.relative_to(p if p.is_dir() else p.parent).as_posix().encode() + b"\0")
        h.update(f.read_bytes())
    return h.hexdigest()


def code_digest(paths: tuple[str, ...]) -> str:
    """Content hash of a stage's code paths (under :data:`CODE_ROOT`; mtimes play no part)."""
    return hashlib.sha256("".join(f"{p}={_path_digest(p)};" for p in paths).encode()).hexdigest()[:16]


def resolved_params_file(exp: Experiment) -> str:
    """Write the params a Snakemake run's jobs read — params.yaml with any ``--config`` overrides — to
    ``.smart/params.yaml`` (atomically, only when it changes) and return that path. A fixed path, so that
    an override reruns only the stages whose params values it changes (their rule params)."""
    import yaml

    out = Path(RESOLVED_DIR) / "params.yaml"
    text = ("# params.yaml as a Snakemake run resolved it (--config overrides included); written by the "
            "Snakefile.\n" + yaml.safe_dump(exp.params, sort_keys=False))
    if not out.exists() or out.read_text() != text:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        tmp.replace(out)
    return str(out)


def render_dvc(exp: Experiment) -> dict:
    """The ``dvc.yaml`` mapping of the experiment's stages."""
    out_stages = {}
    for st in build_stages(exp):
        d: dict = {"cmd": st.command(), "deps": list(st.deps) + list(st.code)}
        if st.params:
            d["params"] = list(st.params)
        d["outs"] = [o.path if o.cache else {o.path: {"cache": False}} for o in st.outs]
        out_stages[st.name] = d
    metrics = ["results/metrics"]
    if exp.mini:
        metrics += [P.pretrain_metrics("mini_clip")] + [P.pretrain_metrics(g) for g in exp.params["mini_generators"]]
    if exp.report["table2"]["cell"] in exp.cells:
        metrics.append(P.benchmark_file(exp.report["table2"]["cell"]))
    plots = [
        {P.FIG6_PLOTS[0]: {"x": "iterations", "y": ["PQ", "mIoU"], "title": "Fig. 6a: ADE150 vs training iterations",
                           "x_label": "training iterations", "y_label": "ADE150 (%)"}},
        {P.FIG6_PLOTS[1]: {"x": "fraction", "y": ["PQ", "mIoU"], "title": "Fig. 6b: ADE150 vs data fraction",
                           "x_label": "fraction of COCO train", "y_label": "ADE150 (%)"}},
        *P.figure_files("fig2")[1:], *P.figure_files("fig6")[1:],
    ]
    return {"stages": out_stages, "params": ["params.yaml"], "metrics": metrics, "plots": plots}


__all__ = ["Out", "Stage", "all_targets", "build_stages", "code_digest", "render_dvc", "resolved_params_file",
           "snakemake_inputs", "stage_name"]
