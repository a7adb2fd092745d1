"""Command-line flags that choose a dataset's files and split, shared by train.py and cache.py so they never drift."""
from __future__ import annotations

import argparse
from typing import Any

import errors


def add_data_arguments(parser: Any) -> None:
    """Add the flags to `parser` (an ArgumentParser or one of its argument groups)."""
    parser.add_argument("--root", default=None, help="dataset root folder; datasets/<dataset> when not given")
    parser.add_argument("--split-file", default=None, help="split CSV from splits.py; when not given, the dataset's default split is made under splits/ (HPA: import the paper's file first, see splits.py)")
    parser.add_argument("--split-method", default=None, choices=["paper", "stratified", "official"], help="split to make when no --split-file is given; when not given, the paper's (HPA: its imported file, see splits.py; official for CCT-20 and CIFAR-10), or stratified for a dataset the paper did not use")
    parser.add_argument("--split-seed", type=int, default=None, help="seed of a generated split; the paper's seed (stratified: 0) when not given")
    parser.add_argument("--channels", default="rgb", choices=["rgb", "rgby"], help="HPA only: compose red/green/blue, or all four stains for a 4-channel model")
    parser.add_argument("--composite-dir", default=None, help="HPA only: folder of pre-composited <Id>.png images instead of the per-stain files")


def dataset_options(dataset: str, args: argparse.Namespace) -> dict:
    """The open_dataset options the flags ask for (only HPA has any)."""
    if dataset != "hpa":
        if args.channels != "rgb" or args.composite_dir:
            raise errors.UsageError(f"--channels and --composite-dir are for HPA only, not {dataset}")
        return {}
    return {"channels": args.channels, "composite_dir": args.composite_dir}
