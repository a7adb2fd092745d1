"""Time analyze.py on a full synthetic study: 6 datasets x 19 models x 60 configurations = 6,840 run records.

The records follow train.py's format exactly (every field, a 30-epoch history, best-epoch metrics of every evaluated
split, prediction files), at the real split sizes: CCT-20 cis_val 3,484 and cis_test 15,827, APTOS val 733, HPA
val 5,664 x 28 and test_val 2,826 x 28, Melanoma val 11,690, Cassava val 4,279, EuroSAT val 5,400. Each model's
skill grows with its ImageNet top-1; the best configuration of each (dataset, model) has real predictions whose
metrics are the record's, the other 59 score lower and link to the same files (analyze.py reads only the best's).
About 2% of the runs failed and 1% diverged.

    python benchmarks/analyze_study.py                       # generate once (reused), then time analyze.py 3 times
    python benchmarks/analyze_study.py --repeats 1 --study /tmp/study --out /tmp/study-report

Prints the machine, then for each analyze.py run its wall-clock seconds, CPU seconds (user + system, all threads),
peak memory (maximum resident set size) and the load average before it (other processes slow the wall time
down), and the fastest run. analyze.py runs as a separate process with its defaults (10,000 bootstrap resamples).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the toolkit's modules live at the repository root

import metrics
from common import cli, fileio, provenance, runrecord
from data import REGISTRY
from nets import registry

# (evaluated split, its size) of each dataset: the selection split first
SPLIT_SIZES = {"cct20": {"cis_val": 3484, "cis_test": 15827}, "aptos": {"val": 733},
               "hpa": {"val": 5664, "test_val": 2826}, "melanoma": {"val": 11690}, "cassava": {"val": 4279},
               "eurosat": {"val": 5400}}
GRID = [(optimizer, schedule, lr, wd) for optimizer, lrs in (("sgd", (0.1, 0.01, 0.001)), ("adamw", (1e-3, 1e-4, 1e-5)))
        for schedule in ("cosine", "step") for lr in lrs for wd in (1e-3, 1e-4, 1e-5, 1e-6, 0.0)]
FAILED_SHARE, DIVERGED_SHARE = 0.02, 0.01
STUDY_VERSION = 2  # bump when the generated study changes, so that an old one is regenerated


def predictions(rng: np.random.Generator, task: str, num_classes: int, n: int, skill: float):
    """(labels, scores) of one split whose quality grows with `skill` (0..1), as a network's float32 outputs."""
    if task == "multilabel":
        prevalence = np.exp(rng.uniform(np.log(0.002), np.log(0.4), num_classes))
        labels = (rng.random((n, num_classes)) < prevalence).astype(np.int64)
        logits = rng.normal(size=(n, num_classes)) + (1 + 3 * skill) * labels - 2
        return labels, (1 / (1 + np.exp(-logits))).astype(np.float32)
    if task == "binary":
        labels = (rng.random(n) < 0.09).astype(np.int64)
        logits = rng.normal(size=n) + (0.5 + 2.5 * skill) * labels - 1.5
        p = 1 / (1 + np.exp(-logits))
        return labels, np.column_stack([1 - p, p]).astype(np.float32)
    share = np.exp(rng.uniform(0, 2, num_classes))
    labels = rng.choice(num_classes, size=n, p=share / share.sum())
    logits = rng.normal(size=(n, num_classes)) * 1.2
    logits[np.arange(n), labels] += 0.5 + 3.5 * skill
    scores = np.exp(logits - logits.max(axis=1, keepdims=True))
    return labels, (scores / scores.sum(axis=1, keepdims=True)).astype(np.float32)


def run_config(dataset: str, model: str, optimizer: str, schedule: str, lr: float, wd: float) -> dict:
    spec = REGISTRY[dataset]
    return {"augment": "paper", "batch_size": 128, "cache": "auto", "cache_dir": "cache", "channels": "rgb",
            "channels_last": "auto", "compile": False, "composite_dir": None, "dataset": dataset,
            "epochs": spec.epochs, "eval_splits": [], "head": "classification",
            "img_size": registry.input_size(model, dataset), "label_smoothing": 0.0, "log_with": "none", "lr": lr,
            "milestones": list(spec.step_milestones), "model": model, "optimizer": optimizer, "out": "runs",
            "pool": "avg", "precision": "auto", "root": f"datasets/{dataset}", "schedule": schedule, "seed": 0,
            "skip_bad_images": False, "split_file": f"splits/{dataset}.csv", "split_method": None,
            "split_seed": None, "split_sha256": hashlib.sha256(dataset.encode()).hexdigest(), "wd": wd,
            "wd_convention": "paper", "weights": "imagenet", "workers": 8}


def run_id(config: dict) -> str:
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:8]
    return (f"{config['dataset']}-{config['model']}-imagenet-{config['optimizer']}-{config['schedule']}"
            f"-lr{config['lr']:g}-wd{config['wd']:g}-paper-s0-{digest}")


def record(config: dict, entry: registry.ModelEntry, status: str, best_metrics: dict | None, splits: dict,
           rng: np.random.Generator) -> dict:
    """A run record as train.py writes it."""
    spec, rid = REGISTRY[config["dataset"]], run_id(config)
    epochs = config["epochs"] if status != runrecord.DIVERGED else 3
    history = [{"epoch": e, "lr": config["lr"], "train_loss": float(rng.uniform(0.1, 2)), "seconds": 100.0,
                "images_per_s": 1000.0,
                **{k: float(v * rng.uniform(0.9, 1.0)) for k, v in (best_metrics or {}).items()}}
               for e in range(1, epochs + 1)]
    best = {"epoch": int(rng.integers(1, epochs + 1)), "metrics": best_metrics} if best_metrics else None
    error = {runrecord.FAILED: "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB | see the log",
             runrecord.DIVERGED: "non-finite loss at step 17"}.get(status)
    return {
        "schema_version": runrecord.SCHEMA_VERSION, "run_id": rid, "status": status, "error": error,
        "diverged_epoch": 3 if status == runrecord.DIVERGED else None, "config": config,
        "dataset": {"name": spec.name, "task": spec.task, "metric": spec.metric, "num_classes": spec.num_classes,
                    "class_names": [str(c) for c in range(spec.num_classes)], "selection_split": spec.selection_split,
                    "report_split": spec.report_split, "split_file": config["split_file"],
                    "split_sha256": config["split_sha256"], "split_sizes": {"train": 20000, **splits},
                    "excluded": {}},
        "model": {"constructor": entry.constructor, "group": entry.group, "head": "fresh",
                  "imagenet_top1": entry.imagenet_top1, "top1_source": entry.top1_source, "in_chans": 3,
                  "input_size": entry.input_size,
                  "label": entry.label, "library": entry.library, "mean": list(entry.mean), "name": entry.name,
                  "num_outputs": spec.num_classes, "params": entry.params, "pool": "avg", "std": list(entry.std),
                  "weights_loaded": f"imagenet:{entry.weights_tag}", "weights_tag": entry.weights_tag},
        "precision": "bf16", "num_processes": 1, "cache": {split: None for split in ["train", *splits]},
        "started_at": "2026-01-01T00:00:00+00:00", "finished_at": "2026-01-01T05:00:00+00:00",
        "versions": provenance.library_versions(), "git_commit": "0" * 40, "command": f"train.py --dataset {spec.name}",
        "history": history, "best": best,
        "predictions": ({split: runrecord.RunFiles(".", rid).predictions_entry(split) for split in splits}
                        if best else {}),
        "skipped_bad_images": 0, "bad_image_ids": [],
    }


def generate(folder: Path, seed: int) -> int:
    """Write the study into `folder`; returns the number of records."""
    rng = np.random.default_rng(seed)
    testbed = [entry for entry in registry.REGISTRY.values() if entry.group == "testbed"]
    count = 0
    for dataset, splits in SPLIT_SIZES.items():
        for entry in testbed:
            count += write_grid(folder, rng, dataset, splits, entry, entry.imagenet_top1,
                                lambda hparams: run_config(dataset, entry.name, *hparams))
    return count


def write_grid(folder: Path, rng: np.random.Generator, dataset: str, splits: dict[str, int],
               entry: registry.ModelEntry, top1: float, config_of) -> int:
    """One model's 60 runs on one dataset: predictions whose quality follows `top1`, one configuration the best,
    a few failed or diverged; returns the number of records."""
    spec = REGISTRY[dataset]
    skill = float(np.clip((top1 - 50) / 40 + rng.normal(0, 0.05), 0, 1))
    arrays = {split: predictions(rng, spec.task, spec.num_classes, n, skill) for split, n in splits.items()}
    labels, scores = arrays[spec.selection_split]
    thresholds = metrics.fit_decision(spec.task, labels, scores, spec.num_classes)
    best_metrics = {runrecord.metric_key(split, name): value for split, (y, s) in arrays.items()
                    for name, value in metrics.score(spec.task, y, s, thresholds, spec.num_classes).items()}
    best_config, best_files, others = int(rng.integers(len(GRID))), {}, []
    for index, hparams in enumerate(GRID):
        draw = rng.random()
        status = runrecord.COMPLETE if index == best_config or draw > FAILED_SHARE + DIVERGED_SHARE else \
            runrecord.FAILED if draw < FAILED_SHARE else runrecord.DIVERGED
        worse = {k: v - float(rng.uniform(0.001, 0.1)) for k, v in best_metrics.items()}
        run = record(config_of(hparams), entry, status, (best_metrics if index == best_config else worse)
                     if status == runrecord.COMPLETE else None, splits, rng)
        for split, relative in run["predictions"].items():
            path = folder / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            if index == best_config:
                y, s = arrays[split]
                runrecord.write_predictions(path, [f"{dataset}-{i}" for i in range(len(y))], y, s, thresholds,
                                            spec.task)
                best_files[split] = path
            else:
                others.append((split, path))
        fileio.atomic_write_json(folder / f"{run['run_id']}.json", run)
    for split, path in others:  # the other configurations' prediction files: hard links (analyze.py reads none)
        os.link(best_files[split], path)
    return len(GRID)


def ensure_generated(folder: Path, marker_name: str, expected: str, make, option: str) -> int:
    """The records `make(folder)` writes, made once: a marker (a .txt: analyze.py reads only *.json) names what the
    folder holds, so a rerun reuses it; a folder holding anything else is refused."""
    marker = folder / marker_name
    if marker.exists() and marker.read_text().splitlines()[0] == expected:
        return int(marker.read_text().splitlines()[1])
    if folder.exists() and any(folder.iterdir()):
        raise SystemExit(f"{folder} holds something other than this benchmark's records; give an empty {option}")
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    count = make(folder)
    marker.write_text(f"{expected}\n{count}\n")
    print(f"generated {count} records in {folder} ({time.perf_counter() - start:.0f} s)")
    return count


def ensure_study(folder: Path, seed: int) -> int:
    return ensure_generated(folder, "study.txt", f"analyze_study version {STUDY_VERSION} seed {seed}",
                            lambda where: generate(where, seed), "--study")


def time_analyze(study: Path, out: Path, extra: list[str]) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, peak resident MB) of one `python analyze.py STUDY --out OUT` process."""
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, str(REPO / "analyze.py"), str(study), "--out", str(out), *extra],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)  # the child's own peak memory, not only the largest child's
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"analyze.py failed ({process.returncode}):\n{stderr[-3000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024  # Linux reports kilobytes


def report_timings(study: Path, out: Path, extra: list[str], repeats: int) -> None:
    """Time `repeats` analyze.py processes, printing each and the best (by wall time)."""
    results = []
    for repeat in range(repeats):
        load = os.getloadavg()[0]  # other processes on the machine slow the wall time down: say how busy it was
        wall, cpu, peak = time_analyze(study, out, extra)
        results.append((wall, cpu, peak))
        print(f"  run {repeat + 1}: {wall:.1f} s wall, {cpu:.1f} s CPU (all threads), {peak:.0f} MB peak resident "
              f"memory; load average before it {load:.1f}")
    wall, cpu, peak = min(results)
    print(f"best of {repeats} (by wall time): {wall:.1f} s wall, {cpu:.1f} s CPU, {peak:.0f} MB")


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    parser.add_argument("--study", type=Path, default=Path(tempfile.gettempdir()) / "analyze-study",
                        help="folder of the generated study (made once, reused)")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "analyze-study-report",
                        help="analyze.py's --out")
    parser.add_argument("--repeats", type=int, default=3, help="analyze.py runs; the best is reported")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated study")
    parser.add_argument("analyze_args", nargs="*", help="extra arguments for analyze.py (after --)")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    count = ensure_study(args.study, args.seed)
    print(f"machine: {provenance.cpu_name()}, {os.cpu_count()} CPUs; python {platform.python_version()}, "
          f"numpy {np.__version__}")
    print(f"analyze.py on {count} records ({args.study}):")
    report_timings(args.study, args.out, args.analyze_args, args.repeats)


if __name__ == "__main__":
    main()
