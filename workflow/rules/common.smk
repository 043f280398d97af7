# The whole DAG: one rule per stage of smart.dag (the same list dvc.yaml is rendered from).
# Rules are wiring only: inputs, outputs, params and the command all come from the stage.
import os

import smart.paths as P
from smart.config import load_params
from smart.dag import build_stages, cluster_resources, code_digest, resolved_params_file, snakemake_inputs
from smart.experiment import Experiment

# params.yaml (with any --config overrides), validated once; every job reads the same values from
# PARAMS_FILE (.smart/params.yaml, rewritten at each start: a fixed path, so it triggers no rerun itself).
load_params("params.yaml")  # rejects a repeated key, of which Snakemake's reader keeps the last silently
EXP = Experiment.from_params(config, source="params.yaml")
PARAMS_FILE = resolved_params_file(EXP)
STAGES = build_stages(EXP)
INPUTS = snakemake_inputs(STAGES)
# Every job encodes a vocabulary once for the whole DAG (an exact cache; see smart.model.text).
os.environ.setdefault("SMART_TEXT_CACHE", P.TEXT_CACHE)


for _st in STAGES:

    rule:
        name:
            _st.rule
        input:
            INPUTS[_st.name],
        output:
            _st.outputs,
        params:
            # a stage reruns when a params key it reads changes, or the code it runs (content hash)
            values={k: EXP.get(k) for k in _st.params},
            code=code_digest(_st.code),
            cmd=_st.command(PARAMS_FILE),  # a rule body runs after the loop: it reads its command from params
        log:
            _st.log,
        benchmark:
            "benchmarks/" + _st.log[len("logs/") : -len(".log")] + ".tsv"
        threads: _st.threads
        priority: _st.priority
        resources:
            **cluster_resources(_st, EXP.profile),
        localrule: _st.local
        shell:
            "{params.cmd} > {log} 2>&1"
