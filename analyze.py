"""Turn a finished grid of run records into the paper's answer: does ImageNet accuracy predict real-world accuracy?

    python analyze.py runs/*.json                          # -> reports/report.md, tables/*.csv, analysis.json, figures/
    python analyze.py runs/ --datasets cct20,aptos,hpa --threshold 70 --logit --out reports/grid1
    python analyze.py runs/ --metric accuracy --datasets aptos,melanoma   # Appendix H: another metric

The steps, in the order they run (each a plain function in the module named):
  1. runrecords.load_runs       read every run record; unreadable, foreign, other-version and still-running files
                                are named and skipped; runs successive halving stopped are counted in one note
  2. selection.select_best      per (dataset, model) the configuration with the best selection-split metric, with
                                intervals from its saved predictions (only the analysed metric is bootstrapped);
                                grid_coverage lists diverged, failed and missing configurations
  3. trends.trend_fits          per dataset, the metric regressed on ImageNet top-1 for all models and for models
                                above the threshold (Figure 1 / Table 2); trends.size_fits against model size
  4. appendix_n (here)          does the average over the other real-world datasets predict a dataset better than
                                ImageNet? Nested OLS F-tests, Spearman correlations and a paired bootstrap test of
                                their difference (N.2), and the benchmark score leaderboard
  5. report.write_outputs       Markdown report, a CSV per table, analysis.json, figures (figures.py) as PNG and PDF

The reported split is the paper's, as the dataset registry says (HPA: val, where its thresholds are chosen, with
test_val shown beside it). No torch is imported.
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from matplotlib.figure import Figure
from scipy import stats

import cli
import errors
import figures as plots
import report
from data import REAL_WORLD
from runrecords import (COMPARED_SETTINGS, GRID_KEYS, dataset_order, expand_inputs, filter_runs, load_runs,
                        runs_with_metric)
from selection import Best, attach_intervals, compare_by, grid_coverage, mixed_settings, model_facts, select_best
from trends import (MIN_FIT_MODELS, MIN_SPLINE_MODELS, SEPARATE_GROUPS, drawn_apart, fit_points, logit, metric_scale,
                    model_resamples, size_fits, smoothing_spline, trend_fits)

MIN_APPENDIX_N_DATASETS = 3  # each dataset needs at least two others to average
MIN_APPENDIX_N_MODELS = 5    # the full OLS model has 3 coefficients; its F-test needs 2 residual degrees of freedom


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


def appendix_n(best: list[Best], datasets: Sequence[str], n_boot: int = 10000, level: float = 0.95,
               seed: int = 0) -> dict[str, Any]:
    """Nested OLS F-tests, Spearman correlations with their difference test, and the benchmark score over
    `datasets` (Appendix N, §6).

    Each dataset's reported metric is logit-transformed and standardised across models, and so is ImageNet top-1.
    For each dataset d, three models of d's score: ImageNet only, the average of the other datasets' scores only,
    and both; F-tests ask whether the average adds to ImageNet and whether ImageNet adds to the average. Only
    models with a result and a known ImageNet top-1 on every dataset enter, and not the groups drawn apart from the
    trends (CLIP, not pretrained on ImageNet). The leaderboard ranks models by the
    paper's benchmark score, "simply using the average accuracy across our tasks" [§6]: the plain average of each
    dataset's metric on 0-100, with the average standardised logit score beside it.
    """
    datasets = list(datasets)
    result: dict[str, Any] = {"datasets": datasets, "models": [], "left_out": [], "ols": [], "f_tests": [],
                              "spearman": [], "leaderboard": [], "note": None}
    if len(datasets) < MIN_APPENDIX_N_DATASETS:
        result["note"] = (f"skipped: needs at least {MIN_APPENDIX_N_DATASETS} datasets, has {len(datasets)} "
                          f"({', '.join(datasets) or 'none'})")
        return result
    table: dict[str, dict[str, Best]] = {}
    for row in best:
        if row.dataset in datasets:
            table.setdefault(row.model, {})[row.dataset] = row
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
        result["spearman"].append({"dataset": d, "rho_imagenet": float(with_imagenet.statistic),
                                   "p_imagenet": float(with_imagenet.pvalue),
                                   "rho_average": float(with_average.statistic),
                                   "p_average": float(with_average.pvalue),
                                   **difference_test(logits[d], top1, [logits[o] for o in datasets if o != d],
                                                     n_boot=n_boot, level=level, seed=seed)})

    score = np.mean([percent[d] for d in datasets], axis=0)
    z_score = np.mean([z[d] for d in datasets], axis=0)
    order = np.lexsort((-z_score, -score))  # by the paper's score; the standardised one breaks a tie
    imagenet_rank = stats.rankdata(-top1, method="min")
    for rank, i in enumerate(order, start=1):
        result["leaderboard"].append({"rank": rank, "model": included[i], "score": float(score[i]),
                                      "standardised_logit_score": float(z_score[i]), "imagenet_top1": float(top1[i]),
                                      "imagenet_rank": int(imagenet_rank[i]),
                                      **{d: float(percent[d][i]) for d in datasets},
                                      **{f"z_{d}": float(z[d][i]) for d in datasets}})
    return result


# ---------------------------------------------------------------------------------------------------------------
# The whole analysis
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class Analysis:
    settings: dict[str, Any]
    inputs: list[str]
    warnings: list[str]
    notes: list[str]
    best: list[Best]
    coverage: dict[str, list[dict[str, Any]]]
    unknown_top1: list[str]
    trends: list[dict[str, Any]]
    size_trends: list[dict[str, Any]]
    appendix_n: dict[str, Any]
    comparison: dict[str, Any] | None = None  # --compare KEY: {"key", "rows"} (Appendix G)


def analyze(paths: Sequence[str | Path], datasets: Sequence[str] | None = None,
            model_names: Sequence[str] | None = None, metric: str | None = None, threshold: float = 70.0,
            slope_threshold: float = 0.05, use_logit: bool = False, n_boot: int = 10000, level: float = 0.95,
            seed: int = 0, grid: str = "per-optimizer", compare: str | None = None) -> Analysis:
    """Every table and number of the analysis, from run record paths (files or folders).

    Raises errors.UsageError when --datasets or --models name something no record has, or no dataset's records
    hold `metric`.
    """
    settings = {"datasets": list(datasets) if datasets else None, "models": list(model_names) if model_names else None,
                "metric": metric, "threshold": threshold, "slope_threshold": slope_threshold, "logit": use_logit,
                "n_boot": n_boot, "level": level, "seed": seed, "grid": grid, "compare": compare}
    inputs = [str(p) for p in expand_inputs(paths)]
    runs, warnings = load_runs(paths)
    runs = filter_runs(runs, datasets, model_names)
    if metric is not None and any(r.status == "complete" for r in runs):
        runs, metric_warnings = runs_with_metric(runs, metric)
        warnings += metric_warnings
    notes = []
    halved = sum(run.stopped_by_halving for run in runs)
    if halved:
        notes.append(f"{halved} run(s) stopped early by successive halving (grid.py run --halving), not counted: "
                     f"other configurations of their model did better at an earlier epoch; their configurations are "
                     f"not listed as missing")

    facts = model_facts(runs)
    unknown_top1 = [name for name, fact in facts.items() if fact.imagenet_top1 is None]
    untrained = sorted({r.model for r in runs if r.weights_loaded in ("random", False)})
    if untrained:
        notes.append(f"trained from random initialisation (weights_loaded random), so ImageNet top-1 does not "
                     f"describe them: {', '.join(untrained)}")
    from_file = sorted({r.model for r in runs if str(r.weights_loaded).startswith("file:")})
    if from_file:
        notes.append(f"fine-tuned from weights files, whose ImageNet top-1 may differ from the one used here: "
                     f"{', '.join(from_file)}")
    best = select_best(runs, facts, metric)
    warnings += mixed_settings(runs, best)
    warnings += attach_intervals(best, runs, level=level, n_boot=n_boot, seed=seed)
    trends = trend_fits(best, threshold, slope_threshold, use_logit, n_boot=n_boot, level=level, seed=seed)
    for dataset in sorted({b.dataset for b in best}, key=dataset_order):
        if len(fit_points(best, dataset)) < MIN_FIT_MODELS:
            notes.append(f"{dataset}: no trend fit, fewer than {MIN_FIT_MODELS} models with a known ImageNet top-1")

    present = sorted({b.dataset for b in best}, key=dataset_order)
    chosen = present if datasets else [d for d in present if d in REAL_WORLD]
    part_n = appendix_n(best, chosen, n_boot=n_boot, level=level, seed=seed)
    if part_n["note"]:
        controls = [d for d in present if d not in chosen]
        notes.append(f"Appendix N {part_n['note']}" + (f" (not real-world, so left out: {', '.join(controls)}; "
                                                       f"--datasets picks datasets explicitly)" if controls else ""))
    apart = sorted({b.model for b in best if drawn_apart(b) and b.imagenet_top1 is not None})
    if apart:
        notes.append(f"drawn beside the trends and left out of the fits and Appendix N, as the paper's Figure 8 "
                     f"does: {', '.join(apart)} (their ImageNet top-1 and its source: python models.py --json)")
    comparison = {"key": compare, "rows": compare_by(runs, compare, metric)} if compare else None
    return Analysis(settings=settings, inputs=inputs, warnings=warnings, notes=notes, best=best,
                    coverage=grid_coverage(runs, grid), unknown_top1=unknown_top1, trends=trends,
                    size_trends=size_fits(best, threshold, n_boot=n_boot, level=level, seed=seed), appendix_n=part_n,
                    comparison=comparison)


def make_figures(analysis: Analysis) -> tuple[dict[str, Callable[[], Figure]], list[str]]:
    """Figure 1 (and its logit version with --logit), a spline figure per dataset and the model-size figure: a
    function drawing each, by file stem (report.write_outputs draws and saves them one at a time, so that only
    one is held in memory); and a note for each figure that cannot be drawn."""
    best, settings = analysis.best, analysis.settings
    drawers: dict[str, Callable[[], Figure]] = {}
    notes = []
    if any(b.imagenet_top1 is not None for b in best):
        drawers["figure1"] = partial(plots.plot_trends, best, analysis.trends, settings["threshold"])
        if settings["logit"]:
            drawers["figure1-logit"] = partial(plots.plot_trends, best, analysis.trends, settings["threshold"],
                                               axes_kind="logit")
    numbers = plots.model_numbers(best)
    for dataset in sorted({b.dataset for b in best}, key=dataset_order):
        points = sorted(fit_points(best, dataset), key=lambda b: b.imagenet_top1)
        distinct = len({b.imagenet_top1 for b in points})
        if distinct < MIN_SPLINE_MODELS:
            notes.append(f"{dataset}: spline skipped, {distinct} distinct ImageNet top-1 values "
                         f"(needs {MIN_SPLINE_MODELS})")
            continue
        drawers[f"spline-{dataset}"] = partial(_spline_figure, points, numbers, settings["level"])
    if any(b.params is not None and b.params > 0 for b in best):
        drawers["model-size"] = partial(plots.plot_model_size, best, analysis.size_trends, settings["threshold"])
    unknown = sorted({b.model for b in best if b.params is None or b.params <= 0})
    if unknown:
        notes.append(f"left out of the model-size figure (unknown parameter count): {', '.join(unknown)}")
    return drawers, notes


def _spline_figure(points: list[Best], numbers: dict[str, int], level: float) -> Figure:
    """A dataset's points (sorted by ImageNet top-1) with the smoothing spline through them."""
    scale = metric_scale([b.report_value for b in points])
    x = np.array([b.imagenet_top1 for b in points])
    y = np.array([b.report_value for b in points]) * scale
    width = np.nan_to_num(np.array([b.report_high - b.report_low for b in points]) * scale)
    spline = smoothing_spline(x, y, width / (2 * stats.norm.ppf(0.5 + level / 2)))
    xs = np.linspace(x[0], x[-1], 200)
    return plots.plot_spline(points, xs, spline(xs), numbers)


def _names(text: str) -> list[str] | None:
    names = [name.strip() for name in text.split(",") if name.strip()]
    return None if names in ([], ["all"]) else names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    parser.add_argument("records", nargs="+", help="run record files (runs/*.json) or folders holding them")
    parser.add_argument("--out", default="reports", help="folder for report.md, tables/, figures/, analysis.json")
    parser.add_argument("--datasets", default="all",
                        help="comma-separated datasets to analyse; with 'all', Appendix N uses the real-world "
                             "ones, with names it uses exactly these")
    parser.add_argument("--models", default="all", help="comma-separated models to analyse")
    parser.add_argument("--metric", default=None,
                        help="metric to analyse, any the records hold (e.g. accuracy for APTOS and Melanoma); "
                             "configurations are still chosen by the dataset's own metric; when left out, each "
                             "dataset's own metric")
    parser.add_argument("--threshold", type=float, default=70.0,
                        help="ImageNet top-1 (%%) above which models enter the second trend fit")
    parser.add_argument("--slope-threshold", type=float, default=0.05,
                        help="a 0-100 slope below this is flagged as no meaningful progress")
    parser.add_argument("--logit", action="store_true", help="also fit and plot on logit-transformed axes")
    parser.add_argument("--n-boot", type=int, default=10000, help="bootstrap resamples for every interval and test")
    parser.add_argument("--level", type=float, default=0.95, help="confidence level of the intervals")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling")
    parser.add_argument("--compare", default=None, choices=sorted(set(GRID_KEYS) | set(COMPARED_SETTINGS)),
                        help="also tabulate, per dataset and model, the best configuration for each value of this "
                             "setting (Appendix G: --compare augment)")
    parser.add_argument("--grid", choices=("per-optimizer", "product", "seen"), default="per-optimizer",
                        help="expected grid: product of the hyperparameter values seen (per optimizer, or over "
                             "all), or the union of the configurations seen")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cli.check_interval_settings(args.level, args.n_boot)

    analysis = analyze(args.records, datasets=_names(args.datasets), model_names=_names(args.models),
                       metric=args.metric, threshold=args.threshold, slope_threshold=args.slope_threshold,
                       use_logit=args.logit, n_boot=args.n_boot, level=args.level, seed=args.seed, grid=args.grid,
                       compare=args.compare)
    for warning in analysis.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if not analysis.best:
        raise errors.DataError(f"no complete run record among {len(analysis.inputs)} input file(s)"
                               + (" (the warnings above say why each was left out)" if analysis.warnings else "")
                               + "; nothing to analyse")
    drawn, figure_notes = make_figures(analysis)
    analysis.notes.extend(figure_notes)
    written = report.write_outputs(analysis, drawn, args.out)
    print(f"{len(analysis.best)} (dataset, model) results from {len(analysis.inputs)} file(s); "
          f"report: {written['report']}")
    return 0


if __name__ == "__main__":
    errors.run_main("analyze.py", main)
