"""Study grids on a Dask cluster: a LocalCluster of two worker processes on the loopback address."""

import os
import signal
import threading
import time

import pytest
from distributed import Client, LocalCluster

from infodropout.train.config import resolve
from infodropout.train.studies import RunSpec, Study, run_study
from infodropout.train.studies.runner import dask_executor, scheduler_address


def _study(n=4):
    runs = []
    for seed in range(n // 2):
        for kind in ("information", "binary"):
            config = resolve(
                "mnist-mlp",
                overrides=dict(
                    dataset="digits",
                    hidden=[8, 8],
                    epochs=2,
                    batch_size=50,
                    num_train=600,
                    device="cpu",
                    seed=seed,
                    dropout=kind,
                ),
            )
            runs.append(RunSpec(f"{kind}-s{seed}", config, {"dropout": kind}))
    return Study("toy", runs, primary="test_error")


def _values(outcome):
    return {r["name"]: {k: v for k, v in r["values"].items() if "seconds" not in k} for r in outcome.results}


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        yield cluster


def test_a_study_on_a_local_cluster_equals_the_local_run(tmp_path, cluster):
    study = _study()
    local = run_study(study, tmp_path / "local", threads=1, log=lambda s: None, show_progress=False)
    with dask_executor(cluster.scheduler_address) as executor:
        remote = run_study(
            study, tmp_path / "dask", executor=executor, threads=1, log=lambda s: None, show_progress=False
        )
    assert not remote.failures and _values(remote) == _values(local)
    assert {r["name"] for r in remote.results} == {s.name for s in study.runs}
    # the client left dask's global scheduler alone: xarray (ArviZ's netCDF files) still computes locally
    import dask
    import numpy as np

    from infodropout.train.metrics.psis import save_inference_data

    assert dask.config.get("scheduler", None) != "dask.distributed"
    assert save_inference_data(np.zeros((30, 4)), tmp_path).is_file()


def test_a_worker_killed_mid_study_loses_no_finished_run(tmp_path, cluster):
    study = _study(6)
    local = run_study(study, tmp_path / "local", threads=1, log=lambda s: None, show_progress=False)
    out = tmp_path / "dask"
    stamps = {}

    def kill_one_worker_after_the_first_run_finished():
        with Client(cluster.scheduler_address, set_as_default=False) as client:
            pids = client.run(os.getpid)
            while not stamps:
                for spec in study.runs:
                    done = out / "runs" / spec.name / "result.json"
                    if done.is_file():
                        stamps[spec.name] = done.stat().st_mtime_ns
                        break
                time.sleep(0.05)
            os.kill(next(iter(pids.values())), signal.SIGKILL)

    killer = threading.Thread(target=kill_one_worker_after_the_first_run_finished, daemon=True)
    killer.start()
    with dask_executor(cluster.scheduler_address) as executor:
        remote = run_study(study, out, executor=executor, threads=1, log=lambda s: None, show_progress=False)
    killer.join(timeout=60)
    [(first, stamp)] = stamps.items()
    assert (out / "runs" / first / "result.json").stat().st_mtime_ns == stamp  # never trained again
    assert not remote.failures and _values(remote) == _values(local)


def test_an_unreachable_scheduler_is_a_one_line_error_before_any_run(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"^--scheduler tcp://127.0.0.1:9: cannot reach a Dask scheduler there") as err:
        with dask_executor("tcp://127.0.0.1:9", timeout=1):
            pass
    assert "\n" not in str(err.value)
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "tcp://10.0.0.1:8786")
    assert scheduler_address(None) == "tcp://10.0.0.1:8786"
    assert scheduler_address("tcp://h:1") == "tcp://h:1"
