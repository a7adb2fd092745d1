"""Which image is in which split: make or import a split, write its file, and resolve it for a run.

A split file is a CSV `id,label,split` with one row per labelled sample, in dataset order (split_files.py). It is
written under splits/ in the current folder, named after the dataset, the method and the seed, and the same inputs
always give the same bytes: its SHA-256 goes into every run record. An existing file with other content is never
replaced (a second copy of a dataset at another --root writes its split with --out and trains with --split-file).

Methods (split_methods.py): "paper" reproduces the published experiments' splits exactly, "official" takes the
source's own splits (CCT-20, CIFAR-10), "stratified" makes a class-balanced split (multi-label for HPA, patient-
grouped where patients are known) that is not the paper's. HPA's paper split is Park's published 73/18/9 file,
split.stratified.small.0.csv from the authors' repository: without it, splits.py and train.py stop and say where to
get it and how to import it (--from); --method stratified proceeds without it, labelled as not the paper's split.

`resolve(samples, split_file, method, seed)` returns a ResolvedSplit: the sample indices of every split, the split
file's path and SHA-256, and how it was made (method, seed, whether it is the paper's split: the paper's rule on the
published data, data.Published; on other data, "the paper's method on N of M images"); `resolve_split`
returns only the first three. For a final model, `train_on_all` merges the selection split into training, and
`with_extra_training` adds the samples of a second dataset appended by data.concatenate. `split_dataset` is what
splits.py does.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common import errors
from common.fileio import sha256_file
from data import DatasetSpec, Samples, describe, get_spec, open_dataset
from data.split_files import (
    UNUSED,
    SplitFileError,
    SplitFileExistsError,
    default_split_path,
    imported_split_path,
    read_split_file,
    render_split_file,
    write_or_check,
    write_split_file,
)
from data.split_methods import (
    METHODS,
    PAPER_SPLIT_FILES,
    PaperSplitFileNeeded,
    SplitMethodError,
    coverage,
    default_method,
    is_papers_rule,
    is_papers_split,
    make_split,
    method_seed,
    paper_split_file_needed,
)

__all__ = ["ResolvedSplit", "resolve", "resolve_split", "split_indices", "train_on_all", "with_extra_training",
           "describe_method", "count_table", "split_dataset", "SplitFileError", "SplitFileExistsError",
           "SplitMethodError", "PaperSplitFileNeeded", "METHODS", "UNUSED", "default_method", "make_split",
           "method_seed", "read_split_file", "render_split_file", "write_split_file", "default_split_path"]


@dataclass(frozen=True)
class ResolvedSplit:
    """The split a run uses, and how it was made (for its record)."""
    indices: dict[str, np.ndarray]  # sample indices (ascending) of each non-empty split, in spec.splits order
    path: Path                      # the split file
    sha256: str
    method: str | None              # None: read from a split file the user gave
    seed: int | None
    papers: bool | None             # whether it is the paper's split; None for a given file (not known)
    description: str                # e.g. "method 'stratified', seed 0 (NOT the paper's split, ...)"
    papers_method_on: dict | None = None  # the paper's rule on other data than the published: Coverage.to_record()


def describe_method(samples: Samples, method: str, seed: int | None) -> str:
    """How a split was made, saying whether it is the paper's split, or the paper's method on other data."""
    spec = samples.spec
    text = f"method '{method}'" + ("" if seed is None else f", seed {seed}")
    if is_papers_rule(spec, method, seed):
        covered = coverage(samples)
        if covered is None or covered.complete:
            return text + " (the paper's split)"
        return text + f" (the paper's method on {covered.text()}, NOT the paper's split)"
    if spec.paper_split == "none":
        return text + f" (the paper did not use {spec.name})"
    if spec.name in PAPER_SPLIT_FILES:
        return text + f" (NOT the paper's split, which is the published {PAPER_SPLIT_FILES[spec.name][0]})"
    return text + " (NOT the paper's split)"


def split_indices(assignment: np.ndarray, spec: DatasetSpec) -> dict[str, np.ndarray]:
    """Sample indices (ascending) of each split in spec.splits order; splits with no samples are left out."""
    assignment = np.asarray(assignment, dtype=object)
    indices = {name: np.flatnonzero(assignment == name) for name in spec.splits}
    return {name: rows for name, rows in indices.items() if len(rows)}


def _remake_command(samples: Samples, method: str, seed: int | None) -> str:
    seed_flag = "" if method == "official" or seed is None else f" --seed {seed}"
    return f"python splits.py {samples.name} --root {samples.root} --method {method}{seed_flag}"


def resolve(samples: Samples, split_file: str | Path | None = None, method: str | None = None,
            seed: int | None = None, out_dir: str | Path = "splits") -> ResolvedSplit:
    """The split train.py uses. With `split_file`, it is read and checked. Without, the split of `method`
    (default_method when None) is made and written to out_dir; an existing file of that name must hold the same
    bytes. HPA without a split file stops with PaperSplitFileNeeded, which names the file and how to import it."""
    if split_file is not None:
        assignment = read_split_file(split_file, samples)
        return ResolvedSplit(split_indices(assignment, samples.spec), Path(split_file), sha256_file(split_file),
                             None, None, None, f"split file {split_file} as given")
    method = method or default_method(samples.spec)
    if method == "paper" and samples.spec.paper_split == "import":  # HPA: the published file, once imported
        return imported_papers_split(samples, out_dir)
    assignment = make_split(samples, method, seed)
    seed = method_seed(samples.spec, method, seed)
    path = default_split_path(samples.name, method, seed, out_dir)
    sha = write_or_check(path, render_split_file(samples, assignment), _remake_command(samples, method, seed))
    return ResolvedSplit(split_indices(assignment, samples.spec), path, sha, method, seed,
                         is_papers_split(samples, method, seed), describe_method(samples, method, seed),
                         papers_method_on(samples, method, seed))


def imported_papers_split(samples: Samples, out_dir: str | Path = "splits") -> ResolvedSplit:
    """The paper's split of a dataset whose split is a published file (HPA: Park's), as `splits.py --from`
    imported it to its default place; PaperSplitFileNeeded, with how to get and import it, when it is not there."""
    file_name = PAPER_SPLIT_FILES[samples.name][0]
    path = imported_split_path(samples.name, file_name, out_dir)
    if not path.is_file():
        raise paper_split_file_needed(samples)
    indices = split_indices(read_split_file(path, samples), samples.spec)
    sizes = tuple((name, len(rows)) for name, rows in indices.items())
    papers = coverage(samples).complete and sizes == samples.spec.published.split_sizes
    described = (f"the paper's published {file_name}, imported as {path}"
                 + ("" if papers else f" (on {len(samples):,} images with split sizes "
                    f"{', '.join(f'{name} {size:,}' for name, size in sizes)}: NOT the paper's split, which has "
                    f"{', '.join(f'{name} {size:,}' for name, size in samples.spec.published.split_sizes)})"))
    return ResolvedSplit(indices, path, sha256_file(path), "paper", None, papers, described)


def papers_method_on(samples: Samples, method: str, seed: int | None) -> dict | None:
    """For the record: how the data differs from the published data when the paper's rule split other data."""
    covered = coverage(samples) if is_papers_rule(samples.spec, method, seed) else None
    return None if covered is None or covered.complete else covered.to_record()


def differences_text(samples: Samples, method: str, seed: int | None, shown: int = 5) -> str | None:
    """What splits.py prints when the paper's rule split other data than the published: how this copy differs."""
    found = papers_method_on(samples, method, seed)
    if found is None:
        return None
    listed = found["differences"]
    more = f"; and {len(listed) - shown} more" if len(listed) > shown else ""
    return (f"this copy is not the data the paper split ({samples.spec.published.source}): "
            + "; ".join(listed[:shown]) + more)


def resolve_split(samples: Samples, split_file: str | Path | None = None, method: str | None = None,
                  seed: int | None = None, out_dir: str | Path = "splits") -> tuple[dict[str, np.ndarray], Path, str]:
    """resolve()'s (sample indices per split, split file path, its SHA-256)."""
    resolved = resolve(samples, split_file, method, seed, out_dir)
    return resolved.indices, resolved.path, resolved.sha256


def train_on_all(indices: dict[str, np.ndarray], spec: DatasetSpec) -> dict[str, np.ndarray]:
    """The split of a final model (train.py --train-on all): the training and selection splits together form the
    training split, and no selection split is left; other splits (a report split, CCT-20's trans_*) stay as given."""
    train, selection = spec.splits[0], spec.selection_split
    merged = np.union1d(indices.get(train, np.array([], np.int64)), indices.get(selection, np.array([], np.int64)))
    return {train: merged.astype(np.int64), **{name: rows for name, rows in indices.items()
                                               if name not in (train, selection)}}


def with_extra_training(indices: dict[str, np.ndarray], spec: DatasetSpec, first: int, count: int
                        ) -> dict[str, np.ndarray]:
    """`indices` with samples first .. first + count - 1 added to the training split: the samples of an extra
    dataset appended by data.concatenate(primary, extra), for which first = len(primary), count = len(extra)."""
    train = spec.splits[0]
    extra = np.arange(first, first + count, dtype=np.int64)
    own = indices.get(train, np.array([], np.int64))
    if np.intersect1d(own, extra).size:
        raise ValueError(f"samples {first}..{first + count - 1} are already in the training split")
    return {train: np.concatenate([own, extra]), **{name: rows for name, rows in indices.items() if name != train}}


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
            raise errors.UsageError("--seed does not apply to an imported split file")
        assignment = read_split_file(from_file, samples)
        described = f"imported from {from_file}"
        out = out or imported_split_path(spec.name, from_file)
        remake = f"python splits.py {spec.name} --root {samples.root} --from {from_file}"
    else:
        method = method or default_method(spec)
        assignment = make_split(samples, method, seed)
        seed = method_seed(spec, method, seed)
        described = describe_method(samples, method, seed)
        out = out or default_split_path(spec.name, method, seed)
        remake = _remake_command(samples, method, seed)
    sha = write_or_check(out, render_split_file(samples, assignment), remake)
    differences = None if from_file is not None else differences_text(samples, method, seed)
    return "\n".join([describe(samples), f"split: {described}", *([differences] if differences else []),
                      f"split file {out}  sha256 {sha}", count_table(samples, assignment)])
