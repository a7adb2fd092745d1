"""Fréchet Inception Distance (FID) between image sets: how far each dataset lies from ImageNet.

The paper explains why the real-world datasets behave differently by their FID to the ImageNet validation set,
with every dataset subsampled to 3,662 images (APTOS's size: FID depends on the number of images, so every
dataset is measured at the same size).

    # once: the reference statistics of ImageNet val (the standard val/ folder, flat or per class; all 50,000)
    python fid.py /data/imagenet/val --subset 0 --save-stats imagenet-val-stats.npz
    # one dataset against it: 3,662 images drawn with --seed 0 from datasets/aptos
    python fid.py aptos imagenet-val-stats.npz
    # the paper's table (CSV, Markdown, JSON) and bar figure, for every dataset under datasets/
    python fid.py --all-datasets --ref imagenet-val-stats.npz
    # a within-dataset baseline: two disjoint random halves of one dataset (B drawn from what A left)
    python fid.py eurosat eurosat --subset 1000 --disjoint

Inputs (fidinputs.py). A and B are each a dataset name from the registry (read from --root, default
<data-root>/<name>), an image folder (every image under it, any depth), or a statistics file (.npz holding `mu`
and `sigma`: the keys pytorch-fid writes and reads, so the files of both tools interchange; ours add `num_images`
and `info`, a JSON text of how they were made). Dataset and folder inputs are subsampled: --subset images drawn at
random without replacement, with --seed-a / --seed-b (both --seed unless given); --subset 0 uses all. --split all
draws from all of a dataset's labelled images, as the paper subsampled the dataset (APTOS's 3,662 is its whole
labelled set, so its training split alone would be too small); --split train|val|... draws from one split.
--disjoint draws B from the images of the same dataset or folder that A did not use: the FID of two disjoint
subsets is the baseline a cross-dataset FID of the same size should be read against.

Features (inception.py): the 2048-d pool3 activations of InceptionV3 (--dims 64/192/768 take the spatially
averaged output of an earlier block, as pytorch-fid does); --weights fid (default, the standard FID Inception of
pytorch-fid's file, from the torch hub cache), PATH (that file), torchvision (another network: labelled, not
comparable) or random (tests). The distance (frechet.py) is computed in float64 without a matrix square root.

Preprocessing, and how it relates to other tools (the numbers users compare):
  here        each image, at its own size, is resized once to 299x299 with antialiased bicubic interpolation on
              float values (torch's interpolate(mode="bicubic", antialias=True), which uses PIL's bicubic kernel:
              it agrees with PIL's float resize to within 0.01 grey levels, see tests/test_fid.py), clamped to
              [0, 255], then scaled to [-1, 1] as (x - 127.5) / 127.5, the input range of both weight sets.
  pytorch-fid loads images as [0, 1] tensors and resizes inside the model with bilinear F.interpolate to 299
              without antialiasing, then 2x - 1. Images larger than 299 px (ImageNet, APTOS, HPA) alias there, and
              small ones (CIFAR-10) are upsampled bilinearly, so its FIDs differ from ours for the same weights.
  clean-fid   "clean" mode resizes each channel with PIL bicubic on float values and clips to [0, 255], the same
              resize as ours up to float rounding; its network input is (x - 128) / 128 and its default network
              is another port of the same TensorFlow graph. Expect close, not identical, numbers.
JPEG decoders (OpenCV here, PIL in both tools) can also differ by a grey level.

Outputs are named from everything that decides the number (the exact images or statistics file of each input,
the weights, dims and preprocessing), so runs with other seeds, subsets or folders never overwrite each other.

Speed: a DataLoader with --workers processes decodes and resizes; the network runs in float32 batches
(convolutions without TF32 on CUDA); mean and covariance are accumulated in float64 as a running sum and sum of
outer products, so activations are never stored. --amp (CUDA only) runs the network in float16 autocast; whether
that keeps the statistics within 1e-3 was NOT checked with real weights (no GPU when this was written): check it
with benchmarks/fid_features.py --device cuda --amp, which prints the relative change, before relying on it.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

import cli
import errors
from data import REGISTRY
from figures import bar_chart, save_figure
from fidinputs import (DEFAULT_SUBSET, ImageSet, ResizedImages, StatsFile, folder_input, identity, open_input,
                       raise_problems, stats_input)
from frechet import MATRIX_SQRT, FeatureStats, RunningStats, frechet_distance, save_stats
from inception import DIMS, NORMALISATION, RESIZE, InceptionFeatures, load_inception
from records import atomic_write_json, atomic_write_text, provenance
from report import csv_text, markdown_table

# The paper's two groups in the figure: images gathered from the web like ImageNet's, and the real-world tasks.
WEB_SCRAPED = {"cifar10"}
DEMO_DATASETS = {"digits"}       # the offline demo is no dataset of the paper: --all-datasets leaves it out


def compute_statistics(images: ImageSet, model: InceptionFeatures, batch_size: int = 50, device: str = "cpu",
                       workers: int = 0, amp: bool = False) -> FeatureStats:
    """Mean and covariance of the model's activations over the images, streamed batch by batch."""
    device = torch.device(device)
    if amp and device.type != "cuda":
        raise errors.UsageError("--amp is for CUDA devices only: on CPU the network runs in float32")
    loader = DataLoader(ResizedImages(images), batch_size=batch_size, num_workers=workers,
                        pin_memory=device.type == "cuda")
    model = model.to(device).to(memory_format=torch.channels_last)
    running = RunningStats()
    # cuDNN may run float32 convolutions in TF32 (10-bit mantissa) on recent GPUs; FID wants full float32
    precision = (torch.backends.cudnn.flags(enabled=True, benchmark=True, deterministic=False, allow_tf32=False)
                 if device.type == "cuda" else contextlib.nullcontext())
    with precision, torch.inference_mode():
        for batch, problems in tqdm(loader, desc=f"features {images.label}", unit="batch", leave=False):
            raise_problems(problems)
            batch = batch.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                features = model(batch)
            running.update(features.float())
    return running.result()


def made_with(weights: dict[str, Any], dims: int, amp: bool) -> dict[str, Any]:
    """How statistics are made: statistics made otherwise do not mix (check_compatible)."""
    return {"weights": weights, "dims": dims, "resize": RESIZE, "normalisation": NORMALISATION, "amp": amp}


def _made_the_same_way(info: dict[str, Any]) -> dict[str, Any]:
    return {"weights": (info.get("weights") or {}).get("id"), "dims": info.get("dims"), "resize": info.get("resize"),
            "normalisation": info.get("normalisation")}


def check_compatible(stats: StatsFile, description: dict[str, Any] | None, other: str) -> None:
    """Refuse to mix statistics of other weights, dims or preprocessing; say so when a file does not record them."""
    path = stats.record["path"]
    if description is not None and len(stats.stats.mu) != description["dims"]:
        raise errors.UsageError(f"statistics file {path} has {len(stats.stats.mu)} dimensions, {other} "
                                f"{description['dims']}: pass --dims {len(stats.stats.mu)}")
    if stats.info is None:
        print(f"note: {path} does not record how it was made (a pytorch-fid file?): make sure it used the same "
              f"weights and preprocessing as {other}", file=sys.stderr)
        return
    if description is None:
        return
    ours, theirs = _made_the_same_way(description), _made_the_same_way(stats.info)
    for key, value in ours.items():
        if theirs[key] != value:
            raise errors.UsageError(f"statistics file {path} was made with {key} {theirs[key]!r}, but {other} uses "
                                    f"{value!r}: FIDs mix only statistics made the same way")


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_") or "input"  # no dots: names get suffixes


def output_name(prefix: str, labels: list[str], decided_by: dict[str, Any]) -> str:
    """`prefix`_<labels>_<digest>: the digest is of everything that decides the number (`decided_by`)."""
    digest = hashlib.sha256(json.dumps(decided_by, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return "_".join([prefix, *map(_slug, labels), digest])


def fid_text(value: float) -> str:
    return f"{value:.4f}"  # frechet_distance never returns a negative, so no "-0.0000"


def run_pair(args: argparse.Namespace) -> dict[str, Any]:
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
        stats = compute_statistics(source, model, args.batch_size, args.device, args.workers, args.amp)
        if save is not None:
            save_stats(save, stats, {**description, "source": source.record, **provenance()})
            print(f"statistics of {source.label} ({stats.num_images} images) written to {save}")
        all_stats.append(stats)
    if len(sources) == 1:
        return {}
    (a, b), (stats_a, stats_b) = sources, all_stats
    value = frechet_distance(stats_a.mu, stats_a.sigma, stats_b.mu, stats_b.sigma)
    decided_by = {"a": identity(a.record), "b": identity(b.record),
                  "made_with": _made_the_same_way(description or {})}
    out = args.out_dir / f"{output_name('fid', [a.label, 'vs', b.label], decided_by)}.json"
    record = {"kind": "fid", "fid": value, "inputs": {"a": a.record, "b": b.record},
              "num_images": {"a": stats_a.num_images, "b": stats_b.num_images},
              "subset": args.subset, "seeds": {"a": seeds[0], "b": seeds[1]}, "disjoint": args.disjoint,
              "allow_smaller": args.allow_smaller, "made_with": description, "matrix_sqrt": MATRIX_SQRT,
              "device": args.device if model else None, "batch_size": args.batch_size, **provenance()}
    atomic_write_json(out, record)
    same = identity(a.record) == identity(b.record)
    print(f"FID({a.label}, {b.label}) = {fid_text(value)}   ({stats_a.num_images} and {stats_b.num_images} images; "
          f"record {out})" + ("\nnote: A and B are the same images, so the FID is 0 by construction; --disjoint or "
                              "--seed-b draws other images of the same set" if same else ""))
    return record


def run_table(args: argparse.Namespace) -> list[dict[str, Any]]:
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
        stats = compute_statistics(source, model, args.batch_size, args.device, args.workers, args.amp)
        value = frechet_distance(stats.mu, stats.sigma, reference.stats.mu, reference.stats.sigma)
        print(f"FID({name}, {reference.label}) = {fid_text(value)}   ({stats.num_images} images)")
        rows.append({"dataset": name, "group": group, "num_available": source.record["num_available"],
                     "num_used": stats.num_images, "fid": value, "input": source.record})
    decided_by = {"reference": identity(reference.record), "made_with": _made_the_same_way(description),
                  "inputs": {row["dataset"]: identity(row["input"]) for row in rows}}
    write_table(args.out_dir / output_name("fid_table", [reference.label], decided_by), rows,
                {"reference": reference.record, "subset": args.subset, "seed": args.seed,
                 "allow_smaller": args.allow_smaller, "made_with": description, "matrix_sqrt": MATRIX_SQRT,
                 "device": args.device})
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    parser.add_argument("inputs", nargs="*", metavar="A [B]",
                        help="dataset name, image folder or statistics file (.npz); one input with --save-stats")
    parser.add_argument("--subset", type=int, default=DEFAULT_SUBSET,
                        help="images drawn from each dataset/folder input, without replacement; 0 = all")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random subsets")
    parser.add_argument("--seed-a", type=int, default=None, help="seed of A's subset, when not --seed")
    parser.add_argument("--seed-b", type=int, default=None, help="seed of B's subset, when not --seed")
    parser.add_argument("--disjoint", action="store_true",
                        help="draw B from the images of the same dataset or folder that A did not use")
    parser.add_argument("--allow-smaller", action="store_true",
                        help="use all images of an input that has fewer than --subset (instead of an error)")
    parser.add_argument("--split", default="all",
                        help="which images of a dataset input: all (the paper's choice) or a split name")
    parser.add_argument("--split-file", type=Path, default=None,
                        help="split file for --split other than all; when left out, the split splits.py makes")
    parser.add_argument("--root", type=Path, default=None,
                        help="root of the (one) dataset input, when not <data-root>/<name>")
    parser.add_argument("--data-root", type=Path, default=Path("datasets"),
                        help="folder holding the datasets, each at <data-root>/<name>")
    parser.add_argument("--weights", default="fid",
                        help="fid (standard FID Inception, torch hub cache), PATH to that file, torchvision, random")
    parser.add_argument("--dims", type=int, default=2048, choices=DIMS,
                        help="feature dimensions: 2048 = pool3 (standard); 64/192/768 = earlier blocks")
    parser.add_argument("--batch-size", type=int, default=50, help="images per forward pass")
    parser.add_argument("--workers", type=int, default=min(8, cli.usable_cores()),
                        help="DataLoader processes decoding and resizing images (0 = in the main process)")
    parser.add_argument("--device", default=default_device(), help="torch device (cuda when available)")
    parser.add_argument("--amp", action="store_true",
                        help="float16 autocast on CUDA (faster; not checked to keep statistics within 1e-3)")
    parser.add_argument("--save-stats", type=Path, default=None, help="write the statistics of input A to this .npz")
    parser.add_argument("--save-stats-b", type=Path, default=None, help="write the statistics of input B to this .npz")
    parser.add_argument("--all-datasets", action="store_true",
                        help="FID of every dataset under --data-root (and --folder) to --ref: the paper's table")
    parser.add_argument("--ref", type=Path, default=None, help="reference statistics file for --all-datasets")
    parser.add_argument("--folder", action="append", default=[], metavar="NAME=PATH",
                        help="with --all-datasets: an extra image folder, shown as web-scraped (repeatable)")
    parser.add_argument("--out-dir", type=Path, default=Path("reports/fid"),
                        help="where the JSON record (and the table and figure) go")
    return parser


# flags of one mode that the other never reads: given there, they are refused rather than silently ignored
PAIR_ONLY = ("root", "seed_a", "seed_b", "disjoint", "save_stats", "save_stats_b")
TABLE_ONLY = ("ref", "folder")


def refuse_unused(parser: argparse.ArgumentParser, args: argparse.Namespace, names: tuple[str, ...],
                  why: str) -> None:
    given = ["--" + name.replace("_", "-") for name in names if getattr(args, name) != parser.get_default(name)]
    if given:
        one = len(given) == 1
        raise errors.UsageError(f"{', '.join(given)} {'does' if one else 'do'} not apply {why}: leave "
                                f"{'it' if one else 'them'} out")


def run(argv: list[str] | None = None) -> dict[str, Any] | list[dict[str, Any]]:
    """The command line as a function (tests call it): the FID record, the table rows, or {} after --save-stats."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.all_datasets:
        if args.inputs:
            parser.error("--all-datasets takes no inputs A/B (datasets come from --data-root and --folder)")
        refuse_unused(parser, args, PAIR_ONLY, "to --all-datasets (each dataset is read from <data-root>/<name>, "
                                               "its subset drawn with --seed; no statistics are saved)")
        return run_table(args)
    refuse_unused(parser, args, TABLE_ONLY, "without --all-datasets (the table's reference and extra folders)")
    if not 1 <= len(args.inputs) <= 2:
        parser.error("give two inputs A B for their FID, or one input with --save-stats")
    if len(args.inputs) == 1 and args.save_stats is None:
        parser.error("one input: pass --save-stats FILE to store its statistics, or a second input for the FID")
    if args.save_stats_b is not None and len(args.inputs) < 2:
        parser.error("--save-stats-b needs a second input")
    if args.disjoint and len(args.inputs) < 2:
        parser.error("--disjoint needs two inputs: B is drawn from the images A did not use")
    return run_pair(args)


def main() -> None:
    run()


if __name__ == "__main__":
    errors.run_main("fid.py", main)
