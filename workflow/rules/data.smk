# Dataset stage: the mini world (mini profile) or real-dataset preparation (paper profile),
# then a full validation pass and a picture of each benchmark.


rule mini_world:
    output:
        config["data"]["mini_root"] + "/.mini/{unit}.json",
    params:
        world=config["mini_world"],
        root=config["data"]["mini_root"],
    input:
        MINI_WORLD_CODE,
    wildcard_constraints:
        unit="vocab|coco|ade|mapillary|pascal|refer",
    log:
        "logs/mini_world/{unit}.log",
    benchmark:
        "benchmarks/mini_world/{unit}.tsv"
    threads: 1
    priority: 20
    shell:
        "python -m smart make-mini {wildcards.unit} --params params.yaml --out {params.root}"
        " --workers {threads} > {log} 2>&1"


# The caption corpus feeds the mini CLIP, the longest chain of the mini DAG: it starts first.
use rule mini_world as mini_world_captions with:
    wildcard_constraints:
        unit="captions",
    priority: 30


rule prepare_dataset:
    input:
        lambda wc: [P.paper_stamp(config, u) for u in PREPARE_REQUIRES.get(wc.unit, ())],
    output:
        config["data"]["paper_root"] + "/.prepared/{unit}.json",
    params:
        root=config["data"]["paper_root"],
        flags=("--download" if config["data"]["download"] else "")
        + ("" if config["data"]["count_check"] else " --skip-count-check"),
    log:
        "logs/prepare/{unit}.log",
    benchmark:
        "benchmarks/prepare/{unit}.tsv"
    threads: 8
    shell:
        "python -m smart prepare {wildcards.unit} --root {params.root} {params.flags} --workers {threads}"
        " > {log} 2>&1"


rule check_dataset:
    input:
        lambda wc: P.dataset_ready(config, wc.dataset),
    output:
        P.dataset_check("{dataset}"),
    params:
        profile=PROFILE,
        root=ROOT,
    log:
        "logs/check_dataset/{dataset}.log",
    benchmark:
        "benchmarks/check_dataset/{dataset}.tsv"
    shell:
        "python -m smart check-dataset {wildcards.dataset} --profile {params.profile} --root {params.root}"
        " --out {output} > {log} 2>&1"


rule dataset_grid:
    input:
        lambda wc: P.dataset_ready(config, wc.dataset),
    output:
        P.dataset_grid("{dataset}"),
    params:
        profile=PROFILE,
        root=ROOT,
    log:
        "logs/dataset_grid/{dataset}.log",
    benchmark:
        "benchmarks/dataset_grid/{dataset}.tsv"
    shell:
        "python -m smart show-dataset {wildcards.dataset} --profile {params.profile} --root {params.root}"
        " --out {output} > {log} 2>&1"
