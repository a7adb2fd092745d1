"""What one evaluate.py command does, step by step: find the runs and check them; collect each member's predictions
(recomputed from the models, or read from the runs' saved predictions); add the ensemble; fit thresholds and cut
points on the selection split; score every split with intervals; write the evaluation and any Kaggle submission.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from accelerate import Accelerator

import metrics
from common import errors, fileio, provenance, runrecord
from data import get_spec
from data.unlabeled import open_unlabeled
from evaluation import submissions
from evaluation.members import (
    check_ensemble,
    check_split_names,
    check_weights,
    find_runs,
    member_name,
    open_run_data,
    wanted_splits,
)
from evaluation.options import EvalOptions
from evaluation.scoring import Scorer, load_given_model, load_predictions, load_run_model, score_all


def evaluate(options: EvalOptions) -> int:
    if not options.runs and not options.model:
        raise errors.UsageError("give runs (runs/<run_id>, a run id or a folder of runs), or --dataset, --model and "
                                "--weights")
    runs = find_runs(list(options.runs), options.runs_dir)
    datasets = {record["config"]["dataset"] for _, record in runs} | ({options.dataset} if options.model else set())
    if len(datasets) > 1:
        raise errors.UsageError(f"all runs must be on one dataset; got {', '.join(sorted(map(str, datasets)))}")
    if None in datasets:
        raise errors.UsageError("--model needs --dataset: the dataset its weights were fine-tuned on")
    spec = get_spec(datasets.pop())
    options.check(spec)
    check_ensemble(runs, options, spec)
    selection, wanted = wanted_splits(options, runs, spec)
    needed = [s for s in dict.fromkeys([selection, *wanted]) if s]  # thresholds are fit on the selection split
    if not needed and not options.submission:
        raise errors.UsageError("these runs were trained on all labelled data (--train-on all): no split is held out "
                                "to score; name one with --split, or write a Kaggle submission with --submission "
                                "and --test-dir")
    if options.from_predictions:
        members, test_predictions = saved_predictions(runs, needed), {}
    else:
        members, test_predictions = model_predictions(runs, options, spec, needed)
    if len(members) > 1 and options.ensemble == "mean":
        add_ensemble(members, test_predictions, needed)
    decisions = {member: metrics.fit_on_selection(spec.task, by_split, selection, spec.num_classes)
                 for member, by_split in members.items()}  # applied unchanged to every split
    members = {member: {split: {**p, "thresholds": decisions[member]} for split, p in by_split.items()}
               for member, by_split in members.items()}
    out = Path(options.out) / options.evaluation_name()
    results = {}
    for member, by_split in members.items():
        results[member] = score_all(spec.task, spec.num_classes, {split: by_split[split] for split in wanted}, options)
        for split, p in by_split.items():
            runrecord.write_predictions(out / f"predictions-{member}-{split}.npz", p["ids"], p["labels"], p["scores"],
                                        p["thresholds"], spec.task)
    if options.submission:
        chosen = "ensemble" if "ensemble" in members else next(iter(members))
        test = test_predictions[chosen]
        submissions.write_submission(Path(options.submission), spec.name, test["ids"], test["scores"],
                                     decisions[chosen])
        print(f"submission ({chosen}) -> {options.submission}")
    write_evaluation(out, options, spec, results, several=len(members) > 1)
    return 0


def saved_predictions(runs: list[tuple[Path, dict]], needed: list[str]) -> dict[str, dict[str, dict]]:
    """Member name -> split -> the run's saved predictions (--from-predictions: no model, no GPU)."""
    for record_path, record in runs:
        check_split_names(needed, list(record.get("predictions") or {}), f"{record_path}'s saved predictions")
    members: dict[str, dict[str, dict]] = {}
    for record_path, record in runs:
        members[member_name(record_path, record, members)] = {
            split: load_predictions(record_path, record, split) for split in needed}
    return members


def model_predictions(runs: list[tuple[Path, dict]], options: EvalOptions, spec,
                      needed: list[str]) -> tuple[dict[str, dict[str, dict]], dict[str, dict]]:
    """Member name -> split -> predictions recomputed from the models, and each member's predictions on the
    unlabeled Kaggle test images (--test-dir)."""
    check_weights(runs)
    samples, split_indices = open_run_data(runs, spec, options)
    check_split_names(needed, list(split_indices), "the split file")
    accelerator = Accelerator()
    loaded, taken = [], set()
    for record_path, record in runs:
        member = member_name(record_path, record, taken)
        taken.add(member)
        loaded.append(load_run_model(record_path, record, accelerator, member))
    if options.model:
        loaded.append(load_given_model(options, spec, samples.num_channels, accelerator, options.evaluation_name()))
    scorer = Scorer(samples, split_indices, options, accelerator)
    test_scorer = (Scorer(open_unlabeled(spec, Path(options.test_dir), samples.num_channels), {}, options,
                          accelerator) if options.test_dir else None)
    members, test_predictions = {}, {}
    for model in loaded:
        members[model.member] = {split: scorer.predict(model, split) for split in needed}
        if test_scorer:
            test_predictions[model.member] = test_scorer.predict(model, "test")
    return members, test_predictions


def add_ensemble(members: dict[str, dict[str, dict]], test_predictions: dict[str, dict], needed: list[str]) -> None:
    """The mean of the members' scores, as member "ensemble"."""
    names = list(members)
    for split in needed:
        if any(not np.array_equal(members[n][split]["ids"], members[names[0]][split]["ids"]) for n in names):
            raise errors.DataError(f"cannot ensemble: the runs' '{split}' predictions are not of the same images "
                                   f"(trained on different split files?)")
    members["ensemble"] = {split: {**members[names[0]][split],
                                   "scores": np.mean([members[n][split]["scores"] for n in names], axis=0)}
                           for split in needed}
    if test_predictions:
        test_predictions["ensemble"] = {**test_predictions[names[0]], "scores": np.mean(
            [test_predictions[n]["scores"] for n in names], axis=0)}


def write_evaluation(out: Path, options: EvalOptions, spec, results: dict, several: bool) -> None:
    evaluation = {"schema_version": runrecord.SCHEMA_VERSION, "name": out.name, "dataset": spec.name,
                  "task": spec.task, "metric": spec.metric, "runs": list(options.runs),
                  "from_predictions": options.from_predictions, "tta": options.tta,
                  "ensemble": options.ensemble if several else None, "level": options.level,
                  "n_boot": options.n_boot, "seed": options.seed, "results": results, **provenance.provenance()}
    fileio.atomic_write_json(out / "evaluation.json", evaluation)
    for member, by_split in results.items():
        for split, values in by_split.items():
            primary = values[spec.metric]
            print(f"{member:>40s}  {split:>10s}  {spec.metric} {primary['value']:.4f} "
                  f"[{primary['low']:.4f}, {primary['high']:.4f}]")
    print(f"-> {out / 'evaluation.json'}")
