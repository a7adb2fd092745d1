"""The metrics as statistics of resample counts, shared by point values (metrics.py) and intervals (confidence.py).

Inputs are checked and scores turned into hard predictions here (`hard_predictions`, `prepare`); each metric is then a
function of a block of resamples, each resample a count vector saying how often each sample was drawn, so that a
bootstrap of 10,000 resamples is a few matrix products, and the point value is the same function at counts = 1.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from scipy.sparse import csr_array

PRIMARY_METRIC = {"multiclass": "accuracy", "ordinal": "qwk", "binary": "roc_auc", "multilabel": "macro_f1"}
TASK_METRICS: dict[str, list[str]] = {
    "multiclass": ["accuracy", "balanced_accuracy", "macro_f1"],
    "ordinal": ["qwk", "accuracy", "balanced_accuracy", "macro_f1"],
    "binary": ["roc_auc", "accuracy", "balanced_accuracy", "macro_f1"],
    "multilabel": ["macro_f1", "micro_f1", "macro_roc_auc"],
}
DEFAULT_THRESHOLD = 0.5  # multi-label threshold of a class that has no positives on the selection split

Statistic = Callable[["Resamples"], np.ndarray]  # a block of B resamples -> (B,) metric values


# ---------------------------------------------------------------------------------------------------------------
# Checking inputs and turning scores into hard predictions
# ---------------------------------------------------------------------------------------------------------------

def check_task(task: str) -> None:
    if task not in PRIMARY_METRIC:
        raise ValueError(f"task must be one of {sorted(PRIMARY_METRIC)}, got {task!r}")


def as_finite(name: str, values) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        raise ValueError(f"{name} is empty")
    bad = ~np.isfinite(array)
    if bad.any():
        raise ValueError(f"{name} has {int(bad.sum())} NaN/inf values, first at index "
                         f"{tuple(int(i) for i in np.argwhere(bad)[0])}")
    return array


def as_int(name: str, values, low: int, high: int | None = None) -> np.ndarray:
    """Whole numbers in [low, high) (high None: no upper bound), as int64."""
    array = as_finite(name, values)
    if (array != np.round(array)).any():
        raise ValueError(f"{name} must hold whole numbers, got e.g. {array[array != np.round(array)].flat[0]}")
    wrong = array < low if high is None else (array < low) | (array >= high)
    if wrong.any():
        allowed = f"{low}..{high - 1}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must lie in {allowed}, got {array[wrong].flat[0]:g}")
    return array.astype(np.int64)


def same_length(labels: np.ndarray, other: np.ndarray, other_name: str) -> None:
    if len(other) != len(labels):
        raise ValueError(f"labels has {len(labels)} samples but {other_name} has {len(other)}")


def default_cutpoints(num_classes: int) -> np.ndarray:
    return np.arange(num_classes - 1) + 0.5


def hard_predictions(task: str, scores, thresholds=None, num_classes: int | None = None) -> np.ndarray:
    """Hard predictions: (N,) class indices, or (N, C) 0/1 for multilabel.

    `thresholds` are the per-class thresholds (multilabel, default 0.5) or the cut points of 1-D ordinal outputs
    (default 0.5, 1.5, ..., which needs `num_classes`); other tasks take none.
    """
    check_task(task)
    scores = as_finite("scores", scores)
    if task == "multilabel":
        if scores.ndim != 2:
            raise ValueError(f"multilabel scores must be (N, C), got shape {scores.shape}")
        thresholds = np.full(scores.shape[1], DEFAULT_THRESHOLD) if thresholds is None else \
            as_finite("thresholds", thresholds)
        if thresholds.shape != (scores.shape[1],):
            raise ValueError(f"thresholds must have shape ({scores.shape[1]},), got {thresholds.shape}")
        return (scores >= thresholds).astype(np.int64)
    if task == "ordinal" and scores.ndim == 1:
        if thresholds is None:
            if num_classes is None:
                raise ValueError("1-D ordinal outputs need cut points (thresholds) or num_classes")
            thresholds = default_cutpoints(num_classes)
        thresholds = as_finite("thresholds", thresholds)
        if thresholds.ndim != 1 or (np.diff(thresholds) < 0).any():
            raise ValueError(f"ordinal cut points must be a sorted 1-D array, got {thresholds}")
        if num_classes is not None and len(thresholds) != num_classes - 1:
            raise ValueError(f"{num_classes} grades need {num_classes - 1} cut points, got {len(thresholds)}")
        return np.digitize(scores, thresholds).astype(np.int64)
    if thresholds is not None:
        raise ValueError(f"task {task!r} with scores of shape {scores.shape} takes no thresholds; they apply to "
                         "multilabel scores and 1-D ordinal outputs")
    if task == "binary" and scores.ndim == 1:
        return (scores > 0.5).astype(np.int64)  # same as argmax over [1 - p, p]: a tie goes to class 0
    if scores.ndim != 2 or (task == "binary" and scores.shape[1] != 2):
        expected = "(N, 2) or (N,)" if task == "binary" else "(N, C)" + (" or (N,)" if task == "ordinal" else "")
        raise ValueError(f"{task} scores must be {expected}, got shape {scores.shape}")
    return scores.argmax(axis=1)


class Split(NamedTuple):
    """One split, checked: labels, hard predictions, ranking scores for AUC (None if unused), number of classes."""
    labels: np.ndarray
    preds: np.ndarray
    ranking: np.ndarray | None
    num_classes: int


def prepare_split(task: str, labels, scores, thresholds, num_classes: int | None) -> Split:
    check_task(task)
    scores = as_finite("scores", scores)
    if task == "multilabel":
        labels = as_int("labels", labels, 0, 2)
        if labels.ndim != 2 or labels.shape != scores.shape:
            raise ValueError(f"multilabel labels and scores must both be (N, C), got {labels.shape} and "
                             f"{scores.shape}")
        if num_classes is not None and num_classes != labels.shape[1]:
            raise ValueError(f"num_classes is {num_classes} but labels have {labels.shape[1]} columns")
        return Split(labels, hard_predictions(task, scores, thresholds), scores, labels.shape[1])
    if task == "binary":
        if num_classes not in (None, 2):
            raise ValueError(f"the binary task has 2 classes, got num_classes={num_classes}")
        num_classes = 2
    elif scores.ndim == 2:
        if num_classes not in (None, scores.shape[1]):
            raise ValueError(f"num_classes is {num_classes} but scores have {scores.shape[1]} columns")
        num_classes = scores.shape[1]
    elif task == "ordinal" and scores.ndim == 1 and num_classes is None:
        if thresholds is None:
            raise ValueError("1-D ordinal outputs need num_classes or cut points (thresholds)")
        num_classes = len(np.atleast_1d(thresholds)) + 1
    preds = hard_predictions(task, scores, thresholds, num_classes)  # also rejects shapes that fit no task
    labels = as_int("labels", labels, 0, num_classes)
    if labels.ndim != 1:
        raise ValueError(f"{task} labels must be (N,), got shape {labels.shape}")
    same_length(labels, scores, "scores")
    ranking = (scores[:, 1] if scores.ndim == 2 else scores) if task == "binary" else None
    return Split(labels, preds, ranking, num_classes)


# ---------------------------------------------------------------------------------------------------------------
# Metrics as functions of resample counts. A resample is a count vector: how often each of the N samples was drawn.
# Each factory precomputes what does not depend on the resample and returns a statistic mapping a block of B
# resamples to B metric values; a metric that sums over samples becomes a product of the counts with per-sample
# values (sparse where those are mostly zero), one matrix product for B resamples. Counts are small integers, and
# so are the sums of counts times integer weights: exact in float32 while below 2**24, which halves the memory the
# products read; weights that could exceed that stay float64. So each value equals the metric computed on the
# resampled arrays themselves. The point value is the statistic of counts = 1: point and bootstrap share one path.
# ---------------------------------------------------------------------------------------------------------------

_FLOAT32_EXACT = 2 ** 24  # every integer up to this is exact in float32


class Resamples:
    """A block of B resamples of N samples as counts (B, N), with its transpose (N, B) made once on demand: the
    statistics of every metric and model scored on the block share both."""

    def __init__(self, counts: np.ndarray):
        self.counts = counts
        self._transposed: np.ndarray | None = None

    @property
    def counts_t(self) -> np.ndarray:
        if self._transposed is None:
            self._transposed = np.ascontiguousarray(self.counts.T)
        return self._transposed


def resample_counts(indices: np.ndarray, n: int) -> Resamples:
    """The resamples given as (B, n) drawn indices, counted: one bincount over all rows, each row's indices shifted
    into its own range of n bins."""
    rows = len(indices)
    shifted = indices + (np.arange(rows, dtype=np.int64) * n)[:, None]
    counts = np.bincount(shifted.ravel(), minlength=rows * n).reshape(rows, n)
    return Resamples(counts.astype(np.float32 if n < _FLOAT32_EXACT else np.float64))


def ones(n: int) -> Resamples:
    return Resamples(np.ones((1, n), dtype=np.float32 if n < _FLOAT32_EXACT else np.float64))


def _weights(values: np.ndarray) -> np.ndarray:
    """Per-sample weights (N, k) as float32 when every count-weighted sum of them is an integer below 2**24."""
    integer = bool((values == np.round(values)).all())
    exact = integer and float(np.abs(values).max(initial=0.0)) * len(values) < _FLOAT32_EXACT
    return np.ascontiguousarray(values, dtype=np.float32 if exact else np.float64)


def _sparse_weights(values: np.ndarray) -> csr_array:
    """Mostly-zero per-sample weights (N, k), transposed for products with counts_t: (k, N) sparse."""
    return csr_array(_weights(values).T)


def one_hot(values: np.ndarray, num_classes: int) -> np.ndarray:
    return (values[:, None] == np.arange(num_classes)).astype(np.float64)


def _row_mean_defined(values: np.ndarray) -> np.ndarray:
    """Row means over the non-NaN entries; NaN for a row with none."""
    defined = ~np.isnan(values)
    with np.errstate(invalid="ignore"):
        return np.where(defined, values, 0.0).sum(axis=1) / defined.sum(axis=1)


def accuracy_statistic(labels: np.ndarray, preds: np.ndarray) -> Statistic:
    correct = _weights((labels == preds).astype(np.float64))
    return lambda block: (block.counts @ correct).astype(np.float64) / len(correct)


def balanced_accuracy_statistic(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> Statistic:
    support = one_hot(labels, num_classes)
    columns = _sparse_weights(np.hstack([support, support * (labels == preds)[:, None]]))

    def statistic(block: Resamples) -> np.ndarray:
        sums = (columns @ block.counts_t).T.astype(np.float64)
        with np.errstate(invalid="ignore"):
            recall = sums[:, num_classes:] / sums[:, :num_classes]  # 0/0 = NaN for a class not drawn
        return _row_mean_defined(recall)
    return statistic


def qwk_statistic(labels: np.ndarray, preds: np.ndarray) -> Statistic:
    # With quadratic weights kappa needs five sums. Observed disagreement: sum w*(y-p)^2. Expected, pairing every
    # label with every prediction: (1/n) sum_i sum_j w_i w_j (y_i - p_j)^2
    #   = sum w*y^2 + sum w*p^2 - 2 (sum w*y)(sum w*p) / n,  where n = sum w.
    y, p = labels.astype(np.float64), preds.astype(np.float64)
    columns = _weights(np.stack([(y - p) ** 2, y ** 2, p ** 2, y, p], axis=1))

    def statistic(block: Resamples) -> np.ndarray:
        observed, yy, pp, sy, sp = (block.counts @ columns).astype(np.float64).T
        expected = yy + pp - 2 * sy * sp / len(y)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(expected > 0, 1 - observed / expected, np.nan)
    return statistic


def f1_statistic(truth: np.ndarray, predicted: np.ndarray, average: str) -> Statistic:
    """truth, predicted: (N, C) 0/1 indicators (one-hot for single-label). average: "macro" or "micro"."""
    columns = _sparse_weights(np.hstack([truth * predicted, truth, predicted]).astype(np.float64))
    c = truth.shape[1]

    def statistic(block: Resamples) -> np.ndarray:
        sums = (columns @ block.counts_t).T.astype(np.float64)
        tp, true_pos, pred_pos = sums[:, :c], sums[:, c:2 * c], sums[:, 2 * c:]
        if average == "micro":
            tp, true_pos, pred_pos = (x.sum(axis=1, keepdims=True) for x in (tp, true_pos, pred_pos))
        with np.errstate(invalid="ignore"):
            f1 = 2 * tp / (true_pos + pred_pos)  # = 2TP / (2TP + FP + FN); 0/0 = NaN is left out of the mean
        return _row_mean_defined(f1)
    return statistic


def _auc_of_transposed_counts(labels: np.ndarray, scores: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """ROC AUC of 0/1 labels ranked by scores, as a function of counts.T (N, B); exact with ties and repeats.

    AUC = (wins of positives over negatives, a tie counting half) / (positives * negatives). Only the distinct
    scores of the positives, q_0 < ... < q_{p-1}, matter as steps: a positive at q_k beats every negative scored
    at most q_k except that those equal to q_k count half. So negatives go into bin k when q_{k-1} < score <= q_k
    (bin p: above all steps), positives into the bin of their step, and bin counts of B resamples are one sparse
    product; the few negatives tied with a step get a second, small product. Swapping the classes and negating
    the scores leaves AUC unchanged, so the class with fewer distinct scores provides the steps.
    """
    positive = labels.astype(bool)
    if len(np.unique(scores[positive])) > len(np.unique(scores[~positive])):
        positive, scores = ~positive, -scores
    steps = np.unique(scores[positive])
    p, n = len(steps), len(scores)
    step = np.searchsorted(steps, scores, side="left")  # bin: how many steps lie strictly below the score
    rows = np.where(positive, p + 1 + step, step)  # rows 0..p: negatives per bin; rows p+1..2p: positives per step
    dtype = np.float32 if n < _FLOAT32_EXACT else np.float64  # bin counts are at most n
    members = csr_array((np.ones(n, dtype), (rows, np.arange(n))), shape=(2 * p + 1, n))
    tied = ~positive & np.isin(scores, steps)
    tied_steps, tied_rows = np.unique(step[tied], return_inverse=True)
    tied_members = csr_array((np.ones(tied.sum(), dtype), (tied_rows, np.flatnonzero(tied))),
                             shape=(len(tied_steps), n))

    def statistic(counts_t: np.ndarray) -> np.ndarray:
        binned = (members @ counts_t).astype(np.float64)  # (2p+1, B); products of counts need float64
        neg_at_or_below = np.cumsum(binned[:p + 1], axis=0)  # row k: negatives scored <= q_k
        pos = binned[p + 1:]
        wins = np.einsum("kb,kb->b", pos, neg_at_or_below[:p])
        wins -= np.einsum("kb,kb->b", pos[tied_steps], (tied_members @ counts_t).astype(np.float64)) / 2
        pairs = pos.sum(axis=0) * neg_at_or_below[-1]
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(pairs > 0, wins / pairs, np.nan)
    return statistic


def auc_statistic(labels: np.ndarray, scores: np.ndarray) -> Statistic:
    auc = _auc_of_transposed_counts(labels, scores)
    return lambda block: auc(block.counts_t)


def macro_auc_statistic(labels: np.ndarray, scores: np.ndarray) -> Statistic:
    per_class = [_auc_of_transposed_counts(labels[:, c], scores[:, c]) for c in range(labels.shape[1])]
    return lambda block: _row_mean_defined(np.stack([auc(block.counts_t) for auc in per_class], axis=1))


def metric_statistic(metric: str, split: Split) -> Statistic:
    labels, preds, k = split.labels, split.preds, split.num_classes
    if metric == "accuracy":
        return accuracy_statistic(labels, preds)
    if metric == "balanced_accuracy":
        return balanced_accuracy_statistic(labels, preds, k)
    if metric == "qwk":
        return qwk_statistic(labels, preds)
    if metric in ("macro_f1", "micro_f1"):
        if labels.ndim == 1:
            labels, preds = one_hot(labels, k), one_hot(preds, k)
        return f1_statistic(labels, preds, average=metric.split("_")[0])
    if metric == "roc_auc":
        return auc_statistic(labels, split.ranking)
    if metric == "macro_roc_auc":
        return macro_auc_statistic(labels, split.ranking)
    raise ValueError(f"unknown metric {metric!r}")


def check_metric(task: str, metric: str) -> None:
    if metric not in TASK_METRICS[task]:
        raise ValueError(f"metric {metric!r} is not reported for task {task!r}; choose from {TASK_METRICS[task]}")


def point_value(statistic: Statistic, n: int) -> float:
    """The metric on the samples as they are: the statistic at counts = 1."""
    return float(statistic(ones(n))[0])
