"""Every metric of the project: point values, 95% intervals, per-class thresholds and ordinal cut points.

train.py calls `score` each epoch; evaluate.py calls `fit_decision` on the selection split and then
`score_with_intervals` (and `paired_difference` to compare two runs) on the reported split; analyze.py calls
`intervals`, which scores the models of a dataset on shared resamples. Nothing here reads
files; run `python -m pytest -q tests/test_metrics.py` to check it and `python benchmarks/bootstrap.py` to time it.

Predictions ("scores") look the same everywhere in the project:
  multiclass, ordinal (classification head)  labels (N,) int     scores (N, C) probabilities, prediction = argmax
  ordinal (regression head)                  labels (N,) int     scores (N,) outputs, prediction = grade between
                                                                  cut points (C-1,), default 0.5, 1.5, ...
  binary                                     labels (N,) 0/1     scores (N, 2) probabilities or (N,) P(positive);
                                                                  prediction = argmax, i.e. positive iff p > 0.5
  multilabel                                 labels (N, C) 0/1   scores (N, C) sigmoids, prediction = p >= threshold
                                                                  per class (C,), default 0.5

Definitions where libraries disagree or leave a choice:
  * F1 of a class with no positives and no predicted positives is undefined (0/0) and left out of the macro
    average: scikit-learn's f1_score(average="macro", zero_division=np.nan). Single-label macro F1 therefore
    averages over the classes present in the labels or the predictions, scikit-learn's default.
  * QWK weighs a disagreement by the squared distance between grades (0..C-1), as cohen_kappa_score(
    weights="quadratic", labels=range(C)). It is undefined (NaN) when labels and predictions are all one grade.
  * ROC AUC counts a tied positive/negative pair as half a win (scikit-learn's roc_auc_score); it is NaN when the
    labels hold one class only. Multi-label AUC is the mean over the classes that have both labels.
  * Balanced accuracy is the mean recall over the classes present in the labels (balanced_accuracy_score).

Intervals: accuracy gets the exact Clopper-Pearson interval. Every other metric gets a seeded percentile
bootstrap over samples (thresholds and cut points stay fixed). A resample is an index matrix row; each metric is
computed for a whole block of resamples at once from count-weighted sums (see `_counts`), so 10,000 resamples
take seconds. A resample on which a metric is undefined (e.g. no positives drawn, for AUC) is dropped from the
percentiles, and the entry says how many were used and dropped.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import NamedTuple

import numpy as np
from scipy.optimize import minimize
from scipy.sparse import csr_array
from scipy.stats import beta

PRIMARY_METRIC = {"multiclass": "accuracy", "ordinal": "qwk", "binary": "roc_auc", "multilabel": "macro_f1"}
TASK_METRICS: dict[str, list[str]] = {
    "multiclass": ["accuracy", "balanced_accuracy", "macro_f1"],
    "ordinal": ["qwk", "accuracy", "balanced_accuracy", "macro_f1"],
    "binary": ["roc_auc", "accuracy", "balanced_accuracy", "macro_f1"],
    "multilabel": ["macro_f1", "micro_f1", "macro_roc_auc"],
}
DEFAULT_THRESHOLD = 0.5  # multi-label threshold of a class that has no positives on the selection split
# Resamples are drawn and scored in blocks of about this many drawn indices: large enough that numpy's per-call
# cost vanishes, small enough that a block's few (B, N) arrays take about 30 MB together.
_BLOCK_ELEMENTS = 2 ** 20

Statistic = Callable[["Resamples"], np.ndarray]  # a block of B resamples -> (B,) metric values


# ---------------------------------------------------------------------------------------------------------------
# Checking inputs and turning scores into hard predictions
# ---------------------------------------------------------------------------------------------------------------

def _check_task(task: str) -> None:
    if task not in PRIMARY_METRIC:
        raise ValueError(f"task must be one of {sorted(PRIMARY_METRIC)}, got {task!r}")


def _as_finite(name: str, values) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        raise ValueError(f"{name} is empty")
    bad = ~np.isfinite(array)
    if bad.any():
        raise ValueError(f"{name} has {int(bad.sum())} NaN/inf values, first at index "
                         f"{tuple(int(i) for i in np.argwhere(bad)[0])}")
    return array


def _as_int(name: str, values, low: int, high: int | None = None) -> np.ndarray:
    """Whole numbers in [low, high) (high None: no upper bound), as int64."""
    array = _as_finite(name, values)
    if (array != np.round(array)).any():
        raise ValueError(f"{name} must hold whole numbers, got e.g. {array[array != np.round(array)].flat[0]}")
    wrong = array < low if high is None else (array < low) | (array >= high)
    if wrong.any():
        allowed = f"{low}..{high - 1}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must lie in {allowed}, got {array[wrong].flat[0]:g}")
    return array.astype(np.int64)


def _same_length(labels: np.ndarray, other: np.ndarray, other_name: str) -> None:
    if len(other) != len(labels):
        raise ValueError(f"labels has {len(labels)} samples but {other_name} has {len(other)}")


def _default_cutpoints(num_classes: int) -> np.ndarray:
    return np.arange(num_classes - 1) + 0.5


def predict(task: str, scores, thresholds=None, num_classes: int | None = None) -> np.ndarray:
    """Hard predictions: (N,) class indices, or (N, C) 0/1 for multilabel.

    `thresholds` are the per-class thresholds (multilabel, default 0.5) or the cut points of 1-D ordinal outputs
    (default 0.5, 1.5, ..., which needs `num_classes`); other tasks take none.
    """
    _check_task(task)
    scores = _as_finite("scores", scores)
    if task == "multilabel":
        if scores.ndim != 2:
            raise ValueError(f"multilabel scores must be (N, C), got shape {scores.shape}")
        thresholds = np.full(scores.shape[1], DEFAULT_THRESHOLD) if thresholds is None else \
            _as_finite("thresholds", thresholds)
        if thresholds.shape != (scores.shape[1],):
            raise ValueError(f"thresholds must have shape ({scores.shape[1]},), got {thresholds.shape}")
        return (scores >= thresholds).astype(np.int64)
    if task == "ordinal" and scores.ndim == 1:
        if thresholds is None:
            if num_classes is None:
                raise ValueError("1-D ordinal outputs need cut points (thresholds) or num_classes")
            thresholds = _default_cutpoints(num_classes)
        thresholds = _as_finite("thresholds", thresholds)
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


class _Split(NamedTuple):
    """One split, checked: labels, hard predictions, ranking scores for AUC (None if unused), number of classes."""
    labels: np.ndarray
    preds: np.ndarray
    ranking: np.ndarray | None
    num_classes: int


def _prepare(task: str, labels, scores, thresholds, num_classes: int | None) -> _Split:
    _check_task(task)
    scores = _as_finite("scores", scores)
    if task == "multilabel":
        labels = _as_int("labels", labels, 0, 2)
        if labels.ndim != 2 or labels.shape != scores.shape:
            raise ValueError(f"multilabel labels and scores must both be (N, C), got {labels.shape} and "
                             f"{scores.shape}")
        if num_classes is not None and num_classes != labels.shape[1]:
            raise ValueError(f"num_classes is {num_classes} but labels have {labels.shape[1]} columns")
        return _Split(labels, predict(task, scores, thresholds), scores, labels.shape[1])
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
    preds = predict(task, scores, thresholds, num_classes)  # also rejects shapes that fit no task
    labels = _as_int("labels", labels, 0, num_classes)
    if labels.ndim != 1:
        raise ValueError(f"{task} labels must be (N,), got shape {labels.shape}")
    _same_length(labels, scores, "scores")
    ranking = (scores[:, 1] if scores.ndim == 2 else scores) if task == "binary" else None
    return _Split(labels, preds, ranking, num_classes)


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


def _counts(indices: np.ndarray, n: int) -> Resamples:
    """The resamples given as (B, n) drawn indices, counted: one bincount over all rows, each row's indices shifted
    into its own range of n bins."""
    rows = len(indices)
    shifted = indices + (np.arange(rows, dtype=np.int64) * n)[:, None]
    counts = np.bincount(shifted.ravel(), minlength=rows * n).reshape(rows, n)
    return Resamples(counts.astype(np.float32 if n < _FLOAT32_EXACT else np.float64))


def _ones(n: int) -> Resamples:
    return Resamples(np.ones((1, n), dtype=np.float32 if n < _FLOAT32_EXACT else np.float64))


def _weights(values: np.ndarray) -> np.ndarray:
    """Per-sample weights (N, k) as float32 when every count-weighted sum of them is an integer below 2**24."""
    integer = bool((values == np.round(values)).all())
    exact = integer and float(np.abs(values).max(initial=0.0)) * len(values) < _FLOAT32_EXACT
    return np.ascontiguousarray(values, dtype=np.float32 if exact else np.float64)


def _sparse_weights(values: np.ndarray) -> csr_array:
    """Mostly-zero per-sample weights (N, k), transposed for products with counts_t: (k, N) sparse."""
    return csr_array(_weights(values).T)


def _one_hot(values: np.ndarray, num_classes: int) -> np.ndarray:
    return (values[:, None] == np.arange(num_classes)).astype(np.float64)


def _row_mean_defined(values: np.ndarray) -> np.ndarray:
    """Row means over the non-NaN entries; NaN for a row with none."""
    defined = ~np.isnan(values)
    with np.errstate(invalid="ignore"):
        return np.where(defined, values, 0.0).sum(axis=1) / defined.sum(axis=1)


def _accuracy_statistic(labels: np.ndarray, preds: np.ndarray) -> Statistic:
    correct = _weights((labels == preds).astype(np.float64))
    return lambda block: (block.counts @ correct).astype(np.float64) / len(correct)


def _balanced_accuracy_statistic(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> Statistic:
    support = _one_hot(labels, num_classes)
    columns = _sparse_weights(np.hstack([support, support * (labels == preds)[:, None]]))

    def statistic(block: Resamples) -> np.ndarray:
        sums = (columns @ block.counts_t).T.astype(np.float64)
        with np.errstate(invalid="ignore"):
            recall = sums[:, num_classes:] / sums[:, :num_classes]  # 0/0 = NaN for a class not drawn
        return _row_mean_defined(recall)
    return statistic


def _qwk_statistic(labels: np.ndarray, preds: np.ndarray) -> Statistic:
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


def _f1_statistic(truth: np.ndarray, predicted: np.ndarray, average: str) -> Statistic:
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


def _auc_statistic(labels: np.ndarray, scores: np.ndarray) -> Statistic:
    auc = _auc_of_transposed_counts(labels, scores)
    return lambda block: auc(block.counts_t)


def _macro_auc_statistic(labels: np.ndarray, scores: np.ndarray) -> Statistic:
    per_class = [_auc_of_transposed_counts(labels[:, c], scores[:, c]) for c in range(labels.shape[1])]
    return lambda block: _row_mean_defined(np.stack([auc(block.counts_t) for auc in per_class], axis=1))


def _statistic(metric: str, split: _Split) -> Statistic:
    labels, preds, k = split.labels, split.preds, split.num_classes
    if metric == "accuracy":
        return _accuracy_statistic(labels, preds)
    if metric == "balanced_accuracy":
        return _balanced_accuracy_statistic(labels, preds, k)
    if metric == "qwk":
        return _qwk_statistic(labels, preds)
    if metric in ("macro_f1", "micro_f1"):
        if labels.ndim == 1:
            labels, preds = _one_hot(labels, k), _one_hot(preds, k)
        return _f1_statistic(labels, preds, average=metric.split("_")[0])
    if metric == "roc_auc":
        return _auc_statistic(labels, split.ranking)
    if metric == "macro_roc_auc":
        return _macro_auc_statistic(labels, split.ranking)
    raise ValueError(f"unknown metric {metric!r}")


def _check_metric(task: str, metric: str) -> None:
    if metric not in TASK_METRICS[task]:
        raise ValueError(f"metric {metric!r} is not reported for task {task!r}; choose from {TASK_METRICS[task]}")


# ---------------------------------------------------------------------------------------------------------------
# Point metrics
# ---------------------------------------------------------------------------------------------------------------

def _pair(labels, preds, multilabel_ok: bool = False) -> tuple[np.ndarray, np.ndarray]:
    labels, preds = _as_int("labels", labels, 0), _as_int("preds", preds, 0)
    shapes = "(N,) or (N, C)" if multilabel_ok else "(N,)"
    if labels.shape != preds.shape or labels.ndim not in ((1, 2) if multilabel_ok else (1,)):
        raise ValueError(f"labels and preds must have the same shape, {shapes}; got {labels.shape} and "
                         f"{preds.shape}")
    if labels.ndim == 2 and max(labels.max(), preds.max()) > 1:
        raise ValueError("multi-label labels and preds must be 0/1")
    return labels, preds


def _point(statistic: Statistic, n: int) -> float:
    return float(statistic(_ones(n))[0])


def accuracy(labels, preds) -> float:
    labels, preds = _pair(labels, preds)
    return _point(_accuracy_statistic(labels, preds), len(labels))


def balanced_accuracy(labels, preds) -> float:
    """Mean recall over the classes present in labels."""
    labels, preds = _pair(labels, preds)
    return _point(_balanced_accuracy_statistic(labels, preds, int(max(labels.max(), preds.max())) + 1), len(labels))


def quadratic_weighted_kappa(labels, preds, num_classes: int | None = None) -> float:
    """Cohen's kappa with weights (i - j)^2 between grades 0..C-1; NaN when labels and preds are all one grade."""
    labels, preds = _pair(labels, preds)
    if num_classes is not None and max(labels.max(), preds.max()) >= num_classes:
        raise ValueError(f"labels and preds must lie in 0..{num_classes - 1}")
    return _point(_qwk_statistic(labels, preds), len(labels))


def _f1(labels, preds, average: str) -> float:
    labels, preds = _pair(labels, preds, multilabel_ok=True)
    if labels.ndim == 1:
        k = int(max(labels.max(), preds.max())) + 1
        labels, preds = _one_hot(labels, k), _one_hot(preds, k)
    return _point(_f1_statistic(labels, preds, average), len(labels))


def macro_f1(labels, preds) -> float:
    """Mean F1 over classes; single-label (N,) or multi-label (N, C) 0/1. See the module docstring for 0/0."""
    return _f1(labels, preds, "macro")


def micro_f1(labels, preds) -> float:
    """F1 of all (sample, class) decisions pooled; equals accuracy for single-label."""
    return _f1(labels, preds, "micro")


def roc_auc(labels, scores) -> float:
    """Binary: labels (N,) 0/1, scores (N,) or (N, 2). Multi-label: (N, C) each, mean over classes with both labels.

    NaN when no class has both labels.
    """
    scores = _as_finite("scores", scores)
    labels = _as_int("labels", labels, 0, 2)
    _same_length(labels, scores, "scores")
    if labels.ndim == 1:
        if scores.ndim == 2 and scores.shape[1] == 2:
            scores = scores[:, 1]
        if scores.ndim != 1:
            raise ValueError(f"binary scores must be (N,) or (N, 2), got shape {scores.shape}")
        return _point(_auc_statistic(labels, scores), len(labels))
    if scores.shape != labels.shape:
        raise ValueError(f"multi-label labels and scores must have the same shape, got {labels.shape} and "
                         f"{scores.shape}")
    return _point(_macro_auc_statistic(labels, scores), len(labels))


def score(task: str, labels, scores, thresholds=None, num_classes: int | None = None,
          metrics: Sequence[str] | None = None) -> dict[str, float]:
    """`metrics` (default all TASK_METRICS[task]) of one split, as {metric: value}."""
    split = _prepare(task, labels, scores, thresholds, num_classes)
    metrics = list(TASK_METRICS[task] if metrics is None else metrics)
    for metric in metrics:
        _check_metric(task, metric)
    return {metric: _point(_statistic(metric, split), len(split.labels)) for metric in metrics}


# ---------------------------------------------------------------------------------------------------------------
# Decisions fitted on the selection split and applied unchanged to the reported split
# ---------------------------------------------------------------------------------------------------------------

def choose_thresholds(labels, scores) -> np.ndarray:
    """Per-class threshold (C,) maximising that class's F1 on these (validation) multi-label predictions.

    Every distinct score is a candidate cut (predict positive iff score >= cut); of the cuts with the best F1 the
    highest wins, and the threshold is placed halfway to the next lower distinct score so that a slightly different
    score on another split is treated like its neighbours. A class without positives keeps DEFAULT_THRESHOLD.
    """
    scores = _as_finite("scores", scores)
    labels = _as_int("labels", labels, 0, 2)
    if labels.ndim != 2 or labels.shape != scores.shape:
        raise ValueError(f"labels and scores must both be (N, C), got {labels.shape} and {scores.shape}")
    thresholds = np.full(labels.shape[1], DEFAULT_THRESHOLD)
    for c in range(labels.shape[1]):
        positives = labels[:, c].sum()
        if positives == 0:
            continue
        order = np.argsort(-scores[:, c], kind="stable")
        s, tp = scores[order, c], np.cumsum(labels[order, c])
        last_of_run = np.flatnonzero(np.r_[s[1:] != s[:-1], True])  # cut at s[i] predicts samples 0..i positive
        f1 = 2 * tp[last_of_run] / (positives + last_of_run + 1)
        best = last_of_run[np.argmax(f1)]
        if best == len(s) - 1:
            thresholds[c] = s[best]
        else:
            middle = (s[best] + s[best + 1]) / 2
            thresholds[c] = middle if middle > s[best + 1] else s[best]  # adjacent floats: keep the exact cut
    return thresholds


def fit_cutpoints(labels, outputs, num_classes: int) -> np.ndarray:
    """Sorted cut points (num_classes-1,) turning 1-D regression outputs into grades, maximising QWK.

    Nelder-Mead from 0.5, 1.5, ..., as is common for APTOS; the start is a vertex of the simplex, so the result
    never scores below the default cut points on these labels.
    """
    outputs = _as_finite("outputs", outputs)
    labels = _as_int("labels", labels, 0, num_classes)
    if labels.ndim != 1 or outputs.shape != labels.shape:
        raise ValueError(f"labels and outputs must both be (N,), got {labels.shape} and {outputs.shape}")

    def negative_qwk(cuts: np.ndarray) -> float:
        kappa = _point(_qwk_statistic(labels, np.digitize(outputs, np.sort(cuts))), len(labels))
        return -kappa if np.isfinite(kappa) else np.inf

    result = minimize(negative_qwk, _default_cutpoints(num_classes), method="Nelder-Mead")
    return np.sort(result.x)


def fit_decision(task: str, labels, scores, num_classes: int | None = None) -> np.ndarray | None:
    """What to fit on the selection split: multilabel thresholds, 1-D ordinal cut points, otherwise None."""
    _check_task(task)
    scores = np.asarray(scores)
    if task == "multilabel":
        return choose_thresholds(labels, scores)
    if task == "ordinal" and scores.ndim == 1:
        if num_classes is None:
            raise ValueError("fitting ordinal cut points needs num_classes")
        return fit_cutpoints(labels, scores, num_classes)
    return None


# ---------------------------------------------------------------------------------------------------------------
# Intervals
# ---------------------------------------------------------------------------------------------------------------

def clopper_pearson(successes: int, trials: int, level: float = 0.95) -> tuple[float, float]:
    """Exact binomial interval for successes / trials."""
    _check_level(level)
    if trials <= 0 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials and trials > 0, got {successes} of {trials}")
    alpha = 1 - level
    low = beta.ppf(alpha / 2, successes, trials - successes + 1) if successes > 0 else 0.0
    high = beta.ppf(1 - alpha / 2, successes + 1, trials - successes) if successes < trials else 1.0
    return float(low), float(high)


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")


def resample_indices(n: int, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """Bootstrap resamples of n samples in blocks: (B, n) int32 indices drawn with replacement, n_boot rows in all.

    The same (n, seed) gives the same resamples, which is what makes paired comparisons paired; a run with more
    resamples starts with those of a shorter one.
    """
    if n <= 0 or n_boot <= 0:
        raise ValueError(f"need n > 0 samples and n_boot > 0 resamples, got n={n}, n_boot={n_boot}")
    rng = np.random.default_rng(seed)
    block = max(1, _BLOCK_ELEMENTS // n)
    for start in range(0, n_boot, block):
        yield rng.integers(0, n, size=(min(block, n_boot - start), n), dtype=np.int32)


def resampled_metric(task: str, metric: str, labels, scores, indices, thresholds=None,
                     num_classes: int | None = None) -> np.ndarray:
    """The metric on each row of `indices` (B, N): row b is scored on labels[indices[b]], scores[indices[b]]."""
    split = _prepare(task, labels, scores, thresholds, num_classes)
    _check_metric(task, metric)
    indices = np.asarray(indices)
    n = len(split.labels)
    if indices.ndim != 2 or indices.size == 0 or indices.min() < 0 or indices.max() >= n:
        raise ValueError(f"indices must be a non-empty (B, N) matrix of sample indices in 0..{n - 1}")
    return _statistic(metric, split)(_counts(indices, n))


def _bootstrap(statistics: dict, n: int, n_boot: int, seed: int) -> dict:
    """Every statistic on the same n_boot resamples of n samples."""
    blocks = {name: [] for name in statistics}
    for indices in resample_indices(n, n_boot, seed):
        counts = _counts(indices, n)
        for name, statistic in statistics.items():
            blocks[name].append(statistic(counts))
    return {name: np.concatenate(values) for name, values in blocks.items()}


def bootstrap_distribution(task: str, labels, scores, thresholds=None, num_classes: int | None = None,
                           metrics: list[str] | None = None, n_boot: int = 10000,
                           seed: int = 0) -> dict[str, np.ndarray]:
    """{metric: (n_boot,) values on the resamples}, NaN where the metric is undefined on a resample.

    All metrics see the same resamples; metrics defaults to TASK_METRICS[task].
    """
    split = _prepare(task, labels, scores, thresholds, num_classes)
    metrics = TASK_METRICS[task] if metrics is None else metrics
    for metric in metrics:
        _check_metric(task, metric)
    return _bootstrap({metric: _statistic(metric, split) for metric in metrics}, len(split.labels), n_boot, seed)


def _percentile_interval(values: np.ndarray, level: float) -> dict:
    defined = values[~np.isnan(values)]
    low, high = (np.percentile(defined, [50 * (1 - level), 50 * (1 + level)]) if len(defined)
                 else (np.nan, np.nan))
    return {"low": float(low), "high": float(high), "n_boot_used": len(defined),
            "n_boot_dropped": len(values) - len(defined)}


def score_with_intervals(task: str, labels, scores, thresholds=None, num_classes: int | None = None,
                         level: float = 0.95, n_boot: int = 10000, seed: int = 0,
                         metrics: Sequence[str] | None = None) -> dict[str, dict]:
    """{metric: {"value", "low", "high", "method", "level", ...}} for `metrics` (default all TASK_METRICS[task]).

    method "clopper-pearson" for accuracy; "bootstrap" (percentile, seeded, thresholds fixed) for the rest, with
    "n_boot_used" and "n_boot_dropped" (resamples on which the metric was undefined, left out of the percentiles).
    Only the metrics asked for are bootstrapped.
    """
    (result,) = intervals(task, [(labels, scores, thresholds)], num_classes, metrics, level, n_boot, seed)
    return result


def intervals(task: str, predictions: Iterable[tuple], num_classes: int | None = None,
              metrics: Sequence[str] | None = None, level: float = 0.95, n_boot: int = 10000,
              seed: int = 0) -> list[dict[str, dict]]:
    """score_with_intervals of several prediction sets of one task, each given as (labels, scores, thresholds)
    (an iterable: a generator reading each set from a file when it is needed works).

    The resamples depend only on the number of samples and the seed, so each set's result equals
    score_with_intervals of that set alone; sets of the same size (the models of one dataset) share one draw of
    the resamples and their counts, which is most of a bootstrap's cost. Of each set only what its statistics
    need is kept while resampling, so memory grows little with the number of sets.
    """
    _check_level(level)
    metrics = list(TASK_METRICS[task] if metrics is None else metrics)
    for metric in metrics:
        _check_metric(task, metric)
    results: list[dict[str, dict]] = []
    to_bootstrap: dict[int, dict[tuple[int, str], Statistic]] = {}  # samples -> (set, metric) -> statistic
    for i, (labels, scores, thresholds) in enumerate(predictions):
        split = _prepare(task, labels, scores, thresholds, num_classes)
        n = len(split.labels)
        results.append({})
        for metric in metrics:
            statistic = _statistic(metric, split)
            results[i][metric] = {"value": _point(statistic, n), "level": level}
            if metric == "accuracy":
                low, high = clopper_pearson(int(np.sum(split.labels == split.preds)), n, level)
                results[i][metric].update(low=low, high=high, method="clopper-pearson")
            else:
                to_bootstrap.setdefault(n, {})[(i, metric)] = statistic
    for n, statistics in to_bootstrap.items():
        for (i, metric), values in _bootstrap(statistics, n, n_boot, seed).items():
            results[i][metric].update(method="bootstrap", **_percentile_interval(values, level))
    return results


def paired_difference(task: str, metric: str, labels, scores_a, scores_b, thresholds_a=None, thresholds_b=None,
                      num_classes: int | None = None, level: float = 0.95, n_boot: int = 10000,
                      seed: int = 0) -> dict:
    """metric(a) - metric(b) on the same samples, with a paired percentile bootstrap interval and p-value.

    Both runs are scored on the same resamples. p_value is two-sided: twice the smaller of the fractions of
    resampled differences <= 0 and >= 0, capped at 1 (so 0 means fewer than 1 in n_boot crossed zero).
    """
    _check_level(level)
    split_a = _prepare(task, labels, scores_a, thresholds_a, num_classes)
    split_b = _prepare(task, labels, scores_b, thresholds_b, num_classes)
    _check_metric(task, metric)
    n = len(split_a.labels)
    statistics = {"a": _statistic(metric, split_a), "b": _statistic(metric, split_b)}
    value = _point(statistics["a"], n) - _point(statistics["b"], n)
    resampled = _bootstrap(statistics, n, n_boot, seed)
    differences = resampled["a"] - resampled["b"]
    interval = _percentile_interval(differences, level)
    defined = differences[~np.isnan(differences)]
    p_value = min(1.0, 2 * min(np.mean(defined <= 0), np.mean(defined >= 0))) if len(defined) else np.nan
    return {"value": float(value), **interval, "p_value": float(p_value), "method": "paired bootstrap",
            "level": level}
