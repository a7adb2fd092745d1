"""Which runs evaluate.py scores, and on which data: finding complete runs, checking that they can be ensembled,
and opening the dataset and split they were trained on (from any folder: records keep their paths as resolved)."""
from __future__ import annotations

import sys
from pathlib import Path

from common import errors, runrecord
from data import DatasetError, open_dataset, splits
from evaluation.options import EvalOptions


def find_runs(inputs: list[str], runs_dir: str) -> list[tuple[Path, dict]]:
    """The complete runs the inputs name, each once: records, run folders, bare run ids, folders of records."""
    found: list[tuple[Path, dict]] = []
    for text in inputs:
        path = Path(text)
        if path.is_dir() and not path.with_name(path.name + ".json").exists():  # a folder of records
            found += complete_runs_in(path)
            continue
        if not (path.exists() or path.with_name(path.name + ".json").exists()) and "/" not in text:
            path = Path(runs_dir) / text  # a bare run id
        found.append(runrecord.read_complete_record(path))
    seen: dict[Path, str] = {}
    for record_path, _ in found:
        resolved = record_path.resolve()
        if resolved in seen:
            raise errors.UsageError(f"run {record_path.stem} is given twice ({seen[resolved]!r} and again); an "
                                    f"ensemble weighs each run once, so give it once")
        seen[resolved] = str(record_path)
    return found


def complete_runs_in(folder: Path) -> list[tuple[Path, dict]]:
    """The complete runs recorded in `folder`; one note lists the JSON files left out (other files, runs that are
    not complete) and why."""
    complete, left_out = [], []
    for path in sorted(folder.glob("*.json")):
        try:
            complete.append(runrecord.read_complete_record(path))
        except runrecord.RecordProblem as problem:
            left_out.append(f"{path.name} ({str(problem).removeprefix(f'{path}: ')})")
    if not complete:
        raise errors.DataError(f"{folder}: no complete run record in this folder"
                               + (f" (left out: {'; '.join(left_out)})" if left_out else ""))
    if left_out:
        print(f"note: {folder}: left out {len(left_out)} JSON file(s) that are not complete run records: "
              f"{'; '.join(left_out)}", file=sys.stderr)
    return complete


def check_ensemble(runs: list[tuple[Path, dict]], options: EvalOptions, spec) -> None:
    """Refuse to average runs (and --model) whose scores mean different things or whose thresholds would be fit on
    different images: another head or number of outputs, selection split or split file. Runs scored side by side
    (--ensemble none) must share their selection split too: one command fits thresholds on one split."""
    selections = {record["run_id"]: record["dataset"].get("selection_split", spec.selection_split)
                  for _, record in runs}
    if len(set(selections.values())) > 1:
        shown = ", ".join(f"{run_id}: {split}" for run_id, split in selections.items())
        raise errors.UsageError(f"the runs pick thresholds and cut points on different selection splits ({shown}); "
                                f"evaluate them in separate commands")
    if options.ensemble != "mean" or len(runs) + bool(options.model) < 2:
        return
    members = [(f"run {record['run_id']}", {
        "config.head": record["config"].get("head", "classification"),
        "model.num_outputs": record["model"]["num_outputs"],
        "dataset.selection_split": record["dataset"].get("selection_split", spec.selection_split),
        "dataset.split_sha256": record["dataset"]["split_sha256"]}) for _, record in runs]
    if options.model:  # scored on the runs' split (open_run_data checks it), so only its head can differ
        members.append((f"--model {options.model}", {"config.head": options.head, "model.num_outputs":
                                                  1 if options.head == "regression" else spec.num_classes}))
    (first, reference), *others = members
    for name, fields in others:
        for field, value in fields.items():
            if value != reference[field]:
                raise errors.UsageError(f"cannot ensemble {first} and {name}: their {field} differ "
                                        f"({reference[field]!r} and {value!r}); score them with --ensemble none, or "
                                        f"ensemble runs that agree")


def check_weights(runs: list[tuple[Path, dict]]) -> None:
    """Every run keeps its best weights, before any data is opened or model built."""
    for record_path, record in runs:
        weights = runrecord.files_of(record_path).best_weights
        if not weights.is_file():
            raise errors.DataError(f"run {record['run_id']} has no weights file {weights} (trained with "
                                   f"--save-weights none, or removed); score its saved predictions with "
                                   f"--from-predictions")


def member_name(record_path: Path, record: dict, taken) -> str:
    """The run id; a copy of the same run in another folder is told apart by its folder."""
    return record["run_id"] if record["run_id"] not in taken else f"{record['run_id']} ({record_path.parent})"


def recorded_path(record: dict, key: str) -> Path:
    """A path the run used (its dataset root or split file), as it resolved when the run trained, so that
    evaluate.py finds it from any folder; older records only have the path as given."""
    resolved = ((record.get("paths") or {}).get(key) or {}).get("resolved")
    given = record["config"]["root"] if key == "root" else record["dataset"]["split_file"]
    return Path(resolved or given)


def open_run_data(runs: list[tuple[Path, dict]], spec, options: EvalOptions):
    """(samples, split) for scoring models: the runs' dataset and split, unless --root / --split-file say otherwise."""
    record = runs[0][1] if runs else None
    config = record["config"] if record else {}
    root = Path(options.root) if options.root else (recorded_path(record, "root") if record else None)
    hpa_options = ({"channels": config.get("channels", options.channels), "composite_dir": config.get("composite_dir")}
                   if spec.name == "hpa" else {})
    try:
        samples = open_dataset(spec.name, root, **hpa_options)
    except DatasetError as error:
        if options.root or not record:
            raise
        raise errors.DataError(f"run {record['run_id']} trained on the dataset at {root}, which cannot be opened "
                               f"now; if it has moved, pass --root with its folder. {error}") from None
    split_file = options.split_file or (recorded_path(record, "split_file") if record else None)
    split = splits.resolve(samples, split_file)
    for _, trained in runs:
        if trained["dataset"]["split_sha256"] != split.sha256:
            raise errors.DataError(f"{split.path}: SHA-256 {split.sha256[:12]}... differs from the split file run "
                                   f"{trained['run_id']} was trained with ({trained['dataset']['split_sha256'][:12]}"
                                   f"...); pass the run's own split file with --split-file")
    return samples, split.indices


def wanted_splits(options: EvalOptions, runs: list[tuple[Path, dict]], spec) -> tuple[str | None, list[str]]:
    """(the selection split, the splits to score): the runs' own, or the dataset's for --model."""
    dataset = runs[0][1]["dataset"] if runs else {}
    selection = dataset.get("selection_split", spec.selection_split) if runs else spec.selection_split
    reported = ([dataset.get("report_split")] + list(dataset.get("extra_splits") or [])) if runs else \
        [spec.report_split, *spec.extra_splits]
    return selection, list(options.split or []) or [s for s in dict.fromkeys([selection, *reported]) if s]


def check_split_names(wanted: list[str], available, where: str) -> None:
    unknown = [split for split in wanted if split not in available]
    if unknown:
        raise errors.UsageError(f"--split {' '.join(unknown)}: not in {where} "
                                f"(it has {', '.join(available) or 'none'})")
