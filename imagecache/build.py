"""Building a prepared image cache: every image decoded once, in parallel, written in order, resumable.

    from imagecache.build import prepare
    folder = prepare(samples, indices, cache_settings(256, "train"), "cache", workers=16)

The samples are cut into chunks. Worker processes (cache_worker.py) decode a chunk, shrink its images and report
their byte lengths; the main process gives each chunk its offset in data.bin.partial (the lengths of the chunks
before it) and the worker writes its bytes there. No pixels pass through the main process, so it only keeps the
books: it appends each chunk's index rows, in order, once the chunk is written, and every CHECKPOINT_SECONDS a
background thread flushes both files to disk and then records the images done in progress.json (so the disk writes
while the workers decode). A killed build resumes after the last recorded image (bytes written after it are
discarded). At the end data.bin is renamed into place, index.npy is
written, and manifest.json last. The bytes are the same for any number of workers and any chunk size.

An image that cannot be decoded is recorded, not dropped: reading it from the cache raises the same BadImageError
(naming the original file) as reading the original would, so --skip-bad-images works unchanged. Since the build
decodes every image, it also fills the verification memo of data/verify.py: `verify_images` afterwards decodes
nothing again.
"""
from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from common import cli, errors, fileio, provenance
from data import Samples
from imagecache.store import (
    DATA,
    DATA_PARTIAL,
    FORMATS,
    INDEX,
    INDEX_COLUMNS,
    INDEX_PARTIAL,
    LOCK,
    MANIFEST,
    PROGRESS,
    ROW_BYTES,
    CachedImages,
    cache_folder,
    cache_key,
    check_indices,
    check_settings,
    read_finished,
)
from imagecache.verify import VerificationMemo
from imagecache.worker import (
    TASKS_PER_WORKER,
    ChunkResult,
    WorkerPool,
    chunk_items,
    make_view,
    work_chunk,
    worker_pool,
    write_payloads,
)

CHECKPOINT_SECONDS = 2.0  # how much work a killed build may lose; each checkpoint flushes the files to disk


class UnsupportedFormatError(errors.UsageError, ValueError):
    """A cache format that cannot hold these images."""


@dataclass
class BuildResult:
    """What `ensure_built` did: the cache's folder, and how many images it decoded in how long (0: already built),
    and the finished cache opened (read once here rather than again by the caller)."""
    folder: Path
    images: CachedImages | None = None
    images_built: int = 0
    seconds: float = 0.0
    workers: int = 0
    bad_images: list[dict] = field(default_factory=list)  # of the whole cache, as in its manifest

    @property
    def rate(self) -> float:
        return self.images_built / self.seconds if self.seconds else 0.0


def prepare(samples: Samples, indices, settings: dict, cache_dir: str | Path = "cache",
            workers: int | None = None, fmt: str | None = None, progress: bool = True, *, rebuild: bool = False,
            chunk_size: int | None = None) -> Path:
    """Build the cache of `samples[indices]` with `settings` (unless it is already built) and return its folder.

    workers: processes decoding in parallel (default: every usable core; 0 builds in this process). rebuild:
    discard what is there, damaged or not. fmt: None takes a finished cache of either format and builds npy when
    there is none; "npy" or "jpeg" rebuilds an existing cache of the other format. Raises
    CacheError when a finished cache is there but damaged (rebuild=True replaces it).
    """
    return ensure_built(samples, indices, settings, cache_dir, workers, fmt, progress, rebuild=rebuild,
                        chunk_size=chunk_size).folder


def ensure_built(samples: Samples, indices, settings: dict, cache_dir: str | Path = "cache",
                 workers: int | None = None, fmt: str | None = None, progress: bool = True, *, rebuild: bool = False,
                 chunk_size: int | None = None, pool: WorkerPool | None = None) -> BuildResult:
    """`prepare`, telling what it did (for cache.py's report). `pool`: running workers to use instead of starting
    `workers` new ones."""
    indices = check_indices(samples, indices)
    settings = check_settings(settings)
    if fmt not in (None, *FORMATS):
        raise UnsupportedFormatError(f"cache format must be one of {FORMATS}, got {fmt!r}")
    if fmt == "jpeg" and samples.num_channels != 3:
        raise UnsupportedFormatError(f"{samples.name}: JPEG (--format jpeg) holds 3-channel images; "
                                     f"{samples.num_channels}-channel images need the npy format")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    if workers is not None and workers < 0:
        raise ValueError(f"workers must be 0 or more, got {workers}")
    workers = len(pool) if pool is not None else cli.usable_cores() if workers is None else workers
    if samples.image_files is None:
        workers, pool = 0, None  # images already in memory: nothing to decode, nothing worth sending elsewhere
    key, material = cache_key(samples, indices, settings)
    folder = cache_folder(cache_dir, samples.name, settings, key, len(indices))
    folder.mkdir(parents=True, exist_ok=True)
    with build_lock(folder):
        if rebuild:
            clear(folder)
        finished = read_finished(folder, key, samples.name)
        if finished is not None and fmt in (None, finished[0]["format"]):
            return BuildResult(folder, CachedImages(folder, *finished), bad_images=finished[0]["bad_images"])
        if finished is not None:
            clear(folder)
        fmt = fmt or "npy"
        started = time.perf_counter()
        built, bad = build(samples, indices, settings, folder, key, material, fmt, workers, chunk_size, progress,
                           VerificationMemo(cache_dir, samples.name), pool)
        result = BuildResult(folder, CachedImages(folder, *read_finished(folder, key, samples.name)), built,
                             time.perf_counter() - started, workers, bad)
    if progress and built:
        print(f"{folder}: built {built} images in {result.seconds:.1f} s ({result.rate:.0f} images/s, "
              f"{'in this process' if workers == 0 else f'{workers} worker processes'})")
    return result


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
        progress = fileio.read_json(folder / PROGRESS)
        done, done_bytes, bad = progress["images"], progress["bytes"], progress["bad_images"]
        same = progress["key"] == key and progress["format"] == fmt
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        return 0, 0, []
    sizes_ok = ((folder / DATA_PARTIAL).exists() and (folder / DATA_PARTIAL).stat().st_size >= done_bytes
                and (folder / INDEX_PARTIAL).exists() and (folder / INDEX_PARTIAL).stat().st_size >= done * ROW_BYTES)
    return (done, done_bytes, bad) if same and sizes_ok else (0, 0, [])


def build(samples: Samples, indices: np.ndarray, settings: dict, folder: Path, key: str, material: dict,
          fmt: str, workers: int, chunk_size: int | None, progress: bool, memo: VerificationMemo,
          pool: WorkerPool | None = None) -> tuple[int, list[dict]]:
    """Build (or finish building) the cache in `folder`; returns (images decoded, bad images of the whole cache)."""
    done, offset, bad = resume_point(folder, key, fmt)
    if done:
        print(f"{folder}: resuming an interrupted build at image {done} of {len(indices)}")
    else:
        clear(folder)
    remaining = len(indices) - done
    chunks = chunk_items(samples, indices[done:], workers, chunk_size)
    workers = min(workers, len(chunks)) if pool is None else workers
    verified = {}
    data_fd = os.open(folder / DATA_PARTIAL, os.O_WRONLY | os.O_CREAT, 0o666)
    try:
        with open(folder / INDEX_PARTIAL, "ab") as index_file, \
                tqdm(total=len(indices), initial=done, unit="img", disable=not progress,
                     desc=f"cache {samples.name} {settings['kind']} {settings['img_size']}") as bar:
            os.ftruncate(data_fd, offset)  # drop what a killed build wrote after its last recorded image
            index_file.truncate(done * ROW_BYTES)
            if workers == 0:
                written = written_here(samples, chunks, settings, fmt, data_fd, offset)
            else:
                written = written_by_workers(chunks, settings, fmt, samples.num_channels, folder / DATA_PARTIAL,
                                             offset, workers, pool)
            # closing: the workers stop when the build does, also on an error
            with closing(written), Checkpoints(folder, data_fd, index_file) as checkpoints:
                for items, entries, offset in written:
                    rows = []
                    for (sample, files), entry in zip(items, entries):
                        rows.append((sample, offset, entry.length, *entry.shape))
                        offset += entry.length
                        if entry.problem is not None:
                            bad.append({"sample": sample, "path": entry.problem[0], "reason": entry.problem[1]})
                        verified.update(memo.entry(files, samples.num_channels, entry))
                    index_file.write(np.asarray(rows, dtype=np.int64).tobytes())
                    done += len(items)
                    bar.update(len(items))
                    checkpoints.when_due({"key": key, "format": fmt, "images": done, "bytes": offset,
                                          "bad_images": bad})
            index_file.flush()
            os.fsync(index_file.fileno())
        os.fsync(data_fd)
    finally:
        os.close(data_fd)
        memo.record(verified)  # what was decoded is verified, even when the build stopped half way
    finish(folder, indices, offset, {"key": key, "material": material, "format": fmt, "settings": settings,
                                     "bad_images": bad})
    return remaining, bad


def finish(folder: Path, indices: np.ndarray, data_bytes: int, manifest: dict) -> None:
    """Check what was built, then put data.bin, index.npy and (last) manifest.json into place."""
    index = np.fromfile(folder / INDEX_PARTIAL, dtype=np.int64).reshape(-1, len(INDEX_COLUMNS))
    if not np.array_equal(index[:, 0], indices) or (folder / DATA_PARTIAL).stat().st_size != data_bytes:
        raise RuntimeError(f"{folder}: the built index or data does not add up; delete the folder and prepare again")
    buffer = io.BytesIO()
    np.save(buffer, index, allow_pickle=False)
    os.replace(folder / DATA_PARTIAL, folder / DATA)
    fileio.atomic_write_bytes(folder / INDEX, buffer.getvalue())
    fileio.atomic_write_json(folder / MANIFEST, {
        **manifest, "count": len(indices), "data_bytes": data_bytes,
        "index_sha256": hashlib.sha256(buffer.getvalue()).hexdigest(), "index_columns": list(INDEX_COLUMNS),
        "created_at": provenance.now()})
    (folder / PROGRESS).unlink(missing_ok=True)
    (folder / INDEX_PARTIAL).unlink()


def checkpoint(folder: Path, data_fd: int, index_fd: int, progress: dict) -> None:
    """Make the images done so far survive a kill or a crash: both files to disk first, then the record of them."""
    os.fsync(index_fd)
    os.fsync(data_fd)
    fileio.atomic_write_json(folder / PROGRESS, progress)


class Checkpoints:
    """A checkpoint every CHECKPOINT_SECONDS, flushed to disk by a background thread: meanwhile this process keeps
    handing out work, so the workers decode while the disk writes (one checkpoint at a time)."""

    def __init__(self, folder: Path, data_fd: int, index_file):
        self.folder, self.data_fd, self.index_file = folder, data_fd, index_file
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="cache-checkpoint")
        self.pending: Future | None = None
        self.last = time.monotonic()

    def when_due(self, progress: dict) -> None:
        if time.monotonic() - self.last < CHECKPOINT_SECONDS:
            return
        self.wait()
        self.index_file.flush()  # into the kernel: the thread's fsync covers everything written before it
        snapshot = {**progress, "bad_images": list(progress["bad_images"])}
        self.pending = self.thread.submit(checkpoint, self.folder, self.data_fd, self.index_file.fileno(), snapshot)
        self.last = time.monotonic()

    def wait(self) -> None:
        if self.pending is not None:
            self.pending.result()  # raises the thread's error, if any
            self.pending = None

    def __enter__(self) -> Checkpoints:
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.wait()  # a checkpoint under way completes even when the build stopped: it records valid work
        finally:
            self.thread.shutdown()


Written = Iterator[tuple[list, list[ChunkResult], int]]  # (chunk items, their entries, the chunk's offset), in order


def written_here(samples: Samples, chunks: list[list], settings: dict, fmt: str, data_fd: int,
                 offset: int) -> Written:
    """Each chunk decoded and written by this process (workers=0), through samples.read_image."""
    view = make_view(settings)
    for items in chunks:
        payloads, entries = work_chunk(items, lambda sample, files: samples.read_image(sample), view, fmt)
        start, offset = offset, write_payloads(data_fd, offset, payloads)
        yield items, entries, start


def written_by_workers(chunks: list[list], settings: dict, fmt: str, channels: int, data_path: Path, offset: int,
                       workers: int, pool: WorkerPool | None) -> Written:
    """Each chunk decoded by a worker process, which writes it once told its offset; yielded in order once
    written. At most 2 x TASKS_PER_WORKER chunks per worker are built and not yet written (bounded memory)."""
    window = 2 * TASKS_PER_WORKER * workers
    entries: dict[int, list[ChunkResult]] = {}
    holder, starts, written = {}, {}, set()
    to_send = to_place = to_yield = 0
    with worker_pool(workers, pool) as pool:
        pool.configure(settings, fmt, channels, data_path)
        while to_yield < len(chunks):
            while (to_send < len(chunks) and to_send - to_yield < window
                   and (worker := pool.idle_worker()) is not None):
                pool.send(worker, ("build", to_send, chunks[to_send]))
                holder[to_send] = worker
                to_send += 1
            _, message = pool.receive()
            if message[0] == "built":
                entries[message[1]] = message[2]
                while to_place in entries and to_place not in starts:  # offsets go out in order
                    starts[to_place] = offset
                    pool.send(holder.pop(to_place), ("write", to_place, offset))
                    offset += sum(entry.length for entry in entries[to_place])
                    to_place += 1
            else:
                written.add(message[1])
                while to_yield in written:
                    yield chunks[to_yield], entries.pop(to_yield), starts.pop(to_yield)
                    written.remove(to_yield)
                    to_yield += 1
