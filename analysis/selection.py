"""Choosing each model's best configuration on each dataset, with intervals, and listing what the grid lacks.

    best = selection.select_best(runs, selection.model_facts(runs))   # runs from runrecords.load_runs
    warnings = selection.attach_intervals(best, runs)                   # intervals from the chosen runs' predictions
    coverage = selection.grid_coverage(runs)                            # diverged, failed and missing configurations

The paper tunes each model per dataset over a grid of hyperparameters and keeps the configuration with the best
selection-split metric; its reported-split metric is the number the fits use.
"""
from __future__ import annotations

import itertools
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from analysis import resampling
from analysis.reading import COMPARED_SETTINGS, Run, dataset_order
from common import choice, runrecord
from nets import registry
from training.recipe import TUNED


@dataclass
class ModelFacts:
    imagenet_top1: float | None  # percent
    top1_source: str             # "models.py", "models.py (zero-shot)", "record" or "unknown"
    params: int | float | None
    group: str | None
    top1_reference: str | None = None  # where the number itself comes from (models.py --json's top1_source)


CLIP_X = ("linear-probe", "zero-shot")  # analyze.py --clip-x: which ImageNet top-1 of a CLIP tower is its x


def model_facts(runs: list[Run], clip_x: str = "linear-probe") -> dict[str, ModelFacts]:
    """ImageNet top-1 and size of every model the runs name: from models.py, else from the records themselves."""
    facts = {}
    for name in sorted({run.model for run in runs}):
        own = [run for run in runs if run.model == name and run.imagenet_top1 is not None]
        record = ModelFacts(own[0].imagenet_top1 if own else None, "record" if own else "unknown",
                            next((r.params for r in runs if r.model == name and r.params is not None), None),
                            next((r.group for r in runs if r.model == name and r.group), None),
                            own[0].top1_reference if own else None)
        facts[name] = facts_of(name, record, clip_x)
    return facts


def facts_of(name: str, recorded: ModelFacts, clip_x: str = "linear-probe") -> ModelFacts:
    """A model's facts: the registry's where it has the model (its top-1 wins over a recorded one), else
    `recorded` (what its records, or a results file, say).

    A CLIP tower's top-1 in models.py is the CLIP paper's linear-probe accuracy, where the paper's Figure 8 draws
    it; `clip_x` "zero-shot" takes the registry's zero-shot figure instead (source "models.py (zero-shot)").
    """
    entry = registry.REGISTRY.get(name)
    if entry is None:
        return recorded
    registry_top1 = choice.finite(entry.imagenet_top1)
    zero_shot = choice.finite(entry.zero_shot_top1)
    params = entry.params if isinstance(entry.params, int) else recorded.params
    if clip_x == "zero-shot" and zero_shot is not None:
        return ModelFacts(zero_shot, "models.py (zero-shot)", params, entry.group, entry.zero_shot_source)
    if registry_top1 is not None:
        return ModelFacts(registry_top1, "models.py", params, entry.group, entry.top1_source)
    return ModelFacts(recorded.imagenet_top1, recorded.top1_source, params, entry.group, recorded.top1_reference)


@dataclass
class Best:
    """The chosen configuration of one model on one dataset, with the analysed metric on its splits."""
    dataset: str
    model: str
    run_id: str
    record: str
    optimizer: Any
    schedule: Any
    lr: Any
    wd: Any
    augment: Any
    metric: str            # the analysed metric (analyze.py --metric; the dataset's by default)
    chosen_by: str         # the metric the best epoch and configuration were chosen by: the dataset's
    task: str
    num_classes: int | None
    selection_split: str
    selection_value: float
    report_split: str
    report_value: float
    extra_split: str | None
    extra_value: float | None
    imagenet_top1: float | None
    top1_source: str
    params: int | float | None
    group: str | None
    configurations: int  # how many complete configurations the choice was made among
    random_init: bool = False  # fine-tuned from random weights: imagenet_top1 is its architecture's, not its own
    top1_reference: str | None = None  # where imagenet_top1 comes from, in words
    split_sha256: str | None = None  # of the split file the chosen run trained and was scored on
    report_samples: int | None = None  # samples of the reported split (from its predictions)
    report_ids_sha256: str | None = None  # of their ids in resampling order: equal digests share resamples
    origin: str = "runs"  # "runs", or the results file (analyze.py --reference) the row was read from
    new: bool = False  # analysed against a reference: a row of the runs given, drawn and listed as new
    selection_low: float = math.nan
    selection_high: float = math.nan
    report_low: float = math.nan
    report_high: float = math.nan
    extra_low: float = math.nan
    extra_high: float = math.nan
    interval_method: str | None = None


def best_by_model(best: list[Best], datasets: list[str]) -> dict[str, dict[str, Best]]:
    """Each model's best rows on `datasets`, by dataset (models with none are absent)."""
    table: dict[str, dict[str, Best]] = {}
    for row in best:
        if row.dataset in datasets:
            table.setdefault(row.model, {})[row.dataset] = row
    return table


def describe_config(hparams: dict[str, Any]) -> str:
    return " ".join(f"{key}={hparams[key]}" for key in TUNED if hparams.get(key) is not None)


def complete_runs_by_model(runs: list[Run]) -> dict[tuple[str, str], list[Run]]:
    """The complete runs of each (dataset, model), in the order given: those a best configuration is chosen among."""
    groups: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for run in runs:
        if run.status == runrecord.COMPLETE:
            groups[(run.dataset, run.model)].append(run)
    return dict(groups)


def chosen_run(group: list[Run]) -> Run:
    """The chosen configuration: the highest selection-split value of the dataset's metric (common/choice.py)."""
    return choice.best_of(group, lambda r: r.selection_value, order=lambda r: r.run_id)


def compare_by(runs: list[Run], key: str, metric: str | None = None) -> list[dict[str, Any]]:
    """Appendix G's tables: per dataset, model and value of `key` (a setting such as augment or weights), the best
    complete configuration among the runs with that value (chosen by the dataset's metric, as select_best chooses),
    and its reported-split value of `metric` (default: the dataset's; the runs must hold it, see runs_with_metric)."""
    groups: dict[tuple, list[Run]] = defaultdict(list)
    for (dataset, model), complete in complete_runs_by_model(runs).items():
        for run in complete:
            groups[(dataset, model, run.hparams.get(key, run.settings.get(key)))].append(run)
    rows = []
    for (dataset, model, value), group in groups.items():
        chosen = chosen_run(group)
        name = metric or chosen.metric
        rows.append({"dataset": dataset, "model": model, "value": value, "metric": name,
                     "split": chosen.report_split, "result": chosen.value(chosen.report_split, name),
                     "configurations": len(group), "run_id": chosen.run_id})
    return sorted(rows, key=lambda row: (dataset_order(row["dataset"]), row["model"], str(row["value"])))


def select_best(runs: list[Run], facts: dict[str, ModelFacts], metric: str | None = None) -> list[Best]:
    """Per (dataset, model), the complete run with the highest selection-split value of the dataset's metric (ties:
    the first run id), described by `metric` (default: the dataset's; the runs must hold it, see runs_with_metric).

    Rows come in dataset registry order, then by ImageNet top-1 (unknown last), then by model name.
    """
    rows = []
    for (dataset, model), group in complete_runs_by_model(runs).items():
        chosen = chosen_run(group)
        name, fact = metric or chosen.metric, facts[model]
        extra = chosen.extra_split
        rows.append(Best(
            dataset=dataset, model=model, run_id=chosen.run_id, record=str(chosen.path),
            **{key: chosen.hparams.get(key) for key in TUNED}, metric=name, chosen_by=chosen.metric,
            task=chosen.task, num_classes=chosen.num_classes, selection_split=chosen.selection_split,
            selection_value=chosen.value(chosen.selection_split, name),
            report_split=chosen.report_split, report_value=chosen.value(chosen.report_split, name),
            extra_split=extra, extra_value=chosen.value(extra, name) if extra else None,
            imagenet_top1=fact.imagenet_top1, top1_source=fact.top1_source, params=fact.params, group=fact.group,
            configurations=len(group), random_init=chosen.random_init, top1_reference=fact.top1_reference,
            split_sha256=chosen.settings.get("split_sha256")))
    return sorted(rows, key=row_order)


def row_order(row: Best) -> tuple:
    """The order of rows in every table: dataset registry order, then ImageNet top-1 (unknown last), then name."""
    return dataset_order(row.dataset), row.imagenet_top1 if row.imagenet_top1 is not None else math.inf, row.model


def attach_intervals(best: list[Best], runs: list[Run], level: float = 0.95, n_boot: int = 10000,
                     seed: int = 0) -> tuple[list[str], dict[tuple[str, str], np.ndarray]]:
    """Fill in each chosen run's intervals (selection, reported and extra split) from its saved predictions; return
    a warning per problem, and each (dataset, model)'s values of the analysed metric on its dataset's resamples of
    the reported split (what the benchmark score's interval and ranks are computed from).

    Only the analysed metric is bootstrapped. The models of a dataset share its resamples (analysis/resampling.py:
    the dataset's own seed, samples in order of id), one dataset and split at a time so that memory stays small.
    The value stays the one the record holds; a recomputed value that disagrees with it is reported, since it
    means the predictions file does not belong to the record's best epoch.
    """
    by_path = {str(run.path): run for run in runs}
    warnings, replicates = [], {}
    pairs = sorted(((which, b) for b in best for which in ("selection", "report", "extra")), key=_scored_together)
    for (_, which, *_), rows in itertools.groupby(pairs, key=_scored_together):
        items = []
        for _, row in rows:
            split = getattr(row, f"{which}_split")
            if split is None or getattr(row, f"{which}_value") is None or \
                    (which != "selection" and split == row.selection_split):
                continue  # no such split, or the record lacks the metric there, or the selection split's interval
            run = by_path[row.record]
            if split in run.predictions:
                items.append((row, run.predictions[split]))
            else:
                warnings.append(f"{run.path}: no predictions file for split '{split}'; {row.dataset}/{row.model} "
                                f"has no interval there")
        if not items:
            continue
        reported = getattr(items[0][0], f"{which}_split") == items[0][0].report_split
        try:
            results = _intervals(items, level, n_boot, seed, reported)
        except ValueError:  # a file is unreadable or its arrays are bad: find which (cheaply), bootstrap the rest
            good = []
            for row, path in items:
                try:
                    _intervals([(row, path)], level, 1, seed, False)
                    good.append((row, path))
                except ValueError as error:  # read_predictions names the file; metrics.py the problem
                    problem = str(error) if str(path) in str(error) else f"predictions file {path}: {error}"
                    warnings.append(f"{row.record}: {problem}; no interval for split "
                                    f"'{getattr(row, f'{which}_split')}'")
            items, results = good, _intervals(good, level, n_boot, seed, reported) if good else []
        for (row, path), result in zip(items, results):
            recorded = getattr(row, f"{which}_value")
            if not math.isclose(result["value"], recorded, rel_tol=1e-6, abs_tol=1e-6):
                warnings.append(f"{path}: recomputed {row.metric} {result['value']:.6f} differs from the record's "
                                f"{recorded:.6f}")
            setattr(row, f"{which}_low", result["low"])
            setattr(row, f"{which}_high", result["high"])
            row.interval_method = result["method"]
            if reported:
                row.report_samples, row.report_ids_sha256 = result["samples"], result["ids_sha256"]
                replicates[(row.dataset, row.model)] = result["replicates"]
    for row in best:
        if row.report_split == row.selection_split:
            row.report_low, row.report_high = row.selection_low, row.selection_high
    return warnings, replicates


def _scored_together(item: tuple[str, Best]) -> tuple:
    """Rows whose intervals are computed together: one dataset, split, task and metric."""
    which, row = item
    return dataset_order(row.dataset), which, row.task, row.metric, str(row.num_classes)


def _intervals(items: list[tuple[Best, Path]], level: float, n_boot: int, seed: int,
               keep_replicates: bool) -> list[dict]:
    """The analysed metric of rows of one dataset and split with its interval (resampling.scored_on_resamples),
    each set read from its predictions file as it is scored (so that only one file's arrays are in memory at a
    time), with its sample count and ids digest; its resampled values too when `keep_replicates`."""
    like, digests = items[0][0], []

    def sets():
        for _, path in items:
            arrays = resampling.in_sample_order(runrecord.read_predictions(path))
            digests.append(resampling.ids_digest(arrays["ids"]))
            yield arrays["labels"], arrays["scores"], arrays["thresholds"]

    results = resampling.scored_on_resamples(like.task, like.metric, sets(), like.num_classes, level, n_boot,
                                             resampling.dataset_seed(seed, like.dataset), keep_replicates)
    for result, digest in zip(results, digests):
        result["ids_sha256"] = digest
    return results


def grid_coverage(runs: list[Run], mode: str = "per-optimizer") -> dict[str, list[dict[str, Any]]]:
    """Which configurations diverged, failed, or are missing from the grid, per (dataset, model).

    The grid of a dataset is the product of the distinct values of each hyperparameter seen in its records
    (mode "product"); mode "per-optimizer" takes that product separately for each optimizer, since the paper's
    learning rates differ between SGD and AdamW; mode "seen" is the union of the configurations any model ran.
    A (dataset, model) without a record (of any status) for a grid point is listed as missing.
    """
    runs = sorted(runs, key=lambda r: (dataset_order(r.dataset), r.model, r.run_id))
    diverged = [{"dataset": r.dataset, "model": r.model, **{k: r.hparams.get(k) for k in TUNED},
                 "diverged_epoch": r.diverged_epoch, "run_id": r.run_id, "record": str(r.path)}
                for r in runs if r.status == runrecord.DIVERGED]
    failed = [{"dataset": r.dataset, "model": r.model, **{k: r.hparams.get(k) for k in TUNED},
               "error": r.error, "run_id": r.run_id, "record": str(r.path)}
              for r in runs if r.status == runrecord.FAILED]
    missing = []
    for dataset in sorted({r.dataset for r in runs}, key=dataset_order):
        ds_runs = [r for r in runs if r.dataset == dataset]
        axes = [key for key in TUNED if any(key in r.hparams for r in ds_runs)]
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
                                    **{key: dict(zip(axes, combo)).get(key) for key in TUNED}})
    return {"diverged": diverged, "failed": failed, "missing": missing}


def _product_of_values(runs: list[Run], axes: list[str]) -> list[tuple]:
    values = [sorted({r.hparams.get(key) for r in runs}, key=lambda v: (type(v).__name__, str(v))) for key in axes]
    return list(itertools.product(*values))


def mixed_settings(runs: list[Run], best: list[Best]) -> list[str]:
    """Warnings for (dataset, model) pairs whose best was chosen among runs that differ in more than the tuned
    hyperparameters (e.g. pretrained and random weights, or several seeds), which makes the choice unfair."""
    groups = complete_runs_by_model(runs)
    warnings = []
    for row in best:
        group = groups[(row.dataset, row.model)]
        for key in COMPARED_SETTINGS:
            values = sorted({str(r.settings[key]) for r in group})
            if len(values) > 1:
                warnings.append(f"{row.dataset}/{row.model}: best chosen among runs with different config.{key} "
                                f"({', '.join(values)}); filter the records to compare like with like")
    return warnings
