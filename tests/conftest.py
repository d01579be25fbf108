"""Test physics in one place: a clean Pyro parameter store, validation on, fixed seeds, the data dir, and
the threads (OpenMP's idle threads sleep; 2 torch threads where there are 2 cores, whatever else runs: the
numbers a test computes must not depend on the load of the machine)."""

import infodropout.train  # noqa: F401  (first: it sets OMP_WAIT_POLICY before torch starts OpenMP)

# isort: split
import os
from pathlib import Path

import pyro
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _pyro_physics():
    pyro.clear_param_store()
    pyro.enable_validation(True)
    pyro.set_rng_seed(0)
    yield
    pyro.clear_param_store()


#: torch threads of the suite: at most 2 (the tests' tensors are small), fixed, so that a test's floating-point
#: sums (and the numbers recorded from them) are the same on a busy machine and on an idle one
THREADS = max(1, min(2, os.cpu_count() or 1))
torch.set_num_threads(THREADS)


@pytest.fixture(autouse=True)
def _idle_machine(monkeypatch):
    """The thread policy sees an idle machine with as many cores as the suite has threads, and no thread
    count asked for in the environment: what else runs here does not change what a test runs (the policy's
    own tests give it cores and a load)."""
    monkeypatch.setattr("infodropout.train.threads.available_cores", lambda: THREADS)
    monkeypatch.setattr("infodropout.train.threads.load_average", lambda: 0.0)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)


def shared_data_dir() -> Path | None:
    """``$INFODROPOUT_DATA`` if set, else ``../shared/data`` beside the repository, else None."""
    env = os.environ.get("INFODROPOUT_DATA")
    if env:
        return Path(env)
    candidate = REPO.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The directory holding the real data sets; tests that need it skip only where none exists."""
    path = shared_data_dir()
    if path is None:
        pytest.skip("no data directory: set INFODROPOUT_DATA (CI points it at ../shared/data)")
    if not path.is_dir():
        raise FileNotFoundError(f"INFODROPOUT_DATA={path} is not a directory")
    return path
