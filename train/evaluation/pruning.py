"""Pruning a trained fully-connected classifier by the information of its units.

A unit whose information about the input stays near zero over a data set passes nothing the network
needs: removing it gives a smaller deterministic network (the f heads only, the noise off). Here:

- :func:`mean_unit_information`: each unit's KL against the prior, averaged over a data set;
- :func:`fitted_unit_information`: each unit's information against a prior fitted to it (no arbitrary zero);
- :func:`noise_occupancy`: how many units are on, at the noise cap, or off for good (both from one pass:
  :func:`fitted_information_and_noise`);
- :data:`RANKINGS`: the information (either), the norm of the incoming weights (magnitude pruning) and a
  random order, and :func:`keep_masks`, the units each keeps at given counts per layer;
- :func:`masked`: the original network with the pruned units' outputs zeroed (any architecture);
- :class:`PrunedMLP`: the smaller network itself (a fully-connected encoder and a linear head), whose
  logits equal those of the masked original.
"""

import contextlib
from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from infodropout.guides.encoders import MLPEncoder
from infodropout.guides.layers import NoisyLayer
from infodropout.guides.noise import MultiplicativeLogNormal
from infodropout.models.heads import LinearHead

from .context import evaluating
from .information import latent_distributions, unit_information
from .sites import to_model

#: How units are ranked for pruning (the most important kept first).
RANKINGS = ("information", "fitted", "magnitude", "random")
#: The rankings by a measured information (:func:`mean_unit_information`, :func:`fitted_unit_information`).
MEASURED = ("information", "fitted")


def noisy_layers(ib) -> dict[str, NoisyLayer]:
    """The noisy layers of ``ib``'s encoder in the order they run, by name (the site name, or the module path
    for layers without one): the layers whose units can be pruned."""
    return {layer.name or path: layer for path, layer in ib.encoder.named_modules() if isinstance(layer, NoisyLayer)}


def check_mlp(ib, where: str = "ib") -> list[NoisyLayer]:
    """The dense noisy layers of a fully-connected classifier (:class:`~infodropout.guides.encoders.MLPEncoder`
    and :class:`~infodropout.models.heads.LinearHead`), else a one-line ``ValueError``."""
    if not isinstance(ib.encoder, MLPEncoder) or not isinstance(ib.head, LinearHead) or ib.head.in_dims != 1:
        raise ValueError(
            f"{where}: pruning builds smaller fully-connected classifiers (an MLP encoder and a linear head); "
            f"this network is a {type(ib.encoder).__name__} with a {type(ib.head).__name__}"
        )
    layers = list(ib.encoder.layers)
    for layer in layers:
        if not isinstance(layer.f_head, nn.Linear):
            raise ValueError(f"{where}: layer {layer.name!r} has a {type(layer.f_head).__name__} f head, not a Linear")
    return layers


def mean_unit_information(ib, batches: Iterable) -> dict[str, torch.Tensor]:
    r"""
    The information of every unit (channel) of every latent site averaged over the examples of ``batches``
    (``(x, ...)``), with the noise off upstream and the exact KL convention (a ReLU unit that is off carries
    nothing)::

        I_l[u] = 1/N sum_i sum_p KL(q(z_l[u, p] | x_i) || p(z_l[u, p]))        ``{site: (units,)}``, nats

    summed over the positions ``p`` of a convolutional channel (:func:`~.information.unit_information`).
    Measured under :func:`~.context.evaluating`.
    """
    totals: dict[str, torch.Tensor] = {}
    n = 0
    with evaluating(ib):
        for x, *_ in batches:
            x = to_model(ib, x)
            for site, kl in unit_information(ib, x, "exact").items():
                per_unit = kl.flatten(2).sum(2) if kl.dim() > 2 else kl  # (B, units)
                totals[site] = totals.get(site, 0) + per_unit.double().sum(0)
            n += len(x)
    if n == 0:
        raise ValueError("batches: no examples to measure the information of the units on")
    return {site: (total / n).cpu() for site, total in totals.items()}


def _binary_entropy(p: torch.Tensor) -> torch.Tensor:
    return -(torch.xlogy(p, p) + torch.xlogy(1 - p, 1 - p))


#: A unit's noise is "at the cap" where ``alpha(x)`` is at least this share of ``alpha_min + alpha_max``.
AT_CAP = 0.99


def _unit_statistics(ib, batches: Iterable, near: float) -> tuple[dict[str, dict], int]:
    """One pass over ``batches`` (``(x, ...)``; noise off upstream, under :func:`~.context.evaluating`): per
    latent site, per unit (channel; positions pooled as samples), the sums that :func:`fitted_unit_information`
    and :func:`noise_occupancy` are read from, and the number of examples. Where the guide is Gaussian on
    ``log z`` (information dropout: ``m = log f``, ``s = alpha``; a Gaussian latent: ``loc``, ``scale``), among
    the entries where the unit is on (``f > 0``; always, but for ReLU units): ``on``, ``m``, ``m2``, ``s2``,
    ``log_s``; and, for a capped multiplicative noise, ``capped``: the entries on with ``alpha >= near * cap``."""
    sums: dict[str, dict] = {}
    n = 0
    with evaluating(ib):
        for x, *_ in batches:
            n += len(x)
            for site, q in latent_distributions(ib, to_model(ib, x)).items():
                cap = q.max_scale if isinstance(q, MultiplicativeLogNormal) else None
                if cap is not None:
                    on, loc, scale = q.base > 0, torch.log(q.base.clamp_min(torch.finfo(q.base.dtype).tiny)), q.scale
                    capped = (q.scale >= near * cap) & on  # in the guide's own precision
                else:
                    on, loc, scale = torch.ones_like(q.loc, dtype=torch.bool), q.loc, q.scale
                positions = 1 if loc.dim() == 2 else loc[0, 0].numel()
                on, loc, scale = (t.transpose(0, 1).flatten(1).double() for t in (on, loc, scale))  # (units, B*HW)
                acc = sums.setdefault(site, {"positions": positions, "n": 0.0, "cap": cap})
                if cap is not None:
                    acc["capped"] = acc.get("capped", 0) + capped.transpose(0, 1).flatten(1).double().sum(1)
                loc, scale = loc * on, torch.where(on > 0, scale, torch.ones_like(scale))
                for key, value in (("on", on), ("m", loc), ("m2", loc.square()), ("s2", scale.square() * on),
                                   ("log_s", torch.log(scale))):  # fmt: skip
                    acc[key] = acc.get(key, 0) + value.sum(1)
                acc["n"] += on.shape[1]
    return sums, n


def _fitted(sums: Mapping[str, dict]) -> dict[str, torch.Tensor]:
    out = {}
    for site, acc in sums.items():
        count = acc["on"].clamp_min(1)
        variance = (acc["m2"] / count - (acc["m"] / count).square()).clamp_min(0)
        on_info = 0.5 * torch.log(variance + acc["s2"] / count) - acc["log_s"] / count
        p = acc["on"] / acc["n"]
        info = _binary_entropy(p) + p * on_info.clamp_min(0)
        out[site] = (acc["positions"] * torch.where(acc["on"] > 0, info, torch.zeros_like(info))).cpu()
    return out


def _occupancy(sums: Mapping[str, dict]) -> dict[str, dict[str, float | None]]:
    out = {}
    for site, acc in sums.items():
        if acc["cap"] is None:
            continue
        on = float(acc["on"].sum())
        out[site] = {
            "on": on / (acc["n"] * len(acc["on"])),
            "at_cap": float(acc["capped"].sum()) / on if on else None,
            "never_on": float((acc["on"] == 0).double().mean()),
        }
    return out


def fitted_unit_information(ib, batches: Iterable) -> dict[str, torch.Tensor]:
    r"""
    The information of every unit of every latent site against a prior fitted to it, over the examples of
    ``batches`` (noise off upstream). Where the guide is Gaussian (``log z ~ N(m(x), s(x)**2)``, ``m = log f``
    and ``s = alpha`` for information dropout; ``loc`` and ``scale`` for a Gaussian latent), among the inputs
    where the unit is on (``f(x) > 0``; always, but for ReLU units), the Gaussian prior that minimises the mean
    KL is the moment-matched one, ``N(E m, Var m + E s**2)``, and the minimum is::

        I_on[u] = 1/2 log(Var_on[m_u] + E_on[s_u**2]) - E_on[log s_u]
        I[u]    = H_b(p_u) + p_u I_on[u],      p_u = P(f_u(x) > 0),  H_b the binary entropy (nats)

    the tightest such KL bound on ``I(x; z_u)``, plus the information in whether the unit is on. Unlike the
    log-uniform prior's KL it has no arbitrary zero: a unit at the noise cap whose ``f`` varies over the data
    still counts. 0 for a unit that is always off or constant with constant noise. Convolutional channels
    pool their positions as samples and count ``H * W`` positions.
    """
    sums, _ = _unit_statistics(ib, batches, AT_CAP)
    if not sums:
        raise ValueError("batches: no examples (or no latent sites) to measure the information of the units on")
    return _fitted(sums)


def noise_occupancy(ib, batches: Iterable, near: float = AT_CAP) -> dict[str, dict[str, float | None]]:
    """Where the learned noise of every information-dropout site sits over the examples of ``batches``
    (``(x, ...)``; noise off upstream, under :func:`~.context.evaluating`), per site:

    - ``on``: the share of its entries (unit, position, example) that are on, ``f(x) > 0``;
    - ``at_cap``: the share of those whose ``alpha(x)`` is at least ``near`` times the cap ``alpha_min +
      alpha_max``, where the log-uniform prior's KL is 0 by its convention (``None`` where none is on);
    - ``never_on``: the share of its units (channels) that are off for every example and position.

    A network whose units carry little information because they are off can be pruned by it; one whose units
    sit at the cap still passes their signal. Sites without a capped multiplicative noise are left out (``{}``
    for a network with none).
    """
    if not 0 < near <= 1:
        raise ValueError(f"near={near!r}: expected a share of the cap in (0, 1]")
    sums, n = _unit_statistics(ib, batches, near)
    if n == 0:
        raise ValueError("batches: no examples to measure the noise on")
    return _occupancy(sums)


def fitted_information_and_noise(ib, batches: Iterable) -> tuple[dict[str, torch.Tensor], dict[str, dict]]:
    """:func:`fitted_unit_information` and :func:`noise_occupancy` (at :data:`AT_CAP`) from one pass over
    ``batches``."""
    sums, _ = _unit_statistics(ib, batches, AT_CAP)
    if not sums:
        raise ValueError("batches: no examples (or no latent sites) to measure the information of the units on")
    return _fitted(sums), _occupancy(sums)


def incoming_norm(layer: NoisyLayer) -> torch.Tensor:
    """``||W_u||_2`` per unit of the layer's f head: the rows of a Linear weight ``(out, in)``, the filters
    of a Conv2d ``(out, in, kh, kw)`` (the first such module of a Sequential head)."""
    head = layer.f_head
    modules = [head] if isinstance(head, (nn.Linear, nn.Conv2d)) else list(head.modules())
    for module in modules:
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            return module.weight.detach().flatten(1).norm(dim=1).double().cpu()
    raise ValueError(f"layer {layer.name!r}: its f head has no Linear or Conv2d weight")


def unit_scores(ib, ranking: str, information: Mapping[str, torch.Tensor] | None = None, seed: int = 0) -> dict:
    """``{layer: (units,)}`` the score of every unit of every noisy layer under ``ranking`` (higher: kept
    first): a measured information (``information`` or ``fitted``: the values of :func:`mean_unit_information`
    or :func:`fitted_unit_information`, given as ``information``; latent layers only), the norm of its
    incoming weights (``magnitude``), or a random order drawn from ``seed`` (``random``)."""
    layers = noisy_layers(ib)
    if ranking in MEASURED:
        if information is None:
            raise ValueError(f"ranking={ranking!r}: give the units' measured information")
        missing = [name for name in layers if name not in information]
        if missing:
            raise ValueError(
                f"ranking={ranking!r}: layers {missing} carry no information cost (no latent site): "
                "rank them by magnitude or at random"
            )
        return {name: information[name] for name in layers}
    if ranking == "magnitude":
        return {name: incoming_norm(layer) for name, layer in layers.items()}
    if ranking == "random":
        generator = torch.Generator().manual_seed(seed)
        return {name: torch.rand(len(incoming_norm(layer)), generator=generator, dtype=torch.float64)
                for name, layer in layers.items()}  # fmt: skip
    raise ValueError(f"ranking={ranking!r}: expected one of {RANKINGS}")


def keep_masks(scores: Mapping[str, torch.Tensor], counts: Sequence[int]) -> dict[str, torch.Tensor]:
    """The units each layer keeps: its ``counts[l]`` highest-scoring units (ties: the lower index first),
    as boolean masks ``{layer: (units,)}``."""
    if len(counts) != len(scores):
        raise ValueError(f"counts {list(counts)}: expected one count per layer ({len(scores)}: {', '.join(scores)})")
    masks = {}
    for (name, score), count in zip(scores.items(), counts, strict=True):
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= len(score):
            raise ValueError(f"layer {name!r}: keep {count!r} units: expected an integer in [1, {len(score)}]")
        order = sorted(range(len(score)), key=lambda u: (-float(score[u]), u))
        mask = torch.zeros(len(score), dtype=torch.bool)
        mask[order[:count]] = True
        masks[name] = mask
    return masks


def counts_above(information: Mapping[str, torch.Tensor], threshold: float) -> list[int]:
    """Per layer, how many units carry more than ``threshold`` nats on average (at least one)."""
    return [max(1, int((info > threshold).sum())) for info in information.values()]


@contextlib.contextmanager
def masked(ib, masks: Mapping[str, torch.Tensor]):
    """Inside, every noisy layer named in ``masks`` has the outputs of its pruned units (False) set to 0:
    ``z[:, u] = 0`` (every position of a channel). Any architecture; the rest of the network is unchanged."""
    layers = noisy_layers(ib)
    unknown = sorted(set(masks) - set(layers))
    if unknown:
        raise ValueError(f"masks: no noisy layer named {unknown}; the layers are {list(layers)}")
    handles = []
    for name, mask in masks.items():

        def zero(module, args, output, mask=mask):
            shape = (1, -1) + (1,) * (output.dim() - 2)
            return output * mask.to(device=output.device, dtype=output.dtype).reshape(shape)

        handles.append(layers[name].register_forward_hook(zero))
    try:
        yield ib
    finally:
        for handle in handles:
            handle.remove()


_ACTIVATIONS = {"relu": F.relu, "softplus": F.softplus, None: lambda h: h}


class PrunedMLP(nn.Module):
    r"""
    A fully-connected classifier with the noise off, smaller than the network it was cut from::

        h_0 = x.flatten(1);   h_l = act_l(W_l[k_l, k_{l-1}] h_{l-1} + b_l[k_l]);   logits = V[:, k_L] h_L + c

    where ``k_l`` are the units layer ``l`` keeps. Its logits equal the original network's with the pruned
    units' outputs zeroed (:func:`masked`), the noise off. ``mean`` and ``std`` (per channel, or None) are
    the standardisation its inputs need, as the run's loaders apply it (kept for a user of the saved file).
    """

    def __init__(self, widths: Sequence[int], activations: Sequence[str | None], num_classes: int,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None):  # fmt: skip
        super().__init__()
        if len(activations) != len(widths) - 1:
            raise ValueError(f"widths {list(widths)} and activations {list(activations)}: one activation per layer")
        self.widths, self.activations = [int(w) for w in widths], list(activations)
        self.mean, self.std = mean, std
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(self.widths[:-1], self.widths[1:], strict=True))
        self.head = nn.Linear(self.widths[-1], num_classes)

    @classmethod
    def from_network(cls, ib, masks: Mapping[str, torch.Tensor], mean=None, std=None) -> "PrunedMLP":
        """The units ``masks`` keep (``{layer: (units,)}``, every layer of ``ib``'s MLP) cut out of ``ib``."""
        layers = check_mlp(ib)
        names = [layer.name for layer in layers]
        if set(masks) != set(names):
            raise ValueError(f"masks {sorted(masks)}: expected one for every layer {names}")
        keep = [torch.nonzero(masks[name].cpu()).flatten() for name in names]
        widths = [layers[0].f_head.in_features, *(len(k) for k in keep)]
        net = cls(widths, [layer.activation for layer in layers], ib.head.linear.out_features, mean, std)
        inputs = torch.arange(widths[0])
        with torch.no_grad():
            for new, layer, rows in zip(net.layers, layers, keep, strict=True):
                new.weight.copy_(layer.f_head.weight[rows][:, inputs])
                new.bias.copy_(layer.f_head.bias[rows])
                inputs = rows
            net.head.weight.copy_(ib.head.linear.weight[:, inputs])
            net.head.bias.copy_(ib.head.linear.bias)
        return net.to(next(ib.parameters()).device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1)  # (B, D)
        for layer, activation in zip(self.layers, self.activations, strict=True):
            h = _ACTIVATIONS[activation](layer(h))  # (B, width)
        return self.head(h)  # (B, K)

    def to_file(self) -> dict:
        """What :meth:`from_file` reads back (tensors, numbers and strings only: ``torch.load(weights_only=True)``)."""
        return {
            "format": "infodropout-pruned-mlp",
            "widths": self.widths,
            "activations": ["none" if a is None else a for a in self.activations],
            "num_classes": self.head.out_features,
            "mean": None if self.mean is None else [float(v) for v in self.mean],
            "std": None if self.std is None else [float(v) for v in self.std],
            "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
        }

    @classmethod
    def from_file(cls, saved: Mapping) -> "PrunedMLP":
        if not isinstance(saved, Mapping) or saved.get("format") != "infodropout-pruned-mlp":
            raise ValueError("not a pruned network of this project (format 'infodropout-pruned-mlp')")
        activations = [None if a == "none" else a for a in saved["activations"]]
        net = cls(saved["widths"], activations, saved["num_classes"], saved["mean"], saved["std"])
        net.load_state_dict(saved["state_dict"])
        return net

    def extra_repr(self) -> str:
        return f"widths={self.widths}"


@torch.no_grad()
def test_error(forward, batches: Iterable) -> float:
    """``100 * mean[argmax forward(x) != y]`` over ``batches`` of ``(x, y, ...)`` (percent)."""
    wrong = n = 0
    for x, y, *_ in batches:
        wrong += int((forward(x).argmax(-1) != y).sum())
        n += len(y)
    if n == 0:
        raise ValueError("batches: no examples to test on")
    return 100.0 * wrong / n
