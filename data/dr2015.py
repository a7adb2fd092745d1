"""The 2015 Kaggle diabetic-retinopathy competition: retina photographs graded 0-4, the same scale as APTOS 2019.

Layout: `trainLabels.csv` (image, level) and `train/<image>.jpeg`, as the competition's train.zip.001-005 unpack.
Images are named `<patient>_left` / `<patient>_right`; the patient number goes into columns["patient_id"], so that
a stratified split keeps both eyes of a patient in one split. The test set (test/, retinopathy_solution.csv) is
not read. Used as extra training data for APTOS (data.concatenate), as the top APTOS solutions did.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from data import DatasetSpec, Samples
from data._checks import read_labelled_images


def load(spec: DatasetSpec, root: Path) -> Samples:
    rows, labels, files = read_labelled_images(spec, root, "trainLabels.csv", "image", "level", "train", ".jpeg")
    patients = [row.id.rsplit("_", 1)[0] if row.id.endswith(("_left", "_right")) else "" for row in rows]
    return Samples(spec=spec, root=root, ids=[row.id for row in rows], labels=np.array(labels, dtype=np.int64),
                   class_names=spec.class_names, image_files=files, columns={"patient_id": np.array(patients)})
