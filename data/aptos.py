"""APTOS 2019 blindness detection: retina photographs graded 0-4 for diabetic retinopathy (Kaggle).

Layout: `train.csv` (id_code, diagnosis) and `train_images/<id_code>.png`. The unlabelled test.csv/test_images
are not read.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from data import DatasetSpec, Samples
from data._checks import duplicate_ids, parse_int, raise_if_problems, read_rows, require_dir, require_root
from data.images import check_image_files


def load(spec: DatasetSpec, root: Path) -> Samples:
    require_root(spec, root)
    problems: list[str] = []
    rows = read_rows(root / "train.csv", "id_code", ["diagnosis"], problems)
    labels = [parse_int(row, "diagnosis", 0, spec.num_classes - 1, problems) for row in rows]
    problems += duplicate_ids([row.id for row in rows], [row.place for row in rows])
    files = [(root / "train_images" / f"{row.id}.png",) for row in rows]
    if require_dir(root / "train_images", problems):
        problems += check_image_files(files)
    raise_if_problems(spec, root, problems)
    return Samples(spec=spec, root=root, ids=[row.id for row in rows], labels=np.array(labels, dtype=np.int64),
                   class_names=spec.class_names, image_files=files)
