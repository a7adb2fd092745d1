"""Does the input keep up with the model? Images/s of training fed from the cache vs the paper's input path.

    python benchmarks/input_pipeline.py                                       # on a GPU: (a), (b) and (c) below
    python benchmarks/input_pipeline.py --model deit_small_patch16_224 --img-size 224 --originals 800x600
    python benchmarks/input_pipeline.py --cpu-input-only --workers 2 --batch-size 32 --steps 20   # no model

Measured in one run on this machine, in images/s:
  (a) the model alone: forward, loss, backward and optimizer step on a uint8 batch already on the device (the
      ceiling: no input pipeline can make training faster than this)
  (b) the same step fed from the cache: cache.py's train variant read by engine.SampleDataset with
      transforms.train_transform (the paper's crop and flip on the cached uint8 image), engine.make_loader,
      uint8 batches to the device, normalisation there
  (c) the same step fed by the paper's path: OpenCV decode of the original + RGB conversion, torchvision
      RandomResizedCrop(img_size, scale=(0.65, 1)) + RandomHorizontalFlip + ToTensor + Normalize, a DataLoader
      with the same workers
and the ratios b/a (how close to the ceiling the cache keeps training) and b/c (the speed-up over the paper's path).
With --cpu-input-only there is no model: the two loaders alone are timed, (b) against (c).

The originals are synthetic photo-like JPEGs of --originals size (default 2048x1536, CCT-20's originals), written
to a temporary folder and used cyclically; the cache is built from them before any timing (its build rate is
printed too). The first --warmup batches of each measurement (worker start-up) are not timed.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as tv

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere: the toolkit's modules

import cache
from augment import transforms
from common import cli, provenance
from data import Samples, get_spec
from training import engine

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
NUM_CLASSES = 15  # CCT-20's, whose originals the default size imitates
JPEG_QUALITY = 90  # a camera's JPEG


def machine_description(device: torch.device) -> str:
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none"
    return (f"CPU {provenance.cpu_name()}, {os.cpu_count()} cores ({cli.usable_cores()} usable); GPU {gpu}; "
            f"torch {torch.__version__}")


def parse_size(text: str) -> tuple[int, int]:
    """'2048x1536' -> (2048, 1536), width first as image sizes are usually written."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--originals must look like 2048x1536, got {text!r}") from None
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f"--originals sizes must be positive, got {text!r}")
    return width, height


# ---------------------------------------------------------------------------------------------------------------
# Synthetic originals

def write_original(job: tuple[Path, int, int, int]) -> int:
    """A photo-like JPEG: smooth random shapes plus sensor grain, so that its size and decode cost resemble a
    camera's (pure noise would be far larger and slower to decode than any photo). Returns its size in bytes."""
    path, seed, width, height = job
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (9, 12, 3)).astype(np.float32)
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    image += rng.normal(0, 4, (height, width, 1)).astype(np.float32)
    image = np.clip(image, 0, 255).astype(np.uint8)
    if not cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
        raise OSError(f"{path}: OpenCV could not write the image")
    return path.stat().st_size


def write_originals(folder: Path, count: int, size: tuple[int, int], workers: int) -> list[Path]:
    paths = [folder / f"original-{i:04d}.jpg" for i in range(count)]
    jobs = [(path, seed, *size) for seed, path in enumerate(paths)]
    started = time.perf_counter()
    with ProcessPoolExecutor(max(1, workers)) as pool:
        sizes = list(pool.map(write_original, jobs))
    print(f"originals: {count} JPEGs of {size[0]}x{size[1]}, {np.mean(sizes) / 2**20:.2f} MiB each on average "
          f"(written in {time.perf_counter() - started:.1f} s)")
    return paths


def cycled_samples(folder: Path, paths: list[Path], length: int) -> Samples:
    """`length` samples whose images cycle through `paths`: sample i is paths[i % len(paths)]."""
    rng = np.random.default_rng(0)
    return Samples(spec=get_spec("cct20"), root=folder, ids=[f"s{i}" for i in range(length)],
                   labels=rng.integers(0, NUM_CLASSES, length), class_names=tuple(map(str, range(NUM_CLASSES))),
                   image_files=[(paths[i % len(paths)],) for i in range(length)])


class CyclicReader:
    """Sample i read from the cache of the unique originals (picklable, like the cache reader itself)."""

    def __init__(self, images: cache.CachedImages, unique: int):
        self.images, self.unique = images, unique

    def __call__(self, index: int) -> np.ndarray:
        return self.images(index % self.unique)


class PaperPathDataset(Dataset):
    """The paper's input path: decode the original, then torchvision's augmentation on a PIL image."""

    def __init__(self, samples: Samples, img_size: int):
        self.samples = samples
        self.transform = tv.Compose([tv.RandomResizedCrop(img_size, scale=(0.65, 1.0)), tv.RandomHorizontalFlip(),
                                     tv.ToTensor(), tv.Normalize(IMAGENET_MEAN, IMAGENET_STD)])

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = cv2.cvtColor(cv2.imread(str(self.samples.image_files[index][0])), cv2.COLOR_BGR2RGB)
        return self.transform(Image.fromarray(image)), torch.as_tensor(self.samples.labels[index])


# ---------------------------------------------------------------------------------------------------------------
# Timing

def images_per_second(batches: Iterable, step: Callable[[object], int], warmup: int, steps: int,
                      sync: Callable[[], None]) -> float:
    """Run `step` on warmup + steps batches; images/s over the last `steps` (step returns its image count)."""
    iterator = iter(batches)
    for _ in range(warmup):
        step(next(iterator))
    sync()
    started, images = time.perf_counter(), 0
    for _ in range(steps):
        images += step(next(iterator))
    sync()
    return images / (time.perf_counter() - started)


def make_train_step(model: torch.nn.Module, device: torch.device, bf16: bool,
                    channels_last: bool) -> Callable[[torch.Tensor, torch.Tensor], int]:
    """engine.train_one_epoch's step: forward, loss, backward, optimizer step (and the loss read back, as there)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=1e-4)
    outputs = engine.Outputs("multiclass")

    def step(x: torch.Tensor, labels: torch.Tensor) -> int:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = outputs.loss(model(x), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss.item()
        return len(labels)

    return step


def cache_loader(samples: Samples, unique: int, args, folder: Path, pin: bool) -> DataLoader:
    """Build (and time) the cache of the unique originals, then the loader train.py uses on it."""
    settings = cache.cache_settings(args.img_size, "train")
    started = time.perf_counter()
    cache.prepare(samples, np.arange(unique), settings, folder / "cache", workers=args.workers, progress=False)
    built = time.perf_counter() - started
    images = cache.open_cache(samples, np.arange(unique), settings, folder / "cache")
    print(f"cache: {unique} images built in {built:.1f} s ({unique / built:.0f} images/s with {args.workers} "
          f"workers), {images.info['bytes'] / unique / 2**10:.0f} KiB each, short side {settings['short_side']}")
    dataset = engine.SampleDataset(samples, np.arange(len(samples)),
                                   transforms.train_transform(samples.spec, args.img_size),
                                   reader=CyclicReader(images, unique))
    return engine.make_loader(dataset, args.batch_size, shuffle=True, workers=args.workers, drop_last=True,
                              pin_memory=pin)


def paper_loader(samples: Samples, args, pin: bool) -> DataLoader:
    return DataLoader(PaperPathDataset(samples, args.img_size), batch_size=args.batch_size, shuffle=True,
                      num_workers=args.workers, pin_memory=pin, drop_last=True, persistent_workers=args.workers > 0,
                      prefetch_factor=4 if args.workers > 0 else None)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default="resnet50", help="timm model name (random weights)")
    p.add_argument("--img-size", type=int, default=256, help="training input size")
    p.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1),
                   help="DataLoader workers (and cache-building processes)")
    p.add_argument("--batch-size", type=int, default=128, help="images per batch")
    p.add_argument("--steps", type=int, default=30, help="timed batches per measurement")
    p.add_argument("--warmup", type=int, default=5, help="untimed batches before each measurement")
    p.add_argument("--originals", type=parse_size, default=(2048, 1536),
                   help="size WxH of the synthetic original JPEGs")
    p.add_argument("--num-originals", type=int, default=256, help="distinct original files, used cyclically")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="where the model runs")
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"],
                   help="auto: bf16 on CUDA, fp32 elsewhere (channels-last on CUDA always)")
    p.add_argument("--cpu-input-only", action="store_true", help="time the two input paths alone, without a model")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    device = torch.device("cpu" if args.cpu_input_only else args.device)
    cuda = device.type == "cuda"
    print(machine_description(device))
    print(f"settings: img_size {args.img_size}, batch {args.batch_size}, workers {args.workers}, "
          f"{args.warmup} + {args.steps} batches per measurement")
    length = (args.warmup + args.steps) * args.batch_size  # one epoch covers every measured batch

    with tempfile.TemporaryDirectory(prefix="input-pipeline-") as tmp:
        folder = Path(tmp)
        paths = write_originals(folder, args.num_originals, args.originals, args.workers)
        samples = cycled_samples(folder, paths, length)
        from_cache = cache_loader(samples, len(paths), args, folder, pin=cuda)
        from_originals = paper_loader(samples, args, pin=cuda)

        if args.cpu_input_only:
            def count(batch) -> int:
                return len(batch["label"] if isinstance(batch, dict) else batch[1])

            b = images_per_second(from_cache, count, args.warmup, args.steps, lambda: None)
            print(f"(b) input from the cache:            {b:8.1f} images/s")
            c = images_per_second(from_originals, count, args.warmup, args.steps, lambda: None)
            print(f"(c) paper's input from the originals: {c:8.1f} images/s")
            print(f"b/c = {b / c:.1f}x")
            return 0

        import timm

        bf16 = args.precision == "bf16" or (args.precision == "auto" and cuda)
        model = timm.create_model(args.model, pretrained=False, num_classes=NUM_CLASSES).to(device)
        if cuda:
            model = model.to(memory_format=torch.channels_last)
        model.train()
        train_step = make_train_step(model, device, bf16, channels_last=cuda)
        sync = torch.cuda.synchronize if cuda else (lambda: None)
        print(f"model: {args.model}, {'bf16' if bf16 else 'fp32'}{', channels-last' if cuda else ''} on {device}")

        fixed = torch.randint(0, 256, (args.batch_size, 3, args.img_size, args.img_size), dtype=torch.uint8,
                              device=device)
        fixed_labels = torch.randint(0, NUM_CLASSES, (args.batch_size,), device=device)
        a = images_per_second(range(args.warmup + args.steps), lambda _: train_step(
            engine.to_model_input(fixed, IMAGENET_MEAN, IMAGENET_STD, False), fixed_labels),
            args.warmup, args.steps, sync)
        print(f"(a) model alone, input on the device: {a:8.1f} images/s")

        def cached_step(batch: dict) -> int:
            images = batch["image"].to(device, non_blocking=True)
            labels = batch["label"].to(device, non_blocking=True)
            return train_step(engine.to_model_input(images, IMAGENET_MEAN, IMAGENET_STD, False), labels)

        b = images_per_second(from_cache, cached_step, args.warmup, args.steps, sync)
        print(f"(b) training fed from the cache:      {b:8.1f} images/s")

        def paper_step(batch: tuple[torch.Tensor, torch.Tensor]) -> int:
            return train_step(batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True))

        c = images_per_second(from_originals, paper_step, args.warmup, args.steps, sync)
        print(f"(c) training fed by the paper's path: {c:8.1f} images/s")
        print(f"b/a = {b / a:.2f}   b/c = {b / c:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
