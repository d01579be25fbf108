"""Learning curves: a measurement every K steps leaves training as it is, is kept in the checkpoint, and
survives an interruption and a resume point for point."""

import json

import pytest
import torch

from infodropout.train.config import resolve
from infodropout.train.evaluation import classifier_measures, evaluating
from infodropout.train.run import Interrupted, Trainer


def _config():
    return resolve("mnist-mlp", overrides=dict(dataset="digits", hidden=[16, 16], epochs=2, batch_size=50,
                                               milestones=[1], device="cpu"))  # fmt: skip


def _quiet():
    return dict(show_progress=False, log=lambda s: None)


def _point(trainer) -> dict:
    """A measurement that draws noise (the KL under the guide's noise) and reads the network."""
    with evaluating(trainer.ib) as ib:
        measured = classifier_measures(ib, trainer.data.test)
    return {"test_error": measured["test_error"], "kl_z1": measured["test_kl"]["z1"], "noise": float(torch.rand(()))}


def _without_seconds(curve):
    return [{k: v for k, v in p.items() if k != "seconds"} for p in curve]


def test_a_curve_leaves_training_as_it_is_and_resumes_point_for_point(tmp_path):
    plain = Trainer.start(_config(), tmp_path / "plain", **_quiet())
    plain.fit()
    whole = Trainer.start(_config(), tmp_path / "whole", **_quiet())
    whole.measure_every(7, _point)
    whole.fit()
    for name, tensor in plain.ib.state_dict().items():  # the measurement's draws are set aside
        assert torch.equal(tensor, whole.ib.state_dict()[name]), name
    steps = 2 * whole.steps_per_epoch
    assert [p["step"] for p in whole.curve] == list(range(7, steps + 1, 7))
    assert whole.curve[0]["epoch"] == pytest.approx(7 / whole.steps_per_epoch)
    saved = [json.loads(line) for line in (tmp_path / "whole" / "curve.jsonl").read_text().splitlines()]
    assert _without_seconds(saved) == _without_seconds(whole.curve)

    parts = Trainer.start(_config(), tmp_path / "parts", **_quiet())
    parts.measure_every(7, _point)
    with pytest.raises(Interrupted):
        parts.fit(stop_after_steps=20)
    parts.release()
    resumed = Trainer.from_run_dir(tmp_path / "parts", **_quiet())
    assert [p["step"] for p in resumed.curve] == [7, 14]
    resumed.measure_every(7, _point)
    resumed.fit()
    assert _without_seconds(resumed.curve) == _without_seconds(whole.curve)


def test_a_curve_needs_a_positive_number_of_steps(tmp_path):
    trainer = Trainer.start(_config(), tmp_path / "run", **_quiet())
    with pytest.raises(ValueError, match="every=0: expected a number of steps >= 1"):
        trainer.measure_every(0, _point)
