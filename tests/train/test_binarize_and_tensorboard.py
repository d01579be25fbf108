"""Dynamic binarisation of autoencoder targets, and the TensorBoard event files of a run."""

import json

import pytest
import torch

from infodropout.train.config import resolve
from infodropout.train.data import Binarize, binarized
from infodropout.train.report.tensorboard import read_scalars
from infodropout.train.run import Trainer


def test_binarize_draws_each_pixel_with_its_grey_value_as_probability():
    x = torch.linspace(0, 1, 11).repeat(20_000, 1)[:, None, None, :]  # (N, 1, 1, 11)
    g = torch.Generator().manual_seed(0)
    b = Binarize()(x, g)
    assert set(b.unique().tolist()) <= {0.0, 1.0}
    assert torch.allclose(b.mean((0, 1, 2)), x[0, 0, 0], atol=0.015)  # 4 standard errors at p = 1/2
    assert not torch.equal(b, Binarize()(x, g))  # a fresh draw each time


def test_a_fixed_binarisation_is_the_same_for_a_seed_and_keeps_the_grey_level():
    x = torch.full((4000, 1, 2, 2), 51, dtype=torch.uint8)  # grey 0.2
    a, b = binarized(x, seed=3), binarized(x, seed=3)
    assert torch.equal(a, b) and a.dtype == torch.uint8 and set(a.unique().tolist()) <= {0, 255}
    assert (a.float() / 255).mean().item() == pytest.approx(0.2, abs=0.01)
    assert not torch.equal(a, binarized(x, seed=4))


def test_a_binarised_vae_trains_on_fresh_draws_and_tests_on_one_fixed_draw(data_dir):
    config = resolve("mnist-vae", overrides=dict(binarize=True, hidden=[32], z_dim=4, num_train=400, num_test=200,
                                                 epochs=1, device="cpu", data_dir=str(data_dir)))  # fmt: skip
    trainer = Trainer(config, show_progress=False, log=lambda s: None)
    x1, _ = next(iter(trainer.data.train))
    trainer.data.train.set_epoch(1)
    x2, _ = next(iter(trainer.data.train))
    assert set(x1.unique().tolist()) == {0.0, 1.0}
    t1, t2 = next(iter(trainer.data.test))[0], next(iter(trainer.data.test))[0]
    assert set(t1.unique().tolist()) == {0.0, 1.0} and torch.equal(t1, t2)
    assert not torch.equal(x1, x2)


def test_binarize_is_refused_where_it_means_nothing():
    with pytest.raises(ValueError, match="binarize=True with arch='mlp': binarised pixels are the targets"):
        resolve("mnist-mlp", overrides=dict(binarize=True))
    with pytest.raises(ValueError, match="dSprites images are binary already"):
        resolve("dsprites-vae", overrides=dict(binarize=True))


def test_a_run_writes_its_epoch_records_as_tensorboard_scalars(tmp_path):
    config = resolve("mnist-mlp", overrides=dict(dataset="digits", hidden=[8, 8], epochs=2, batch_size=50,
                                                 num_train=300, device="cpu"))  # fmt: skip
    Trainer.start(config, tmp_path / "run", show_progress=False, log=lambda s: None).fit()
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    scalars = read_scalars(tmp_path / "run")
    assert [step for step, _ in scalars["test_error"]] == [1, 2]
    for tag, key in (
        ("test_error", ("test_error",)),
        ("train_loss", ("train_loss",)),
        ("test_kl/z1", ("test_kl", "z1")),
    ):
        expected = []
        for r in records:
            value = r
            for k in key:
                value = value[k]
            expected.append(value)
        assert [v for _, v in scalars[tag]] == pytest.approx(expected, rel=1e-6)
