"""Time the bootstrap of metrics.py on one CPU thread, on synthetic predictions.

Two cases from the project's requirements: 10,000 resamples of ROC AUC on 12,000 binary predictions, and of
macro F1 on 5,700 x 28 multi-label predictions (thresholds fixed). Each should take a few seconds. Then the same
two for --models prediction sets at once on shared resamples (metrics.intervals, as analyze.py scores the 19
models of a dataset). With --all-metrics it also times score_with_intervals, i.e. every metric of the two tasks.

    python benchmarks/bootstrap.py
    python benchmarks/bootstrap.py --n-boot 2000 --repeats 3 --all-metrics

Prints wall-clock and CPU seconds (the best of --repeats) and the machine; writes nothing.
"""
import os

# One thread, set before numpy loads its BLAS: the timings are for one CPU core.
for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
                 "NUMEXPR_NUM_THREADS"):
    os.environ[variable] = "1"

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # metrics.py lives at the repository root
import metrics
from common import cli, provenance


def binary_predictions(rng: np.random.Generator, n: int, prevalence: float) -> tuple[np.ndarray, np.ndarray]:
    labels = (rng.random(n) < prevalence).astype(np.int64)
    scores = 1 / (1 + np.exp(-(rng.normal(size=n) + 1.5 * labels - 1)))
    return labels, scores.astype(np.float32)  # float32 like a network's softmax: some scores tie


def multilabel_predictions(rng: np.random.Generator, n: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    prevalence = np.exp(rng.uniform(np.log(0.002), np.log(0.4), classes))  # a few common classes, many rare ones
    labels = (rng.random((n, classes)) < prevalence).astype(np.int64)
    scores = 1 / (1 + np.exp(-(rng.normal(size=(n, classes)) + 2 * labels - 2)))
    return labels, scores.astype(np.float32)


def best_time(run, repeats: int) -> tuple[float, float]:
    """(wall, cpu) seconds of the fastest of `repeats` calls."""
    times = []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        times.append((time.perf_counter() - wall, time.process_time() - cpu))
    return min(times)


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    parser.add_argument("--n-boot", type=int, default=10000, help="bootstrap resamples per case")
    parser.add_argument("--n-binary", type=int, default=12000, help="binary predictions for the AUC case")
    parser.add_argument("--prevalence", type=float, default=0.1, help="share of positives in the AUC case")
    parser.add_argument("--n-multilabel", type=int, default=5700, help="multi-label samples for the macro F1 case")
    parser.add_argument("--classes", type=int, default=28, help="multi-label classes for the macro F1 case")
    parser.add_argument("--models", type=int, default=19, help="prediction sets scored together on shared resamples")
    parser.add_argument("--repeats", type=int, default=1, help="time each case this many times and keep the best")
    parser.add_argument("--all-metrics", action="store_true", help="also time score_with_intervals of both tasks")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data and of the bootstrap")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)

    rng = np.random.default_rng(args.seed)
    binary = binary_predictions(rng, args.n_binary, args.prevalence)
    multilabel = multilabel_predictions(rng, args.n_multilabel, args.classes)
    thresholds = metrics.choose_thresholds(*multilabel)
    cases = [
        (f"roc_auc, {args.n_binary} binary predictions", lambda: metrics.bootstrap_distribution(
            "binary", *binary, metrics=["roc_auc"], n_boot=args.n_boot, seed=args.seed)),
        (f"macro_f1, {args.n_multilabel} x {args.classes} multi-label", lambda: metrics.bootstrap_distribution(
            "multilabel", *multilabel, thresholds, metrics=["macro_f1"], n_boot=args.n_boot, seed=args.seed)),
    ]
    many_binary = [binary_predictions(rng, args.n_binary, args.prevalence) + (None,) for _ in range(args.models)]
    many_multilabel = []
    for _ in range(args.models):
        labels, scores = multilabel_predictions(rng, args.n_multilabel, args.classes)
        many_multilabel.append((labels, scores, metrics.choose_thresholds(labels, scores)))
    cases += [
        (f"roc_auc, {args.models} x {args.n_binary} binary predictions on shared resamples", lambda: metrics.intervals(
            "binary", many_binary, metrics=["roc_auc"], n_boot=args.n_boot, seed=args.seed)),
        (f"macro_f1, {args.models} x {args.n_multilabel} x {args.classes} multi-label on shared resamples",
         lambda: metrics.intervals("multilabel", many_multilabel, metrics=["macro_f1"], n_boot=args.n_boot,
                                   seed=args.seed)),
    ]
    if args.all_metrics:
        cases += [
            ("score_with_intervals, binary: " + ", ".join(metrics.TASK_METRICS["binary"]), lambda: (
                metrics.score_with_intervals("binary", *binary, n_boot=args.n_boot, seed=args.seed))),
            ("score_with_intervals, multilabel: " + ", ".join(metrics.TASK_METRICS["multilabel"]), lambda: (
                metrics.score_with_intervals("multilabel", *multilabel, thresholds, n_boot=args.n_boot,
                                             seed=args.seed))),
        ]

    print(f"machine: {provenance.cpu_name()}, {os.cpu_count()} CPUs reported, "
          f"python {platform.python_version()}, numpy {np.__version__}, BLAS threads 1")
    print(f"{args.n_boot} bootstrap resamples, best of {args.repeats}:")
    for name, run in cases:
        wall, cpu = best_time(run, args.repeats)
        print(f"  {name}: {wall:.2f} s wall, {cpu:.2f} s CPU")


if __name__ == "__main__":
    main()
