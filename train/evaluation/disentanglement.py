"""A trained network on data with known factors (dSprites-like; see :mod:`.factors`): the measured
record the disentanglement metrics read, and the metrics computed from it."""

import time
from collections.abc import Callable

import numpy as np
import torch
import xarray as xr

from infodropout.train import metrics as m
from infodropout.train.metrics.psis import likelihood_dataset

from .encoding import encode, resolve_kind
from .factors import data_generator, factor_sets, fresh_votes, sample_encoded
from .generative import latent_traversals
from .likelihood import log_importance_weights
from .record import encoding_dataset, inputs_from_record, tc_dataset, traversals_dataset, votes_dataset
from .sites import latent_layer

#: The pool of images whose representations the traversals move between (at most).
TRAVERSAL_POOL = 1000


def collect(
    ib,
    data,
    metrics,
    settings: m.MetricSettings,
    *,
    kind: str | None = None,
    site: str | None = None,
    sets: dict[str, list[int]] | None = None,
    factor_vae: str = "pool",
    seed: int | None = None,
    batch_size: int = 256,
    num_data: int | None = None,
    likelihood: bool = False,
    traversals: bool = False,
    also: tuple[str, ...] = (),
    say: Callable[[str], None] | None = None,
) -> tuple[dict[str, xr.Dataset], dict[str, float]]:
    """Measure what ``metrics`` need (and, with ``likelihood`` and ``traversals``, what the reports draw):
    the groups of the run's record (see :mod:`.record`) and the seconds each took.

    One pool of ``settings.pool_size`` points (``num_points`` where no metric is over factors) is sampled
    uniformly with ``seed`` (``settings.seed`` by default), rendered and encoded (with the KL per dimension
    where a metric needs it): the ``encoding`` group, its ``num_data`` the data set's size (``len(data)`` by
    default), its points also read as the other kinds of ``also`` (``reading_<kind>``). With
    ``factor_vae="fresh"`` the FactorVAE votes are drawn on fresh observations per factor
    set of ``sets`` (the ``votes`` groups). Where a metric needs log weights, or with ``likelihood``:
    ``iw_num_images`` images drawn with ``seed + 1`` (``data.sample_indices``; the same images for every
    run of a study) and their log importance weights, ``iw_num_samples`` each drawn with ``seed``: the
    ``likelihood`` group. With ``traversals`` (and the KL per dimension): the latents, by decreasing KL,
    moved over the representations of ``min(1000, num_points)`` images drawn with ``seed + 2``.
    """
    s = settings
    seed = s.seed if seed is None else int(seed)
    names = m.check_metrics(metrics)
    needs = {m.get_metric(n).needs for n in names}
    say = say or (lambda message: None)
    groups: dict[str, xr.Dataset] = {}
    seconds: dict[str, float] = {}
    enc = None
    if needs & {"factors", "representation", "posterior", "kl"}:
        over_factors = any(m.get_metric(n).per_factor_set for n in names)
        pool_size = s.pool_size if over_factors else s.num_points
        say(f"encoding {pool_size} points")
        start = time.perf_counter()
        enc, classes = sample_encoded(
            ib, data, pool_size, kind=kind, site=site, generator=data_generator(data, seed), batch_size=batch_size,
            kl="kl" in needs or traversals, also=also,
        )  # fmt: skip
        num_data = len(data) if num_data is None else int(num_data)
        groups["encoding"] = encoding_dataset(enc, classes, data.factor_names, num_data=num_data, seed=seed)
        seconds["encoding"] = time.perf_counter() - start
    if "total-correlation" in names:
        say(f"the aggregate posterior over {min(s.tc_num_components, len(data))} points")
        start = time.perf_counter()
        groups["total_correlation"] = aggregate_total_correlation(
            ib, data, s, kind=kind, site=site, seed=seed, batch_size=batch_size, num_data=num_data
        )
        seconds["total_correlation"] = time.perf_counter() - start
    if factor_vae == "fresh" and "factor-vae" in names:
        say("drawing fresh FactorVAE votes")
        start = time.perf_counter()
        for name, cols in sets.items():
            votes = fresh_votes(ib, data, s, factors=cols, kind=kind, site=site, seed=seed, batch_size=batch_size)
            groups[f"votes/{name}"] = votes_dataset(votes)
        seconds["votes"] = time.perf_counter() - start
    if likelihood or "log_weights" in needs:
        say(f"log importance weights of {s.iw_num_images} images")
        start = time.perf_counter()
        index = data.sample_indices(s.iw_num_images, data_generator(data, seed + 1))
        log_weights = log_importance_weights(ib, data.render(index), s.iw_num_samples, seed=seed)  # (K, N)
        kind_used = enc.kind if enc is not None else resolve_kind(ib, kind, latent_layer(ib, site)[0])
        attrs = {"representation": kind_used, "images_seed": seed + 1, "num_images": s.iw_num_images}
        groups["likelihood"] = likelihood_dataset(log_weights, attrs=attrs)
        seconds["likelihood"] = time.perf_counter() - start
    if traversals and enc is not None:
        start = time.perf_counter()
        order = np.argsort(-enc.kl[: s.num_points].mean(axis=0), kind="stable")  # latents by decreasing KL
        pool = data.render(data.sample_indices(min(TRAVERSAL_POOL, s.num_points), data_generator(data, seed + 2)))
        groups["traversals"] = traversals_dataset(latent_traversals(ib, pool, [int(d) for d in order]))
        seconds["traversals"] = time.perf_counter() - start
    return groups, seconds


def aggregate_total_correlation(
    ib, data, settings: m.MetricSettings, *, kind=None, site=None, seed: int = 0, batch_size: int = 256, num_data=None
) -> xr.Dataset:
    """The total correlation of the aggregate posterior (:func:`~infodropout.train.metrics.total_correlation`)
    over the posteriors of ``tc_num_components`` points of the data set drawn with ``seed + 3`` (all of it
    where it has no more; uniformly, without replacement), at ``tc_num_samples`` samples: the record's
    ``total_correlation`` group (its numbers as attributes, per-dimension ones as variables over ``unit``)."""
    size = len(data)
    n = min(settings.tc_num_components, size)
    generator = data_generator(data, seed + 3)
    index = torch.arange(size) if n == size else torch.randperm(size, generator=generator, device=generator.device)[:n]
    images = (data.render(index[i : i + batch_size]) for i in range(0, n, batch_size))
    enc = encode(ib, images, kind=kind, site=site, batch_size=batch_size)
    result = m.total_correlation(
        enc.loc, enc.scale, None, size if num_data is None else int(num_data),
        num_samples=settings.tc_num_samples, seed=seed,
    )  # fmt: skip
    return tc_dataset({**result, "posterior_space": enc.space})


def metrics_of(
    tree: xr.DataTree, metrics, settings: m.MetricSettings, sets: dict[str, list[int]], reading: str | None = None
) -> tuple[dict[str, dict], dict[str, float]]:
    """Every metric of ``metrics`` computed from a record (:func:`.record.inputs_from_record`: the points
    read as ``reading``, one the record holds; None: its own), each result (and each factor set's) stamped
    with the representation it measured; and the seconds each took."""
    inputs = inputs_from_record(tree, sets, reading)
    kind = reading or next(
        (tree[g].attrs["representation"] for g in ("encoding", "likelihood") if g in tree.children), None
    )
    results, seconds = {}, {}
    for name in m.check_metrics(metrics):
        metric = m.get_metric(name)
        start = time.perf_counter()
        result = metric.evaluate(inputs, settings)
        for part in result.values() if metric.per_factor_set else (result,):
            part["representation"] = kind  # every result says which representation it measured
        results[name], seconds[name] = result, time.perf_counter() - start
    return results, seconds


def check_sets(factor_names, sets: dict | None) -> dict[str, list[int]]:
    """``sets`` checked against the factors (default :func:`~.factors.factor_sets`)."""
    names = list(factor_names)
    sets = factor_sets(names) if sets is None else {str(k): list(v) for k, v in sets.items()}
    for set_name, cols in sets.items():
        if not cols or any(not 0 <= c < len(names) for c in cols):
            raise ValueError(f"sets[{set_name!r}]={cols}: expected factor indices in 0..{len(names) - 1}")
    return sets


def evaluate(
    ib,
    data,
    *,
    metrics=None,
    settings=None,
    sets: dict[str, list[int]] | None = None,
    factor_vae: str = "pool",
    seed: int | None = None,
    progress: Callable[[str], None] | None = None,
    **options,
) -> dict:
    """Every metric of ``metrics`` (registered names; default
    :data:`~infodropout.train.metrics.DEFAULT_METRICS`) for a trained network on dSprites-like ``data``,
    with ``settings`` (``"full"`` by default, or ``"fast"``): :func:`collect` the record (``options``:
    its ``kind``, ``site``, ``batch_size``, ``num_data``), then :func:`metrics_of` it.

    MIG, active units, the total correlation and the KL per dimension use the pool's first ``num_points``;
    DCI and SAP train on its first ``*_num_train`` points and test on the next ``*_num_test``; the
    FactorVAE score resamples the whole pool (``factor_vae="pool"``) or votes on fresh observations
    (``factor_vae="fresh"``, as disentanglement_lib). Metrics over factors are computed for each factor
    set of ``sets`` (default: ``all`` and ``no-shape``); DCI's trees are fitted once for all factors and
    restricted. ``log-likelihood`` and ``psis`` use ``iw_num_images`` images with ``iw_num_samples``
    importance samples each.

    :returns: ``{"representation": {kind, site, ...}, "settings", "seed", "factor_names", "factor_sets":
        {set: [names]}, "num_points", "metrics": {name: result}, "seconds": {name: s}}`` where a metric
        over factors gives ``{set: result}`` and ``seconds`` holds the encoding's time and each metric's
        (with what only it needed measured). Pass it through :func:`~infodropout.train.metrics.jsonable`
        for JSON. (A study writes the record itself: :func:`collect`, :func:`~.record.write_record`,
        :func:`metrics_of`.)
    """
    s = m.get_settings(settings)
    names = m.check_metrics(metrics if metrics is not None else m.DEFAULT_METRICS)
    if factor_vae not in ("pool", "fresh"):
        raise ValueError(f"factor_vae={factor_vae!r}: expected 'pool' or 'fresh'")
    seed = s.seed if seed is None else int(seed)
    factor_names = list(data.factor_names)
    sets = check_sets(factor_names, sets)
    groups, measured = collect(ib, data, names, s, sets=sets, factor_vae=factor_vae, seed=seed, say=progress, **options)
    tree = xr.DataTree.from_dict({f"/{name}": ds for name, ds in groups.items()})
    results, seconds = metrics_of(tree, names, s, sets)
    weighted = [n for n in names if m.get_metric(n).needs == "log_weights"]
    folded = (("votes", "factor-vae"), ("total_correlation", "total-correlation"))
    for part, metric in (*folded, ("likelihood", weighted[0] if weighted else None)):
        if part in measured and metric in seconds:
            seconds[metric] += measured.pop(part)  # the time of what only that metric needed
    out: dict = {"settings": s.to_dict(), "seed": seed, "factor_names": factor_names}
    out["factor_sets"] = {k: [factor_names[c] for c in v] for k, v in sets.items()}
    if "encoding" in groups:
        a = groups["encoding"].attrs
        out["representation"] = {
            "kind": a["representation"],
            **{k: a[k] for k in ("site", "latent", "posterior_space")},
        }
        out["num_points"] = groups["encoding"].sizes["point"]
    else:
        site_name, _ = latent_layer(ib, options.get("site"))
        out["representation"] = {"kind": resolve_kind(ib, options.get("kind"), site_name), "site": site_name}
    out["metrics"], out["seconds"] = results, {**measured, **seconds}
    return out
