"""Time loading the real data sets onto a device: full MNIST, and full CIFAR-10 from its cache.

    python benchmarks/bench_data.py [--data-dir DIR] [--device cpu|cuda] [--repeats 3]

Each figure is the best of ``--repeats`` wall-clock times of ``get_dataset(...)`` including the
copy to the device and the train-set channel statistics (a device sync ends each timing). The
CIFAR-10 JPEG archive is decoded into the cache once before timing, so its figure is the cached load.
Targets: both under 2 s.
"""

from __future__ import annotations

import argparse
import time

import torch

from infodropout.train.data import add_data_dir_argument, get_dataset


def timed_load(name: str, data_dir, device: str, repeats: int) -> float:
    """Best wall-clock seconds of ``get_dataset(name)`` onto ``device`` over ``repeats`` runs."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        ds = get_dataset(name, data_dir=data_dir, device=device)
        if ds.device.type == "cuda":
            torch.cuda.synchronize(ds.device)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_dir_argument(parser)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    get_dataset("cifar10", data_dir=args.data_dir)  # decode the archive into the cache if needed
    for name, label in (("mnist", "MNIST (idx.gz)"), ("cifar10", "CIFAR-10 (cached)")):
        seconds = timed_load(name, args.data_dir, args.device, args.repeats)
        print(f"{label:<18} onto {args.device}: {seconds:.3f} s  ({seconds / 2.0:.2f} of the 2 s target)")


if __name__ == "__main__":
    main()
