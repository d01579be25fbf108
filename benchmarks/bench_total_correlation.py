"""How close :func:`total_correlation` comes to a known total correlation, and what it costs.

    python benchmarks/bench_total_correlation.py [--table gaussian,grid,marginals,cost] [--full]

Four tables, each row one call (seconds are wall time of that call, single-threaded BLAS):

- ``gaussian``: posterior means ``loc_n ~ N(0, A)`` (``A``: unit variances, correlation ``rho^|i-j|``
  between the informative dimensions), scales ``s``: ``wide`` rho 0.9, s 1; ``medium`` rho 0.9, s 0.5;
  ``narrow`` rho 0.9, s 0.1; ``vae`` rho 0.8, s 0.3 on 5 informative dimensions, the rest collapsed
  (mean 0, scale 1). As N_c grows the mixture tends to ``S = N(0, A + diag s^2)``, whose TC is
  ``(sum_d log S_dd - log det S) / 2``. Columns:
  D, case, the encoder's ``I(x; z)`` (closed form), N_c, M, the estimate with its standard error, the
  bounds, the closed form, the relative error, and beta-TCVAE's MSS and MWS on the same samples.
- ``grid``: a finite data set, a factor grid like dSprites' (uniform over every combination of the
  factors' values), encoded as integer combinations of the factors with narrow posteriors (scale
  0.05, the values 1 apart): its aggregate posterior is a set of separated peaks, so its TC is the
  discrete ``sum_d H(z_d) - H(z)``, counted exactly. The estimate uses all N points (``N_c = N``) or a
  random subset.
- ``marginals``: the effect of using ``K`` components for the 1-D marginals (the difference to ``K = N_c``).
- ``cost``: seconds against N_c and M (D = 10, K = 10,000): the joint costs ``M N_c`` exponentials, the
  marginals ``M K D``.

``--full`` adds dSprites' size (737,280 points) to the ``gaussian`` and ``grid`` tables (minutes).
"""

import argparse
import math
import time

import numpy as np
from threadpoolctl import threadpool_limits

from infodropout.train.metrics import total_correlation
from infodropout.train.metrics.total_correlation import CASES, discrete_total_correlation, gaussian_case

DSPRITES = (3, 6, 40, 32, 32)  # shape, scale, orientation, x, y
SMALL_GRID = (3, 6, 10, 8, 8)


def grid_case(dims: int, sizes=SMALL_GRID, scale: float = 0.05, seed: int = 0):
    """``(loc, scale, exact TC)``: every combination of the factors' values, encoded as ``B f`` with a
    random 0/1 matrix ``B (D, F)`` (each latent the sum of one to three factors); the exact TC of the
    mixture of narrow posteriors at these integer points is ``sum_d H(P_d) - H(P)`` of their counts."""
    rng = np.random.default_rng(seed)
    factors = np.stack(np.meshgrid(*[np.arange(n) for n in sizes], indexing="ij"), -1).reshape(-1, len(sizes))
    mixing = np.zeros((dims, len(sizes)), dtype=np.int64)
    for d in range(dims):
        mixing[d, rng.choice(len(sizes), size=1 + d % 3, replace=False)] = 1
    loc = (factors @ mixing.T).astype(np.float64)
    return loc, np.full(loc.shape, scale), discrete_total_correlation(loc)


def timed(loc, scale, **kwargs):
    start = time.perf_counter()
    result = total_correlation(loc, scale, **kwargs)
    return result, time.perf_counter() - start


def gaussian_table(dims_list, cases, components, samples) -> None:
    print("\ngaussian: D case I(x;z) N_c M -> estimate +- se, [lower, upper], closed form, relative error, MSS, MWS, s")
    for dims in dims_list:
        for case in cases:
            for n_c in components:
                loc, scale, tc, info = gaussian_case(dims, case, n_c)
                for m in samples:
                    r, seconds = timed(loc, scale, num_samples=m, seed=1)
                    est = r["total_correlation"]
                    print(
                        f"{dims:3d} {case:7s} {info:5.1f} {n_c:7d} {m:6d}  {est:7.3f} +- {r['standard_error']:.3f}  "
                        f"[{r['total_correlation_lower']:8.2f}, {r['total_correlation_upper']:6.2f}]  {tc:6.3f}  "
                        f"{est / tc - 1:+7.1%}  {r['tc_mss']:6.2f} {r['tc_mws']:6.2f}  {seconds:6.1f}",
                        flush=True,
                    )


def grid_table(dims_list, grids, fractions, samples: int) -> None:
    print("\ngrid: D N N_c M -> estimate +- se, [lower, upper], exact, relative error, MSS, MWS, s")
    for sizes in grids:
        for dims in dims_list:
            loc, scale, tc = grid_case(dims, sizes)
            n = len(loc)
            for fraction in fractions:
                n_c = int(round(fraction * n))
                rows = np.random.default_rng(2).choice(n, size=n_c, replace=False) if n_c < n else slice(None)
                r, seconds = timed(loc[rows], scale[rows], num_data=n, num_samples=samples, seed=1)
                est = r["total_correlation"]
                print(
                    f"{dims:3d} {n:7d} {n_c:7d} {r['num_samples']:6d}  {est:7.3f} +- {r['standard_error']:.3f}  "
                    f"[{r['total_correlation_lower']:8.2f}, {r['total_correlation_upper']:6.2f}]  {tc:7.3f}  "
                    f"{est / tc - 1:+7.1%}  {r['tc_mss']:6.2f} {r['tc_mws']:6.2f}  {seconds:6.1f}",
                    flush=True,
                )


def marginals_table(samples: int) -> None:
    print("\nmarginals: case D N_c K -> estimate, minus the estimate with K = N_c, s")
    cases = [
        ("gaussian narrow", 10, lambda: gaussian_case(10, "narrow", 30_000)[:2]),
        ("gaussian vae", 20, lambda: gaussian_case(20, "vae", 30_000)[:2]),
        ("grid", 10, lambda: grid_case(10)[:2]),
        ("grid", 20, lambda: grid_case(20)[:2]),
    ]
    for name, dims, make in cases:
        loc, scale = make()
        exact, seconds = timed(loc, scale, num_samples=samples, num_marginal_components=None, seed=1)
        print(
            f"{name:16s} {dims:3d} {len(loc):7d}     all  {exact['total_correlation']:8.4f}  {0:+8.4f}  {seconds:6.1f}"
        )
        for k in (300, 1_000, 3_000, 10_000):
            r, seconds = timed(loc, scale, num_samples=samples, num_marginal_components=k, seed=1)
            est = r["total_correlation"]
            diff = est - exact["total_correlation"]
            print(f"{name:16s} {dims:3d} {len(loc):7d} {k:7d}  {est:8.4f}  {diff:+8.4f}  {seconds:6.1f}")


def cost_table(full: bool) -> None:
    print("\ncost: D N_c M K -> seconds, nanoseconds per M (N_c + K D)")
    components = (10_000, 100_000) + ((737_280,) if full else ())
    for n_c in components:
        loc, scale, _, _ = gaussian_case(10, "medium", n_c)
        for m in (1_000, 10_000):
            _, seconds = timed(loc, scale, num_samples=m, seed=1)
            k = min(n_c, 10_000)
            per_exp = seconds / (m * (n_c + k * 10)) * 1e9
            print(f" 10 {n_c:7d} {m:6d} {k:6d}  {seconds:7.1f}  {per_exp:6.2f}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", default="gaussian,grid,marginals,cost", help="tables to print, comma-separated")
    parser.add_argument("--dims", default="3,10,20")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--components", default="1000,10000,100000", help="N_c of the gaussian table")
    parser.add_argument("--samples", default="1000,10000", help="M of the gaussian table")
    parser.add_argument("--full", action="store_true", help="add dSprites' size, 737,280 points")
    args = parser.parse_args(argv)
    tables = set(args.table.split(","))
    dims_list = [int(d) for d in args.dims.split(",")]
    components = [int(n) for n in args.components.split(",")] + ([737_280] if args.full else [])
    samples = [int(m) for m in args.samples.split(",")]
    with threadpool_limits(limits=1):
        if "gaussian" in tables:
            gaussian_table(dims_list, args.cases.split(","), components, samples)
        if "grid" in tables:
            grids = [SMALL_GRID] + ([DSPRITES] if args.full else [])
            grid_table(dims_list, grids, (0.01, 0.1, 1.0), max(samples))
        if "marginals" in tables:
            marginals_table(max(samples))
        if "cost" in tables:
            cost_table(args.full)
    print(f"\n(log N for dSprites: {math.log(737_280):.2f} nats)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
