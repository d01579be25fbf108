"""A measurement killed while it writes (SIGKILL, in the middle of the record's file) leaves nothing that
``--resume`` trusts: the resumed study measures the run again and gives an uninterrupted study's results."""

import json
import os
import signal
import subprocess
import sys

from tests.train.studies.test_golden import numbers

#: A plug-in (imported by the study in its process) that kills that process half-way through writing the
#: run's record, once: the marker file says it has.
KILLER = """
import os, signal
from pathlib import Path
from infodropout.train import files

marker = Path({marker!r})
if not marker.exists():
    real = files.atomic_write

    def atomic_write(path, write):
        if Path(path).name != "measurements.nc":
            return real(path, write)

        def half_then_die(f):
            write(f)
            f.truncate(f.tell() // 2)
            f.flush()
            marker.write_text("killed")
            os.kill(os.getpid(), signal.SIGKILL)

        return real(path, half_then_die)

    files.atomic_write = atomic_write
"""


def _study(out, plugin):
    return [sys.executable, "-m", "infodropout.train", "compare-priors", "--quick", "--device", "cpu",
            "--priors", "factorised", "--betas", "4", "--plugin", str(plugin), "--out", str(out)]  # fmt: skip


def test_a_measurement_killed_while_writing_is_measured_again_on_resume(tmp_path):
    marker, plugin = tmp_path / "killed", tmp_path / "killer.py"
    plugin.write_text(KILLER.format(marker=str(marker)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = subprocess.run(_study(tmp_path / "study", plugin), env=env, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL and marker.exists(), killed.stderr[-2000:]
    run = tmp_path / "study" / "runs" / "factorised-b4-s0"
    assert (run / "checkpoint.pt").is_file() and not (run / "result.json").exists()
    assert not (run / "measurements.nc").exists() and any(p.name.startswith(".measurements.nc.") for p in run.iterdir())

    resumed = subprocess.run([*_study(tmp_path / "study", plugin), "--resume"], env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    whole = subprocess.run(_study(tmp_path / "whole", plugin), env=env, capture_output=True, text=True, timeout=600)
    assert whole.returncode == 0, whole.stderr[-2000:]  # the marker exists now: nothing is killed
    results = [json.loads((tmp_path / s / "results.json").read_text())["runs"] for s in ("study", "whole")]
    assert [numbers(r["values"]) for r in results[0]] == [numbers(r["values"]) for r in results[1]]
