"""Split files: writing them byte-for-byte reproducibly, reading and checking them against their dataset.

A split file is a CSV `id,label,split` with one row per labelled sample, in dataset order (multi-label labels are
space-separated class indices). Reading also accepts the Kaggle-style `Id,Target,Split` of HPA's published file.
Run records name a split file by path and SHA-256, so an existing file is never silently replaced.

Used by splits.py, which makes and resolves splits.
"""
from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

import numpy as np

from common import errors
from common.fileio import atomic_write_bytes
from data import Samples, problem_list

UNUSED = "unused"  # split name for samples a split file deliberately leaves out of every split (e.g. a quick run)

# Accepted headers: ours, and the Kaggle-style `Id,Target,Split` of HPA's published split file.
COLUMN_NAMES = {"id": ("id", "Id"), "label": ("label", "Target"), "split": ("split", "Split")}


class SplitFileError(errors.DataError, ValueError):
    """A split file does not fit its dataset. The message names the file and each problem's row and field."""

    def __init__(self, path: Path | str, problems: list[str]):
        self.path, self.problems = Path(path), list(problems)
        super().__init__(f"split file {self.path}: {len(self.problems)} problem(s):\n{problem_list(self.problems)}")


class SplitFileExistsError(errors.DataError, FileExistsError):
    """A split file of that name exists with other content. The message names the ways out."""


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


def default_split_path(dataset: str, method: str, seed: int | None, out_dir: str | Path = "splits") -> Path:
    """splits/<dataset>-<method>[-seed<seed>].csv, relative to the current folder."""
    suffix = "" if seed is None else f"-seed{seed}"
    return Path(out_dir) / f"{dataset}-{method}{suffix}.csv"


def imported_split_path(dataset: str, file_name: str | Path, out_dir: str | Path = "splits") -> Path:
    """splits/<dataset>-from-<file's stem>.csv: where `splits.py DATASET --from FILE` writes an imported split, and
    where train.py finds the paper's imported file (HPA's) when no --split-file is given."""
    return Path(out_dir) / f"{dataset}-from-{Path(file_name).stem}.csv"


def write_or_check(path: Path, content: bytes, remake: str | None = None) -> str:
    """Write `content` to `path` unless the file already holds exactly it; refuse to replace other content.

    `remake` is the splits.py command (without --out) that makes this split, for the way out the error names.
    """
    if path.exists():
        if path.read_bytes() != content:
            other = path.with_name(f"{path.stem}-other-copy{path.suffix}")
            command = f"`{remake} --out {other}`" if remake else f"splits.py --out {other}"
            raise SplitFileExistsError(
                f"{path} exists with other content: a split made from other data (another copy of the dataset at "
                f"another --root, another version of it) or edited. Nothing was overwritten. If these are other "
                f"files on purpose, write this split to a file of its own with {command} and pass --split-file "
                f"{other}; if the existing file is the split you want, pass --split-file {path}; otherwise move it "
                f"away to write the new one")
    else:
        atomic_write_bytes(path, content)
    return hashlib.sha256(content).hexdigest()


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
