"""Download a dataset from its source, resumably, and unpack it into exactly the layout its loader reads.

    python -m data.download aptos                          # Kaggle competition -> datasets/aptos
    python -m data.download melanoma                       # the paper's 512x512 re-packagings (2020 and 2019)
    python -m data.download melanoma --release official    # the 2020 competition's own files instead
    python -m data.download cct20 --mirror URL             # LILA's archives from another mirror of the same files
    python -m data.download all                            # every dataset, each under datasets/<name>

Before any byte is fetched: Kaggle credentials (when a Kaggle file is still missing), the real sizes (HTTP
Content-Length, Kaggle's download response) and the space they need, archive plus unpacked, against the free
space. Archives go to `<downloads>/<name>/` (default: `downloads/` beside the root); an interrupted download
resumes on the next run. Then the published checksum where the source has one, unpacking into a staging folder
beside the root, the loader's own layout check, the sample count as train.py prints it, and one rename into place;
`.download-complete.json` in the root marks it complete, so running the command again does nothing. Archives
already in the downloads folder are used as they are (fetched earlier, or by hand from the page the error names).
"""
from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import cli, errors, provenance
from data import DatasetError, Samples, describe, open_dataset, problem_list
from data.fetch import (
    DownloadError,
    Need,
    Remote,
    check_space,
    head,
    http_download,
    kaggle_api,
    kaggle_complete,
    kaggle_download,
    kaggle_sizes,
    partial_path,
    require_kaggle_credentials,
    torchvision_download,
)
from data.sources import HTTPS, KAGGLE_KINDS, NO_DOWNLOAD, SOURCES, TORCHVISION, Archive, Release, help_table, size_text
from data.sources import release as find_release
from data.split_methods import PAPER_SPLIT_FILES
from data.unpack import MARKER, finish, marker_problems, read_marker, staging_folder, tree_size, unpack

# Where torchvision's downloader leaves the unpacked content, relative to the root it is given.
TORCHVISION_FOLDER = {"EuroSAT": "eurosat", "CIFAR10": ""}
NEXT_STEP = {
    "hpa": lambda root: (f"next: the paper's split is Park's {PAPER_SPLIT_FILES['hpa'][0]} from "
                         f"{PAPER_SPLIT_FILES['hpa'][1]}; import it once: python splits.py hpa --root {root} "
                         f"--from {PAPER_SPLIT_FILES['hpa'][0]}"),
}


def say(dataset: str, text: str) -> None:
    print(f"{dataset}: {text}", flush=True)


def archive_done(archive: Archive, path: Path) -> bool:
    """Whether one downloaded file is complete: renamed from .partial (HTTPS), or without Kaggle's marker."""
    if archive.kind in KAGGLE_KINDS:
        return kaggle_complete(path)
    return path.is_file()


def already_complete(chosen: Release, root: Path) -> bool:
    """True (and says so) when the root holds the complete dataset; refuses a root that holds something else."""
    dataset, marker = chosen.dataset, read_marker(root)
    if marker is not None:
        if problems := marker_problems(root, marker):
            raise DownloadError(f"{root / MARKER} says the download completed, but {problems[0]}; move {root} away "
                                f"and rerun to download it again")
        if marker.get("release", chosen.name) != chosen.name:
            raise DownloadError(f"{root} holds the {marker['release']} release of {dataset}, not {chosen.name}; "
                                f"pass another --root for it")
        say(dataset, f"complete at {root} ({marker.get('described', '')}), nothing to do")
        return True
    if not root.exists() or not any(root.iterdir()):
        return False
    try:
        samples = open_dataset(dataset, root)
    except DatasetError as error:
        raise DownloadError(f"{root} already exists and is not a complete {dataset} ({len(error.problems)} "
                            f"problem(s), first: {error.problems[0]}); move it away or pass another --root") from None
    say(dataset, f"{root} already holds a complete copy (layout checked: {describe(samples)}), nothing to do")
    return True


@dataclass
class Plan:
    """What the sources say before anything is fetched: every part's size (local when complete, else the source's
    real size, else the documented one), each missing HTTPS archive's Remote, and the Kaggle session if needed."""
    sizes: dict[str, int] = field(default_factory=dict)
    remotes: dict[str, Remote] = field(default_factory=dict)
    kaggle: tuple[Any, Any, str] | None = None  # (the kaggle API module, an authenticated KaggleApi, credentials)


def plan(chosen: Release, downloads: Path, mirror: str | None) -> Plan:
    """Ask each source about the parts still missing; Kaggle credentials are checked before Kaggle is called."""
    found = Plan()
    for archive in chosen.archives:
        missing = [part for part in archive.part_files if not archive_done(archive, downloads / part)]
        for part in archive.part_files:
            documented = archive.size // archive.parts
            found.sizes[part] = documented if part in missing else (downloads / part).stat().st_size
        if not missing:
            continue
        if archive.kind == HTTPS:
            found.remotes[archive.file] = remote = head(archive.url(mirror))
            found.sizes[archive.file] = remote.size or archive.size
        elif archive.kind in KAGGLE_KINDS:
            credentials = require_kaggle_credentials(archive, downloads)
            found.kaggle = found.kaggle or (*kaggle_api(), credentials)
            found.sizes.update(kaggle_sizes(*found.kaggle[:2], archive, missing, credentials))
    return found


def space_needed(chosen: Release, downloads: Path, root: Path, sizes: dict[str, int]) -> list[Need]:
    """What will be written: the rest of each archive, and its content unpacked (scaled by the documented ratio)."""
    fetch = unpacked = 0
    for archive in chosen.archives:
        total = sum(sizes[part] for part in archive.part_files)
        for part in archive.part_files:
            path = downloads / part
            if not archive_done(archive, path):
                have = (path if archive.kind in KAGGLE_KINDS else partial_path(path))
                fetch += max(0, sizes[part] - (have.stat().st_size if have.is_file() else 0))
        unpacked += int(total * archive.ratio)
    return [Need(downloads, fetch, "download"), Need(root.parent, unpacked, "unpacked")]


def fetch(chosen: Release, downloads: Path, mirror: str | None, found: Plan, retries: int) -> dict[str, dict]:
    """Download every missing part; returns what was verified of each archive, for the marker."""
    verified = {}
    for archive in chosen.archives:
        for part in archive.part_files:
            path = downloads / part
            if archive.kind == TORCHVISION or archive_done(archive, path):
                continue
            where = archive.url(mirror) if archive.kind == HTTPS else f"{archive.kind} {archive.ref}"
            say(chosen.dataset, f"downloading {part} from {where}")
            if archive.kind == HTTPS:
                verified[archive.file] = http_download(archive.url(mirror), path, found.remotes[archive.file], retries)
            else:
                _, api, credentials = found.kaggle
                kaggle_download(api, archive, part, downloads, credentials)
    return verified


def unpack_all(chosen: Release, downloads: Path, staging: Path) -> None:
    for archive in chosen.archives:
        if archive.kind == TORCHVISION:  # torchvision downloads, checks its MD5 and unpacks; we move the result
            say(chosen.dataset, f"torchvision.datasets.{archive.ref}(download=True) into {downloads}")
            torchvision_download(archive, downloads)
            source = downloads / TORCHVISION_FOLDER[archive.ref]
            (staging / archive.into).mkdir(parents=True, exist_ok=True)
            for name in archive.expect:
                if not (source / name).exists():
                    raise DownloadError(f"torchvision.datasets.{archive.ref} left no {source / name}; delete "
                                        f"{downloads} and rerun")
                shutil.move(str(source / name), str(staging / archive.into / name))
            continue
        paths = [downloads / part for part in archive.part_files]
        say(chosen.dataset, f"unpacking {archive.file} into {staging / archive.into}")
        unpack(archive, paths, staging / archive.into)


def unpack_and_check(chosen: Release, downloads: Path, staging: Path) -> Samples:
    """Unpack every archive into the staging folder and open it with the dataset's loader (its layout check)."""
    if staging.exists():
        shutil.rmtree(staging)  # an earlier unpack that was interrupted or failed the check: start it again
    try:
        unpack_all(chosen, downloads, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    try:
        return open_dataset(chosen.dataset, staging)
    except DatasetError as error:  # a wrong archive: keep what it unpacked into, to look at
        raise DownloadError(f"{chosen.dataset}: the archives in {downloads} do not unpack into the layout the loader "
                            f"reads; what they hold is in {staging} (removed by the next run):\n"
                            f"{problem_list(error.problems)}") from None


def put_in_place(chosen: Release, samples: Samples, staging: Path, root: Path, downloads: Path,
                 verified: dict[str, dict]) -> int:
    """Write the marker (archives, checksums, counts) and rename the staging folder to the root; returns its bytes."""
    files, size = tree_size(staging)
    archives = [{"file": archive.file, "parts": list(archive.part_files), **verified.get(archive.file, {}),
                 "bytes": sum((downloads / part).stat().st_size for part in archive.part_files
                              if (downloads / part).is_file())} for archive in chosen.archives]
    finish(staging, root, {"dataset": chosen.dataset, "release": chosen.name, "source": chosen.title,
                           "archives": archives, "samples": len(samples), "described": describe(samples),
                           "files": files, "bytes": size, "finished": provenance.now()})
    return size


def get(chosen: Release, root: Path, downloads_root: Path, mirror: str | None = None, keep_archives: bool = False,
        retries: int = 3) -> None:
    """Download, verify, unpack, check and put in place one dataset; nothing when it is complete already."""
    dataset = chosen.dataset
    if already_complete(chosen, root):
        return
    downloads = downloads_root / dataset
    say(dataset, f"{chosen.title} -> {root}")
    found = plan(chosen, downloads, mirror)
    needs = space_needed(chosen, downloads, root, found.sizes)
    free = check_space(needs, dataset)
    say(dataset, f"needs {size_text(sum(n.size for n in needs))} ({needs[0].what} {size_text(needs[0].size)}, "
                 f"{needs[1].what} {size_text(needs[1].size)}), {free}; archives in {downloads}")
    verified = fetch(chosen, downloads, mirror, found, retries)
    staging = staging_folder(root)
    samples = unpack_and_check(chosen, downloads, staging)
    size = put_in_place(chosen, samples, staging, root, downloads, verified)
    say(dataset, f"layout checked: {describe(samples)}")
    if keep_archives:
        say(dataset, f"complete at {root} ({size_text(size)}); archives kept in {downloads}")
    else:
        shutil.rmtree(downloads, ignore_errors=True)
        if downloads.parent.is_dir() and not any(downloads.parent.iterdir()):
            downloads.parent.rmdir()  # the last dataset's archives were the only ones there
        say(dataset, f"complete at {root} ({size_text(size)}); removed the archives in {downloads} "
                     f"(--keep-archives keeps them)")
    if chosen.note and chosen.name != next(iter(SOURCES[dataset])):
        say(dataset, f"note: {chosen.note}")
    if dataset in NEXT_STEP:
        say(dataset, NEXT_STEP[dataset](root))


def check_all(releases: list[Release], roots: dict[str, Path], downloads_root: Path, keep_archives: bool) -> None:
    """For `all`, before the first download: Kaggle credentials if any Kaggle file is missing, and the documented
    space of every incomplete dataset at once."""
    todo = [chosen for chosen in releases  # a root that holds something already is checked by get(), not here
            if not roots[chosen.dataset].exists() or not any(roots[chosen.dataset].iterdir())]
    for chosen in todo:
        for archive in chosen.archives:
            downloads = downloads_root / chosen.dataset
            if archive.kind in KAGGLE_KINDS and not all(archive_done(archive, downloads / part)
                                                        for part in archive.part_files):
                require_kaggle_credentials(archive, downloads)
    if todo:
        archives = [chosen.size for chosen in todo]
        peak = sum(chosen.unpacked for chosen in todo) + (sum(archives) if keep_archives else max(archives))
        check_space([Need(downloads_root, peak, "all datasets (documented sizes)")], "all")


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__ + "\n" + help_table())
    parser.prog = "python -m data.download"
    parser.add_argument("name", choices=[*SOURCES, *NO_DOWNLOAD, "all"], help="the dataset, or all of them")
    parser.add_argument("--root", type=Path, default=None,
                        help="the dataset's root (default datasets/NAME); for 'all' the folder that holds one root "
                             "per dataset (default datasets)")
    parser.add_argument("--downloads", type=Path, default=None,
                        help="where archives are downloaded, one folder per dataset (default: downloads/ beside "
                             "the root); a partial download there resumes")
    parser.add_argument("--release", default=None, choices=list(SOURCES["melanoma"]),
                        help="melanoma (also with all): 'repackaged' (the paper's 512x512 re-packagings of 2020 and "
                             "2019, the default) or 'official' (the 2020 competition's files)")
    parser.add_argument("--mirror", default=None,
                        help="fetch the HTTPS archives (CCT-20's) from this URL + '/<file name>' instead of the "
                             "source's: LILA's AWS or Azure copies, or a local mirror")
    parser.add_argument("--keep-archives", action="store_true",
                        help="keep the downloaded archives once the dataset is complete (default: remove them)")
    parser.add_argument("--retries", type=cli.count, default=3,
                        help="how many times a cut HTTPS download is resumed before giving up")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    names = [name for name in SOURCES] if args.name == "all" else [args.name]
    if args.release is not None and args.name not in ("melanoma", "all"):
        raise errors.UsageError(f"--release {args.release}: only melanoma has releases to choose from "
                                f"({', '.join(SOURCES['melanoma'])})")
    if args.name in NO_DOWNLOAD:
        say(args.name, NO_DOWNLOAD[args.name])
        return 0
    if args.name == "all":
        parent = args.root or Path("datasets")
        roots = {name: parent / name for name in names}
        say("digits", NO_DOWNLOAD["digits"])
    else:
        roots = {args.name: args.root or Path("datasets") / args.name}
    downloads_root = args.downloads or next(iter(roots.values())).parent / "downloads"
    releases = [find_release(name, args.release if name == "melanoma" else None) for name in names]
    if args.name == "all":
        check_all(releases, roots, downloads_root, args.keep_archives)
    for chosen in releases:
        get(chosen, roots[chosen.dataset], downloads_root, args.mirror, args.keep_archives, args.retries)
    return 0


if __name__ == "__main__":
    errors.run_main("data.download", lambda: main(sys.argv[1:]))
