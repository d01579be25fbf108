"""How many threads a run's torch uses: a policy that never oversubscribes the cores.

Each run gets the cores this process may use (its CPU affinity) shared among the runs that go at once
(``--jobs``, or torchrun's processes on this machine): ``threads = cores // jobs``, at least 1. On a
machine that is busy already the policy counts the cores the other work takes as the 1-minute load
average rounded to the nearest integer, ``busy = round(load)``, and shares only the cores left free:
``threads = max(1, min(cores // jobs, (cores - busy) // jobs))``. It says so in one line. A thread
count that is asked for (``--threads``, else ``OMP_NUM_THREADS`` in the environment, which torchrun sets
to 1 for several processes) is kept as asked, with a one-line note where it is more than one thread and
oversubscribes the cores left free.

OpenMP threads that wait for work sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE``, set when
:mod:`infodropout.train` is imported, before torch is; see there): a spinning thread takes a core from
other work on a shared machine, and from this run's own serial code.
"""

import contextlib
import math
import os
from dataclasses import dataclass

import torch

from . import WAIT_POLICY_VARIABLE


def available_cores() -> int:
    """The CPUs this process may run on: its affinity mask where the OS has one, else ``os.cpu_count()``."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity masks (macOS, Windows)
        return os.cpu_count() or 1


def load_average() -> float | None:
    """The 1-minute load average (processes running or waiting to run, averaged), or None where the OS has none."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def local_jobs() -> int:
    """The processes of one run on this machine: torchrun's ``LOCAL_WORLD_SIZE``, else 1."""
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


@dataclass(frozen=True)
class ThreadPlan:
    """The torch threads of each of ``jobs`` runs on a machine of ``cores`` cores with load ``load``.

    :param threads: torch intra-op threads per run.
    :param jobs: runs (processes) at once on this machine.
    :param cores: the cores shared among them.
    :param load: the 1-minute load average when the plan was made (None: unknown).
    :param note: one line where the machine is busy or the plan oversubscribes the cores, else None.
    """

    threads: int
    jobs: int
    cores: int
    load: float | None
    note: str | None = None


_UNSET = object()


def environment_threads() -> int | None:
    """``OMP_NUM_THREADS`` where it is set to a positive integer (a thread count asked for), else None."""
    try:
        value = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        return None
    return value if value >= 1 else None


def plan_threads(jobs: int = 1, requested: int | None = None, *, cores: int | None = None, load=_UNSET) -> ThreadPlan:
    """The threads per run for ``jobs`` runs at once (see the module docstring); ``requested`` (``--threads``;
    None: :func:`environment_threads`, if any) is kept as given. ``cores`` and ``load`` default to this
    machine's (:func:`available_cores`, :func:`load_average`)."""
    if not (isinstance(jobs, int) and jobs >= 1):
        raise ValueError(f"jobs={jobs!r}: expected an integer >= 1")
    if requested is not None and not (isinstance(requested, int) and requested >= 1):
        raise ValueError(f"threads={requested!r}: expected an integer >= 1")
    asked = f"--threads {requested}"
    if requested is None and environment_threads() is not None:
        requested = environment_threads()
        asked = f"OMP_NUM_THREADS={requested}"
    cores = available_cores() if cores is None else cores
    load = load_average() if load is _UNSET else load
    idle = max(1, cores // jobs)
    busy = 0 if load is None else min(cores, math.floor(load + 0.5))  # cores the work already running takes
    free = cores - busy
    runs = "the run" if jobs == 1 else f"each of {jobs} runs"
    where = f"1-min load average {load:.2f} on {cores} cores" if load is not None else f"{cores} cores"
    if requested is not None:
        note = None
        if requested > 1 and jobs * requested > free:
            note = (
                f"{asked} for {runs} asks for {jobs * requested} threads on {free} free "
                f"core{'s' if free != 1 else ''} ({where}): kept as asked; the threads will share cores"
            )
        return ThreadPlan(requested, jobs, cores, load, note)
    threads = max(1, min(idle, free // jobs))
    note = None
    if busy and threads < idle:
        note = (
            f"the machine is busy ({where}): {threads} torch thread{'s' if threads > 1 else ''} for {runs} "
            f"instead of {idle}, so that they do not fight the other work for the cores (--threads N to choose)"
        )
    elif busy and jobs * threads > free:
        note = (
            f"the machine is busy ({where}): {runs} keeps 1 torch thread (the fewest) and shares its core with "
            "the other work" + (" (fewer --jobs leave it cores)" if jobs > 1 else "")
        )
    return ThreadPlan(threads, jobs, cores, load, note)


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """torch's intra-op threads set to ``threads`` inside the block and restored after it (None: left alone)."""
    if threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def wait_policy() -> str | None:
    """The OpenMP wait policy in this process's environment (what processes started from it get)."""
    return os.environ.get(WAIT_POLICY_VARIABLE)
