"""A competition's unlabeled test folder as Samples, for Kaggle submissions (evaluate.py --submission).

Ids follow each competition's submission format: APTOS `test_images/<id_code>.png` -> id_code; HPA
`test/<Id>_<stain>.png` -> Id (the stains composed as in training); Melanoma `jpeg/test/<image_name>.jpg` ->
image_name; Cassava `test_images/<image_id>` -> image_id, file name included. Files are taken in sorted order.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from data import DatasetError, DatasetSpec, Samples
from data.images import check_image_files

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
HPA_STAINS = ("red", "green", "blue", "yellow")


def open_unlabeled(spec: DatasetSpec, folder: Path, num_channels: int = 3) -> Samples:
    if not folder.is_dir():
        raise DatasetError(spec.name, folder, [f"{folder}: test image folder does not exist"])
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    problems: list[str] = []
    if spec.name == "hpa":
        stains = HPA_STAINS[:num_channels]
        ids = sorted({p.stem.rsplit("_", 1)[0] for p in files if "_" in p.stem})
        image_files = [tuple(folder / f"{sample_id}_{stain}.png" for stain in stains) for sample_id in ids]
    else:
        ids = [p.name if spec.name == "cassava" else p.stem for p in files]
        image_files = [(p,) for p in files]
    if not ids:
        problems.append(f"{folder}: no PNG or JPEG images found")
    problems += check_image_files(image_files)
    if problems:
        raise DatasetError(spec.name, folder, problems)
    labels = (np.zeros((len(ids), spec.num_classes), dtype=np.uint8) if spec.task == "multilabel"
              else np.zeros(len(ids), dtype=np.int64))  # unknown: placeholders, never scored
    return Samples(spec=spec, root=folder, ids=ids, labels=labels, class_names=spec.class_names or (),
                   image_files=image_files, options={"channels": "rgby" if num_channels == 4 else "rgb",
                                                     "unlabeled": True})
