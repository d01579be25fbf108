"""Measurements for the study-runner tests, importable by name (``measures:NAME``) in worker processes."""

import os
from pathlib import Path


def test_error_twice(trainer, run_dir, options):
    """A measurement that reads the trained network: twice the test error, from a fresh evaluation."""
    return {"twice_error": 2 * trainer.evaluate()["test_error"]}


def fail_for(trainer, run_dir, options):
    """Raise for the run named in ``options["fail"]``."""
    if Path(run_dir).name == options["fail"]:
        raise RuntimeError(f"measurement failed on purpose in {Path(run_dir).name}")
    return {}


def die_once(trainer, run_dir, options):
    """End the worker process abruptly the first time this run is measured (as a killed worker would)."""
    marker = Path(options["markers"]) / Path(run_dir).name
    if Path(run_dir).name in options["die"] and not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("died")
        os._exit(3)
    return {}
