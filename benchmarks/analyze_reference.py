"""Time analyze.py on a new model against a published results file: a 6,840-run reference and 360 new runs.

The reference is benchmarks/analyze_study.py's synthetic study (6 datasets x 19 models x 60 configurations, every
record in train.py's format at the real split sizes), exported once with `analyze.py STUDY --export` (19 x 6 results
with their 10,000 resampled values each). The new runs are one model outside the registry, "my_new_model", on the
same six datasets, splits and sample ids, over the paper's 60 configurations (360 records, about 3% failed or
diverged), its ImageNet top-1 and its source in its records as a user's models file gives them. What is timed is
what a user runs to place a new model: `analyze.py NEW --reference results.json`.

    python benchmarks/analyze_reference.py                  # generate once (reused), export, then time 3 times
    python benchmarks/analyze_reference.py --repeats 1 --work /tmp/reference-bench

Prints the machine, the export's time and the file's size, then for each analysis its wall-clock seconds, CPU
seconds (user + system, all threads), peak memory and the load average before it, and the fastest run.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the toolkit's modules live at the repository root
sys.path.insert(0, str(REPO / "benchmarks"))

import analyze_study

from common import cli, provenance
from nets import registry

NEW_MODEL, NEW_TOP1 = "my_new_model", 84.2
NEW_SOURCE = "a user's models file: top-1 measured with evaluate.py --imagenet-val (synthetic benchmark)"
NEW_VERSION = 2  # bump when the generated runs change, so that old ones are regenerated


def new_entry() -> registry.ModelEntry:
    """The new model's facts as a models file would give them (a registry entry's fields, another name)."""
    return dataclasses.replace(registry.REGISTRY["convnext_tiny"], name=NEW_MODEL, label="My new model",
                               imagenet_top1=NEW_TOP1, top1_source=NEW_SOURCE, group="user")


def generate_new(folder: Path, seed: int) -> int:
    """The new model's 360 runs into `folder`, as analyze_study.generate writes the testbed's; returns the count."""
    rng, entry = np.random.default_rng(seed), new_entry()
    return sum(analyze_study.write_grid(folder, rng, dataset, splits, entry, NEW_TOP1,
                                        lambda hparams: {**analyze_study.run_config(dataset, "convnext_tiny", *hparams),
                                                         "model": NEW_MODEL})
               for dataset, splits in analyze_study.SPLIT_SIZES.items())


def ensure_new(folder: Path, seed: int) -> int:
    expected = f"analyze_reference version {NEW_VERSION} seed {seed}"
    return analyze_study.ensure_generated(folder, "new-runs.txt", expected, lambda where: generate_new(where, seed),
                                          "--work")


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "analyze-reference",
                        help="folder for the new runs, the results file and the reports (made once, reused)")
    parser.add_argument("--study", type=Path, default=Path(tempfile.gettempdir()) / "analyze-study",
                        help="folder of analyze_study.py's generated study (made once, reused)")
    parser.add_argument("--repeats", type=int, default=3, help="analyze.py --reference runs; the best is reported")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated runs")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    studied = analyze_study.ensure_study(args.study, args.seed)
    new = ensure_new(args.work / "new-runs", args.seed + 1)
    print(f"machine: {provenance.cpu_name()}, {os.cpu_count()} CPUs; python {platform.python_version()}, "
          f"numpy {np.__version__}")
    results = args.work / "results.json"
    if not results.exists():
        start = time.perf_counter()
        analyze_study.time_analyze(args.study, args.work / "study-report", ["--export", str(results)])
        print(f"exported the {studied}-record study in {time.perf_counter() - start:.1f} s (with its full report)")
    print(f"results file: {results} ({results.stat().st_size / 1e6:.1f} MB)")
    print(f"analyze.py on {new} new records --reference {results.name}:")
    analyze_study.report_timings(args.work / "new-runs", args.work / "report", ["--reference", str(results)],
                                 args.repeats)


if __name__ == "__main__":
    main()
