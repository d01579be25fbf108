"""A quick study grid on a two-worker Dask LocalCluster against the same grid on two local worker processes.

    python benchmarks/bench_cluster.py [--out DIR] [--runs 8]

Prints, in one process and one run each: the wall time of the local pool (``--jobs 2``, its two worker
processes started by the study), of the LocalCluster including its start, and on the started cluster
(as a user's running cluster), their ratios, and whether the results are equal (every run's values,
timings left out). The issue's target: the cluster takes no more than 1.3x the local run's wall time.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

from infodropout.train.config import resolve
from infodropout.train.studies import RunSpec, Study, run_study
from infodropout.train.studies.runner import dask_executor


def grid(n: int) -> Study:
    runs = []
    for i in range(n):
        kind = ("information", "binary")[i % 2]
        config = resolve(
            "mnist-mlp",
            overrides=dict(dataset="digits", hidden=[32, 32], epochs=3, batch_size=50, device="cpu",
                           seed=i // 2, dropout=kind),
        )  # fmt: skip
        runs.append(RunSpec(f"{kind}-s{i // 2}", config, {"dropout": kind}))
    return Study("bench-cluster", runs, primary="test_error")


def values(outcome) -> dict:
    return {r["name"]: {k: v for k, v in r["values"].items() if "seconds" not in k} for r in outcome.results}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="where the three studies go (default: a temp dir)")
    parser.add_argument("--runs", type=int, default=8)
    args = parser.parse_args(argv)
    from distributed import LocalCluster

    out = args.out or Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    study = grid(args.runs)
    quiet = dict(log=lambda line: None, show_progress=False, threads=1)
    start = time.perf_counter()
    local = run_study(study, out / "local", jobs=2, **quiet)
    t_local = time.perf_counter() - start
    start = time.perf_counter()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None) as c:
        t_start = time.perf_counter() - start
        warm = time.perf_counter()
        with dask_executor(c.scheduler_address) as executor:
            cluster = run_study(study, out / "cluster", executor=executor, **quiet)
        t_warm = time.perf_counter() - warm
        t_cluster = time.perf_counter() - start
    result = {
        "runs": len(study.runs),
        "local_pool_seconds": t_local,
        "cluster_seconds_with_start": t_cluster,
        "cluster_start_seconds": t_start,
        "cluster_seconds_started": t_warm,
        "ratio_with_start": t_cluster / t_local,
        "ratio_started": t_warm / t_local,
        "equal_results": values(local) == values(cluster),
    }
    print(json.dumps(result, indent=2))
    print(f"target: cluster <= 1.3x local: {'met' if result['ratio_with_start'] <= 1.3 else 'MISSED'} "
          f"(with the cluster's start; {result['ratio_started']:.2f}x on a started cluster)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
