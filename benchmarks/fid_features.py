"""How fast fid.py extracts features: images per second through resize, InceptionV3 and the running statistics.

    python benchmarks/fid_features.py                                   # CPU, 32 images
    python benchmarks/fid_features.py --device cuda --count 2000 --batch-size 200 --workers 8
    python benchmarks/fid_features.py --device cuda --count 2000 --amp  # also: how far float16 moves the statistics

The weights do not change the speed, so random ones are used (--weights takes fid.py's choices; with --amp, use the
real weights: only they say whether float16 keeps the statistics within 1e-3). Images are random arrays held in
memory at --image-size, resized to 299 in the DataLoader workers exactly as fid.py does; decoding files is not
timed (it depends on the format and the disk). The first batch warms up and is not timed.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere: the toolkit is one folder up

from common.cli import HelpFormatter, usable_cores
from common.provenance import cpu_name
from frechet import DIMS
from frechet.distance import FeatureStats, frechet_distance
from frechet.features import compute_statistics, resolve_device
from frechet.inception import load_inception
from frechet.inputs import ImageSet


@dataclass
class RandomImages:
    """A few distinct random images, served in turn (picklable for DataLoader workers)."""
    pool: np.ndarray

    def read(self, index: int) -> np.ndarray:
        return self.pool[index % len(self.pool)]


def machine_name(device: str) -> str:
    if torch.device(device).type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    return f"{cpu_name()}, {os.cpu_count()} logical cores, {torch.get_num_threads()} torch threads"


def relative_change(new: np.ndarray, old: np.ndarray) -> float:
    return float(np.linalg.norm(new - old) / np.linalg.norm(old))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--count", type=int, default=32, help="images to time (after one warm-up batch)")
    parser.add_argument("--batch-size", type=int, default=16, help="images per forward pass")
    parser.add_argument("--workers", type=int, default=min(8, usable_cores()), help="DataLoader processes")
    parser.add_argument("--device", default="auto", help="torch device (auto: cuda when available)")
    parser.add_argument("--image-size", type=int, nargs=2, default=(375, 500), metavar=("HEIGHT", "WIDTH"),
                        help="size of the generated images (375 x 500 is a typical ImageNet photo)")
    parser.add_argument("--dims", type=int, default=2048, choices=DIMS, help="feature block (2048 = pool3)")
    parser.add_argument("--weights", default="random", help="fid.py's --weights (fid, PATH, torchvision, random)")
    parser.add_argument("--amp", action="store_true",
                        help="also time float16 autocast (CUDA) and print how much it changes mu, sigma and the FID")
    args = parser.parse_args()
    device = resolve_device(args.device)

    height, width = args.image_size
    pool = np.random.default_rng(0).integers(0, 256, (min(args.count, 64), height, width, 3), dtype=np.uint8)
    source = RandomImages(pool)
    model, weights = load_inception(args.weights, args.dims)
    print(f"machine: {machine_name(device)}; torch {torch.__version__}; weights {weights['id']}")

    def run(count: int, amp: bool) -> tuple[FeatureStats, float]:
        images = ImageSet("benchmark", source.read, np.arange(count), {})
        start = time.perf_counter()
        stats = compute_statistics(images, model, args.batch_size, device, args.workers, amp)
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        return stats, time.perf_counter() - start

    results = {}
    for amp in [False, True] if args.amp else [False]:
        run(max(args.batch_size, 2), amp)   # warm-up: workers, cuDNN autotuning, first allocations
        stats, seconds = run(args.count, amp)
        results[amp] = stats
        print(f"{'float16 autocast' if amp else 'float32'}: {args.count} images of {height}x{width} in "
              f"{seconds:.1f} s = {args.count / seconds:.1f} images/s (batch {args.batch_size}, "
              f"{args.workers} workers, dims {args.dims}, {device})")
    if args.amp:
        exact, half = results[False], results[True]
        print(f"float16 vs float32: mu changes by {relative_change(half.mu, exact.mu):.2e}, sigma by "
              f"{relative_change(half.sigma, exact.sigma):.2e} (relative Frobenius norm); "
              f"FID between them {frechet_distance(half.mu, half.sigma, exact.mu, exact.sigma):.3g}")


if __name__ == "__main__":
    main()
