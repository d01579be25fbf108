"""Run configuration: a typed dataclass, the paper's presets, and resolution from files and flags.

beta is Eq. 2's weight of the KL term *per example*. The authors' code divides the summed KL by
N_train as well, so their beta = 3 on CIFAR-10 (N = 50,000) is ``beta = 3 / 50000 = 6e-5`` here;
each preset states the authors' value it reproduces.
"""

import dataclasses
import hashlib
import importlib
import importlib.util
import json
import math
import numbers
import os
import sys
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, packaged as tomli
    import tomli as tomllib

from infodropout.guides.encoders import LATENTS, MLP_KINDS
from infodropout.guides.layers import ACTIVATIONS, KINDS, GaussianLatent, InformationDropout
from infodropout.models.likelihoods import LIKELIHOODS
from infodropout.models.priors import KL_CONVENTIONS, PRIORS, priors_for
from infodropout.models.zoo import ARCHITECTURES

from .data import DATASETS as ARRAY_DATASETS
from .engine import bf16_emulated
from .errors import one_line, os_reason
from .schedules import SCHEDULES

DATASETS = (*ARRAY_DATASETS, "dsprites")
OPTIMIZERS = ("sgd", "adam", "adamw")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16")
#: The architectures with convolutions (what ``channels_last`` lays out).
CONVOLUTIONAL = ("allcnn32", "allcnn96", "conv-vae")
#: The largest seed: ``pyro.set_rng_seed`` seeds NumPy's global generator too, which takes 32 bits.
MAX_SEED = 2**32 - 1
#: The formats of a ``--config`` file, by suffix.
CONFIG_FORMATS = (".json", ".toml")


class OptionError(ValueError):
    """A bad value of one option (a :class:`TrainConfig` field); the message names it, what it expects and
    the value given.

    :ivar option: the field's name.
    """

    def __init__(self, option: str, message: str):
        super().__init__(message)
        self.option = option


@dataclass
class TrainConfig:
    """Everything that defines a run; saved as ``config.json`` in the run directory."""

    preset: str = "custom"
    dataset: str = "mnist"
    arch: str = "mlp"
    # noise and priors
    dropout: str = "information"
    prior: str | None = None  # None: the paper's default per layer (ReLU: log-uniform, softplus: log-normal)
    kl_convention: str = "exact"  # log-uniform prior: "exact" KL (off units free) or "authors" (every unit charged)
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
    binarize: bool = False  # autoencoders: dynamically binarised training images, a fixed binarised test set
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
    plugins: list[str] = field(default_factory=list)  # modules or .py files imported first (user priors)

    def validate(self, given: Iterable[str] = ()) -> "TrainConfig":
        """Normalise the values in place, then raise :class:`OptionError` (a ``ValueError``: one line,
        naming the field, what it expects and the value given) on a bad one.

        Normalising makes what is saved compare equal to what is loaded: tuples become lists, NumPy
        scalars Python numbers, integers given for float fields floats, a path a string, a plugin file
        an absolute path. Every field is checked against its type (numbers finite), then its range, then
        against :data:`APPLIES`: an option that would change nothing in this configuration is refused,
        saying why. The fields in ``given`` (what a user set: a config file's keys and the flags) are
        refused whatever their value; any other field may hold its neutral value (the default, or its
        preset's value) where it does not apply.
        """
        for f in dataclasses.fields(self):
            setattr(self, f.name, _typed(f.name, getattr(self, f.name), _FIELD_TYPES[f.name]))
        self.plugins = import_plugins(self.plugins)
        _choice("dataset", self.dataset, DATASETS)
        _choice("arch", self.arch, ARCHITECTURES)
        _choice("dropout", self.dropout, MLP_KINDS if self.arch == "mlp" else KINDS)
        if self.prior is not None:
            _choice("prior", self.prior, PRIORS)
        _choice("kl_convention", self.kl_convention, KL_CONVENTIONS)
        _choice("activation", self.activation, ACTIVATIONS)
        _choice("latent", self.latent, LATENTS)
        if self.prior is not None:
            self._check_prior_pairing()
        _choice("likelihood", self.likelihood, LIKELIHOODS)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("device", self.device, DEVICES)
        _choice("precision", self.precision, PRECISIONS)
        self._check_precision_and_layout()
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
        _at_least("seed", self.seed, 0, integer=True)  # seeds are mixed by NumPy's SeedSequence: nonnegative
        if self.seed > MAX_SEED:
            raise OptionError("seed", f"seed={self.seed}: expected an integer in [0, {MAX_SEED}] (2^32 - 1)")
        _at_least("recalibrate_batches", self.recalibrate_batches, 0, integer=True)
        _at_least("eval_samples", self.eval_samples, 0, integer=True)
        _positive("gamma", self.gamma)
        if not self.hidden or any(not (isinstance(h, int) and h > 0) for h in self.hidden):
            raise OptionError("hidden", f"hidden={self.hidden}: expected one or more positive integer widths")
        if not 0 <= self.p < 1:
            raise OptionError("p", f"p={self.p}: expected a drop probability in [0, 1)")
        if not 0 <= self.input_dropout < 1:
            raise OptionError(
                "input_dropout", f"input_dropout={self.input_dropout}: expected a drop probability in [0, 1)"
            )
        for name in ("num_train", "num_test"):
            value = getattr(self, name)
            if value is not None:
                _at_least(name, value, 1, integer=True)
        if any(not (isinstance(m, int) and m > 0) for m in self.milestones):
            raise OptionError("milestones", f"milestones={self.milestones}: expected positive epoch numbers")
        if self.num_train is not None and self.num_train < self.batch_size:
            raise OptionError("num_train", zero_steps_message(self.num_train, self.batch_size))
        if self.binarize and self.arch not in ("vae", "conv-vae"):
            raise OptionError(
                "binarize", f"binarize=True with arch={self.arch!r}: binarised pixels are the targets of autoencoders"
            )
        if self.binarize and self.dataset == "dsprites":
            raise OptionError("binarize", "binarize=True with dataset='dsprites': dSprites images are binary already")
        if self.arch == "vae" and len(self.hidden) != 1:
            raise OptionError(
                "hidden", f"hidden={self.hidden} with arch='vae': the MNIST VAE has one hidden layer (one width)"
            )
        given = set(given)
        if "milestones" in given and any(m >= self.epochs for m in self.milestones):
            raise OptionError(
                "milestones",
                f"milestones={self.milestones} with epochs={self.epochs}: a milestone at or after the last epoch never "
                "takes effect",
            )
        self._check_applies(given)
        return self

    def _check_precision_and_layout(self) -> None:
        """channels_last only for a network with convolutions; bf16 on the CPU only where it has bf16
        arithmetic (the device as ``auto`` resolves it here). A flag that cannot apply is refused, never ignored."""
        if self.channels_last and self.arch not in CONVOLUTIONAL:
            raise OptionError(
                "channels_last",
                f"channels_last=True with arch={self.arch!r}: the network has no convolutions to lay out "
                f"channels-last (it applies to {', '.join(CONVOLUTIONAL)})",
            )
        if self.precision == "bf16" and bf16_emulated(self.device):
            raise OptionError(
                "precision",
                "precision='bf16' on the CPU: this CPU has no bf16 arithmetic (AVX512-BF16 or AMX-BF16 on x86, "
                "BF16 on Arm), so bf16 would be emulated and no faster: use precision='fp32'",
            )

    def _check_applies(self, given: set[str]) -> None:
        """Refuse an option that changes nothing here (see :data:`APPLIES`)."""
        preset = PRESETS.get(self.preset, {})
        for name, rule in APPLIES.items():
            if rule.when(self):
                continue
            value = getattr(self, name)
            neutral = value == _DEFAULTS[name] or (
                name in preset and value == _typed(name, preset[name], _FIELD_TYPES[name])
            )
            if name in given or not neutral:
                raise OptionError(name, f"{name}={value!r}: {rule.why(self)}")

    def _check_prior_pairing(self) -> None:
        """The prior against the kind of latent layer this configuration builds (before any data is loaded)."""
        if self.arch in ("vae", "conv-vae"):
            layer = GaussianLatent.linear(1, 1) if self.latent == "gaussian" else None
            layer = layer or InformationDropout.linear(1, 1, activation="softplus")
            what = f"latent={self.latent!r}"
        elif self.arch == "mlp" and self.dropout == "vib":
            layer, what = GaussianLatent.linear(1, 1), "dropout='vib'"
        elif self.dropout == "information" and self.activation in ACTIVATIONS:
            layer = InformationDropout.linear(1, 1, activation=self.activation)
            what = f"activation={self.activation!r}"
        else:
            return
        accepted = priors_for(layer)
        if self.prior not in accepted:
            why = ""
            if isinstance(layer, InformationDropout) and layer.activation == "relu":
                why = (
                    "; a ReLU unit that is off (z = 0) has an infinite KL against a prior without a point mass at 0: "
                    "use --activation softplus with this prior"
                )
            raise OptionError("prior", f"prior={self.prior!r} with {what}: expected one of {', '.join(accepted)}{why}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict, where: str = "config") -> "TrainConfig":
        if not isinstance(values, dict):
            raise ValueError(f"{where}: expected a table of options, got {type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{where}: unknown option(s) {unknown}; valid options: {sorted(known)}")
        return cls(**values)


#: The type of every field (the dataclass annotations, resolved).
_FIELD_TYPES = typing.get_type_hints(TrainConfig)


def _default(f: dataclasses.Field):
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


#: Every field's default value.
_DEFAULTS = {f.name: _default(f) for f in dataclasses.fields(TrainConfig)}

CLASSIFIERS = ("mlp", "allcnn32", "allcnn96")
AUTOENCODERS = ("vae", "conv-vae")
ALL_CNNS = ("allcnn32", "allcnn96")


@dataclass(frozen=True)
class Applies:
    """Where an option changes what runs.

    :param when: ``config -> bool``: whether the option is used by the run ``config`` describes.
    :param why: ``config -> str``: why it is not, and what to do instead (the rest of a one-line error).
    """

    when: Callable[[TrainConfig], bool]
    why: Callable[[TrainConfig], str]


def _classifier(c: TrainConfig) -> bool:
    return c.arch in CLASSIFIERS


def _has_kl(c: TrainConfig) -> bool:
    """Whether some layer has a KL term (and so a prior, and a beta that weighs it)."""
    return c.arch in AUTOENCODERS or c.dropout in ("information", "vib")


def _information_layers(c: TrainConfig) -> bool:
    return c.dropout == "information" if _classifier(c) else c.latent == "information"


def _off_units(c: TrainConfig) -> bool:
    """Whether some layer has a log-uniform prior on ReLU units (units exactly 0, charged or not by the
    KL convention); softplus units are never 0, and no other prior has a convention."""
    loguniform = c.prior == "log-uniform" or (c.prior is None and c.activation == "relu")
    return _classifier(c) and c.dropout == "information" and c.activation == "relu" and loguniform


def _kind(c: TrainConfig) -> str:
    return f"arch={c.arch!r}" if c.arch in AUTOENCODERS else f"dropout={c.dropout!r}"


def _only(archs) -> Callable[[TrainConfig], str]:
    return lambda c: f"arch={c.arch!r} does not use it (it applies to arch {', '.join(map(repr, archs))})"


#: The one rule for every option: a run uses it (``when``), or a configuration that sets it is refused
#: (:meth:`TrainConfig.validate`), naming it and ``why``. Options absent here apply to every run.
APPLIES: dict[str, Applies] = {
    "dropout": Applies(
        _classifier, lambda c: f"arch={c.arch!r} is an autoencoder: its noise is its latent's (--latent)"
    ),
    "prior": Applies(
        _has_kl, lambda c: f"dropout={c.dropout!r} has no KL term, so no prior: use dropout 'information' or 'vib'"
    ),
    "beta": Applies(_has_kl, lambda c: f"dropout={c.dropout!r} has no KL term for beta to weigh"),
    "beta_warmup_epochs": Applies(_has_kl, lambda c: f"dropout={c.dropout!r} has no KL term for beta to weigh"),
    "kl_convention": Applies(
        _off_units,
        lambda c: (
            f"{_kind(c)} with activation={c.activation!r} and prior={c.prior!r} has no log-uniform prior on "
            "ReLU units: the convention is how that prior charges units that are off"
        ),
    ),
    "activation": Applies(
        _classifier, lambda c: f"arch={c.arch!r}: an autoencoder's activations are fixed (its latent's f is softplus)"
    ),
    "alpha_max": Applies(
        _information_layers,
        lambda c: (
            f"{_kind(c)}{'' if _classifier(c) else f' with latent={c.latent!r}'} has no information-dropout "
            "layer for alpha_max to bound"
        ),
    ),
    "p": Applies(
        lambda c: _classifier(c) and c.dropout in ("binary", "gaussian"),
        lambda c: f"{_kind(c)}: p is the drop probability of binary and Gaussian dropout",
    ),
    "input_dropout": Applies(lambda c: c.arch == "allcnn32", _only(("allcnn32",))),
    "hidden": Applies(lambda c: c.arch in ("mlp", "vae"), _only(("mlp", "vae"))),
    "width": Applies(lambda c: c.arch in ALL_CNNS, _only(ALL_CNNS)),
    "z_dim": Applies(lambda c: c.arch in AUTOENCODERS, _only(AUTOENCODERS)),
    "latent": Applies(lambda c: c.arch in AUTOENCODERS, _only(AUTOENCODERS)),
    "likelihood": Applies(lambda c: c.arch in AUTOENCODERS, _only(AUTOENCODERS)),
    "momentum": Applies(lambda c: c.optimizer == "sgd", lambda c: f"optimizer={c.optimizer!r} has no momentum (sgd)"),
    "nesterov": Applies(lambda c: c.optimizer == "sgd", lambda c: f"optimizer={c.optimizer!r} has no momentum (sgd)"),
    "milestones": Applies(
        lambda c: c.schedule == "step", lambda c: f"schedule={c.schedule!r}: milestones are those of schedule 'step'"
    ),
    "gamma": Applies(
        lambda c: c.schedule == "step", lambda c: f"schedule={c.schedule!r}: gamma is the factor of schedule 'step'"
    ),
    "augment": Applies(
        lambda c: c.dataset != "dsprites",
        lambda c: "dataset='dsprites': its images are rendered at every position already (no crops or flips)",
    ),
    "recalibrate_batches": Applies(
        lambda c: c.arch in ALL_CNNS, lambda c: f"arch={c.arch!r} has no batch norm to recalibrate (allcnn32, allcnn96)"
    ),
    "eval_samples": Applies(
        _classifier, lambda c: f"arch={c.arch!r}: noise-averaged test error is a classifier's (autoencoders: test ELBO)"
    ),
    "cuda_graph": Applies(
        lambda c: c.device != "cpu", lambda c: "device='cpu': CUDA graphs are captured on CUDA devices only"
    ),
    "channels_last": Applies(
        lambda c: c.arch in CONVOLUTIONAL, lambda c: f"arch={c.arch!r} has no convolutions to lay out channels-last"
    ),
    "data_dir": Applies(
        lambda c: c.dataset != "digits", lambda c: "dataset='digits' is bundled with scikit-learn: no files are read"
    ),
}


def zero_steps_message(num_train: int, batch_size: int) -> str:
    """Why a run with fewer training examples than one batch is refused (the short batch is dropped)."""
    return (
        f"num_train={num_train} and batch_size={batch_size}: an epoch would take 0 optimisation steps "
        f"(every batch is full; the last short one is dropped): use --batch-size {num_train} or less, or more examples"
    )


def _describe(tp) -> str:
    """What a field of type ``tp`` expects, in words."""
    args = typing.get_args(tp)
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        inner = [a for a in args if a is not type(None)]
        return " or ".join(_describe(a) for a in inner) + " or null"
    if typing.get_origin(tp) is list:
        return f"a list of {_describe(args[0]).removeprefix('a ').removeprefix('an ')}s"
    return {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}[tp]


def _typed(name: str, value, tp):
    """``value`` as the type ``tp`` of field ``name`` (normalised), else a one-line ``ValueError`` naming
    the field, the type it expects and the value given."""
    converted = _convert(value, tp)
    if converted is _INVALID:
        raise OptionError(name, f"{name}={value!r}: expected {_describe(tp)}, got {type(value).__name__}")
    return converted


_INVALID = object()


def _convert(value, tp):
    """``value`` as type ``tp`` (``X``, ``X | None`` or ``list[X]``), or :data:`_INVALID`."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        if value is None:
            return None
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return _convert(value, inner)
    if typing.get_origin(tp) is list:
        if not isinstance(value, (list, tuple)):
            return _INVALID
        (item,) = typing.get_args(tp)
        items = [_convert(v, item) for v in value]
        return _INVALID if any(v is _INVALID for v in items) else items
    converted = _scalar(value, tp)
    return _INVALID if converted is None else converted


def _scalar(value, tp):
    """``value`` as a ``bool``, ``int``, finite ``float`` or ``str``, or None when it is not one."""
    if tp is bool:
        return bool(value) if isinstance(value, (bool, np.bool_)) else None
    if isinstance(value, (bool, np.bool_)):
        return None  # a boolean is not a number here
    if tp is int:
        return int(value) if isinstance(value, numbers.Integral) else None
    if tp is float:
        ok = isinstance(value, numbers.Real) and math.isfinite(value)
        return float(value) if ok else None
    if tp is str:
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        return value if isinstance(value, str) else None
    raise TypeError(f"unsupported field type {tp!r}")


def _choice(name, value, choices):
    if value not in choices:
        raise OptionError(name, f"{name}={value!r}: expected one of {', '.join(map(str, choices))}")


def _finite_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _at_least(name, value, low, integer=False):
    if integer and (isinstance(value, bool) or not isinstance(value, numbers.Integral) or not value >= low):
        raise OptionError(name, f"{name}={value!r}: expected an integer >= {low}")
    if not _finite_number(value) or not value >= low:
        raise OptionError(name, f"{name}={value!r}: expected a number >= {low}")


def _positive(name, value):
    if not _finite_number(value) or not value > 0:
        raise OptionError(name, f"{name}={value!r}: expected a number > 0")


def import_plugins(plugins: list[str]) -> list[str]:
    """Import each plugin (a module name, or a path to a ``.py`` file) once, so that the priors it
    registers are known; return the list with files as absolute paths (what a run records)."""
    out = []
    for plugin in plugins:
        if plugin.endswith(".py"):
            path = Path(plugin).expanduser().resolve()
            if not path.is_file():
                raise OptionError("plugins", f"plugins: {plugin}: no such file")
            module_name = f"infodropout_plugin_{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
            if module_name not in sys.modules:
                spec = importlib.util.spec_from_file_location(module_name, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[module_name] = module
                try:
                    spec.loader.exec_module(module)
                except Exception as err:  # noqa: BLE001  (the plugin's own error, in one line)
                    del sys.modules[module_name]
                    raise OptionError(
                        "plugins", f"plugins: {path}: importing it failed ({type(err).__name__}: {one_line(err)})"
                    ) from None
            out.append(str(path))
        else:
            try:
                importlib.import_module(plugin)
            except ImportError as err:
                raise OptionError("plugins", f"plugins: {plugin!r}: cannot be imported ({one_line(err)})") from None
            except Exception as err:  # noqa: BLE001  (the plugin's own error, reported as a .py file's is)
                raise OptionError(
                    "plugins", f"plugins: {plugin!r}: importing it failed ({type(err).__name__}: {one_line(err)})"
                ) from None
            out.append(plugin)
    return out


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
    """Options from a ``.json`` or ``.toml`` file (:data:`CONFIG_FORMATS`: a flat table of TrainConfig
    fields); any problem is a one-line ``ValueError`` naming the file."""
    path = Path(path)
    formats = ", ".join(CONFIG_FORMATS)
    if path.suffix not in CONFIG_FORMATS:
        raise ValueError(
            f"config file {path}: unsupported format {path.suffix or '(no suffix)'!r}; supported: {formats}"
        )
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as err:
        raise ValueError(f"config file {path}: cannot be read ({os_reason(err)})") from None
    except UnicodeDecodeError:
        raise ValueError(f"config file {path}: not text (UTF-8); a {path.suffix} file is expected") from None
    try:
        values = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as err:
        raise ValueError(f"config file {path}: not valid {path.suffix.lstrip('.').upper()} ({one_line(err)})") from None
    if not isinstance(values, dict):
        raise ValueError(f"config file {path}: expected a table of options, got {type(values).__name__}")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"config file {path}: unknown option(s) {unknown}; valid options: {sorted(known)}")
    data_dir = values.get("data_dir")
    if isinstance(data_dir, str) and not Path(data_dir).expanduser().is_dir():
        raise ValueError(f"config file {path}: data_dir={data_dir!r}: no such directory")
    return values


def resolve(
    preset: str, file_options: dict | None = None, overrides: dict | None = None, source: str | Path | None = None
) -> TrainConfig:
    """Preset, then a config file's options, then command-line overrides; validated, every option set in
    the file or the overrides counting as given (see :meth:`TrainConfig.validate`). An error in an option
    that came from the file names the file (``source``)."""
    if preset not in PRESETS:
        raise ValueError(f"preset={preset!r}: expected one of {', '.join(PRESETS)}")
    file_options = dict(file_options or {})
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    values = {**PRESETS[preset], "preset": preset, **file_options, **overrides}
    try:
        return TrainConfig.from_dict(values, where=f"preset {preset}").validate(given={*file_options, *overrides})
    except OptionError as err:
        if source is not None and err.option in file_options and err.option not in overrides:
            raise OptionError(err.option, f"config file {source}: {err}") from None
        raise
