"""What grid.py knows about a study: the manifest of planned runs, each run's state, per-run locks, the launch log.

The manifest (JSON lines, one planned run a line) holds each run's id, its train.py arguments, the folder they are
relative to and the configuration train.plan_runs resolved. A run's state comes from its record,
<out>/<run_id>.json, which train.py writes, and from its lock. grid.py keeps its own files under <out>/.grid/:

    locks/<run_id>.lock     who is running the run now (host, boot, process ids and their start times)
    log/<run_id>.jsonl      one line per launch and per end of the run (time, host, epoch it started from, outcome)
    output/<name>.log       what train.py printed

A lock is live while one of its processes is alive on this host in this boot; a lock of another host is live while
its holder keeps touching it (every HEARTBEAT_S seconds), and stale once it has not been touched for --stale-after
seconds. A stale lock (a crash, a reboot, a killed job) is broken under a short file lock, after checking again that
it is still the stale one, so two processes never both take a run.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import cli, errors, fileio, runrecord
from common.provenance import now
from training.recipe import PACKED as AXES

DEFAULT_MANIFEST = "grid.jsonl"
CONFIG_KEYS = ("dataset", "model", "out", "epochs", "img_size", "batch_size", *AXES)  # what grid.py reads
HEARTBEAT_S = 60
DEFAULT_STALE_AFTER_S = 600
UNREADABLE_GRACE_S = 30  # a lock nobody can read is broken once this old (locks are written whole, in one step)


@dataclass(frozen=True)
class Entry:
    """One planned run of the manifest."""
    run_id: str
    argv: tuple[str, ...]
    cwd: str
    config: dict

    @property
    def out(self) -> Path:
        return Path(self.cwd) / self.config["out"]

    @property
    def record_path(self) -> Path:
        return self.out / f"{self.run_id}.json"

    @property
    def dataset(self) -> str:
        return self.config["dataset"]

    @property
    def model(self) -> str:
        return self.config["model"]

    @property
    def axes(self) -> tuple:
        return tuple(self.config[axis] for axis in AXES)

    @property
    def group(self) -> tuple[str, ...]:
        """Runs that differ only in the four axes share a group: they can be packed, and halving ranks them."""
        return (self.cwd, *cli.without_flags(self.argv, AXES))


def write_manifest(path: str | Path, entries: list[Entry]) -> None:
    lines = [json.dumps({"run_id": e.run_id, "argv": list(e.argv), "cwd": e.cwd, "config": e.config},
                        sort_keys=True) for e in entries]
    fileio.atomic_write_text(path, "".join(line + "\n" for line in lines))


def read_manifest(path: str | Path) -> list[Entry]:
    """The manifest's entries, in order. Raises DataError naming the file and line when one is malformed."""
    path = Path(path)
    if not path.is_file():
        raise errors.UsageError(f"manifest {path} does not exist; write one with `grid.py plan ... --manifest {path}`")
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            entry = Entry(item["run_id"], tuple(item["argv"]), item["cwd"], item["config"])
            missing = [key for key in CONFIG_KEYS if key not in entry.config]
            if missing:
                raise KeyError(f"config lacks {', '.join(missing)}")
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise errors.DataError(f"{path}, line {number}: not a manifest line ({type(error).__name__}: {error}); "
                                   "write the manifest again with `grid.py plan`") from error
        entries.append(entry)
    if len({e.run_id for e in entries}) != len(entries):
        raise errors.DataError(f"{path}: a run id appears twice; write the manifest again with `grid.py plan`")
    return entries


def record_of(entry: Entry) -> runrecord.RunRecord | None:
    """The run's record, or None when it has none yet. Raises DataError when the file cannot be read."""
    return runrecord.read_raw(entry.record_path)


# --- locks ---------------------------------------------------------------------------------------------------------

def grid_folder(out: Path, kind: str, create: bool = True) -> Path:
    folder = out / ".grid" / kind
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    return folder


def lock_path(entry: Entry, create: bool = True) -> Path:
    return grid_folder(entry.out, "locks", create) / f"{entry.run_id}.lock"


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def process_start(pid: int) -> str | None:
    """The process's start time (clock ticks since boot), which tells a live process from a reused pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def lock_is_live(content: dict, modified: float, stale_after: float) -> bool:
    if content.get("host") == socket.gethostname():  # this host: alive if one of its processes is, since boot
        return content.get("boot") == boot_id() and any(process_start(pid) == start
                                                        for pid, start in content.get("processes", []))
    return time.time() - modified < stale_after


def live_holder(entry: Entry, stale_after: float = DEFAULT_STALE_AFTER_S) -> dict | None:
    """What the run's live lock says about its holder, or None when the run is not locked (or only stale-locked)."""
    path = lock_path(entry, create=False)  # looking must not write: status runs on read-only copies too
    try:
        content, modified = fileio.read_json(path), path.stat().st_mtime
    except (OSError, ValueError):  # no lock, or an unreadable one (acquire breaks it once UNREADABLE_GRACE_S old)
        return None
    return content if isinstance(content, dict) and lock_is_live(content, modified, stale_after) else None


def lock_content(token: str, pids: list[int]) -> dict:
    return {"host": socket.gethostname(), "boot": boot_id(), "token": token,
            "processes": [[pid, process_start(pid)] for pid in pids], "since": now()}


def acquire(entry: Entry, stale_after: float = DEFAULT_STALE_AFTER_S) -> str | None:
    """Take the run's lock for this process; returns the lock's token, or None when another live holder has it.
    The lock appears with its content in one step (a complete file hard-linked to the lock's name, which fails
    when the name exists), so no one ever sees it empty or half written."""
    path = lock_path(entry)
    token = uuid.uuid4().hex
    written = path.parent / f".{path.name}.{token}.tmp"
    written.write_text(json.dumps(lock_content(token, [os.getpid()])), encoding="utf-8")
    try:
        for _ in range(2):
            try:
                os.link(written, path)
                return token
            except FileExistsError:
                if not break_if_stale(path, stale_after):
                    return None
        return None
    finally:
        written.unlink(missing_ok=True)


def break_if_stale(path: Path, stale_after: float) -> bool:
    """Remove the lock at `path` if it is stale, checking again under a file lock so only the stale one goes.
    A lock that cannot be read (left by a writer killed half-way, or damaged) is stale once UNREADABLE_GRACE_S old."""
    with open(path.parent / ".breaking", "a") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        try:
            modified = path.stat().st_mtime
            content = fileio.read_json(path)
        except FileNotFoundError:
            return True
        except (OSError, ValueError):
            content = None
        if content is None or not isinstance(content, dict):
            if time.time() - modified < UNREADABLE_GRACE_S:
                return False
        elif lock_is_live(content, modified, stale_after):
            return False
        path.unlink(missing_ok=True)
        return True


def clear_stale_locks(entries: list[Entry], stale_after: float = DEFAULT_STALE_AFTER_S) -> None:
    """Remove the stale locks of finished runs: a grid.py killed just as its run completed leaves its lock behind,
    and nobody takes a finished run's lock again."""
    for entry in entries:
        path = lock_path(entry, create=False)
        if path.exists() and runrecord.is_finished(record_of(entry)):
            break_if_stale(path, stale_after)


def add_processes(entry: Entry, token: str, pids: list[int]) -> None:
    """Name the run's training processes in its lock, so the lock stays live while they are, whatever happens to us."""
    path = lock_path(entry)
    if fileio.read_json(path).get("token") == token:
        fileio.atomic_write_json(path, lock_content(token, [os.getpid(), *pids]))


def touch(entry: Entry) -> None:
    try:
        os.utime(lock_path(entry))
    except OSError:
        pass


def release(entry: Entry, token: str) -> None:
    path = lock_path(entry)
    try:
        if fileio.read_json(path).get("token") == token:
            path.unlink()
    except (OSError, json.JSONDecodeError):
        pass


# --- launch log ----------------------------------------------------------------------------------------------------

def log_event(entry: Entry, **fields: Any) -> None:
    """Append one event to the run's launch log (only the lock holder writes it, so lines never interleave)."""
    line = json.dumps({"time": now(), "host": socket.gethostname(), "pid": os.getpid(), **fields},
                      sort_keys=True)
    with open(grid_folder(entry.out, "log") / f"{entry.run_id}.jsonl", "a", encoding="utf-8") as f:
        f.write(line + "\n")


def read_log(entry: Entry) -> list[dict]:
    path = entry.out / ".grid" / "log" / f"{entry.run_id}.jsonl"
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by a kill or a full disk: the others still count
            continue
    return events
