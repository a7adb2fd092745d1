"""Command-line flags that choose a dataset's files and split, shared by train.py and cache.py so they never drift."""
from __future__ import annotations

import argparse
from typing import Any


def add_data_arguments(parser: Any) -> None:
    """Add the flags to `parser` (an ArgumentParser or one of its argument groups)."""
    parser.add_argument("--root", default=None, help="dataset root folder (default: datasets/<dataset>)")
    parser.add_argument("--split-file", default=None, help="split CSV from splits.py (default: make the dataset's default split under splits/)")
    parser.add_argument("--split-method", default=None, choices=["paper", "stratified", "official"], help="split to make when no --split-file is given (default: the paper's where it exists)")
    parser.add_argument("--split-seed", type=int, default=None, help="seed of a generated split (default: the paper's seed, or 0)")
    parser.add_argument("--channels", default="rgb", choices=["rgb", "rgby"], help="HPA only: compose red/green/blue, or all four stains for a 4-channel model")
    parser.add_argument("--composite-dir", default=None, help="HPA only: folder of pre-composited <Id>.png images instead of the per-stain files")


def dataset_options(dataset: str, args: argparse.Namespace) -> dict:
    """The open_dataset options the flags ask for (only HPA has any)."""
    if dataset != "hpa":
        if args.channels != "rgb" or args.composite_dir:
            raise SystemExit("--channels and --composite-dir are for HPA only")
        return {}
    return {"channels": args.channels, "composite_dir": args.composite_dir}
