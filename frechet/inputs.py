"""What fid.py measures: a dataset, an image folder or a statistics file, subsampled as the paper does.

    source = fidinputs.open_input("aptos", data_root=Path("datasets"), subset=3662, seed=0)   # an ImageSet
    other = fidinputs.open_input("aptos", data_root=Path("datasets"), subset=1831, seed=1,
                                 exclude=source)           # disjoint from it: a within-dataset baseline

A dataset name is read from the registry's layout (--root, default <data-root>/<name>); --split all draws from all
its labelled images, as the paper subsampled the dataset, or from one split of splits.py. An image folder is every
.jpg/.jpeg/.png/.bmp/.webp/.tif under it, at any depth (other files are counted and skipped). A statistics file
(.npz with mu and sigma) is used as it is. Images are drawn without replacement with a seed; a set with fewer
images than asked is an error unless allowed. Every input carries a record of exactly which images it holds.
"""
from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from common import errors
from common.fileio import sha256_file
from data import REGISTRY, open_dataset
from data.images import BadImageError, read_rgb
from data.splits import resolve_split
from frechet import DEFAULT_SUBSET
from frechet.distance import FeatureStats, load_stats
from frechet.inception import INPUT_SIZE, resize_for_inception

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


class InputError(errors.DataError, ValueError):
    """An input whose images cannot be used: none, too few for a covariance, none in the asked split."""


@dataclass
class FolderImages:
    """The image files under a folder, read as RGB (a picklable reader for DataLoader workers)."""
    files: list[Path]

    def read(self, index: int) -> np.ndarray:
        return read_rgb(self.files[index])


@dataclass
class ImageSet:
    """Images to measure: `read(i)` gives item i as H x W x 3 uint8 RGB; `indices` are the items used."""
    label: str
    read: Callable[[int], np.ndarray]
    indices: np.ndarray
    record: dict[str, Any]


@dataclass
class StatsFile:
    label: str
    stats: FeatureStats
    info: dict[str, Any] | None
    record: dict[str, Any]


class ResizedImages(Dataset):
    """Item i: (the image resized for Inception, "") or, for an image that cannot be read, (zeros, the problem).

    A DataLoader worker cannot re-raise an error that takes more than a message (BadImageError) as itself, so the
    problem travels as text and compute_statistics raises it in the main process (see `raise_problems`).
    """

    def __init__(self, images: ImageSet):
        self.images = images

    def __len__(self) -> int:
        return len(self.images.indices)

    def __getitem__(self, position: int) -> tuple[torch.Tensor, str]:
        index = int(self.images.indices[position])
        try:
            image = self.images.read(index)
        except BadImageError as error:
            return torch.zeros(3, INPUT_SIZE, INPUT_SIZE), str(error)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"{self.images.label}: item {index} is not an H x W x 3 uint8 RGB image "
                             f"(shape {image.shape}, dtype {image.dtype})")
        return resize_for_inception(image), ""


def raise_problems(problems: list[str]) -> None:
    """An InputError naming the first unreadable image of a batch, if there is one."""
    bad = [problem for problem in problems if problem]
    if bad:
        raise InputError(f"{bad[0]}" + (f" (and {len(bad) - 1} more in the same batch)" if len(bad) > 1 else "")
                         + "; FID needs every image it draws: remove or replace the file")


def choose_subset(pool: np.ndarray, size: int, seed: int, allow_smaller: bool, what: str) -> np.ndarray:
    """`size` items of `pool` drawn at random without replacement (seeded), ascending; size 0 means all."""
    pool = np.sort(np.asarray(pool, dtype=np.int64))
    if size < 0 or size == 1:
        raise errors.UsageError(f"--subset must be 0 (all images) or at least 2 (a covariance needs two), got {size}")
    if len(pool) < 2:
        raise InputError(f"{what} has {len(pool)} image(s); a covariance needs at least 2")
    if size == 0 or size == len(pool):
        return pool
    if len(pool) < size:
        if allow_smaller:
            return pool
        raise errors.UsageError(
            f"{what} has {len(pool)} images, fewer than --subset {size}. FID depends on the number of images, so "
            f"sets are compared at one size: pass --allow-smaller to use all {len(pool)} (the record says so), or a "
            f"smaller --subset for every set")
    return np.sort(np.random.default_rng(seed).choice(pool, size=size, replace=False))


def _sha256_lines(lines: list[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def list_image_folder(folder: Path) -> tuple[list[Path], list[Path]]:
    """(image files, other files) under `folder` at any depth, sorted."""
    files = sorted(path for path in folder.rglob("*") if path.is_file())
    images = [path for path in files if path.suffix.lower() in IMAGE_SUFFIXES]
    return images, [path for path in files if path.suffix.lower() not in IMAGE_SUFFIXES]


def _without(pool: np.ndarray, exclude: ImageSet | None) -> np.ndarray:
    return pool if exclude is None else np.setdiff1d(pool, exclude.indices)


def dataset_input(name: str, root: Path, split: str, split_file: Path | None, subset: int, seed: int,
                  allow_smaller: bool, exclude: ImageSet | None = None) -> ImageSet:
    samples = open_dataset(name, root)
    record: dict[str, Any] = {"kind": "dataset", "name": name, "root": str(root), "root_resolved": str(root.resolve()),
                              "split": split}
    if split == "all":
        pool = np.arange(len(samples))
    else:
        splits, path, sha = resolve_split(samples, split_file=split_file)
        if split not in splits:
            raise InputError(f"dataset '{name}' has no images in split '{split}'; its splits: {', '.join(splits)}")
        pool = splits[split]
        record.update(split_file=str(path), split_sha256=sha)
    available = _without(np.asarray(pool), exclude)
    what = f"dataset '{name}' (split {split}) at {root}" + (" without the images of A" if exclude else "")
    chosen = choose_subset(available, subset, seed, allow_smaller, what)
    record.update(num_available=len(available), num_used=len(chosen), seed=seed, disjoint_from_a=exclude is not None,
                  ids_sha256=_sha256_lines([samples.ids[i] for i in chosen]))
    return ImageSet(name, samples.read_image, chosen, record)


def folder_input(folder: Path, subset: int, seed: int, allow_smaller: bool,
                 exclude: ImageSet | None = None) -> ImageSet:
    images, others = list_image_folder(folder)
    if others:
        kinds = sorted({path.suffix.lower() or "(no suffix)" for path in others})
        print(f"{folder}: skipped {len(others)} files that are not images ({', '.join(kinds[:8])})", file=sys.stderr)
    available = _without(np.arange(len(images)), exclude)
    what = f"image folder {folder}" + (" without the images of A" if exclude else "")
    chosen = choose_subset(available, subset, seed, allow_smaller, what)
    relative = [images[i].relative_to(folder).as_posix() for i in chosen]
    record = {"kind": "folder", "path": str(folder), "path_resolved": str(folder.resolve()),
              "num_available": len(available), "num_used": len(chosen), "seed": seed,
              "disjoint_from_a": exclude is not None, "skipped_non_images": len(others),
              "files_sha256": _sha256_lines(relative)}
    resolved = folder.resolve()
    label = f"{resolved.parent.name}_{resolved.name}" if resolved.parent.name else resolved.name  # train: eurosat_train
    return ImageSet(label, FolderImages(images).read, chosen, record)


def stats_input(path: Path) -> StatsFile:
    stats, info = load_stats(path)
    record = {"kind": "stats", "path": str(path), "path_resolved": str(path.resolve()), "sha256": sha256_file(path),
              "num_images": stats.num_images, "info": info}
    return StatsFile(path.stem, stats, info, record)


def open_input(text: str, *, root: Path | None = None, data_root: Path = Path("datasets"), split: str = "all",
               split_file: Path | None = None, subset: int = DEFAULT_SUBSET, seed: int = 0,
               allow_smaller: bool = False, exclude: ImageSet | None = None) -> ImageSet | StatsFile:
    """A command-line input: a statistics file (.npz), a registry dataset name, or an image folder. With `exclude`
    (the ImageSet of A), the images are drawn from those of the same set that A did not use."""
    path = Path(text)
    if exclude is not None and not _same_images(text, root or data_root / text, exclude):
        raise errors.UsageError("--disjoint draws B from the images A did not use, so A and B must be the same "
                                "dataset (at the same root) or the same image folder")
    if path.suffix == ".npz":
        return stats_input(path)
    if text in REGISTRY:
        return dataset_input(text, root or data_root / text, split, split_file, subset, seed, allow_smaller, exclude)
    if path.is_dir():
        return folder_input(path, subset, seed, allow_smaller, exclude)
    raise errors.UsageError(f"input '{text}' is neither a dataset name ({', '.join(REGISTRY)}), an image folder, "
                            f"nor a statistics file (.npz)")


def _same_images(text: str, dataset_root: Path, a: ImageSet) -> bool:
    """Whether input `text` names the images A was drawn from (the same dataset root, or the same folder)."""
    if a.record["kind"] == "dataset":
        return text == a.record["name"] and str(dataset_root.resolve()) == a.record["root_resolved"]
    return Path(text).is_dir() and str(Path(text).resolve()) == a.record["path_resolved"]


def input_identity(record: dict[str, Any]) -> dict[str, Any]:
    """What decides an input's statistics: which images exactly (or which statistics file), from where."""
    keys = ("kind", "name", "root_resolved", "path_resolved", "split", "split_sha256", "num_used", "ids_sha256",
            "files_sha256", "sha256")
    return {key: record[key] for key in keys if key in record}
