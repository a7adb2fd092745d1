"""Which image is in which split: make or import a dataset's split and write its file.

    python splits.py aptos --root datasets/aptos                 # the paper's split (seed 414)
    python splits.py cct20 --root datasets/cct20                 # the official files' splits
    python splits.py hpa --root datasets/hpa --from split.stratified.small.0.csv   # import HPA's published file
    python splits.py digits --method stratified --seed 1         # class-balanced 80/20 with another seed

It prints the dataset, how the split was made (and whether it is the paper's), the file and its SHA-256, and the
per-class counts of every split. data/splits.py says what the methods do and how train.py resolves a split.
"""
from __future__ import annotations

from pathlib import Path

from common import cli, errors
from data import REGISTRY
from data.split_methods import METHODS
from data.splits import split_dataset


def build_parser():
    parser = cli.parser(__doc__)
    parser.add_argument("dataset", choices=sorted(REGISTRY), help="which dataset to split")
    parser.add_argument("--root", type=Path, default=None,
                        help="the dataset's folder; datasets/<dataset> when not given")
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--method", choices=METHODS, default=None,
                     help="how to split; when not given, paper where splits.py reproduces it (HPA: import its file "
                          "with --from), official for CCT-20 and CIFAR-10, else stratified")
    how.add_argument("--from", dest="from_file", type=Path, default=None,
                     help="import this split file (id,label,split or HPA's Id,Target,Split) after checking it")
    parser.add_argument("--seed", type=int, default=None,
                        help="random seed; the paper's for paper, 0 for stratified when not given (a different seed "
                             "for paper no longer reproduces the paper)")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to write the split file; splits/<dataset>-<method>[-seed<seed>].csv (imports: "
                             "splits/<dataset>-from-<file name>.csv) when not given")
    parser.add_argument("--composite-dir", type=Path, default=None,
                        help="HPA only: the pre-composited <Id>.png images, when the stain files are not kept")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.composite_dir is not None and args.dataset != "hpa":
        parser.error("--composite-dir applies to hpa only")
    options = {"composite_dir": args.composite_dir} if args.composite_dir is not None else {}
    print(split_dataset(args.dataset, args.root, args.method, args.seed, args.from_file, args.out, **options))
    return 0


if __name__ == "__main__":
    errors.run_main("splits.py", main)
