"""Human Protein Atlas image classification: 28 protein locations in fluorescence microscopy, multi-label (Kaggle).

Layout: `train.csv` (Id, Target = space-separated location ids) and one 8-bit grayscale PNG per stain,
`train/<Id>_{red,green,blue,yellow}.png`. A sample's image stacks the stains in the order of `channels`:
"rgb" (microtubules, protein, nucleus; the default) or "rgby" (plus endoplasmic reticulum). With
`composite_dir`, each sample is instead one pre-composited `<composite_dir>/<Id>.png` (RGB, or RGBA for "rgby").
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from data import DatasetSpec, Samples
from data._checks import Row, duplicate_ids, raise_if_problems, read_rows, require_dir, require_root
from data.images import check_image_files

CHANNELS = {"rgb": ("red", "green", "blue"), "rgby": ("red", "green", "blue", "yellow")}


def load(spec: DatasetSpec, root: Path, channels: str = "rgb", composite_dir: str | Path | None = None) -> Samples:
    if channels not in CHANNELS:
        raise ValueError(f"hpa: channels must be one of {sorted(CHANNELS)}, got {channels!r}")
    require_root(spec, root)
    problems: list[str] = []
    rows = read_rows(root / "train.csv", "Id", ["Target"], problems)
    labels = np.zeros((len(rows), spec.num_classes), dtype=np.uint8)
    for i, row in enumerate(rows):
        for label in parse_targets(row, spec.num_classes, problems):
            labels[i, label] = 1
    problems += duplicate_ids([row.id for row in rows], [row.place for row in rows])
    if composite_dir is not None:
        folder = Path(composite_dir)
        files = [(folder / f"{row.id}.png",) for row in rows]
    else:
        folder = root / "train"
        files = [tuple(folder / f"{row.id}_{stain}.png" for stain in CHANNELS[channels]) for row in rows]
    if require_dir(folder, problems):
        problems += check_image_files(files)
    raise_if_problems(spec, root, problems)
    options = {"channels": channels, "composite_dir": str(composite_dir) if composite_dir is not None else None}
    return Samples(spec=spec, root=root, ids=[row.id for row in rows], labels=labels,
                   class_names=spec.class_names, image_files=files, options=options)


def parse_targets(row: Row, num_classes: int, problems: list[str]) -> list[int]:
    """The location ids of `row`'s Target: at least one, each an integer in 0..num_classes-1, none repeated."""
    text = row.values["Target"].strip()
    if not text:
        problems.append(f"{row.where()}: Target is empty (every image has at least one label)")
        return []
    try:
        targets = [int(token) for token in text.split()]
    except ValueError:
        problems.append(f"{row.where()}: Target {text!r} is not a list of space-separated integers")
        return []
    if bad := [t for t in targets if not 0 <= t < num_classes]:
        problems.append(f"{row.where()}: Target {text!r} has label(s) {bad} out of range (0..{num_classes - 1})")
        return []
    if len(set(targets)) != len(targets):
        problems.append(f"{row.where()}: Target {text!r} repeats a label")
        return []
    return targets
