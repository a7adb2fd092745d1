"""95% intervals of the metrics: Clopper-Pearson for accuracy, a seeded percentile bootstrap for the others.

    metrics.score_with_intervals(task, labels, scores)        # every metric of a task, each with its interval
    metrics.intervals(task, predictions, metrics=["qwk"])     # several models' predictions on shared resamples
    metrics.paired_difference(task, "roc_auc", labels, a, b)  # the interval of a difference between two models

(The metrics package exports them: import metrics, not this module; metrics/scoring.py gives the definitions.) A
resample is an index matrix row; each metric is computed for a whole block of resamples at once from count-weighted
sums (metrics/statistics.py), so 10,000
resamples take seconds. A resample on which a metric is undefined is dropped from the percentiles, and the entry
says how many were used and dropped.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from metrics.statistics import (
    TASK_METRICS,
    Statistic,
    check_metric,
    metric_statistic,
    point_value,
    prepare_split,
    resample_counts,
)

# Resamples are drawn and scored in blocks of about this many drawn indices: large enough that numpy's per-call
# cost vanishes, small enough that a block's few (B, N) arrays take about 30 MB together.
BLOCK_ELEMENTS = 2 ** 20


# ---------------------------------------------------------------------------------------------------------------
# Intervals
# ---------------------------------------------------------------------------------------------------------------

def clopper_pearson(successes: int, trials: int, level: float = 0.95) -> tuple[float, float]:
    """Exact binomial interval for successes / trials."""
    _check_level(level)
    if trials <= 0 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials and trials > 0, got {successes} of {trials}")
    alpha = 1 - level
    from scipy.stats import beta  # here: scipy.stats takes half a second to import, and training never needs it

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
    block = max(1, BLOCK_ELEMENTS // n)
    for start in range(0, n_boot, block):
        yield rng.integers(0, n, size=(min(block, n_boot - start), n), dtype=np.int32)


def resampled_metric(task: str, metric: str, labels, scores, indices, thresholds=None,
                     num_classes: int | None = None) -> np.ndarray:
    """The metric on each row of `indices` (B, N): row b is scored on labels[indices[b]], scores[indices[b]]."""
    split = prepare_split(task, labels, scores, thresholds, num_classes)
    check_metric(task, metric)
    indices = np.asarray(indices)
    n = len(split.labels)
    if indices.ndim != 2 or indices.size == 0 or indices.min() < 0 or indices.max() >= n:
        raise ValueError(f"indices must be a non-empty (B, N) matrix of sample indices in 0..{n - 1}")
    return metric_statistic(metric, split)(resample_counts(indices, n))


def _bootstrap(statistics: dict, n: int, n_boot: int, seed: int) -> dict:
    """Every statistic on the same n_boot resamples of n samples."""
    blocks = {name: [] for name in statistics}
    for indices in resample_indices(n, n_boot, seed):
        counts = resample_counts(indices, n)
        for name, statistic in statistics.items():
            blocks[name].append(statistic(counts))
    return {name: np.concatenate(values) for name, values in blocks.items()}


def bootstrap_distribution(task: str, labels, scores, thresholds=None, num_classes: int | None = None,
                           metrics: list[str] | None = None, n_boot: int = 10000,
                           seed: int = 0) -> dict[str, np.ndarray]:
    """{metric: (n_boot,) values on the resamples}, NaN where the metric is undefined on a resample.

    All metrics see the same resamples; metrics defaults to TASK_METRICS[task].
    """
    split = prepare_split(task, labels, scores, thresholds, num_classes)
    metrics = TASK_METRICS[task] if metrics is None else metrics
    for metric in metrics:
        check_metric(task, metric)
    return _bootstrap({metric: metric_statistic(metric, split) for metric in metrics}, len(split.labels), n_boot, seed)


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
        check_metric(task, metric)
    results: list[dict[str, dict]] = []
    to_bootstrap: dict[int, dict[tuple[int, str], Statistic]] = {}  # samples -> (set, metric) -> statistic
    for i, (labels, scores, thresholds) in enumerate(predictions):
        split = prepare_split(task, labels, scores, thresholds, num_classes)
        n = len(split.labels)
        results.append({})
        for metric in metrics:
            chosen = metric_statistic(metric, split)
            results[i][metric] = {"value": point_value(chosen, n), "level": level}
            if metric == "accuracy":
                low, high = clopper_pearson(int(np.sum(split.labels == split.preds)), n, level)
                results[i][metric].update(low=low, high=high, method="clopper-pearson")
            else:
                to_bootstrap.setdefault(n, {})[(i, metric)] = chosen
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
    split_a = prepare_split(task, labels, scores_a, thresholds_a, num_classes)
    split_b = prepare_split(task, labels, scores_b, thresholds_b, num_classes)
    check_metric(task, metric)
    n = len(split_a.labels)
    statistics = {"a": metric_statistic(metric, split_a), "b": metric_statistic(metric, split_b)}
    value = point_value(statistics["a"], n) - point_value(statistics["b"], n)
    resampled = _bootstrap(statistics, n, n_boot, seed)
    differences = resampled["a"] - resampled["b"]
    interval = _percentile_interval(differences, level)
    defined = differences[~np.isnan(differences)]
    p_value = min(1.0, 2 * min(np.mean(defined <= 0), np.mean(defined >= 0))) if len(defined) else np.nan
    return {"value": float(value), **interval, "p_value": float(p_value), "method": "paired bootstrap",
            "level": level}
