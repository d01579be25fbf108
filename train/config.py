"""Run configuration: a typed dataclass, the paper's presets, and resolution from files and flags.

beta is Eq. 2's weight of the KL term *per example*. The authors' code divides the summed KL by
N_train as well, so their beta = 3 on CIFAR-10 (N = 50,000) is ``beta = 3 / 50000 = 6e-5`` here;
each preset states the authors' value it reproduces.
"""

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import tomllib

from infodropout.guides.encoders import LATENTS
from infodropout.guides.layers import ACTIVATIONS, KINDS
from infodropout.models.likelihoods import LIKELIHOODS
from infodropout.models.priors import PRIORS
from infodropout.models.zoo import ARCHITECTURES

from .data import DATASETS as ARRAY_DATASETS
from .schedules import SCHEDULES

DATASETS = (*ARRAY_DATASETS, "dsprites")
OPTIMIZERS = ("sgd", "adam", "adamw")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16")


@dataclass
class TrainConfig:
    """Everything that defines a run; saved as ``config.json`` in the run directory."""

    preset: str = "custom"
    dataset: str = "mnist"
    arch: str = "mlp"
    # noise and priors
    dropout: str = "information"
    prior: str | None = None  # None: the paper's default per layer (ReLU: log-uniform, softplus: log-normal)
    beta: float = 1e-4  # per example (Eq. 2)
    beta_warmup_epochs: float = 0.0
    activation: str = "relu"
    alpha_max: float = 0.7
    p: float = 0.5  # binary / Gaussian dropout probability
    input_dropout: float = 0.2  # All-CNN-32 input dropout
    # architecture
    hidden: list[int] = field(default_factory=lambda: [1024, 1024, 1024])
    width: float = 1.0
    z_dim: int = 10
    latent: str = "gaussian"
    likelihood: str = "bernoulli"  # autoencoders only
    # optimisation
    epochs: int = 20
    batch_size: int = 100
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 0.0
    schedule: str = "constant"
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    # data
    augment: bool = False
    num_train: int | None = None  # use the first N training examples (quick runs)
    num_test: int | None = None
    data_dir: str | None = None
    # evaluation
    recalibrate_batches: int = 0  # re-estimate batch-norm statistics with the noise off before testing
    eval_samples: int = 0  # also report the error averaged over this many noise samples
    # machinery
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"
    channels_last: bool = False
    cuda_graph: bool = True
    log_every: int = 100  # steps between reads of the device-side accumulators

    def validate(self) -> "TrainConfig":
        """Raise ``ValueError`` (one line, naming the field and the valid values) on a bad value."""
        _choice("dataset", self.dataset, DATASETS)
        _choice("arch", self.arch, ARCHITECTURES)
        _choice("dropout", self.dropout, KINDS)
        if self.prior is not None:
            _choice("prior", self.prior, PRIORS)
        _choice("activation", self.activation, ACTIVATIONS)
        _choice("latent", self.latent, LATENTS)
        _choice("likelihood", self.likelihood, LIKELIHOODS)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("device", self.device, DEVICES)
        _choice("precision", self.precision, PRECISIONS)
        _at_least("beta", self.beta, 0)
        _at_least("beta_warmup_epochs", self.beta_warmup_epochs, 0)
        _at_least("epochs", self.epochs, 1, integer=True)
        _at_least("batch_size", self.batch_size, 1, integer=True)
        _positive("lr", self.lr)
        _positive("width", self.width)
        _positive("alpha_max", self.alpha_max)
        _at_least("z_dim", self.z_dim, 1, integer=True)
        _at_least("weight_decay", self.weight_decay, 0)
        _at_least("momentum", self.momentum, 0)
        _at_least("log_every", self.log_every, 1, integer=True)
        _at_least("recalibrate_batches", self.recalibrate_batches, 0, integer=True)
        _at_least("eval_samples", self.eval_samples, 0, integer=True)
        if not self.hidden or any(not (isinstance(h, int) and h > 0) for h in self.hidden):
            raise ValueError(f"hidden={self.hidden}: expected one or more positive integer widths")
        if not 0 <= self.p < 1:
            raise ValueError(f"p={self.p}: expected a drop probability in [0, 1)")
        if not 0 <= self.input_dropout < 1:
            raise ValueError(f"input_dropout={self.input_dropout}: expected a drop probability in [0, 1)")
        for name in ("num_train", "num_test"):
            value = getattr(self, name)
            if value is not None:
                _at_least(name, value, 1, integer=True)
        if any(not (isinstance(m, int) and m > 0) for m in self.milestones):
            raise ValueError(f"milestones={self.milestones}: expected positive epoch numbers")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict, where: str = "config") -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{where}: unknown option(s) {unknown}; valid options: {sorted(known)}")
        return cls(**values)


def _choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name}={value!r}: expected one of {', '.join(map(str, choices))}")


def _at_least(name, value, low, integer=False):
    if integer and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"{name}={value!r}: expected an integer >= {low}")
    if not isinstance(value, (int, float)) or not value >= low:
        raise ValueError(f"{name}={value!r}: expected a number >= {low}")


def _positive(name, value):
    if not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name}={value!r}: expected a number > 0")


#: The paper's settings, from the authors' code where it exists; anything else is overridable.
PRESETS: dict[str, dict] = {
    # MNIST: three fully-connected layers of variable width, information dropout after each.
    # The authors' generic task defaults: Adam 1e-3, batch 100, lr x0.1 at epochs 40 and 80 of 120.
    # beta = 3 / 60,000 per example, the authors' CIFAR weight carried over.
    "mnist-mlp": dict(
        dataset="mnist",
        arch="mlp",
        hidden=[1024, 1024, 1024],
        beta=3 / 60000,
        epochs=120,
        batch_size=100,
        optimizer="adam",
        lr=1e-3,
        schedule="step",
        milestones=[40, 80],
    ),
    # CIFAR-10, All-CNN-32 with information dropout as the two stride-2 layers (authors' cifar.py):
    # alpha_max 0.7, batch 100, SGD Nesterov 0.9, lr 0.05 x0.1 at 80/120/160 of 200 epochs,
    # weight decay 1e-3, input dropout 0.2, authors' beta = 3, i.e. 3 / 50,000 per example.
    "cifar-allcnn": dict(
        dataset="cifar10",
        arch="allcnn32",
        beta=3 / 50000,
        alpha_max=0.7,
        epochs=200,
        batch_size=100,
        optimizer="sgd",
        lr=0.05,
        momentum=0.9,
        nesterov=True,
        weight_decay=1e-3,
        schedule="step",
        milestones=[80, 120, 160],
        input_dropout=0.2,
        recalibrate_batches=100,
    ),
    # Cluttered MNIST, All-CNN-96 with four information-dropout layers (authors' cluttered.py):
    # alpha_max 1.0, batch 128, SGD Nesterov 0.9, lr 0.01 x0.1 at 30/60 of 80 epochs, no weight decay,
    # authors' beta = 0.5, i.e. 0.5 / 50,000 per example.
    "cluttered-allcnn": dict(
        dataset="cluttered-mnist",
        arch="allcnn96",
        beta=0.5 / 50000,
        alpha_max=1.0,
        epochs=80,
        batch_size=128,
        optimizer="sgd",
        lr=0.01,
        momentum=0.9,
        nesterov=True,
        schedule="step",
        milestones=[30, 60],
        recalibrate_batches=100,
    ),
    # The MNIST VAE of Kingma & Welling as in Pyro's VAE example: 400 hidden softplus units, Gaussian
    # latent (z 50), Bernoulli pixels, Adam 1e-3, beta = 1 (the ELBO). --latent information gives
    # the information-dropout bottleneck with a log-normal prior.
    "mnist-vae": dict(
        dataset="mnist",
        arch="vae",
        hidden=[400],
        z_dim=50,
        latent="gaussian",
        likelihood="bernoulli",
        beta=1.0,
        epochs=100,
        batch_size=128,
        optimizer="adam",
        lr=1e-3,
    ),
    # dSprites, the convolutional beta-VAE architecture, z 10, Bernoulli pixels, Adam 5e-4, batch 64.
    "dsprites-vae": dict(
        dataset="dsprites",
        arch="conv-vae",
        z_dim=10,
        latent="information",
        likelihood="bernoulli",
        beta=1.0,
        epochs=30,
        batch_size=64,
        optimizer="adam",
        lr=5e-4,
        activation="softplus",
    ),
}


def read_config_file(path: str | Path) -> dict:
    """Options from a ``.json`` or ``.toml`` file (a flat table of TrainConfig fields)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ValueError(f"config file {path}: cannot be read ({err.strerror})") from None
    try:
        values = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as err:
        raise ValueError(f"config file {path}: not valid {path.suffix.lstrip('.') or 'JSON'} ({err})") from None
    if not isinstance(values, dict):
        raise ValueError(f"config file {path}: expected a table of options")
    return values


def resolve(preset: str, file_options: dict | None = None, overrides: dict | None = None) -> TrainConfig:
    """Preset, then a config file, then command-line overrides; validated."""
    if preset not in PRESETS:
        raise ValueError(f"preset={preset!r}: expected one of {', '.join(PRESETS)}")
    values = dict(PRESETS[preset], preset=preset)
    values.update(file_options or {})
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return TrainConfig.from_dict(values, where=f"preset {preset}").validate()
