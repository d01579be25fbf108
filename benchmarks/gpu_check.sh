#!/usr/bin/env bash
# Every GPU check of the engine in one call on a machine with CUDA (about 5 minutes on an H100):
#   1. the CUDA tests: graph capture (SGD and Adam), its fallback, short batches, bf16, whole graphed
#      runs, device data sets;
#   2. `infodropout bench --device cuda`: step ratios against hand-written PyTorch (eager and graphed),
#      the speed-up over stock SVI, and All-CNN-32 batch-512 bf16 channels-last images per second;
#   3. real training: mnist-mlp graphed against eager; cifar-allcnn (the paper's settings) and
#      cluttered-allcnn in bf16 and channels-last, graphed; each epoch's seconds in train.log.
# Results come back in $OUT: gpu.txt, tests.log, bench.json, bench.log, train.log.
#
# That machine has torch but not Pyro, and no network. First, here: bash benchmarks/gpu_prepare.sh
# (wheels in .whl/, MNIST and CIFAR-10 in .gpu-data/, both git-ignored), then run this script carrying both:
#   run(command="bash benchmarks/gpu_check.sh", carry=[".whl", ".gpu-data"], timeout_s=540)
# A dry run here, of everything but the GPU:
#   PATH=$PWD/.venv/bin:$PATH DEVICE=cpu SKIP_INSTALL=1 TRAIN_ARGS="--num-train 500 --num-test 200" \
#       OUT=/tmp/gpu-check bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-check}
DEVICE=${DEVICE:-cuda}
RUNS=$(mktemp -d)
mkdir -p "$OUT"
if [ -z "${SKIP_INSTALL:-}" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONUNBUFFERED=1 INFODROPOUT_DATA=$PWD/.gpu-data
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  python3 -c "import torch, pyro; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'pyro', pyro.__version__)"
} | tee "$OUT/gpu.txt"

python3 -m pytest -q -p no:cacheprovider -o addopts="" --import-mode=importlib -rs \
    tests/train/test_cuda.py tests/train/test_engine.py tests/train/data/test_loader.py \
    tests/train/data/test_registry.py 2>&1 | tee "$OUT/tests.log"

python3 -m infodropout.train.cli bench --device "$DEVICE" --out "$OUT" 2>&1 | tee "$OUT/bench.log"

train() {  # name, then infodropout train arguments
    local name=$1; shift
    echo "== $name: $*"
    # shellcheck disable=SC2086  # TRAIN_ARGS is a list of flags
    python3 -m infodropout.train.cli train "$@" ${TRAIN_ARGS:-} --device "$DEVICE" --out "$RUNS/$name" 2>&1 \
        | grep -v '^ ' | tail -n 8
}
# CUDA-only flags: refused on the CPU (an option without effect), so the dry run leaves them out
if [ "$DEVICE" = cpu ]; then NO_GRAPH=""; CHANNELS_LAST=""; else NO_GRAPH=--no-cuda-graph; CHANNELS_LAST=--channels-last; fi
{ train mnist-graph mnist-mlp --epochs 2
  train mnist-eager mnist-mlp --epochs 2 $NO_GRAPH
  train cifar-bf16 cifar-allcnn --epochs 2 --precision bf16 $CHANNELS_LAST
  train cluttered-bf16 cluttered-allcnn --epochs 1 --num-train 10000 --num-test 2000 --precision bf16 $CHANNELS_LAST
} 2>&1 | tee "$OUT/train.log"
rm -rf "$RUNS"
