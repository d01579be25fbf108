"""The thread policy: threads per run never oversubscribe the cores, a busy machine is noticed, OpenMP's idle
threads sleep (``OMP_WAIT_POLICY=PASSIVE``, set before torch starts its OpenMP runtime), and every change of
torch's thread count is undone."""

import json
import os
import re
import subprocess
import sys

import pytest
import torch

import infodropout.train.threads as threads_module
from infodropout.train.cli import main
from infodropout.train.threads import plan_threads, torch_threads


@pytest.mark.parametrize(
    "cores, jobs, load, threads, busy",
    [
        (2, 1, 0.1, 2, False),  # idle: every core
        (2, 2, 0.3, 1, False),  # the cores shared by the jobs
        (8, 3, None, 2, False),  # no load average known: as idle
        (2, 1, 1.2, 1, True),  # one core taken by other work: the one left
        (2, 1, 2.6, 1, True),  # every core taken: still one thread
        (8, 2, 3.4, 2, True),  # 3 of 8 cores taken: 5 left for 2 jobs
        (8, 3, 2.0, 2, False),  # 2 taken, 6 left: 3 jobs of 2 fit, as on an idle machine
        (2, 2, 1.0, 1, True),  # 2 jobs of one thread cannot go lower: said so
    ],
)
def test_the_threads_per_run_share_the_cores_left_free(cores, jobs, load, threads, busy):
    plan = plan_threads(jobs, cores=cores, load=load)
    assert plan.threads == threads
    assert (plan.note is not None) == busy
    if busy:
        assert plan.note.startswith(f"the machine is busy (1-min load average {load:.2f} on {cores} cores)")
        assert "\n" not in plan.note
    free = cores - (0 if load is None else round(load))
    assert jobs * plan.threads <= max(free, jobs)  # never more threads than free cores, unless 1 per job


def test_a_requested_thread_count_is_kept_and_a_note_says_when_it_oversubscribes(monkeypatch):
    fits = plan_threads(1, 1, cores=2, load=0.9)
    assert fits.threads == 1 and fits.note is None
    least = plan_threads(2, 1, cores=2, load=2.0)  # one thread each is the least there is: nothing to say
    assert least.threads == 1 and least.note is None
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # asked for in the environment (torchrun sets it to 1)
    assert plan_threads(1, cores=8, load=0.0).threads == 2
    assert plan_threads(1, cores=2, load=1.0).note.startswith("OMP_NUM_THREADS=2 for the run asks for 2 threads")
    assert plan_threads(1, 3, cores=8, load=0.0).threads == 3  # --threads first
    monkeypatch.setenv("OMP_NUM_THREADS", "many")
    assert plan_threads(1, cores=8, load=0.0).threads == 8
    monkeypatch.delenv("OMP_NUM_THREADS")
    over = plan_threads(2, 2, cores=2, load=0.0)
    assert over.threads == 2
    assert over.note == (
        "--threads 2 for each of 2 runs asks for 4 threads on 2 free cores (1-min load average 0.00 on 2 cores): "
        "kept as asked; the threads will share cores"
    )
    with pytest.raises(ValueError, match="threads=0: expected an integer >= 1"):
        plan_threads(1, 0)
    with pytest.raises(ValueError, match="jobs=0: expected an integer >= 1"):
        plan_threads(0)


def test_torch_threads_are_restored_after_the_block_even_on_an_error():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError), torch_threads(1):
        assert torch.get_num_threads() == 1
        raise RuntimeError
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before


def _python(code: str, **env) -> str:
    environ = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    environ.update(env)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_the_package_sets_the_passive_wait_policy_before_torch_is_imported_and_keeps_a_users():
    code = "import sys, os, infodropout.train; print('torch' in sys.modules, os.environ.get('OMP_WAIT_POLICY'))"
    assert _python(code) == "False PASSIVE"  # nothing imported torch yet: its OpenMP runtime will read it
    assert _python(code, OMP_WAIT_POLICY="active") == "False active"
    # the command line's module imports the package first, before anything imports torch
    assert _python("import os, infodropout.train.cli; print(os.environ['OMP_WAIT_POLICY'])") == "PASSIVE"


_SPIN_COUNT = re.compile(r"GOMP_SPINCOUNT = '(\d+)'")
_REPORT = "import {imports}, torch\ntorch.set_num_threads(2)\ntorch.exp(torch.randn(100_000))"


def _spin_count(imports: str, **env) -> int:
    """How many times torch's OpenMP runtime (libgomp) lets a waiting thread spin before it sleeps, as the
    runtime itself reports what it read from the environment when it started (``OMP_DISPLAY_ENV=verbose``)."""
    ours = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_DISPLAY_ENV")  # a spin count set by hand overrides the policy
    environ = {k: v for k, v in os.environ.items() if k not in ours}
    environ.update(env, OMP_DISPLAY_ENV="verbose")
    code = _REPORT.format(imports=imports)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    found = _SPIN_COUNT.findall(done.stderr)
    assert len(found) == 1, f"the OpenMP runtime's report has no single GOMP_SPINCOUNT: {done.stderr[-2000:]}"
    return int(found[0])


def test_torchs_openmp_runtime_reads_the_passive_wait_policy():
    """The runtime, not only the environment: torch's libgomp started by a process that imported the package
    lets its waiting threads spin 0 times (they sleep at once); torch alone spins them 300,000 times first, and a
    user's ``ACTIVE`` is kept (they spin without end). What spinning costs in CPU time and under load is measured
    by ``benchmarks/bench_threads.py``, not asserted here: it depends on the machine."""
    assert _spin_count("infodropout.train") == 0
    assert _spin_count("sys") > 0  # without the package: libgomp's default, the spinning the policy removes
    assert _spin_count("infodropout.train", OMP_WAIT_POLICY="ACTIVE") > _spin_count("sys")


def test_spawned_study_workers_inherit_the_wait_policy(monkeypatch):
    from infodropout.train.studies.runner import local_executor

    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"  # set when infodropout.train was imported here
    with local_executor(1, "cpu") as pool:
        assert pool.submit(os.getenv, "OMP_WAIT_POLICY").result(timeout=120) == "PASSIVE"


def test_train_uses_the_policy_records_its_threads_and_restores_torchs(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(threads_module, "available_cores", lambda: 2)
    monkeypatch.setattr(threads_module, "load_average", lambda: 1.4)  # one of the two cores is busy
    before = torch.get_num_threads()
    args = ["train", "mnist-mlp", "--dataset", "digits", "--hidden", "8", "--epochs", "1", "--device", "cpu"]
    assert main([*args, "--num-train", "200", "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert err == (
        "infodropout train: the machine is busy (1-min load average 1.40 on 2 cores): 1 torch thread for the run "
        "instead of 2, so that they do not fight the other work for the cores (--threads N to choose)\n"
    )
    assert json.loads((tmp_path / "run" / "config.json").read_text())["threads"] == 1
    assert torch.get_num_threads() == before
    assert main([*args, "--num-train", "200", "--threads", "2", "--out", str(tmp_path / "two")]) == 0
    assert "asks for 2 threads on 1 free core " in capsys.readouterr().err
    assert json.loads((tmp_path / "two" / "config.json").read_text())["threads"] == 2
    assert torch.get_num_threads() == before
