"""Results that travel: one file of an analysis's results that another lab analyses its own runs against.

    python analyze.py runs/ --export results.json                  # write the file (with the usual report)
    python analyze.py my-runs/ --reference results.json            # new runs analysed together with those results

The file (JSON, written atomically) describes itself:

    format, format_version        "imagenet-transfer results", 1
    created                       UTC time of writing
    toolkit                       {"commit": the toolkit's git commit writing it (the toolkit has no release
                                  numbers: its version is its commit), "run_commits": the commits the runs were
                                  trained with, "record_schema_version"}
    analysis                      the settings that shaped the numbers: metric (null: each dataset's own), clip_x,
                                  level of every interval
    resampling                    how the resampled values were drawn, so that new models are drawn the same way:
                                  {"n_boot", "seed", "dataset_seed": how each dataset's seed derives from it,
                                  "order": samples sorted by id, "encoding": of `replicates`}
    datasets                      per dataset: task, metric (reported), chosen_by (the metric configurations are
                                  chosen by), num_classes, selection_split, report_split, split_sha256 (the split
                                  file's SHA-256), samples and ids_sha256 (of the reported split's ids, in order)
    results                       per dataset x model: run_id, record, configuration {optimizer, schedule, lr, wd,
                                  augment}, configurations (how many it was chosen among), selection_split and
                                  selection_value, report_split, metric, score (the reported-split value as the
                                  record holds it, a fraction or a percentage), low, high, interval_method,
                                  extra_split/value/low/high, samples, imagenet_top1, top1_source (models.py,
                                  record, ...), top1_reference (where the number comes from), params, group,
                                  random_init, split_sha256, and replicates

What lets the benchmark score's interval be recomputed: `replicates`, each result's metric on the n_boot resamples
of its dataset's reported split (base64 of little-endian float32, NaN where the metric is undefined on a resample).
Averaging a model's replicates over the datasets gives its score on each resample, the percentile interval and
the neighbours' comparisons (analysis/benchmark.py). Replicates rather than predictions, because they are exactly
what the interval is made from and their size does not grow with the test sets: 19 models x 6 datasets x 10,000
resamples is 4.6 MB (6 MB as base64), where the predictions would be about 50 MB; a new model's replicates are drawn
on the same resamples (same split file, so the same samples; same seed and order), which is what makes the ranks
paired. The predictions stay in the run folders for anything else.

Reading refuses, in one line, results that cannot be compared with the runs (or with each other): another split
(its SHA-256), another metric definition, or other resamples (--n-boot, --seed, --level must be the file's).
"""
from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from analysis.selection import Best, ModelFacts, facts_of
from common import errors, fileio, provenance, runrecord
from training.recipe import TUNED

FORMAT, FORMAT_VERSION = "imagenet-transfer results", 1
DEFINITION = ("task", "metric", "chosen_by", "num_classes", "selection_split", "report_split")  # a dataset's metric
RESAMPLING = ("n_boot", "seed", "level")  # settings that must be the file's for new models to share its resamples
DATASET_SEED = "numpy SeedSequence([seed, zlib.crc32(dataset name)]).generate_state(1, uint64)[0]"
ENCODING = "base64 of little-endian float32, one value per resample"


@dataclass
class Reference:
    """What one results file holds, ready to join an analysis."""
    path: str
    settings: dict[str, Any]        # n_boot, seed, level, metric, clip_x
    datasets: dict[str, dict[str, Any]]
    rows: list[Best]
    replicates: dict[tuple[str, str], np.ndarray]
    run_commits: list[str]


def export(path: str | Path, best: list[Best], replicates: dict[tuple[str, str], np.ndarray],
           settings: dict[str, Any], run_commits: Sequence[str]) -> Path:
    """Write the results file of an analysis (see the module docstring); returns its path."""
    datasets = {}
    for row in best:
        datasets.setdefault(row.dataset, {**{key: getattr(row, key) for key in DEFINITION},
                                          "split_sha256": row.split_sha256, "samples": row.report_samples,
                                          "ids_sha256": row.report_ids_sha256})
    for name, described in _describe(best).items():
        if len(described["split_sha256s"]) > 1:
            raise errors.DataError(f"--export: the {name} results were made on {len(described['split_sha256s'])} "
                                   f"split files (SHA-256 {', '.join(sorted(map(str, described['split_sha256s'])))}); "
                                   f"a results file holds one split per dataset: --models or --datasets can leave "
                                   f"the others out")
    content = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "created": provenance.now(),
        "toolkit": {"commit": provenance.git_commit(), "run_commits": sorted(set(run_commits)),
                    "record_schema_version": runrecord.SCHEMA_VERSION},
        "analysis": {key: settings[key] for key in ("metric", "clip_x", "level")},
        "resampling": {"n_boot": settings["n_boot"], "seed": settings["seed"], "dataset_seed": DATASET_SEED,
                       "order": "samples sorted by id", "encoding": ENCODING},
        "datasets": datasets,
        "results": [_result(row, replicates.get((row.dataset, row.model))) for row in best],
    }
    fileio.atomic_write_json(path, content)
    return Path(path)


def _result(row: Best, replicates: np.ndarray | None) -> dict[str, Any]:
    return {"dataset": row.dataset, "model": row.model, "run_id": row.run_id, "record": row.record,
            "configuration": {key: getattr(row, key) for key in TUNED}, "configurations": row.configurations,
            "chosen_by": row.chosen_by, "selection_split": row.selection_split,
            "selection_value": row.selection_value, "selection_low": row.selection_low,
            "selection_high": row.selection_high, "report_split": row.report_split, "metric": row.metric,
            "score": row.report_value, "low": row.report_low, "high": row.report_high,
            "interval_method": row.interval_method, "extra_split": row.extra_split, "extra_value": row.extra_value,
            "extra_low": row.extra_low, "extra_high": row.extra_high, "samples": row.report_samples,
            "imagenet_top1": row.imagenet_top1, "top1_source": row.top1_source,
            "top1_reference": row.top1_reference, "params": row.params, "group": row.group,
            "random_init": row.random_init, "split_sha256": row.split_sha256,
            "replicates": None if replicates is None else
            base64.b64encode(np.asarray(replicates, dtype="<f4").tobytes()).decode("ascii")}


def read_reference(path: str | Path, clip_x: str = "linear-probe") -> Reference:
    """A results file, checked; DataError naming the file and the problem when it is not one."""
    try:
        content = fileio.read_json(path)
    except (OSError, ValueError) as error:
        raise errors.DataError(f"--reference {path}: cannot be read as JSON ({error})") from error
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        raise errors.DataError(f"--reference {path}: not a results file of analyze.py --export (no format "
                               f"{FORMAT!r})")
    if content.get("format_version") != FORMAT_VERSION:
        raise errors.DataError(f"--reference {path}: format_version {content.get('format_version')!r}; this "
                               f"toolkit reads version {FORMAT_VERSION}")
    try:
        settings = {**{key: content["analysis"][key] for key in ("metric", "clip_x", "level")},
                    **{key: content["resampling"][key] for key in ("n_boot", "seed")}}
        rows, replicates = [], {}
        for result in content["results"]:
            row = _row(result, content["datasets"][result["dataset"]], str(path), clip_x)
            rows.append(row)
            if result["replicates"] is not None:
                values = np.frombuffer(base64.b64decode(result["replicates"]), dtype="<f4").astype(np.float32)
                if len(values) != settings["n_boot"]:
                    raise ValueError(f"{row.dataset}/{row.model} has {len(values)} replicates, not n_boot "
                                     f"{settings['n_boot']}")
                replicates[(row.dataset, row.model)] = values
        return Reference(str(path), settings, content["datasets"], rows, replicates,
                         list(content["toolkit"].get("run_commits") or []))
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise errors.DataError(f"--reference {path}: malformed results file ({type(error).__name__}: {error})") \
            from error


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def _row(result: dict[str, Any], dataset: dict[str, Any], path: str, clip_x: str) -> Best:
    """A result as the analysis's row; a model of this toolkit's registry takes its facts from it, as runs do."""
    recorded = ModelFacts(result["imagenet_top1"], result["top1_source"], result["params"], result["group"],
                          result["top1_reference"])
    facts = facts_of(result["model"], recorded, clip_x)
    row = Best(dataset=result["dataset"], model=result["model"], run_id=result["run_id"], record=result["record"],
               **{key: result["configuration"].get(key) for key in TUNED}, metric=result["metric"],
               chosen_by=result["chosen_by"], task=dataset["task"], num_classes=dataset["num_classes"],
               selection_split=result["selection_split"], selection_value=result["selection_value"],
               report_split=result["report_split"], report_value=float(result["score"]),
               extra_split=result["extra_split"], extra_value=result["extra_value"],
               imagenet_top1=facts.imagenet_top1, top1_source=facts.top1_source, params=facts.params,
               group=facts.group, configurations=int(result["configurations"]),
               random_init=bool(result["random_init"]), top1_reference=facts.top1_reference,
               split_sha256=result["split_sha256"], report_samples=result["samples"],
               report_ids_sha256=dataset.get("ids_sha256"), origin=path)
    for key in ("selection_low", "selection_high", "extra_low", "extra_high"):
        setattr(row, key, _number(result[key]))
    row.report_low, row.report_high, row.interval_method = _number(result["low"]), _number(result["high"]), \
        result["interval_method"]
    return row


def check_resampling(references: list[Reference], settings: dict[str, Any]) -> None:
    """Refuse (UsageError) references whose resamples differ from the ones `settings` ask for (--n-boot, --seed,
    --level): new models must be resampled as the file's were. Checked before any record is read."""
    for reference in references:
        for key in RESAMPLING:
            if settings[key] != reference.settings[key]:
                flag = "--" + key.replace("_", "-")
                raise errors.UsageError(f"{flag} {settings[key]} differs from the {key} of --reference "
                                        f"{reference.path} ({reference.settings[key]}): new models must be resampled "
                                        f"as its results were; pass {flag} {reference.settings[key]}")


def check_comparable(runs: list[Best], references: list[Reference]) -> None:
    """Refuse (DataError) any two sources (the runs' chosen rows, each file) whose results on a dataset were made on
    another split file or with another metric definition. Checked before the runs' predictions are resampled."""
    sources = [("the runs given", _describe(runs))] + [(r.path, r.datasets) for r in references]
    for i, (name, datasets) in enumerate(sources):
        for other, other_datasets in sources[:i]:
            for dataset in sorted(set(datasets) & set(other_datasets)):
                _check_same(dataset, other, other_datasets[dataset], name, datasets[dataset])


def join(runs: list[Best], run_replicates: dict[tuple[str, str], np.ndarray],
         references: list[Reference]) -> tuple[list[Best], dict[tuple[str, str], np.ndarray], list[str]]:
    """The runs' rows (marked new) and the references' rows in one list, with their resampled values, and a warning
    per row left out (a (dataset, model) both in the runs and in a file, or in two files: the first is kept).
    check_resampling and check_comparable have passed."""
    rows = [_as_new(row) for row in runs] if references else list(runs)
    replicates, warnings = dict(run_replicates), []
    taken = {(row.dataset, row.model): row.origin for row in rows}
    for reference in references:
        for row in reference.rows:
            key = (row.dataset, row.model)
            if key in taken:
                warnings.append(f"{row.dataset}/{row.model}: in {taken[key]} and in {reference.path}; the result "
                                f"of {taken[key]} is used")
                continue
            taken[key] = reference.path
            rows.append(row)
            if key in reference.replicates:
                replicates[key] = reference.replicates[key]
    for dataset in sorted({row.dataset for row in rows}):
        digests = {row.report_ids_sha256 for row in rows if row.dataset == dataset and row.report_ids_sha256}
        if len(digests) > 1:
            warnings.append(f"{dataset}: the reported split's samples differ between results (ids SHA-256 "
                            f"{', '.join(sorted(d[:12] for d in digests))}; a run that skipped bad images?): their "
                            f"resamples differ, so the benchmark's comparisons across them are not paired")
    return rows, replicates, warnings


def _as_new(row: Best) -> Best:
    row.new = True
    return row


def _describe(rows: list[Best]) -> dict[str, dict[str, Any]]:
    """The runs' datasets as a results file describes them (the first row of each: load_runs keeps a dataset's
    runs consistent), with every split SHA-256 their chosen runs used."""
    datasets: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = datasets.setdefault(row.dataset, {**{key: getattr(row, key) for key in DEFINITION},
                                                  "split_sha256s": set()})
        entry["split_sha256s"].add(row.split_sha256)
    return datasets


def _check_same(dataset: str, first: str, a: dict[str, Any], second: str, b: dict[str, Any]) -> None:
    """Refuse, in one line naming the dataset and both values, two sources' results on `dataset` made on
    different split files or with different metric definitions."""
    hashes_a = a.get("split_sha256s", {a.get("split_sha256")})
    hashes_b = b.get("split_sha256s", {b.get("split_sha256")})
    if hashes_a != hashes_b:
        raise errors.DataError(f"{dataset}: split file SHA-256 {' and '.join(sorted(map(str, hashes_a)))} in "
                               f"{first}, {' and '.join(sorted(map(str, hashes_b)))} in {second}; results on "
                               f"different splits cannot be compared (train on the reference's split file, or "
                               f"analyse them apart)")
    definition_a, definition_b = ({key: d.get(key) for key in DEFINITION} for d in (a, b))
    if definition_a != definition_b:
        differ = ", ".join(f"{key} {definition_a[key]} vs {definition_b[key]}" for key in DEFINITION
                           if definition_a[key] != definition_b[key])
        raise errors.DataError(f"{dataset}: the metric is defined differently in {first} and {second} ({differ}); "
                               f"their results cannot be compared (--metric must be the reference's)")
