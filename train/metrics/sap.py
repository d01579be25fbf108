"""The Separated Attribute Predictability score (Kumar et al. 2018), as disentanglement_lib computes it."""

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC

from ._validate import as_codes, as_factors, rng_of, split


def top_two_gap(score_matrix: np.ndarray) -> np.ndarray:
    """Per column of ``(D, K)``: the largest entry minus the second largest -> ``(K,)``."""
    ordered = np.sort(score_matrix, axis=0)
    return ordered[-1] - ordered[-2]


def _svm_scores(train_codes, train_labels, test_codes, test_labels, c: float):
    scores = np.zeros((train_codes.shape[1], train_labels.shape[1]))  # (D, K)
    not_converged = 0
    for d in range(train_codes.shape[1]):
        for k in range(train_labels.shape[1]):
            classifier = LinearSVC(C=c, class_weight="balanced")
            # liblinear may stop at max_iter on a badly scaled latent: counted, and the fit is used as is
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                classifier.fit(train_codes[:, d : d + 1], train_labels[:, k])
            not_converged += sum(issubclass(w.category, ConvergenceWarning) for w in caught)
            for w in caught:
                if not issubclass(w.category, ConvergenceWarning):
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            scores[d, k] = np.mean(classifier.predict(test_codes[:, d : d + 1]) == test_labels[:, k])
    return scores, not_converged


def _r2_scores(codes, labels):
    scores = np.zeros((codes.shape[1], labels.shape[1]))  # (D, K)
    for d in range(codes.shape[1]):
        for k in range(labels.shape[1]):
            cov = np.cov(codes[:, d], labels[:, k], ddof=1)
            if cov[0, 0] > 1e-12:
                scores[d, k] = cov[0, 1] ** 2 / (cov[0, 0] * cov[1, 1])
    return scores


def sap(
    representation,
    factors,
    *,
    test_representation=None,
    test_factors=None,
    test_fraction: float = 1 / 3,
    c: float = 0.01,
    continuous: bool = False,
    seed=0,
) -> dict:
    r"""
    The SAP score (Kumar et al. 2018, *Variational Inference of Disentangled Latent Concepts from
    Unlabeled Observations*, Sec. 3) with disentanglement_lib's estimator::

        S[d, k] = test accuracy of LinearSVC(C=c, class_weight="balanced") predicting factor k from latent d alone
        SAP = 1/K sum_k (S[j_k, k] - S[l_k, k])       j_k, l_k: the best and second best latent for factor k

    ``continuous=True`` scores ``S[d, k]`` by the squared correlation of latent d and the factor's class
    index on the training points instead (disentanglement_lib's ``continuous_factors``; its own tests
    use it; its dSprites studies use the classifiers). With classifiers the score of one latent cannot
    exceed its accuracy, and a latent unrelated to a balanced factor of n classes still scores about
    1/n, so SAP <= 1 - 1/n even for a perfect representation; a single latent also cannot separate many
    classes with a one-vs-rest linear SVM (the identity on 10 classes scores about 0.3).

    Representation: ``(N, D)`` codes with the noise off (the score depends on the choice). Factors:
    ``(N, K)`` discrete classes, none constant. Train/test as in :func:`~.dci.dci`
    (disentanglement_lib: 10,000 and 5,000 points). Liblinear fits that stop at their iteration limit
    are counted in ``num_not_converged`` and used as they are.

    :returns: ``sap`` (float), ``sap_per_factor (K,)``, ``score_matrix (D, K)``, ``continuous``,
        ``num_not_converged``, ``num_train``, ``num_test``.
    """
    codes = as_codes(representation, min_dims=2)
    if not (isinstance(c, (int, float)) and c > 0):
        raise ValueError(f"c={c!r}: expected a positive number")
    if continuous:
        labels = as_factors(factors, len(codes))
        scores, not_converged, num_test = _r2_scores(codes, labels), 0, 0
        num_train = len(codes)
    else:
        train_codes, train_labels, test_codes, test_labels = split(
            codes, factors, test_representation, test_factors, test_fraction, rng_of(seed)
        )
        scores, not_converged = _svm_scores(train_codes, train_labels, test_codes, test_labels, float(c))
        num_train, num_test = len(train_codes), len(test_codes)
    gap = top_two_gap(scores)
    return {
        "sap": float(gap.mean()),
        "sap_per_factor": gap,
        "score_matrix": scores,
        "continuous": bool(continuous),
        "num_not_converged": int(not_converged),
        "num_train": num_train,
        "num_test": num_test,
    }
