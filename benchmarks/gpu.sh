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
# End to end, file in -> file out (issue 15): needs uproot, awkward, astropy and tqdm, which the
# image lacks; they are installed from wheels/ when that folder was carried (pip download
# --only-binary :all: -d wheels uproot awkward astropy tqdm), else the step says why it is skipped.
if [ -d wheels ]; then python -m pip install -q --no-index --find-links wheels uproot awkward astropy tqdm 2>&1 | tail -2; fi
if python -c "import uproot, awkward, astropy, tqdm" 2>/dev/null; then
  for B in 1024 16384 65536; do
    PYTHONPATH=. XLA_PYTHON_CLIENT_PREALLOCATE=false python benchmarks/e2e_throughput.py \
      --n-events 100000 --files 1 --batch-size $B --work /tmp/lhaaso_e2e \
      --json "$OUT/e2e_gpu_b$B.json" 2>&1 | tee -a "$OUT/gpu_log.txt"
  done
else
  echo "e2e reconstruct: skipped (uproot/awkward/astropy/tqdm missing; carry a wheels/ folder)" | tee -a "$OUT/gpu_log.txt"
fi
# Networks (issue 17): the KM2A γ/hadron DGCNN with 4× the CPU samples and more epochs; the
# samples need the reconstruction (uproot/awkward for the records), so the same wheels apply.
if python -c "import uproot, awkward, astropy, tqdm, flax, optax, sklearn" 2>/dev/null; then
  PYTHONPATH=. XLA_PYTHON_CLIENT_PREALLOCATE=false python benchmarks/ml_gamma_hadron.py \
    --n-train 16000 --n-val 4000 --n-test 8000 --epochs 30 --time-budget 1800 \
    --out "$OUT/ml_gamma_hadron_gpu" --save-model "$OUT/km2a_gamma_hadron_gpu" 2>&1 | tee -a "$OUT/gpu_log.txt"
else
  echo "ml_gamma_hadron: skipped (needs uproot/awkward/astropy/tqdm/flax/optax/scikit-learn; carry wheels/)" | tee -a "$OUT/gpu_log.txt"
fi
