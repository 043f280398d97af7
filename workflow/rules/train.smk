# Proposal caching (the frozen generator run once per image) and SMART training of each cell.


rule cache_proposals:
    input:
        lambda wc: P.dataset_ready(config, wc.dataset),
        lambda wc: P.mini_generator_files(wc.generator) if PROFILE == "mini" else [],
    output:
        P.proposals_manifest("{generator}", "{dataset}"),
    params:
        proposals=config["proposals"],
        root=ROOT,
        out=lambda wc: P.proposals_dir(wc.generator, wc.dataset),
        gen=lambda wc: P.mini_generator_dir(wc.generator) if PROFILE == "mini" else wc.generator,
    log:
        "logs/proposals/{generator}/{dataset}.log",
    benchmark:
        "benchmarks/proposals/{generator}/{dataset}.tsv"
    threads: 1
    resources:
        gpu=1 if PROFILE == "paper" else 0,
    shell:
        "python -m smart cache-proposals {wildcards.dataset} --generator {params.gen} --params params.yaml"
        " --root {params.root} --out {params.out} --threads {threads} > {log} 2>&1"


def _train_inputs(wc):
    gen = P.cell_generator(config, wc.cell)
    out = [P.proposals_manifest(gen, "coco_train")] + P.dataset_ready(config, "coco_train")
    if PROFILE == "mini":
        out += P.mini_clip_files(config)
    return out


rule train_cell:
    input:
        _train_inputs,
    output:
        summary=P.train_summary("{cell}"),
        model=P.train_dir("{cell}") + "/model.pt",
        metrics=P.train_dir("{cell}") + "/metrics.jsonl",
    params:
        cell=lambda wc: config["cells"][wc.cell],
        model=lambda wc: config["model"][PROFILE],
        train=lambda wc: config["train_defaults"][PROFILE],
        profile=PROFILE,
        root=ROOT,
        out=lambda wc: P.train_dir(wc.cell),
        proposals=lambda wc: P.proposals_dir(P.cell_generator(config, wc.cell), "coco_train"),
    log:
        "logs/train/{cell}.log",
    benchmark:
        "benchmarks/train/{cell}.tsv"
    threads: 1
    resources:
        gpu=1 if PROFILE == "paper" else 0,
    shell:
        "python -m smart train --params params.yaml --cell {wildcards.cell} --profile {params.profile}"
        " --root {params.root} --out {params.out} --proposals {params.proposals} --threads {threads}"
        " > {log} 2>&1"
