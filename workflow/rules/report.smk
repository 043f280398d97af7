# Tables and figures (cheap: run on the head node of a cluster).


localrules:
    table,
    fig2,
    fig6,


rule table:
    input:
        lambda wc: P.report_inputs(config, wc.table),
        str(_PKG / "report/paper_numbers.yaml"),
    output:
        csv="results/{table}.csv",
        md="results/{table}.md",
        tex="results/{table}.tex",
    params:
        profile=PROFILE,
        report=config["report"],
    wildcard_constraints:
        table="|".join(P.TABLES),
    log:
        "logs/report/{table}.log",
    benchmark:
        "benchmarks/report/{table}.tsv"
    shell:
        "python -m smart table {wildcards.table} --params params.yaml --profile {params.profile}"
        " --out {output.csv} > {log} 2>&1"


rule fig2:
    input:
        P.report_inputs(config, "fig2"),
    output:
        pdf="results/figures/fig2.pdf",
        png="results/figures/fig2.png",
    params:
        profile=PROFILE,
        report=config["report"]["fig2"],
    log:
        "logs/report/fig2.log",
    benchmark:
        "benchmarks/report/fig2.tsv"
    shell:
        "python -m smart figure fig2 --params params.yaml --profile {params.profile}"
        " --metrics-dir results/metrics --out {output.pdf} > {log} 2>&1"


rule fig6:
    input:
        P.report_inputs(config, "fig6"),
    output:
        pdf="results/figures/fig6.pdf",
        png="results/figures/fig6.png",
        iters=P.fig6_plots()[0],
        data=P.fig6_plots()[1],
    params:
        profile=PROFILE,
        report=config["report"]["fig6"],
    log:
        "logs/report/fig6.log",
    benchmark:
        "benchmarks/report/fig6.tsv"
    shell:
        "python -m smart figure fig6 --params params.yaml --profile {params.profile}"
        " --metrics-dir results/metrics --out {output.pdf} --plots-dir results/plots > {log} 2>&1"


rule benchmark_cell:
    input:
        lambda wc: P.benchmark_inputs(config, wc.cell),
    output:
        P.benchmark_file("{cell}"),
    params:
        profile=PROFILE,
        root=ROOT,
        seed=lambda wc: P.seeds(config, wc.cell)[0],
        model=lambda wc: P.train_outputs(wc.cell, P.seeds(config, wc.cell)[0])["model"],
        dataset=config["report"]["table2"]["dataset"],
        images=config["report"]["table2"]["images"],
        test_time=config["proposals"][PROFILE],
    log:
        "logs/benchmark/{cell}.log",
    benchmark:
        "benchmarks/benchmark/{cell}.tsv"
    threads: 1
    resources:
        gpu=1 if PROFILE == "paper" else 0,
    shell:
        "python -m smart benchmark --params params.yaml --cell {wildcards.cell} --seed {params.seed}"
        " --model {params.model} --profile {params.profile} --root {params.root} --dataset {params.dataset}"
        " --images {params.images} --threads {threads} --out {output} > {log} 2>&1"


rule table4_refer:
    input:
        lambda wc: P.refer_inputs(config, wc.cell, wc.seed),
    output:
        metrics=P.refer_metrics("{cell}", "{seed}"),
        detail=P.refer_detail("{cell}", "{seed}"),
    params:
        profile=PROFILE,
        root=ROOT,
        datasets=" ".join(config["report"]["table4"]["datasets"]),
        model=lambda wc: P.train_outputs(wc.cell, wc.seed)["model"],
        test_time=config["proposals"][PROFILE],
    log:
        "logs/refer/{cell}/s{seed}.log",
    benchmark:
        "benchmarks/refer/{cell}/s{seed}.tsv"
    threads: 1
    resources:
        gpu=1 if PROFILE == "paper" else 0,
    shell:
        "python -m smart eval-refer --params params.yaml --cell {wildcards.cell} --seed {wildcards.seed}"
        " --model {params.model} --datasets {params.datasets} --profile {params.profile} --root {params.root}"
        " --out {output.metrics} --detail {output.detail} --threads {threads} > {log} 2>&1"
