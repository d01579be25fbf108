"""One epoch of the MNIST MLP in one process, under ``torchrun --nproc-per-node=1`` and on K gloo processes.

    python benchmarks/bench_distributed.py [--out DIR] [--procs 2] [--device cpu|cuda] [-- TRAIN OPTIONS ...]

Runs ``infodropout train mnist-mlp --epochs 1`` (full MNIST, the preset's widths unless train options
given after ``--`` say otherwise) three ways, each as a fresh command so that every wall time includes
the start of Python, the data and the process group: plain, ``torchrun --standalone --nproc-per-node=1``
and ``--nproc-per-node=K``. Prints their wall times, the overhead of torchrun with one process over the
plain command (issue 11's target: at most 5% on a machine with one GPU), and the largest relative
difference ``||a - b|| / ||a||`` over the parameter tensors between the K-process run and one process
(target: 1e-5). On CUDA, K must not exceed the GPUs.

The reference for K processes is the plain command run with the threads of one of them (torchrun sets
``OMP_NUM_THREADS=1`` for K > 1): on the CPU the number of intra-op threads changes the order of float
sums, and Adam, which divides each gradient by its own running scale, carries such differences from
the smallest gradients into updates of full size. The plain command with its default threads against
the same command with one thread is printed too: the spread that float order alone makes in this run.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from infodropout.train.checkpoint import load_checkpoint


def timed(command: list[str], **env: str) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **env})
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds


def max_relative_difference(a: dict, b: dict) -> tuple[float, str]:
    """The largest ``||a - b|| / ||a||`` over the tensors, and its name."""
    differences = {k: ((a[k].double() - b[k].double()).norm() / a[k].double().norm()).item() for k in a}
    worst = max(differences, key=differences.get)
    return differences[worst], worst


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="the three run directories (default: a temp dir)")
    parser.add_argument("--procs", type=int, default=2, help="K >= 2")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("extra", nargs="*", help="more train options (after --)")
    args = parser.parse_args(argv)
    if args.procs < 2:
        parser.error(f"--procs {args.procs}: expected K >= 2 (one process is the torchrun-1 run)")
    root = args.out or Path(tempfile.mkdtemp(prefix="bench-distributed-"))
    root.mkdir(parents=True, exist_ok=True)
    train = ["train", "mnist-mlp", "--epochs", "1", "--device", args.device, *args.extra]
    module = [sys.executable, "-m", "infodropout.train"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    seconds = {
        "plain": timed([*module, *train, "--out", str(root / "plain")]),
        "torchrun-1": timed(
            [*torchrun, "--nproc-per-node=1", "-m", "infodropout.train", *train, "--out", str(root / "one")]
        ),
        f"torchrun-{args.procs}": timed(
            [*torchrun, f"--nproc-per-node={args.procs}", "-m", "infodropout.train", *train, "--out", str(root / "k")]
        ),
    }
    threads = os.environ.get("OMP_NUM_THREADS", "1")  # what torchrun gives each of K > 1 processes
    seconds[f"plain-{threads}-thread"] = timed(
        [*module, *train, "--out", str(root / "threads")], OMP_NUM_THREADS=threads
    )
    plain, k, reference = (load_checkpoint(root / name / "checkpoint.pt") for name in ("plain", "k", "threads"))
    difference, where = max_relative_difference(reference["model"], k["model"])
    spread, _ = max_relative_difference(plain["model"], reference["model"])
    result = {
        "seconds": {name: round(s, 2) for name, s in seconds.items()},
        "torchrun_1_overhead": round(seconds["torchrun-1"] / seconds["plain"] - 1, 4),
        f"max_relative_difference_{args.procs}_procs": difference,
        "worst_parameter": where,
        f"plain_default_threads_vs_{threads}_thread": spread,
        "steps": int(k["global_step"]),
        "device": args.device,
        "runs": str(root),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
