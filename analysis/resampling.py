"""The resamples behind every interval of the analysis: one draw per dataset, shared by all of its models.

    seed = resampling.dataset_seed(0, "aptos")                       # the dataset's own seed
    ordered = resampling.in_sample_order(arrays)                     # predictions sorted by sample id
    results = resampling.scored_on_resamples(task, metric, sets, num_classes, level, n_boot, seed)

Why a seed per dataset: the benchmark score averages each dataset's metric, and its interval averages their
resampled values resample by resample; the datasets' resamples must be independent draws for that to be the
bootstrap of the average. `np.random.default_rng(seed)` draws with the same bits for every dataset size, so one
seed for all would draw correlated positions in every dataset. Each dataset therefore gets
`SeedSequence([seed, crc32(name)])`'s first 64-bit word.

Why in order of sample id: a resample is a row of sample indices (metrics.resample_indices), so two models share it
only when their samples are in the same order. Predictions are sorted by id before they are resampled; then a
model trained elsewhere on the same split (the same split file SHA-256), or published in a results file
(analysis/reference.py), is scored on the very same resamples as the models here, and neighbours' ranks are
compared resample by resample.
"""
from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterable
from typing import Any

import numpy as np

import metrics
from metrics.statistics import metric_statistic, point_value, prepare_split, resample_counts


def dataset_seed(seed: int, dataset: str) -> int:
    """The seed of `dataset`'s resamples: SeedSequence([seed, crc32(dataset name)])'s first 64-bit word."""
    sequence = np.random.SeedSequence([seed, zlib.crc32(dataset.encode("utf-8"))])
    return int(sequence.generate_state(1, dtype=np.uint64)[0])


def in_sample_order(arrays: dict[str, Any]) -> dict[str, Any]:
    """read_predictions' arrays with the samples sorted by id (the order resamples index)."""
    order = np.argsort(arrays["ids"].astype(str), kind="stable")
    return {**arrays, "ids": arrays["ids"][order], "labels": arrays["labels"][order],
            "scores": arrays["scores"][order]}


def ids_digest(ids: np.ndarray) -> str:
    """SHA-256 of the sample ids in the order resamples index them: equal digests, shared resamples."""
    return hashlib.sha256("\n".join(ids.astype(str)).encode("utf-8")).hexdigest()


def scored_on_resamples(task: str, metric: str, sets: Iterable[tuple], num_classes: int | None, level: float,
                        n_boot: int, seed: int, keep_replicates: bool = True) -> list[dict[str, Any]]:
    """For each prediction set (labels, scores, thresholds) of one dataset and split, `metric` with its interval
    and (`keep_replicates`) its values on the n_boot shared resamples ("replicates": float32, NaN where the metric
    is undefined on a resample). Accuracy without replicates needs no resampling at all.

    The interval is the one metrics.intervals gives for the same arrays and seed: Clopper-Pearson for accuracy,
    else the percentile interval of the resampled values (tests/test_benchmark_score.py checks both). Sets are read
    one at a time (a generator works); the resamples of one size are drawn and counted once for all of them.
    """
    prepared, correct, results = {}, {}, []
    for i, (labels, scores, thresholds) in enumerate(sets):
        split = prepare_split(task, labels, scores, thresholds, num_classes)
        statistic = metric_statistic(metric, split)
        n = len(split.labels)
        results.append({"value": point_value(statistic, n), "samples": n})
        if metric == "accuracy":
            correct.setdefault(n, {})[i] = split.labels == split.preds
            low, high = metrics.clopper_pearson(int(np.sum(correct[n][i])), n, level)
            results[i].update(low=low, high=high, method="clopper-pearson")
        if keep_replicates or metric != "accuracy":
            prepared.setdefault(n, {})[i] = statistic
    for n, statistics in prepared.items():
        if metric == "accuracy":
            values = _accuracy_on_resamples(correct[n], n, n_boot, seed)
        else:
            values = {i: [] for i in statistics}
            for indices in metrics.resample_indices(n, n_boot, seed):
                counts = resample_counts(indices, n)
                for i, statistic in statistics.items():
                    values[i].append(statistic(counts))
        for i, blocks in values.items():
            resampled = np.concatenate(blocks)
            if keep_replicates:
                results[i]["replicates"] = resampled.astype(np.float32)
            if metric != "accuracy":
                results[i].update(method="bootstrap", **percentile_interval(resampled, level))
    return results


GATHER_SETS = 3  # up to this many sets, accuracy is summed from the drawn indices; beyond, from counts (one product)


def _accuracy_on_resamples(correct: dict[int, np.ndarray], n: int, n_boot: int,
                           seed: int) -> dict[int, list[np.ndarray]]:
    """Accuracy of each set on the resamples, in blocks: the share of correct samples among the drawn ones, exactly
    metrics' accuracy statistic (an integer count over n). Few sets read the drawn indices directly; many share one
    count of the indices and one matrix product, where a product per set would read the counts once per set."""
    matrix = np.column_stack(list(correct.values())).astype(np.uint8)  # (n, sets)
    values: dict[int, list[np.ndarray]] = {i: [] for i in correct}
    for indices in metrics.resample_indices(n, n_boot, seed):
        if matrix.shape[1] <= GATHER_SETS:
            hits = matrix[indices].sum(axis=1, dtype=np.int64)  # (B, sets)
        else:
            counts = resample_counts(indices, n).counts  # float32 while exact, as metrics' statistics use it
            hits = counts @ matrix.astype(counts.dtype)
        for column, i in enumerate(correct):
            values[i].append(hits[:, column].astype(np.float64) / n)
    return values


def percentile_interval(values: np.ndarray, level: float) -> dict[str, float]:
    """The central `level` percentile interval of the defined values (NaN, NaN when none is defined)."""
    defined = values[~np.isnan(values)]
    if not len(defined):
        return {"low": float("nan"), "high": float("nan")}
    low, high = np.percentile(defined, [50 * (1 - level), 50 * (1 + level)])
    return {"low": float(low), "high": float(high)}
