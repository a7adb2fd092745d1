"""The run record: the contract between training (which writes it), grid.py, evaluate.py and analyze.py (which read
it). This module owns its schema, its statuses, the metric key, and every path of a run; nothing else spells them.

Files of run <id> under the output folder (train.py --out, default runs/):
    <id>.json                      the record (written atomically; one JSON object, schema below)
    <id>/predictions-<split>.npz   the best epoch's per-sample predictions (write_predictions)
    <id>/best.safetensors          the best epoch's weights (train.py --save-weights best)
    <id>/state/                    the latest training state, removed when the run completes (training/run.py)

A record's `status` is one of STATUSES: running (training now, or stopped without saying so: killed), interrupted
(stopped by SIGTERM with its state saved; the same command resumes it), paused (stopped after --until-epoch),
complete, diverged (a non-finite loss or output; trains no more), failed (an error; the same command retries it).
Metrics are stored under metric_key(split, metric), e.g. "val_qwk", in each history entry and in best.metrics.

Records written by every earlier version of this schema (SCHEMA_VERSION 1) read unchanged: fields added since are
optional (`data_fingerprint`, `papers_method_on`, `slurm`, `stopped_at`).
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from common import choice, errors, fileio

SCHEMA_VERSION = 1  # of run and evaluation records; readers refuse records of another version

RUNNING, INTERRUPTED, PAUSED = "running", "interrupted", "paused"
COMPLETE, DIVERGED, FAILED = "complete", "diverged", "failed"
STATUSES = (RUNNING, INTERRUPTED, PAUSED, COMPLETE, DIVERGED, FAILED)
FINISHED = (COMPLETE, DIVERGED)  # a run in these states trains no more: train.py and grid.py skip it
UNFINISHED = (RUNNING, INTERRUPTED, PAUSED)  # a run with a saved state that the same command continues


class DatasetBlock(TypedDict, total=False):
    name: str
    task: str                   # multiclass, ordinal, binary, multilabel
    metric: str                 # the dataset's metric: epochs and configurations are chosen by it
    num_classes: int
    class_names: list[str]
    selection_split: str | None  # None: trained on all labelled data (--train-on all)
    report_split: str | None
    extra_splits: list[str]
    split_file: str
    split_sha256: str
    split_method: str | None
    split_seed: int | None
    papers_split: bool | None
    papers_method_on: dict[str, Any] | None  # the paper's rule on other data: {images, published, counted, differences}
    split_description: str
    split_sizes: dict[str, int]
    data_fingerprint: dict[str, int]  # {"images": count, "bytes": total size} of the files read
    excluded: dict[str, int]
    combined_with: Any


class BestEpoch(TypedDict):
    epoch: int
    metrics: dict[str, float | None]  # metric_key(split, metric) -> value


class RunRecord(TypedDict, total=False):
    schema_version: int
    run_id: str
    status: str                 # one of STATUSES
    error: str | None           # one line, for failed and diverged runs
    diverged_epoch: int | None
    config: dict[str, Any]      # the resolved configuration (training/config.py); its identity gives run_id
    dataset: DatasetBlock
    # nets.ModelInfo.to_record(): name, library, weights loaded, ImageNet top-1, default_input_size (the registry's
    # default fine-tuning size; older records: input_size; the size this run trains at is config.img_size), ...
    model: dict[str, Any]
    history: list[dict[str, Any]]  # per epoch: epoch, lr, train_loss, seconds, images_per_s, metric keys
    best: BestEpoch | None
    predictions: dict[str, str]  # split -> predictions file, relative to the record's folder
    skipped_bad_images: int
    bad_image_ids: list[str]
    lp_ft: dict[str, Any] | None
    halving: dict[str, Any] | None  # written by grid.py run --halving once its group is decided
    paths: dict[str, Any]
    normalization: dict[str, Any]
    precision: str
    num_processes: int
    packed_with: int
    input_path: str
    runtime: dict[str, Any]
    slurm: dict[str, str] | None
    stopped_at: dict[str, int]  # interrupted: {"epoch", "step", "steps"} where SIGTERM stopped it; it resumes there
    cache: dict[str, Any]
    started_at: str
    finished_at: str | None
    versions: dict[str, str | None]
    git_commit: str | None
    command: str


def metric_key(split: str, metric: str) -> str:
    """Where a split's value of a metric is stored in history entries and best.metrics."""
    return f"{split}_{metric}"


def selection_key(record: RunRecord) -> str | None:
    """The key the record's epochs are chosen by (None when it was trained on all labelled data)."""
    dataset = record["dataset"]
    split = dataset.get("selection_split")
    return metric_key(split, dataset["metric"]) if split else None


def epochs_done(record: RunRecord | None) -> int:
    return max((entry["epoch"] for entry in (record or {}).get("history") or []), default=0)


def best_value(record: RunRecord | None, until_epoch: int | None = None) -> float | None:
    """The best selection-split value among the record's epochs up to `until_epoch` (all with None)."""
    if not record or not record.get("history") or not selection_key(record):
        return None
    key = selection_key(record)
    values = [entry.get(key) for entry in record["history"] if until_epoch is None or entry["epoch"] <= until_epoch]
    finite = [value for value in map(choice.finite, values) if value is not None]
    return max(finite) if finite else None


def is_finished(record: RunRecord | None) -> bool:
    return bool(record) and record.get("status") in FINISHED


class RunFiles:
    """Where one run keeps its files (see the module docstring)."""

    def __init__(self, out: str | os.PathLike, run_id: str):
        self.out, self.run_id = Path(out), run_id
        self.record = self.out / f"{run_id}.json"
        self.folder = self.out / run_id
        self.state = self.folder / "state"
        self.best_weights = self.folder / "best.safetensors"

    def predictions(self, split: str) -> Path:
        return self.out / self.predictions_entry(split)

    def predictions_entry(self, split: str) -> str:
        """The file as the record lists it: relative to the record's folder, so that the folder can move."""
        return f"{self.run_id}/predictions-{split}.npz"


def files_of(record_path: str | os.PathLike) -> RunFiles:
    """The files of the run whose record is at `record_path`."""
    path = Path(record_path)
    return RunFiles(path.parent, path.stem)


# -- reading ------------------------------------------------------------------------------------------------------

class RecordProblem(errors.DataError, ValueError):
    """A file that cannot be used as a run record; the message names the file and says what is wrong with it."""


def read_raw(path: str | os.PathLike) -> RunRecord | None:
    """The JSON of a run's record, or None when the run has none yet; DataError naming the file when it cannot be
    read (grid.py and train.py look at records of runs that may not have started)."""
    try:
        return fileio.read_json(path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise errors.DataError(f"{path}: run record cannot be read ({error}); move it away to let the run start "
                               "again") from error


def read_record(path: str | os.PathLike) -> RunRecord:
    """A run record of this schema version, or RecordProblem naming the file and the problem."""
    path = Path(path)
    try:
        raw = fileio.read_json(path)
    except OSError as error:
        raise RecordProblem(f"{path}: cannot be read ({error.strerror or error})") from error
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError
        raise RecordProblem(f"{path}: is not valid JSON ({error})") from error
    if not isinstance(raw, dict) or ("run_id" not in raw and "config" not in raw):
        raise RecordProblem(f"{path}: is not a run record (no 'run_id' or 'config' field)")
    if raw.get("schema_version") != SCHEMA_VERSION:
        raise RecordProblem(f"{path}: has schema_version {raw.get('schema_version')!r}; this toolkit reads "
                            f"version {SCHEMA_VERSION}")
    if raw.get("status") not in STATUSES:
        raise RecordProblem(f"{path}: field 'status' is {raw.get('status')!r}, not one of {', '.join(STATUSES)}")
    return raw


def read_complete_record(run: str | os.PathLike) -> tuple[Path, RunRecord]:
    """The record of a complete run given as runs/<run_id> or runs/<run_id>.json (evaluate.py's runs)."""
    path = Path(run)
    record_path = path if path.suffix == ".json" else path.with_name(path.name + ".json")
    if not record_path.exists():
        raise RecordProblem(f"{record_path}: no run record found for {run}")
    raw = read_record(record_path)
    if raw["status"] != COMPLETE or not raw.get("best"):
        raise RecordProblem(f"{record_path}: run status is {raw['status']!r}; only complete runs have a best "
                            f"checkpoint")
    return record_path, raw


# -- predictions --------------------------------------------------------------------------------------------------

def write_predictions(path: str | os.PathLike, ids, labels, scores, thresholds, task: str) -> None:
    """Per-sample predictions of one split (see metrics/scoring.py for what `scores` holds). `thresholds` are the
    per-class thresholds or ordinal cut points chosen on the selection split, or None."""
    fileio.atomic_save_npz(path, ids=np.asarray(ids), labels=np.asarray(labels), scores=np.asarray(scores),
                           thresholds=np.asarray([] if thresholds is None else thresholds, dtype=np.float64),
                           task=np.asarray(task))


def read_predictions(path: str | os.PathLike) -> dict[str, Any]:
    """What write_predictions wrote: ids, labels, scores, thresholds (None when unused) and task.

    Raises ValueError naming the file when it cannot be read or lacks an array.
    """
    try:
        with np.load(path, allow_pickle=False) as saved:
            arrays = {key: saved[key] for key in saved.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:  # missing, truncated, not an .npz
        raise ValueError(f"predictions file {path} cannot be read ({type(error).__name__}: {error})") from error
    missing = [key for key in ("ids", "labels", "scores", "thresholds", "task") if key not in arrays]
    if missing:
        raise ValueError(f"predictions file {path} has no {', '.join(repr(k) for k in missing)} array")
    thresholds = arrays["thresholds"]
    return {"ids": arrays["ids"], "labels": arrays["labels"], "scores": arrays["scores"],
            "thresholds": thresholds if thresholds.size else None, "task": str(arrays["task"])}
