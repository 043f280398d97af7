# SMART reproduction pipeline — the only Snakemake entry point.
# Every rule is a stage of smart/dag.py, built from params.yaml through smart.experiment.Experiment.
from snakemake.utils import min_version

min_version("9.19")


configfile: "params.yaml"


include: "workflow/rules/common.smk"


rule all:
    default_target: True
    input:
        [f for _s in STAGES for f in _s.outputs],
