"""The paper's benchmark score (§6) with a 95% interval and ranks you can trust.

    board = benchmark.leaderboard(best, datasets, replicates, level=0.95)   # rows, best first, and a note

The paper ends: "we suggest simply using the average accuracy across our tasks as a benchmark for future
representation learning research". A model's score is the plain average over the datasets of its reported-split
metric on 0-100 (each dataset's own metric, x100 when stored as a fraction, as the trend fits use it; README "Where
we deviate" has the literal accuracy reading, `--metric accuracy`).

The interval: each dataset's test samples are resampled with replacement (analysis/resampling.py: one draw per
dataset, its own seed, shared by every model of that dataset, independent across datasets); on resample b the
model's score is the average over datasets of its metric on that dataset's b-th resample, and the interval is the
central 95% of those averages (percentile bootstrap). Resamples on which a dataset's metric is undefined are
dropped from that model's interval (the row says how many were used). Because every model sees the same resamples,
neighbours are compared resample by resample: `p_above_next` is the share of resamples on which the model scores
above the next one down (ties count half), and `rank_low`-`rank_high` the central 95% of its rank across resamples.
The score measures sampling error of the test sets only: the choice of configuration and the training run's own
randomness are not resampled.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

from analysis.appendix_n import standardise
from analysis.resampling import percentile_interval
from analysis.selection import Best, best_by_model
from analysis.trends import logit, metric_scale


def leaderboard(best: list[Best], datasets: Sequence[str], replicates: dict[tuple[str, str], np.ndarray],
                level: float = 0.95) -> dict[str, Any]:
    """Every model with a result on each of `datasets`, ranked by its benchmark score, with the score's interval,
    the probability it ranks above the next model and its rank interval. Returns {"datasets", "rows",
    "left_out": [{"model", "reason"}], "note"} (note: why there are no rows)."""
    datasets = list(datasets)
    result: dict[str, Any] = {"datasets": datasets, "rows": [], "left_out": [], "note": None}
    if not datasets:
        result["note"] = "no dataset to score (with 'all', the benchmark averages the real-world datasets present)"
        return result
    table = best_by_model(best, datasets)
    models = []
    for model in sorted(table):
        absent = [d for d in datasets if d not in table[model]]
        if absent:
            result["left_out"].append({"model": model, "reason": f"no result on {', '.join(absent)}"})
        else:
            models.append(model)
    if not models:
        result["note"] = f"no model has a result on every dataset ({', '.join(datasets)})"
        return result

    scale = {d: metric_scale([table[m][d].report_value for m in table if d in table[m]]) for d in datasets}
    percent = {d: np.array([table[m][d].report_value * scale[d] for m in models]) for d in datasets}
    score = np.mean([percent[d] for d in datasets], axis=0)
    resampled = _resampled_scores(models, datasets, replicates, scale)
    z_score = _standardised_logit_score(percent)
    order = sorted(range(len(models)), key=lambda i: (-score[i], -np.nan_to_num(z_score[i], nan=-np.inf), models[i]))
    ranks = _resampled_ranks([resampled[models[i]] for i in order], level)
    top1 = {m: next(iter(table[m].values())).imagenet_top1 for m in models}
    known = [m for m in models if top1[m] is not None]
    imagenet_rank = dict(zip(known, stats.rankdata([-top1[m] for m in known], method="min").astype(int)))
    for position, i in enumerate(order):
        model, first = models[i], table[models[i]][datasets[0]]
        values = resampled[model]
        interval = percentile_interval(values, level) if values is not None else {"low": math.nan, "high": math.nan}
        last = position + 1 == len(order)
        result["rows"].append({
            "rank": position + 1, "model": model, "new": any(table[model][d].new for d in datasets),
            "origin": first.origin, "group": first.group, "random_init": any(table[model][d].random_init
                                                                             for d in datasets),
            "score": float(score[i]), "score_low": interval["low"], "score_high": interval["high"],
            "n_boot_used": int(np.sum(~np.isnan(values))) if values is not None else 0,
            "p_above_next": None if last else _share_above(values, resampled[models[order[position + 1]]]),
            "rank_low": ranks[position][0], "rank_high": ranks[position][1],
            "standardised_logit_score": float(z_score[i]), "imagenet_top1": top1[model],
            "imagenet_rank": int(imagenet_rank[model]) if model in imagenet_rank else None,
            "top1_source": first.top1_source,
            **{d: float(percent[d][i]) for d in datasets}})
    return result


def _resampled_scores(models: list[str], datasets: list[str], replicates: dict[tuple[str, str], np.ndarray],
                      scale: dict[str, float]) -> dict[str, np.ndarray | None]:
    """Each model's score on every resample (float64; NaN where a dataset's metric is undefined on it); None for a
    model lacking a dataset's resampled values (no predictions file)."""
    resampled = {}
    for model in models:
        arrays = [replicates.get((d, model)) for d in datasets]
        if any(a is None for a in arrays) or len({len(a) for a in arrays}) != 1:
            resampled[model] = None
            continue
        resampled[model] = np.mean([a.astype(np.float64) * scale[d] for a, d in zip(arrays, datasets)], axis=0)
    return resampled


def _share_above(values: np.ndarray | None, below: np.ndarray | None) -> float:
    """The share of resamples on which `values` is above `below` (ties count half; resamples where either is
    undefined are left out); NaN without resampled values for both."""
    if values is None or below is None or len(values) != len(below):
        return math.nan
    defined = ~(np.isnan(values) | np.isnan(below))
    if not defined.any():
        return math.nan
    a, b = values[defined], below[defined]
    return float(np.mean((a > b) + 0.5 * (a == b)))


def _resampled_ranks(ordered: list[np.ndarray | None], level: float = 0.95) -> list[tuple[float, float]]:
    """The central `level` range of each model's rank (1 = best) across the resamples on which every model with
    resampled scores is defined; NaN for models without them."""
    have = [i for i, values in enumerate(ordered) if values is not None]
    result = [(math.nan, math.nan)] * len(ordered)
    if not have or len({len(ordered[i]) for i in have}) != 1:
        return result
    matrix = np.column_stack([ordered[i] for i in have])
    matrix = matrix[~np.isnan(matrix).any(axis=1)]
    if not len(matrix):
        return result
    ranks = stats.rankdata(-matrix, axis=1, method="average")
    low = np.percentile(ranks, 50 * (1 - level), axis=0, method="lower")
    high = np.percentile(ranks, 50 * (1 + level), axis=0, method="higher")
    for column, i in enumerate(have):
        result[i] = (float(low[column]), float(high[column]))
    return result


def _standardised_logit_score(percent: dict[str, np.ndarray]) -> np.ndarray:
    """The average over datasets of each model's logit metric standardised across the models (Appendix N's scale);
    NaN where a dataset has fewer than two models or no spread."""
    return np.mean([standardise(logit(values)) if len(values) > 1 else np.full(len(values), np.nan)
                    for values in percent.values()], axis=0)
