"""What a cache-building process does: decode images, turn them into the stored view, write them where told.

imagecache/build.py and imagecache/verify.py hand out chunks of samples. A chunk is worked either in the calling process
(workers=0) or by `WorkerPool`, a set of `python -m imagecache.worker FD` processes that import only numpy, OpenCV and
the dataset registry: not torch, albumentations or the script that started them, so a worker is ready in a fraction of a
second however heavy that script is (multiprocessing's spawn and forkserver re-run the main script in every worker).

A worker never sends pixels back. For a "build" message it decodes its chunk, keeps the stored bytes and answers
with their lengths; the main process, which alone knows where each chunk starts (the lengths of all chunks before
it), answers "write" with the offset, and the worker writes the bytes into the data file there itself. So the main
process only does bookkeeping, and the bytes are the same whatever the number of workers.

Messages (pickled tuples over one socket per worker):
    main -> worker  ("setup", settings | None, fmt, channels, data_path | None)     before each job
                    ("build" | "verify", chunk, [(sample, (file, ...)), ...])
                    ("write", chunk, offset)
                    None                                                            stop
    worker -> main  ("built", chunk, [ChunkResult, ...]) / ("verified", chunk, [ChunkResult, ...]) / ("written", chunk)
                    ("failed", chunk, traceback text)
"""
from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from common import errors
from data import Samples
from data.images import BadImageError, read_image_files, resize_center_crop, shrink

JPEG_QUALITY = 95
TOOLKIT = Path(__file__).resolve().parents[1]  # the folder holding the packages, for `python -m imagecache.worker`
MAX_CHUNK_SIZE = 64  # images per unit of work, at most
TASKS_PER_WORKER = 2  # chunks sent to a worker ahead of its answers: one being decoded, one waiting


class ChunkResult(NamedTuple):
    """One sample of a chunk, as a worker reports it."""
    length: int                                   # bytes stored (0 for an unreadable image)
    shape: tuple[int, int, int]                   # of the stored image; (0, 0, 0) when unreadable
    problem: tuple[str, str] | None               # (file, reason) when the image cannot be read
    stats: tuple[tuple[int, int], ...] | None     # (size, mtime_ns) of each file before it was read; None in memory


# ---------------------------------------------------------------------------------------------------------------
# Views: what a cache stores of a decoded image

def make_view(settings: dict) -> Callable[[np.ndarray], np.ndarray]:
    """The function that turns a decoded image into what the cache stores (see cache_store.cache_settings)."""
    if settings["kind"] == "eval":
        return lambda image: resize_center_crop(image, settings["short_side"], settings["crop"])
    return lambda image: shrink(image, settings["short_side"])


def describe_view(settings: dict) -> str:
    """The exact resize, part of the cache key (change it, or CACHE_VERSION, whenever the stored pixels change)."""
    if settings["kind"] == "eval":
        return (f"short side to {settings['short_side']} (long side truncated; INTER_AREA when shrinking, else "
                f"INTER_LINEAR), centre crop {settings['crop']} (offset rounded half to even)")
    return f"shrink short side to {settings['short_side']} with cv2.INTER_AREA, never enlarge"


def encode(image: np.ndarray, fmt: str) -> np.ndarray | bytes:
    """What the data file holds for one image: its raw pixels ("npy") or a quality-95 4:4:4 JPEG ("jpeg")."""
    if fmt == "npy":
        return np.ascontiguousarray(image)
    # Full-resolution colour (4:4:4): the default 4:2:0 halves the chroma resolution, visible at 256 px.
    options = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY,
               cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
    ok, buffer = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), options)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {image.shape} image as JPEG")
    return buffer.tobytes()


# ---------------------------------------------------------------------------------------------------------------
# One chunk

def chunk_items(samples: Samples, indices, workers: int,
                chunk_size: int | None = None) -> list[list[tuple[int, tuple[str, ...] | None]]]:
    """The work of decoding `indices`, cut into chunks of (sample, its files) (files None for in-memory images).
    Default size: at least 4 chunks per worker, so that all are busy to the end, and at most MAX_CHUNK_SIZE."""
    items = [(int(i), None if samples.image_files is None else tuple(map(str, samples.image_files[i])))
             for i in indices]
    chunk_size = chunk_size or max(1, min(MAX_CHUNK_SIZE, math.ceil(len(items) / (4 * max(1, workers)))))
    return [items[start:start + chunk_size] for start in range(0, len(items), chunk_size)]


def file_stats(files: tuple[str, ...] | None) -> tuple[tuple[int, int], ...] | None:
    """(size, mtime_ns) of each file, taken before reading it: what the verification memo remembers."""
    if files is None:
        return None
    try:
        return tuple((stat.st_size, stat.st_mtime_ns) for stat in map(os.stat, files))
    except OSError:
        return None  # missing: the read reports it


def work_chunk(items: list[tuple[int, tuple[str, ...] | None]], read: Callable[[int, tuple | None], np.ndarray],
               view: Callable[[np.ndarray], np.ndarray] | None, fmt: str) -> tuple[list, list[ChunkResult]]:
    """Decode every sample of a chunk: (payloads, entries). With view=None the images are only decoded (verified)
    and no payloads are kept."""
    payloads, entries = [], []
    for sample, files in items:
        stats = file_stats(files)
        try:
            image = read(sample, files)
        except BadImageError as error:
            entries.append(ChunkResult(0, (0, 0, 0), (str(error.path), error.reason), stats))
            continue
        if view is None:
            entries.append(ChunkResult(0, (0, 0, 0), None, stats))
            continue
        stored = view(image)
        payload = encode(stored, fmt)
        payloads.append(payload)
        entries.append(ChunkResult(len(memoryview(payload).cast("B")), stored.shape, None, stats))
    return payloads, entries


def write_payloads(fd: int, offset: int, payloads: Iterable) -> int:
    """Write the payloads back to back at `offset` of the open file `fd`; returns the offset after them."""
    for payload in payloads:
        view = memoryview(payload).cast("B")
        while view:
            written = os.pwrite(fd, view, offset)
            view, offset = view[written:], offset + written
    return offset


def read_files(channels: int) -> Callable[[int, tuple], np.ndarray]:
    return lambda sample, files: read_image_files(tuple(Path(f) for f in files), channels)


# ---------------------------------------------------------------------------------------------------------------
# The worker process

def serve(conn: Connection) -> None:
    """Answer the main process's messages until it says stop (or goes away)."""
    cv2.setNumThreads(1)  # the workers are the parallelism; OpenCV's own threads would oversubscribe the cores
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the main process, which stops the workers
    view, read, fmt, data_fd = None, None, "npy", None
    held: dict[int, list] = {}  # chunk -> payloads built but not yet written
    inbox: deque = deque()
    while True:
        try:
            while not inbox or conn.poll(0):
                inbox.append(conn.recv())
        except EOFError:  # the main process is gone (killed): nothing left to do
            return
        if None in inbox:  # stop at once, even with work queued (the build was interrupted)
            return
        # Writes first: the main process records chunks in order, and a built chunk waits only for its offset.
        message = next((m for m in inbox if m[0] == "write"), inbox[0])
        inbox.remove(message)
        if message[0] == "setup":  # a new job: its view, format, channels and data file
            _, settings, fmt, channels, data_path = message
            view, read = (make_view(settings) if settings else None), read_files(channels)
            if data_fd is not None:
                os.close(data_fd)
            data_fd = os.open(data_path, os.O_WRONLY) if data_path else None
            continue
        kind, chunk = message[:2]
        try:
            if kind == "write":
                write_payloads(data_fd, message[2], held.pop(chunk))
                conn.send(("written", chunk))
            else:
                payloads, entries = work_chunk(message[2], read, view if kind == "build" else None, fmt)
                if kind == "build":
                    held[chunk] = payloads
                conn.send(("built" if kind == "build" else "verified", chunk, entries))
        except Exception:  # a bug, not a bad image: hand the traceback to the main process, which raises it
            conn.send(("failed", chunk, traceback.format_exc()))
            return


class WorkerFailed(RuntimeError):
    """A worker raised an unexpected error: a bug, reported with the worker's traceback."""


class WorkerLost(errors.ExpectedError):
    """A worker process ended without a word (killed, e.g. by the out-of-memory killer): the build resumes."""


class WorkerPool:
    """`workers` processes running `serve`. `configure` them for a job, `send` to one, `receive` from whichever
    answers. One pool can serve several jobs in turn (cache.py starts it once for all its caches)."""

    def __init__(self, workers: int):
        self.connections: list[Connection] = []
        self.processes: list[subprocess.Popen] = []
        self.load = [0] * workers  # tasks sent and not yet answered, per worker
        path = os.pathsep.join(filter(None, [str(TOOLKIT), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PYTHONPATH": path}
        try:
            for _ in range(workers):
                ours, theirs = socket.socketpair()
                self.processes.append(subprocess.Popen([sys.executable, "-m", "imagecache.worker",
                                                        str(theirs.fileno())], pass_fds=(theirs.fileno(),), env=env))
                theirs.close()
                self.connections.append(Connection(ours.detach()))
        except BaseException:
            self.close()
            raise

    def __len__(self) -> int:
        return len(self.connections)

    def configure(self, settings: dict | None, fmt: str, channels: int, data_path: Path | None) -> None:
        """Set every worker up for the next job: the view to store (None: only decode), the format, the images'
        channels and the data file to write into."""
        for connection in self.connections:
            connection.send(("setup", settings, fmt, channels, str(data_path) if data_path else None))

    def idle_worker(self) -> int | None:
        """The least busy worker that can take another task, or None when all have enough queued."""
        worker = min(range(len(self.load)), key=self.load.__getitem__)
        return worker if self.load[worker] < TASKS_PER_WORKER else None

    def send(self, worker: int, message: tuple) -> None:
        if message[0] in ("build", "verify"):
            self.load[worker] += 1
        self.connections[worker].send(message)

    def receive(self) -> tuple[int, tuple]:
        """(worker, message) of the next answer from any worker. Raises WorkerFailed (a worker's error) or
        WorkerLost (a worker gone)."""
        ready = wait(self.connections)
        worker = self.connections.index(ready[0])
        try:
            message = self.connections[worker].recv()
        except (EOFError, OSError):
            status = self.processes[worker].wait()
            how = f"killed by {signal.Signals(-status).name}" if status < 0 else f"exit status {status}"
            raise WorkerLost(f"cache worker {worker} ended unexpectedly ({how}; out of memory? fewer --workers "
                             f"need less); run again to resume the build where it stopped") from None
        if message[0] == "failed":
            raise WorkerFailed(f"cache worker {worker} failed on chunk {message[1]}:\n{message[2]}")
        if message[0] in ("built", "verified"):
            self.load[worker] -= 1
        return worker, message

    def close(self) -> None:
        for connection in self.connections:
            try:
                connection.send(None)
            except OSError:
                pass
            connection.close()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextmanager
def worker_pool(workers: int, pool: WorkerPool | None = None) -> Iterator[WorkerPool]:
    """`pool` when given (left running), else a pool of `workers` processes for the duration of the block."""
    if pool is not None:
        yield pool
        return
    with WorkerPool(workers) as own:
        yield own


def verified_chunks(chunks: list[list], workers: int, channels: int, read: Callable[[int, tuple | None], np.ndarray],
                    pool: WorkerPool | None = None) -> Iterator[tuple[int, list[ChunkResult]]]:
    """(chunk number, entries) of every chunk decoded without keeping anything, in the order they finish.
    `read` is used in this process (workers=0 and no pool); worker processes read the files themselves."""
    if pool is None and workers == 0:
        for number, items in enumerate(chunks):
            yield number, work_chunk(items, read, None, "npy")[1]
        return
    with worker_pool(min(workers, len(chunks)), pool) as pool:
        pool.configure(None, "npy", channels, None)
        queued = deque(enumerate(chunks))
        for _ in range(len(chunks)):
            while queued and (worker := pool.idle_worker()) is not None:
                number, items = queued.popleft()
                pool.send(worker, ("verify", number, items))
            _, (_, number, entries) = pool.receive()
            yield number, entries


if __name__ == "__main__":
    from imagecache.worker import serve as serve_here  # this module by its name, so that its classes pickle as such
    serve_here(Connection(int(sys.argv[1])))
