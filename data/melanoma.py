"""SIIM-ISIC melanoma classification: dermoscopy images, benign or malignant (Kaggle, ISIC 2020 and 2019).

Two layouts are read. The paper's: the 512x512 re-packagings on Kaggle datasets, one folder per year,
`melanoma-2020/` and (optional) `melanoma-2019/`, each with `train.csv` (image_name, target, tfrecord,
patient_id, ...) and `train/<image_name>.jpg`; rows with tfrecord -1 are duplicate images and are excluded
(counted in `options["excluded"]`). The `tfrecord` folds are patient-isolated and drive the paper's split.
Otherwise the official 2020 download: `train.csv` and `jpeg/train/<image_name>.jpg`, without folds.
`options["files"]` holds each train.csv read and its rows (the paper's split is the two re-packagings: data.Published).
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from data import DatasetError, DatasetSpec, Samples
from data._checks import Row, duplicate_ids, parse_int, raise_if_problems, read_rows, require_dir, require_root
from data.images import check_image_files

YEARS = ("2020", "2019")
DUPLICATE = "duplicate image (tfrecord -1)"


class Kept(NamedTuple):
    """A sample that is not a duplicate."""
    year: str
    row: Row
    target: int | None
    fold: int | None
    file: Path


def load(spec: DatasetSpec, root: Path, years: Sequence[str] | None = None) -> Samples:
    """All labelled images of the given years (default: 2020, and 2019 when its folder exists)."""
    require_root(spec, root)
    repackaged = (root / "melanoma-2020").is_dir()
    if not repackaged and not (root / "train.csv").is_file():
        raise DatasetError(spec.name, root, [f"neither {root / 'melanoma-2020'}/ (the re-packaged layout) nor "
                                             f"{root / 'train.csv'} (the official 2020 layout) exists"])
    years = choose_years(root, years, repackaged)
    problems: list[str] = []
    kept: list[Kept] = []
    excluded, rows_per_file = 0, {}
    for year in years:
        folder = root / f"melanoma-{year}" if repackaged else root
        image_dir = folder / "train" if repackaged else root / "jpeg" / "train"
        if not require_dir(folder, problems):
            continue
        rows = read_rows(folder / "train.csv", "image_name", ["target", "tfrecord"] if repackaged else ["target"],
                         problems)
        rows_per_file[str((folder / "train.csv").relative_to(root))] = len(rows)
        year_kept = []
        for row in rows:
            target = parse_int(row, "target", 0, 1, problems)
            fold = parse_int(row, "tfrecord", -1, None, problems) if repackaged else None
            if fold == -1:
                excluded += 1
                continue
            year_kept.append(Kept(year, row, target, fold, image_dir / f"{row.id}.jpg"))
        if rows and not year_kept:
            problems.append(f"{folder / 'train.csv'}: every row is a duplicate (tfrecord -1), no samples left")
        if require_dir(image_dir, problems):
            problems += check_image_files([(k.file,) for k in year_kept])
        kept += year_kept
    problems += duplicate_ids([k.row.id for k in kept], [k.row.place for k in kept])
    raise_if_problems(spec, root, problems)

    columns = {"year": np.array([k.year for k in kept]),
               "patient_id": np.array([k.row.values.get("patient_id", "") for k in kept])}
    if repackaged:
        columns["tfrecord"] = np.array([k.fold for k in kept], dtype=np.int64)
    options = {"layout": "repackaged" if repackaged else "official", "years": list(years),
               "excluded": {DUPLICATE: excluded} if repackaged else {}, "files": rows_per_file}
    return Samples(spec=spec, root=root, ids=[k.row.id for k in kept],
                   labels=np.array([k.target for k in kept], dtype=np.int64),
                   class_names=spec.class_names, image_files=[(k.file,) for k in kept],
                   columns=columns, options=options)


def choose_years(root: Path, years: Sequence[str] | None, repackaged: bool) -> tuple[str, ...]:
    """The years to read; an explicitly requested year whose folder is missing is reported by the loader."""
    if years is None:
        return tuple(year for year in YEARS if year == "2020" or (repackaged and (root / f"melanoma-{year}").is_dir()))
    years = tuple(str(year) for year in years)
    if not years or set(years) - set(YEARS) or len(set(years)) != len(years):
        raise ValueError(f"melanoma: years must be distinct values from {YEARS}, got {years}")
    if not repackaged and years != ("2020",):
        raise DatasetError("melanoma", root, [f"{root}: years {years} need the re-packaged layout "
                                              f"(melanoma-2020/, melanoma-2019/); found the official 2020 layout"])
    return years
