"""Decoding every image up front, in parallel, so that a bad image stops a run before any compute, not mid-epoch.

    from imagecache.verify import verify_images, BadImagesError
    bad = verify_images(samples, indices, workers=8, memo_dir="cache")   # [BadImage(sample, path, reason), ...]
    if bad and not args.skip_bad_images:
        raise BadImagesError(samples.name, bad)                          # names every file and the way out

The loaders' own check (data/images.py `check_image_file`) reads a few bytes per file: it finds a missing, empty or
mislabelled file, not a truncated or corrupt one. This decodes every image, with cache_worker.py's worker processes.

Verified files are remembered in `<memo_dir>/<dataset>/verified-images.json`, by path, size and modification time,
with their outcome, so the decoding is paid once: a later call decodes only new or changed files. Building a cache
(cache.py) decodes every image anyway and fills the same memo, so training after `cache.py` verifies for free.
"""
from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from common import cli, errors, fileio
from data import Samples
from imagecache.worker import ChunkResult, WorkerPool, chunk_items, file_stats, verified_chunks

MEMO_NAME = "verified-images.json"
MEMO_VERSION = 1


@dataclass(frozen=True, order=True)
class BadImage:
    sample: int   # index into the Samples
    path: Path    # the file that cannot be read
    reason: str


class BadImagesError(errors.DataError):
    """Images that cannot be decoded, found before any compute. The message names every file and the way out."""

    def __init__(self, dataset: str, bad: list[BadImage], built: bool = False):
        self.dataset, self.bad = dataset, list(bad)
        listing = "\n".join(f"  - {image.path}: {image.reason}" for image in self.bad)
        recorded = " (the cache is built and records them)" if built else ""
        super().__init__(f"dataset '{dataset}': {len(self.bad)} image(s) cannot be decoded{recorded}:\n{listing}\n"
                         f"Way out: pass --skip-bad-images to leave them out (each is counted in the run record), "
                         f"or repair or re-download these files and run again")


class VerificationMemo:
    """Which samples' files decoded, and which did not, keyed by file paths and remembered with size and mtime."""

    def __init__(self, memo_dir: str | Path, dataset: str):
        self.path = Path(memo_dir) / dataset / MEMO_NAME

    @staticmethod
    def key(files: tuple[str, ...], channels: int) -> str:
        return f"{channels} channels: " + " | ".join(os.path.abspath(f) for f in files)

    def entry(self, files: tuple[str, ...] | None, channels: int, entry: ChunkResult) -> dict:
        """{key: what to remember} for one decoded sample; {} when there is nothing to remember (in memory, or a
        file that was missing: checking that again costs nothing)."""
        if files is None or entry.stats is None:
            return {}
        return {self.key(files, channels): {"stats": [list(s) for s in entry.stats], "problem": entry.problem}}

    def load(self) -> dict:
        try:
            memo = fileio.read_json(self.path)
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            return {}  # none yet, or damaged: verify again
        return memo.get("samples", {}) if isinstance(memo, dict) and memo.get("version") == MEMO_VERSION else {}

    def record(self, entries: dict) -> None:
        """Add `entries`, merging with what other processes recorded meanwhile."""
        if not entries:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(f".{MEMO_NAME}.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            fileio.atomic_write_json(self.path, {"version": MEMO_VERSION, "samples": {**self.load(), **entries}})


def verify_images(samples: Samples, indices, workers: int | None = None, memo_dir: str | Path = "cache",
                  progress: bool = True, pool: WorkerPool | None = None) -> list[BadImage]:
    """Decode every image of `samples[indices]` not verified before; return the bad ones, in sample order.

    workers: decoding processes (default: every usable core; 0 decodes in this process), or `pool`, running ones.
    memo_dir: where the memo lives (the cache folder, never inside the package). In-memory datasets have nothing to
    verify.
    """
    if samples.image_files is None:
        return []
    workers = len(pool) if pool is not None else cli.usable_cores() if workers is None else workers
    channels = samples.num_channels
    memo = VerificationMemo(memo_dir, samples.name)
    known = memo.load()
    bad, todo = [], []
    for sample in np.asarray(indices, dtype=np.int64):
        files = tuple(map(str, samples.image_files[sample]))
        remembered = known.get(memo.key(files, channels))
        stats = file_stats(files)
        if not isinstance(remembered, dict) or stats is None or remembered.get("stats") != [list(s) for s in stats]:
            todo.append(int(sample))  # new, changed, missing, or a memo entry this version cannot read
        elif remembered.get("problem"):
            bad.append(BadImage(int(sample), Path(remembered["problem"][0]), remembered["problem"][1]))
    chunks = chunk_items(samples, todo, workers)
    verified = {}
    with tqdm(total=len(todo), unit="img", disable=not progress or not todo,
              desc=f"verify {samples.name} images") as bar:
        try:
            for number, entries in verified_chunks(chunks, workers, channels,
                                                   lambda sample, files: samples.read_image(sample), pool):
                for (sample, files), entry in zip(chunks[number], entries):
                    if entry.problem is not None:
                        bad.append(BadImage(sample, Path(entry.problem[0]), entry.problem[1]))
                    verified.update(memo.entry(files, channels, entry))
                bar.update(len(entries))
        finally:
            memo.record(verified)  # an interrupted verification keeps what it found
    return sorted(bad)
