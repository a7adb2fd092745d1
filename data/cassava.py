"""Cassava leaf disease classification: smartphone photos of cassava leaves, four diseases or healthy (Kaggle).

Layout: `train.csv` (image_id, label), `label_num_to_disease_map.json` ({"0": name, ..., "4": name}) and
`train_images/<image_id>` (image_id already ends in .jpg).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from data import DatasetSpec, Samples
from data._checks import duplicate_ids, load_json, parse_int, raise_if_problems, read_rows, require_dir, require_root
from data.images import check_image_files


def load(spec: DatasetSpec, root: Path) -> Samples:
    require_root(spec, root)
    problems: list[str] = []
    class_names = read_class_names(root / "label_num_to_disease_map.json", spec.num_classes, problems)
    rows = read_rows(root / "train.csv", "image_id", ["label"], problems)
    labels = [parse_int(row, "label", 0, spec.num_classes - 1, problems) for row in rows]
    problems += duplicate_ids([row.id for row in rows], [row.place for row in rows])
    files = [(root / "train_images" / row.id,) for row in rows]
    if require_dir(root / "train_images", problems):
        problems += check_image_files(files)
    raise_if_problems(spec, root, problems)
    return Samples(spec=spec, root=root, ids=[row.id for row in rows], labels=np.array(labels, dtype=np.int64),
                   class_names=class_names, image_files=files)


def read_class_names(path: Path, num_classes: int, problems: list[str]) -> tuple[str, ...]:
    """Disease names by label from the JSON map, which must have exactly the keys "0".."num_classes-1"."""
    mapping = load_json(path, problems)
    if mapping is None:
        return ()
    expected = [str(label) for label in range(num_classes)]
    if not isinstance(mapping, dict) or sorted(mapping) != expected:
        keys = sorted(mapping) if isinstance(mapping, dict) else type(mapping).__name__
        problems.append(f"{path}: expected keys {expected}, found {keys}")
        return ()
    return tuple(str(mapping[key]) for key in expected)
