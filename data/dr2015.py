"""The 2015 Kaggle diabetic-retinopathy competition: retina photographs graded 0-4, the same scale as APTOS 2019.

Layout: `trainLabels.csv` (image, level) and `train/<image>.jpeg`, as the competition's train.zip.001-005 unpack:
35,126 images. The test images' grades were released after the competition as `retinopathy_solution.csv` (image,
level, Usage); when that file is present beside trainLabels.csv, its images (`test/<image>.jpeg`, as the
test.zip.001-007 parts unpack) are read too: 53,576 more, 88,702 in all, the labelled set the top APTOS 2019
entries trained on (the paper's Appendix F: "data from a prior 2015 diabetic retinopathy competition"). The printed
sample count says how many were read; `options["read"]` holds the count from each file.

Images are named `<patient>_left` / `<patient>_right`; the patient number goes into columns["patient_id"], so that
a stratified split keeps both eyes of a patient in one split. Used as extra training data for APTOS
(data.concatenate), as the top APTOS solutions did.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from data import DatasetError, DatasetSpec, Samples
from data._checks import duplicate_ids, read_labelled_images, require_root

TRAIN = ("trainLabels.csv", "train")             # (labels file, image folder)
TEST = ("retinopathy_solution.csv", "test")      # the test set's released grades; read when the file is present


def load(spec: DatasetSpec, root: Path) -> Samples:
    require_root(spec, root)
    parts = [TRAIN] + ([TEST] if (root / TEST[0]).is_file() else [])
    rows, labels, files, read = [], [], [], {}
    for labels_file, folder in parts:
        part_rows, part_labels, part_files = read_labelled_images(spec, root, labels_file, "image", "level", folder,
                                                                  ".jpeg")
        rows += part_rows
        labels += part_labels
        files += part_files
        read[labels_file] = len(part_rows)
    if len(parts) > 1:  # an image graded in both files would be two samples of one photograph
        problems = duplicate_ids([row.id for row in rows], [row.place for row in rows])
        if problems:
            raise DatasetError(spec.name, root, problems)
    patients = [row.id.rsplit("_", 1)[0] if row.id.endswith(("_left", "_right")) else "" for row in rows]
    return Samples(spec=spec, root=root, ids=[row.id for row in rows], labels=np.array(labels, dtype=np.int64),
                   class_names=spec.class_names, image_files=files, columns={"patient_id": np.array(patients)},
                   options={"read": read})
