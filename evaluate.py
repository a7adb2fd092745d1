"""Score finished runs, ensembles and test-time augmentation with 95% intervals; write Kaggle submissions.

    python evaluate.py runs/<run_id>                                  # best checkpoint, selection + reported split
    python evaluate.py runs/<a> runs/<b> runs/<c> --ensemble mean --tta flips
    python evaluate.py --from-predictions runs/<run_id>              # no model, no GPU: from saved predictions
    python evaluate.py --dataset aptos --model resnet50 --weights my.safetensors --split val
    python evaluate.py runs/<run_id> --submission submission.csv --test-dir datasets/aptos/test_images

Each scored model (and the ensemble) gets every metric of its task (metrics.TASK_METRICS) with an interval:
Clopper-Pearson for accuracy, a seeded percentile bootstrap for the others. Thresholds (HPA) and cut points (an
ordinal regression head) are fit on the selection split and applied unchanged to the others. An evaluation
record (JSON) and per-sample predictions (.npz) are written atomically under --out.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np
from accelerate import Accelerator

import cache
import cli
import engine
import errors
import metrics
import models
import networks
import records
import runrecords
import splits
import submissions
import transforms
from data import REGISTRY, DatasetError, get_spec, open_dataset
from data.unlabeled import open_unlabeled

def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="*", help="runs: runs/<run_id>, runs/<run_id>.json, a bare run id (looked up in --runs-dir), or a folder of run records (each complete run in it)")
    p.add_argument("--runs-dir", default="runs", help="where a bare run id is looked up")
    p.add_argument("--from-predictions", action="store_true", help="recompute metrics from the runs' saved predictions only")
    p.add_argument("--split", nargs="*", default=None, help="splits to score; the selection split and the reported ones when not given")
    p.add_argument("--tta", default="none", choices=["none", "flips", "dihedral"], help="test-time augmentation: average over the views the model was trained with (flips: the dataset's flips; dihedral: the 8 rotations/reflections, for datasets trained with both flips)")
    p.add_argument("--ensemble", default="mean", choices=["mean", "none"], help="with several runs, also score the mean of their scores")
    p.add_argument("--level", type=float, default=0.95, help="confidence level of the intervals")
    p.add_argument("--n-boot", type=int, default=10_000, help="bootstrap resamples per interval")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    p.add_argument("--out", default="evaluations", help="folder for evaluation records and predictions")
    p.add_argument("--name", default=None, help="name of this evaluation; derived from its inputs and settings when not given")
    g = p.add_argument_group("a model without a run record")
    g.add_argument("--dataset", default=None, choices=sorted(REGISTRY), help="dataset of --model")
    g.add_argument("--model", default=None, help="model name (models.py) to evaluate with --weights")
    g.add_argument("--weights", default=None, help="weights file (.safetensors/.pth) for --model")
    g.add_argument("--head", default="classification", choices=["classification", "regression"], help="head of --model")
    g.add_argument("--img-size", type=int, default=None, help="input size for --model; models.input_size decides when not given")
    g.add_argument("--pool", default="avg", choices=["avg", "gem"], help="global pooling --model was trained with")
    g.add_argument("--channels", default="rgb", choices=["rgb", "rgby"], help="HPA only: the channels --model was trained on")
    g.add_argument("--normalize", default="imagenet", choices=["imagenet", "model"], help="input mean/std --model was trained with: ImageNet's (train.py's default) or the weights' own")
    g = p.add_argument_group("data")
    g.add_argument("--root", default=None, help="dataset root; the run's (as it resolved when it trained) when not given")
    g.add_argument("--split-file", default=None, help="split file; the run's when not given (checked against its SHA-256 either way)")
    g.add_argument("--batch-size", type=int, default=128, help="evaluation batch size")
    g.add_argument("--workers", type=int, default=min(4, cli.usable_cores()), help="data-loading workers")
    g.add_argument("--cache", default="auto", choices=["auto", "off"], help="read evaluation images from a prepared cache when one exists (cache.py)")
    g.add_argument("--cache-dir", default="cache", help="folder of prepared image caches")
    g = p.add_argument_group("Kaggle submission")
    g.add_argument("--submission", default=None, help="write a submission CSV in the competition's format for --test-dir")
    g.add_argument("--test-dir", default=None, help="folder of the competition's unlabeled test images")
    return p


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
        found.append(runrecords.read_complete_record(path))
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
            complete.append(runrecords.read_complete_record(path))
        except runrecords.RecordProblem as problem:
            left_out.append(f"{path.name} ({str(problem).removeprefix(f'{path}: ')})")
    if not complete:
        raise errors.DataError(f"{folder}: no complete run record in this folder"
                               + (f" (left out: {'; '.join(left_out)})" if left_out else ""))
    if left_out:
        print(f"note: {folder}: left out {len(left_out)} JSON file(s) that are not complete run records: "
              f"{'; '.join(left_out)}", file=sys.stderr)
    return complete


def check_ensemble(runs: list[tuple[Path, dict]], args, spec) -> None:
    """Refuse to average runs (and --model) whose scores mean different things or whose thresholds would be fit on
    different images: another head or number of outputs, selection split or split file. Runs scored side by side
    (--ensemble none) must share their selection split too: one command fits thresholds on one split."""
    selections = {record["run_id"]: record["dataset"].get("selection_split", spec.selection_split)
                  for _, record in runs}
    if len(set(selections.values())) > 1:
        shown = ", ".join(f"{run_id}: {split}" for run_id, split in selections.items())
        raise errors.UsageError(f"the runs pick thresholds and cut points on different selection splits ({shown}); "
                                f"evaluate them in separate commands")
    if args.ensemble != "mean" or len(runs) + bool(args.model) < 2:
        return
    members = [(f"run {record['run_id']}", {
        "config.head": record["config"].get("head", "classification"),
        "model.num_outputs": record["model"]["num_outputs"],
        "dataset.selection_split": record["dataset"].get("selection_split", spec.selection_split),
        "dataset.split_sha256": record["dataset"]["split_sha256"]}) for _, record in runs]
    if args.model:  # scored on the runs' split (open_run_data checks it), so only its head can differ
        members.append((f"--model {args.model}", {"config.head": args.head, "model.num_outputs":
                                                  1 if args.head == "regression" else spec.num_classes}))
    (first, reference), *others = members
    for name, fields in others:
        for field, value in fields.items():
            if value != reference[field]:
                raise errors.UsageError(f"cannot ensemble {first} and {name}: their {field} differ "
                                        f"({reference[field]!r} and {value!r}); score them with --ensemble none, or "
                                        f"ensemble runs that agree")


def run_weights(record_path: Path, record: dict) -> Path:
    return record_path.parent / record["run_id"] / "best.safetensors"


def check_weights(runs: list[tuple[Path, dict]]) -> None:
    """Every run keeps its best weights, before any data is opened or model built."""
    for record_path, record in runs:
        weights = run_weights(record_path, record)
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


def open_run_data(runs: list[tuple[Path, dict]], spec, args):
    """(samples, split) for scoring models: the runs' dataset and split, unless --root / --split-file say otherwise."""
    record = runs[0][1] if runs else None
    config = record["config"] if record else {}
    root = Path(args.root) if args.root else (recorded_path(record, "root") if record else None)
    options = ({"channels": config.get("channels", args.channels), "composite_dir": config.get("composite_dir")}
               if spec.name == "hpa" else {})
    try:
        samples = open_dataset(spec.name, root, **options)
    except DatasetError as error:
        if args.root or not record:
            raise
        raise errors.DataError(f"run {record['run_id']} trained on the dataset at {root}, which cannot be opened "
                               f"now; if it has moved, pass --root with its folder. {error}") from None
    split_file = args.split_file or (recorded_path(record, "split_file") if record else None)
    split = splits.resolve(samples, split_file)
    for _, trained in runs:
        if trained["dataset"]["split_sha256"] != split.sha256:
            raise errors.DataError(f"{split.path}: SHA-256 {split.sha256[:12]}... differs from the split file run "
                                   f"{trained['run_id']} was trained with ({trained['dataset']['split_sha256'][:12]}"
                                   f"...); pass the run's own split file with --split-file")
    return samples, split.indices


def load_predictions(record_path: Path, record: dict, split: str) -> dict:
    relative = record.get("predictions", {}).get(split)
    if relative is None:
        raise errors.DataError(f"{record_path}: no saved predictions for split '{split}' "
                               f"(saved: {', '.join(record.get('predictions', {})) or 'none'})")
    try:
        return records.read_predictions(record_path.parent / relative)
    except ValueError as error:
        raise errors.DataError(str(error)) from None


def score_all(task: str, num_classes: int, predictions: dict[str, dict], args) -> dict[str, dict]:
    return {split: metrics.score_with_intervals(task, p["labels"], p["scores"], p["thresholds"], num_classes,
                                                level=args.level, n_boot=args.n_boot, seed=args.seed)
            for split, p in predictions.items()}


class Scorer:
    """Runs models over the splits of one dataset, the same way train.py evaluates them."""

    def __init__(self, samples, split_indices: dict, args, accelerator: Accelerator):
        self.samples, self.split_indices, self.args, self.accelerator = samples, split_indices, args, accelerator
        self.spec = samples.spec

    def predict(self, model, model_info: dict, regression: bool, img_size: int, split: str) -> dict:
        if self.samples.options.get("unlabeled"):
            indices = np.arange(len(self.samples))
        else:
            indices = self.split_indices[split]  # main() checked the names before any model was loaded
        reader = None if self.samples.options.get("unlabeled") else cache.reader_for(
            self.samples, indices, img_size, "eval", self.args.cache, self.args.cache_dir)
        dataset = engine.SampleDataset(self.samples, indices, transforms.eval_transform(img_size), reader=reader)
        loader = self.accelerator.prepare(engine.make_loader(dataset, self.args.batch_size, False, self.args.workers))
        outputs = engine.Outputs(self.spec.task, regression=regression)
        mean, std = model_info["mean"], model_info["std"]
        predicted = engine.predict([model], loader, self.accelerator, outputs,
                                   lambda batch: engine.to_model_input(batch["image"], mean, std, False),
                                   tta=self.args.tta, hflip=self.spec.hflip, vflip=self.spec.vflip,
                                   desc=f"{model_info['name']} {split}")[0]
        index = predicted["index"]
        return {"ids": np.asarray([self.samples.ids[i] for i in index]), "labels": self.samples.labels[index],
                "scores": predicted["scores"]}


def load_run_model(record_path: Path, record: dict, accelerator: Accelerator):
    config = record["config"]
    model, info = networks.create_model(config["model"], record["model"]["num_outputs"],
                                        weights=str(run_weights(record_path, record)), pool=config.get("pool", "avg"),
                                        in_chans=record["model"].get("in_chans", 3))
    if record.get("normalization"):  # what the run trained with (older records: the weights' own statistics)
        info["mean"], info["std"] = record["normalization"]["mean"], record["normalization"]["std"]
    return accelerator.prepare(model), info, config.get("head") == "regression", config["img_size"]


def evaluation_name(args, inputs: list[str]) -> str:
    """--name, or the first input's name plus a digest of every setting, so different evaluations never collide."""
    if args.name:
        return args.name
    settings = {k: v for k, v in sorted(vars(args).items()) if k not in ("out", "name", "workers", "batch_size")}
    digest = hashlib.sha256(repr(settings).encode()).hexdigest()[:8]
    stem = Path(inputs[0]).name.removesuffix(".json") if inputs else "eval"
    source = "predictions" if args.from_predictions else f"tta{args.tta}"
    return f"{stem}{'+' + str(len(inputs) - 1) if len(inputs) > 1 else ''}-{source}-{digest}"


def check_arguments(args, spec) -> None:
    """Everything about the command line that can be wrong, before any data or model is touched."""
    if args.model and not args.weights:
        raise errors.UsageError("--model needs --weights: the fine-tuned weights file to evaluate")
    if args.from_predictions and (args.tta != "none" or args.submission or args.model):
        raise errors.UsageError("--from-predictions reuses the runs' saved predictions; --tta, --submission and "
                                "--model need a model")
    if args.tta == "flips" and not (spec.hflip or spec.vflip):
        raise errors.UsageError(f"--tta flips: {spec.name} is trained without flips, so there is no flipped view "
                                f"to average (the scores would equal --tta none)")
    if args.tta == "dihedral" and not (spec.hflip and spec.vflip):
        raise errors.UsageError(f"--tta dihedral: {spec.name} is not trained with both flips, so rotated views "
                                f"are new to it")
    if args.submission and not args.test_dir:
        raise errors.UsageError("--submission needs --test-dir (the competition's unlabeled test images)")
    if args.submission:
        submissions.check_competition(spec.name)
    cli.check_interval_settings(args.level, args.n_boot)


def wanted_splits(args, runs: list[tuple[Path, dict]], spec) -> tuple[str | None, list[str]]:
    """(the selection split, the splits to score): the runs' own, or the dataset's for --model."""
    dataset = runs[0][1]["dataset"] if runs else {}
    selection = dataset.get("selection_split", spec.selection_split) if runs else spec.selection_split
    reported = ([dataset.get("report_split")] + list(dataset.get("extra_splits") or [])) if runs else \
        [spec.report_split, *spec.extra_splits]
    return selection, args.split or [s for s in dict.fromkeys([selection, *reported]) if s]


def check_split_names(wanted: list[str], available, where: str) -> None:
    unknown = [split for split in wanted if split not in available]
    if unknown:
        raise errors.UsageError(f"--split {' '.join(unknown)}: not in {where} (it has {', '.join(available) or 'none'})")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.runs and not args.model:
        raise errors.UsageError("give runs (runs/<run_id>, a run id or a folder of runs), or --dataset, --model and "
                                "--weights")
    runs = find_runs(args.runs, args.runs_dir)
    datasets = {record["config"]["dataset"] for _, record in runs} | ({args.dataset} if args.model else set())
    if len(datasets) > 1:
        raise errors.UsageError(f"all runs must be on one dataset; got {', '.join(sorted(map(str, datasets)))}")
    if None in datasets:
        raise errors.UsageError("--model needs --dataset: the dataset its weights were fine-tuned on")
    spec = get_spec(datasets.pop())
    check_arguments(args, spec)
    check_ensemble(runs, args, spec)
    task, num_classes = spec.task, spec.num_classes
    selection, wanted = wanted_splits(args, runs, spec)
    name = evaluation_name(args, args.runs or [f"{args.model}-{Path(args.weights or 'none').stem}"])
    out = Path(args.out) / name

    needed = [s for s in dict.fromkeys([selection, *wanted]) if s]  # thresholds are fit on the selection split
    if not needed and not args.submission:
        raise errors.UsageError("these runs were trained on all labelled data (--train-on all): no split is held out "
                                "to score; name one with --split, or write a Kaggle submission with --submission "
                                "and --test-dir")
    members: dict[str, dict[str, dict]] = {}  # member name -> split -> predictions
    test_predictions: dict[str, dict] = {}    # member name -> predictions on the unlabeled Kaggle test images
    if args.from_predictions:
        for record_path, record in runs:
            check_split_names(needed, list(record.get("predictions") or {}), f"{record_path}'s saved predictions")
        for record_path, record in runs:
            members[member_name(record_path, record, members)] = {
                split: load_predictions(record_path, record, split) for split in needed}
    else:
        check_weights(runs)
        samples, split_indices = open_run_data(runs, spec, args)
        check_split_names(needed, list(split_indices), "the split file")
        accelerator = Accelerator()
        loaded, taken = [], set()
        for record_path, record in runs:
            member = member_name(record_path, record, taken)
            taken.add(member)
            loaded.append((*load_run_model(record_path, record, accelerator), member))
        if args.model:
            model, info = networks.create_model(args.model, 1 if args.head == "regression" else num_classes,
                                                weights=args.weights, pool=args.pool, in_chans=samples.num_channels)
            if info["head"] != "from file":
                raise errors.DataError(f"{args.weights}: its head does not fit the "
                                       f"{num_classes if args.head != 'regression' else 1} outputs of {spec.name} "
                                       f"(--head {args.head}), so the model would score a random head")
            info["mean"], info["std"] = models.normalization(args.model, args.normalize)
            img_size = models.input_size(args.model, spec.name, args.img_size)
            loaded.append((accelerator.prepare(model), info, args.head == "regression", img_size, name))
        scorer = Scorer(samples, split_indices, args, accelerator)
        test_scorer = (Scorer(open_unlabeled(spec, Path(args.test_dir), samples.num_channels), {}, args, accelerator)
                       if args.test_dir else None)
        for model, info, regression, img_size, member in loaded:
            members[member] = {split: scorer.predict(model, info, regression, img_size, split) for split in needed}
            if test_scorer:
                test_predictions[member] = test_scorer.predict(model, info, regression, img_size, "test")

    if len(members) > 1 and args.ensemble == "mean":
        names = list(members)
        for split in needed:
            if any(not np.array_equal(members[n][split]["ids"], members[names[0]][split]["ids"]) for n in names):
                raise errors.DataError(f"cannot ensemble: the runs' '{split}' predictions are not of the same "
                                       f"images (trained on different split files?)")
        members["ensemble"] = {split: {**members[names[0]][split],
                                       "scores": np.mean([members[n][split]["scores"] for n in names], axis=0)}
                               for split in needed}
        if test_predictions:
            test_predictions["ensemble"] = {**test_predictions[names[0]], "scores": np.mean(
                [test_predictions[n]["scores"] for n in names], axis=0)}
    decisions = {member: metrics.fit_on_selection(task, by_split, selection, num_classes)
                 for member, by_split in members.items()}  # applied unchanged to every split
    members = {member: {split: {**p, "thresholds": decisions[member]} for split, p in by_split.items()}
               for member, by_split in members.items()}

    results = {}
    for member, by_split in members.items():
        results[member] = score_all(task, num_classes, {split: by_split[split] for split in wanted}, args)
        for split, p in by_split.items():
            records.write_predictions(out / f"predictions-{member}-{split}.npz", p["ids"], p["labels"], p["scores"],
                                      p["thresholds"], task)
    if args.submission:
        chosen = "ensemble" if "ensemble" in members else next(iter(members))
        test = test_predictions[chosen]
        submissions.write_submission(Path(args.submission), spec.name, test["ids"], test["scores"], decisions[chosen])
        print(f"submission ({chosen}) -> {args.submission}")

    evaluation = {"schema_version": records.SCHEMA_VERSION, "name": name, "dataset": spec.name, "task": task,
                  "metric": spec.metric, "runs": args.runs, "from_predictions": args.from_predictions,
                  "tta": args.tta, "ensemble": args.ensemble if len(members) > 1 else None,
                  "level": args.level, "n_boot": args.n_boot, "seed": args.seed, "results": results,
                  **records.provenance()}
    records.atomic_write_json(out / "evaluation.json", evaluation)
    for member, by_split in results.items():
        for split, values in by_split.items():
            primary = values[spec.metric]
            print(f"{member:>40s}  {split:>10s}  {spec.metric} {primary['value']:.4f} "
                  f"[{primary['low']:.4f}, {primary['high']:.4f}]")
    print(f"-> {out / 'evaluation.json'}")
    return 0


if __name__ == "__main__":
    errors.run_main("evaluate.py", main)
