"""Unpacking downloaded archives into exactly the layout the loaders read, and the marker of a complete dataset.

    staging = staging_folder(root)                        # <parent>/.<name>.unpacking, beside the root
    unpack(archive, [downloads / f for f in archive.part_files], staging / archive.into)
    ... open_dataset(name, staging) checks the layout ...
    finish(staging, root, marker)                         # marker written, then one rename into place

Zip archives (a multi-part one such as DR-2015's train.zip.001-005 read as one file, without joining the parts on
disk) and tar archives (.tar.gz) are unpacked member by member, every member's path checked to stay inside the
target; zip members are checked against their CRC-32 as they are read, gzip streams against theirs. Members under
an archive's `skip` prefixes are left out. Content wrapped in one extra folder is lifted to where the loader looks,
and an inner `X.zip` where the layout needs a folder `X/` is unpacked too. Everything lands in a staging folder
beside the root and is renamed into place in one step after the layout check, so an interrupted unpack never looks
complete; `.download-complete.json` in the root then says the dataset is complete, which a second run checks.
"""
from __future__ import annotations

import errno
import gzip
import io
import os
import shutil
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any

from tqdm import tqdm

from common import errors
from common.fileio import atomic_write_json, read_json
from data.sources import Archive

MARKER = ".download-complete.json"


class UnpackError(errors.DataError, ValueError):
    """An archive that cannot be unpacked (corrupt, truncated, unsafe member paths): names the archive."""


class JoinedParts(io.RawIOBase):
    """Read-only, seekable view of files read one after the other: a split archive's parts as one archive."""

    def __init__(self, paths: list[Path]):
        super().__init__()
        self.files = [open(path, "rb") for path in paths]
        self.starts, total = [], 0
        for path in paths:
            self.starts.append(total)
            total += path.stat().st_size
        self.size, self.position = total, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer: Any) -> int:
        if self.position >= self.size:
            return 0
        index = max(i for i, start in enumerate(self.starts) if start <= self.position)
        part = self.files[index]
        part.seek(self.position - self.starts[index])
        count = part.readinto(memoryview(buffer))
        self.position += count
        return count

    def close(self) -> None:
        for part in self.files:
            part.close()
        super().close()


def open_zip(paths: list[Path]) -> zipfile.ZipFile:
    if len(paths) == 1:
        return zipfile.ZipFile(paths[0])
    return zipfile.ZipFile(io.BufferedReader(JoinedParts(paths), buffer_size=1 << 20))


def safe_name(name: str) -> PurePosixPath | None:
    """A member's path relative to the target, or None for one that would leave it (absolute, `..`)."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or not path.parts:
        return None
    return path


def unpack(archive: Archive, paths: list[Path], target: Path) -> int:
    """Unpack the archive's file(s) into `target`, leaving out `archive.skip`; returns the number of files."""
    target.mkdir(parents=True, exist_ok=True)
    shown = paths[0].name if len(paths) == 1 else f"{paths[0].name}-{paths[-1].suffix[1:]}"
    try:
        if archive.file.endswith((".tar.gz", ".tgz", ".tar")):
            count = unpack_tar(paths[0], target, archive.skip, shown)
        else:
            with open_zip(paths) as zipped:
                count = unpack_zip(zipped, target, archive.skip, shown)
    except (zipfile.BadZipFile, tarfile.TarError, gzip.BadGzipFile, zlib.error, EOFError, ValueError) as error:
        raise UnpackError(f"{shown}: cannot be unpacked ({' '.join(str(error).split())}); the archive is "
                          f"corrupt or incomplete: delete {paths[0].parent / archive.file}* and rerun to fetch it "
                          f"again") from None
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        raise UnpackError(f"{shown}: no space left on the device while unpacking into {target}; free some space "
                          f"and rerun (the archives are kept)") from None
    expand_nested(target, archive.expect)
    lift_wrapper(target, archive.expect)
    return count


def skipped(path: PurePosixPath, skip: tuple[str, ...]) -> bool:
    return any(path.as_posix().startswith(prefix) for prefix in skip)


def unpack_zip(zipped: zipfile.ZipFile, target: Path, skip: tuple[str, ...], shown: str) -> int:
    members = [(info, safe_name(info.filename)) for info in zipped.infolist()]
    if unsafe := [info.filename for info, path in members if path is None]:
        raise ValueError(f"member path {unsafe[0]!r} leaves the target folder")
    files = [(info, path) for info, path in members if not info.is_dir() and not skipped(path, skip)]
    with tqdm(total=sum(info.file_size for info, _ in files), unit="B", unit_scale=True, unit_divisor=1024,
              desc=f"unpacking {shown}", disable=None) as bar:
        for info, path in files:
            out = target.joinpath(*path.parts)
            out.parent.mkdir(parents=True, exist_ok=True)
            with zipped.open(info) as source, open(out, "wb") as sink:  # zipfile checks the CRC-32 at the end
                shutil.copyfileobj(source, sink, 1 << 20)
            bar.update(info.file_size)
    return len(files)


def unpack_tar(path: Path, target: Path, skip: tuple[str, ...], shown: str) -> int:
    count = 0
    with open(path, "rb") as raw, tarfile.open(fileobj=raw, mode="r|*") as tar, tqdm(
            total=path.stat().st_size, unit="B", unit_scale=True, unit_divisor=1024, desc=f"unpacking {shown}",
            disable=None) as bar:
        for member in tar:  # streamed: one pass over the compressed file, each member checked as it comes
            name = safe_name(member.name)
            if name is None:
                raise ValueError(f"member path {member.name!r} leaves the target folder")
            if member.isfile() and not skipped(name, skip):  # links and devices are not unpacked
                out = target.joinpath(*name.parts)
                out.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as source, open(out, "wb") as sink:
                    shutil.copyfileobj(source, sink, 1 << 20)
                count += 1
            bar.update(raw.tell() - bar.n)
    return count


def expand_nested(target: Path, expect: tuple[str, ...]) -> None:
    """An inner `X.zip` where the layout needs a folder `X/` (sources that zip a folder inside the bundle)."""
    for name in expect:
        inner = target / f"{name}.zip"
        if not (target / name).exists() and inner.is_file():
            with zipfile.ZipFile(inner) as zipped:
                top = {PurePosixPath(member).parts[0] for member in zipped.namelist() if member.strip("/")}
                into = target if top == {name} else target / name
                unpack_zip(zipped, into, (), inner.name)
            inner.unlink()


def lift_wrapper(target: Path, expect: tuple[str, ...]) -> None:
    """Content that arrived inside one extra folder (`wrapper/train.csv`) moved up to where the loader looks."""
    entries = [entry for entry in target.iterdir() if entry.name != MARKER]
    if not expect or all((target / name).exists() for name in expect) or len(entries) != 1 or not entries[0].is_dir():
        return
    wrapper = entries[0]
    if all((wrapper / name).exists() for name in expect):
        moved = target / f".{wrapper.name}.lifting"
        wrapper.rename(moved)
        for entry in moved.iterdir():
            entry.rename(target / entry.name)
        moved.rmdir()


def staging_folder(root: Path) -> Path:
    """Where a dataset is unpacked before it is renamed into place: beside the root, on the same file system."""
    return root.parent / f".{root.name}.unpacking"


def read_marker(root: Path) -> dict | None:
    """The completion record of a dataset root, or None when there is none (or it cannot be read)."""
    try:
        marker = read_json(root / MARKER)
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def marker_problems(root: Path, marker: dict) -> list[str]:
    """The cheap check of a completed root: every top-level entry the marker lists is still there."""
    return [f"{root / name} is missing" for name in marker.get("entries", []) if not (root / name).exists()]


def finish(staging: Path, root: Path, marker: dict) -> None:
    """Write the marker into the checked staging folder, then rename it into place as the dataset root."""
    marker = {**marker, "entries": sorted(entry.name for entry in staging.iterdir() if entry.name != MARKER)}
    atomic_write_json(staging / MARKER, marker)
    if root.exists():
        root.rmdir()  # the caller checked it is an empty folder
    os.replace(staging, root)


def tree_size(folder: Path) -> tuple[int, int]:
    """(files, bytes) under `folder`."""
    files = size = 0
    for walked, _, names in os.walk(folder):
        for name in names:
            files += 1
            size += os.path.getsize(os.path.join(walked, name))
    return files, size
