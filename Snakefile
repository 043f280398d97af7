# SMART reproduction pipeline — the only Snakemake entry point.
# Rules are wiring only: every job runs `python -m smart <verb>`; paths come from smart/paths.py.
from snakemake.utils import min_version

min_version("9.19")


configfile: "params.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        P.all_targets(config),
