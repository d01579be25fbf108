"""Active units (Burda et al. 2016): the latents whose representation varies over the data."""

from ._validate import as_codes


def active_units(representation, *, threshold: float = 0.01) -> dict:
    r"""
    The active units of a representation (Burda, Grosse & Salakhutdinov 2016, *Importance Weighted
    Autoencoders*, Sec. 5.2)::

        A_d = Var_x(r_d(x)) > threshold          (threshold 0.01)

    where ``r(x)`` is the representation with the noise off. Burda et al. take the posterior mean
    ``E_q[z | x]``; this project passes the representation it measures (the location of ``log z`` by
    default for a log-normal latent, ``kind`` in the result), so the variance is in that space.
    The variance is over the ``N`` rows, with ``ddof=0``.

    :param representation: ``(N, D)`` codes.
    :param float threshold: the variance above which a latent counts as active.
    :returns: ``num_active``, ``active (D,)`` bool, ``variance (D,)``, ``threshold``.
    """
    codes = as_codes(representation)
    if not (isinstance(threshold, (int, float)) and threshold >= 0):
        raise ValueError(f"threshold={threshold!r}: expected a nonnegative number")
    variance = codes.var(axis=0)
    active = variance > threshold
    return {"num_active": int(active.sum()), "active": active, "variance": variance, "threshold": float(threshold)}
