"""Prepared image caches: every image decoded once, shrunk, and stored so that training reads it without decoding.

    python cache.py aptos --root datasets/aptos                  # train split + every evaluation split, 256 px
    python cache.py cct20 --root datasets/cct20 --img-size 224 256 --workers 16

    from cache import cache_settings, prepare, open_cache
    settings = cache_settings(256, "train")                      # short side 288, aspect ratio kept
    prepare(samples, indices["train"], settings)                 # builds once; later calls return at once
    reader = open_cache(samples, indices["train"], settings)     # CachedImages, or None when not prepared
    dataset = engine.SampleDataset(samples, indices["train"], transform, reader=reader)

Why: decoding the originals is the cost of a run. With 16 workers the paper's input path delivers about 210
images/s from 2048x1536 JPEGs, while an H200 trains ResNet-50 at 256 px at about 3,400 images/s. Here each image
is decoded once, and a training step reads a few hundred kilobytes of ready uint8 pixels from a memory-mapped file.

Two variants per split, from `cache_settings(img_size, kind)`:
  train  short side shrunk to round(1.125 * img_size) (288 for 256), aspect ratio kept, never enlarged: the
         random resized crop still sees the whole image, as it saw the original. Smaller images stay as they are.
  eval   transforms.eval_transform done at prepare time (short side to img_size, centre crop img_size), so the
         evaluation transform applied to a cached image changes nothing.

Layout: <cache_dir>/<dataset>/<kind>-<img_size>-n<count>-<key16>/ holds data.bin (the images back to back),
index.npy (one int64 row per image: sample index, byte offset, byte length, height, width, channels) and
manifest.json, written last. Format "npy" stores raw uint8 pixels (read by memory map, no decoding); "jpeg" stores
quality-95 JPEGs (4:4:4), several times smaller on disk, decoded at read time (RGB images only).

The key is a SHA-256 over the cached samples' source files (relative names, sizes, modification times; for
in-memory datasets the pixel bytes), the sample indices, the settings and the exact resize pipeline. A changed
file, split or setting gives another key, hence another folder: a stale cache is never opened. Old folders are
never used again and can be deleted.

Building: chunks of images go to a pool of worker processes; the main process appends each finished chunk, in
order, to data.bin.partial and index.partial and then records the counts in progress.json. An interrupted build
resumes after the last recorded chunk. At the end data.bin is renamed into place, index.npy is written, and
manifest.json last. An image that cannot be decoded is recorded, not dropped: reading it from the cache raises the
same BadImageError (naming the original file) as reading the original would, so --skip-bad-images works unchanged.
"""
from __future__ import annotations

import argparse
import fcntl
import hashlib
import io
import json
import os
from collections import deque
from collections.abc import Callable, Iterator
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timezone
from itertools import islice
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

import errors
import records
import splits
import transforms
from data import REGISTRY, BadImageError, DatasetError, Samples, get_spec, open_dataset
from data.cli import add_data_arguments, dataset_options

CACHE_VERSION = 1  # bump whenever the bytes a cache holds would change for the same inputs
TRAIN_MARGIN = 1.125  # train variant: short side = round(1.125 * img_size)
FORMATS = ("npy", "jpeg")
JPEG_QUALITY = 95
DEFAULT_CHUNK_SIZE = 64  # images per unit of work: the granularity of resuming
INDEX_COLUMNS = ("sample", "offset", "length", "height", "width", "channels")
ROW_BYTES = 8 * len(INDEX_COLUMNS)

MANIFEST, DATA, INDEX = "manifest.json", "data.bin", "index.npy"
DATA_PARTIAL, INDEX_PARTIAL, PROGRESS, LOCK = "data.bin.partial", "index.partial", "progress.json", ".lock"


class CacheError(errors.DataError, RuntimeError):
    """A cache folder holds a finished cache that cannot be used. The message names the file and how to rebuild."""

    def __init__(self, path: Path, problem: str, dataset: str):
        self.path = Path(path)
        super().__init__(f"{self.path}: {problem}. The cache in {self.path.parent} is corrupt; rebuild it with "
                         f"`python cache.py {dataset} --rebuild` (plus the flags it was built with) or "
                         f"prepare(..., rebuild=True), or delete that folder and prepare again")


# ---------------------------------------------------------------------------------------------------------------
# Settings, views and keys

def cache_settings(img_size: int, kind: str) -> dict:
    """The cache variant for training ("train": short side round(1.125 * img_size), aspect kept) or evaluation
    ("eval": short side img_size, centre crop img_size x img_size)."""
    if not isinstance(img_size, int) or isinstance(img_size, bool) or img_size < 1:
        raise ValueError(f"img_size must be a positive integer, got {img_size!r}")
    if kind == "train":
        return {"kind": "train", "img_size": img_size, "short_side": round(img_size * TRAIN_MARGIN), "crop": None}
    if kind == "eval":
        return {"kind": "eval", "img_size": img_size, "short_side": img_size, "crop": img_size}
    raise ValueError(f"cache kind must be 'train' or 'eval', got {kind!r}")


def check_settings(settings: dict) -> dict:
    expected = cache_settings(settings.get("img_size"), settings.get("kind"))
    if settings != expected:
        raise ValueError(f"cache settings {settings} are not what cache_settings() returns ({expected})")
    return settings


def shrink(image: np.ndarray, short_side: int) -> np.ndarray:
    """Shrink so that the short side is `short_side` (aspect ratio kept, antialiased); smaller images unchanged.

    Sizes are rounded as albumentations' SmallestMaxSize rounds them, and INTER_AREA is what transforms.py uses
    whenever an image shrinks.
    """
    height, width = image.shape[:2]
    if min(height, width) <= short_side:
        return image
    scale = short_side / min(height, width)
    new_height, new_width = max(1, round(height * scale)), max(1, round(width * scale))
    resized = cv2.resize(image, (new_width, new_height), interpolation=cv2.INTER_AREA)
    return resized.reshape(new_height, new_width, image.shape[2])


def make_view(settings: dict) -> Callable[[np.ndarray], np.ndarray]:
    """The function that turns a decoded image into what the cache stores."""
    if settings["kind"] == "eval":
        pipeline = transforms.eval_transform(settings["img_size"], settings["short_side"])
        return lambda image: pipeline(image=image)["image"]
    return lambda image: shrink(image, settings["short_side"])


def describe_view(settings: dict) -> str:
    """The exact resize pipeline, part of the key: a change in transforms.eval_transform rebuilds eval caches."""
    if settings["kind"] == "eval":
        return repr(transforms.eval_transform(settings["img_size"], settings["short_side"]))
    return f"shrink short side to {settings['short_side']} with cv2.INTER_AREA, never enlarge"


def source_fingerprint(samples: Samples, indices: np.ndarray) -> dict:
    """What the cached images are made from: file names (relative to the dataset root), sizes and modification
    times, or for in-memory datasets the pixel bytes themselves."""
    digest = hashlib.sha256()
    if samples.images is not None:
        for start in range(0, len(indices), 4096):  # bounded memory for CIFAR-sized arrays
            block = np.ascontiguousarray(samples.images[indices[start:start + 4096]])
            digest.update(f"{block.shape} {block.dtype}\n".encode())
            digest.update(block.tobytes())
        return {"source": "arrays", "sha256": digest.hexdigest()}
    files = 0
    for index in indices:
        digest.update(f"{index}\n".encode())
        for path in samples.image_files[index]:
            files += 1
            name = os.path.relpath(path, samples.root)
            try:
                stat = os.stat(path)
                digest.update(f"{name}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
            except OSError as error:  # missing or unreadable: still part of the key, reported when building
                digest.update(f"{name}\t{type(error).__name__}\n".encode())
    return {"source": "files", "files": files, "sha256": digest.hexdigest()}


def cache_key(samples: Samples, indices: np.ndarray, settings: dict) -> tuple[str, dict]:
    """(key, the material it hashes): everything that decides the bytes of the cache."""
    material = {"version": CACHE_VERSION, "dataset": samples.name, "channels": samples.num_channels,
                "count": len(indices), "indices_sha256": hashlib.sha256(indices.astype(np.int64).tobytes()).hexdigest(),
                "sources": source_fingerprint(samples, indices), "settings": settings,
                "view": describe_view(settings)}
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest(), material


def cache_folder(cache_dir: str | Path, dataset: str, settings: dict, key: str, count: int) -> Path:
    return Path(cache_dir) / dataset / f"{settings['kind']}-{settings['img_size']}-n{count}-{key[:16]}"


def check_indices(samples: Samples, indices) -> np.ndarray:
    indices = np.asarray(indices)
    if indices.ndim != 1 or len(indices) == 0 or not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(f"{samples.name}: indices must be a non-empty 1-D integer array, got shape "
                         f"{indices.shape} dtype {indices.dtype}")
    if indices.min() < 0 or indices.max() >= len(samples):
        raise ValueError(f"{samples.name}: indices must lie in [0, {len(samples)}), "
                         f"got {indices.min()}..{indices.max()}")
    if len(np.unique(indices)) != len(indices):
        raise ValueError(f"{samples.name}: indices contain duplicates")
    return indices.astype(np.int64)


# ---------------------------------------------------------------------------------------------------------------
# Reading a finished cache

class CachedImages:
    """A finished cache as an image reader: `cache(sample_index)` is the stored H x W x C uint8 image.

    Picklable for DataLoader workers: the memory map is opened lazily in each process, never pickled.
    """

    def __init__(self, folder: Path, manifest: dict, index: np.ndarray):
        self.folder, self.manifest, self.index = Path(folder), manifest, index
        self.format = manifest["format"]
        self.rows = {int(sample): row for row, sample in enumerate(index[:, 0])}
        self.bad = {int(entry["sample"]): entry for entry in manifest["bad_images"]}
        self._data: np.ndarray | None = None

    @property
    def info(self) -> dict:
        """For the run record: where the cache is and what it holds."""
        return {"path": str(self.folder), "key": self.manifest["key"], "format": self.format,
                "settings": self.manifest["settings"], "images": len(self.rows),
                "bytes": self.manifest["data_bytes"], "bad_images": len(self.bad)}

    def __len__(self) -> int:
        return len(self.rows)

    def __call__(self, sample_index: int) -> np.ndarray:
        row = self.rows.get(int(sample_index))
        if row is None:
            raise KeyError(f"{self.folder}: sample {sample_index} is not in this cache of {len(self.rows)} samples "
                           f"(a cache holds one split)")
        _, offset, length, height, width, channels = (int(v) for v in self.index[row])
        if length == 0:
            entry = self.bad[int(sample_index)]
            raise BadImageError(entry["path"], f"{entry['reason']} (found when the cache {self.folder} was built)")
        if self._data is None:
            self._data = np.memmap(self.folder / DATA, dtype=np.uint8, mode="r")
        payload = self._data[offset:offset + length]
        if self.format == "npy":
            return np.array(payload).reshape(height, width, channels)  # a writable copy, as a decoded file is
        image = cv2.imdecode(payload, cv2.IMREAD_COLOR)
        if image is None:
            raise CacheError(self.folder / DATA, f"the JPEG of sample {sample_index} at byte {offset} cannot be "
                                                 f"decoded", self.manifest["material"]["dataset"])
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_data": None}


def read_finished(folder: Path, key: str, dataset: str) -> tuple[dict, np.ndarray] | None:
    """(manifest, index) of the finished cache in `folder`; None when there is none or it was made from other
    inputs; CacheError when it is there but damaged."""
    manifest_path = folder / MANIFEST
    if not manifest_path.exists():
        return None
    try:
        manifest = records.read_json(manifest_path)
        fields = (manifest["key"], manifest["format"], manifest["count"], manifest["data_bytes"],
                  manifest["index_sha256"], manifest["settings"], manifest["bad_images"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as error:
        raise CacheError(manifest_path, f"manifest cannot be parsed ({type(error).__name__}: {error})",
                         dataset) from None
    stored_key, fmt, count, data_bytes, index_sha, _, _ = fields
    if stored_key != key:
        return None
    data_path, index_path = folder / DATA, folder / INDEX
    if not data_path.exists() or data_path.stat().st_size != data_bytes:
        size = data_path.stat().st_size if data_path.exists() else "missing"
        raise CacheError(data_path, f"data file is {size} bytes, the manifest says {data_bytes} "
                                    f"(truncated or replaced)", dataset)
    try:
        raw = index_path.read_bytes()
        index = np.load(io.BytesIO(raw), allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise CacheError(index_path, f"index cannot be read ({error})", dataset) from None
    if hashlib.sha256(raw).hexdigest() != index_sha or index.shape != (count, len(INDEX_COLUMNS)):
        raise CacheError(index_path, f"index does not match the manifest (shape {index.shape}, expected "
                                     f"({count}, {len(INDEX_COLUMNS)}) with the manifest's SHA-256)", dataset)
    if fmt not in FORMATS:
        raise CacheError(manifest_path, f"unknown format {fmt!r}", dataset)
    if count and int((index[:, 1] + index[:, 2]).max()) > data_bytes:
        raise CacheError(index_path, "index points past the end of the data file", dataset)
    return manifest, index


def open_cache(samples: Samples, indices, settings: dict, cache_dir: str | Path = "cache") -> CachedImages | None:
    """The finished cache of these samples and settings, or None when it was not prepared (or its sources changed
    since). Raises CacheError, naming the file, when it exists but is damaged."""
    indices = check_indices(samples, indices)
    settings = check_settings(settings)
    key, _ = cache_key(samples, indices, settings)
    folder = cache_folder(cache_dir, samples.name, settings, key, len(indices))
    found = read_finished(folder, key, samples.name)
    return None if found is None else CachedImages(folder, *found)


# ---------------------------------------------------------------------------------------------------------------
# Building

def encode(image: np.ndarray, fmt: str) -> bytes:
    if fmt == "npy":
        return np.ascontiguousarray(image).tobytes()
    # Full-resolution colour (4:4:4): the default 4:2:0 halves the chroma resolution, visible at 256 px.
    options = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY,
               cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
    ok, buffer = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), options)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {image.shape} image as JPEG")
    return buffer.tobytes()


def build_chunk(samples: Samples, indices: np.ndarray, settings: dict, fmt: str) -> list[tuple]:
    """[(payload bytes, (height, width, channels), None | (path, reason))] for each sample of the chunk."""
    view = make_view(settings)
    results = []
    for index in indices:
        try:
            image = samples.read_image(int(index))
        except BadImageError as error:
            results.append((b"", (0, 0, 0), (str(error.path), error.reason)))
            continue
        image = view(image)
        results.append((encode(image, fmt), image.shape, None))
    return results


_worker_samples: Samples | None = None


def _start_worker(samples: Samples) -> None:
    global _worker_samples
    _worker_samples = samples
    cv2.setNumThreads(1)  # the pool is the parallelism; OpenCV's own threads would oversubscribe the cores


def _build_chunk_in_worker(indices: np.ndarray, settings: dict, fmt: str) -> list[tuple]:
    return build_chunk(_worker_samples, indices, settings, fmt)


def built_chunks(samples: Samples, chunks: list[np.ndarray], settings: dict, fmt: str,
                 workers: int) -> Iterator[list[tuple]]:
    """Each chunk's results, in order. At most 2 x workers chunks are in flight, so memory stays bounded."""
    if workers == 0:
        for chunk in chunks:
            yield build_chunk(samples, chunk, settings, fmt)
        return
    # forkserver, not fork: forking a process whose BLAS/OpenMP threads are running can deadlock the children.
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"),
                               initializer=_start_worker, initargs=(samples,))
    try:
        remaining = iter(chunks)
        pending = deque(pool.submit(_build_chunk_in_worker, chunk, settings, fmt)
                        for chunk in islice(remaining, 2 * workers))
        while pending:
            results = pending.popleft().result()
            for chunk in islice(remaining, 1):
                pending.append(pool.submit(_build_chunk_in_worker, chunk, settings, fmt))
            yield results
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@contextmanager
def build_lock(folder: Path):
    """One builder per folder: other processes (e.g. the other ranks of a multi-GPU run) wait, then reuse it."""
    with open(folder / LOCK, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def clear(folder: Path) -> None:
    """Remove a cache's files, manifest first, so that no manifest ever points at missing data."""
    for name in (MANIFEST, INDEX, DATA, PROGRESS, INDEX_PARTIAL, DATA_PARTIAL):
        (folder / name).unlink(missing_ok=True)


def resume_point(folder: Path, key: str, fmt: str) -> tuple[int, int, list]:
    """(images done, bytes done, bad images so far) of an interrupted build of the same cache; zeros otherwise."""
    try:
        progress = records.read_json(folder / PROGRESS)
        done, done_bytes, bad = progress["images"], progress["bytes"], progress["bad_images"]
        same = progress["key"] == key and progress["format"] == fmt
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        return 0, 0, []
    sizes_ok = ((folder / DATA_PARTIAL).exists() and (folder / DATA_PARTIAL).stat().st_size >= done_bytes
                and (folder / INDEX_PARTIAL).exists() and (folder / INDEX_PARTIAL).stat().st_size >= done * ROW_BYTES)
    return (done, done_bytes, bad) if same and sizes_ok else (0, 0, [])


def build(samples: Samples, indices: np.ndarray, settings: dict, folder: Path, key: str, material: dict,
          fmt: str, workers: int, chunk_size: int, progress: bool) -> None:
    done, offset, bad = resume_point(folder, key, fmt)
    if done:
        print(f"{folder}: resuming an interrupted build at image {done} of {len(indices)}")
    else:
        clear(folder)
    chunks = [indices[start:start + chunk_size] for start in range(done, len(indices), chunk_size)]
    with tqdm(total=len(indices), initial=done, unit="img", disable=not progress,
              desc=f"cache {samples.name} {settings['kind']} {settings['img_size']}") as bar, \
            open(folder / DATA_PARTIAL, "ab") as data_file, open(folder / INDEX_PARTIAL, "ab") as index_file:
        data_file.truncate(offset)  # drop what a killed build wrote after its last recorded chunk
        index_file.truncate(done * ROW_BYTES)
        for chunk, results in zip(chunks, built_chunks(samples, chunks, settings, fmt, workers)):
            rows = []
            for sample, (payload, shape, problem) in zip(chunk, results):
                rows.append((int(sample), offset, len(payload), *shape))
                data_file.write(payload)
                offset += len(payload)
                if problem is not None:
                    bad.append({"sample": int(sample), "path": problem[0], "reason": problem[1]})
            index_file.write(np.asarray(rows, dtype=np.int64).tobytes())
            for handle in (data_file, index_file):
                handle.flush()
                os.fsync(handle.fileno())
            done += len(chunk)
            records.atomic_write_json(folder / PROGRESS, {"key": key, "format": fmt, "images": done,
                                                          "bytes": offset, "bad_images": bad})
            bar.update(len(chunk))

    index = np.fromfile(folder / INDEX_PARTIAL, dtype=np.int64).reshape(-1, len(INDEX_COLUMNS))
    if not np.array_equal(index[:, 0], indices) or (folder / DATA_PARTIAL).stat().st_size != offset:
        raise RuntimeError(f"{folder}: the built index or data does not add up; delete the folder and prepare again")
    buffer = io.BytesIO()
    np.save(buffer, index, allow_pickle=False)
    os.replace(folder / DATA_PARTIAL, folder / DATA)
    records.atomic_write_bytes(folder / INDEX, buffer.getvalue())
    records.atomic_write_json(folder / MANIFEST, {
        "key": key, "material": material, "format": fmt, "settings": settings, "count": len(indices),
        "data_bytes": offset, "index_sha256": hashlib.sha256(buffer.getvalue()).hexdigest(),
        "index_columns": list(INDEX_COLUMNS), "bad_images": bad,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    (folder / PROGRESS).unlink()
    (folder / INDEX_PARTIAL).unlink()
    if bad:
        print(f"{folder}: {len(bad)} image(s) could not be read and were recorded as bad, e.g. "
              f"{bad[0]['path']}: {bad[0]['reason']}")


def prepare(samples: Samples, indices, settings: dict, cache_dir: str | Path = "cache",
            workers: int | None = None, fmt: str = "npy", progress: bool = True, *, rebuild: bool = False,
            chunk_size: int = DEFAULT_CHUNK_SIZE) -> Path:
    """Build the cache of `samples[indices]` with `settings` (unless it is already built) and return its folder.

    workers: processes decoding in parallel (default: all cores; 0 builds in this process). rebuild: discard what
    is there, damaged or not. An existing cache of another format is rebuilt in `fmt`. Raises CacheError when a
    finished cache is there but damaged (rebuild=True replaces it).
    """
    indices = check_indices(samples, indices)
    settings = check_settings(settings)
    if fmt not in FORMATS:
        raise ValueError(f"cache format must be one of {FORMATS}, got {fmt!r}")
    if fmt == "jpeg" and samples.num_channels != 3:
        raise ValueError(f"{samples.name}: JPEG holds 3-channel images; {samples.num_channels}-channel images "
                         f"need the npy format")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    workers = (os.cpu_count() or 1) if workers is None else workers
    key, material = cache_key(samples, indices, settings)
    folder = cache_folder(cache_dir, samples.name, settings, key, len(indices))
    folder.mkdir(parents=True, exist_ok=True)
    with build_lock(folder):
        if rebuild:
            clear(folder)
        finished = read_finished(folder, key, samples.name)
        if finished is not None and finished[0]["format"] == fmt:
            return folder
        if finished is not None:
            clear(folder)
        build(samples, indices, settings, folder, key, material, fmt, workers, chunk_size, progress)
    return folder


# ---------------------------------------------------------------------------------------------------------------
# Command line

def reader_for(samples: Samples, indices, img_size: int, kind: str, mode: str = "auto",
               cache_dir: str | Path = "cache") -> CachedImages | None:
    """What train.py and evaluate.py read images through: the prepared cache ("auto": when present; "build":
    prepared first if missing), or None for the original files ("off", or no cache prepared)."""
    if mode == "off":
        return None
    settings = cache_settings(img_size, kind)
    if mode == "build":
        prepare(samples, indices, settings, cache_dir)
    return open_cache(samples, indices, settings, cache_dir)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("dataset", choices=sorted(REGISTRY), help="dataset from the registry in data/")
    add_data_arguments(p)  # the same flags as train.py, so the cache is built for the images train.py reads
    p.add_argument("--img-size", type=int, nargs="+", default=None, help="training input size(s) to prepare for (default: the dataset's, else 256)")
    p.add_argument("--splits", nargs="+", default=None, help="splits to cache: train gets the train variant, the others the eval variant (default: all)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="decoding processes (0: in this process)")
    p.add_argument("--format", default="npy", choices=FORMATS, help="npy: raw pixels, no decoding; jpeg: quality-95 JPEG, smaller on disk")
    p.add_argument("--cache-dir", default="cache", help="folder that holds the caches")
    p.add_argument("--rebuild", action="store_true", help="discard existing caches of these splits and build them anew")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    spec = get_spec(args.dataset)
    options = dataset_options(args.dataset, args)
    try:
        samples = open_dataset(args.dataset, args.root, **options)
        split_indices, split_path, _ = splits.resolve_split(samples, args.split_file, args.split_method,
                                                            args.split_seed)
    except (DatasetError, ValueError, FileExistsError) as error:
        raise SystemExit(f"cache.py: error: {error}") from None
    names = args.splits or list(split_indices)
    missing = [name for name in names if name not in split_indices]
    if missing:
        raise SystemExit(f"cache.py: error: {split_path} has no split {', '.join(missing)} "
                         f"(it has {', '.join(split_indices)})")
    for img_size in args.img_size or [spec.img_size or 256]:
        for name in names:
            settings = cache_settings(img_size, "train" if name == "train" else "eval")
            try:
                prepare(samples, split_indices[name], settings, args.cache_dir, args.workers, args.format,
                        rebuild=args.rebuild)
                info = open_cache(samples, split_indices[name], settings, args.cache_dir).info
            except CacheError as error:
                raise SystemExit(f"cache.py: error: {error}") from None
            print(f"{args.dataset} {name} ({settings['kind']} {img_size}): {info['images']} images, "
                  f"{info['bytes'] / 2**20:.1f} MiB, {info['bad_images']} bad -> {info['path']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
