"""The whole analysis, in the order it runs (analyze.py prints the steps): records -> best configurations with
intervals -> trend fits -> Appendix N -> figures (drawn one at a time by report.write_outputs). No torch.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from scipy import stats

from analysis import figures as plots
from analysis.appendix_n import appendix_n
from analysis.benchmark import leaderboard
from analysis.reading import Run, dataset_order, expand_inputs, filter_runs, load_runs, runs_with_metric
from analysis.reference import Reference, check_comparable, check_resampling, join, read_reference
from analysis.selection import (
    Best,
    attach_intervals,
    compare_by,
    grid_coverage,
    mixed_settings,
    model_facts,
    row_order,
    select_best,
)
from analysis.trends import (
    MIN_FIT_MODELS,
    MIN_SPLINE_MODELS,
    drawn_apart,
    fit_points,
    metric_scale,
    size_fits,
    smoothing_spline,
    trend_fits,
)
from common import errors, runrecord
from data import REAL_WORLD


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
    benchmark: dict[str, Any]  # the §6 score: {"datasets", "rows", "left_out", "note"} (analysis/benchmark.py)
    replicates: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)  # resampled reported metric
    run_commits: list[str] = field(default_factory=list)  # the toolkit commits the runs (and references) used
    comparison: dict[str, Any] | None = None  # --compare KEY: {"key", "rows"} (Appendix G)
    halved_runs: int = 0  # runs stopped early by successive halving (grid.py run --halving)


def analyze(paths: Sequence[str | Path], datasets: Sequence[str] | None = None,
            model_names: Sequence[str] | None = None, metric: str | None = None, threshold: float = 70.0,
            slope_threshold: float = 0.05, use_logit: bool = False, n_boot: int = 10000, level: float = 0.95,
            seed: int = 0, grid: str = "per-optimizer", compare: str | None = None,
            clip_x: str = "linear-probe", references: Sequence[str | Path] = ()) -> Analysis:
    """Every table and number of the analysis, from run record paths (files or folders) and results files
    (`references`, analyze.py --reference: their rows join the runs', which are marked new).

    Raises errors.UsageError when --datasets or --models name something no record or results file has, or no
    dataset's records hold `metric`; errors.UsageError or DataError when a results file cannot be compared.
    """
    settings = {"datasets": list(datasets) if datasets else None, "models": list(model_names) if model_names else None,
                "metric": metric, "threshold": threshold, "slope_threshold": slope_threshold, "logit": use_logit,
                "n_boot": n_boot, "level": level, "seed": seed, "grid": grid, "compare": compare, "clip_x": clip_x,
                "references": [str(p) for p in references]}
    published = [read_reference(path, clip_x) for path in references]
    check_resampling(published, settings)
    inputs = [str(p) for p in expand_inputs(paths)]
    runs, warnings = load_runs(paths)
    runs = filter_runs(runs, datasets, model_names, [(b.dataset, b.model) for r in published for b in r.rows])
    published = [_filtered(reference, datasets, model_names) for reference in published]
    if metric is not None and any(r.status == runrecord.COMPLETE for r in runs):
        runs, metric_warnings = runs_with_metric(runs, metric)
        warnings += metric_warnings
    notes = _run_notes(runs)
    facts = model_facts(runs, clip_x)
    best = select_best(runs, facts, metric)
    check_comparable(best, published)
    warnings += mixed_settings(runs, best)
    interval_warnings, replicates = attach_intervals(best, runs, level=level, n_boot=n_boot, seed=seed)
    best, replicates, join_warnings = join(best, replicates, published)
    best.sort(key=row_order)
    warnings += interval_warnings + join_warnings

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
                     f"does, at their {clip_x} ImageNet top-1 (--clip-x): {', '.join(apart)} (the numbers and their "
                     f"sources: python models.py --json)")
    if published:
        notes.append(f"analysed against {len(published)} results file(s) ({', '.join(r.path for r in published)}): "
                     f"the runs' models are new: " + (", ".join(sorted({b.model for b in best if b.new})) or "none"))
    comparison = {"key": compare, "rows": compare_by(runs, compare, metric)} if compare else None
    return Analysis(settings=settings, inputs=inputs, warnings=warnings, notes=notes, best=best,
                    coverage=grid_coverage(runs, grid),
                    unknown_top1=sorted({b.model for b in best if b.imagenet_top1 is None}), trends=trends,
                    size_trends=size_fits(best, threshold, n_boot=n_boot, level=level, seed=seed), appendix_n=part_n,
                    benchmark=leaderboard(best, chosen, replicates, level), replicates=replicates,
                    run_commits=sorted({r.git_commit for r in runs if r.git_commit}
                                       | {c for r in published for c in r.run_commits}),
                    comparison=comparison, halved_runs=sum(run.stopped_by_halving for run in runs))


def _filtered(reference: Reference, datasets: Sequence[str] | None, model_names: Sequence[str] | None) -> Reference:
    """A results file's rows of the requested datasets and models (all when none are named)."""
    reference.rows = [b for b in reference.rows if (not datasets or b.dataset in datasets)
                      and (not model_names or b.model in model_names)]
    return reference


def _run_notes(runs: list[Run]) -> list[str]:
    """What the reader should know about the runs themselves: halving, random weights, splits that are not the
    paper's (another method, or the paper's method on other data than the published), weights files."""
    notes = []
    halved = sum(run.stopped_by_halving for run in runs)
    if halved:
        notes.append(f"{halved} run(s) stopped early by successive halving (grid.py run --halving), not counted: "
                     f"other configurations of their model did better at an earlier epoch; their configurations are "
                     f"not listed as missing")
    untrained = sorted({r.model for r in runs if r.random_init})
    if untrained:
        notes.append(f"trained from random initialisation (weights_loaded random), so ImageNet top-1 does not "
                     f"describe them; drawn hollow in the figures and marked random_init in the tables: "
                     f"{', '.join(untrained)}")
    for dataset in sorted({r.dataset for r in runs if r.papers_split is False}):
        splits = sorted({r.split_description for r in runs if r.dataset == dataset and r.papers_split is False})
        notes.append(f"{dataset}: NOT the paper's split, so not the paper's experiment: {'; '.join(splits)}")
    from_file = sorted({r.model for r in runs if str(r.weights_loaded).startswith("file:")})
    if from_file:
        notes.append(f"fine-tuned from weights files, whose ImageNet top-1 may differ from the one used here: "
                     f"{', '.join(from_file)}")
    return notes


def nothing_to_analyse(analysis: Analysis) -> errors.DataError:
    """The error when no complete run was read: how many files, and what happened to the runs that did not
    complete (each failed run's one-line error, the first few), so that a folder holding only a failed run says why
    it failed."""
    failed, diverged = analysis.coverage["failed"], analysis.coverage["diverged"]
    parts = [f"no complete run record among {len(analysis.inputs)} input file(s)"]
    if failed:
        shown = "; ".join(f"{row['record']}: {row['error'] or 'no error recorded'}" for row in failed[:3])
        parts.append(f"{len(failed)} failed ({shown}" + (f"; and {len(failed) - 3} more)" if len(failed) > 3 else ")"))
    if diverged:
        parts.append(f"{len(diverged)} diverged (" + ", ".join(row["record"] for row in diverged[:3])
                     + (", ...)" if len(diverged) > 3 else ")"))
    if analysis.warnings:
        parts.append("the warnings above say why each other file was left out")
    return errors.DataError("; ".join(parts) + "; nothing to analyse")


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
    if analysis.benchmark["rows"]:
        drawers["benchmark"] = partial(plots.plot_benchmark, analysis.benchmark["rows"],
                                       analysis.benchmark["datasets"], settings["level"])
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
