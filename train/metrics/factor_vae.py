"""The FactorVAE disentanglement score (Kim & Mnih 2018), as disentanglement_lib computes it."""

import numpy as np

from ._validate import as_codes, as_factors, check_positive_int, rng_of


def prune_dims(variances: np.ndarray, threshold: float = 0.05) -> np.ndarray:
    """Mask of the latents kept: global standard deviation ``>= threshold`` and nonzero (the others
    collapsed; a constant latent is never kept, whatever the threshold, as its normalised variance
    ``0 / 0`` is undefined)."""
    variances = np.asarray(variances)
    return (variances > 0) & (np.sqrt(variances) >= threshold)


def majority_vote_accuracy(train_votes: np.ndarray, eval_votes: np.ndarray) -> dict:
    """The majority-vote classifier of the votes ``(K, D)`` (row: fixed factor, column: the latent of
    least normalised variance): each latent predicts the factor it received most training votes for.

    :returns: ``classifier (D,)``, ``train_accuracy`` and ``eval_accuracy`` (0 when there are no votes).
    """
    classifier = np.argmax(train_votes, axis=0)  # (D,)
    columns = np.arange(train_votes.shape[1])
    train_total, eval_total = train_votes.sum(), eval_votes.sum()
    train_acc = train_votes[classifier, columns].sum() / train_total if train_total else 0.0
    eval_acc = eval_votes[classifier, columns].sum() / eval_total if eval_total else 0.0
    return {"classifier": classifier, "train_accuracy": float(train_acc), "eval_accuracy": float(eval_acc)}


def vote(local_variances: np.ndarray, global_variances: np.ndarray, active: np.ndarray) -> int:
    """The latent (an index into all D) whose variance over one vote's points, over its global
    variance, is smallest among the active latents of nonzero global variance."""
    candidates = np.flatnonzero(active & (global_variances > 0))
    if len(candidates) == 0:
        raise ValueError("active: no active latent of nonzero global variance to vote for")
    return int(candidates[np.argmin(local_variances[candidates] / global_variances[candidates])])


def _groups(labels: np.ndarray) -> list:
    """For every factor: the points of each class, and the points whose class has at least 2 points."""
    out = []
    for k in range(labels.shape[1]):
        order = np.argsort(labels[:, k], kind="stable")
        counts = np.bincount(labels[:, k])
        members = np.split(order, np.cumsum(counts)[:-1])
        eligible = np.flatnonzero(counts[labels[:, k]] >= 2)
        if len(eligible) == 0:
            raise ValueError(f"factors: no class of factor {k} has 2 points in the pool; the pool is too small")
        out.append((members, eligible))
    return out


def _pool_votes(codes, labels, groups, global_var, active, batch_size, num_votes, rng) -> np.ndarray:
    votes = np.zeros((labels.shape[1], codes.shape[1]), dtype=np.int64)  # (K, D)
    for _ in range(num_votes):
        k = int(rng.integers(labels.shape[1]))
        members, eligible = groups[k]
        value = labels[eligible[rng.integers(len(eligible))], k]  # the class of a random point
        group = members[value]
        pick = rng.choice(group, size=batch_size, replace=len(group) < batch_size)
        local = codes[pick].var(axis=0, ddof=1)  # (D,)
        votes[k, vote(local, global_var, active)] += 1
    return votes


def factor_vae_score(
    representation,
    factors,
    *,
    batch_size: int = 64,
    num_train: int = 10_000,
    num_eval: int = 5_000,
    num_variance: int = 10_000,
    prune_threshold: float = 0.05,
    seed=0,
) -> dict:
    r"""
    The FactorVAE score (Kim & Mnih 2018, *Disentangling by Factorising*) with disentanglement_lib's
    procedure, over a **pool** of encoded points: each vote resamples the pool.

    1. Global variances ``Var(z_d)`` (ddof 1) over ``num_variance`` pool points; latents whose standard
       deviation is below ``prune_threshold`` are pruned (disentanglement_lib: 0.05), and so is a
       latent of zero variance at any threshold (disentanglement_lib, at threshold 0, would divide
       0 by 0 and let the NaN win every vote).
    2. A vote picks a factor k uniformly, a class v of it (the class of a random pool point, so drawn
       from the factor's marginal, uniform for dSprites) and ``batch_size`` pool points of class v
       (without replacement when the class has that many, else with replacement); it votes for the
       active latent with the smallest ``Var_batch(z_d) / Var(z_d)``.
    3. Each latent predicts the factor it received most of the ``num_train`` training votes for
       (majority vote); the score is that classifier's accuracy on ``num_eval`` fresh votes.

    disentanglement_lib renders fresh observations for every vote (64 x 15,000 images); this core
    draws them from the pool instead, which, for a pool sampled i.i.d. from the generator, gives each
    vote the same distribution but makes votes share points. The generator form,
    :func:`infodropout.train.evaluation.factor_vae_fresh`, encodes fresh batches like
    disentanglement_lib.

    Representation: ``(N, D)`` codes with the noise off (disentanglement_lib: the Gaussian mean; here the
    location of ``log z`` for a log-normal latent by default) — the score changes under a nonlinear
    transform of the codes. Factors: ``(N, K)`` discrete classes, none constant.

    :returns: ``train_accuracy``, ``eval_accuracy`` (the score), ``num_active_dims`` (the number of
        latents kept; disentanglement_lib reports ``len`` of its mask, i.e. D), ``active_dims (D,)``,
        ``global_variance (D,)``, ``classifier (D,)``, ``train_votes (K, D)``, ``eval_votes (K, D)``.
        With no active latent both accuracies are 0.
    """
    codes = as_codes(representation)
    labels = as_factors(factors, len(codes))
    batch_size = check_positive_int(batch_size, "batch_size", 2)
    num_train = check_positive_int(num_train, "num_train")
    num_eval = check_positive_int(num_eval, "num_eval")
    num_variance = check_positive_int(num_variance, "num_variance", 2)
    if not prune_threshold >= 0:
        raise ValueError(f"prune_threshold={prune_threshold!r}: expected a nonnegative number")
    return _factor_vae(codes, labels, batch_size, num_train, num_eval, num_variance, prune_threshold, rng_of(seed))


def _factor_vae(codes, labels, batch_size, num_train, num_eval, num_variance, prune_threshold, rng) -> dict:
    rows = rng.choice(len(codes), size=num_variance, replace=False) if num_variance < len(codes) else slice(None)
    global_var = codes[rows].var(axis=0, ddof=1)  # (D,)
    active = prune_dims(global_var, prune_threshold)
    result = {
        "num_active_dims": int(active.sum()),
        "active_dims": active,
        "global_variance": global_var,
        "num_points": len(codes),
    }
    empty = np.zeros((labels.shape[1], codes.shape[1]), dtype=np.int64)
    if not active.any():
        classifier = np.zeros(codes.shape[1], dtype=np.int64)
        scores = {"train_accuracy": 0.0, "eval_accuracy": 0.0, "classifier": classifier}
        return {**scores, **result, "train_votes": empty, "eval_votes": empty.copy()}
    groups = _groups(labels)
    train_votes = _pool_votes(codes, labels, groups, global_var, active, batch_size, num_train, rng)
    eval_votes = _pool_votes(codes, labels, groups, global_var, active, batch_size, num_eval, rng)
    accuracy = majority_vote_accuracy(train_votes, eval_votes)
    return {**accuracy, **result, "train_votes": train_votes, "eval_votes": eval_votes}


def score_votes(votes: dict) -> dict:
    """The FactorVAE score of votes drawn elsewhere (fresh observations, as disentanglement_lib draws
    them: :func:`infodropout.train.evaluation.fresh_votes`): ``train_votes``, ``eval_votes`` ``(K, D)``,
    ``active_dims (D,)`` and ``global_variance (D,)`` in, the keys of :func:`factor_vae_score` out, with
    ``mode: "fresh"``. With no active latent both accuracies are 0."""
    active = np.asarray(votes["active_dims"], dtype=bool)
    if active.any():
        scores = majority_vote_accuracy(np.asarray(votes["train_votes"]), np.asarray(votes["eval_votes"]))
    else:
        scores = {"classifier": np.zeros(len(active), dtype=np.int64), "train_accuracy": 0.0, "eval_accuracy": 0.0}
    return {**scores, "num_active_dims": int(active.sum()), **votes, "active_dims": active, "mode": "fresh"}
