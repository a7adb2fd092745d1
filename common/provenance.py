"""Saying how a number was made: library versions, the toolkit's commit, the command line, the device and threads,
and paths as given and as resolved. Every record carries these (run records, evaluations, FID records).
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from common import errors

# Libraries whose versions go into every record, so that a number can be traced to how it was made.
TRACKED_PACKAGES = ("torch", "torchvision", "timm", "accelerate", "albumentations", "numpy", "scikit-learn", "scipy",
                    "opencv-python-headless")


def now() -> str:
    """The time of a record's events: UTC, ISO 8601 to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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
    repo = Path(repo) if repo else Path(__file__).resolve().parent.parent
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

    device = torch.device(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return {"device": str(device), "device_name": name, "num_processes": num_processes,
            "torch_threads": torch.get_num_threads(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "cpu_count": os.cpu_count(), "hostname": platform.node(), "launcher": errors.launcher_command()}


def path_as_given(path: str | os.PathLike | None) -> dict[str, str] | None:
    """A path as the user gave it and as it resolved, so that a record read from elsewhere still finds it."""
    return None if path is None else {"given": str(path), "resolved": str(Path(path).resolve())}
