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
from pathlib import Path
from typing import Any

from common import cli, errors
from frechet import DEFAULT_SUBSET, DIMS


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
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
    parser.add_argument("--device", default="auto", help="torch device (auto: cuda when available)")
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
    from frechet.command import FidOptions, run_pair, run_table  # torch: once the command line is parsed
    if args.all_datasets:
        if args.inputs:
            parser.error("--all-datasets takes no inputs A/B (datasets come from --data-root and --folder)")
        refuse_unused(parser, args, PAIR_ONLY, "to --all-datasets (each dataset is read from <data-root>/<name>, "
                                               "its subset drawn with --seed; no statistics are saved)")
        return run_table(FidOptions.from_args(args))
    refuse_unused(parser, args, TABLE_ONLY, "without --all-datasets (the table's reference and extra folders)")
    if not 1 <= len(args.inputs) <= 2:
        parser.error("give two inputs A B for their FID, or one input with --save-stats")
    if len(args.inputs) == 1 and args.save_stats is None:
        parser.error("one input: pass --save-stats FILE to store its statistics, or a second input for the FID")
    if args.save_stats_b is not None and len(args.inputs) < 2:
        parser.error("--save-stats-b needs a second input")
    if args.disjoint and len(args.inputs) < 2:
        parser.error("--disjoint needs two inputs: B is drawn from the images A did not use")
    return run_pair(FidOptions.from_args(args))


def main(argv: list[str] | None = None) -> int:
    run(argv)
    return 0


if __name__ == "__main__":
    errors.run_main("fid.py", main)
