"""Pareto-smoothed importance sampling of log p(x) per image, model comparison, and ArviZ files.

The only module of the project that imports ArviZ (on first use): PSIS (``arviz.psislw``) with its k-hat diagnostic,
and results kept as ArviZ ``InferenceData`` in netCDF.
"""

import math
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

if TYPE_CHECKING:
    import arviz as az

from infodropout.train import files

from .likelihood import as_log_weights, log_mean_exp


def _arviz():
    """ArviZ, imported on first use: it takes seconds to import, and only PSIS and its files need it."""
    with warnings.catch_warnings():
        # arviz 0.2x announces its coming refactor with a FutureWarning at import; nothing to act on here
        warnings.simplefilter("ignore", FutureWarning)
        import arviz

    return arviz


#: k-hat above which the importance-sampling estimate is unreliable (Vehtari et al. 2024).
KHAT_THRESHOLD = 0.7
#: The ArviZ group that holds the results.
GROUP = "sample_stats"
#: The ``kind`` attribute that marks a file written by :func:`save_inference_data`.
FILE_KIND = "infodropout.iw-log-likelihood"


def psis_log_likelihood(log_weights, *, reff: float = 1.0, khat_threshold: float = KHAT_THRESHOLD) -> dict:
    r"""
    Pareto-smoothed importance sampling (Vehtari, Simpson, Gelman, Yao & Gabry 2024, ``arviz.psislw``)
    of ``log p(x)`` per image from log importance weights ``log w_k = log p(x, z_k) - log q(z_k | x)``::

        log p(x) ~= log 1/K sum_k w~_k

    where ``w~`` are the weights with their largest ``min(K/5, 3 sqrt(K/reff))`` replaced by the expected
    order statistics of a generalized Pareto distribution fitted to them (and truncated at the largest
    raw weight). The fitted shape k-hat says how heavy the weights' tail is, i.e. how far the guide is
    from the posterior: below 0.5 the estimate converges fast; above 0.7 (``khat_threshold``) it is not
    reliable, since the weights' variance is practically infinite. With fewer than 21 samples (at
    ``reff=1``) there is no tail of more than 4 to fit: k-hat is ``inf`` and the weights are left as they are.

    :param log_weights: ``(K, N)`` log importance weights, K samples of each of N images.
    :param float reff: relative efficiency of the samples (1 for independent draws from the guide).
    :returns: ``log_likelihood (N,)`` (smoothed), ``raw_log_likelihood (N,)`` (plain log-mean-exp),
        ``khat (N,)``, ``share_khat_above`` (share of images with k-hat > ``khat_threshold``),
        ``khat_threshold``, ``mean`` and ``raw_mean`` (over images), ``num_samples``, ``num_examples``.
    """
    lw = as_log_weights(log_weights)
    if lw.shape[0] < 2:
        raise ValueError(f"log_weights: PSIS needs at least 2 samples per image, got {lw.shape[0]}")
    if not (isinstance(reff, (int, float)) and reff > 0):
        raise ValueError(f"reff={reff!r}: expected a positive number")
    finite = np.isfinite(lw).all(axis=0)
    if not finite.all():
        raise ValueError(f"log_weights: {int((~finite).sum())} image(s) have a zero weight (-inf); PSIS needs finite")
    # a degenerate tail (all weights equal) makes arviz divide 0 by 0: its k-hat is then inf or nan, as reported
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        smoothed, khat = _arviz().psislw(np.ascontiguousarray(lw.T), reff=float(reff), normalize=False)  # (N, K), (N,)
    smoothed_ll = log_mean_exp(np.asarray(smoothed), axis=1)
    khat = np.asarray(khat, dtype=np.float64).reshape(lw.shape[1])
    raw = log_mean_exp(lw, axis=0)
    return {
        "log_likelihood": smoothed_ll,
        "raw_log_likelihood": raw,
        "khat": khat,
        "share_khat_above": float(np.mean(khat > khat_threshold)),
        "khat_threshold": float(khat_threshold),
        "mean": float(smoothed_ll.mean()),
        "raw_mean": float(raw.mean()),
        "num_samples": lw.shape[0],
        "num_examples": lw.shape[1],
    }


def compare_log_likelihoods(log_likelihoods: Mapping) -> dict:
    r"""
    Compare models on the same images by their per-image log-likelihoods ``l_m[i]``, as ``arviz.compare``
    compares ELPDs: against the best model ``b`` (the largest total), with ``d_i = l_m[i] - l_b[i]``::

        diff_total    = sum_i d_i,      se_diff_total = sqrt(N var(d))        (var with ddof 0, as ArviZ)
        diff_mean     = mean_i d_i,     se_diff_mean  = sqrt(var(d) / N)

    The standard errors are those of a sum (or mean) of N independent per-image differences; the
    paired difference is much more precise than either model's own standard error.

    :param log_likelihoods: ``{model: (N,) log p(x_i)}`` or ``{model: result}`` with a
        ``log_likelihood`` entry (e.g. from :func:`psis_log_likelihood`), the same N images for all.
    :returns: ``best`` (name), ``order`` (names, best first), ``num_examples``, and ``models``:
        ``{name: {rank, total, mean, se_total, diff_total, se_diff_total, diff_mean, se_diff_mean}}``.
    """
    if not isinstance(log_likelihoods, Mapping) or len(log_likelihoods) == 0:
        raise ValueError("log_likelihoods: expected a non-empty mapping {model: per-image log-likelihoods}")
    values = {}
    for name, value in log_likelihoods.items():
        array = np.asarray(value["log_likelihood"] if isinstance(value, Mapping) else value, dtype=np.float64)
        if array.ndim != 1 or len(array) == 0:
            raise ValueError(f"log_likelihoods[{name!r}]: expected a 1-d array (N,), got shape {array.shape}")
        if not np.isfinite(array).all():
            raise ValueError(f"log_likelihoods[{name!r}]: contains NaN or infinite values")
        values[str(name)] = array
    sizes = {len(v) for v in values.values()}
    if len(sizes) != 1:
        raise ValueError(f"log_likelihoods: models scored on different numbers of images {sorted(sizes)}")
    n = sizes.pop()
    order = sorted(values, key=lambda m: -values[m].sum())
    best = values[order[0]]
    models = {}
    for rank, name in enumerate(order):
        d = values[name] - best
        models[name] = {
            "rank": rank,
            "total": float(values[name].sum()),
            "mean": float(values[name].mean()),
            "se_total": float(math.sqrt(n * values[name].var())),
            "diff_total": float(d.sum()),
            "se_diff_total": float(math.sqrt(n * d.var())),
            "diff_mean": float(d.mean()),
            "se_diff_mean": float(math.sqrt(d.var() / n)),
        }
    return {"best": order[0], "order": order, "num_examples": n, "models": models}


def likelihood_dataset(
    log_weights, *, reff: float = 1.0, attrs: Mapping | None = None, keep_weights: bool = True
) -> xr.Dataset:
    """The log importance weights and their PSIS results as an xarray ``Dataset`` with named dimensions:
    ``log_weight (chain=1, draw=K, image=N)`` (left out without ``keep_weights``: K x N numbers can be
    large) and per image ``log_likelihood`` (smoothed), ``raw_log_likelihood`` and ``pareto_k``; its
    attributes hold ``attrs`` (strings and numbers, e.g. the model and the representation),
    ``num_samples``, ``reff``, ``khat_threshold`` and ``share_khat_above``."""
    lw = as_log_weights(log_weights)
    result = psis_log_likelihood(lw, reff=reff)
    k, n = lw.shape
    meta = {"kind": FILE_KIND, "num_samples": k, "reff": float(reff)}
    meta.update(khat_threshold=result["khat_threshold"], share_khat_above=result["share_khat_above"])
    for key, value in dict(attrs or {}).items():
        if not isinstance(value, (str, int, float, bool, np.integer, np.floating)):
            raise ValueError(f"attrs[{key!r}]={value!r}: expected a string or a number (netCDF attributes)")
        meta[str(key)] = value.item() if isinstance(value, np.generic) else value
    variables = {
        "log_likelihood": (("image",), result["log_likelihood"]),
        "raw_log_likelihood": (("image",), result["raw_log_likelihood"]),
        "pareto_k": (("image",), result["khat"]),
    }
    coords = {"image": np.arange(n)}
    if keep_weights:
        variables["log_weight"] = (("chain", "draw", "image"), lw[None])
        coords.update(chain=[0], draw=np.arange(k))
    attrs = {key: int(v) if isinstance(v, bool) else v for key, v in meta.items()}
    return xr.Dataset(variables, coords=coords, attrs=attrs)


def to_inference_data(log_weights, *, reff: float = 1.0, attrs: Mapping | None = None) -> "az.InferenceData":
    """:func:`likelihood_dataset` as ArviZ ``InferenceData``, in its group ``sample_stats``."""
    return _arviz().InferenceData(**{GROUP: likelihood_dataset(log_weights, reff=reff, attrs=attrs)})


def save_inference_data(
    log_weights, directory, name: str = "log_likelihood", *, reff: float = 1.0, attrs=None, overwrite: bool = False
) -> Path:
    """Write :func:`to_inference_data` to ``directory/<name>.nc`` (netCDF, atomically) and return the
    path. An existing file is an error unless ``overwrite``."""
    if not name or os.sep in name or name.startswith("."):
        raise ValueError(f"name={name!r}: expected a plain file name without a directory")
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such directory for the InferenceData file")
    path = directory / f"{name}.nc"
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: exists; pass overwrite=True or choose another name")
    tree = xr.DataTree.from_dict({f"/{GROUP}": likelihood_dataset(log_weights, reff=reff, attrs=attrs)})
    return files.atomic_write(path, lambda f: tree.to_netcdf(f, engine="h5netcdf"))


def load_inference_data(path) -> "az.InferenceData":
    """Read a file written by :func:`save_inference_data` (fully loaded; the file is closed)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such InferenceData file")
    try:
        az = _arviz()
        with az.rc_context({"data.load": "eager"}):
            idata = az.from_netcdf(str(path))
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"{path}: not a readable netCDF InferenceData file ({type(err).__name__}: {err})") from err
    if GROUP not in idata.groups() or idata[GROUP].attrs.get("kind") != FILE_KIND:
        raise ValueError(f"{path}: not an importance-weighted log-likelihood file of this project")
    return idata


def read_results(path) -> dict:
    """The results saved at ``path`` as a dict: ``log_weights (K, N)``, ``log_likelihood (N,)``,
    ``raw_log_likelihood (N,)``, ``khat (N,)`` and the attributes (``attrs``)."""
    data = load_inference_data(path)[GROUP]
    return {
        "log_weights": data["log_weight"].values[0],
        "log_likelihood": data["log_likelihood"].values,
        "raw_log_likelihood": data["raw_log_likelihood"].values,
        "khat": data["pareto_k"].values,
        "attrs": dict(data.attrs),
    }
