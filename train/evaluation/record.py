"""One measured record per run: the arrays a run's measurement produced, with named dimensions, in one
netCDF file that metrics and reports read.

The record is an xarray ``DataTree`` (ArviZ's ``az.from_netcdf`` reads it as ``InferenceData``, one group
per group) written once, atomically, to ``RUN_DIR/measurements.nc``. Its groups, where measured:

- ``encoding``: a pool of encoded points, dimensions ``point``, ``unit`` (latent dimensions), ``factor``:
  ``representation``, ``loc``, ``scale``, ``sample``, ``kl`` ``(point, unit)``, ``kl_joint (point)``,
  ``factors (point, factor)``; attributes ``representation`` (its kind), ``site``, ``latent``,
  ``posterior_space``, ``kl_exact``, ``kl_analytic``, ``num_data``, ``seed``;
- ``votes/<factor set>``: the FactorVAE votes of fresh observations, ``(factor, unit)``;
- ``likelihood``: the importance-weighted log-likelihood per ``image``
  (:func:`~infodropout.train.metrics.psis.likelihood_dataset`), the log weights ``(chain, draw, image)``
  where kept;
- ``traversals``, ``images``, ``latent``, ``maps``: what the reports draw (latent traversals, prior
  samples and reconstructions, the KL per latent dimension, information per position).

A run directory measured before the record existed keeps its measurements in the files it wrote then
(``log_likelihood.nc``, ``traversals.npz``, ``likelihood.npz``, ``images.npz``, ``information_maps.npz``);
:func:`read_record` reads those into the same groups.
"""

import io
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import xarray as xr

from infodropout.train import files
from infodropout.train.metrics.psis import GROUP, load_inference_data
from infodropout.train.metrics.registry import MetricInputs

from .encoding import Encoding

#: The record's file in a run directory.
RECORD = "measurements.nc"
#: The ``kind`` attribute of a record.
KIND = "infodropout.measurements"
VERSION = 1


def _attribute(value):
    """A netCDF attribute: booleans as 0/1, NumPy scalars as numbers, None as the empty string."""
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_record(run_dir: Path, groups: Mapping[str, xr.Dataset], attrs: Mapping | None = None) -> Path:
    """Write ``groups`` (``{"encoding": Dataset, "votes/all": Dataset, ...}``) as the run's record, atomically."""
    tree = xr.DataTree.from_dict({f"/{name}": ds for name, ds in groups.items()})
    tree.attrs = {"kind": KIND, "version": VERSION, **{k: _attribute(v) for k, v in dict(attrs or {}).items()}}
    return files.atomic_write(Path(run_dir) / RECORD, lambda f: tree.to_netcdf(f, engine="h5netcdf"))


def read_record(run_dir: Path) -> xr.DataTree | None:
    """The run's record, loaded (the file is closed); a run measured before the record existed is read
    from its older files; None where there is neither. A damaged record is a one-line ``ValueError``."""
    path = Path(run_dir) / RECORD
    if not path.is_file():
        return _legacy(Path(run_dir))
    try:
        with open(path, "rb") as f:
            tree = xr.open_datatree(io.BytesIO(f.read()), engine="h5netcdf").load()
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"{path}: not a readable measurement record ({type(err).__name__}: {err})") from None
    if tree.attrs.get("kind") != KIND:
        raise ValueError(f"{path}: not a measurement record of this project")
    return tree


def group(tree: xr.DataTree | None, name: str) -> xr.Dataset | None:
    """The dataset of group ``name`` (``"votes/all"``), or None where the record has no such group."""
    if tree is None:
        return None
    try:
        return tree[name].to_dataset()
    except KeyError:
        return None


# -- groups ------------------------------------------------------------------------------------------------


def encoding_dataset(
    enc: Encoding, factors: np.ndarray | None = None, factor_names=None, *, num_data: int | None = None, seed: int = 0
) -> xr.Dataset:
    """The ``encoding`` group of an :class:`~.encoding.Encoding` and its points' factor classes ``(N, K)``."""
    dims = ("point", "unit")
    variables = {name: (dims, getattr(enc, name)) for name in ("representation", "loc", "scale", "sample")}
    if enc.kl is not None:
        variables.update(kl=(dims, enc.kl), kl_joint=(("point",), enc.kl_joint))
    for kind, values in enc.readings.items():  # the same points read as other kinds
        variables[reading_variable(kind)] = (dims, values)
    coords = {}
    if factors is not None:
        variables["factors"] = (("point", "factor"), np.asarray(factors))
        coords["factor"] = list(factor_names) if factor_names is not None else np.arange(factors.shape[1])
    attrs = {
        "representation": enc.kind,
        "site": enc.site,
        "latent": enc.latent,
        "posterior_space": enc.space,
        "kl_exact": enc.kl_exact,
        "kl_analytic": enc.kl_analytic,
        "num_data": num_data,
        "seed": seed,
        "readings": ",".join(enc.readings),
    }
    return xr.Dataset(variables, coords=coords, attrs={k: _attribute(v) for k, v in attrs.items()})


def reading_variable(kind: str) -> str:
    """The variable of the ``encoding`` group that holds the points read as ``kind`` (beside its own)."""
    return "reading_" + kind.replace("-", "_")


def votes_dataset(votes: Mapping) -> xr.Dataset:
    """A ``votes/<set>`` group from :func:`~.factors.fresh_votes`."""
    return xr.Dataset(
        {
            "train_votes": (("factor", "unit"), votes["train_votes"]),
            "eval_votes": (("factor", "unit"), votes["eval_votes"]),
            "active_dims": (("unit",), np.asarray(votes["active_dims"], dtype=np.int8)),
            "global_variance": (("unit",), votes["global_variance"]),
        },
        attrs={"num_points": int(votes["num_points"])},
    )


def tc_dataset(result: Mapping) -> xr.Dataset:
    """The ``total_correlation`` group of a :func:`~infodropout.train.metrics.total_correlation` result: its
    numbers and strings as attributes, its per-dimension arrays as variables over ``unit``."""
    variables = {k: (("unit",), np.asarray(v)) for k, v in result.items() if np.ndim(v) == 1}
    attrs = {k: _attribute(v) for k, v in result.items() if np.ndim(v) == 0}
    return xr.Dataset(variables, attrs=attrs)


def traversals_dataset(traversals: Mapping) -> xr.Dataset:
    """The ``traversals`` group from :func:`~.generative.latent_traversals`."""
    return xr.Dataset(
        {
            "images": (("rank", "value", "row", "col"), np.asarray(traversals["images"], dtype=np.float32)),
            "order": (("rank",), np.asarray(traversals["order"])),
            "values": (("rank", "value"), np.asarray(traversals["values"])),
        },
        attrs={"latent": str(traversals["latent"])},
    )


def maps_dataset(images, boxes, labels, maps: Mapping[str, np.ndarray]) -> xr.Dataset:
    """The ``maps`` group: sample images ``(N, C, H, W)``, their boxes ``(N, 4)`` and labels ``(N,)``, and per
    site its information per position ``(N, h, w)`` (dimensions ``<site>_row``, ``<site>_col``)."""
    variables = {
        "images": (("image", "channel", "row", "col"), np.asarray(images)),
        "boxes": (("image", "corner"), np.asarray(boxes)),
        "labels": (("image",), np.asarray(labels)),
    }
    for site, m in maps.items():
        variables[f"map_{site}"] = (("image", f"{site}_row", f"{site}_col"), np.asarray(m))
    return xr.Dataset(variables)


def inputs_from_record(
    tree: xr.DataTree, factor_sets: Mapping[str, list[int]] | None = None, reading: str | None = None
) -> MetricInputs:
    """What the metrics read of a record: the ``encoding`` group's arrays (the representation read as
    ``reading``, one of the kinds it holds; None: its own), the ``likelihood`` group's log weights and the
    ``votes`` groups, as :class:`~infodropout.train.metrics.MetricInputs`."""
    values: dict = {}
    enc = group(tree, "encoding")
    if enc is not None:
        for name in ("representation", "factors", "loc", "scale", "sample", "kl", "kl_joint"):
            if name in enc:
                values[name] = enc[name].values
        if reading is not None and reading != enc.attrs["representation"]:
            if reading_variable(reading) not in enc:
                held = enc.attrs.get("readings") or "no other reading"
                raise ValueError(
                    f"reading={reading!r}: the record's encoding holds {enc.attrs['representation']!r} and {held}"
                )
            values["representation"] = enc[reading_variable(reading)].values
        a = enc.attrs
        values.update(posterior_space=a.get("posterior_space") or None, site=a.get("site") or None)
        values.update(num_data=int(a["num_data"]) if a.get("num_data", "") != "" else None, seed=int(a.get("seed", 0)))
        for key in ("kl_exact", "kl_analytic"):
            if a.get(key, "") != "":
                values[key] = bool(a[key])
    tc = group(tree, "total_correlation")
    if tc is not None:
        values["total_correlation"] = {**tc.attrs, **{k: tc[k].values for k in tc.data_vars}}
    likelihood = group(tree, "likelihood")
    if likelihood is not None and "log_weight" in likelihood:
        values["log_weights"] = likelihood["log_weight"].values[0]
    if factor_sets is not None:
        values["factor_sets"] = dict(factor_sets)
        votes = {name: group(tree, f"votes/{name}") for name in factor_sets}
        if all(v is not None for v in votes.values()) and votes:
            values["votes"] = {
                name: {
                    "train_votes": v["train_votes"].values,
                    "eval_votes": v["eval_votes"].values,
                    "active_dims": v["active_dims"].values.astype(bool),
                    "global_variance": v["global_variance"].values,
                    "num_points": int(v.attrs["num_points"]),
                }
                for name, v in votes.items()
            }
    return MetricInputs(**values)


# -- run directories measured before the record ----------------------------------------------------------------


def _legacy(run_dir: Path) -> xr.DataTree | None:
    """The groups of a run measured before the record, from the files it wrote then (None: none)."""
    groups: dict[str, xr.Dataset] = {}
    if (run_dir / "log_likelihood.nc").is_file():
        groups["likelihood"] = load_inference_data(run_dir / "log_likelihood.nc")[GROUP]
    if (run_dir / "traversals.npz").is_file():
        groups["traversals"] = traversals_dataset(files.read_npz(run_dir / "traversals.npz"))
    if (run_dir / "likelihood.npz").is_file():
        saved = files.read_npz(run_dir / "likelihood.npz")
        renamed = {"log_likelihood": "raw_log_likelihood", "psis_log_likelihood": "log_likelihood", "khat": "pareto_k"}
        per_image = {renamed.get(k, k): (("image",), v) for k, v in saved.items() if k != "kl_per_dim"}
        if "likelihood" not in groups:
            groups["likelihood"] = xr.Dataset(per_image)
        groups["latent"] = xr.Dataset({"kl_per_dim": (("unit",), saved["kl_per_dim"])})
    if (run_dir / "images.npz").is_file():
        saved = files.read_npz(run_dir / "images.npz")
        groups["images"] = xr.Dataset(
            {
                "samples": (("sample", "row", "col"), saved["samples"]),
                "images": (("image", "row", "col"), saved["images"]),
                "reconstructions": (("image", "row", "col"), saved["reconstructions"]),
            }
        )
    if (run_dir / "information_maps.npz").is_file():
        saved = files.read_npz(run_dir / "information_maps.npz")
        maps = {k[len("map_") :]: v for k, v in saved.items() if k.startswith("map_")}
        groups["maps"] = maps_dataset(saved["images"], saved["boxes"], saved["labels"], maps)
    if not groups:
        return None
    tree = xr.DataTree.from_dict({f"/{name}": ds for name, ds in groups.items()})
    tree.attrs = {"kind": KIND, "version": 0, "legacy": 1}
    return tree
