"""How fast is each half of gpu_augment.py? Images/s of the worker side and of the device side, per batch.

    python benchmarks/gpu_augment.py                         # on CUDA when available, else the CPU
    python benchmarks/gpu_augment.py --device cpu --steps 3  # a quick look without a GPU

Measured in one process on synthetic cached images (the cache's train variant: short side round(1.125 x
img_size), aspect ratios 4:3, 3:4, 1:1 and 16:9 in turn, photo-like pixels held in memory):
  worker side, one process (a DataLoader worker's share of the work, without the loader's own overheads):
    CPU path     engine.SampleDataset with transforms.train_transform(..., "paper") + engine.collate: today's
    regions      gpu.RegionSampler + collate_regions: draws, slices and pads, no resampling
  device side, on --device:
    resized_crops to float32 and to uint8, from a batch already there
    the same to uint8 including the copy of the padded uint8 regions from pinned host memory (CUDA only)
The first --warmup batches of each measurement are not timed; CUDA timings synchronise before reading the clock.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the toolkit's modules

from input_pipeline import machine_description  # benchmarks/ is this script's own folder

import imagecache
from augment import gpu, transforms
from common import errors
from data import REGISTRY, Samples, get_spec
from training import engine

ASPECTS = (4 / 3, 3 / 4, 1.0, 16 / 9)  # width / height of the synthetic images, in turn


def cached_images(count: int, short_side: int, seed: int = 0) -> list[np.ndarray]:
    """Photo-like uint8 images as the train cache stores them: short side `short_side`, aspect ratios cycling."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(count):
        aspect = ASPECTS[i % len(ASPECTS)]
        height, width = ((short_side, round(short_side * aspect)) if aspect >= 1
                         else (round(short_side / aspect), short_side))
        coarse = rng.integers(0, 256, (9, 12, 3)).astype(np.float32)
        image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
        images.append(np.clip(image + rng.normal(0, 4, image.shape), 0, 255).astype(np.uint8))
    return images


def images_per_second(make_batch: Callable[[int], object], batch_size: int, warmup: int, steps: int,
                      sync: Callable[[], None] = lambda: None) -> float:
    """Call make_batch(step) warmup + steps times; images/s over the last `steps`."""
    for step in range(warmup):
        make_batch(step)
    sync()
    started = time.perf_counter()
    for step in range(warmup, warmup + steps):
        make_batch(step)
    sync()
    return steps * batch_size / (time.perf_counter() - started)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu",
                   help="where the device side runs")
    p.add_argument("--img-size", type=int, default=256, help="training input size")
    p.add_argument("--batch-size", type=int, default=128, help="images per batch")
    p.add_argument("--dataset", default="cassava", choices=sorted(REGISTRY),
                   help="registry dataset whose flips the pipeline uses")
    p.add_argument("--images", type=int, default=64, help="distinct synthetic images, used cyclically")
    p.add_argument("--steps", type=int, default=20, help="timed batches per measurement")
    p.add_argument("--warmup", type=int, default=2, help="untimed batches before each measurement")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for flag, value in (("--img-size", args.img_size), ("--batch-size", args.batch_size), ("--images", args.images),
                        ("--steps", args.steps)):
        if value < 1:
            raise errors.UsageError(f"{flag} must be positive, got {value}")
    if args.warmup < 0:
        raise errors.UsageError(f"--warmup must be 0 or more, got {args.warmup}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise errors.UsageError("--device cuda, but torch sees no CUDA device; use --device cpu")
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    print(machine_description(device))
    print(f"settings: img_size {args.img_size}, batch {args.batch_size}, {args.warmup} + {args.steps} batches per "
          f"measurement, torch threads {torch.get_num_threads()}, cv2 threads 1 (as in DataLoader workers)")
    cv2.setNumThreads(1)

    spec = get_spec(args.dataset)
    short_side = imagecache.cache_settings(args.img_size, "train")["short_side"]
    images = cached_images(args.images, short_side)
    pipeline = transforms.train_transform(spec, args.img_size, "paper")
    n = args.batch_size

    def seed_of(step: int, i: int) -> int:
        return engine.sample_seed(0, step, i)

    samples = Samples(spec=spec, root=Path("."), ids=[str(i) for i in range(len(images))],
                      labels=np.zeros(len(images), np.int64), class_names=tuple(map(str, range(spec.num_classes))))
    dataset = engine.SampleDataset(samples, np.arange(len(images)), pipeline, reader=lambda i: images[i])
    cpu_path = images_per_second(lambda step: engine.collate(
        [dataset[(step, i % len(images))] for i in range(n)]), n, args.warmup, args.steps)
    print(f"worker side, CPU path (crop + resize + flips): {cpu_path:9.1f} images/s per process")

    sampler = gpu.RegionSampler(pipeline)
    regions = images_per_second(lambda step: gpu.collate_regions(
        [sampler(images[i % len(images)], seed_of(step, i)) for i in range(n)]), n, args.warmup, args.steps)
    print(f"worker side, regions (draw + slice + pad):     {regions:9.1f} images/s per process "
          f"({regions / cpu_path:.1f}x)")

    batches = [gpu.collate_regions([sampler(images[i % len(images)], seed_of(step, i)) for i in range(n)])
               for step in range(4)]
    print(f"padded regions: {batches[0]['regions'].shape[2]} x {batches[0]['regions'].shape[3]} max, "
          f"{batches[0]['regions'].numel() / 2**20:.1f} MiB per batch")
    on_device = [{k: v.to(device) for k, v in batch.items()} for batch in batches]
    for out_dtype in (torch.float32, torch.uint8):
        rate = images_per_second(lambda step: gpu.resized_crops(
            on_device[step % 4]["regions"], on_device[step % 4]["sizes"], on_device[step % 4]["flips"],
            args.img_size, out_dtype=out_dtype), n, args.warmup, args.steps, sync)
        print(f"device side on {device.type}, resized_crops to {str(out_dtype).removeprefix('torch.'):7}: "
              f"{rate:9.1f} images/s")
    if cuda:
        pinned = [{k: v.pin_memory() for k, v in batch.items()} for batch in batches]

        def copy_and_resize(step: int) -> torch.Tensor:
            batch = {k: v.to(device, non_blocking=True) for k, v in pinned[step % 4].items()}
            return gpu.resized_crops(batch["regions"], batch["sizes"], batch["flips"], args.img_size,
                                             out_dtype=torch.uint8)

        rate = images_per_second(copy_and_resize, n, args.warmup, args.steps, sync)
        print(f"device side on cuda, host-to-device copy + resized_crops to uint8: {rate:9.1f} images/s")
    return 0


if __name__ == "__main__":
    errors.run_main("gpu_augment.py", main)
