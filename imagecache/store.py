"""What a prepared image cache is: its settings, its key and folder, and reading a finished one.

cache.py is the command line and the public face (`cache.cache_settings`, `cache.open_cache`, ...); cache_build.py
builds caches. This module decides what a cache holds and where, and refuses a damaged one.

Two variants per split, from `cache_settings(img_size, kind)`:
  train  short side shrunk to round(1.125 * img_size) (288 for 256), aspect ratio kept, never enlarged: the
         random resized crop still sees the whole image, as it saw the original. Smaller images stay as they are.
  eval   transforms.eval_transform done at prepare time (short side to img_size, centre crop img_size), so the
         evaluation transform applied to a cached image changes nothing.

Layout: <cache_dir>/<dataset>/<kind>-<img_size>-n<count>-<key16>/ holds data.bin (the images back to back, in the
order of the indices), index.npy (one int64 row per image: sample index, byte offset, byte length, height, width,
channels) and manifest.json, written last. Format "npy" stores raw uint8 pixels (read by memory map, no decoding);
"jpeg" stores quality-95 JPEGs (4:4:4), several times smaller on disk, decoded at read time (RGB images only).

The key is a SHA-256 over the cached samples' source files (relative names, sizes, modification times; for
in-memory datasets the pixel bytes), the sample indices, the settings and the exact resize. A changed file, split or
setting gives another key, hence another folder: a stale cache is never opened. Old folders are never used again
and can be deleted.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import cv2
import numpy as np

from common import errors, fileio
from data import BadImageError, Samples
from imagecache.worker import describe_view

# Bump whenever the bytes a cache holds would change for the same inputs (2: views without albumentations).
CACHE_VERSION = 2
TRAIN_MARGIN = 1.125  # train variant: short side = round(1.125 * img_size)
FORMATS = ("npy", "jpeg")
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
# Settings, keys and folders

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
        manifest = fileio.read_json(manifest_path)
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
