# Mini profile only: pretraining of the mini world's CLIP (and, later, its mask generators).


rule pretrain_clip:
    input:
        P.mini_stamp(config, "captions"),
        str(_PKG / "train/clip_pretrain.py"),
    output:
        model=P.mini_clip_files(config),
        metrics=P.pretrain_metrics("mini_clip"),
    params:
        clip=config["mini_clip"],
        captions=config["data"]["mini_root"] + "/captions",
        out=P.mini_clip_dir(config),
    log:
        "logs/pretrain/mini_clip.log",
    benchmark:
        "benchmarks/pretrain/mini_clip.tsv"
    threads: 1
    priority: 25  # the longest chain of the mini DAG (captions -> CLIP): start it first
    resources:
        gpu=0,
    shell:
        "python -m smart pretrain-clip --params params.yaml --captions {params.captions} --out {params.out}"
        " --metrics {output.metrics} --train-log logs/pretrain/mini_clip.jsonl --threads {threads} > {log} 2>&1"


rule pretrain_generator:
    input:
        P.mini_stamp(config, "coco"),
        P.mini_stamp(config, "ade"),
        str(_PKG / "train/generator_pretrain.py"),
    output:
        model=P.mini_generator_files("{generator}"),
        metrics=P.pretrain_metrics("{generator}"),
    params:
        gen=lambda wc: config["mini_generators"][wc.generator],
        root=config["data"]["mini_root"],
        out=lambda wc: P.mini_generator_dir(wc.generator),
    wildcard_constraints:
        generator="mini-[a-z0-9]+",
    priority: 10
    log:
        "logs/pretrain/{generator}.log",
    benchmark:
        "benchmarks/pretrain/{generator}.tsv"
    threads: 1
    shell:
        "python -m smart pretrain-generator {wildcards.generator} --params params.yaml --root {params.root}"
        " --out {params.out} --metrics {output.metrics} --threads {threads} > {log} 2>&1"
