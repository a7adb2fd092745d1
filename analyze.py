"""Turn a finished grid of run records into the paper's answer: does ImageNet accuracy predict real-world accuracy?

    python analyze.py runs/*.json                          # -> reports/report.md, tables/*.csv, analysis.json, figures/
    python analyze.py runs/ --datasets cct20,aptos,hpa --threshold 70 --logit --out reports/grid1

Each step is a plain function, in the order they run:
  1. load_runs        read every run record; unreadable, foreign, other-version and still-running files are
                      named and skipped
  2. select_best      per (dataset, model) the configuration with the best selection-split metric, with intervals
                      from its saved predictions; grid_coverage lists diverged, failed and missing configurations
  3. trend_fits       per dataset, the metric regressed on ImageNet top-1 for all models and for models above the
                      threshold (Figure 1 / Table 2): Pearson r and the slope with both axes on 0-100
  4. appendix_n       does the average over the other real-world datasets predict a dataset better than ImageNet?
                      (nested OLS F-tests, Spearman correlations) and the benchmark score leaderboard
  5. write_outputs    Markdown report, a CSV per table, analysis.json with every number, figures as PNG and PDF
"""
from __future__ import annotations

import argparse
import csv
import io
import itertools
import math
import sys
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import interpolate, stats

import data
import metrics
import models
import records

REAL_WORLD = ("cct20", "aptos", "hpa", "melanoma", "cassava", "eurosat")  # cifar10 and digits are web-scraped controls
GRID_KEYS = ("optimizer", "schedule", "lr", "wd", "augment")  # the hyperparameters the paper tunes per model
STATUSES = ("running", "complete", "diverged", "failed")
# Settings that must agree among the runs a best configuration is chosen from (the rest of the config is tuned
# or says only where and how fast a run goes)
COMPARED_SETTINGS = ("weights", "head", "pool", "channels", "img_size", "epochs", "batch_size", "label_smoothing",
                     "wd_convention", "split_sha256", "seed")
MIN_FIT_MODELS = 3          # fewer points give no meaningful slope or correlation
MIN_SPLINE_MODELS = 4       # a cubic spline needs more distinct points than its degree
MIN_APPENDIX_N_DATASETS = 3  # each dataset needs at least two others to average
LOGIT_EPS = 1e-3            # metrics are clipped to [eps, 1 - eps] before the logit, so that 0% and 100% stay finite


# ---------------------------------------------------------------------------------------------------------------
# 1. Loading run records
# ---------------------------------------------------------------------------------------------------------------

class RecordProblem(ValueError):
    """A file that cannot be used as a run record; the message says what is wrong with it."""


@dataclass
class Run:
    """What the analysis needs from one run record (see the run record schema written by train.py)."""
    path: Path
    run_id: str
    status: str
    dataset: str
    model: str
    task: str
    metric: str
    num_classes: int | None
    selection_split: str
    report_split: str  # the selection split itself when the dataset has no separate report split
    hparams: dict[str, Any]
    config: dict[str, Any]
    best_metrics: dict[str, float] | None
    predictions: dict[str, Path]
    imagenet_top1: float | None
    params: float | None
    weights_loaded: Any  # models.create_model's "imagenet:<tag>", "random" or "file:<path> sha256=..."
    error: str | None
    diverged_epoch: int | None


def _block(raw: dict, key: str) -> dict:
    value = raw.get(key)
    if not isinstance(value, dict):
        raise RecordProblem(f"field '{key}' is missing or not an object")
    return value


def _text(block: dict, key: str, where: str) -> str:
    value = block.get(key)
    if not isinstance(value, str) or not value:
        raise RecordProblem(f"field '{where}{key}' is missing or not a string")
    return value


def _number(value: Any) -> float | None:
    """A finite float, or None for null, NaN or anything that is not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _dataset_field(block: dict, key: str, spec: data.DatasetSpec | None) -> Any:
    """A dataset field from the record, or from the dataset registry when the record does not carry it."""
    if key in block:
        return block[key]
    if spec is not None:
        return getattr(spec, key)
    raise RecordProblem(f"field 'dataset.{key}' is missing and dataset '{block.get('name')}' is not in the registry")


def read_run(path: str | Path) -> Run:
    """Read one run record. Raises RecordProblem saying what is wrong when the file is not a usable run record."""
    path = Path(path)
    try:
        raw = records.read_json(path)
    except OSError as error:
        raise RecordProblem(f"cannot be read ({error.strerror or error})") from error
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError
        raise RecordProblem(f"is not valid JSON ({error})") from error
    if not isinstance(raw, dict) or ("run_id" not in raw and "config" not in raw):
        raise RecordProblem("is not a run record (no 'run_id' or 'config' field)")
    if raw.get("schema_version") != records.SCHEMA_VERSION:
        raise RecordProblem(f"has schema_version {raw.get('schema_version')!r}; this analyze.py reads version "
                            f"{records.SCHEMA_VERSION}")
    run_id = _text(raw, "run_id", "")
    status = raw.get("status")
    if status not in STATUSES:
        raise RecordProblem(f"field 'status' is {status!r}, not one of {', '.join(STATUSES)}")
    config, dataset, model = _block(raw, "config"), _block(raw, "dataset"), _block(raw, "model")
    dataset_name, model_name = _text(dataset, "name", "dataset."), _text(model, "name", "model.")
    spec = data.REGISTRY.get(dataset_name)
    task, metric = _dataset_field(dataset, "task", spec), _dataset_field(dataset, "metric", spec)
    selection_split = _dataset_field(dataset, "selection_split", spec)
    report_split = _dataset_field(dataset, "report_split", spec) or selection_split
    for key, value in (("task", task), ("metric", metric), ("selection_split", selection_split),
                       ("report_split", report_split)):
        if not isinstance(value, str) or not value:
            raise RecordProblem(f"field 'dataset.{key}' is not a string")
    missing = [key for key in GRID_KEYS[:4] if key not in config]
    if missing:
        raise RecordProblem(f"field 'config' lacks {', '.join(missing)}")
    hparams = {key: config[key] for key in GRID_KEYS if key in config}
    for key, value in hparams.items():
        if not isinstance(value, (str, int, float, type(None))):
            raise RecordProblem(f"field 'config.{key}' is {value!r}, not a single value")

    best_metrics = None
    if status == "complete":
        best = raw.get("best")
        if not isinstance(best, dict) or not isinstance(best.get("metrics"), dict):
            raise RecordProblem("has status 'complete' but no 'best.metrics'")
        best_metrics = {key: _number(value) for key, value in best["metrics"].items()}
        for split in {selection_split, report_split}:
            if best_metrics.get(f"{split}_{metric}") is None:
                raise RecordProblem(f"has status 'complete' but 'best.metrics.{split}_{metric}' is missing "
                                    f"or not a finite number")
    predictions = raw.get("predictions") or {}
    if not isinstance(predictions, dict) or not all(isinstance(p, str) for p in predictions.values()):
        raise RecordProblem("field 'predictions' is not an object of split -> file path")
    num_classes = dataset.get("num_classes", spec.num_classes if spec else None)
    return Run(path=path, run_id=run_id, status=status, dataset=dataset_name, model=model_name, task=task,
               metric=metric, num_classes=num_classes if isinstance(num_classes, int) else None,
               selection_split=selection_split, report_split=report_split, hparams=hparams, config=config,
               best_metrics=best_metrics,
               predictions={split: path.parent / rel for split, rel in predictions.items()},
               imagenet_top1=_number(model.get("imagenet_top1")), params=_number(model.get("params")),
               weights_loaded=model.get("weights_loaded"),
               error=raw.get("error") if isinstance(raw.get("error"), str) else None,
               diverged_epoch=raw.get("diverged_epoch") if isinstance(raw.get("diverged_epoch"), int) else None)


def expand_inputs(paths: Sequence[str | Path]) -> list[Path]:
    """The given files, plus every *.json directly inside the given folders."""
    files: list[Path] = []
    for path in map(Path, paths):
        files.extend(sorted(path.glob("*.json")) if path.is_dir() else [path])
    return files


def load_runs(paths: Sequence[str | Path]) -> tuple[list[Run], list[str]]:
    """Every readable run record among `paths`, and one warning per file left out (naming it and saying why).

    Still-running records are left out with a warning; complete, diverged and failed ones are returned. Runs of a
    dataset that choose or report on another metric or split than the dataset's others are left out too, since
    their numbers cannot be compared.
    """
    runs, warnings = [], []
    for path in expand_inputs(paths):
        try:
            run = read_run(path)
        except RecordProblem as problem:
            warnings.append(f"{path}: {problem}; skipped")
            continue
        if run.status == "running":
            warnings.append(f"{path}: run '{run.run_id}' is still running; skipped")
            continue
        runs.append(run)

    by_dataset: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_dataset[run.dataset].append(run)
    consistent = []
    for name, group in by_dataset.items():
        spec = data.REGISTRY.get(name)
        registry = (spec.metric, spec.selection_split, spec.report_split or spec.selection_split) if spec else None
        counts = Counter((r.metric, r.selection_split, r.report_split) for r in group)
        # the most common choice wins; the registry's breaks a tie (train.py drops a report split it could not make)
        reference = max(counts, key=lambda choice: (counts[choice], choice == registry))
        for run in group:
            if (run.metric, run.selection_split, run.report_split) == reference:
                consistent.append(run)
            else:
                warnings.append(f"{run.path}: dataset '{name}' is chosen on {reference[1]}_{reference[0]} and "
                                f"reported on {reference[2]}, but this run uses {run.selection_split}_{run.metric} "
                                f"and {run.report_split}; skipped")
    return consistent, warnings


def filter_runs(runs: list[Run], datasets: Sequence[str] | None, model_names: Sequence[str] | None
                ) -> tuple[list[Run], list[str]]:
    """Keep the runs of the requested datasets and models; warn about requested names no record has."""
    warnings = []
    for kind, wanted, present in (("dataset", datasets, {r.dataset for r in runs}),
                                  ("model", model_names, {r.model for r in runs})):
        for name in wanted or ():
            if name not in present:
                warnings.append(f"--{kind}s names '{name}', but no usable run record has that {kind}")
    kept = [r for r in runs if (not datasets or r.dataset in datasets) and (not model_names or r.model in model_names)]
    return kept, warnings


# ---------------------------------------------------------------------------------------------------------------
# 2. ImageNet accuracy, and the best configuration per model per dataset
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class ModelFacts:
    imagenet_top1: float | None  # percent
    top1_source: str             # "models.py", "record" or "unknown"
    params: int | float | None
    group: str | None


def model_facts(runs: list[Run]) -> dict[str, ModelFacts]:
    """ImageNet top-1 and size of every model the runs name: from models.py, else from the records themselves."""
    facts = {}
    for name in sorted({run.model for run in runs}):
        own = [run for run in runs if run.model == name]
        record_top1 = next((r.imagenet_top1 for r in own if r.imagenet_top1 is not None), None)
        record_params = next((r.params for r in own if r.params is not None), None)
        entry = models.REGISTRY.get(name)
        registry_top1 = _number(getattr(entry, "imagenet_top1", None))
        if registry_top1 is not None:
            top1, source = registry_top1, "models.py"
        elif record_top1 is not None:
            top1, source = record_top1, "record"
        else:
            top1, source = None, "unknown"
        params = getattr(entry, "params", None)
        facts[name] = ModelFacts(top1, source, params if isinstance(params, int) else record_params,
                                 getattr(entry, "group", None))
    return facts


@dataclass
class Best:
    """The chosen configuration of one model on one dataset, with its metric on the selection and report splits."""
    dataset: str
    model: str
    run_id: str
    record: str
    optimizer: Any
    schedule: Any
    lr: Any
    wd: Any
    augment: Any
    metric: str
    task: str
    num_classes: int | None
    selection_split: str
    selection_value: float
    report_split: str
    report_value: float
    imagenet_top1: float | None
    top1_source: str
    params: int | float | None
    group: str | None
    configurations: int  # how many complete configurations the choice was made among
    selection_low: float = math.nan
    selection_high: float = math.nan
    report_low: float = math.nan
    report_high: float = math.nan
    interval_method: str | None = None


def describe_config(hparams: dict[str, Any]) -> str:
    return " ".join(f"{key}={hparams[key]}" for key in GRID_KEYS if hparams.get(key) is not None)


def select_best(runs: list[Run], facts: dict[str, ModelFacts]) -> list[Best]:
    """Per (dataset, model), the complete run with the highest selection-split metric (ties: the first run id).

    Rows come in dataset registry order, then by ImageNet top-1 (unknown last), then by model name.
    """
    groups: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for run in runs:
        if run.status == "complete":
            groups[(run.dataset, run.model)].append(run)
    rows = []
    for (dataset, model), group in groups.items():
        candidates = sorted(group, key=lambda r: r.run_id)
        chosen = max(candidates, key=lambda r: r.best_metrics[f"{r.selection_split}_{r.metric}"])
        fact = facts[model]
        rows.append(Best(
            dataset=dataset, model=model, run_id=chosen.run_id, record=str(chosen.path),
            **{key: chosen.hparams.get(key) for key in GRID_KEYS},
            metric=chosen.metric, task=chosen.task, num_classes=chosen.num_classes,
            selection_split=chosen.selection_split,
            selection_value=chosen.best_metrics[f"{chosen.selection_split}_{chosen.metric}"],
            report_split=chosen.report_split,
            report_value=chosen.best_metrics[f"{chosen.report_split}_{chosen.metric}"],
            imagenet_top1=fact.imagenet_top1, top1_source=fact.top1_source, params=fact.params, group=fact.group,
            configurations=len(group)))
    return sorted(rows, key=lambda b: (dataset_order(b.dataset),
                                       b.imagenet_top1 if b.imagenet_top1 is not None else math.inf, b.model))


def dataset_order(name: str) -> tuple[int, str]:
    names = list(data.REGISTRY)
    return (names.index(name) if name in names else len(names), name)


def interval_from_predictions(path: Path, task: str, metric: str, num_classes: int | None, level: float,
                              n_boot: int, seed: int) -> dict[str, Any]:
    """The metric and its bootstrap interval, recomputed from a saved predictions file (see metrics.py)."""
    try:
        arrays = records.read_predictions(path)
    except ValueError as error:
        raise RecordProblem(str(error)) from error
    thresholds = arrays["thresholds"]
    try:
        result = metrics.score_with_intervals(task, arrays["labels"], arrays["scores"], thresholds=thresholds,
                                              num_classes=num_classes, level=level, n_boot=n_boot, seed=seed)
    except ValueError as error:  # metrics.py names what is wrong with the arrays
        raise RecordProblem(f"predictions file {path}: {error}") from error
    if metric not in result:
        raise RecordProblem(f"metrics.score_with_intervals gives no '{metric}' for task '{task}' ({path})")
    return result[metric]


def attach_intervals(best: list[Best], runs: list[Run], level: float = 0.95, n_boot: int = 10000,
                     seed: int = 0) -> list[str]:
    """Fill in each chosen run's bootstrap intervals from its predictions; return a warning per problem.

    The value stays the one the record holds; a recomputed value that disagrees with it is reported, since it
    means the predictions file does not belong to the record's best epoch.
    """
    by_path = {str(run.path): run for run in runs}
    warnings = []
    for row in best:
        run = by_path[row.record]
        for which in ("selection", "report"):
            split = getattr(row, f"{which}_split")
            if which == "report" and split == row.selection_split:
                row.report_low, row.report_high = row.selection_low, row.selection_high
                continue
            path = run.predictions.get(split)
            if path is None:
                warnings.append(f"{run.path}: no predictions file for split '{split}'; {row.dataset}/{row.model} "
                                f"has no interval there")
                continue
            try:
                estimate = interval_from_predictions(path, row.task, row.metric, row.num_classes, level, n_boot, seed)
            except RecordProblem as problem:
                warnings.append(f"{run.path}: {problem}; no interval for split '{split}'")
                continue
            value = getattr(row, f"{which}_value")
            if not math.isclose(estimate["value"], value, rel_tol=1e-6, abs_tol=1e-6):
                warnings.append(f"{path}: recomputed {row.metric} {estimate['value']:.6f} differs from the record's "
                                f"{value:.6f}")
            setattr(row, f"{which}_low", estimate["low"])
            setattr(row, f"{which}_high", estimate["high"])
            row.interval_method = estimate.get("method")
    return warnings


def grid_coverage(runs: list[Run], mode: str = "per-optimizer") -> dict[str, list[dict[str, Any]]]:
    """Which configurations diverged, failed, or are missing from the grid, per (dataset, model).

    The grid of a dataset is the product of the distinct values of each hyperparameter seen in its records
    (mode "product"); mode "per-optimizer" takes that product separately for each optimizer, since the paper's
    learning rates differ between SGD and AdamW; mode "seen" is the union of the configurations any model ran.
    A (dataset, model) without a record (of any status) for a grid point is listed as missing.
    """
    runs = sorted(runs, key=lambda r: (dataset_order(r.dataset), r.model, r.run_id))
    diverged = [{"dataset": r.dataset, "model": r.model, **{k: r.hparams.get(k) for k in GRID_KEYS},
                 "diverged_epoch": r.diverged_epoch, "run_id": r.run_id, "record": str(r.path)}
                for r in runs if r.status == "diverged"]
    failed = [{"dataset": r.dataset, "model": r.model, **{k: r.hparams.get(k) for k in GRID_KEYS},
               "error": r.error, "run_id": r.run_id, "record": str(r.path)}
              for r in runs if r.status == "failed"]
    missing = []
    for dataset in sorted({r.dataset for r in runs}, key=dataset_order):
        ds_runs = [r for r in runs if r.dataset == dataset]
        axes = [key for key in GRID_KEYS if any(key in r.hparams for r in ds_runs)]
        have: dict[str, set] = defaultdict(set)
        for run in ds_runs:
            have[run.model].add(tuple(run.hparams.get(key) for key in axes))
        if mode == "seen":
            grid = sorted(set().union(*have.values()), key=str)
        elif mode == "product":
            grid = _product_of_values(ds_runs, axes)
        else:
            optimizers = sorted({r.hparams["optimizer"] for r in ds_runs}, key=str)
            grid = [combo for optimizer in optimizers
                    for combo in _product_of_values([r for r in ds_runs if r.hparams["optimizer"] == optimizer], axes)]
        for model in sorted(have):
            for combo in grid:
                if combo not in have[model]:
                    missing.append({"dataset": dataset, "model": model,
                                    **{key: dict(zip(axes, combo)).get(key) for key in GRID_KEYS}})
    return {"diverged": diverged, "failed": failed, "missing": missing}


def _product_of_values(runs: list[Run], axes: list[str]) -> list[tuple]:
    values = [sorted({r.hparams.get(key) for r in runs}, key=lambda v: (type(v).__name__, str(v))) for key in axes]
    return list(itertools.product(*values))


def mixed_settings(runs: list[Run], best: list[Best]) -> list[str]:
    """Warnings for (dataset, model) pairs whose best was chosen among runs that differ in more than the tuned
    hyperparameters (e.g. pretrained and random weights, or several seeds), which makes the choice unfair."""
    warnings = []
    for row in best:
        group = [r for r in runs if r.status == "complete" and r.dataset == row.dataset and r.model == row.model]
        for key in COMPARED_SETTINGS:
            values = sorted({str(r.config.get(key)) for r in group})
            if len(values) > 1:
                warnings.append(f"{row.dataset}/{row.model}: best chosen among runs with different config.{key} "
                                f"({', '.join(values)}); filter the records to compare like with like")
    return warnings


# ---------------------------------------------------------------------------------------------------------------
# 3. Trend fits: metric against ImageNet top-1 (Figure 1, Table 2)
# ---------------------------------------------------------------------------------------------------------------

def metric_scale(values: Sequence[float]) -> float:
    """100 for metrics stored as fractions (all within [-1, 1]; QWK can be negative), 1 for percentages."""
    return 100.0 if all(abs(v) <= 1.0 for v in values) else 1.0


def logit(percent: np.ndarray | Sequence[float]) -> np.ndarray:
    """logit of a percentage, clipped to [LOGIT_EPS, 1 - LOGIT_EPS] so that 0% and 100% stay finite."""
    p = np.clip(np.asarray(percent, dtype=float) / 100.0, LOGIT_EPS, 1.0 - LOGIT_EPS)
    return np.log(p / (1.0 - p))


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

    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(x), size=(n_boot, len(x)))
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


def fit_points(best: list[Best], dataset: str) -> list[Best]:
    """The chosen rows of a dataset that can enter a fit: known ImageNet top-1."""
    return [b for b in best if b.dataset == dataset and b.imagenet_top1 is not None]


def trend_fits(best: list[Best], threshold: float = 70.0, slope_threshold: float = 0.05, use_logit: bool = False,
               n_boot: int = 10000, level: float = 0.95, seed: int = 0) -> list[dict[str, Any]]:
    """Per dataset, the report-split metric regressed on ImageNet top-1, for all models and for those above
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
            for subset, mask in (("all", np.ones(len(x), bool)), (f"top1>{threshold:g}", x > threshold)):
                fit = fit_trend(xs[mask], ys[mask], n_boot=n_boot, level=level, seed=seed)
                no_progress = bool(fit["slope"] < slope_threshold) if axis == "linear" and fit["n"] >= MIN_FIT_MODELS \
                    and not math.isnan(fit["slope"]) else None
                rows.append({"dataset": dataset, "metric": points[0].metric, "split": points[0].report_split,
                             "axes": axis, "subset": subset, **fit, "no_progress": no_progress,
                             "metric_scale": scale,
                             "models": ",".join(b.model for b, m in zip(points, mask) if m)})
    return rows


# ---------------------------------------------------------------------------------------------------------------
# 4. Appendix N: does the average over real-world datasets predict better than ImageNet?
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


def standardise(values: np.ndarray) -> np.ndarray:
    """Zero mean and unit (sample, ddof=1) standard deviation across models."""
    values = np.asarray(values, dtype=float)
    return (values - values.mean()) / values.std(ddof=1)


def appendix_n(best: list[Best], datasets: Sequence[str]) -> dict[str, Any]:
    """Nested OLS F-tests, Spearman correlations and the benchmark score over `datasets` (Appendix N).

    Each dataset's report-split metric is logit-transformed and standardised across models, and so is ImageNet
    top-1. For each dataset d, three models of d's score: ImageNet only, the average of the other datasets'
    scores only, and both; F-tests ask whether the average adds to ImageNet and whether ImageNet adds to the
    average. Only models with a result and a known ImageNet top-1 on every dataset enter.
    """
    datasets = list(datasets)
    result: dict[str, Any] = {"datasets": datasets, "models": [], "left_out": [], "ols": [], "f_tests": [],
                              "spearman": [], "leaderboard": [], "note": None}
    if len(datasets) < MIN_APPENDIX_N_DATASETS:
        result["note"] = (f"skipped: needs at least {MIN_APPENDIX_N_DATASETS} datasets, has {len(datasets)} "
                          f"({', '.join(datasets) or 'none'})")
        return result
    table: dict[str, dict[str, Best]] = defaultdict(dict)
    for row in best:
        if row.dataset in datasets:
            table[row.model][row.dataset] = row
    included = []
    for model in sorted(table):
        absent = [d for d in datasets if d not in table[model]]
        if absent:
            result["left_out"].append({"model": model, "reason": f"no result on {', '.join(absent)}"})
        elif next(iter(table[model].values())).imagenet_top1 is None:
            result["left_out"].append({"model": model, "reason": "unknown ImageNet top-1"})
        else:
            included.append(model)
    result["models"] = included
    if len(included) < 5:  # the full model has 3 coefficients; its F-test needs at least 2 residual degrees of freedom
        result["note"] = f"skipped: needs at least 5 models present on every dataset, has {len(included)}"
        return result

    raw = {d: np.array([table[m][d].report_value for m in included]) for d in datasets}
    top1 = np.array([table[m][datasets[0]].imagenet_top1 for m in included])
    flat = [name for name, values in [("ImageNet top-1", top1), *raw.items()] if np.ptp(values) == 0]
    if flat:
        result["note"] = f"skipped: every model has the same value on {', '.join(flat)}, which cannot be standardised"
        return result
    z = {d: standardise(logit(raw[d] * metric_scale(raw[d]))) for d in datasets}
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
                                   "p_average": float(with_average.pvalue)})

    score = np.mean([z[d] for d in datasets], axis=0)
    order = np.argsort(-score, kind="stable")
    imagenet_rank = stats.rankdata(-top1, method="min")
    for rank, i in enumerate(order, start=1):
        result["leaderboard"].append({"rank": rank, "model": included[i], "score": float(score[i]),
                                      "imagenet_top1": float(top1[i]), "imagenet_rank": int(imagenet_rank[i]),
                                      **{f"z_{d}": float(z[d][i]) for d in datasets}})
    return result


# ---------------------------------------------------------------------------------------------------------------
# 5. Figures (matplotlib's Agg canvas, no pyplot state)
# ---------------------------------------------------------------------------------------------------------------

FIT_STYLES = {"all": ("tab:blue", "all models"), "above": ("tab:orange", "ImageNet top-1 > {threshold:g}%")}


def _panels(count: int, width: float = 4.2, height: float = 3.6) -> tuple[Figure, list]:
    columns = min(3, max(count, 1))
    rows = math.ceil(max(count, 1) / columns)
    figure = Figure(figsize=(width * columns, height * rows), layout="constrained")
    FigureCanvasAgg(figure)
    axes = [figure.add_subplot(rows, columns, i + 1) for i in range(count)]
    return figure, axes


def _error_bars(rows: list[Best], scale: float, transform=lambda v: v) -> tuple[np.ndarray, np.ndarray]:
    """Values and asymmetric error bars (2 x n) of the report split; missing intervals draw no bar."""
    values = transform(np.array([b.report_value for b in rows]) * scale)
    low = transform(np.array([b.report_low for b in rows]) * scale)
    high = transform(np.array([b.report_high for b in rows]) * scale)
    bars = np.nan_to_num(np.vstack([values - low, high - values]), nan=0.0)
    return values, np.clip(bars, 0.0, None)


def plot_trends(best: list[Best], fits: list[dict[str, Any]], threshold: float = 70.0,
                axes_kind: str = "linear") -> Figure:
    """Figure 1: one panel per dataset, metric against ImageNet top-1, labelled points with interval error bars,
    and the fitted lines for all models and for models above `threshold`."""
    datasets = sorted({b.dataset for b in best if b.imagenet_top1 is not None}, key=dataset_order)
    figure, axes = _panels(len(datasets))
    transform = logit if axes_kind == "logit" else (lambda v: v)
    for ax, dataset in zip(axes, datasets):
        points = fit_points(best, dataset)
        scale = metric_scale([b.report_value for b in points])
        x = transform(np.array([b.imagenet_top1 for b in points]))
        y, bars = _error_bars(points, scale, transform)
        ax.errorbar(x, y, yerr=bars, fmt="o", color="black", markersize=4, capsize=2, elinewidth=0.8)
        for row, xi, yi in zip(points, x, y):
            ax.annotate(row.model, (xi, yi), xytext=(3, 3), textcoords="offset points", fontsize=6)
        for fit in fits:
            if fit["dataset"] != dataset or fit["axes"] != axes_kind or math.isnan(fit["slope"]):
                continue
            color, label = FIT_STYLES["all" if fit["subset"] == "all" else "above"]
            x_min = x.min() if fit["subset"] == "all" else transform(np.array([threshold]))[()]
            xs = np.linspace(max(x_min, x.min()), x.max(), 50)
            ax.plot(xs, fit["intercept"] + fit["slope"] * xs, color=color,
                    label=f"{label.format(threshold=threshold)}: slope {fit['slope']:.2f}, r {fit['r']:.2f}")
        ax.set_title(dataset)
        ax.set_xlabel("logit(ImageNet top-1)" if axes_kind == "logit" else "ImageNet top-1 (%)")
        ax.set_ylabel(_metric_label(points[0], scale, "logit" if axes_kind == "logit" else ""))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6, loc="lower right")
    return figure


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


def plot_spline(best: list[Best], dataset: str, level: float = 0.95) -> tuple[Figure | None, str | None]:
    """Metric against ImageNet top-1 with a smoothing spline (see `smoothing_spline`) through the points sorted
    by top-1. Returns (None, note) when there are too few distinct top-1 values for a cubic spline."""
    points = sorted(fit_points(best, dataset), key=lambda b: b.imagenet_top1)
    x = np.array([b.imagenet_top1 for b in points])
    distinct = np.unique(x)
    if len(distinct) < MIN_SPLINE_MODELS:
        return None, (f"{dataset}: spline skipped, {len(distinct)} distinct ImageNet top-1 values "
                      f"(needs {MIN_SPLINE_MODELS})")
    scale = metric_scale([b.report_value for b in points])
    y, bars = _error_bars(points, scale)
    spline = smoothing_spline(x, y, bars.sum(axis=0) / (2 * stats.norm.ppf(0.5 + level / 2)))

    figure, (ax,) = _panels(1, width=6.0, height=4.5)
    ax.errorbar(x, y, yerr=bars, fmt="o", color="black", markersize=4, capsize=2, elinewidth=0.8)
    for row, xi, yi in zip(points, x, y):
        ax.annotate(row.model, (xi, yi), xytext=(3, 3), textcoords="offset points", fontsize=7)
    xs = np.linspace(distinct[0], distinct[-1], 200)
    ax.plot(xs, spline(xs), color="tab:green", label="smoothing spline")
    ax.set_title(f"{dataset}: {points[0].metric} vs ImageNet top-1")
    ax.set_xlabel("ImageNet top-1 (%)")
    ax.set_ylabel(_metric_label(points[0], scale))
    ax.legend(fontsize=7, loc="lower right")
    return figure, None


def _metric_label(row: Best, scale: float, prefix: str = "") -> str:
    label = f"{row.metric} on {row.report_split}"
    if prefix:
        return f"{prefix}({label})"
    return label + (" (x100)" if scale == 100 else "")


def plot_model_size(best: list[Best]) -> tuple[Figure | None, str | None]:
    """One panel per dataset: metric against parameter count (log scale), labelled points with error bars."""
    rows = [b for b in best if b.params is not None and b.params > 0]
    unknown = sorted({b.model for b in best} - {b.model for b in rows})
    note = f"left out of the model-size figure (unknown parameter count): {', '.join(unknown)}" if unknown else None
    datasets = sorted({b.dataset for b in rows}, key=dataset_order)
    if not datasets:
        return None, note
    figure, axes = _panels(len(datasets))
    for ax, dataset in zip(axes, datasets):
        points = [b for b in rows if b.dataset == dataset]
        scale = metric_scale([b.report_value for b in points])
        x = np.array([b.params for b in points])
        y, bars = _error_bars(points, scale)
        ax.errorbar(x, y, yerr=bars, fmt="o", color="black", markersize=4, capsize=2, elinewidth=0.8)
        for row, xi, yi in zip(points, x, y):
            ax.annotate(row.model, (xi, yi), xytext=(3, 3), textcoords="offset points", fontsize=6)
        ax.set_xscale("log")
        ax.set_title(dataset)
        ax.set_xlabel("parameters")
        ax.set_ylabel(_metric_label(points[0], scale))
    return figure, note


def save_figure(figure: Figure, stem: Path) -> list[Path]:
    """Write `stem`.png and `stem`.pdf atomically."""
    figure.draw_without_rendering()  # lays the figure out once; both formats reuse it (layout is the slow part)
    figure.set_layout_engine("none")
    written = []
    for suffix, options in ((".png", {"dpi": 150}), (".pdf", {})):
        buffer = io.BytesIO()
        figure.savefig(buffer, format=suffix[1:], **options)
        target = stem.with_suffix(suffix)
        records.atomic_write_bytes(target, buffer.getvalue())
        written.append(target)
    return written


# ---------------------------------------------------------------------------------------------------------------
# 6. The whole analysis, and its outputs
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
    appendix_n: dict[str, Any]


def analyze(paths: Sequence[str | Path], datasets: Sequence[str] | None = None,
            model_names: Sequence[str] | None = None, threshold: float = 70.0, slope_threshold: float = 0.05,
            use_logit: bool = False, n_boot: int = 10000, level: float = 0.95, seed: int = 0,
            grid: str = "per-optimizer") -> Analysis:
    """Every table and number of the analysis, from run record paths (files or folders)."""
    settings = {"datasets": list(datasets) if datasets else None, "models": list(model_names) if model_names else None,
                "threshold": threshold, "slope_threshold": slope_threshold, "logit": use_logit, "n_boot": n_boot,
                "level": level, "seed": seed, "grid": grid}
    inputs = [str(p) for p in expand_inputs(paths)]
    runs, warnings = load_runs(paths)
    runs, filter_warnings = filter_runs(runs, datasets, model_names)
    warnings += filter_warnings
    notes = []

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
    best = select_best(runs, facts)
    warnings += mixed_settings(runs, best)
    warnings += attach_intervals(best, runs, level=level, n_boot=n_boot, seed=seed)
    trends = trend_fits(best, threshold, slope_threshold, use_logit, n_boot=n_boot, level=level, seed=seed)
    for dataset in sorted({b.dataset for b in best}, key=dataset_order):
        if len(fit_points(best, dataset)) < MIN_FIT_MODELS:
            notes.append(f"{dataset}: no trend fit, fewer than {MIN_FIT_MODELS} models with a known ImageNet top-1")

    present = sorted({b.dataset for b in best}, key=dataset_order)
    chosen = present if datasets else [d for d in present if d in REAL_WORLD]
    part_n = appendix_n(best, chosen)
    if part_n["note"]:
        controls = [d for d in present if d not in chosen]
        notes.append(f"Appendix N {part_n['note']}" + (f" (not real-world, so left out: {', '.join(controls)}; "
                                                       f"--datasets picks datasets explicitly)" if controls else ""))

    return Analysis(settings=settings, inputs=inputs, warnings=warnings, notes=notes, best=best,
                    coverage=grid_coverage(runs, grid), unknown_top1=unknown_top1, trends=trends,
                    appendix_n=part_n)


def make_figures(analysis: Analysis) -> tuple[dict[str, Figure], list[str]]:
    """Figure 1 (and its logit version with --logit), a spline figure per dataset and the model-size figure,
    by file stem; and a note for each figure that could not be drawn."""
    best, settings = analysis.best, analysis.settings
    figures, notes = {}, []
    if any(b.imagenet_top1 is not None for b in best):
        figures["figure1"] = plot_trends(best, analysis.trends, settings["threshold"])
        if settings["logit"]:
            figures["figure1-logit"] = plot_trends(best, analysis.trends, settings["threshold"], axes_kind="logit")
    for dataset in sorted({b.dataset for b in best}, key=dataset_order):
        figure, note = plot_spline(best, dataset, settings["level"])
        if figure is not None:
            figures[f"spline-{dataset}"] = figure
        if note:
            notes.append(note)
    figure, note = plot_model_size(best)
    if figure is not None:
        figures["model-size"] = figure
    if note:
        notes.append(note)
    return figures, notes


TREND_COLUMNS = ["dataset", "metric", "split", "axes", "subset", "n", "slope", "slope_low", "slope_high",
                 "intercept", "r", "r_low", "r_high", "r_p", "no_progress"]


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def markdown_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    if not rows:
        return "_none_\n"
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def csv_text(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: "" if row.get(c) is None else row.get(c) for c in columns})
    return buffer.getvalue()


def _tables(analysis: Analysis) -> dict[str, tuple[list[dict[str, Any]], list[str]]]:
    """Every table of the analysis: name -> (rows, columns)."""
    best_rows = [asdict(b) for b in analysis.best]
    coverage = analysis.coverage
    part_n = analysis.appendix_n
    grid_columns = ["dataset", "model", *GRID_KEYS]
    z_columns = [f"z_{d}" for d in part_n["datasets"]]
    return {
        "best": (best_rows, [f.name for f in fields(Best)]),
        "diverged": (coverage["diverged"], grid_columns + ["diverged_epoch", "run_id", "record"]),
        "failed": (coverage["failed"], grid_columns + ["error", "run_id", "record"]),
        "missing": (coverage["missing"], grid_columns),
        "trends": (analysis.trends, TREND_COLUMNS + ["metric_scale", "models"]),
        "appendix_n_ols": (part_n["ols"], ["dataset", "model", "intercept", "imagenet_coef", "average_coef", "r2",
                                           "rss", "df_resid"]),
        "appendix_n_f_tests": (part_n["f_tests"], ["dataset", "test", "F", "p", "df_num", "df_den"]),
        "appendix_n_spearman": (part_n["spearman"], ["dataset", "rho_imagenet", "p_imagenet", "rho_average",
                                                     "p_average"]),
        "leaderboard": (part_n["leaderboard"], ["rank", "model", "score", "imagenet_top1", "imagenet_rank",
                                                *z_columns]),
        "skipped": ([{"warning": w} for w in analysis.warnings], ["warning"]),
    }


def markdown_report(analysis: Analysis, figure_files: dict[str, list[Path]], out: Path) -> str:
    """The report a person reads: summary, what was left out, every table, and links to the figures."""
    settings = analysis.settings
    lines = ["# Does ImageNet accuracy predict accuracy on real-world tasks?", "",
             f"{len(analysis.inputs)} input file(s); {len(analysis.best)} (dataset, model) results. "
             f"Settings: threshold {settings['threshold']:g}% ImageNet top-1, slope threshold "
             f"{settings['slope_threshold']:g}, {settings['level']:.0%} intervals from {settings['n_boot']} bootstrap "
             f"resamples (seed {settings['seed']}), grid = {settings['grid']}.", ""]
    lines += ["## Summary", ""] + summary_lines(analysis) + [""]
    if analysis.warnings:
        lines += ["## Files and results left out", ""] + [f"- {w}" for w in analysis.warnings] + [""]
    if analysis.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in analysis.notes] + [""]
    if analysis.unknown_top1:
        lines += [f"Models with unknown ImageNet top-1, left out of the fits: {', '.join(analysis.unknown_top1)}", ""]

    lines += ["## Best configuration per model", "",
              "Chosen on the selection split; the reported split gives the number used in the fits. Brackets: "
              f"{settings['level']:.0%} interval over the split's samples (Clopper-Pearson for accuracy, bootstrap "
              "otherwise; `interval_method` in tables/best.csv).", ""]
    for dataset in sorted({b.dataset for b in analysis.best}, key=dataset_order):
        rows = []
        for b in (b for b in analysis.best if b.dataset == dataset):
            rows.append({"model": b.model, "ImageNet top-1": b.imagenet_top1,
                         "configuration": describe_config({k: getattr(b, k) for k in GRID_KEYS}),
                         f"{b.selection_split} {b.metric}": _with_interval(b.selection_value, b.selection_low,
                                                                           b.selection_high),
                         f"{b.report_split} {b.metric} (reported)": _with_interval(b.report_value, b.report_low,
                                                                                   b.report_high),
                         "configs": b.configurations})
        lines += [f"### {dataset}", "", markdown_table(rows, list(rows[0]))]

    tables = _tables(analysis)
    for title, name in (("Diverged configurations", "diverged"), ("Failed runs", "failed"),
                        ("Configurations missing from the grid", "missing")):
        table_rows, columns = tables[name]
        lines += [f"## {title}", "", markdown_table(table_rows, [c for c in columns if c != "record"])]

    lines += ["## Trend fits (Figure 1, Table 2)", "",
              "Metric (x100 when stored as a fraction) regressed on ImageNet top-1 (%); slope on 0-100 axes, "
              f"bootstrap interval over models. `no_progress`: slope below {settings['slope_threshold']:g}.", "",
              markdown_table(analysis.trends, TREND_COLUMNS)]
    for name, files in figure_files.items():
        png = next(p for p in files if p.suffix == ".png")
        lines += [f"![{name}]({png.relative_to(out).as_posix()})", ""]

    part_n = analysis.appendix_n
    lines += ["## Appendix N: does the average over real-world datasets predict better than ImageNet?", "",
              "Each dataset's metric and ImageNet top-1 are logit-transformed and standardised across models. Per "
              "dataset, OLS of its score on ImageNet, on the average of the other datasets, and on both; the F-tests "
              "ask whether the second predictor adds to the first (small p: it does). The benchmark score is a "
              "model's average standardised score over these datasets.", ""]
    if part_n["note"]:
        lines += [part_n["note"], ""]
    lines += [f"Datasets: {', '.join(part_n['datasets']) or 'none'}. Models: {', '.join(part_n['models']) or 'none'}.",
              ""]
    if part_n["left_out"]:
        lines += ["Left out: " + "; ".join(f"{x['model']} ({x['reason']})" for x in part_n["left_out"]), ""]
    for title, name in (("Nested F-tests", "appendix_n_f_tests"), ("OLS fits", "appendix_n_ols"),
                        ("Spearman rank correlations", "appendix_n_spearman"),
                        ("Benchmark score (average standardised logit metric)", "leaderboard")):
        if tables[name][0]:
            lines += [f"### {title}", "", markdown_table(*tables[name])]
    return "\n".join(lines)


def summary_lines(analysis: Analysis) -> list[str]:
    """The answer in a few sentences: each dataset's linear trend, and what Appendix N's F-tests found."""
    lines = []
    fits = [f for f in analysis.trends if f["axes"] == "linear"]
    for dataset in sorted({f["dataset"] for f in fits}, key=dataset_order):
        parts = []
        for fit in (f for f in fits if f["dataset"] == dataset):
            if math.isnan(fit["slope"]):
                parts.append(f"{fit['subset']}: too few models ({fit['n']})")
                continue
            parts.append(f"{fit['subset']}: slope {fit['slope']:.3g} [{fit['slope_low']:.3g}, "
                         f"{fit['slope_high']:.3g}], r {fit['r']:.2f}, {fit['n']} models"
                         + (" (no meaningful progress)" if fit["no_progress"] else ""))
        first = next(f for f in fits if f["dataset"] == dataset)
        lines.append(f"- **{dataset}** ({first['metric']} on {first['split']}): " + "; ".join(parts))
    tests = analysis.appendix_n["f_tests"]
    if tests:
        total = len(analysis.appendix_n["datasets"])
        for question, finding in (("average adds to ImageNet", "the average of the other datasets adds to ImageNet"),
                                  ("ImageNet adds to average", "ImageNet adds to the average of the other datasets")):
            hits = [t["dataset"] for t in tests if t["test"] == question and t["p"] < 0.05]
            lines.append(f"- Appendix N: {finding} (F-test p < 0.05) on {len(hits)} of {total} datasets"
                         + (f" ({', '.join(hits)})" if hits else ""))
    return lines or ["- no dataset has enough models with a known ImageNet top-1 for a fit"]


def _with_interval(value: float, low: float, high: float) -> str:
    if math.isnan(low) or math.isnan(high):
        return f"{value:.4f}"
    return f"{value:.4f} [{low:.4f}, {high:.4f}]"


def write_outputs(analysis: Analysis, out: str | Path) -> dict[str, Any]:
    """Write report.md, tables/<name>.csv, analysis.json and figures/<name>.png|pdf under `out`; return the paths.

    Notes about figures that could not be drawn are added to the analysis' notes.
    """
    out = Path(out)
    figures, figure_notes = make_figures(analysis)
    analysis.notes.extend(figure_notes)
    figure_files = {name: save_figure(figure, out / "figures" / name) for name, figure in figures.items()}
    tables = _tables(analysis)
    for name, (rows, columns) in tables.items():
        records.atomic_write_text(out / "tables" / f"{name}.csv", csv_text(rows, columns))
    summary = {"settings": analysis.settings, "inputs": analysis.inputs, "warnings": analysis.warnings,
               "notes": analysis.notes, "unknown_top1": analysis.unknown_top1,
               "tables": {name: rows for name, (rows, _) in tables.items()},
               "appendix_n": {k: analysis.appendix_n[k] for k in ("datasets", "models", "left_out", "note")},
               "figures": {name: [str(p) for p in files] for name, files in figure_files.items()}}
    records.atomic_write_json(out / "analysis.json", summary)
    records.atomic_write_text(out / "report.md", markdown_report(analysis, figure_files, out))
    return {"report": out / "report.md", "json": out / "analysis.json", "tables": out / "tables",
            "figures": figure_files}


def _names(text: str | None) -> list[str] | None:
    return [name.strip() for name in text.split(",") if name.strip()] if text else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("records", nargs="+", help="run record files (runs/*.json) or folders holding them")
    parser.add_argument("--out", default="reports", help="folder for report.md, tables/, figures/, analysis.json")
    parser.add_argument("--datasets", default=None,
                        help="comma-separated datasets to analyse (default: all; Appendix N then uses only the "
                             "real-world ones, with this flag it uses exactly these)")
    parser.add_argument("--models", default=None, help="comma-separated models to analyse (default: all)")
    parser.add_argument("--threshold", type=float, default=70.0,
                        help="ImageNet top-1 (%%) above which models enter the second trend fit")
    parser.add_argument("--slope-threshold", type=float, default=0.05,
                        help="a 0-100 slope below this is flagged as no meaningful progress")
    parser.add_argument("--logit", action="store_true", help="also fit and plot on logit-transformed axes")
    parser.add_argument("--n-boot", type=int, default=10000, help="bootstrap resamples for every interval")
    parser.add_argument("--level", type=float, default=0.95, help="confidence level of the intervals")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling")
    parser.add_argument("--grid", choices=("per-optimizer", "product", "seen"), default="per-optimizer",
                        help="expected grid: product of the hyperparameter values seen (per optimizer, or over "
                             "all), or the union of the configurations seen")
    args = parser.parse_args(argv)
    if args.n_boot < 1 or not 0 < args.level < 1:
        parser.error("--n-boot must be at least 1 and --level within (0, 1)")

    analysis = analyze(args.records, datasets=_names(args.datasets), model_names=_names(args.models),
                       threshold=args.threshold, slope_threshold=args.slope_threshold, use_logit=args.logit,
                       n_boot=args.n_boot, level=args.level, seed=args.seed, grid=args.grid)
    for warning in analysis.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if not analysis.best:
        print(f"error: no complete run record among {len(analysis.inputs)} input file(s); nothing to analyse",
              file=sys.stderr)
        return 1
    written = write_outputs(analysis, args.out)
    print(f"{len(analysis.best)} (dataset, model) results from {len(analysis.inputs)} file(s); "
          f"report: {written['report']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
