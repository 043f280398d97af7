# Generator conversion (paper profile), proposal caching (the frozen generator run once per image),
# SMART training of every (cell, seed), and evaluation of every (cell, seed) on the cell's benchmarks.


rule convert_generator:
    input:
        lambda wc: P.converted_generators(config)[wc.converted],
    output:
        "{converted}/smart_mask_generator.json",
    wildcard_constraints:
        converted="|".join(re.escape(d) for d in P.converted_generators(config)) or "(?!)",
    log:
        "logs/convert_generator/{converted}.log",
    benchmark:
        "benchmarks/convert_generator/{converted}.tsv"
    shell:
        "python -m smart convert-generator {input} {wildcards.converted} > {log} 2>&1"


rule cache_proposals:
    input:
        lambda wc: P.dataset_ready(config, wc.dataset),
        lambda wc: P.generator_files(config, wc.generator),
    output:
        P.proposals_manifest("{generator}", "{dataset}"),
    params:
        proposals=config["proposals"][PROFILE],
        profile=PROFILE,
        root=ROOT,
        out=lambda wc: P.proposals_dir(wc.generator, wc.dataset),
        gen=lambda wc: P.cache_generator_arg(config, wc.generator),
    log:
        "logs/proposals/{generator}/{dataset}.log",
    benchmark:
        "benchmarks/proposals/{generator}/{dataset}.tsv"
    threads: 1
    resources:
        gpu=1 if PROFILE == "paper" else 0,
    shell:
        "python -m smart cache-proposals {wildcards.dataset} --generator {params.gen} --params params.yaml"
        " --profile {params.profile} --root {params.root} --out {params.out} --threads {threads} > {log} 2>&1"


def _proposal_flag(wc):
    if not P.cell_uses_store(config, wc.cell):
        return ""  # the cell tunes its generator: proposals are computed on the fly
    return "--proposals " + P.proposals_dir(P.cell_generator(config, wc.cell), "coco_train")


rule train_cell:
    input:
        lambda wc: P.train_inputs(config, wc.cell),
    output:
        **P.train_outputs("{cell}", "{seed}"),
    params:
        cell=lambda wc: config["cells"][wc.cell],
        model=lambda wc: config["model"][PROFILE],
        train=lambda wc: config["train_defaults"][PROFILE],
        profile=PROFILE,
        root=ROOT,
        out=lambda wc: P.train_dir(wc.cell, wc.seed),
        proposals=_proposal_flag,
    log:
        "logs/train/{cell}/s{seed}.log",
    benchmark:
        "benchmarks/train/{cell}/s{seed}.tsv"
    threads: 1
    resources:
        gpu=1 if PROFILE == "paper" else 0,
    shell:
        "python -m smart train --params params.yaml --cell {wildcards.cell} --seed {wildcards.seed}"
        " --profile {params.profile} --root {params.root} --out {params.out} {params.proposals}"
        " --threads {threads} > {log} 2>&1"


def _eval_proposals(cell):
    spec = cell_spec(config, cell)
    if spec.oracle == "generator" or not P.cell_uses_store(config, spec.model_cell):
        return ""
    return "--proposals-root " + P.proposals_root(P.cell_generator(config, spec.model_cell))


# One evaluation rule per cell: its outputs are the metrics of all the cell's benchmarks (one job per
# seed loads the model once and scores every benchmark).
for _cell in P.cells(config):

    rule:
        name:
            f"eval_{_cell}"
        input:
            lambda wc, c=_cell: P.eval_inputs(config, c, wc.seed),
        output:
            metrics=[P.metrics_file(_cell, "{seed}", d) for d in P.eval_datasets(config, _cell)],
            detail=[P.eval_detail(_cell, "{seed}", d) for d in P.eval_datasets(config, _cell)],
        params:
            cell=_cell,
            spec=config["cells"][_cell],
            eval=config["eval"],
            profile=PROFILE,
            root=ROOT,
            model=lambda wc, c=_cell: P.train_outputs(cell_spec(config, c).model_cell, wc.seed)["model"],
            proposals=_eval_proposals(_cell),
            test_time=config["proposals"][PROFILE],  # the generator's test-time settings (on the fly)
            datasets=" ".join(P.eval_datasets(config, _cell)),
            out=lambda wc, c=_cell: P.metrics_file(c, wc.seed, "x").rsplit("/", 1)[0],
            detail=lambda wc, c=_cell: P.eval_detail(c, wc.seed, "x").rsplit("/", 1)[0],
        log:
            f"logs/eval/{_cell}/" + "s{seed}.log",
        benchmark:
            f"benchmarks/eval/{_cell}/" + "s{seed}.tsv"
        threads: 1
        resources:
            gpu=1 if PROFILE == "paper" else 0,
        shell:
            "python -m smart eval-cell --params params.yaml --cell {params.cell} --seed {wildcards.seed}"
            " --model {params.model} --datasets {params.datasets} {params.proposals} --profile {params.profile}"
            " --root {params.root} --out-dir {params.out} --detail-dir {params.detail} --threads {threads}"
            " > {log} 2>&1"
