"""The thread policy's measurements: the dSprites VAE's step with 1 and 2 torch threads, with OpenMP's idle
threads spinning (libgomp's default) or sleeping (``OMP_WAIT_POLICY=PASSIVE``, the package's default), on an
idle machine and next to ``--busy K`` processes that keep K cores busy (as other jobs on a shared machine do).

Each setting runs in a fresh process (the wait policy is read once, when torch starts its OpenMP runtime), one
at a time; each reports the median milliseconds per step and the CPU seconds its process used per step (a
spinning thread burns CPU time while it waits). Run it on an idle machine:

    python benchmarks/bench_threads.py [--steps 30] [--busy 1] [--out runs/threads.json]
"""

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import time

CHILD = """
import json, resource, statistics, sys, time
import infodropout.train  # sets OMP_WAIT_POLICY=PASSIVE unless the environment has it (SPIN: set to ACTIVE)
import torch
from infodropout.train.bench import _binary_images, build_vae
from infodropout.train.engine import TrainStep, make_optimizer, training_context

threads, steps = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(threads)
cpu = torch.device("cpu")
ib = build_vae("factorised", cpu)
step = TrainStep(ib, make_optimizer("adam", ib.parameters(), 5e-4), 50_000, cpu)
x = _binary_images(64, cpu)
times = []
with training_context(ib):
    for _ in range(3):
        step(x, None)
    start = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(steps):
        t = time.perf_counter()
        step(x, None)
        times.append(1000 * (time.perf_counter() - t))
    stop = resource.getrusage(resource.RUSAGE_SELF)
cpu_s = stop.ru_utime - start.ru_utime + stop.ru_stime - start.ru_stime
print(json.dumps({"median_ms": statistics.median(times), "cpu_seconds_per_step": cpu_s / steps}))
"""

#: Wait policies: the package's default, and libgomp's own (threads spin a while before they sleep).
POLICIES = {"passive": "PASSIVE", "spin": "ACTIVE"}


def _busy_loop() -> None:
    while True:
        pass


def run_setting(threads: int, policy: str, steps: int) -> dict:
    env = {**os.environ, "OMP_WAIT_POLICY": POLICIES[policy]}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(threads), str(steps)], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=30, help="timed steps per setting")
    p.add_argument("--busy", type=int, default=1, help="cores kept busy in the second half (0: idle only)")
    p.add_argument("--out", default=None, help="write the results here as JSON")
    args = p.parse_args(argv)
    results = {"load_average_at_start": os.getloadavg()[0], "settings": []}
    for busy in sorted({0, args.busy}):
        hogs = [multiprocessing.Process(target=_busy_loop, daemon=True) for _ in range(busy)]
        for h in hogs:
            h.start()
        time.sleep(1 if busy else 0)
        try:
            for threads in (1, 2):
                for policy in POLICIES:
                    r = {
                        "busy_cores": busy,
                        "threads": threads,
                        "policy": policy,
                        **run_setting(threads, policy, args.steps),
                    }
                    results["settings"].append(r)
                    print(
                        f"busy cores {busy}  threads {threads}  {policy:>7}: {r['median_ms']:8.1f} ms/step  "
                        f"{r['cpu_seconds_per_step']:.3f} CPU s/step",
                        flush=True,
                    )
        finally:
            for h in hogs:
                h.terminate()
                h.join()
    base = {(r["busy_cores"], r["threads"], r["policy"]): r["median_ms"] for r in results["settings"]}
    for busy in sorted({0, args.busy}):
        for policy in POLICIES:
            one, two = base[busy, 1, policy], base[busy, 2, policy]
            print(f"busy cores {busy}, {policy}: 2 threads take {two / one:.2f}x the time of 1 thread")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
