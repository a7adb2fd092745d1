"""Kaggle submission files in each competition's own format (header and value types as Kaggle expects them).

    python evaluate.py runs/<run_id>.json --test-dir test_images/ --submission submission.csv

APTOS 2019, HPA, SIIM-ISIC Melanoma and Cassava were Kaggle competitions; CCT-20 and EuroSAT were not.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

import metrics
from common import errors, fileio
from data import get_spec

COLUMNS = {"aptos": ("id_code", "diagnosis"), "hpa": ("Id", "Predicted"),
           "melanoma": ("image_name", "target"), "cassava": ("image_id", "label")}


def check_competition(dataset: str) -> None:
    """Refuse, before any compute, a dataset that was not a Kaggle competition."""
    if dataset not in COLUMNS:
        raise errors.UsageError(f"--submission: no Kaggle competition format for dataset '{dataset}' (known: "
                                f"{', '.join(COLUMNS)})")


def write_submission(path: Path, dataset: str, ids: np.ndarray, scores: np.ndarray, thresholds) -> None:
    """Melanoma: the probability of melanoma; HPA: the space-separated predicted classes; the others: the class."""
    check_competition(dataset)
    spec = get_spec(dataset)
    if dataset == "melanoma":
        values = [f"{p:.6f}" for p in (scores[:, 1] if scores.ndim == 2 else scores)]
    elif dataset == "hpa":
        predicted = metrics.hard_predictions(spec.task, scores, thresholds)
        values = [" ".join(str(c) for c in np.flatnonzero(row)) for row in predicted]
    else:
        values = [str(int(v)) for v in metrics.hard_predictions(spec.task, scores, thresholds, spec.num_classes)]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS[dataset])
    writer.writerows(zip(ids, values))
    fileio.atomic_write_text(path, buffer.getvalue())
