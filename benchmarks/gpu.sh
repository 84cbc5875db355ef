#!/usr/bin/env bash
# GPU benchmark, run on the lent GPU machine from the repository root:
#   bash benchmarks/gpu.sh            (writes $OUT/gpu_results.json and $OUT/gpu_log.txt)
# The machine's image has jax/numpy but not uproot/awkward; nothing here needs them.
set -uo pipefail
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv 2>&1 | tee "$OUT/gpu_log.txt"
python -c "import jax; print(jax.__version__, jax.devices())" 2>&1 | tee -a "$OUT/gpu_log.txt"
PYTHONPATH=. XLA_PYTHON_CLIENT_PREALLOCATE=false python benchmarks/gpu_bench.py --out "$OUT/gpu_results.json" "$@" 2>&1 | tee -a "$OUT/gpu_log.txt"
