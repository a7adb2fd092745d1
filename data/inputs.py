"""Command-line flags that choose a dataset's files and split, and what they open (open_inputs): shared by train.py
and cache.py so that cache.py prepares exactly the images train.py reads.

    add_data_arguments(parser)                       # --root, --split-file, --split-method, ... on a parser
    options = DataOptions.from_args(args)            # the parsed flags, typed, once
    inputs = open_inputs(options, eval_splits)       # the dataset and split, checked; Inputs
"""
from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common import cli, errors
from data import REGISTRY, Samples, concatenate, default_root, describe, get_spec, open_dataset, splits
from data.split_methods import METHODS
from data.splits import ResolvedSplit


def add_data_arguments(parser: Any) -> None:
    """Add the flags to `parser` (an ArgumentParser or one of its argument groups)."""
    parser.add_argument("--root", default=None, help="dataset root folder; datasets/<dataset> when not given")
    parser.add_argument("--split-file", default=None,
                        help="split CSV from splits.py; when not given, the dataset's default split is made under "
                             "splits/ (HPA: import the paper's file first, see splits.py)")
    parser.add_argument("--split-method", default=None, choices=METHODS,
                        help="split to make when no --split-file is given; when not given, the paper's (HPA: its "
                             "imported file, see splits.py; official for CCT-20 and CIFAR-10), or stratified for a "
                             "dataset the paper did not use")
    parser.add_argument("--split-seed", type=int, default=None,
                        help="seed of a generated split; the paper's seed (stratified: 0) when not given")
    parser.add_argument("--channels", default="rgb", choices=["rgb", "rgby"],
                        help="HPA only: compose red/green/blue, or all four stains for a 4-channel model")
    parser.add_argument("--composite-dir", default=None,
                        help="HPA only: folder of pre-composited <Id>.png images instead of the per-stain files")
    parser.add_argument("--extra-train", default=None, choices=sorted(REGISTRY),
                        help="add all labelled images of this dataset to the training split (e.g. dr2015 for aptos, "
                             "as the Kaggle winners did)")
    parser.add_argument("--extra-root", default=None, help="root of --extra-train; datasets/<name> when not given")
    parser.add_argument("--train-on", default="train", choices=["train", "all"],
                        help="'all': train on the training and selection splits together, for a final model (no "
                             "selection split, the last epoch is kept)")


@dataclass(frozen=True)
class DataOptions:
    """What add_data_arguments' flags ask for (and the dataset's name)."""
    dataset: str
    root: str | None = None
    split_file: str | None = None
    split_method: str | None = None
    split_seed: int | None = None
    channels: str = "rgb"
    composite_dir: str | None = None
    extra_train: str | None = None
    extra_root: str | None = None
    train_on: str = "train"

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> DataOptions:
        return cli.typed(cls, args)

    def dataset_options(self) -> dict:
        """The open_dataset options the flags ask for (only HPA has any)."""
        if self.dataset != "hpa":
            if self.channels != "rgb" or self.composite_dir:
                raise errors.UsageError(f"--channels and --composite-dir are for HPA only, not {self.dataset}")
            return {}
        return {"channels": self.channels, "composite_dir": self.composite_dir}


@dataclass
class Inputs:
    """The dataset and split every run of one command trains on, checked before any compute."""
    samples: Samples
    split: ResolvedSplit
    split_indices: dict[str, np.ndarray]  # the split's, with --extra-train and --train-on applied
    selection_split: str | None           # None when training on all labelled data (--train-on all)
    eval_splits: list[str]

    @property
    def split_path(self) -> Path:
        return self.split.path

    @property
    def split_sha256(self) -> str:
        return self.split.sha256

    def describe(self) -> str:
        return (f"{describe(self.samples)}; split: {self.split.description}; "
                + ", ".join(f"{name} {len(rows):,}" for name, rows in self.split_indices.items()))

    def fingerprint(self) -> dict[str, int]:
        """A cheap fingerprint of the images the runs read: their count and total size in bytes (file sizes; the
        arrays' for datasets held in memory). Two copies of a dataset with the same split but a changed, truncated
        or replaced image differ here, so a record is never reused for other data."""
        used = np.unique(np.concatenate([rows for rows in self.split_indices.values()])).astype(np.int64)
        samples = self.samples
        if samples.images is not None:
            return {"images": int(len(used)), "bytes": int(samples.images[used].nbytes)}
        return {"images": int(len(used)),
                "bytes": sum(os.stat(path).st_size for i in used for path in samples.image_files[i])}


def open_inputs(options: DataOptions, eval_splits: Sequence[str] = (), training: bool = True) -> Inputs:
    """The dataset and split the flags ask for, with --extra-train and --train-on applied: what train.py trains on
    and cache.py prepares. `eval_splits`: more splits to evaluate (train.py --eval-splits). `training`: refuse an
    empty training or selection split (cache.py prepares what there is)."""
    spec = get_spec(options.dataset)
    samples = open_dataset(options.dataset, options.root or default_root(options.dataset),
                           **options.dataset_options())
    split = splits.resolve(samples, options.split_file, options.split_method, options.split_seed)
    indices = split.indices
    for split_name in ("train", spec.selection_split) if training else ():
        if len(indices.get(split_name, ())) == 0:
            raise errors.DataError(f"{split.path}: split '{split_name}' is empty or missing")
    if options.extra_train:  # more labelled training data, e.g. the 2015 DR competition's images for APTOS
        extra = open_dataset(options.extra_train, options.extra_root or default_root(options.extra_train))
        indices = splits.with_extra_training(indices, spec, len(samples), len(extra))
        samples = concatenate(samples, extra)
    if options.train_on == "all":
        indices = splits.train_on_all(indices, spec)
    selection = spec.selection_split if options.train_on == "train" else None
    eval_splits = ([selection] if selection else []) + [
        s for s in dict.fromkeys([spec.report_split, *spec.extra_splits, *eval_splits])
        if s and s != selection and len(indices.get(s, ())) > 0]
    return Inputs(samples, split, indices, selection, eval_splits)
