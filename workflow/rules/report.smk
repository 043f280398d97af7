# Tables and figures.


localrules:
    table1,


rule table1:
    input:
        P.table1_inputs(config),
        str(_PKG / "report/paper_numbers.yaml"),
    output:
        csv=P.table("table1"),
        md="results/table1.md",
        tex="results/table1.tex",
    params:
        profile=PROFILE,
    log:
        "logs/report/table1.log",
    benchmark:
        "benchmarks/report/table1.tsv"
    shell:
        "python -m smart table table1 --profile {params.profile} --metrics-dir results/metrics"
        " --out {output.csv} > {log} 2>&1"
