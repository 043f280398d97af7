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
    threads: 2
    resources:
        gpu=0,
    shell:
        "python -m smart pretrain-clip --params params.yaml --captions {params.captions} --out {params.out}"
        " --metrics {output.metrics} --train-log logs/pretrain/mini_clip.jsonl > {log} 2>&1"
