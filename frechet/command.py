"""What one fid.py command does: the FID of two inputs (datasets, image folders or statistics files), or the
paper's table of every dataset's FID to a reference (--all-datasets), each written as records named by everything
that decides the number."""
from __future__ import annotations

import argparse
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis.figures import bar_chart, save_figure
from analysis.report import csv_text, markdown_table
from common import cli, errors
from common.fileio import atomic_write_json, atomic_write_text
from common.provenance import provenance
from data import REGISTRY
from frechet.distance import MATRIX_SQRT, frechet_distance, save_stats
from frechet.features import _made_the_same_way, check_compatible, compute_statistics, made_with, resolve_device
from frechet.inception import load_inception
from frechet.inputs import ImageSet, StatsFile, folder_input, input_identity, open_input, stats_input


@dataclass(frozen=True)
class FidOptions:
    """fid.py's command line, typed."""
    inputs: tuple[str, ...]
    subset: int
    seed: int
    seed_a: int | None
    seed_b: int | None
    disjoint: bool
    allow_smaller: bool
    split: str
    split_file: Path | None
    root: Path | None
    data_root: Path
    weights: str
    dims: int
    batch_size: int
    workers: int
    device: str
    amp: bool
    save_stats: Path | None
    save_stats_b: Path | None
    all_datasets: bool
    ref: Path | None
    folder: tuple[str, ...]
    out_dir: Path

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> FidOptions:
        return cli.typed(cls, args)


# The paper's two groups in the figure: images gathered from the web like ImageNet's, and the real-world tasks.
WEB_SCRAPED = {"cifar10"}
DEMO_DATASETS = {"digits"}       # the offline demo is no dataset of the paper: --all-datasets leaves it out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_") or "input"  # no dots: names get suffixes


def output_name(prefix: str, labels: list[str], decided_by: dict[str, Any]) -> str:
    """`prefix`_<labels>_<digest>: the digest is of everything that decides the number (`decided_by`)."""
    digest = hashlib.sha256(json.dumps(decided_by, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return "_".join([prefix, *map(_slug, labels), digest])


def fid_text(value: float) -> str:
    return f"{value:.4f}"  # frechet_distance never returns a negative, so no "-0.0000"


def run_pair(args: FidOptions) -> dict[str, Any]:
    """FID of A and B, written as a JSON record (returned); with A alone, only its statistics are saved."""
    num_datasets = sum(text in REGISTRY for text in args.inputs)
    if args.root is not None and num_datasets != 1 and not (args.disjoint and num_datasets == 2):
        raise errors.UsageError(f"--root names the root of one dataset input, but there are {num_datasets}: "
                                f"{'put both under --data-root' if num_datasets else 'leave --root out'}")
    seeds = [args.seed if args.seed_a is None else args.seed_a, args.seed if args.seed_b is None else args.seed_b]
    options = {"root": args.root, "data_root": args.data_root, "split": args.split, "split_file": args.split_file,
               "subset": args.subset, "allow_smaller": args.allow_smaller}
    sources = [open_input(args.inputs[0], seed=seeds[0], **options)]
    if len(args.inputs) == 2:
        if args.disjoint and not isinstance(sources[0], ImageSet):
            raise errors.UsageError("--disjoint needs A to be a dataset or an image folder, not a statistics file")
        sources.append(open_input(args.inputs[1], seed=seeds[1], exclude=sources[0] if args.disjoint else None,
                                  **options))
    saves = [args.save_stats, args.save_stats_b][:len(sources)]
    for source, save in zip(sources, saves):
        if save is not None and isinstance(source, StatsFile):
            raise errors.UsageError(f"cannot save statistics of {source.record['path']}: it already is a statistics "
                                    f"file")
    model = description = None
    if any(isinstance(source, ImageSet) for source in sources):
        model, weights = load_inception(args.weights, args.dims)
        description = made_with(weights, args.dims, args.amp)
    files = [source for source in sources if isinstance(source, StatsFile)]
    if len(files) == 2 and len(files[0].stats.mu) != len(files[1].stats.mu):
        raise errors.UsageError(f"statistics files {files[0].record['path']} and {files[1].record['path']} have "
                                f"{len(files[0].stats.mu)} and {len(files[1].stats.mu)} dimensions: FID compares "
                                f"features of one network layer, pass two files made with the same --dims")
    for source in files:
        check_compatible(source, description, "this run" if model else "the other statistics file")
        description = description or source.info
    all_stats = []
    for source, save in zip(sources, saves):
        if isinstance(source, StatsFile):
            all_stats.append(source.stats)
            continue
        stats = compute_statistics(source, model, args.batch_size, resolve_device(args.device), args.workers,
                                           args.amp)
        if save is not None:
            save_stats(save, stats, {**description, "source": source.record, **provenance()})
            print(f"statistics of {source.label} ({stats.num_images} images) written to {save}")
        all_stats.append(stats)
    if len(sources) == 1:
        return {}
    (a, b), (stats_a, stats_b) = sources, all_stats
    value = frechet_distance(stats_a.mu, stats_a.sigma, stats_b.mu, stats_b.sigma)
    decided_by = {"a": input_identity(a.record), "b": input_identity(b.record),
                  "made_with": _made_the_same_way(description or {})}
    out = args.out_dir / f"{output_name('fid', [a.label, 'vs', b.label], decided_by)}.json"
    record = {"kind": "fid", "fid": value, "inputs": {"a": a.record, "b": b.record},
              "num_images": {"a": stats_a.num_images, "b": stats_b.num_images},
              "subset": args.subset, "seeds": {"a": seeds[0], "b": seeds[1]}, "disjoint": args.disjoint,
              "allow_smaller": args.allow_smaller, "made_with": description, "matrix_sqrt": MATRIX_SQRT,
              "device": resolve_device(args.device) if model else None, "batch_size": args.batch_size, **provenance()}
    atomic_write_json(out, record)
    same = input_identity(a.record) == input_identity(b.record)
    print(f"FID({a.label}, {b.label}) = {fid_text(value)}   ({stats_a.num_images} and {stats_b.num_images} images; "
          f"record {out})" + ("\nnote: A and B are the same images, so the FID is 0 by construction; --disjoint or "
                              "--seed-b draws other images of the same set" if same else ""))
    return record


def run_table(args: FidOptions) -> list[dict[str, Any]]:
    """--all-datasets: FID of every dataset found under --data-root (and each --folder) to the --ref statistics."""
    if args.ref is None:
        raise errors.UsageError("--all-datasets needs --ref: the reference statistics file (e.g. of ImageNet val)")
    reference = stats_input(args.ref)
    found = [name for name in REGISTRY if name not in DEMO_DATASETS and (args.data_root / name).is_dir()]
    folders = [parse_folder(text) for text in args.folder]
    if not found and not folders:
        raise errors.DataError(f"no dataset found under {args.data_root} (looked for "
                               f"{', '.join(n for n in REGISTRY if n not in DEMO_DATASETS)}) and no --folder given")
    # open every input first: a broken layout or too few images is reported before hours of feature extraction
    options = {"data_root": args.data_root, "split": args.split, "split_file": args.split_file, "subset": args.subset,
               "seed": args.seed, "allow_smaller": args.allow_smaller}
    sources = [(name, "web-scraped" if name in WEB_SCRAPED else "real-world", open_input(name, **options))
               for name in found]
    sources += [(name, "web-scraped", folder_input(path, args.subset, args.seed, args.allow_smaller))
                for name, path in folders]
    model, weights = load_inception(args.weights, args.dims)
    description = made_with(weights, args.dims, args.amp)
    check_compatible(reference, description, "this run")
    rows = []
    for name, group, source in sources:
        stats = compute_statistics(source, model, args.batch_size, resolve_device(args.device), args.workers,
                                           args.amp)
        value = frechet_distance(stats.mu, stats.sigma, reference.stats.mu, reference.stats.sigma)
        print(f"FID({name}, {reference.label}) = {fid_text(value)}   ({stats.num_images} images)")
        rows.append({"dataset": name, "group": group, "num_available": source.record["num_available"],
                     "num_used": stats.num_images, "fid": value, "input": source.record})
    decided_by = {"reference": input_identity(reference.record), "made_with": _made_the_same_way(description),
                  "inputs": {row["dataset"]: input_identity(row["input"]) for row in rows}}
    write_table(args.out_dir / output_name("fid_table", [reference.label], decided_by), rows,
                {"reference": reference.record, "subset": args.subset, "seed": args.seed,
                 "allow_smaller": args.allow_smaller, "made_with": description, "matrix_sqrt": MATRIX_SQRT,
                 "device": resolve_device(args.device)})
    return rows


def parse_folder(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not Path(path).is_dir():
        raise errors.UsageError(f"--folder {text!r}: expected NAME=PATH with PATH an image folder")
    return name, Path(path)


TABLE_COLUMNS = {"dataset": "dataset", "group": "group", "num_available": "images available",
                 "num_used": "images used", "fid": "FID to reference"}


def write_table(stem: Path, rows: list[dict[str, Any]], details: dict[str, Any]) -> None:
    """`stem`.csv / .md / .json and the bar figure `stem`.png, each written atomically."""
    table = [{**row, "fid": fid_text(row["fid"])} for row in rows]
    atomic_write_text(stem.with_suffix(".csv"), csv_text(table, list(TABLE_COLUMNS)))
    shown = [{TABLE_COLUMNS[key]: row[key] if key != "fid" else f"{row['fid']:.2f}" for key in TABLE_COLUMNS}
             for row in rows]
    atomic_write_text(stem.with_suffix(".md"), markdown_table(shown, list(TABLE_COLUMNS.values())))
    atomic_write_json(stem.with_suffix(".json"), {"kind": "fid_table", "rows": rows, **details, **provenance()})
    sizes = sorted({row["num_used"] for row in rows})
    figure = bar_chart([row["dataset"] for row in rows], [row["fid"] for row in rows], [row["group"] for row in rows],
                       f"FID to {Path(details['reference']['path']).stem}",
                       f"{', '.join(map(str, sizes))} images per dataset")
    save_figure(figure, stem, suffixes=(".png",))
    print(f"table and figure written to {stem}.{{csv,md,json,png}}")
