"""Run configurations: every field checked against its type and range, normalised once."""

import json

import numpy as np
import pytest

from infodropout.train.cli import main
from infodropout.train.config import TrainConfig, read_config_file, resolve


@pytest.mark.parametrize(
    "options, message",
    [
        ({"nesterov": "no"}, "nesterov='no': expected true or false, got str"),
        ({"augment": "yes"}, "augment='yes': expected true or false, got str"),
        ({"beta": True}, "beta=True: expected a finite number, got bool"),
        ({"gamma": -5}, "gamma=-5.0: expected a number > 0"),
        ({"hidden": 16}, "hidden=16: expected a list of integers, got int"),
        ({"hidden": [16, "8"]}, "hidden=[16, '8']: expected a list of integers, got list"),
        ({"milestones": 5}, "milestones=5: expected a list of integers, got int"),
        ({"p": "0.5"}, "p='0.5': expected a finite number, got str"),
        ({"input_dropout": None}, "input_dropout=None: expected a finite number, got NoneType"),
        ({"data_dir": 5}, "data_dir=5: expected a string or null, got int"),
        ({"lr": 1e400}, "lr=inf: expected a finite number, got float"),
        ({"beta": float("nan")}, "beta=nan: expected a finite number, got float"),
        ({"epochs": 2.0}, "epochs=2.0: expected an integer, got float"),
        ({"num_train": "100"}, "num_train='100': expected an integer or null, got str"),
        ({"seed": True}, "seed=True: expected an integer, got bool"),
        ({"seed": -1}, "seed=-1: expected an integer >= 0"),
        ({"momentum": -0.5}, "momentum=-0.5: expected a number >= 0"),
        ({"alpha_max": 0}, "alpha_max=0.0: expected a number > 0"),
        ({"prior": 3}, "prior=3: expected a string or null, got int"),
        ({"plugins": "mine.py"}, "plugins='mine.py': expected a list of strings, got str"),
        ({"kl_convention": "tf"}, "kl_convention='tf': expected one of exact, authors"),
    ],
)
def test_config_file_values_of_the_wrong_type_or_range_are_one_line_errors(options, message, tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(options) if "lr" not in options else '{"lr": 1e400}')
    with pytest.raises(ValueError) as err:
        resolve("mnist-mlp", read_config_file(path))
    assert str(err.value) == message


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--beta", "inf"], "beta=inf: expected a finite number, got float"),
        (["--lr", "nan"], "lr=nan: expected a finite number, got float"),
        (["--alpha-max", "inf"], "alpha_max=inf: expected a finite number, got float"),
    ],
)
def test_non_finite_numbers_on_the_command_line_are_refused_before_anything_runs(flags, message, tmp_path, capsys):
    assert main(["train", "mnist-mlp", "--out", str(tmp_path / "r"), *flags]) == 2
    assert capsys.readouterr().err == f"infodropout train: {message}\n"
    assert not (tmp_path / "r").exists()


def test_a_config_file_with_a_wrong_type_fails_on_the_command_line_in_one_line_naming_the_file(tmp_path, capsys):
    config = tmp_path / "c.json"
    config.write_text('{"nesterov": "no"}')
    assert main(["train", "mnist-mlp", "--out", str(tmp_path / "r"), "--config", str(config)]) == 2
    message = f"config file {config}: nesterov='no': expected true or false, got str"
    assert capsys.readouterr().err == f"infodropout train: {message}\n"


def test_validation_normalises_tuples_numpy_scalars_ints_and_paths(tmp_path):
    config = TrainConfig(
        hidden=(16, np.int64(8)),
        milestones=(np.int32(2),),
        beta=np.float32(0.5),
        lr=1,
        optimizer="sgd",
        schedule="step",
        nesterov=np.bool_(False),
        num_train=np.int64(200),
        data_dir=tmp_path,
    ).validate()
    assert config.hidden == [16, 8] and config.milestones == [2]
    assert type(config.beta) is float and config.beta == 0.5 and type(config.lr) is float
    assert config.nesterov is False and type(config.num_train) is int and config.data_dir == str(tmp_path)
    saved = json.loads(json.dumps(config.to_dict()))  # what config.json holds, read back
    assert TrainConfig.from_dict(saved).validate().to_dict() == config.to_dict()


def test_fewer_training_examples_than_one_batch_is_an_error_naming_both():
    with pytest.raises(ValueError) as err:
        resolve("mnist-mlp", overrides=dict(num_train=50, batch_size=100))
    assert str(err.value).startswith("num_train=50 and batch_size=100: an epoch would take 0 optimisation steps")
    assert resolve("mnist-mlp", overrides=dict(num_train=100, batch_size=100)).num_train == 100


@pytest.mark.parametrize("prior", ["log-normal", "factorised", "correlated", "correlated-low-rank"])
def test_a_relu_network_with_a_prior_without_a_point_mass_at_zero_is_refused_naming_the_accepted(prior):
    with pytest.raises(ValueError) as err:
        resolve("mnist-mlp", overrides=dict(prior=prior))
    message = str(err.value)
    assert message.startswith(f"prior={prior!r} with activation='relu': expected one of log-uniform; ")
    assert "--activation softplus" in message and "\n" not in message
    assert resolve("mnist-mlp", overrides=dict(prior=prior, activation="softplus")).prior == prior
    with pytest.raises(ValueError, match="prior='log-uniform' with latent='gaussian': expected one of normal"):
        resolve("mnist-vae", overrides=dict(prior="log-uniform"))


def test_an_unknown_prior_lists_the_registered_ones(tmp_path, capsys):
    assert main(["train", "mnist-mlp", "--out", str(tmp_path / "r"), "--prior", "gamma"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "infodropout train: prior='gamma': expected one of log-uniform, log-normal, factorised, correlated, "
        "correlated-low-rank, normal\n"
    )


def test_a_plugin_that_cannot_be_imported_is_a_one_line_error(tmp_path):
    with pytest.raises(ValueError, match=r"^plugins: .*missing\.py: no such file$"):
        resolve("mnist-mlp", overrides=dict(plugins=[str(tmp_path / "missing.py")]))
    with pytest.raises(ValueError, match=r"^plugins: 'no_such_module_here': cannot be imported"):
        resolve("mnist-mlp", overrides=dict(plugins=["no_such_module_here"]))
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('no')\n")
    with pytest.raises(ValueError, match=r"broken\.py: importing it failed \(RuntimeError: no\)$"):
        resolve("mnist-mlp", overrides=dict(plugins=[str(broken)]))
