"""Predictive uncertainty of a trained classifier from its own noise: predictions averaged over draws of
the noise, the mutual information between prediction and noise (BALD), and the information the
representation carries about each input.

:func:`predictive` measures a network on a data set (one pass per draw of the noise); :func:`calibration`
and :func:`out_of_distribution` turn what it measured into the scores of :mod:`.scores`. The noise is
whatever the network's noisy layers draw when it is on (:func:`~infodropout.guides.sampling`): the learned
log-normal noise of information dropout, the Bernoulli masks of binary dropout (MC dropout, Gal &
Ghahramani 2016), so one road measures both.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from infodropout.models.likelihoods import CategoricalLikelihood

from . import scores
from .context import evaluating
from .information import unit_information
from .sites import to_model

#: Draws of the noise the predictions are averaged over (the issue's T).
SAMPLES = (1, 10, 50)
#: The name of the prediction with the noise off (``z = f(x)``, the median of the noise).
NOISE_OFF = "noise-off"
#: The name of the noise-off prediction at the temperature fitted on the held-out split.
TEMPERATURE = "temperature"


def mc(t: int) -> str:
    """The name of the prediction averaged over ``t`` draws of the noise."""
    return f"mc-{t}"


def check_samples(samples: Sequence[int]) -> tuple[int, ...]:
    """``samples`` as a sorted tuple of distinct integers >= 1 (one-line ``ValueError`` otherwise)."""
    values = tuple(samples)
    if not values or any(isinstance(t, bool) or not isinstance(t, int) or t < 1 for t in values):
        raise ValueError(f"samples={list(values)!r}: expected draws of the noise, integers >= 1")
    return tuple(sorted(set(values)))


@dataclass
class Predictive:
    """What :func:`predictive` measured on ``N`` examples of ``K`` classes, as NumPy arrays.

    :ivar labels: ``(N,)``.
    :ivar log_probs: ``(N, K)`` log-probabilities with the noise off (float64 ``log_softmax`` of the logits).
    :ivar mc: ``{T: (N, K)}`` probabilities averaged over the first ``T`` draws of the noise.
    :ivar bald: ``{T: (N,)}`` the mutual information between prediction and noise from those draws.
    :ivar information: ``{site: (N,)}`` ``KL(q(z_l | x) || p(z_l))`` per example with the noise off upstream
        (:func:`~.information.unit_information` summed over units); empty for a network without latent sites.
    """

    labels: np.ndarray
    log_probs: np.ndarray
    mc: dict[int, np.ndarray]
    bald: dict[int, np.ndarray]
    information: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def samples(self) -> tuple[int, ...]:
        return tuple(sorted(self.mc))

    def probs(self, method: str, temperature: float | None = None) -> np.ndarray:
        """The predictive distribution of ``method`` (:data:`NOISE_OFF`, :data:`TEMPERATURE` with its
        ``temperature``, or ``mc-T``)."""
        if method == NOISE_OFF:
            return np.exp(self.log_probs)
        if method == TEMPERATURE:
            if temperature is None:
                raise ValueError("method 'temperature': give the fitted temperature")
            return scores.tempered(self.log_probs, temperature)
        for t, probs in self.mc.items():
            if method == mc(t):
                return probs
        raise ValueError(f"method={method!r}: expected {NOISE_OFF}, {TEMPERATURE} or one of {[mc(t) for t in self.mc]}")

    def subset(self, index: np.ndarray) -> "Predictive":
        """The same measurements at the examples ``index``."""
        return Predictive(
            self.labels[index],
            self.log_probs[index],
            {t: v[index] for t, v in self.mc.items()},
            {t: v[index] for t, v in self.bald.items()},
            {s: v[index] for s, v in self.information.items()},
        )


def check_classifier(ib, where: str = "ib") -> None:
    """A one-line ``ValueError`` unless ``ib`` is a classifier (a categorical likelihood of labels)."""
    if ib.model.reconstruct or not isinstance(ib.likelihood, CategoricalLikelihood):
        raise ValueError(f"{where}: not a classifier (its task is {type(ib.likelihood).__name__}, not class labels)")


def predictive(ib, batches: Iterable, samples: Sequence[int] = SAMPLES, information: bool = True) -> Predictive:
    r"""
    Measure the classifier ``ib`` on ``batches`` of ``(x, y, ...)``, under :func:`~.context.evaluating`:

        log p_0(y | x)   = log_softmax(head(f(x)))                          (the noise off)
        p_T(y | x)       = 1/T sum_{s <= T} softmax(head(z_s)),  z_s ~ q(z | x)   (one chain of draws)
        BALD_T(x)        = H[p_T(. | x)] - 1/T sum_{s <= T} H[softmax(head(z_s))]

    for every ``T`` of ``samples``, from the first ``T`` of ``max(samples)`` draws (so ``p_1`` is one draw
    and ``p_10`` its first ten), and with ``information`` the KL per example of every latent site. The
    draws come from torch's global generator: seed it for a repeatable measurement.
    """
    check_classifier(ib)
    samples = check_samples(samples)
    parts: dict[str, list] = {"labels": [], "log_probs": []}
    mc_parts: dict[int, list] = {t: [] for t in samples}
    bald_parts: dict[int, list] = {t: [] for t in samples}
    info_parts: dict[str, list] = {}
    with evaluating(ib):
        for x, y, *_ in batches:
            x = to_model(ib, x)
            parts["labels"].append(y.cpu().numpy())
            parts["log_probs"].append(torch.log_softmax(ib.head(ib.representation(x)).double(), -1).cpu().numpy())
            if information:
                for site, kl in unit_information(ib, x).items():
                    info_parts.setdefault(site, []).append(kl.flatten(1).sum(1).double().cpu().numpy())
            total = entropies = 0.0
            for s in range(1, samples[-1] + 1):
                p = torch.softmax(ib.head(ib.representation(x, 1)[0]).double(), -1)  # (B, K), one draw
                total = total + p
                entropies = entropies + scores.entropy(p.cpu().numpy())  # (B,)
                if s in mc_parts:
                    mean = (total / s).cpu().numpy()
                    mc_parts[s].append(mean)
                    bald_parts[s].append(scores.entropy(mean) - entropies / s)
    if not parts["labels"]:
        raise ValueError("batches: no examples to measure")
    cat = np.concatenate
    return Predictive(
        cat(parts["labels"]).astype(np.int64),
        cat(parts["log_probs"]),
        {t: cat(v) for t, v in mc_parts.items()},
        {t: np.maximum(cat(v), 0.0) for t, v in bald_parts.items()},  # >= 0; rounding may dip below
        {s: cat(v) for s, v in info_parts.items()},
    )


def split(n: int, held_out: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A fixed random split of ``n`` examples: ``(held_out_index, evaluation_index)``, sorted, disjoint."""
    if not (isinstance(held_out, int) and 1 <= held_out < n):
        raise ValueError(f"held_out={held_out!r}: expected an integer in [1, {n - 1}] (examples for the temperature)")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[:held_out]), np.sort(order[held_out:])


def calibration(pred: Predictive, held_out: np.ndarray, evaluation: np.ndarray, bins: int = scores.ECE_BINS) -> dict:
    r"""
    The calibration of every prediction of ``pred`` on the examples ``evaluation``, with the temperature
    fitted on the disjoint examples ``held_out`` (:func:`~.scores.fit_temperature` on the noise-off
    log-probabilities: the post-hoc baseline)::

        {method: {"nll", "brier", "ece", "error", "reliability": {...}}, "fitted_temperature": T*}

    ``ece`` and ``error`` are fractions; ``reliability`` holds the bins of :func:`~.scores.reliability`
    as lists.
    """
    if np.intersect1d(held_out, evaluation).size:
        raise ValueError("held_out and evaluation examples overlap: the temperature must be fitted on other examples")
    temperature = scores.fit_temperature(pred.log_probs[held_out], pred.labels[held_out])
    test = pred.subset(evaluation)
    out: dict = {"fitted_temperature": temperature}
    for method in (NOISE_OFF, TEMPERATURE, *(mc(t) for t in test.samples)):
        probs = test.probs(method, temperature)
        bins_of = scores.reliability(probs, test.labels, bins)
        out[method] = {
            "nll": scores.negative_log_likelihood(probs, test.labels),
            "brier": scores.brier_score(probs, test.labels),
            "ece": scores.expected_calibration_error(probs, test.labels, bins),
            "error": scores.error_rate(probs, test.labels),
            "reliability": {k: [None if np.isnan(v) else float(v) for v in a] for k, a in bins_of.items()},
        }
    return out


#: Added to the information of a layer before its log (nats): a layer may carry none.
LOG_INFORMATION_FLOOR = 1e-3


def log_information(pred: Predictive) -> np.ndarray:
    """``log(I_l(x) + 1e-3)`` per example and latent site, ``(N, L)``."""
    return np.log(np.stack(list(pred.information.values()), axis=1) + LOG_INFORMATION_FLOOR)


def ood_scores(pred: Predictive, reference: Predictive | None = None) -> dict[str, np.ndarray]:
    r"""
    The out-of-distribution scores of every example (higher: more likely out of distribution), with
    ``T = max(samples)``::

        entropy-noise-off = H[p_0(. | x)]         entropy-mc-T = H[p_T(. | x)]
        bald-mc-T         = BALD_T(x)             information  = sum_l KL(q(z_l | x) || p(z_l))
        information-typicality = Mahalanobis distance of (log(I_l(x) + 1e-3))_l from the reference's

    The two information scores exist only for a network with latent sites (scores only a network with learned
    noise has); the typicality needs ``reference``, in-distribution examples other than those scored, whose
    per-layer log-information gives the mean and covariance (:func:`~.scores.mahalanobis`).
    """
    t = pred.samples[-1]
    out = {
        "entropy-noise-off": scores.entropy(np.exp(pred.log_probs)),
        f"entropy-{mc(t)}": scores.entropy(pred.mc[t]),
        f"bald-{mc(t)}": pred.bald[t],
    }
    if pred.information:
        out["information"] = np.sum(list(pred.information.values()), axis=0)
        if reference is not None:
            out["information-typicality"] = scores.mahalanobis(log_information(reference), log_information(pred))
    return out


def out_of_distribution(
    inside: Predictive, outside: Mapping[str, Predictive], reference: Predictive | None = None
) -> dict:
    """``{set: {score: {"auroc", "fpr95"}}}``: every score of :func:`ood_scores` detecting each OOD set
    (positives) among the in-distribution examples ``inside`` (negatives); see :func:`~.scores.detection`.
    ``reference``: in-distribution examples apart from ``inside`` that the typicality score is fitted on."""
    in_scores = ood_scores(inside, reference)
    out = {}
    for name, pred in outside.items():
        out_scores = ood_scores(pred, reference)
        out[name] = {score: scores.detection(in_scores[score], out_scores[score]) for score in in_scores}
    return out
