"""Isotonic calibration of predicted probabilities, decided and fitted as NannyML's CBPE does.

Confidence-based performance estimation (``monitoring.estimation``) needs probabilities
that mean what they say: of the rows a model gives 0.8, 80% are of that class. Models are
often over- or under-confident, so the probabilities are first mapped through an isotonic
regression fitted on labelled reference rows, but only when that helps: NannyML 0.13's
``needs_calibration`` rule, reproduced here step for step so both tools calibrate the same
models the same way:

- no calibration when the reference has one class only, or its ROC AUC is above 0.999;
- otherwise 10 stratified shuffle splits (10% test, seed 42, the same splits as
  scikit-learn's ``StratifiedShuffleSplit``): an isotonic regression fitted on each train
  part calibrates its test part; the expected calibration error (10 equal-count bins) of
  all test parts together is compared before and after, and calibration is used when it
  lowers the error; the calibrator is then fitted on the whole reference.

The difference is speed. Isotonic regression is a sort, a tie merge and scipy's
pool-adjacent-violators (what scikit-learn's ``IsotonicRegression`` runs inside, without its
input checks and its ``lexsort``), applied by ``np.interp`` (the same linear interpolation,
clipped at the ends); the splits are drawn with numpy arrays, not Python lists; and the
cross-validated decision looks at most at ``DECISION_ROWS`` reference rows (a fixed random
sample beyond that: the error comparison is already precise there), while the calibrator
itself is fitted on every row.
"""

from __future__ import annotations

from math import ceil
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "DECISION_ROWS",
    "Calibrator",
    "calibrate",
    "calibrator_if_needed",
    "fit_calibrator",
    "needs_calibration",
    "roc_auc",
]

#: The calibration decision (10-fold cross-validation) uses at most this many reference rows.
DECISION_ROWS = 100_000
#: As NannyML: 10 stratified shuffle splits with 10% test rows, seed 42, 10 ECE bins.
_SPLITS, _TEST_SIZE, _SEED, _BINS = 10, 0.1, 42, 10
#: scikit-learn merges abscissae closer than this (float64 resolution) into one.
_X_RESOLUTION = 1e-15

#: A fitted isotonic map: increasing knots ``x`` and their values ``y`` (np.interp applies it).
Calibrator = tuple["np.ndarray", "np.ndarray"]


def fit_calibrator(score: np.ndarray, positive: np.ndarray) -> Calibrator:
    """Isotonic regression of ``positive`` (0/1) on ``score``: the knots of the fitted
    step-and-ramp function, as scikit-learn's ``IsotonicRegression(out_of_bounds="clip")``."""
    import numpy as np

    order = np.argsort(score)
    return _isotonic_sorted(score[order], positive[order])


def _isotonic_sorted(xs: np.ndarray, ys: np.ndarray) -> Calibrator:
    """The isotonic fit of rows already sorted by score: equal scores merged into their mean
    target (weighted by count), then pool-adjacent-violators."""
    import numpy as np
    from scipy.optimize import isotonic_regression

    starts = np.flatnonzero(np.r_[True, np.diff(xs) >= _X_RESOLUTION])
    weights = np.diff(np.r_[starts, xs.size]).astype(float)
    means = np.add.reduceat(ys.astype(float), starts) / weights
    fitted = isotonic_regression(means, weights=weights, increasing=True).x
    x = xs[starts]
    # Only the ends of each flat stretch matter to the interpolation (as scikit-learn trims).
    keep = np.ones(x.size, dtype=bool)
    keep[1:-1] = (fitted[1:-1] != fitted[:-2]) | (fitted[1:-1] != fitted[2:])
    return x[keep], fitted[keep]


def calibrate(calibrator: Calibrator, score: np.ndarray) -> np.ndarray:
    """``score`` mapped through a fitted calibrator (clipped to its range at both ends)."""
    import numpy as np

    mapped: np.ndarray = np.interp(score, calibrator[0], calibrator[1])
    return mapped


def calibrator_if_needed(score: np.ndarray, positive: np.ndarray) -> Calibrator | None:
    """The isotonic calibrator of ``score`` for the 0/1 target ``positive`` fitted on every
    row, or None when NannyML's rule says calibration does not help (module docstring).

    One sort of the scores serves the ROC AUC check, the cross-validation (a sorted subset
    stays sorted) and the final fit.
    """
    import numpy as np

    positive = np.asarray(positive, dtype=np.int64)
    order = np.argsort(score)
    ranked, truth = score[order], positive[order]
    if not _needs_calibration(score, positive, order, ranked, truth):
        return None
    return _isotonic_sorted(ranked, truth)


def needs_calibration(score: np.ndarray, positive: np.ndarray) -> bool:
    """Whether isotonic calibration lowers the cross-validated calibration error of
    ``score`` for the 0/1 target ``positive`` (NannyML's rule; see the module docstring)."""
    import numpy as np

    positive = np.asarray(positive, dtype=np.int64)
    order = np.argsort(score)
    return _needs_calibration(score, positive, order, score[order], positive[order])


def _needs_calibration(
    score: np.ndarray,
    positive: np.ndarray,
    order: np.ndarray,
    ranked: np.ndarray,
    truth: np.ndarray,
) -> bool:
    import numpy as np

    n_pos = int(truth.sum())
    if n_pos == 0 or n_pos == truth.size:
        return False
    auc = _auc_ranked(ranked[::-1], truth[::-1])
    if auc is not None and auc > 0.999:
        return False
    if score.size > DECISION_ROWS:
        # A fixed random sample; its rows in score order come from the one sort above.
        chosen = np.zeros(score.size, dtype=bool)
        chosen[np.random.default_rng(_SEED).choice(score.size, DECISION_ROWS, False)] = True
        position = np.cumsum(chosen) - 1
        sample_order = position[order[chosen[order]]]
        score, positive = score[chosen], positive[chosen]
    else:
        sample_order = order
    splits = _stratified_splits(positive)
    if splits is None:  # a class with a single row: too few to cross-validate
        return False
    calibrated = []
    for train, test in splits:
        in_train = np.zeros(score.size, dtype=bool)
        in_train[train] = True
        rows = sample_order[in_train[sample_order]]  # the train rows, still in score order
        calibrated.append(calibrate(_isotonic_sorted(score[rows], positive[rows]), score[test]))
    tests = np.concatenate([test for _, test in splits])
    truth_tests = positive[tests].astype(float)
    before = _expected_calibration_error(truth_tests, score[tests])
    after = _expected_calibration_error(truth_tests, np.concatenate(calibrated))
    return bool(before > after)


def roc_auc(score: np.ndarray, positive: np.ndarray) -> float | None:
    """ROC AUC of ``score`` where ``positive`` is each row's weight as a positive (0/1 for
    labels; a calibrated probability for an estimate: each row then counts ``p`` as a
    positive and ``1 - p`` as a negative). Tied scores make one step, as scikit-learn's
    curve; None when either side weighs nothing."""
    import numpy as np

    order = np.argsort(-score)  # decreasing (the order within ties does not matter)
    return _auc_ranked(score[order], positive[order])


def _auc_ranked(ranked: np.ndarray, weight: np.ndarray) -> float | None:
    """ROC AUC of rows sorted by decreasing score."""
    import numpy as np

    if ranked.size == 0:
        return None
    last = np.r_[np.flatnonzero(ranked[1:] != ranked[:-1]), ranked.size - 1]
    tp = np.r_[0.0, np.cumsum(weight, dtype=float)[last]]
    fp = np.r_[0.0, (last + 1) - tp[1:]]
    if tp[-1] <= 0 or fp[-1] <= 0:
        return None
    return float(np.trapezoid(tp, fp) / (tp[-1] * fp[-1]))


def _expected_calibration_error(truth: np.ndarray, proba: np.ndarray) -> float:
    """Mean |mean probability - rate of positives| over equal-count bins of the sorted
    probabilities, weighted by bin size (NannyML's ECE, its bin edges and sort)."""
    import numpy as np

    n = proba.size
    bins = _BINS
    if n <= 2 * bins:
        bins = n // 2
    width = n // bins
    left = np.arange(0, n + 1, width)
    left[-1] = n
    starts, sizes = left[:-1], np.diff(left)
    order = proba.argsort()  # NannyML's (unstable) sort: the same ties in the same bins
    mean_p = np.add.reduceat(proba[order], starts) / sizes
    mean_t = np.add.reduceat(truth[order], starts) / sizes
    return float(np.sum(sizes / n * np.abs(mean_p - mean_t)))


def _stratified_splits(labels: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """scikit-learn's ``StratifiedShuffleSplit(10, test_size=0.1, random_state=42)`` splits
    of ``labels`` (the same indices in the same order), or None where it would refuse."""
    import numpy as np

    n = labels.size
    n_test = ceil(_TEST_SIZE * n)
    n_train = n - n_test
    _, codes, counts = np.unique(labels, return_inverse=True, return_counts=True)
    k = counts.size
    if counts.min() < 2 or n_train < k or n_test < k:
        return None
    members = np.split(np.argsort(codes, kind="stable"), np.cumsum(counts)[:-1])
    rng = np.random.RandomState(_SEED)
    out = []
    for _ in range(_SPLITS):
        n_i = _approximate_mode(counts, n_train, rng)
        t_i = _approximate_mode(counts - n_i, n_test, rng)
        train, test = [], []
        for i in range(k):
            shuffled = members[i].take(rng.permutation(counts[i]), mode="clip")
            train.append(shuffled[: n_i[i]])
            test.append(shuffled[n_i[i] : n_i[i] + t_i[i]])
        out.append((rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))))
    return out


def _approximate_mode(counts: np.ndarray, draws: int, rng: np.random.RandomState) -> np.ndarray:
    """How many of ``draws`` rows each class gets (scikit-learn's ``_approximate_mode``:
    floors, then the largest remainders, ties broken by ``rng``)."""
    import numpy as np

    continuous = counts / counts.sum() * draws
    floored = np.floor(continuous)
    need = int(draws - floored.sum())
    if need > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (where,) = np.where(remainder == value)
            now = min(len(where), need)
            where = rng.choice(where, size=now, replace=False)
            floored[where] += 1
            need -= now
            if need == 0:
                break
    given: np.ndarray = floored.astype(int)
    return given
