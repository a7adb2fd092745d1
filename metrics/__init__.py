"""Every metric of the study, with its interval: what a number means, computed one way for every script.

    import metrics
    metrics.score(task, labels, scores, thresholds)               # every metric of a task (training, evaluate.py)
    metrics.score_with_intervals(task, labels, scores)            # each with its 95% interval
    metrics.intervals(task, predictions, metrics=["qwk"])         # several models on shared resamples (analysis)
    metrics.fit_on_selection(task, results, "val", num_classes)   # HPA thresholds / ordinal cut points

Modules: `scoring` (point values, thresholds, cut points; its docstring gives every definition), `confidence`
(Clopper-Pearson and bootstrap intervals), `statistics` (each metric as a statistic of resample counts). No torch.
"""
from metrics.scoring import (
    DEFAULT_THRESHOLD,
    PRIMARY_METRIC,
    TASK_METRICS,
    accuracy,
    balanced_accuracy,
    bootstrap_distribution,
    choose_thresholds,
    clopper_pearson,
    fit_cutpoints,
    fit_decision,
    fit_on_selection,
    hard_predictions,
    intervals,
    macro_f1,
    micro_f1,
    paired_difference,
    quadratic_weighted_kappa,
    resample_indices,
    resampled_metric,
    roc_auc,
    score,
    score_with_intervals,
)

__all__ = ["DEFAULT_THRESHOLD", "PRIMARY_METRIC", "TASK_METRICS", "accuracy", "balanced_accuracy",
           "bootstrap_distribution", "choose_thresholds", "clopper_pearson", "fit_cutpoints", "fit_decision",
           "fit_on_selection", "intervals", "macro_f1", "micro_f1", "paired_difference", "hard_predictions",
           "quadratic_weighted_kappa", "resample_indices", "resampled_metric", "roc_auc", "score",
           "score_with_intervals"]
