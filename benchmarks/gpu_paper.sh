#!/usr/bin/env bash
# The prepared GPU check of the paper configuration (one GPU, well under 8 minutes; see gpu_paper.py):
# ~20 training iterations at 896 px with bf16 + activation checkpointing, then batch-1 inference
# end to end, with random weights. Writes one JSON that names the GPU, then the cost curves (bench_cost.py).
#   bash benchmarks/gpu_paper.sh [RESULT.json] [gpu_paper.py options...]
set -euo pipefail
cd "$(dirname "$0")/.."
json=${1:-${OUT:-build}/gpu_paper.json}
shift || true
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
python3 benchmarks/gpu_paper.py --out "${TMPDIR:-/tmp}/smart-gpu-paper" --json "$json" "$@"
# Cost curves of the paper configuration on this GPU (bf16 through the classifier): time and peak memory
# of one inference and one training step against proposals (20-200) and input side (224-896).
python3 benchmarks/bench_cost.py --preset paper --device cuda --amp --repeats 5 \
  --out "$(dirname "$json")/cost_paper_cuda.csv"
