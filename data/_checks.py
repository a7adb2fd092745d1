"""Checks shared by the dataset loaders: the layout is checked up front and every problem is collected.

A loader appends problem strings (each naming the file, the line or field, and what is wrong) to one list while it
reads a dataset's CSV/JSON files, then calls `raise_if_problems`, so that a user sees everything wrong with a
download in one DatasetError instead of fixing it one crash at a time.
"""
from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from data import DatasetError, DatasetSpec
from data.images import check_image_files


@dataclass(frozen=True)
class Row:
    """One data row of a CSV file: where it is, its id and its values by column name."""
    path: Path
    line: int
    id: str
    values: dict[str, str]

    @property
    def place(self) -> str:
        return f"{self.path} line {self.line}"

    def where(self) -> str:
        return f"{self.place} (id {self.id!r})"


def require_root(spec: DatasetSpec, root: Path) -> None:
    """Stop at once when the dataset folder itself is missing: every other check would only repeat that."""
    if not root.is_dir():
        raise DatasetError(spec.name, root, [f"{root}: dataset folder does not exist (get it from: {spec.source})"])


def raise_if_problems(spec: DatasetSpec, root: Path, problems: list[str]) -> None:
    if problems:
        raise DatasetError(spec.name, root, problems)


def require_dir(path: Path, problems: list[str]) -> bool:
    """True if folder `path` exists; otherwise one problem (not one per image that would be in it)."""
    if path.is_dir():
        return True
    problems.append(f"{path}: folder is missing")
    return False


def name_problem(name: str) -> str | None:
    """Why `name` cannot be used as a file name inside the dataset folder, or None if it can.

    Ids become paths (root / folder / id); an id with a separator or '..' could point outside the dataset.
    """
    if name.strip() in ("", ".", ".."):
        return f"{name!r} is not a file name"
    if any(character in name for character in "/\\\0"):
        return f"{name!r} contains a path separator (must be a plain file name inside the dataset folder)"
    return None


def read_rows(path: Path, id_column: str, columns: Sequence[str], problems: list[str]) -> list[Row]:
    """The data rows of CSV `path`, each keyed by its `id_column` value.

    Reports a missing or unreadable file, missing columns (all of them), rows with the wrong number of fields,
    ids that are not plain file names, and a file without data rows. Rows with a problem are not returned.
    """
    if not path.is_file():
        problems.append(f"{path}: file is missing")
        return []
    rows, bad_rows = [], 0
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            missing = [column for column in (id_column, *columns) if column not in header]
            if missing:
                found = ", ".join(header) or "none"
                problems.extend(f"{path}: column '{column}' is missing (columns found: {found})" for column in missing)
                return []
            for values in reader:
                line = reader.line_num
                if None in values or None in values.values():
                    problems.append(f"{path} line {line}: expected {len(header)} comma-separated fields")
                    bad_rows += 1
                    continue
                row = Row(path, line, values[id_column], values)
                if problem := name_problem(row.id):
                    problems.append(f"{row.place}: {id_column} {problem}")
                    bad_rows += 1
                    continue
                rows.append(row)
    except (UnicodeDecodeError, csv.Error) as error:
        problems.append(f"{path}: cannot be read as a CSV file ({error})")
        return []
    if not rows and not bad_rows:
        problems.append(f"{path}: no data rows (the dataset is empty)")
    return rows


def parse_int(row: Row, column: str, low: int, high: int | None, problems: list[str]) -> int | None:
    """Integer value of `column` in `row` if it parses and lies in low..high; otherwise a problem and None."""
    text = row.values[column].strip()
    try:
        value = int(text)
    except ValueError:
        problems.append(f"{row.where()}: {column} {text!r} is not an integer")
        return None
    if value < low or (high is not None and value > high):
        allowed = f"{low}..{high}" if high is not None else f">= {low}"
        problems.append(f"{row.where()}: {column} {value} is out of range ({allowed})")
        return None
    return value


def load_json(path: Path, problems: list[str]) -> Any:
    """Parsed JSON of `path`, or None with a problem when it is missing or not valid JSON."""
    if not path.is_file():
        problems.append(f"{path}: file is missing")
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        problems.append(f"{path}: not valid JSON ({error})")
        return None


def duplicate_ids(ids: Sequence[str], places: Sequence[str]) -> list[str]:
    """One problem per id that occurs more than once, naming every place (file, line) it occurs."""
    seen: dict[str, list[str]] = defaultdict(list)
    for sample_id, place in zip(ids, places):
        seen[sample_id].append(place)
    return [f"id {sample_id!r} occurs {len(where)} times: {'; '.join(where)}"
            for sample_id, where in seen.items() if len(where) > 1]


def read_labelled_images(spec: DatasetSpec, root: Path, csv_name: str, id_column: str, label_column: str,
                         image_dir: str, suffix: str) -> tuple[list[Row], list[int], list[tuple[Path, ...]]]:
    """The rows, integer labels and image files of a CSV that grades one image file per id (APTOS, the 2015 DR
    competition): `<root>/<image_dir>/<id><suffix>`. Checks everything up front and raises one DatasetError."""
    require_root(spec, root)
    problems: list[str] = []
    rows = read_rows(root / csv_name, id_column, [label_column], problems)
    labels = [parse_int(row, label_column, 0, spec.num_classes - 1, problems) for row in rows]
    problems += duplicate_ids([row.id for row in rows], [row.place for row in rows])
    files = [(root / image_dir / f"{row.id}{suffix}",) for row in rows]
    if require_dir(root / image_dir, problems):
        problems += check_image_files(files)
    raise_if_problems(spec, root, problems)
    return rows, labels, files
