"""Every option either changes what runs or is refused: the table ``APPLIES`` walked over every preset.

For every preset and every option of the table, two valid values of the option are given as a user would
(``resolve`` with overrides). Where the table says the option applies, both are accepted and what runs
differs between them; where it says it does not, both are refused in one line naming the option, and
forcing the values past the check changes nothing that runs. "What runs" is observed by:

- the network: its structure, parameter shapes and the ELBO's parts (NLL and KL per site) on a fixed
  batch with a fixed seed, and the training loss ``nll + beta(step) * KL`` over the first steps (beta's
  warm-up included);
- the optimiser: two steps from fixed gradients;
- the learning-rate schedule: its factor at every epoch.

The options that act elsewhere (data loading, evaluation, CUDA) are checked against the table's verdict
only: :data:`TABLE_ONLY`.
"""

import dataclasses
import functools
import json

import pyro
import pytest
import torch

from infodropout.train.config import APPLIES, PRESETS, OptionError, TrainConfig, resolve
from infodropout.train.elbo import MeanFieldELBO
from infodropout.train.engine import make_optimizer
from infodropout.train.run import RunData, build_model
from infodropout.train.schedules import beta_at, lr_factor

#: Overrides that keep each preset's network small (each applies to its preset).
SMALL = {
    "mnist-mlp": dict(hidden=[8, 8]),
    "cifar-allcnn": dict(width=0.05),
    "cluttered-allcnn": dict(width=0.05),
    "mnist-vae": dict(hidden=[8], z_dim=2),
    "dsprites-vae": dict(z_dim=2),
}
#: The input shape of each data set the presets use.
SHAPES = {"mnist": (1, 28, 28), "cifar10": (3, 32, 32), "cluttered-mnist": (1, 96, 96), "dsprites": (1, 64, 64)}


def _classifier(preset: str) -> bool:
    return PRESETS[preset]["arch"] in ("mlp", "allcnn32", "allcnn96")


#: option -> (value a, value b, overrides that let them differ for a preset: (preset) -> dict)
PROBES = {
    "dropout": ("binary", "gaussian", lambda p: {}),
    "prior": (
        "log-normal",
        "factorised",
        lambda p: {"activation": "softplus"} if _classifier(p) else {"latent": "information"},
    ),
    "beta": (1e-3, 1.0, lambda p: {}),
    "beta_warmup_epochs": (0.0, 2.0, lambda p: {}),
    "kl_convention": ("exact", "authors", lambda p: {}),
    "activation": ("relu", "softplus", lambda p: {}),
    "alpha_max": (0.5, 0.9, lambda p: {}),
    "p": (0.2, 0.6, lambda p: {"dropout": "binary"} if _classifier(p) else {}),
    "input_dropout": (0.1, 0.3, lambda p: {}),
    "hidden": ([8], [12], lambda p: {}),
    "width": (0.05, 0.1, lambda p: {}),
    "z_dim": (2, 3, lambda p: {}),
    "latent": ("gaussian", "information", lambda p: {}),
    "likelihood": ("bernoulli", "gaussian", lambda p: {}),
    "momentum": (0.5, 0.9, lambda p: {}),
    "nesterov": (False, True, lambda p: {}),
    "milestones": ([1], [2], lambda p: {}),
    "gamma": (0.1, 0.5, lambda p: {}),
    "augment": (False, True, lambda p: {}),
    "recalibrate_batches": (0, 5, lambda p: {}),
    "eval_samples": (0, 3, lambda p: {}),
    "cuda_graph": (False, True, lambda p: {}),
    "channels_last": (False, True, lambda p: {}),
    "data_dir": (".", "..", lambda p: {}),
}
#: Options that act on data loading, evaluation or CUDA only: the table's verdict is checked, not an effect.
TABLE_ONLY = {"augment", "recalibrate_batches", "eval_samples", "cuda_graph", "channels_last", "data_dir"}


def test_every_option_of_the_table_has_a_probe():
    assert set(PROBES) == set(APPLIES)


def _fingerprint(config) -> tuple:
    """What runs, as far as the network, the optimiser and the schedules go (see the module docstring)."""
    return _fingerprint_of(json.dumps(config.to_dict(), sort_keys=True))


@functools.cache
def _fingerprint_of(saved: str) -> tuple:
    config = TrainConfig.from_dict(json.loads(saved))  # as it was given: validated or forced past the check
    shape = SHAPES[config.dataset]
    classes = 10 if config.arch in ("mlp", "allcnn32", "allcnn96") else 0  # 0: an autoencoder's reconstruction
    data = RunData(None, None, None, 1000, shape, classes, classes == 0)
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    ib = build_model(config, data)
    x = torch.rand(2, *shape).round()  # (2, C, H, W) binary pixels: every likelihood takes them
    y = torch.tensor([1, 3]) if classes else None
    ib.train()
    pyro.set_rng_seed(1)
    with pyro.validation_enabled(False):  # as training runs it
        terms = MeanFieldELBO().terms(ib.model, ib.guide, x, y)
    network = (repr(ib), tuple((n, tuple(p.shape)) for n, p in ib.named_parameters()))
    elbo = (round(terms.nll.item(), 5), tuple((s, round(v.item(), 5)) for s, v in sorted(terms.kl.items())))
    kl = sum(v.item() for v in terms.kl.values())
    param = torch.nn.Parameter(torch.ones(3))
    optimizer = make_optimizer(config.optimizer, [param], config.lr, config.momentum, config.nesterov, 0.0)
    for _ in range(2):
        param.grad = torch.tensor([1.0, -2.0, 0.5])
        optimizer.step()
    steps = 10  # per epoch
    lr = tuple(
        lr_factor(config.schedule, e * steps, config.epochs * steps, steps, config.milestones, config.gamma)
        for e in range(config.epochs)
    )
    warmup = round(config.beta_warmup_epochs * steps)
    loss = tuple(round(terms.nll.item() + beta_at(s, config.beta, warmup) * kl, 5) for s in range(0, 40, 5))
    return network, elbo, tuple(param.tolist()), lr, loss


def _contexts(preset: str) -> list[dict]:
    """The preset as it is, and with its other kinds of noise (classifiers) or latent (autoencoders)."""
    if not _classifier(preset):
        other = "gaussian" if PRESETS[preset].get("latent") == "information" else "information"
        return [{}, {"latent": other}]
    kinds = ("binary", "vib") if PRESETS[preset]["arch"] == "mlp" else ("binary",)  # 'none' acts as 'binary' here
    return [{}] + [{"dropout": kind} for kind in kinds]


CASES = [(preset, i) for preset in sorted(PRESETS) for i in range(len(_contexts(preset)))]


@pytest.mark.parametrize("option", sorted(APPLIES))
@pytest.mark.parametrize(
    "preset, context", CASES, ids=[f"{p}-{'-'.join(map(str, _contexts(p)[i].values())) or 'as-is'}" for p, i in CASES]
)
def test_an_option_changes_what_runs_or_is_refused_naming_it(preset, context, option):
    a, b, extra = PROBES[option]
    context = _contexts(preset)[context]
    base = {**SMALL[preset], **extra(preset), **context}  # the context wins over a probe's own needs
    base = {k: v for k, v in base.items() if k != option}
    configs = []
    refused = []
    for value in (a, b):
        try:
            configs.append(resolve(preset, overrides={**base, option: value}))
        except OptionError as err:
            refused.append(err)
    assert len(refused) in (0, 2), f"{preset} {option}: one value refused, the other not: {refused}"
    raw = TrainConfig.from_dict({**PRESETS[preset], "preset": preset, **base, option: a})  # not validated
    if refused and APPLIES[option].when(raw):  # it applies, but these values are not valid here
        assert all(err.option == option for err in refused)
        pytest.skip(f"{option} applies to {preset} {context}, with other values than {a!r}, {b!r}")
    if refused:
        for err in refused:
            assert err.option == option and str(err).startswith(f"{option}=") and "\n" not in str(err)
        if option in TABLE_ONLY:
            return
        # the table's claim: forced past the check, the two values run the same
        plain = resolve(preset, overrides=base)
        forced = [dataclasses.replace(plain, **{option: value}) for value in (a, b)]
        assert not APPLIES[option].when(forced[0]) and not APPLIES[option].when(forced[1])
        assert _fingerprint(forced[0]) == _fingerprint(forced[1]), f"{option} is refused on {preset} but acts"
        return
    assert APPLIES[option].when(configs[0]) and APPLIES[option].when(configs[1])
    if option not in TABLE_ONLY:
        assert _fingerprint(configs[0]) != _fingerprint(configs[1]), (
            f"{option} is accepted on {preset} but does nothing"
        )


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(dropout="binary", prior="correlated"), "prior='correlated': dropout='binary' has no KL term"),
        (dict(dropout="gaussian", kl_convention="authors"), "kl_convention='authors': dropout='gaussian'"),
        (dict(latent="information"), "latent='information': arch='mlp' does not use it"),
        (dict(z_dim=3), "z_dim=3: arch='mlp' does not use it"),
        (dict(likelihood="gaussian"), "likelihood='gaussian': arch='mlp' does not use it"),
        (dict(width=0.25), "width=0.25: arch='mlp' does not use it"),
        (dict(latent="gaussian"), "latent='gaussian': arch='mlp'"),  # the default value, but given
    ],
)
def test_the_issues_options_without_effect_are_refused_naming_them(overrides, message):
    with pytest.raises(OptionError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        resolve("mnist-mlp", overrides=overrides)


def test_augment_is_refused_for_dsprites_and_a_neutral_preset_value_is_not():
    with pytest.raises(OptionError, match=r"^augment=True: dataset='dsprites'"):
        resolve("dsprites-vae", overrides=dict(augment=True))
    # dsprites-vae's preset says activation='softplus' (its latent's f): not given, so not refused ...
    assert resolve("dsprites-vae").activation == "softplus"
    # ... but given, it is; and from Python a value that is neither the default nor the preset's
    with pytest.raises(OptionError, match=r"^activation='softplus': arch='conv-vae'"):
        resolve("dsprites-vae", overrides=dict(activation="softplus"))
    config = resolve("dsprites-vae")
    config.p = 0.3
    with pytest.raises(OptionError, match=r"^p=0.3: arch='conv-vae': p is the drop probability"):
        config.validate()
