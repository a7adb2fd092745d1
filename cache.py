"""Prepared image caches: every image decoded once, shrunk, and stored so that training reads it without decoding.

    python cache.py aptos --root datasets/aptos              # the sizes the paper's testbed trains at on APTOS
    python cache.py aptos --model deit_small resnet50        # exactly what train.py reads for these models
    python cache.py cct20 --models all --workers 16          # every registry model's size
    python cache.py eurosat --img-size 224 --splits train    # explicit sizes
    python cache.py melanoma --verify-images                 # decode every image and report bad ones; build nothing
    python cache.py cassava --dry-run                        # list the caches that would be prepared

Why: decoding the originals is the cost of a run. With 16 workers the paper's input path delivers about 210
images/s from 2048x1536 JPEGs, while an H200 trains ResNet-50 at 256 px at about 3,400 images/s. Here each image
is decoded once, and a training step reads a few hundred kilobytes of ready uint8 pixels from a memory-mapped file.

Which sizes: one per model, decided by registry.input_size(model, dataset, --img-size), the function train.py and
evaluate.py call, so `--cache auto` always finds what `cache.py --model` prepared. Without --model, --models or
--img-size, cache.py prepares the sizes of the paper's testbed on the dataset (--models testbed: 224 for DeiT and
EuroSAT, 256 for the rest). The train split gets the train variant, every other split the eval variant; what each
holds, the folder layout and the key are described in imagecache/store.py, the build (parallel, resumable, in the
same bytes for any number of workers) in imagecache/build.py.

A build decodes every image, so it also verifies them: an image that cannot be decoded is recorded in the cache
(reading it raises the same BadImageError as reading the file would), and cache.py lists every such file at the end
and exits with status 1, unless --skip-bad-images. The build fills the verification memo of imagecache/verify.py, so a
later `train.py --verify-images` costs nothing. `--verify-images` alone decodes and reports without building.
"""
from __future__ import annotations

import argparse
import time
from contextlib import nullcontext
from pathlib import Path

from common import cli, errors
from data import REGISTRY, Samples
from data.inputs import DataOptions, add_data_arguments, open_inputs
from imagecache import cache_settings, ensure_built, input_sizes
from imagecache.store import FORMATS
from imagecache.verify import BadImage, BadImagesError, verify_images
from imagecache.worker import WorkerPool, worker_pool
from nets import models_file, registry


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__)
    p.add_argument("dataset", choices=sorted(REGISTRY), help="dataset from the registry in data/")
    add_data_arguments(p)  # the same flags as train.py, so the cache is built for the images train.py reads
    which = p.add_mutually_exclusive_group()
    which.add_argument("--model", nargs="+", metavar="NAME",
                       help="prepare the input size train.py gives each of these models (models.py)")
    which.add_argument("--models", metavar="GROUP",
                       help=f"prepare for every model of a group ({', '.join(registry.groups())}, or a "
                            f"--models-file's group)")
    p.add_argument("--models-file", default=None,
                   help="a JSON file of your own models (README, 'Benchmark your model'), as train.py takes it")
    p.add_argument("--img-size", type=int, nargs="+",
                   help="input sizes, as train.py's --img-size (without --model, --models or --img-size: the "
                        "testbed's sizes on the dataset)")
    p.add_argument("--splits", nargs="+",
                   help="splits to cache: train gets the train variant, the others the eval variant (without it: "
                        "every split)")
    p.add_argument("--workers", type=int, help="decoding processes (0: in this process; without it: every usable core)")
    p.add_argument("--format", choices=FORMATS,
                   help="npy: raw pixels, no decoding; jpeg: quality-95 JPEG, smaller on disk (without it: a finished "
                        "cache keeps its format, a new one is npy)")
    p.add_argument("--cache-dir", default="cache", help="folder that holds the caches and the verification memo")
    p.add_argument("--rebuild", action="store_true", help="discard existing caches of these splits and build them anew")
    p.add_argument("--verify-images", action="store_true",
                   help="decode every image of the splits and report the bad ones, without building (a build verifies "
                        "anyway)")
    p.add_argument("--skip-bad-images", action="store_true",
                   help="exit with status 0 when images cannot be decoded: they stay recorded in the cache, and "
                        "train.py --skip-bad-images leaves them out")
    p.add_argument("--dry-run", action="store_true", help="print the caches that would be prepared and build nothing")
    return p


def open_splits(args: argparse.Namespace) -> tuple[Samples, dict]:
    """The dataset and the indices of the requested splits, exactly as train.py reads them (data.inputs.open_inputs:
    --extra-train and --train-on included)."""
    inputs = open_inputs(DataOptions.from_args(args), training=False)
    names = list(args.splits or inputs.split_indices)
    missing = [name for name in names if name not in inputs.split_indices]
    if missing:
        raise errors.UsageError(f"--splits: {inputs.split_path} has no split {', '.join(missing)} "
                                f"(it has {', '.join(inputs.split_indices)})")
    return inputs.samples, {name: inputs.split_indices[name] for name in names}


def report_bad(dataset: str, bad: list[BadImage], skip: bool, built: bool) -> None:
    if not bad:
        return
    if not skip:
        raise BadImagesError(dataset, bad, built)
    print(f"{len(bad)} image(s) cannot be decoded and are recorded as bad (--skip-bad-images):")
    for image in bad:
        print(f"  - {image.path}: {image.reason}")


def verify_only(args: argparse.Namespace, samples: Samples, chosen: dict, pool: WorkerPool | None) -> int:
    indices = sorted({int(i) for rows in chosen.values() for i in rows})
    started = time.perf_counter()
    bad = verify_images(samples, indices, args.workers, args.cache_dir, pool=pool)
    print(f"{args.dataset}: {len(indices)} images of {', '.join(chosen)} verified in "
          f"{time.perf_counter() - started:.1f} s, {len(bad)} bad (memo in {args.cache_dir}/{args.dataset})")
    report_bad(args.dataset, bad, args.skip_bad_images, built=False)
    return 0


def build_all(args: argparse.Namespace, samples: Samples, plan: list[tuple[str, dict]], chosen: dict,
              pool: WorkerPool | None) -> int:
    started, results = time.perf_counter(), []
    for name, settings in plan:
        result = ensure_built(samples, chosen[name], settings, args.cache_dir, args.workers, args.format,
                              rebuild=args.rebuild, pool=pool)
        info = result.images.info
        results.append(result)
        print(f"{args.dataset} {name} ({settings['kind']} {settings['img_size']}): {info['images']} images, "
              f"{info['bytes'] / 2**20:.1f} MiB, {info['bad_images']} bad -> {info['path']}")
    built = sum(result.images_built for result in results)
    seconds = time.perf_counter() - started
    if built:
        workers = max(result.workers for result in results)
        how = "in this process" if workers == 0 else f"{workers} worker processes"
        print(f"built {built} images in {seconds:.1f} s: {built / seconds:.0f} images/s ({how})")
    else:
        print("every cache was already built")
    bad = {entry["sample"]: BadImage(entry["sample"], Path(entry["path"]), entry["reason"])
           for result in results for entry in result.bad_images}
    report_bad(args.dataset, sorted(bad.values()), args.skip_bad_images, built=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    models_file.use(args.models_file)
    if args.workers is not None and args.workers < 0:
        raise errors.UsageError(f"--workers must be 0 or more, got {args.workers}")
    sizes = input_sizes(args.dataset, args.model, args.models, args.img_size)
    workers = cli.usable_cores() if args.workers is None else args.workers
    # The workers start first: they get ready (numpy and OpenCV imports) while the dataset and its split are read.
    with worker_pool(workers) if workers and not args.dry_run else nullcontext() as pool:
        samples, chosen = open_splits(args)
        if args.verify_images:
            return verify_only(args, samples, chosen, pool)
        plan = [(name, cache_settings(size, "train" if name == "train" else "eval"))
                for size in sizes for name in chosen]
        if args.dry_run:
            for name, settings in plan:
                print(f"{args.dataset} {name} ({settings['kind']} {settings['img_size']}): "
                      f"{len(chosen[name])} images")
            return 0
        return build_all(args, samples, plan, chosen, pool)


if __name__ == "__main__":
    errors.run_main("cache.py", main)
