#!/usr/bin/env bash
# Prepare, on this machine, what benchmarks/gpu_check.sh needs on a GPU machine that has torch but
# not Pyro and no network: pure-Python wheels in .whl/, MNIST and CIFAR-10 in .gpu-data/ (both git-ignored).
# Then, with the device tool: run `bash benchmarks/gpu_check.sh` carrying .whl and .gpu-data.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=${INFODROPOUT_DATA:-../shared/data}
rm -rf .whl && mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl \
    pyro-ppl==1.9.2 pyro-api==0.1.2 opt_einsum==3.4.0 pytest==9.2.0 pluggy==1.7.0 iniconfig==2.3.1 \
    packaging==26.4 pygments==2.21.0 hypothesis==6.170.17 sortedcontainers==2.4.0 tqdm==4.70.1
"$PY" -m pip wheel -q --no-deps --no-build-isolation -w .whl .
rm -rf .gpu-data && mkdir -p .gpu-data
for name in mnist cifar10; do
    if [ -d "$DATA/$name" ]; then cp -r "$DATA/$name" .gpu-data/; fi
done
du -sh .whl .gpu-data
