"""Which image is in which split: make split files, write them, and check them before training.

    python splits.py aptos --root datasets/aptos                 # the paper's split (seed 414)
    python splits.py cct20 --root datasets/cct20                 # the official files' splits
    python splits.py hpa --root datasets/hpa --from split.stratified.small.0.csv   # import HPA's published file
    python splits.py digits --method stratified --seed 1         # class-balanced 80/20 with another seed

A split file is a CSV `id,label,split` with one row per labelled sample, in dataset order (multi-label labels are
space-separated class indices). It is written under splits/ in the current folder, named after the dataset, the
method and the seed, and the same inputs always give the same bytes: its SHA-256 goes into every run record.

Methods:
  paper       the published experiments' splits, exactly. APTOS and Cassava: NumPy's legacy RNG seeded with 414,
              then per class in increasing label order `choice(rows of the class in CSV order, int(0.2 * n))`
              without replacement is validation. EuroSAT: the same with seed 42 over ImageFolder's order.
              Melanoma: seed 23, then per year (2020, 2019) `choice(folds, int(0.8 * n_folds))` of the distinct
              tfrecord folds are training, the other folds validation. HPA's paper split is a published file:
              import it with --from.
  official    the splits that the source's own files define (CCT-20, CIFAR-10).
  stratified  class-balanced: round(20%) of each class is validation (seeded, default 0); HPA gets an iterative
              multi-label stratification into 73/18/9% train/val/test_val; Melanoma keeps each patient's images
              in one split.

Library use (train.py): `resolve_split(samples, split_file)` returns the indices of every split, the split file's
path and its SHA-256, generating and writing the default split when no file is given.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import warnings
from pathlib import Path

import numpy as np
from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit
from sklearn.model_selection import StratifiedGroupKFold

import errors
from data import REGISTRY, DatasetSpec, Samples, get_spec, open_dataset
from records import atomic_write_bytes, sha256_file

METHODS = ("paper", "official", "stratified")
UNUSED = "unused"  # split name for samples a split file deliberately leaves out of every split (e.g. a quick run)
PAPER_SEEDS = {"aptos": 414, "cassava": 414, "eurosat": 42, "melanoma": 23}
PAPER_VAL_FRACTION = 0.2          # APTOS, Cassava, EuroSAT: int(0.2 * n) of each class
PAPER_TRAIN_FOLD_FRACTION = 0.8   # Melanoma: int(0.8 * n_folds) of each year's tfrecord folds
MELANOMA_YEARS = ("2020", "2019")  # the order the released code draws the years in
STRATIFIED_SEED = 0
STRATIFIED_VAL_FRACTION = 0.2
MULTILABEL_FRACTIONS = (0.73, 0.18, 0.09)  # train / selection / report, as in HPA's published file
PATIENT_GROUP_FOLDS = 5           # grouped stratification holds out one of five patient-disjoint folds (20%)
MAX_PROBLEMS_SHOWN = 10


class SplitFileError(errors.DataError, ValueError):
    """A split file does not fit its dataset. The message names the file and each problem's row and field."""

    def __init__(self, path: Path | str, problems: list[str]):
        self.path, self.problems = Path(path), list(problems)
        shown = "\n".join(f"  - {p}" for p in self.problems[:MAX_PROBLEMS_SHOWN])
        more = len(self.problems) - MAX_PROBLEMS_SHOWN
        tail = f"\n  ... and {more} more" if more > 0 else ""
        super().__init__(f"split file {self.path}: {len(self.problems)} problem(s):\n{shown}{tail}")


def default_method(spec: DatasetSpec) -> str:
    """The method used when none is named: the paper's split where splits.py can make it, else the official
    splits, else class-balanced (HPA included: its paper split is a file the user imports with --from)."""
    return {"paper": "paper", "official": "official"}.get(spec.paper_split, "stratified")


DEFAULT_METHOD = default_method  # the name the training scripts' issue uses


def method_seed(spec: DatasetSpec, method: str, seed: int | None) -> int | None:
    """The seed a method actually uses: the paper's seed for "paper", 0 for "stratified", none for "official"."""
    if method == "official":
        return None
    if method == "paper":
        return PAPER_SEEDS[spec.name] if seed is None else seed
    return STRATIFIED_SEED if seed is None else seed


# ---------------------------------------------------------------------------------------------------------------
# Making a split: one split name per sample


def make_split(samples: Samples, method: str, seed: int | None = None) -> np.ndarray:
    """The split name of every sample (object array, in sample order) under `method`."""
    spec = samples.spec
    if method not in METHODS:
        raise ValueError(f"unknown split method '{method}'; choose one of {', '.join(METHODS)}")
    if method == "paper":
        return _paper_split(samples, seed)
    if method == "official":
        if seed is not None:
            raise ValueError(f"{spec.name}: the official splits are fixed by the source's files and take no seed")
        return _official_split(samples)
    if spec.official_splits:
        raise ValueError(f"{spec.name}: its splits are defined by the source's files; use --method official")
    return _stratified_split(samples, method_seed(spec, method, seed))


def _paper_split(samples: Samples, seed: int | None) -> np.ndarray:
    spec = samples.spec
    if spec.paper_split == "import":
        raise ValueError(f"{spec.name}: the paper's split is a published split file; import it with --from FILE")
    if spec.paper_split == "official":
        raise ValueError(f"{spec.name}: the paper used the official splits; use --method official")
    if spec.name not in PAPER_SEEDS:
        raise ValueError(f"{spec.name}: the paper has no split for this dataset; use --method stratified")
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
            raise ValueError(f"{samples.name}: the paper's split needs the '{column}' column of the re-packaged "
                             f"melanoma-2020/ and melanoma-2019/ train.csv files")
    years = np.asarray(samples.columns["year"]).astype(str)
    folds = np.asarray(samples.columns["tfrecord"]).astype(np.int64)
    unknown_years = sorted(set(years) - set(MELANOMA_YEARS))
    if unknown_years:
        raise ValueError(f"{samples.name}: the paper's split knows the years {', '.join(MELANOMA_YEARS)}, "
                         f"not {', '.join(unknown_years)}")
    if (folds < 0).any():
        first = samples.ids[int(np.flatnonzero(folds < 0)[0])]
        raise ValueError(f"{samples.name}: {int((folds < 0).sum())} sample(s) have tfrecord < 0 (e.g. '{first}'); "
                         f"the re-packaging marks duplicates so, and they belong to no split")
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
        raise ValueError(f"{spec.name}: the dataset's files define no splits; use --method {default_method(spec)}")
    assignment = np.asarray(samples.official_split, dtype=object)
    unknown = sorted(set(assignment) - set(spec.splits), key=str)
    if unknown:
        raise ValueError(f"{spec.name}: official split names {unknown} are not among {', '.join(spec.splits)}")
    return assignment


def _stratified_split(samples: Samples, seed: int) -> np.ndarray:
    spec = samples.spec
    if samples.labels.ndim == 2:
        return _multilabel_split(samples.labels, spec, seed)
    if "patient_id" in samples.columns:
        groups = _patient_groups(samples)
        if len(np.unique(groups)) < PATIENT_GROUP_FOLDS:
            raise ValueError(f"{spec.name}: patient-grouped splitting needs at least {PATIENT_GROUP_FOLDS} "
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
    """Iterative stratification: 73% training, then the rest 2:1 into selection and report splits."""
    train_fraction, selection_fraction, report_fraction = MULTILABEL_FRACTIONS
    if spec.report_split is None:
        raise ValueError(f"{spec.name}: multi-label stratification needs a report split besides "
                         f"'{spec.selection_split}'")
    assignment = np.full(len(labels), spec.splits[0], dtype=object)
    first = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=1 - train_fraction, random_state=seed)
    _, rest = next(first.split(np.zeros((len(labels), 1)), labels))
    second = MultilabelStratifiedShuffleSplit(
        n_splits=1, test_size=report_fraction / (selection_fraction + report_fraction), random_state=seed)
    selection, report = next(second.split(np.zeros((len(rest), 1)), labels[rest]))
    assignment[rest[selection]] = spec.selection_split
    assignment[rest[report]] = spec.report_split
    return assignment


# ---------------------------------------------------------------------------------------------------------------
# Split files


def _label_text(label: np.ndarray | int) -> str:
    label = np.asarray(label)
    if label.ndim == 1:
        return " ".join(str(k) for k in np.flatnonzero(label))
    return str(int(label))


def render_split_file(samples: Samples, assignment: np.ndarray) -> bytes:
    """The split file's bytes: header `id,label,split`, one row per sample in sample order, '\\n' line ends."""
    assignment = np.asarray(assignment, dtype=object)
    if len(assignment) != len(samples):
        raise ValueError(f"{samples.name}: {len(assignment)} split names for {len(samples)} samples")
    unknown = sorted(set(assignment) - set(samples.spec.splits) - {UNUSED}, key=str)
    if unknown:
        raise ValueError(f"{samples.name}: split names {unknown} are not among {', '.join(samples.spec.splits)}")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "label", "split"])
    for sample_id, label, split in zip(samples.ids, samples.labels, assignment):
        writer.writerow([sample_id, _label_text(label), split])
    return buffer.getvalue().encode("utf-8")


def write_split_file(path: str | Path, samples: Samples, assignment: np.ndarray) -> str:
    """Write the split file atomically; returns its SHA-256."""
    content = render_split_file(samples, assignment)
    atomic_write_bytes(path, content)
    return hashlib.sha256(content).hexdigest()


# Accepted headers: ours, and the Kaggle-style `Id,Target,Split` of HPA's published split file.
COLUMN_NAMES = {"id": ("id", "Id"), "label": ("label", "Target"), "split": ("split", "Split")}


def read_split_file(path: str | Path, samples: Samples) -> np.ndarray:
    """The split name of every sample, read from a split file and checked against the dataset.

    The file's ids must be exactly the dataset's, each once; its labels must agree with the dataset's; every split
    name must be one of the dataset's; the training and selection splits must not be empty. Other columns are
    ignored. Raises SplitFileError listing the problems by row and field.
    """
    path = Path(path)
    spec = samples.spec
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except FileNotFoundError:
        raise SplitFileError(path, ["file not found"]) from None
    except UnicodeDecodeError as error:
        raise SplitFileError(path, [f"not UTF-8 text ({error.reason} at byte {error.start})"]) from None
    if not rows or not rows[0]:
        raise SplitFileError(path, ["row 1: no header; expected id,label,split"])
    header, rows = rows[0], rows[1:]
    columns = {}
    for field, names in COLUMN_NAMES.items():
        found = [i for i, name in enumerate(header) if name in names]
        if len(found) != 1:
            raise SplitFileError(path, [f"row 1 (header): needs exactly one '{names[0]}' column (or "
                                        f"'{names[1]}'), found header {','.join(header)}"])
        columns[field] = found[0]
    name_of = {field: header[index] for field, index in columns.items()}  # problems name the file's own columns

    index_of = {sample_id: i for i, sample_id in enumerate(samples.ids)}
    assignment = np.full(len(samples), None, dtype=object)
    first_row_of: dict[str, int] = {}
    problems = []
    for row_number, row in enumerate(rows, start=2):
        if not row:  # a blank line carries no sample
            continue
        if len(row) != len(header):
            problems.append(f"row {row_number}: {len(row)} fields, the header has {len(header)}")
            continue
        sample_id, label, split = (row[columns[field]] for field in ("id", "label", "split"))
        if sample_id in first_row_of:
            problems.append(f"row {row_number}, field '{name_of['id']}': '{sample_id}' is repeated "
                            f"(first on row {first_row_of[sample_id]})")
            continue
        first_row_of[sample_id] = row_number
        if sample_id not in index_of:
            problems.append(f"row {row_number}, field '{name_of['id']}': '{sample_id}' is not a sample "
                            f"of {spec.name}")
            continue
        index = index_of[sample_id]
        label_problem = _label_problem(label, samples.labels[index], len(samples.class_names))
        if label_problem:
            problems.append(f"row {row_number}, field '{name_of['label']}': {label_problem}")
        if split not in spec.splits and split != UNUSED:
            problems.append(f"row {row_number}, field '{name_of['split']}': '{split}' is not one of "
                            f"{', '.join(spec.splits)} (or '{UNUSED}')")
        else:
            assignment[index] = split
    missing = [sample_id for sample_id in samples.ids if sample_id not in first_row_of]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        problems.append(f"{len(missing)} sample id(s) of {spec.name} have no row: {shown}")
    if not problems:
        for role, name in (("training", spec.splits[0]), ("selection", spec.selection_split)):
            if not (assignment == name).any():
                problems.append(f"field '{name_of['split']}': no row is in '{name}', the {role} split")
    if problems:
        raise SplitFileError(path, problems)
    return assignment


def _label_problem(text: str, expected: np.ndarray, num_classes: int) -> str | None:
    """Why the label text disagrees with the dataset's label, or None when it agrees."""
    expected = np.asarray(expected)
    try:
        values = [int(token) for token in text.split()]
    except ValueError:
        return f"'{text}' is not a class index (multi-label: space-separated indices)"
    if expected.ndim == 1:
        wanted = [int(k) for k in np.flatnonzero(expected)]
        if sorted(set(values)) != wanted:
            return f"'{text}' disagrees with the dataset's labels '{' '.join(map(str, wanted))}'"
        return None
    if len(values) != 1 or not 0 <= values[0] < num_classes:
        return f"'{text}' is not one class index in 0..{num_classes - 1}"
    if values[0] != int(expected):
        return f"'{text}' disagrees with the dataset's label '{int(expected)}'"
    return None


def split_indices(assignment: np.ndarray, spec: DatasetSpec) -> dict[str, np.ndarray]:
    """Sample indices (ascending) of each split in spec.splits order; splits with no samples are left out."""
    assignment = np.asarray(assignment, dtype=object)
    indices = {name: np.flatnonzero(assignment == name) for name in spec.splits}
    return {name: rows for name, rows in indices.items() if len(rows)}


def default_split_path(dataset: str, method: str, seed: int | None, out_dir: str | Path = "splits") -> Path:
    """splits/<dataset>-<method>[-seed<seed>].csv, relative to the current folder."""
    suffix = "" if seed is None else f"-seed{seed}"
    return Path(out_dir) / f"{dataset}-{method}{suffix}.csv"


def write_or_check(path: Path, content: bytes) -> str:
    """Write `content` to `path` unless the file already holds exactly it; refuse to replace other content.

    Run records name a split file by path and SHA-256, so an existing file is never silently changed.
    """
    if path.exists():
        if path.read_bytes() != content:
            raise FileExistsError(f"{path} exists with other content (made from other data or another version, or "
                                  f"edited); use it as the split file as it is, or move it away to write the new one")
    else:
        atomic_write_bytes(path, content)
    return hashlib.sha256(content).hexdigest()


def resolve_split(samples: Samples, split_file: str | Path | None = None, method: str | None = None,
                  seed: int | None = None, out_dir: str | Path = "splits") -> tuple[dict[str, np.ndarray], Path, str]:
    """The split train.py uses: (sample indices per split, split file path, its SHA-256).

    With `split_file`, it is read and checked. Without, the default split of `method` (default_method when None)
    is generated and written to out_dir; an existing file of that name must hold the same bytes.
    """
    if split_file is not None:
        assignment = read_split_file(split_file, samples)
        return split_indices(assignment, samples.spec), Path(split_file), sha256_file(split_file)
    method = method or default_method(samples.spec)
    assignment = make_split(samples, method, seed)
    path = default_split_path(samples.name, method, method_seed(samples.spec, method, seed), out_dir)
    sha = write_or_check(path, render_split_file(samples, assignment))
    return split_indices(assignment, samples.spec), path, sha


def count_table(samples: Samples, assignment: np.ndarray) -> str:
    """Per-class counts (multi-label: samples carrying the label) per split, and the split sizes."""
    indices = split_indices(assignment, samples.spec)
    labels = samples.labels
    width = max(len(f"{k} {name}") for k, name in enumerate(samples.class_names)) + 2
    lines = ["class".ljust(width) + "".join(f"{name:>10}" for name in indices)]
    for k, name in enumerate(samples.class_names):
        counts = [int(labels[rows, k].sum()) if labels.ndim == 2 else int((labels[rows] == k).sum())
                  for rows in indices.values()]
        lines.append(f"{k} {name}".ljust(width) + "".join(f"{c:>10}" for c in counts))
    lines.append("total".ljust(width) + "".join(f"{len(rows):>10}" for rows in indices.values()))
    return "\n".join(lines)


def split_dataset(dataset: str, root: Path | None, method: str | None, seed: int | None, from_file: Path | None,
                  out: Path | None, **options) -> str:
    """What the command line does: make or import the split, write the file, and return the summary to print.

    `options` go to open_dataset (HPA: composite_dir).
    """
    spec = get_spec(dataset)
    samples = open_dataset(dataset, root, **options)
    if from_file is not None:
        if seed is not None:
            raise ValueError("--seed does not apply to an imported split file")
        assignment = read_split_file(from_file, samples)
        described = f"imported from {from_file}"
        out = out or Path("splits") / f"{spec.name}-from-{from_file.stem}.csv"
    else:
        method = method or default_method(spec)
        assignment = make_split(samples, method, seed)
        seed = method_seed(spec, method, seed)
        described = f"method '{method}'" + ("" if seed is None else f", seed {seed}")
        out = out or default_split_path(spec.name, method, seed)
    sha = write_or_check(out, render_split_file(samples, assignment))
    return "\n".join([f"{spec.name}: {len(samples)} samples, {described}", f"split file {out}  sha256 {sha}",
                      count_table(samples, assignment)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=sorted(REGISTRY), help="which dataset to split")
    parser.add_argument("--root", type=Path, default=None, help="the dataset's folder (default: datasets/<dataset>)")
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--method", choices=METHODS, default=None,
                     help="how to split (default: paper where splits.py reproduces it, official for CCT-20 and "
                          "CIFAR-10, else stratified)")
    how.add_argument("--from", dest="from_file", type=Path, default=None,
                     help="import this split file (id,label,split or HPA's Id,Target,Split) after checking it")
    parser.add_argument("--seed", type=int, default=None,
                        help="random seed (default: the paper's for paper, 0 for stratified; a different seed "
                             "for paper no longer reproduces the paper)")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to write the split file (default: splits/<dataset>-<method>-seed<seed>.csv)")
    parser.add_argument("--composite-dir", type=Path, default=None,
                        help="HPA only: the pre-composited <Id>.png images, when the stain files are not kept")
    args = parser.parse_args()

    if args.composite_dir is not None and args.dataset != "hpa":
        parser.error("--composite-dir applies to hpa only")
    options = {"composite_dir": args.composite_dir} if args.composite_dir is not None else {}
    try:
        summary = split_dataset(args.dataset, args.root, args.method, args.seed, args.from_file, args.out, **options)
    except (ValueError, FileExistsError) as error:  # bad data, split file or arguments: the message says which
        raise SystemExit(f"splits.py: error: {error}") from None
    print(summary)


if __name__ == "__main__":
    main()

