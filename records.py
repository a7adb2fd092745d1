"""Writing records safely and saying how a number was made.

Every file the toolkit writes (run records, split files, predictions, statistics) goes through the atomic
writers here: the bytes go to a temporary file in the same folder, are flushed to disk, and replace the target
with one rename. A process killed at any instant leaves either the old file or the new one, never half of one.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

FINISHED = ("complete", "diverged")  # a run in these states trains no more: train.py and grid.py skip it
PACKED = ("optimizer", "schedule", "lr", "wd")  # train.py's flags that take several values: every combination is a run
SCHEMA_VERSION = 1  # of run and evaluation records; analyze.py skips records of another version

# Libraries whose versions go into every record, so that a number can be traced to how it was made.
TRACKED_PACKAGES = ("torch", "torchvision", "timm", "accelerate", "albumentations", "numpy", "scikit-learn", "scipy",
                    "opencv-python-headless")


_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old content or the new one, never a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the permissions open() would
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """JSON with sorted keys and a trailing newline; NaN/inf are written as null (strict JSON)."""
    atomic_write_text(path, json.dumps(_finite_or_none(obj), indent=2, sort_keys=True, allow_nan=False) + "\n")


def atomic_save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """np.savez_compressed, atomically (np.savez would append '.npz' to a temporary name, so go via bytes)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def write_predictions(path: str | os.PathLike, ids, labels, scores, thresholds, task: str) -> None:
    """Per-sample predictions of one split (see metrics.py for what `scores` holds). `thresholds` are the
    per-class thresholds or ordinal cut points chosen on the selection split, or None."""
    atomic_save_npz(path, ids=np.asarray(ids), labels=np.asarray(labels), scores=np.asarray(scores),
                    thresholds=np.asarray([] if thresholds is None else thresholds, dtype=np.float64),
                    task=np.asarray(task))


def read_predictions(path: str | os.PathLike) -> dict[str, Any]:
    """What write_predictions wrote: ids, labels, scores, thresholds (None when unused) and task.

    Raises ValueError naming the file when it cannot be read or lacks an array.
    """
    try:
        with np.load(path, allow_pickle=False) as saved:
            arrays = {key: saved[key] for key in saved.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:  # missing, truncated, not an .npz
        raise ValueError(f"predictions file {path} cannot be read ({type(error).__name__}: {error})") from error
    missing = [key for key in ("ids", "labels", "scores", "thresholds", "task") if key not in arrays]
    if missing:
        raise ValueError(f"predictions file {path} has no {', '.join(repr(k) for k in missing)} array")
    thresholds = arrays["thresholds"]
    return {"ids": arrays["ids"], "labels": arrays["labels"], "scores": arrays["scores"],
            "thresholds": thresholds if thresholds.size else None, "task": str(arrays["task"])}


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit(repo: str | os.PathLike | None = None) -> str | None:
    """The commit of the toolkit's checkout, with '-dirty' when it has uncommitted changes; None outside git."""
    repo = Path(repo) if repo else Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")


def provenance() -> dict[str, Any]:
    """What every record carries: library versions, git commit and the command line."""
    return {"versions": library_versions(), "git_commit": git_commit(), "command": " ".join(sys.argv)}


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def runtime(device: Any, num_processes: int = 1) -> dict[str, Any]:
    """Where and how a number was computed. CPU results depend on the thread count (OMP_NUM_THREADS, which
    `accelerate launch` sets differently for --cpu and --num_processes 1), so it is part of every record."""
    import torch  # here, not at the top: the analysis reads records without importing torch

    import errors
    device = torch.device(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return {"device": str(device), "device_name": name, "num_processes": num_processes,
            "torch_threads": torch.get_num_threads(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "cpu_count": os.cpu_count(), "hostname": platform.node(), "launcher": errors.launcher_command()}


def path_as_given(path: str | os.PathLike | None) -> dict[str, str] | None:
    """A path as the user gave it and as it resolved, so that a record read from elsewhere still finds it."""
    return None if path is None else {"given": str(path), "resolved": str(Path(path).resolve())}


def one_line(error: BaseException, limit: int = 600) -> str:
    """An exception as one line of a record: its type and message, whitespace collapsed, at most `limit` chars."""
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _finite_or_none(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        value = float(obj)
        return value if np.isfinite(value) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return _finite_or_none(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    return obj
