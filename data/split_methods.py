"""Making a split: the split name of every sample, by the paper's rules, the source's official files, or stratified.

Methods:
  paper       the published experiments' splits, exactly, when the data is the published data (data.Published;
              `coverage`): on fewer or other images the same rule makes "the paper's method on N of M images", which
              is recorded as not the paper's split. APTOS and Cassava: NumPy's legacy RNG seeded with 414,
              then per class in increasing label order `choice(rows of the class in CSV order, int(0.2 * n))`
              without replacement is validation. EuroSAT: the same with seed 42 over ImageFolder's order.
              Melanoma: seed 23, then per year (2020, 2019) `choice(folds, int(0.8 * n_folds))` of the distinct
              tfrecord folds are training, the other folds validation. HPA's paper split is a published file
              (Park's split.stratified.small.0.csv), which cannot be made, only imported (splits.py --from).
  official    the splits that the source's own files define (CCT-20, CIFAR-10).
  stratified  class-balanced: round(20%) of each class is validation (seeded, default 0); HPA gets an iterative
              multi-label stratification into 73/18/9% train/val/test_val; datasets with patient ids (Melanoma,
              the 2015 DR competition) keep each patient's images in one split. Never the paper's split.

Used by splits.py, which writes, reads and resolves split files.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from common import errors
from data import DatasetSpec, Samples
from data.split_files import imported_split_path

METHODS = ("paper", "official", "stratified")
PAPER_SEEDS = {"aptos": 414, "cassava": 414, "eurosat": 42, "melanoma": 23}
PAPER_VAL_FRACTION = 0.2          # APTOS, Cassava, EuroSAT: int(0.2 * n) of each class
PAPER_TRAIN_FOLD_FRACTION = 0.8   # Melanoma: int(0.8 * n_folds) of each year's tfrecord folds
MELANOMA_YEARS = ("2020", "2019")  # the order the released code draws the years in
STRATIFIED_SEED = 0
STRATIFIED_VAL_FRACTION = 0.2
MULTILABEL_FRACTIONS = (0.73, 0.18, 0.09)  # train / selection / report, as in HPA's published file
PATIENT_GROUP_FOLDS = 5           # grouped stratification holds out one of five patient-disjoint folds (20%)

# The published split files the paper used, for datasets whose paper split cannot be made (spec.paper_split
# "import"): the file's name and where to get it.
PAPER_SPLIT_FILES = {
    "hpa": ("split.stratified.small.0.csv",
            "https://github.com/mlfoundations/imagenet-applications-transfer (splits/hpa/split.stratified.small.0.csv,"
            " Park's 73/18/9 % multi-label stratified split: 22,582 train, 5,664 val, 2,826 test_val rows)"),
}


class SplitMethodError(errors.UsageError, ValueError):
    """A split method that this dataset cannot have (a seed for the official splits, tfrecord folds missing, ...)."""


class PaperSplitFileNeeded(errors.DataError, ValueError):
    """The paper's split of this dataset is a published file that has not been imported. The message says how."""


def default_method(spec: DatasetSpec) -> str:
    """The method used when none is named: the paper's split (HPA: its imported file), else the official splits,
    else class-balanced (a dataset the paper did not use)."""
    return {"paper": "paper", "import": "paper", "official": "official"}.get(spec.paper_split, "stratified")


def method_seed(spec: DatasetSpec, method: str, seed: int | None) -> int | None:
    """The seed a method actually uses: the paper's seed for "paper", 0 for "stratified", none for "official"."""
    if method == "official":
        return None
    if method == "paper":
        return PAPER_SEEDS[spec.name] if seed is None else seed
    return STRATIFIED_SEED if seed is None else seed


def is_papers_rule(spec: DatasetSpec, method: str, seed: int | None) -> bool:
    """Whether `method` with `seed` (None: the method's own) is the rule the paper split this dataset by."""
    if method == "official":
        return spec.paper_split == "official"
    return method == "paper" and spec.paper_split == "paper" and seed in (None, PAPER_SEEDS.get(spec.name))


def is_papers_split(samples: Samples, method: str, seed: int | None) -> bool:
    """Whether `method` with `seed` makes exactly the split the paper used: the paper's rule, on the published data
    (a partial or other copy split by the same rule is "the paper's method on N of M images", not its split)."""
    covered = coverage(samples)
    return is_papers_rule(samples.spec, method, seed) and (covered is None or covered.complete)


@dataclass(frozen=True)
class Coverage:
    """A copy of a dataset against the published data the paper split (data.Published), by count."""
    images: int                    # this copy's, counted as the published data is (images, or the files' rows)
    published: int
    counted: str                   # "images" or "rows"
    differences: tuple[str, ...]   # what differs; none: the published data

    @property
    def complete(self) -> bool:
        return not self.differences

    def text(self) -> str:
        return f"{self.images:,} of {self.published:,} {self.counted}"

    def to_record(self) -> dict:
        return {"images": self.images, "published": self.published, "counted": self.counted,
                "differences": list(self.differences)}


def coverage(samples: Samples) -> Coverage | None:
    """This copy against the data the paper's split was made from: the count of labelled images, of each class where
    the registry knows them, and of each file the split depends on (CCT-20's annotation files, Melanoma's two
    re-packagings); None for a dataset the paper did not use. Equal counts are taken as the published data (the
    run record's data fingerprint tells copies apart)."""
    published = samples.spec.published
    if published is None:
        return None
    differences = []
    if published.files:
        found = samples.options.get("files", {})
        images = sum(found.get(name, 0) for name, _ in published.files)
        differences += [f"{name}: {found.get(name, 0):,} of {count:,} {published.counted}"
                        + ("" if name in found else " (missing)")
                        for name, count in published.files if found.get(name, 0) != count]
    else:
        images = len(samples)
        if images != published.images:
            differences.append(f"{images:,} of {published.images:,} images")
        if published.classes and samples.labels.ndim == 1:
            counts = samples.class_counts()
            differences += [f"class '{name}': {int(have):,} of {count:,}"
                            for name, have, count in zip(samples.class_names, counts, published.classes)
                            if have != count]
    return Coverage(images, published.images, published.counted, tuple(differences))


def paper_split_file_needed(samples: Samples) -> PaperSplitFileNeeded:
    """The error that names the published split file of `samples`' dataset, where to get it and how to import it."""
    name = samples.name
    file_name, where = PAPER_SPLIT_FILES[name]
    return PaperSplitFileNeeded(
        f"{name}: the paper's split is a published file, which splits.py cannot make: {file_name}. Get it from "
        f"{where}; import it once with `python splits.py {name} --root {samples.root} --from {file_name}`, "
        f"which writes {imported_split_path(name, file_name)}, where train.py and grid.py then "
        f"find it (run them in the same folder). Or choose --split-method stratified (splits.py: --method "
        f"stratified) for a multi-label stratified 73/18/9 % split that is NOT the paper's")


def make_split(samples: Samples, method: str, seed: int | None = None) -> np.ndarray:
    """The split name of every sample (object array, in sample order) under `method`."""
    spec = samples.spec
    if method not in METHODS:
        raise SplitMethodError(f"unknown split method '{method}'; choose one of {', '.join(METHODS)}")
    if method == "paper":
        return _paper_split(samples, seed)
    if method == "official":
        if seed is not None:
            raise SplitMethodError(f"{spec.name}: the official splits are fixed by the source's files and take no "
                                   f"seed")
        return _official_split(samples)
    if spec.official_splits:
        raise SplitMethodError(f"{spec.name}: its splits are defined by the source's files; use --method official")
    return _stratified_split(samples, method_seed(spec, method, seed))


def _paper_split(samples: Samples, seed: int | None) -> np.ndarray:
    spec = samples.spec
    if spec.paper_split == "import":
        raise paper_split_file_needed(samples)
    if spec.paper_split == "official":
        raise SplitMethodError(f"{spec.name}: the paper used the official splits; use --method official")
    if spec.name not in PAPER_SEEDS:
        raise SplitMethodError(f"{spec.name}: the paper has no split for this dataset; use --method stratified")
    paper_seed = PAPER_SEEDS[spec.name]
    if seed is not None and seed != paper_seed:
        warnings.warn(f"{spec.name}: seed {seed} replaces the paper's seed {paper_seed}; this split no longer "
                      f"reproduces the paper's", stacklevel=3)
    # The released code seeds NumPy's global legacy RNG once; a RandomState draws the identical stream without
    # touching the global state.
    rng = np.random.RandomState(paper_seed if seed is None else seed)
    if spec.name == "melanoma":
        is_train = _melanoma_train_folds(samples, rng)
    else:
        is_train = ~_paper_holdout(samples.labels, len(samples.class_names), rng)
    return np.where(is_train, spec.splits[0], spec.selection_split).astype(object)


def _paper_holdout(labels: np.ndarray, num_classes: int, rng: np.random.RandomState) -> np.ndarray:
    """True for the validation samples: per class in label order, int(0.2 * n) of its rows drawn in row order.

    choice() is called for every class, even an empty or one-sample class, because the draw consumes the
    stream whatever its size and the later classes depend on it.
    """
    held_out = np.zeros(len(labels), dtype=bool)
    for label in range(num_classes):
        rows = np.flatnonzero(labels == label)
        held_out[rng.choice(rows, int(PAPER_VAL_FRACTION * len(rows)), replace=False)] = True
    return held_out


def _melanoma_train_folds(samples: Samples, rng: np.random.RandomState) -> np.ndarray:
    """True for the training samples: per year, int(0.8 * n_folds) of the year's tfrecord folds.

    Our reading of the released code: one seed call, then for 2020 and then 2019 the distinct folds >= 0 are
    listed and drawn from. It lists them by iterating a Python set of small non-negative integers, which CPython
    orders ascending, so the folds are drawn from in ascending order here. (It builds its train and validation
    sets in two passes, each re-seeding, so both passes see the same draws.)
    """
    for column in ("year", "tfrecord"):
        if column not in samples.columns:
            raise SplitMethodError(f"{samples.name}: the paper's split needs the '{column}' column of the re-packaged "
                                   f"melanoma-2020/ and melanoma-2019/ train.csv files")
    years = np.asarray(samples.columns["year"]).astype(str)
    folds = np.asarray(samples.columns["tfrecord"]).astype(np.int64)
    unknown_years = sorted(set(years) - set(MELANOMA_YEARS))
    if unknown_years:
        raise SplitMethodError(f"{samples.name}: the paper's split knows the years {', '.join(MELANOMA_YEARS)}, "
                               f"not {', '.join(unknown_years)}")
    if (folds < 0).any():
        first = samples.ids[int(np.flatnonzero(folds < 0)[0])]
        raise SplitMethodError(f"{samples.name}: {int((folds < 0).sum())} sample(s) have tfrecord < 0 (e.g. "
                               f"'{first}'); the re-packaging marks duplicates so, and they belong to no split")
    is_train = np.zeros(len(samples), dtype=bool)
    for year in MELANOMA_YEARS:
        in_year = years == year
        year_folds = np.unique(folds[in_year])
        train_folds = rng.choice(year_folds, int(PAPER_TRAIN_FOLD_FRACTION * len(year_folds)), replace=False)
        is_train |= in_year & np.isin(folds, train_folds)
    return is_train


def _official_split(samples: Samples) -> np.ndarray:
    spec = samples.spec
    if samples.official_split is None:
        raise SplitMethodError(f"{spec.name}: the dataset's files define no splits; use --method "
                               f"{default_method(spec)}")
    assignment = np.asarray(samples.official_split, dtype=object)
    unknown = sorted(set(assignment) - set(spec.splits), key=str)
    if unknown:
        raise SplitMethodError(f"{spec.name}: official split names {unknown} are not among {', '.join(spec.splits)}")
    return assignment


def _stratified_split(samples: Samples, seed: int) -> np.ndarray:
    spec = samples.spec
    if samples.labels.ndim == 2:
        return _multilabel_split(samples.labels, spec, seed)
    if "patient_id" in samples.columns:
        from sklearn.model_selection import StratifiedGroupKFold  # here: a second's import, for this case only
        groups = _patient_groups(samples)
        if len(np.unique(groups)) < PATIENT_GROUP_FOLDS:
            raise SplitMethodError(f"{spec.name}: patient-grouped splitting needs at least {PATIENT_GROUP_FOLDS} "
                                   f"patients, found {len(np.unique(groups))}")
        folds = StratifiedGroupKFold(n_splits=PATIENT_GROUP_FOLDS, shuffle=True, random_state=seed)
        held_out = np.zeros(len(samples), dtype=bool)
        _, val_rows = next(folds.split(np.zeros(len(samples)), samples.labels, groups))
        held_out[val_rows] = True
    else:
        held_out = _balanced_holdout(samples.labels, len(samples.class_names), seed)
    return np.where(held_out, spec.selection_split, spec.splits[0]).astype(object)


def _balanced_holdout(labels: np.ndarray, num_classes: int, seed: int) -> np.ndarray:
    """True for round(20%) of each class (halves round up), drawn per class in label order.

    Uses the legacy RandomState because NumPy keeps its stream fixed across versions, so the file stays the same.
    """
    rng = np.random.RandomState(seed)
    held_out = np.zeros(len(labels), dtype=bool)
    for label in range(num_classes):
        rows = np.flatnonzero(labels == label)
        held_out[rng.choice(rows, int(np.floor(STRATIFIED_VAL_FRACTION * len(rows) + 0.5)), replace=False)] = True
    return held_out


def _patient_groups(samples: Samples) -> np.ndarray:
    """Patient ids; a sample without one (empty or NaN in the CSV) is a patient of its own."""
    patients = np.asarray(samples.columns["patient_id"]).astype(str)
    missing = np.isin(np.char.lower(patients), ["", "nan", "none"])
    own_group = np.char.add("image:", np.asarray(samples.ids, dtype=str))
    return np.where(missing, own_group, np.char.add("patient:", patients))


def _multilabel_split(labels: np.ndarray, spec: DatasetSpec, seed: int) -> np.ndarray:
    """Iterative stratification: 73% training, then the rest 2:1 into the selection split and the third split."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit  # here: a slow import most runs skip
    train_fraction, selection_fraction, report_fraction = MULTILABEL_FRACTIONS
    third = [name for name in spec.splits if name not in (spec.splits[0], spec.selection_split)]
    if len(third) != 1:
        raise SplitMethodError(f"{spec.name}: multi-label stratification needs exactly one split besides "
                               f"'{spec.splits[0]}' and '{spec.selection_split}', the dataset has {spec.splits}")
    assignment = np.full(len(labels), spec.splits[0], dtype=object)
    first = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=1 - train_fraction, random_state=seed)
    _, rest = next(first.split(np.zeros((len(labels), 1)), labels))
    second = MultilabelStratifiedShuffleSplit(
        n_splits=1, test_size=report_fraction / (selection_fraction + report_fraction), random_state=seed)
    selection, report = next(second.split(np.zeros((len(rest), 1)), labels[rest]))
    assignment[rest[selection]] = spec.selection_split
    assignment[rest[report]] = third[0]
    return assignment
