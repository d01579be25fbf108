"""The prepared GPU script of the priors study runs end to end at a smoke-test size on the CPU."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_gpu_priors_script_benches_sizes_and_runs_the_study(tmp_path):
    out = tmp_path / "gpu"
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_priors.py"), "--out", str(out), "--device", "cpu", "--tiny"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    plan = json.loads((out / "plan.json").read_text())
    assert plan["runs"] == 2 and plan["seconds_per_step"] > 0
    bench = json.loads((out / "bench" / "bench.json").read_text())["models"]["dsprites-vae"]["priors"]
    assert bench["factorised"]["ratio_vs_handwritten"] > 0
    report = (out / "study" / "report.md").read_text()
    assert "## Verdicts" in report and "factorised − correlated, MIG at β 1" in report
