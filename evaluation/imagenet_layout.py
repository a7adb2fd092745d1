"""ImageNet's validation images as they are usually kept, labelled for evaluate.py --imagenet-val in the class order
that ImageNet-1k weights use: the 1,000 WordNet ids sorted (n01440764, "tench", is class 0), the order of
torchvision's and timm's weights (timm ships the list: timm.data.ImageNetInfo).

Two layouts, and the ground-truth files each reads:
  * class folders, `DIR/n01440764/ILSVRC2012_val_00000293.JPEG`, as torchvision.datasets.ImageNet and the usual
    valprep.sh leave them: the folder names the class; nothing else is read.
  * flat, `DIR/ILSVRC2012_val_00000001.JPEG` ... `_00050000.JPEG`, as ILSVRC2012_img_val.tar unpacks, labelled by
    the ILSVRC2012 devkit (ILSVRC2012_devkit_t12.tar.gz): `data/ILSVRC2012_validation_ground_truth.txt` (line i:
    the ILSVRC2012 class id, 1 to 1000, of image i) with `data/meta.mat` (its `synsets` give each id's WordNet id:
    the ids are not in sorted-WordNet order, so they are never used as indices); or else Kaggle's
    `LOC_val_solution.csv` (ImageId,PredictionString; the first word of PredictionString is the WordNet id).
    They are looked for in --imagenet-devkit when given, else in DIR, its parent, and ILSVRC2012_devkit_t12/data
    under either.
A folder with only some of the images (or classes) is measured on those, and the record says how many.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io
from timm.data import ImageNetInfo

from common import errors, fileio

WNID = re.compile(r"n\d{8}")
FLAT_NAME = re.compile(r"ILSVRC2012_val_(\d{8})\.(?:JPEG|jpeg|jpg|JPG|png|PNG)")
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
GROUND_TRUTH, META, KAGGLE = "ILSVRC2012_validation_ground_truth.txt", "meta.mat", "LOC_val_solution.csv"
IMAGES_IN_VAL = 50_000


@dataclass(frozen=True)
class ValImages:
    """The images found, each with its class index among the sorted 1,000 WordNet ids."""
    paths: list[Path]
    labels: np.ndarray
    layout: str                   # "class folders", or "flat" with the ground truth it read
    ground_truth: dict[str, str]  # file read -> its SHA-256 (none for class folders)

    def describe(self) -> str:
        subset = "" if len(self.paths) == IMAGES_IN_VAL else f" (of ImageNet val's {IMAGES_IN_VAL:,})"
        return (f"{len(self.paths):,} images{subset} of {len(set(self.labels.tolist()))} classes, {self.layout}")


def sorted_wnids() -> list[str]:
    """ImageNet-1k's WordNet ids in the order of the weights' 1,000 outputs."""
    wnids = list(ImageNetInfo().label_names())
    assert len(wnids) == 1000 and wnids == sorted(wnids), "timm's ImageNet-1k synsets are the sorted 1,000"
    return wnids


def find_images(folder: Path, devkit: Path | None = None) -> ValImages:
    """The labelled images of an ImageNet validation folder in either layout (see the module docstring)."""
    if not folder.is_dir():
        raise errors.UsageError(f"--imagenet-val {folder}: no such folder (give ImageNet's validation folder: class "
                                f"folders n01440764/..., or the flat ILSVRC2012_val_00000001.JPEG ...)")
    class_folders = sorted(d for d in folder.iterdir() if d.is_dir() and WNID.fullmatch(d.name))
    flat = sorted(f for f in folder.iterdir() if f.is_file() and FLAT_NAME.fullmatch(f.name))
    if class_folders and flat:
        raise errors.DataError(f"{folder}: holds both class folders ({class_folders[0].name}, ...) and flat "
                               f"validation images ({flat[0].name}, ...); give the folder of one layout")
    if class_folders:
        return _class_folders(folder, class_folders)
    if flat:
        return _flat(folder, flat, devkit)
    raise errors.DataError(f"{folder}: no ImageNet validation images: expected class folders named by WordNet id "
                           f"(n01440764/*.JPEG) or files named ILSVRC2012_val_<8 digits>.JPEG")


def _class_folders(folder: Path, class_folders: list[Path]) -> ValImages:
    index = {wnid: i for i, wnid in enumerate(sorted_wnids())}
    unknown = [d.name for d in class_folders if d.name not in index]
    if unknown:
        raise errors.DataError(f"{folder}: class folders {', '.join(unknown[:5])} are not ImageNet-1k classes (the "
                               f"1,000 WordNet ids of ILSVRC2012); remove them or give the 1k validation folder")
    paths, labels = [], []
    for d in class_folders:
        found = sorted(f for f in d.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        paths += found
        labels += [index[d.name]] * len(found)
    if not paths:
        raise errors.DataError(f"{folder}: its class folders hold no images ({', '.join(IMAGE_SUFFIXES)})")
    return ValImages(paths, np.asarray(labels, dtype=np.int64), "class folders", {})


def _flat(folder: Path, images: list[Path], devkit: Path | None) -> ValImages:
    places = [devkit] if devkit else [folder, folder.parent, folder / "ILSVRC2012_devkit_t12" / "data",
                                      folder.parent / "ILSVRC2012_devkit_t12" / "data"]
    for place in places:
        if (place / GROUND_TRUTH).is_file():
            if not (place / META).is_file():
                raise errors.DataError(f"{place / GROUND_TRUTH} is there but {place / META} is not: the devkit's "
                                       f"meta.mat maps its class ids to WordNet ids; put the devkit's data/ "
                                       f"folder whole beside the images, or pass --imagenet-devkit")
            wnid_of = _devkit_labels(place / GROUND_TRUTH, place / META, images)
            files = [place / GROUND_TRUTH, place / META]
            break
        if (place / KAGGLE).is_file():
            wnid_of, files = _kaggle_labels(place / KAGGLE, images), [place / KAGGLE]
            break
    else:
        raise errors.DataError(f"{folder}: flat validation images need their ground truth, the devkit's "
                               f"{GROUND_TRUTH} with {META}, or {KAGGLE}; looked in "
                               f"{', '.join(map(str, places))}. Pass --imagenet-devkit FOLDER (the devkit's data/), "
                               f"or sort the images into class folders")
    index = {wnid: i for i, wnid in enumerate(sorted_wnids())}
    unknown = sorted({wnid for wnid in wnid_of.values() if wnid not in index})
    if unknown:
        raise errors.DataError(f"{files[-1]}: labels {', '.join(unknown[:5])} are not ImageNet-1k classes")
    labels = np.asarray([index[wnid_of[image.name]] for image in images], dtype=np.int64)
    layout = f"flat, labels from {' + '.join(f.name for f in files)}"
    return ValImages(images, labels, layout, {str(f.resolve()): fileio.sha256_file(f) for f in files})


def _devkit_labels(ground_truth: Path, meta: Path, images: list[Path]) -> dict[str, str]:
    """Image file name -> WordNet id, from the devkit's ground truth (class ids by image number) and meta.mat."""
    try:
        synsets = scipy.io.loadmat(meta, squeeze_me=True)["synsets"]
        wnid_of_id = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in synsets if int(s["num_children"]) == 0}
    except (OSError, ValueError, KeyError, TypeError, IndexError) as error:
        raise errors.DataError(f"{meta}: not the devkit's meta.mat (a 'synsets' struct with ILSVRC2012_ID, WNID and "
                               f"num_children): {error}") from None
    lines = ground_truth.read_text(encoding="utf-8").split()
    if not all(line.isdigit() and int(line) in wnid_of_id for line in lines):
        wrong = next(i for i, line in enumerate(lines, 1) if not (line.isdigit() and int(line) in wnid_of_id))
        raise errors.DataError(f"{ground_truth}, line {wrong}: {lines[wrong - 1]!r} is not a class id of {meta}")
    labels = {}
    for image in images:
        number = int(FLAT_NAME.fullmatch(image.name).group(1))
        if number > len(lines):
            raise errors.DataError(f"{image}: image {number}, but {ground_truth} labels only {len(lines)} images")
        labels[image.name] = wnid_of_id[int(lines[number - 1])]
    return labels


def _kaggle_labels(solution: Path, images: list[Path]) -> dict[str, str]:
    """Image file name -> WordNet id, from Kaggle's LOC_val_solution.csv (the first box's class)."""
    with open(solution, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"ImageId", "PredictionString"} <= set(rows[0]):
        raise errors.DataError(f"{solution}: expected columns ImageId,PredictionString")
    by_id = {row["ImageId"]: (row["PredictionString"].split() or [""])[0] for row in rows}
    missing = [image.name for image in images if Path(image.name).stem not in by_id]
    if missing:
        raise errors.DataError(f"{solution}: no row for {', '.join(missing[:5])}"
                               + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
    return {image.name: by_id[Path(image.name).stem] for image in images}
