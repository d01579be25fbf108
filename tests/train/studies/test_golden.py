"""The numbers of the quick studies against those the code gave before the evaluation layer was
redesigned (``golden/quick_studies.json``: every number of every run's ``values`` in ``results.json``,
timings left out; recorded on the same seeds, two torch threads)."""

import json
import math
from pathlib import Path

import pytest

from infodropout.models import unregister_prior
from infodropout.train.cli import main

GOLDEN = Path(__file__).with_name("golden")
PLUGIN = GOLDEN / "log_laplace.py"  # the README's own prior (no KL registered), as a plug-in file


def studies(data_dir) -> dict[str, list[str]]:
    data = ["--data-dir", str(data_dir)]
    return {
        "mnist-sizes": ["reproduce", "mnist-sizes", "--quick", "--device", "cpu", *data],
        "vae": ["reproduce", "vae", "--quick", "--device", "cpu", *data],
        "cluttered": ["reproduce", "cluttered", "--quick", "--device", "cpu", *data],
        "compare-priors": ["compare-priors", "--quick", "--device", "cpu"],
        "compare-priors-plugin": ["compare-priors", "--quick", "--device", "cpu", "--plugin", str(PLUGIN),
                                  "--priors", "log-laplace,factorised", "--betas", "4"],
    }  # fmt: skip


def numbers(values: dict) -> dict:
    return {
        k: v
        for k, v in values.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and "seconds" not in k
    }


@pytest.mark.parametrize("study", ["mnist-sizes", "vae", "cluttered", "compare-priors", "compare-priors-plugin"])
def test_the_quick_studies_give_the_numbers_they_gave_before(study, tmp_path, data_dir):
    golden = json.loads((GOLDEN / "quick_studies.json").read_text())[study]
    out = tmp_path / study
    try:
        assert main([*studies(data_dir)[study], "--out", str(out)]) == 0
    finally:
        if study.endswith("plugin"):
            unregister_prior("log-laplace")
    runs = {r["name"]: numbers(r["values"]) for r in json.loads((out / "results.json").read_text())["runs"]}
    assert set(runs) == set(golden)
    for name, expected in golden.items():
        got = runs[name]
        missing = sorted(set(expected) - set(got))
        assert not missing, f"{study}/{name}: no longer reports {missing}"
        for key, value in expected.items():
            assert math.isclose(got[key], value, rel_tol=1e-5, abs_tol=1e-7), (
                f"{study}/{name}: {key} {got[key]} != {value}"
            )
