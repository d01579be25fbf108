"""The README's code runs as written."""

import math
import re
from pathlib import Path

import numpy as np
import pyro
import torch

from infodropout.models import unregister_prior

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def _run(block: str) -> dict:
    namespace: dict = {}
    exec(compile(block, str(README), "exec"), namespace)
    return namespace


def test_readme_python_example_runs():
    blocks = _blocks()
    assert len(blocks) == 3, "the README shows the Pyro example, the plug-in prior and the plug-in metric"
    namespace = _run(blocks[0])
    assert set(namespace["info"]) == {"z1", "z2"}
    assert namespace["probs"].shape == (128, 10)


def test_the_plain_pyro_example_trains_twice_in_one_process():
    """Stock SVI takes each model's parameters from Pyro's param store: the second model must get its own."""
    first, second = _run(_blocks()[0]), _run(_blocks()[0])  # the param store is not cleared in between
    store = pyro.get_param_store()
    assert (first["ib"].name, second["ib"].name) == ("ib", "ib_1")
    for ns in (first, second):
        for path, param in ns["ib"].guide.named_parameters():
            assert store[f"{ns['ib'].name}.guide$$${path}"] is param  # what SVI updates is this model's own


def test_the_plugin_prior_example_registers_and_trains_with_a_monte_carlo_kl():
    try:
        namespace = _run(_blocks()[1])
        losses, info = namespace["losses"], namespace["info"]
        assert all(math.isfinite(v) for v in losses) and sum(losses[-5:]) < sum(losses[:5])
        assert set(info) == {"z"} and info["z"].shape == (100,) and torch.isfinite(info["z"]).all()
        assert type(namespace["ib"].model.priors[0]).__name__ == "LogLaplacePrior"
    finally:
        unregister_prior("log-laplace")


def test_the_metric_example_registers_a_metric_that_computes_from_a_representation():
    from infodropout.train.metrics import FAST, METRICS, MetricInputs, unregister_metric

    try:
        namespace = _run(_blocks()[2])
        metric = METRICS["latent-range"]
        codes = np.array([[0.0, 1.0], [2.0, 5.0], [1.0, 3.0]])
        result = metric.evaluate(MetricInputs(representation=codes), FAST)
        assert result == {"range": 3.0} and namespace["latent_range"](codes) == result  # ranges 2 and 4
    finally:
        unregister_metric("latent-range")


def test_readme_states_the_two_commands():
    first_screen = "\n".join(README.read_text().splitlines()[:25])
    assert "make demo" in first_screen and "make test" in first_screen
