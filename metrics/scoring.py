"""Every metric of the project: point values, 95% intervals, per-class thresholds and ordinal cut points.

train.py's loop (training/loop.py) calls `fit_on_selection` (thresholds or cut points fit on the selection split) and
`score` after each evaluated epoch; evaluate.py calls `fit_on_selection`, then `score_with_intervals` on the reported
split; analyze.py resamples the chosen models' predictions with this package's statistics and resample indices
(analysis/resampling.py: the intervals `intervals` gives, on resamples shared by the models of a dataset).
`paired_difference`, the interval of the difference between two runs on the same samples, is called by no script: it is
for comparing two runs' saved predictions in Python. Nothing here reads files; run `python -m pytest -q
tests/test_metrics.py` to check it and `python benchmarks/bootstrap.py` to time it.

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
computed for a whole block of resamples at once from count-weighted sums (see `counts`), so 10,000 resamples
take seconds. A resample on which a metric is undefined (e.g. no positives drawn, for AUC) is dropped from the
percentiles, and the entry says how many were used and dropped.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from metrics.confidence import (
    bootstrap_distribution,
    clopper_pearson,
    intervals,
    paired_difference,
    resample_indices,
    resampled_metric,
    score_with_intervals,
)
from metrics.statistics import (
    DEFAULT_THRESHOLD,
    PRIMARY_METRIC,
    TASK_METRICS,
    accuracy_statistic,
    as_finite,
    as_int,
    auc_statistic,
    balanced_accuracy_statistic,
    check_metric,
    check_task,
    default_cutpoints,
    f1_statistic,
    hard_predictions,
    macro_auc_statistic,
    metric_statistic,
    one_hot,
    point_value,
    prepare_split,
    qwk_statistic,
    same_length,
)

# The one place for metrics: point values and decisions here, intervals from confidence.py, hard predictions and the
# shared statistics from metric_statistics.py.
__all__ = ["PRIMARY_METRIC", "TASK_METRICS", "hard_predictions", "accuracy", "balanced_accuracy",
           "quadratic_weighted_kappa",
           "macro_f1", "micro_f1", "roc_auc", "score", "choose_thresholds", "fit_cutpoints", "fit_decision",
           "fit_on_selection",
           "clopper_pearson", "resample_indices", "resampled_metric", "bootstrap_distribution", "score_with_intervals",
           "intervals", "paired_difference"]

# ---------------------------------------------------------------------------------------------------------------
# Point metrics
# ---------------------------------------------------------------------------------------------------------------

def _pair(labels, preds, multilabel_ok: bool = False) -> tuple[np.ndarray, np.ndarray]:
    labels, preds = as_int("labels", labels, 0), as_int("preds", preds, 0)
    shapes = "(N,) or (N, C)" if multilabel_ok else "(N,)"
    if labels.shape != preds.shape or labels.ndim not in ((1, 2) if multilabel_ok else (1,)):
        raise ValueError(f"labels and preds must have the same shape, {shapes}; got {labels.shape} and "
                         f"{preds.shape}")
    if labels.ndim == 2 and max(labels.max(), preds.max()) > 1:
        raise ValueError("multi-label labels and preds must be 0/1")
    return labels, preds


def accuracy(labels, preds) -> float:
    labels, preds = _pair(labels, preds)
    return point_value(accuracy_statistic(labels, preds), len(labels))


def balanced_accuracy(labels, preds) -> float:
    """Mean recall over the classes present in labels."""
    labels, preds = _pair(labels, preds)
    return point_value(balanced_accuracy_statistic(labels, preds, int(max(labels.max(), preds.max())) + 1), len(labels))


def quadratic_weighted_kappa(labels, preds, num_classes: int | None = None) -> float:
    """Cohen's kappa with weights (i - j)^2 between grades 0..C-1; NaN when labels and preds are all one grade."""
    labels, preds = _pair(labels, preds)
    if num_classes is not None and max(labels.max(), preds.max()) >= num_classes:
        raise ValueError(f"labels and preds must lie in 0..{num_classes - 1}")
    return point_value(qwk_statistic(labels, preds), len(labels))


def _f1(labels, preds, average: str) -> float:
    labels, preds = _pair(labels, preds, multilabel_ok=True)
    if labels.ndim == 1:
        k = int(max(labels.max(), preds.max())) + 1
        labels, preds = one_hot(labels, k), one_hot(preds, k)
    return point_value(f1_statistic(labels, preds, average), len(labels))


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
    scores = as_finite("scores", scores)
    labels = as_int("labels", labels, 0, 2)
    same_length(labels, scores, "scores")
    if labels.ndim == 1:
        if scores.ndim == 2 and scores.shape[1] == 2:
            scores = scores[:, 1]
        if scores.ndim != 1:
            raise ValueError(f"binary scores must be (N,) or (N, 2), got shape {scores.shape}")
        return point_value(auc_statistic(labels, scores), len(labels))
    if scores.shape != labels.shape:
        raise ValueError(f"multi-label labels and scores must have the same shape, got {labels.shape} and "
                         f"{scores.shape}")
    return point_value(macro_auc_statistic(labels, scores), len(labels))


def score(task: str, labels, scores, thresholds=None, num_classes: int | None = None,
          metrics: Sequence[str] | None = None) -> dict[str, float]:
    """`metrics` (default all TASK_METRICS[task]) of one split, as {metric: value}."""
    split = prepare_split(task, labels, scores, thresholds, num_classes)
    metrics = list(TASK_METRICS[task] if metrics is None else metrics)
    for metric in metrics:
        check_metric(task, metric)
    return {metric: point_value(metric_statistic(metric, split), len(split.labels)) for metric in metrics}


# ---------------------------------------------------------------------------------------------------------------
# Decisions fitted on the selection split and applied unchanged to the reported split
# ---------------------------------------------------------------------------------------------------------------

def choose_thresholds(labels, scores) -> np.ndarray:
    """Per-class threshold (C,) maximising that class's F1 on these (validation) multi-label predictions.

    Every distinct score is a candidate cut (predict positive iff score >= cut); of the cuts with the best F1 the
    highest wins, and the threshold is placed halfway to the next lower distinct score so that a slightly different
    score on another split is treated like its neighbours. A class without positives keeps DEFAULT_THRESHOLD.
    """
    scores = as_finite("scores", scores)
    labels = as_int("labels", labels, 0, 2)
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
    outputs = as_finite("outputs", outputs)
    labels = as_int("labels", labels, 0, num_classes)
    if labels.ndim != 1 or outputs.shape != labels.shape:
        raise ValueError(f"labels and outputs must both be (N,), got {labels.shape} and {outputs.shape}")

    def negative_qwk(cuts: np.ndarray) -> float:
        kappa = point_value(qwk_statistic(labels, np.digitize(outputs, np.sort(cuts))), len(labels))
        return -kappa if np.isfinite(kappa) else np.inf

    from scipy.optimize import minimize  # here: a slow import, needed only for a regression head's cut points

    result = minimize(negative_qwk, default_cutpoints(num_classes), method="Nelder-Mead")
    return np.sort(result.x)


def fit_decision(task: str, labels, scores, num_classes: int | None = None) -> np.ndarray | None:
    """What to fit on the selection split: multilabel thresholds, 1-D ordinal cut points, otherwise None."""
    check_task(task)
    scores = np.asarray(scores)
    if task == "multilabel":
        return choose_thresholds(labels, scores)
    if task == "ordinal" and scores.ndim == 1:
        if num_classes is None:
            raise ValueError("fitting ordinal cut points needs num_classes")
        return fit_cutpoints(labels, scores, num_classes)
    return None


def fit_on_selection(task: str, results: dict[str, dict], selection_split: str | None,
                     num_classes: int | None = None) -> np.ndarray | None:
    """The thresholds / cut points every split is scored with: fit on the selection split's {"labels", "scores"};
    None without one (a model trained on all labelled data): 0.5 thresholds and the default cut points."""
    if selection_split is None:
        return None
    selection = results[selection_split]
    return fit_decision(task, selection["labels"], selection["scores"], num_classes)
