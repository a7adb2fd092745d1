"""What the analysis reads from run records (common/runrecord.py owns the record itself).

    runs, warnings = load_runs(["runs/"])           # every usable record; a warning per file left out
    runs = filter_runs(runs, ["hpa"], None)          # the runs of some datasets and models

selection.py then chooses each model's best configuration among them.

Which split is reported: the paper's choice, which the dataset registry (data/__init__.py) holds: CCT-20 is chosen on
cis_val and reported on cis_test; HPA is reported on val, the split its thresholds are chosen on [4.3]: "We report
results on the validation split, as we find that the thresholds selected for the larger validation split
generalize well to the smaller test-validation split", with test_val (the registry's extra split) beside it. No
torch here: reading records stays cheap.
"""
from __future__ import annotations

import difflib
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import data
from common import choice, errors, runrecord
from common.runrecord import RecordProblem, metric_key, read_record
from training.recipe import PACKED, TUNED

# Settings that must agree among the runs a best configuration is chosen from (the rest of the config is tuned
# or says only where and how fast a run goes)
COMPARED_SETTINGS = ("weights", "head", "pool", "channels", "img_size", "epochs", "batch_size", "label_smoothing",
                     "wd_convention", "split_sha256", "seed")


@dataclass
class Run:
    """What the analysis needs from one run record (see the run record schema written by train.py)."""
    path: Path
    run_id: str
    status: str
    dataset: str
    model: str
    task: str
    metric: str                 # the dataset's metric: the best epoch and configuration are chosen by it
    num_classes: int | None
    selection_split: str
    report_split: str           # the paper's reported split (the selection split when there is no other)
    extra_split: str | None     # the record's report split where the paper reports another (HPA's test_val)
    hparams: dict[str, Any]
    settings: dict[str, Any]    # the record's config values of COMPARED_SETTINGS (None where it has none)
    best_metrics: dict[str, float | None] | None
    predictions: dict[str, Path]
    imagenet_top1: float | None
    params: float | None
    weights_loaded: Any  # networks.create_model's "imagenet:<tag>", "random" or "file:<path> sha256=..."
    error: str | None
    diverged_epoch: int | None
    lp_ft_phase: str | None = None  # "probe" or "finetune" for train.py --lp-ft runs
    stopped_by_halving: bool = False  # paused for good: successive halving (grid.py run --halving) did not select it
    top1_reference: str | None = None  # the record's model.top1_source: where its imagenet_top1 comes from
    group: str | None = None           # the record's model.group (a models file's model: the group it gives)
    git_commit: str | None = None      # the toolkit's commit that trained it
    papers_split: bool | None = None   # the record's dataset.papers_split (None: a split file given, not known)
    split_description: str | None = None  # how the split was made, e.g. "the paper's method on 300 of 27,000 images"

    @property
    def random_init(self) -> bool:
        """Trained from random weights: its ImageNet top-1 is its architecture's, not its own."""
        return self.weights_loaded in ("random", False)

    def value(self, split: str, metric: str | None = None) -> float | None:
        """The best epoch's value of `metric` (default: the dataset's) on `split`, None when not held."""
        return (self.best_metrics or {}).get(metric_key(split, metric or self.metric))

    @property
    def selection_value(self) -> float | None:
        """What configurations are chosen by: the dataset's metric on the selection split."""
        return self.value(self.selection_split)


def _block(raw: dict, key: str) -> dict:
    value = raw.get(key)
    if not isinstance(value, dict):
        raise RecordProblem(f"field '{key}' is missing or not an object")
    return value


def _text(block: dict, key: str, where: str) -> str:
    value = block.get(key)
    if not isinstance(value, str) or not value:
        raise RecordProblem(f"field '{where}{key}' is missing or not a string")
    return value


def _dataset_field(block: dict, key: str, spec: data.DatasetSpec | None) -> Any:
    """A dataset field from the record, or from the dataset registry when the record does not carry it."""
    if key in block:
        return block[key]
    if spec is not None:
        return getattr(spec, key)
    raise RecordProblem(f"field 'dataset.{key}' is missing and dataset '{block.get('name')}' is not in the registry")


def read_run(path: str | Path) -> Run:
    """Read one run record. Raises RecordProblem saying what is wrong when the file is not a usable run record."""
    path = Path(path)
    raw = read_record(path)
    try:
        return _run(path, raw)
    except RecordProblem as problem:
        raise RecordProblem(f"{path}: {problem}") from None


def _run(path: Path, raw: dict) -> Run:
    run_id, status = _text(raw, "run_id", ""), raw["status"]
    config, dataset, model = _block(raw, "config"), _block(raw, "dataset"), _block(raw, "model")
    dataset_name, model_name = _text(dataset, "name", "dataset."), _text(model, "name", "model.")
    spec = data.REGISTRY.get(dataset_name)
    task, metric = _dataset_field(dataset, "task", spec), _dataset_field(dataset, "metric", spec)
    if "selection_split" in dataset and dataset["selection_split"] is None:
        raise RecordProblem("was trained on all labelled data (train.py --train-on all): it has no selection split "
                            "to be compared on; score it with evaluate.py")
    selection_split = _dataset_field(dataset, "selection_split", spec)
    record_report = _dataset_field(dataset, "report_split", spec) or selection_split
    for key, value in (("task", task), ("metric", metric), ("selection_split", selection_split),
                       ("report_split", record_report)):
        if not isinstance(value, str) or not value:
            raise RecordProblem(f"field 'dataset.{key}' is not a string")
    # The registry decides where a dataset is reported (HPA: val, as the paper) when the record has that split's
    # metric; a record reported elsewhere (older HPA records: test_val) shows its split beside it, as do the
    # registry's extra splits.
    registry_report = (spec.report_split or spec.selection_split) if spec else record_report
    recorded = (raw.get("best") or {}).get("metrics") or {}
    report_split = registry_report if metric_key(registry_report, metric) in recorded else record_report
    extras = [s for s in [record_report, *(dataset.get("extra_splits") or []), *(spec.extra_splits if spec else ())]
              if s != report_split]
    extra_split = extras[0] if extras else None
    missing = [key for key in PACKED if key not in config]
    if missing:
        raise RecordProblem(f"field 'config' lacks {', '.join(missing)}")
    hparams = {key: config[key] for key in TUNED if key in config}
    for key, value in hparams.items():
        if not isinstance(value, (str, int, float, type(None))):
            raise RecordProblem(f"field 'config.{key}' is {value!r}, not a single value")

    best_metrics = None
    if status == runrecord.COMPLETE:
        chosen = raw.get("best")
        if not isinstance(chosen, dict) or not isinstance(chosen.get("metrics"), dict):
            raise RecordProblem("has status 'complete' but no 'best.metrics'")
        best_metrics = {key: choice.finite(value) for key, value in chosen["metrics"].items()}
        for split in dict.fromkeys([selection_split, report_split]):
            if best_metrics.get(metric_key(split, metric)) is None:
                raise RecordProblem(f"has status 'complete' but 'best.metrics.{metric_key(split, metric)}' is missing "
                                    f"or not a finite number")
    predictions = raw.get("predictions") or {}
    if not isinstance(predictions, dict) or not all(isinstance(p, str) for p in predictions.values()):
        raise RecordProblem("field 'predictions' is not an object of split -> file path")
    num_classes = dataset.get("num_classes", spec.num_classes if spec else None)
    error, diverged_epoch = raw.get("error"), raw.get("diverged_epoch")
    halving = raw.get("halving")  # written by grid.py run --halving once its group is decided (grid_halving.py)
    if halving is not None and not (isinstance(halving, dict) and isinstance(halving.get("selected"), bool)):
        raise RecordProblem("field 'halving' is not an object with a true or false 'selected'")
    return Run(path=path, run_id=run_id, status=status, dataset=dataset_name, model=model_name, task=task,
               metric=metric, num_classes=num_classes if isinstance(num_classes, int) else None,
               selection_split=selection_split, report_split=report_split, extra_split=extra_split, hparams=hparams,
               settings={key: config.get(key) for key in COMPARED_SETTINGS}, best_metrics=best_metrics,
               predictions={split: path.parent / rel for split, rel in predictions.items()},
               imagenet_top1=choice.finite(model.get("imagenet_top1")), params=choice.finite(model.get("params")),
               lp_ft_phase=config.get("lp_ft_phase"), top1_reference=_optional_text(model.get("top1_source")),
               group=_optional_text(model.get("group")),
               git_commit=_optional_text(raw.get("git_commit")),
               papers_split=dataset.get("papers_split"),
               split_description=_optional_text(dataset.get("split_description")),
               stopped_by_halving=status == runrecord.PAUSED and halving is not None and not halving["selected"],
               weights_loaded=model.get("weights_loaded"), error=error if isinstance(error, str) else None,
               diverged_epoch=diverged_epoch if isinstance(diverged_epoch, int) else None)


def _optional_text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def expand_inputs(paths: Sequence[str | Path]) -> list[Path]:
    """The given files, plus every *.json directly inside the given folders."""
    files: list[Path] = []
    for path in map(Path, paths):
        files.extend(sorted(path.glob("*.json")) if path.is_dir() else [path])
    return files


# Which of several records of one run id is counted: the furthest along, then the first read
_PROGRESS = {runrecord.COMPLETE: 0, runrecord.DIVERGED: 1, runrecord.FAILED: 2}


def one_per_run_id(runs: list[Run]) -> tuple[list[Run], list[str]]:
    """Each run id once (the same record copied into two folders, or a file given twice, is one run), and one
    warning naming the run ids read more than once, the file kept and the others.

    A run id is one configuration trained once: counting its copies would add configurations that never ran and
    weigh the copied run twice. The record kept is the furthest along (complete, then diverged, then failed, then
    unfinished), then the first read.
    """
    by_id: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_id[run.run_id].append(run)
    kept, repeated = [], []
    for run_id, copies in by_id.items():
        chosen = min(copies, key=lambda r: _PROGRESS.get(r.status, len(_PROGRESS)))  # min keeps the first of equals
        kept.append(chosen)
        if len(copies) > 1:
            others = [str(r.path) for r in copies if r is not chosen]
            same = all(Path(other).resolve() == chosen.path.resolve() for other in others)
            repeated.append(f"'{run_id}' ({chosen.path} kept; " + ("the same file, given again)" if same else
                            f"also {', '.join(others)})"))
    if not repeated:
        return runs, []
    shown = "; ".join(repeated[:3]) + (f"; and {len(repeated) - 3} more" if len(repeated) > 3 else "")
    return kept, [f"{len(repeated)} run id(s) read from more than one file, each counted once: {shown}"]


def load_runs(paths: Sequence[str | Path]) -> tuple[list[Run], list[str]]:
    """Every readable run record among `paths`, and one warning per file left out (naming it and saying why).
    A run id read from several files is counted once (one_per_run_id).

    Still-running and paused records are left out with a warning; complete, diverged and failed ones are returned,
    and so are the paused runs successive halving stopped for good (stopped_by_halving): they ran their
    configuration, are never chosen, and analyze.py counts them in one note. Runs of a
    dataset that choose or report on another metric or split than the dataset's others are left out too, since
    their numbers cannot be compared.
    """
    read, warnings, probes = [], [], 0
    for path in expand_inputs(paths):
        try:
            read.append(read_run(path))
        except RecordProblem as problem:
            warnings.append(f"{problem}; skipped")
    read, duplicates = one_per_run_id(read)
    warnings += duplicates
    runs = []
    for run in read:
        if run.status in runrecord.UNFINISHED and not run.stopped_by_halving:
            warnings.append(f"{run.path}: run '{run.run_id}' is still {run.status}; skipped")
            continue
        if run.lp_ft_phase == "probe":
            probes += 1
            continue
        runs.append(run)

    if probes:  # LP-FT's first phase: each fine-tuning run starts from the best probe and carries its history
        warnings.append(f"{probes} linear-probe run(s) (the first phase of --lp-ft) are not candidates; the "
                        f"fine-tuning runs started from the best of them are")
    by_dataset: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_dataset[run.dataset].append(run)
    consistent = []
    for name, group in by_dataset.items():
        spec = data.REGISTRY.get(name)
        registry = (spec.metric, spec.selection_split, spec.report_split or spec.selection_split) if spec else None
        counts = Counter((r.metric, r.selection_split, r.report_split) for r in group)
        # the most common choice wins; the registry's breaks a tie (train.py drops a report split it could not make)
        reference = max(counts, key=lambda choice: (counts[choice], choice == registry))
        for run in group:
            if (run.metric, run.selection_split, run.report_split) == reference:
                consistent.append(run)
            else:
                chosen_on, uses = metric_key(reference[1], reference[0]), metric_key(run.selection_split, run.metric)
                warnings.append(f"{run.path}: dataset '{name}' is chosen on {chosen_on} and "
                                f"reported on {reference[2]}, but this run uses {uses} "
                                f"and {run.report_split}; skipped")
    return consistent, warnings


def filter_runs(runs: list[Run], datasets: Sequence[str] | None, model_names: Sequence[str] | None,
                elsewhere: Sequence[tuple[str, str]] = ()) -> list[Run]:
    """The runs of the requested datasets and models. A requested name that no run has (nor any (dataset, model)
    of `elsewhere`: the results files analysed with them) is a UsageError naming it and listing the names present
    (a typo would otherwise look like missing results)."""
    for kind, wanted, present in (("dataset", datasets, {r.dataset for r in runs} | {d for d, _ in elsewhere}),
                                  ("model", model_names, {r.model for r in runs} | {m for _, m in elsewhere})):
        unknown = [name for name in wanted or () if name not in present]
        if unknown:
            close = {name: difflib.get_close_matches(name, present, n=1) for name in unknown}
            hints = "".join(f" ('{name}': did you mean '{match[0]}'?)" for name, match in close.items() if match)
            raise errors.UsageError(
                f"--{kind}s names {', '.join(repr(n) for n in unknown)}, which no usable run record has{hints}; "
                f"the records hold the {kind}s {', '.join(sorted(present)) or 'none'}")
    return [r for r in runs if (not datasets or r.dataset in datasets) and (not model_names or r.model in model_names)]


def runs_with_metric(runs: list[Run], metric: str) -> tuple[list[Run], list[str]]:
    """The runs of the datasets whose complete records all hold `metric` on their selection and reported splits,
    and a warning per dataset left out. None holding it is a UsageError listing what each dataset's records hold."""
    complete: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        if run.status == runrecord.COMPLETE:
            complete[run.dataset].append(run)

    def holds(run: Run) -> bool:
        return all(run.value(split, metric) is not None
                   for split in (run.selection_split, run.report_split))

    kept = {name for name, group in complete.items() if all(holds(r) for r in group)}
    if not kept:
        held = {name: sorted(metrics_held(group)) for name, group in complete.items()}
        raise errors.UsageError(f"--metric {metric}: no dataset's records hold it; they hold "
                                + "; ".join(f"{name}: {', '.join(names)}" for name, names in held.items()))
    warnings = [f"dataset '{name}': not every complete record holds {metric} (they hold "
                f"{', '.join(sorted(metrics_held(group)))}); left out of --metric {metric}"
                for name, group in complete.items() if name not in kept]
    return [r for r in runs if r.dataset in kept], warnings


def metrics_held(group: list[Run]) -> set[str]:
    """The metric names every one of these complete runs holds on its selection split."""
    names = [{key[len(r.selection_split) + 1:] for key, value in r.best_metrics.items()
              if key.startswith(f"{r.selection_split}_") and value is not None} for r in group]
    return set.intersection(*names) if names else set()


def dataset_order(name: str) -> tuple[int, str]:
    names = list(data.REGISTRY)
    return (names.index(name) if name in names else len(names), name)
