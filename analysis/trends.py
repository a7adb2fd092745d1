"""Trend fits: each dataset's metric against ImageNet top-1 (Figure 1, Table 2) and against model size (App. L).

The paper fits a line to the chosen models' metric against ImageNet top-1, once over all models and once over the
models above 70% top-1, on 0-100 axes, and reads a slope below 0.05 as no meaningful progress. Here each fit also
gets a percentile bootstrap interval over models for its slope and Pearson r, and (analyze.py --logit) a version
on logit axes. Model size is fitted the same way against log10(parameter count): the slope is the gain per
tenfold parameters. A smoothing spline (the paper's curved trends) is fitted for the spline figures.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from scipy import interpolate, stats

from analysis.reading import dataset_order
from analysis.selection import Best

MIN_FIT_MODELS = 3          # fewer points give no meaningful slope or correlation
MIN_SPLINE_MODELS = 4       # a cubic spline needs more distinct points than its degree
LOGIT_EPS = 1e-3            # metrics are clipped to [eps, 1 - eps] before the logit, so that 0% and 100% stay finite


def metric_scale(values: Sequence[float]) -> float:
    """100 for metrics stored as fractions (all within [-1, 1]; QWK can be negative), 1 for percentages."""
    return 100.0 if all(abs(v) <= 1.0 for v in values) else 1.0


def logit(percent: np.ndarray | Sequence[float]) -> np.ndarray:
    """logit of a percentage, clipped to [LOGIT_EPS, 1 - LOGIT_EPS] so that 0% and 100% stay finite."""
    p = np.clip(np.asarray(percent, dtype=float) / 100.0, LOGIT_EPS, 1.0 - LOGIT_EPS)
    return np.log(p / (1.0 - p))


def model_resamples(count: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, count) indices of models drawn with replacement: the bootstrap over models of every fit and test."""
    return np.random.default_rng(seed).integers(0, count, size=(n_boot, count))


def fit_trend(x: Sequence[float], y: Sequence[float], n_boot: int = 10000, level: float = 0.95,
              seed: int = 0) -> dict[str, float]:
    """Least-squares line y = intercept + slope * x, Pearson r, and percentile bootstrap intervals over points.

    Resamples in which all x (or, for r, all y) are equal are dropped from the interval. Fewer than
    MIN_FIT_MODELS points, or no spread in x, give NaN everywhere but n.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    result = {"n": len(x), "slope": math.nan, "intercept": math.nan, "r": math.nan, "r_p": math.nan,
              "slope_low": math.nan, "slope_high": math.nan, "r_low": math.nan, "r_high": math.nan}
    if len(x) < MIN_FIT_MODELS or np.ptp(x) == 0:
        return result
    slope, intercept = np.polyfit(x, y, 1)
    result.update(slope=float(slope), intercept=float(intercept))
    if np.ptp(y) > 0:
        pearson = stats.pearsonr(x, y)
        result.update(r=float(pearson.statistic), r_p=float(pearson.pvalue))

    index = model_resamples(len(x), n_boot, seed)
    xb, yb = x[index], y[index]
    xc, yc = xb - xb.mean(axis=1, keepdims=True), yb - yb.mean(axis=1, keepdims=True)
    sxx, syy, sxy = (xc * xc).sum(axis=1), (yc * yc).sum(axis=1), (xc * yc).sum(axis=1)
    tiny = 1e-12 * max(1.0, float(np.abs(x).max()), float(np.abs(y).max())) ** 2
    quantiles = [(1 - level) / 2, (1 + level) / 2]
    ok = sxx > tiny
    if ok.any():
        result["slope_low"], result["slope_high"] = np.quantile(sxy[ok] / sxx[ok], quantiles).tolist()
    ok &= syy > tiny
    if ok.any():
        result["r_low"], result["r_high"] = np.quantile(sxy[ok] / np.sqrt(sxx[ok] * syy[ok]), quantiles).tolist()
    return result


# Models drawn beside the trends but not fitted, by models.py group, and why: the paper's Figure 8 places the CLIP
# towers (trained on image-text pairs, fine-tuned with LP-FT) against the trends of the ImageNet models.
SEPARATE_GROUPS = {"clip": "CLIP: pretrained on image-text pairs, not ImageNet"}


def drawn_apart(row: Best) -> bool:
    """Whether a chosen row belongs to a group drawn apart from the ImageNet models: in no fit (top-1, size) and
    not in Appendix N."""
    return row.group in SEPARATE_GROUPS


def fit_points(best: list[Best], dataset: str) -> list[Best]:
    """The chosen rows of a dataset that can enter a fit: known ImageNet top-1, not a separately drawn group."""
    return [b for b in best if b.dataset == dataset and b.imagenet_top1 is not None and not drawn_apart(b)]


def separate_points(best: list[Best], dataset: str) -> list[Best]:
    """The chosen rows of a dataset drawn apart from the fits (the CLIP towers), with a known ImageNet top-1."""
    return [b for b in best if b.dataset == dataset and b.imagenet_top1 is not None and drawn_apart(b)]


def _fits(points: list[Best], x: np.ndarray, y: np.ndarray, above: np.ndarray, threshold: float, n_boot: int,
          level: float, seed: int) -> list[tuple[str, dict[str, Any], np.ndarray]]:
    """(subset, fit, mask) for all models and for those above the ImageNet top-1 threshold."""
    subsets = (("all", np.ones(len(points), bool)), (f"top1>{threshold:g}", above))
    return [(subset, fit_trend(x[mask], y[mask], n_boot=n_boot, level=level, seed=seed), mask)
            for subset, mask in subsets]


def trend_fits(best: list[Best], threshold: float = 70.0, slope_threshold: float = 0.05, use_logit: bool = False,
               n_boot: int = 10000, level: float = 0.95, seed: int = 0) -> list[dict[str, Any]]:
    """Per dataset, the reported metric regressed on ImageNet top-1, for all models and for those above
    `threshold`, on 0-100 axes (and on logit axes when `use_logit`).

    `no_progress` is the paper's reading of a linear slope below `slope_threshold` (None for logit fits).
    """
    rows = []
    for dataset in sorted({b.dataset for b in best}, key=dataset_order):
        points = fit_points(best, dataset)
        if not points:
            continue
        scale = metric_scale([b.report_value for b in points])
        x = np.array([b.imagenet_top1 for b in points])
        y = np.array([b.report_value for b in points]) * scale
        axes = [("linear", x, y)] + ([("logit", logit(x), logit(y))] if use_logit else [])
        for axis, xs, ys in axes:
            for subset, fit, mask in _fits(points, xs, ys, x > threshold, threshold, n_boot, level, seed):
                no_progress = bool(fit["slope"] < slope_threshold) if axis == "linear" and fit["n"] >= MIN_FIT_MODELS \
                    and not math.isnan(fit["slope"]) else None
                rows.append({"dataset": dataset, "metric": points[0].metric, "split": points[0].report_split,
                             "axes": axis, "subset": subset, **fit, "no_progress": no_progress,
                             "metric_scale": scale,
                             "models": ",".join(b.model for b, m in zip(points, mask) if m),
                             "random_init": ",".join(b.model for b, m in zip(points, mask) if m and b.random_init),
                             "new": ",".join(b.model for b, m in zip(points, mask) if m and b.new)})
    return rows


def size_fits(best: list[Best], threshold: float = 70.0, n_boot: int = 10000, level: float = 0.95,
              seed: int = 0) -> list[dict[str, Any]]:
    """Per dataset, the reported metric (0-100) regressed on log10(parameter count), for all models with a known
    count and for those above the ImageNet top-1 threshold (App. L): the slope is the gain per tenfold parameters.
    Groups drawn apart (CLIP) are left out, as in the top-1 fits."""
    rows = []
    for dataset in sorted({b.dataset for b in best}, key=dataset_order):
        points = [b for b in best if b.dataset == dataset and b.params is not None and b.params > 0
                  and not drawn_apart(b)]
        if not points:
            continue
        scale = metric_scale([b.report_value for b in points])
        x = np.log10([b.params for b in points])
        y = np.array([b.report_value for b in points]) * scale
        above = np.array([b.imagenet_top1 is not None and b.imagenet_top1 > threshold for b in points])
        for subset, fit, mask in _fits(points, x, y, above, threshold, n_boot, level, seed):
            rows.append({"dataset": dataset, "metric": points[0].metric, "split": points[0].report_split,
                         "x": "log10(parameters)", "subset": subset, **fit, "metric_scale": scale,
                         "models": ",".join(b.model for b, m in zip(points, mask) if m)})
    return rows


def smoothing_spline(x: np.ndarray, y: np.ndarray, sigma: np.ndarray) -> interpolate.UnivariateSpline:
    """A cubic smoothing spline of y on x; `sigma` is each point's sampling error (0 where unknown).

    A point's error is its sampling error plus the scatter of models around the linear trend beyond sampling
    error (estimated from the line's residuals). With weights 1/error and a smoothing factor equal to the number
    of points (FITPACK's recommendation), the curve bends only where the data bend more than models scatter.
    """
    x, y, sigma = (np.asarray(v, dtype=float) for v in (x, y, sigma))
    residual = y - np.polyval(np.polyfit(x, y, 1), x)
    scatter = max(0.0, float(residual @ residual) / max(len(x) - 2, 1) - float(np.mean(sigma ** 2)))
    # UnivariateSpline needs strictly increasing x: models with the same top-1 are averaged
    distinct = np.unique(x)
    y_mean = np.array([y[x == v].mean() for v in distinct])
    error = np.array([math.sqrt((np.mean(sigma[x == v] ** 2) + scatter) / np.sum(x == v)) for v in distinct])
    error = np.maximum(error, 1e-9 * (np.ptp(y) or 1.0))
    return interpolate.UnivariateSpline(distinct, y_mean, w=1.0 / error, k=3, s=len(distinct))
