#!/usr/bin/env bash
# The GPU checks in one call on a machine with CUDA: the CUDA tests (graph capture, its fallback,
# bf16, device loaders) and `infodropout bench --device cuda` (step ratios, stock-SVI speed-up,
# All-CNN-32 batch-512 bf16 throughput). Results go to $OUT (bench.json, tests.log).
#
# That machine has torch and numpy but not Pyro: carry pure-Python wheels in .whl (ignored by git):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl \
#       pyro-ppl==1.9.2 pyro-api==0.1.2 opt_einsum==3.4.0 pytest==9.2.0 pluggy iniconfig packaging \
#       hypothesis sortedcontainers attrs
#   .venv/bin/pip wheel --no-deps -w .whl .
# and run this script with .whl carried.
set -uo pipefail
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch, pyro; print('torch', torch.__version__, 'pyro', pyro.__version__)" | tee -a "$OUT/gpu.txt"
python3 -m pytest -q -p no:cacheprovider -o addopts="" --import-mode=importlib \
    tests/train/test_cuda.py tests/train/data/test_loader.py tests/train/data/test_registry.py -k "cuda or graph or capture or bf16" \
    2>&1 | tee "$OUT/tests.log"
python3 -m infodropout.train.cli bench --device cuda --out "$OUT" 2>&1 | tee "$OUT/bench.log"
