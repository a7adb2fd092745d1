"""Appendix N: does the average over the other real-world datasets predict a dataset better than ImageNet? Nested
OLS F-tests (N.1), and Spearman correlations with a paired bootstrap test of their difference (N.2), read both ways
(n2_readings).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from analysis.selection import Best, best_by_model
from analysis.trends import SEPARATE_GROUPS, drawn_apart, logit, metric_scale, model_resamples

MIN_APPENDIX_N_DATASETS = 3  # each dataset needs at least two others to average
MIN_APPENDIX_N_MODELS = 5    # the full OLS model has 3 coefficients; its F-test needs 2 residual degrees of freedom
SIGNIFICANCE = 0.05          # the level at which the summary calls a test or correlation significant


# ---------------------------------------------------------------------------------------------------------------
# Appendix N: does the average over real-world datasets predict better than ImageNet?
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class OLSResult:
    coef: np.ndarray  # intercept first, then one per predictor column
    rss: float
    df_resid: int
    r2: float


def ols(y: np.ndarray, predictors: np.ndarray) -> OLSResult:
    """Ordinary least squares of y on an intercept plus the columns of `predictors` (n x k)."""
    y = np.asarray(y, dtype=float)
    design = np.column_stack([np.ones(len(y)), np.asarray(predictors, dtype=float).reshape(len(y), -1)])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design @ coef
    rss = float(residual @ residual)
    tss = float(((y - y.mean()) ** 2).sum())
    return OLSResult(coef=coef, rss=rss, df_resid=len(y) - design.shape[1], r2=1.0 - rss / tss if tss > 0 else math.nan)


def nested_f_test(restricted: OLSResult, full: OLSResult) -> dict[str, float]:
    """F-test that the predictors the full model adds to the restricted one explain nothing."""
    df_num = restricted.df_resid - full.df_resid
    f_value = ((restricted.rss - full.rss) / df_num) / (full.rss / full.df_resid)
    return {"F": float(f_value), "p": float(stats.f.sf(f_value, df_num, full.df_resid)),
            "df_num": df_num, "df_den": full.df_resid}


def standardise(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Zero mean and unit (sample, ddof=1) standard deviation across models (along `axis`)."""
    values = np.asarray(values, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (values - values.mean(axis=axis, keepdims=True)) / values.std(axis=axis, ddof=1, keepdims=True)


def rank_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row of a with the same row of b (ties get average ranks); NaN for a constant row."""
    ra, rb = stats.rankdata(a, axis=-1), stats.rankdata(b, axis=-1)
    ra, rb = ra - ra.mean(axis=-1, keepdims=True), rb - rb.mean(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (ra * rb).sum(axis=-1) / np.sqrt((ra * ra).sum(axis=-1) * (rb * rb).sum(axis=-1))


def spearman_difference(target: np.ndarray, imagenet: np.ndarray, others: Sequence[np.ndarray],
                        indices: np.ndarray) -> np.ndarray:
    """rho(target, average of the others) - rho(target, ImageNet) on each resample of models (a row of
    `indices`). Each resample standardises every other dataset before averaging, as the full set does."""
    average = np.mean([standardise(other[indices]) for other in others], axis=0)
    return rank_correlation(target[indices], average) - rank_correlation(target[indices], imagenet[indices])


def difference_test(target: np.ndarray, imagenet: np.ndarray, others: Sequence[np.ndarray], n_boot: int = 10000,
                    level: float = 0.95, seed: int = 0) -> dict[str, float]:
    """Does `target` correlate better (Spearman) with the average of `others` than with ImageNet? A paired bootstrap
    over models: both correlations on the same resamples; p is the one-sided share of resamples where the
    difference is <= 0 (resamples with a constant ranking are dropped)."""
    difference = float(spearman_difference(target, imagenet, others, np.arange(len(target))[None])[0])
    resampled = spearman_difference(target, imagenet, others, model_resamples(len(target), n_boot, seed))
    defined = resampled[~np.isnan(resampled)]
    low, high = np.quantile(defined, [(1 - level) / 2, (1 + level) / 2]) if len(defined) else (math.nan, math.nan)
    return {"difference": difference, "difference_low": float(low), "difference_high": float(high),
            "p_difference": float(np.mean(defined <= 0)) if len(defined) else math.nan, "n_boot_used": len(defined)}


def n2_readings(row: dict[str, float]) -> dict[str, bool]:
    """The two readings of Appendix N.2 for one dataset's Spearman row.

    The paper's sentence: "the correlation with the average over real-world datasets is higher than the correlation
    with ImageNet and statistically significant for CCT-20, APTOS, HPA, and Cassava": rho(average) > rho(ImageNet)
    and the Spearman test of rho(average) has p < SIGNIFICANCE (`higher_and_significant`). The stricter reading
    asks whether the difference itself is significant: the paired bootstrap's one-sided p_difference <
    SIGNIFICANCE (`difference_significant`). A dataset can pass the first and not the second.
    """
    return {"higher_and_significant": bool(row["rho_average"] > row["rho_imagenet"]
                                           and row["p_average"] < SIGNIFICANCE),
            "difference_significant": bool(row["p_difference"] < SIGNIFICANCE)}


def appendix_n(best: list[Best], datasets: Sequence[str], n_boot: int = 10000, level: float = 0.95,
               seed: int = 0) -> dict[str, Any]:
    """Nested OLS F-tests and Spearman correlations with their difference test over `datasets` (Appendix N).

    Each dataset's reported metric is logit-transformed and standardised across models, and so is ImageNet top-1.
    For each dataset d, three models of d's score: ImageNet only, the average of the other datasets' scores only,
    and both; F-tests ask whether the average adds to ImageNet and whether ImageNet adds to the average. Only
    models with a result and a known ImageNet top-1 on every dataset enter, and not the groups drawn apart from the
    trends (CLIP, not pretrained on ImageNet). The benchmark score (§6) is analysis/benchmark.py's.
    """
    datasets = list(datasets)
    result: dict[str, Any] = {"datasets": datasets, "models": [], "left_out": [], "ols": [], "f_tests": [],
                              "spearman": [], "note": None}
    if len(datasets) < MIN_APPENDIX_N_DATASETS:
        result["note"] = (f"skipped: needs at least {MIN_APPENDIX_N_DATASETS} datasets, has {len(datasets)} "
                          f"({', '.join(datasets) or 'none'})")
        return result
    table = best_by_model(best, datasets)
    included = []
    for model in sorted(table):
        absent = [d for d in datasets if d not in table[model]]
        one = next(iter(table[model].values()))
        if drawn_apart(one):
            result["left_out"].append({"model": model, "reason": f"{SEPARATE_GROUPS[one.group]}; Appendix N covers "
                                                                 f"ImageNet models"})
        elif absent:
            result["left_out"].append({"model": model, "reason": f"no result on {', '.join(absent)}"})
        elif one.imagenet_top1 is None:
            result["left_out"].append({"model": model, "reason": "unknown ImageNet top-1"})
        else:
            included.append(model)
    result["models"] = included
    if len(included) < MIN_APPENDIX_N_MODELS:
        result["note"] = (f"skipped: needs at least {MIN_APPENDIX_N_MODELS} models present on every dataset, has "
                          f"{len(included)}")
        return result

    raw = {d: np.array([table[m][d].report_value for m in included]) for d in datasets}
    top1 = np.array([table[m][datasets[0]].imagenet_top1 for m in included])
    flat = [name for name, values in [("ImageNet top-1", top1), *raw.items()] if np.ptp(values) == 0]
    if flat:
        result["note"] = f"skipped: every model has the same value on {', '.join(flat)}, which cannot be standardised"
        return result
    percent = {d: raw[d] * metric_scale(raw[d]) for d in datasets}
    logits = {d: logit(percent[d]) for d in datasets}
    z = {d: standardise(logits[d]) for d in datasets}
    z_imagenet = standardise(logit(top1))
    for d in datasets:
        others = np.mean([z[o] for o in datasets if o != d], axis=0)
        fits = {"imagenet": ols(z[d], z_imagenet), "average": ols(z[d], others),
                "both": ols(z[d], np.column_stack([z_imagenet, others]))}
        for name, fit in fits.items():
            coef = fit.coef.tolist()
            result["ols"].append({"dataset": d, "model": name, "intercept": coef[0],
                                  "imagenet_coef": coef[1] if name != "average" else math.nan,
                                  "average_coef": coef[-1] if name != "imagenet" else math.nan,
                                  "r2": fit.r2, "rss": fit.rss, "df_resid": fit.df_resid})
        for question, restricted in (("average adds to ImageNet", "imagenet"), ("ImageNet adds to average", "average")):
            result["f_tests"].append({"dataset": d, "test": question, **nested_f_test(fits[restricted], fits["both"])})
        with_imagenet, with_average = stats.spearmanr(raw[d], top1), stats.spearmanr(z[d], others)
        row = {"dataset": d, "rho_imagenet": float(with_imagenet.statistic), "p_imagenet": float(with_imagenet.pvalue),
               "rho_average": float(with_average.statistic), "p_average": float(with_average.pvalue),
               **difference_test(logits[d], top1, [logits[o] for o in datasets if o != d], n_boot=n_boot,
                                 level=level, seed=seed)}
        result["spearman"].append({**row, **n2_readings(row)})

    return result
