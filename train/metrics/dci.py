"""Disentanglement, completeness and informativeness (Eastwood & Williams 2018), as disentanglement_lib."""

import numbers

import numpy as np
from sklearn.ensemble import GradientBoostingClassifier

from ._validate import check_positive_int, rng_of, split


def _normalized_entropy(p: np.ndarray, base: int, axis: int) -> np.ndarray:
    """Entropy (logarithm base ``base``) of ``p`` normalised along ``axis``; 1 where ``p`` sums to 0
    (the uniform distribution, as disentanglement_lib's ``+ 1e-11`` gives)."""
    total = p.sum(axis=axis, keepdims=True)
    q = np.divide(p, total, out=np.zeros_like(p), where=total > 0)
    terms = np.where(q > 0, q * np.log(np.where(q > 0, q, 1.0)), 0.0)
    h = -terms.sum(axis=axis) / np.log(base)
    return np.where(np.squeeze(total, axis) > 0, h, 1.0)


def dci_scores(importance_matrix) -> dict:
    r"""
    Disentanglement and completeness of an importance matrix ``R (D, K)`` (``R[d, k] >= 0``: how much
    latent d is used to predict factor k; Eastwood & Williams 2018)::

        D_d = 1 - H_K(R[d, :] / sum_k R[d, k])          disentanglement of code d
        C_k = 1 - H_D(R[:, k] / sum_d R[d, k])          completeness of factor k
        disentanglement = sum_d rho_d D_d,   rho_d = sum_k R[d, k] / sum R
        completeness    = sum_k phi_k C_k,   phi_k = sum_d R[d, k] / sum R

    with ``H_b`` the entropy in base b (so each score is in [0, 1]). With gradient-boosted trees each
    column of R sums to 1 (or 0 when no tree split), so the completeness is the mean over the factors
    whose predictor used the codes. This is disentanglement_lib's weighting; an all-zero matrix
    scores 0. Needs ``D >= 2`` and ``K >= 2`` (entropy bases).

    :returns: ``disentanglement``, ``completeness``, ``disentanglement_per_code (D,)``,
        ``completeness_per_factor (K,)``, ``code_importance (D,)`` (rho), ``factor_importance (K,)`` (phi).
    """
    r = np.asarray(importance_matrix, dtype=np.float64)
    if r.ndim != 2:
        raise ValueError(f"importance_matrix: expected a 2-d array (D, K), got shape {r.shape}")
    if r.shape[0] < 2 or r.shape[1] < 2:
        raise ValueError(f"importance_matrix: expected at least 2 codes and 2 factors, got shape {r.shape}")
    if not np.isfinite(r).all() or (r < 0).any():
        raise ValueError("importance_matrix: expected finite nonnegative importances")
    per_code = 1.0 - _normalized_entropy(r, r.shape[1], axis=1)  # (D,)
    per_factor = 1.0 - _normalized_entropy(r, r.shape[0], axis=0)  # (K,)
    total = r.sum()
    rho = r.sum(1) / total if total > 0 else np.full(r.shape[0], 1.0 / r.shape[0])
    phi = r.sum(0) / total if total > 0 else np.full(r.shape[1], 1.0 / r.shape[1])
    return {
        "disentanglement": float((rho * per_code).sum()),
        "completeness": float((phi * per_factor).sum()),
        "disentanglement_per_code": per_code,
        "completeness_per_factor": per_factor,
        "code_importance": rho,
        "factor_importance": phi,
    }


def gbt_importance(train_codes, train_labels, test_codes, test_labels, n_estimators: int = 100, seed=0) -> dict:
    """One ``GradientBoostingClassifier`` per factor (scikit-learn defaults otherwise: depth 3, learning
    rate 0.1): its impurity-based feature importances give column k of the importance matrix. Every
    factor's trees use the same ``random_state`` (drawn from ``seed``), so a factor's column does not
    depend on which other factors are fitted.

    :returns: ``importance_matrix (D, K)``, ``train_accuracy_per_factor (K,)``, ``test_accuracy_per_factor (K,)``.
    """
    random_state = int(rng_of(seed).integers(2**31))
    num_factors = train_labels.shape[1]
    importance = np.zeros((train_codes.shape[1], num_factors))
    train_acc, test_acc = np.zeros(num_factors), np.zeros(num_factors)
    for k in range(num_factors):
        model = GradientBoostingClassifier(n_estimators=n_estimators, random_state=random_state)
        model.fit(train_codes, train_labels[:, k])
        importance[:, k] = np.abs(model.feature_importances_)
        train_acc[k] = np.mean(model.predict(train_codes) == train_labels[:, k])
        test_acc[k] = np.mean(model.predict(test_codes) == test_labels[:, k])
    return {
        "importance_matrix": importance,
        "train_accuracy_per_factor": train_acc,
        "test_accuracy_per_factor": test_acc,
    }


def dci(
    representation,
    factors,
    *,
    test_representation=None,
    test_factors=None,
    test_fraction: float = 1 / 3,
    n_estimators: int = 100,
    seed=0,
) -> dict:
    r"""
    DCI (Eastwood & Williams 2018, *A Framework for the Quantitative Evaluation of Disentangled
    Representations*) with disentanglement_lib's estimator: a gradient-boosted tree classifier per
    factor predicts the factor's class from all latents; its feature importances form the importance
    matrix ``R (D, K)``, scored by :func:`dci_scores`. Informativeness is the classifiers' mean
    accuracy on the training and the test points (disentanglement_lib's ``informativeness_train`` and
    ``informativeness_test``; higher is better).

    Representation: ``(N, D)`` codes with the noise off; trees are invariant under monotone transforms
    of each latent, so DCI does not depend on the choice of representation among them. Factors:
    ``(N, K)`` discrete classes, none constant; ``D >= 2`` and ``K >= 2`` (the entropy bases), checked
    before any fitting. Train/test: ``test_representation``/``test_factors``
    when given (disentanglement_lib: 10,000 and 5,000 points), else a random split of the rows with
    ``test_fraction`` of them for testing. Fitting is the slow part (one tree per class per stage:
    dSprites' 113 classes x 100 stages on 10,000 points take minutes).

    :returns: the keys of :func:`dci_scores`, ``informativeness_train``, ``informativeness_test``,
        ``importance_matrix (D, K)``, ``train_accuracy_per_factor (K,)``, ``test_accuracy_per_factor (K,)``,
        ``num_train``, ``num_test``.
    """
    rng = rng_of(seed)
    n_estimators = check_positive_int(n_estimators, "n_estimators")
    for name, values, what in (("representation", representation, "latents"), ("factors", factors, "factors")):
        shape = np.shape(values)
        if len(shape) == 2 and shape[1] < 2:
            raise ValueError(f"{name}: DCI needs at least 2 {what} (columns; entropy bases), got shape {shape}")
    train_codes, train_labels, test_codes, test_labels = split(
        representation, factors, test_representation, test_factors, test_fraction, rng
    )
    fitted = gbt_importance(train_codes, train_labels, test_codes, test_labels, n_estimators, rng)
    scores = dci_scores(fitted["importance_matrix"])
    return {
        **scores,
        "informativeness_train": float(fitted["train_accuracy_per_factor"].mean()),
        "informativeness_test": float(fitted["test_accuracy_per_factor"].mean()),
        **fitted,
        "num_train": len(train_codes),
        "num_test": len(test_codes),
    }


def restrict_dci(result: dict, factor_indices) -> dict:
    """The DCI of a subset of the factors from a full result, without refitting: the importance
    matrix's columns ``factor_indices`` scored again, informativeness averaged over them."""
    cols = list(factor_indices)
    num_factors = result["importance_matrix"].shape[1]
    if len(cols) < 2 or not all(isinstance(c, numbers.Integral) and 0 <= c < num_factors for c in cols):
        raise ValueError(f"factor_indices={cols}: expected at least 2 factor indices in 0..{num_factors - 1}")
    scores = dci_scores(result["importance_matrix"][:, cols])
    train_acc = result["train_accuracy_per_factor"][cols]
    test_acc = result["test_accuracy_per_factor"][cols]
    return {
        **scores,
        "informativeness_train": float(train_acc.mean()),
        "informativeness_test": float(test_acc.mean()),
        "importance_matrix": result["importance_matrix"][:, cols],
        "train_accuracy_per_factor": train_acc,
        "test_accuracy_per_factor": test_acc,
        "num_train": result["num_train"],
        "num_test": result["num_test"],
    }
