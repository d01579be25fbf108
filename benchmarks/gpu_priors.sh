#!/usr/bin/env bash
# The literature-scale priors study on one GPU within a budget of device time (see benchmarks/gpu_priors.py):
# the dSprites VAE's graphed step against a graphed hand-written step, then factorised, correlated and the
# Gaussian beta-VAE at beta 1, 2, 4, 8 with 3 seeds, as many of the literature's 300,000 steps as fit.
# First, here: bash benchmarks/gpu_prepare.sh; then with the device tool:
#   run(command="bash benchmarks/gpu_priors.sh", carry=[".whl"], timeout_s=560)
# A dry run here: SKIP_INSTALL=1 PATH=$PWD/.venv/bin:$PATH ARGS="--device cpu --tiny" bash benchmarks/gpu_priors.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-priors}
if [ -z "${SKIP_INSTALL:-}" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONUNBUFFERED=1
rm -rf "$OUT"
# shellcheck disable=SC2086  # ARGS is a list of flags
python3 benchmarks/gpu_priors.py --out "$OUT" --budget "${BUDGET:-480}" ${ARGS:-}
