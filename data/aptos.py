"""APTOS 2019 blindness detection: retina photographs graded 0-4 for diabetic retinopathy (Kaggle).

Layout: `train.csv` (id_code, diagnosis) and `train_images/<id_code>.png`. The unlabelled test.csv/test_images
are not read.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from data import DatasetSpec, Samples
from data._checks import read_labelled_images


def load(spec: DatasetSpec, root: Path) -> Samples:
    rows, labels, files = read_labelled_images(spec, root, "train.csv", "id_code", "diagnosis", "train_images", ".png")
    return Samples(spec=spec, root=root, ids=[row.id for row in rows], labels=np.array(labels, dtype=np.int64),
                   class_names=spec.class_names, image_files=files)
