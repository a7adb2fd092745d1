"""Score finished runs, ensembles and test-time augmentation with 95% intervals; write Kaggle submissions.

    python evaluate.py runs/<run_id>                                  # best checkpoint, selection + reported split
    python evaluate.py runs/<a> runs/<b> runs/<c> --ensemble mean --tta flips
    python evaluate.py --from-predictions runs/<run_id>              # no model, no GPU: from saved predictions
    python evaluate.py --dataset aptos --model resnet50 --weights my.safetensors --split val
    python evaluate.py runs/<run_id> --submission submission.csv --test-dir datasets/aptos/test_images
    python evaluate.py --imagenet-val datasets/imagenet/val --model mobilenet_v2     # a model's ImageNet top-1
    python evaluate.py --imagenet-val datasets/imagenet/val --model mine --models-file models.json \
        --write-models-file models.json                                              # ... kept as its top-1

Each scored model (and the ensemble) gets every metric of its task (metrics.TASK_METRICS) with an interval:
Clopper-Pearson for accuracy, a seeded percentile bootstrap for the others. Thresholds (HPA) and cut points (an
ordinal regression head) are fit on the selection split and applied unchanged to the others. An evaluation
record (JSON) and per-sample predictions (.npz) are written atomically under --out.

--imagenet-val DIR measures a model's ImageNet top-1 with its own evaluation transform, with a Clopper-Pearson
interval, on ILSVRC2012's validation images: class folders (n01440764/*.JPEG), or the flat folder
(ILSVRC2012_val_00000001.JPEG ...) labelled by the devkit's ILSVRC2012_validation_ground_truth.txt and meta.mat, or
by Kaggle's LOC_val_solution.csv. It writes <out>/<name>/imagenet-val.json and prints the models-file entry that
makes the number the model's top-1 (--write-models-file adds it to a file).
"""
from __future__ import annotations

import argparse

import augment
from common import cli, errors
from data import REGISTRY
from evaluation.options import EvalOptions


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__)
    p.add_argument("runs", nargs="*",
                   help="runs: runs/<run_id>, runs/<run_id>.json, a bare run id (looked up in --runs-dir), or a "
                        "folder of run records (each complete run in it)")
    p.add_argument("--runs-dir", default="runs", help="where a bare run id is looked up")
    p.add_argument("--from-predictions", action="store_true",
                   help="recompute metrics from the runs' saved predictions only")
    p.add_argument("--split", nargs="*", default=None,
                   help="splits to score; the selection split and the reported ones when not given")
    p.add_argument("--tta", default="none", choices=list(augment.TTA_MODES),
                   help="test-time augmentation: average over the views the model was trained with (flips: the "
                        "dataset's flips; dihedral: the 8 rotations/reflections, for datasets trained with both "
                        "flips)")
    p.add_argument("--ensemble", default="mean", choices=["mean", "none"],
                   help="with several runs, also score the mean of their scores")
    p.add_argument("--level", type=float, default=0.95, help="confidence level of the intervals")
    p.add_argument("--n-boot", type=int, default=10_000, help="bootstrap resamples per interval")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    p.add_argument("--out", default="evaluations", help="folder for evaluation records and predictions")
    p.add_argument("--name", default=None,
                   help="name of this evaluation; derived from its inputs and settings when not given")
    g = p.add_argument_group("a model without a run record")
    g.add_argument("--dataset", default=None, choices=sorted(REGISTRY), help="dataset of --model")
    g.add_argument("--model", default=None,
                   help="model name (models.py, a --models-file's, timm's or torchvision's) to evaluate with "
                        "--weights, or to measure with --imagenet-val")
    g.add_argument("--models-file", default=None, help="JSON file of your own models (as train.py's --models-file)")
    g.add_argument("--weights", default=None,
                   help="weights file (.safetensors/.pth) for --model; with --imagenet-val 'imagenet' (the model's "
                        "pretrained weights) when not given, or 'random', or a file of the whole network")
    g.add_argument("--head", default="classification", choices=["classification", "regression"], help="head of --model")
    g.add_argument("--img-size", type=int, default=None,
                   help="input size for --model; registry.input_size decides when not given")
    g.add_argument("--pool", default="avg", choices=["avg", "gem"], help="global pooling --model was trained with")
    g.add_argument("--channels", default="rgb", choices=["rgb", "rgby"],
                   help="HPA only: the channels --model was trained on")
    g.add_argument("--normalize", default="imagenet", choices=["imagenet", "model"],
                   help="input mean/std --model was trained with: ImageNet's (train.py's default) or the weights' own")
    g = p.add_argument_group("data")
    g.add_argument("--root", default=None,
                   help="dataset root; the run's (as it resolved when it trained) when not given")
    g.add_argument("--split-file", default=None,
                   help="split file; the run's when not given (checked against its SHA-256 either way)")
    g.add_argument("--batch-size", type=int, default=128, help="evaluation batch size")
    g.add_argument("--workers", type=int, default=min(4, cli.usable_cores()), help="data-loading workers")
    g.add_argument("--cache", default="auto", choices=["auto", "off"],
                   help="read evaluation images from a prepared cache when one exists (cache.py)")
    g.add_argument("--cache-dir", default="cache", help="folder of prepared image caches")
    g = p.add_argument_group("ImageNet top-1 of --model (instead of runs)")
    g.add_argument("--imagenet-val", default=None,
                   help="ImageNet's validation folder: class folders n01440764/..., or the flat "
                        "ILSVRC2012_val_*.JPEG with the devkit's ground truth")
    g.add_argument("--imagenet-devkit", default=None,
                   help="folder holding ILSVRC2012_validation_ground_truth.txt and meta.mat (or LOC_val_solution.csv) "
                        "for a flat folder; looked for beside it and in ILSVRC2012_devkit_t12/data when not given")
    g.add_argument("--write-models-file", default=None,
                   help="add the measured top-1, as the model's entry, to this models file (created if missing)")
    g = p.add_argument_group("Kaggle submission")
    g.add_argument("--submission", default=None,
                   help="write a submission CSV in the competition's format for --test-dir")
    g.add_argument("--test-dir", default=None, help="folder of the competition's unlabeled test images")
    return p


def main(argv: list[str] | None = None) -> int:
    options = EvalOptions.from_args(build_parser().parse_args(argv))
    if options.imagenet_val:
        options.check_imagenet_val()
        from evaluation.imagenet_top1 import measure  # torch: imported once the command line is parsed
        return measure(options)
    from evaluation.command import evaluate
    return evaluate(options)


if __name__ == "__main__":
    errors.run_main("evaluate.py", main)
