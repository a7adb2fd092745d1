"""How fast cache.py builds a cache: images/s in one process (--workers 0) and with N worker processes, and the ratio.

    python benchmarks/cache_build.py                                       # 1,600 JPEGs of 800x600, 0 vs all cores
    python benchmarks/cache_build.py --images 3200 --width 400 --height 300 --workers 16

Writes a synthetic Cassava copy of --images JPEGs of --width x --height (data/synthetic.py's images, in Cassava's
layout; kept in --data and reused when it is already there), then runs `cache.py cassava --img-size 256` exactly as a
user would, in a fresh cache folder each time: once with --workers 0 and once with --workers N, --repeat times each,
alternating. Cassava's paper split puts 80% of the images in train (the train variant, short side 288) and 20% in val
(the eval variant, 256 x 256), so every image is decoded once per run. Reported for each: the build rate cache.py prints
(images/s over the builds), the wall time of the whole command (Python start-up, imports, reading the dataset and its
split included), and the CPU time of cache.py and its workers per image, which shows what the parallelism costs whatever
else runs on the machine. The best of the repeats is reported, since other processes may share the machine; the load
average is printed with the results.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from anywhere: the toolkit's modules

from common.cli import usable_cores
from common.provenance import cpu_name
from data import CASSAVA_DISEASES, open_dataset
from data.synthetic import class_image, write_fixture, write_image

RATE = re.compile(r"built (\d+) images in ([\d.]+) s: (\d+) images/s")


def machine_description() -> str:
    load = ", load average %.1f %.1f %.1f" % os.getloadavg() if hasattr(os, "getloadavg") else ""
    return (f"CPU {cpu_name()}, {os.cpu_count()} cores ({usable_cores()} usable){load}; "
            f"Python {platform.python_version()}, OpenCV {cv2.__version__}")


def write_photo(job: tuple[Path, int, int, int]) -> None:
    path, seed, width, height = job
    label = seed % len(CASSAVA_DISEASES)
    write_image(path, class_image(np.random.default_rng(seed), label, len(CASSAVA_DISEASES), (height, width)))


def write_dataset(root: Path, images: int, size: tuple[int, int], workers: int) -> None:
    """A Cassava copy of `images` JPEGs of `size`: the layout from data/synthetic.py at a tiny size, then every
    image written again at full size in parallel (the writer itself is sequential)."""
    if images % len(CASSAVA_DISEASES):
        raise SystemExit(f"--images must be a multiple of {len(CASSAVA_DISEASES)} (Cassava's classes)")
    started = time.perf_counter()
    write_fixture("cassava", root, per_class=images // len(CASSAVA_DISEASES), size=(8, 8))
    paths = sorted((root / "train_images").iterdir())
    with ProcessPoolExecutor(max(1, workers)) as pool:
        list(pool.map(write_photo, [(path, seed, *size) for seed, path in enumerate(paths)], chunksize=16))
    (root / "ready").write_text(f"{images} {size[0]}x{size[1]}\n")
    print(f"wrote {images} JPEGs of {size[0]}x{size[1]} to {root} in {time.perf_counter() - started:.0f} s")


def cpu_seconds_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_cache_py(root: Path, work: Path, workers: int, run: int) -> tuple[float, float, float]:
    """(build rate cache.py printed, wall seconds of the whole command, CPU seconds of it and its workers) of one
    run in a fresh cache folder. CPU time does not depend on what else runs on the machine; wall time does."""
    cache_dir = work / f"cache-{workers}-{run}"
    command = [sys.executable, str(REPO / "cache.py"), "cassava", "--root", str(root), "--img-size", "256",
               "--workers", str(workers), "--cache-dir", str(cache_dir)]
    started, cpu = time.perf_counter(), cpu_seconds_of_children()
    result = subprocess.run(command, cwd=work, capture_output=True, text=True)
    seconds, cpu = time.perf_counter() - started, cpu_seconds_of_children() - cpu
    shutil.rmtree(cache_dir, ignore_errors=True)
    found = RATE.search(result.stdout)
    if result.returncode != 0 or found is None:
        raise SystemExit(f"cache.py failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return float(found.group(3)), seconds, cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--images", type=int, default=1600, help="JPEGs to generate (a multiple of 5)")
    p.add_argument("--width", type=int, default=800, help="their width in pixels")
    p.add_argument("--height", type=int, default=600, help="their height in pixels")
    p.add_argument("--workers", type=int, default=usable_cores(), help="worker processes of the parallel build")
    p.add_argument("--repeat", type=int, default=3, help="runs of each; the best is reported")
    p.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "cache-build-benchmark",
                   help="folder for the generated dataset (reused when complete) and the caches")
    args = p.parse_args()
    if min(args.width, args.height, args.images, args.repeat) < 1:
        p.error("--images, --width, --height and --repeat must be positive")
    size = (args.width, args.height)

    root = args.data / f"cassava-{args.images}-{size[0]}x{size[1]}"
    if not (root / "ready").exists():
        shutil.rmtree(root, ignore_errors=True)
        write_dataset(root, args.images, size, args.workers)
    samples = open_dataset("cassava", root)
    mean_bytes = np.mean([os.path.getsize(files[0]) for files in samples.image_files])
    print(f"machine: {machine_description()}")
    print(f"data: {len(samples)} JPEGs of {size[0]}x{size[1]}, {mean_bytes / 2**10:.0f} KiB each, in {root}")

    work = args.data / "work"
    work.mkdir(parents=True, exist_ok=True)
    runs: dict[int, list[tuple[float, float, float]]] = {0: [], args.workers: []}
    for run in range(args.repeat):
        for workers in runs:
            runs[workers].append(run_cache_py(root, work, workers, run))
            rate, seconds, cpu = runs[workers][-1]
            print(f"  run {run + 1}, --workers {workers}: {rate:.0f} images/s, command {seconds:.1f} s, "
                  f"CPU {cpu:.1f} s", flush=True)

    best = {workers: (max(r[0] for r in results), min(r[1] for r in results), min(r[2] for r in results))
            for workers, results in runs.items()}
    print(f"cache.py cassava --img-size 256, every image decoded once, best of {args.repeat} "
          f"(load average now {os.getloadavg()[0]:.1f}):")
    for workers, (rate, seconds, cpu) in best.items():
        print(f"  --workers {workers:<3} build {rate:6.0f} images/s   whole command {seconds:5.1f} s   "
              f"CPU {cpu / len(samples) * 1e3:4.1f} ms/image (all processes)")
    (rate0, seconds0, _), (rate_n, seconds_n, _) = best[0], best[args.workers]
    print(f"ratio --workers {args.workers} / --workers 0: build rate {rate_n / rate0:.2f}x, "
          f"whole command {seconds0 / seconds_n:.2f}x")


if __name__ == "__main__":
    main()
