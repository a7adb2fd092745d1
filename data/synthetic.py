"""Tiny fake copies of the datasets, written in the exact layout each source ships, for tests and dry runs.

    python -m data.synthetic aptos --root /tmp/fake/aptos --per-class 8
    python -m data.synthetic all --root /tmp/fake            # every dataset, each under /tmp/fake/<name>

    from data.synthetic import write_fixture
    root = write_fixture("melanoma", tmp_path / "melanoma")   # then open_dataset("melanoma", root)

Every image's colour and stripe direction depend on its class, plus noise, so a model can learn the task and a
pipeline bug (labels shuffled, channels swapped) shows up as chance accuracy. Images are real PNG/JPEG files
(written from RGB arrays converted to OpenCV's BGR); CSV, JSON and pickle files carry the real column sets and keys.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import pickle
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from common.fileio import atomic_write_bytes, atomic_write_text
from data import CASSAVA_DISEASES, CIFAR10_CLASSES, EUROSAT_CLASSES, REGISTRY
from data.images import read_image_files

DEFAULT_SIZE = (32, 32)  # (height, width) of generated images
CCT20_CATEGORIES = {1: "opossum", 3: "raccoon", 5: "squirrel", 6: "bobcat", 7: "skunk", 8: "dog", 9: "coyote",
                    10: "rabbit", 11: "bird", 16: "cat", 21: "badger", 30: "empty", 33: "car", 34: "deer",
                    37: "fox", 51: "rodent"}
MELANOMA_COLUMNS = ["image_name", "patient_id", "sex", "age_approx", "anatom_site_general_challenge", "diagnosis",
                    "benign_malignant", "target"]
MELANOMA_FOLDS = 5      # tfrecord folds per year in the re-packaged layout
MELANOMA_DUPLICATES = 2  # rows with tfrecord -1 per year
HPA_STAINS = ("red", "green", "blue", "yellow")


def class_image(rng: np.random.Generator, label: int, num_classes: int, size: tuple[int, int]) -> np.ndarray:
    """H x W x 3 uint8 RGB image whose hue and stripe direction encode `label`, with Gaussian noise."""
    height, width = size
    hue = np.uint8(180 * label // num_classes)  # OpenCV's hue range is 0..179
    colour = cv2.cvtColor(np.array([[[hue, 200, 230]]], dtype=np.uint8), cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)
    yy, xx = np.mgrid[0:height, 0:width]
    angle = np.pi * label / num_classes
    stripes = 0.5 + 0.5 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * (2 * np.pi / 8))
    image = colour * (0.4 + 0.6 * stripes)[..., None] + rng.normal(0, 10, (height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def write_image(path: Path, image: np.ndarray) -> None:
    """Write an RGB, RGBA or single-channel array as PNG/JPEG by `path`'s extension (OpenCV expects BGR)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR if image.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"{path}: OpenCV could not write the image")


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def hex_id(rng: np.random.Generator, groups: tuple[int, ...]) -> str:
    """A random lower-case hex id such as Kaggle's and LILA's (groups of digits joined by '-')."""
    return "-".join("".join(rng.choice(list("0123456789abcdef"), n)) for n in groups)


def balanced_labels(rng: np.random.Generator, num_classes: int, per_class: int) -> np.ndarray:
    """`per_class` samples of every class, in random order (a CSV is never sorted by class)."""
    return rng.permutation(np.repeat(np.arange(num_classes), per_class))


def write_aptos(root: Path, rng: np.random.Generator, per_class: int, size: tuple[int, int]) -> None:
    labels = balanced_labels(rng, 5, per_class)
    ids = [hex_id(rng, (12,)) for _ in labels]
    for id_code, label in zip(ids, labels):
        write_image(root / "train_images" / f"{id_code}.png", class_image(rng, label, 5, size))
    write_csv(root / "train.csv", ["id_code", "diagnosis"], [[i, int(label)] for i, label in zip(ids, labels)])
    test_ids = [hex_id(rng, (12,)) for _ in range(2)]  # the unlabelled test set, which loaders ignore
    for id_code in test_ids:
        write_image(root / "test_images" / f"{id_code}.png", class_image(rng, 0, 5, size))
    write_csv(root / "test.csv", ["id_code"], [[i] for i in test_ids])


def write_dr2015(root: Path, rng: np.random.Generator, per_class: int, size: tuple[int, int],
                 test_labels: bool = False) -> None:
    """`trainLabels.csv` (image,level) sorted as Kaggle ships it, both eyes of each patient in turn, and
    `train/<image>.jpeg`; `per_class` images of every grade, the two eyes of a patient graded independently. With
    test_labels=True also the test set with its released grades: `retinopathy_solution.csv` (image,level,Usage)
    and `test/<image>.jpeg`, `per_class` images of every grade, of other patients."""
    labels = balanced_labels(rng, 5, per_class)
    patients = np.sort(rng.choice(45_000, (len(labels) + 1) // 2, replace=False)) + 1
    images = [f"{patient}_{eye}" for patient in patients for eye in ("left", "right")][:len(labels)]
    for image, label in zip(images, labels):
        write_image(root / "train" / f"{image}.jpeg", class_image(rng, label, 5, size))
    write_csv(root / "trainLabels.csv", ["image", "level"], [[i, int(label)] for i, label in zip(images, labels)])
    if not test_labels:
        return
    labels = balanced_labels(rng, 5, per_class)
    patients = np.sort(rng.choice(45_000, (len(labels) + 1) // 2, replace=False)) + 45_001  # none of train's
    images = [f"{patient}_{eye}" for patient in patients for eye in ("left", "right")][:len(labels)]
    usage = rng.choice(["Public", "Private"], len(labels), p=[0.2, 0.8])  # Kaggle's public/private leaderboard rows
    for image, label in zip(images, labels):
        write_image(root / "test" / f"{image}.jpeg", class_image(rng, label, 5, size))
    write_csv(root / "retinopathy_solution.csv", ["image", "level", "Usage"],
              [[i, int(label), u] for i, label, u in zip(images, labels, usage)])


def write_cassava(root: Path, rng: np.random.Generator, per_class: int, size: tuple[int, int]) -> None:
    labels = balanced_labels(rng, 5, per_class)
    ids = [f"{number}.jpg" for number in rng.choice(10**9, len(labels), replace=False) + 10**9]
    for image_id, label in zip(ids, labels):
        write_image(root / "train_images" / image_id, class_image(rng, label, 5, size))
    write_csv(root / "train.csv", ["image_id", "label"], [[i, int(label)] for i, label in zip(ids, labels)])
    atomic_write_text(root / "label_num_to_disease_map.json",
                      json.dumps({str(label): name for label, name in enumerate(CASSAVA_DISEASES)}))


def write_hpa(root: Path, rng: np.random.Generator, per_class: int, size: tuple[int, int],
              composite_dir: Path | None = None, composite_channels: str = "rgb") -> None:
    """`per_class` samples per location as the first label, a third of them with a second random label.

    Each stain has its own brightness (so a swapped channel order is visible); the green (protein) stain has a
    bright square at a position that depends on each of the sample's labels. Beside them, a split file in the format
    of the paper's published one (split.stratified.small.0.csv: Id,Target,Split in train/val/test_val, about
    73/18/9 %), for `splits.py hpa --from`.
    """
    height, width = size
    rows = []
    for index, first in enumerate(rng.permutation(np.repeat(np.arange(28), per_class))):
        targets = [int(first)]
        if index % 3 == 0:
            targets.append(int(rng.choice([t for t in range(28) if t != first])))
        sample_id = hex_id(rng, (8, 4, 4, 4, 12))
        rows.append([sample_id, " ".join(map(str, targets))])
        for level, stain in zip((60, 100, 140, 180), HPA_STAINS):
            gray = np.clip(rng.normal(level, 8, (height, width)), 0, 255).astype(np.uint8)
            if stain == "green":
                for target in targets:
                    y, x = (target // 7) * height // 4, (target % 7) * width // 7
                    gray[y:y + height // 4, x:x + max(1, width // 7)] = 255
            write_image(root / "train" / f"{sample_id}_{stain}.png", gray)
    write_csv(root / "train.csv", ["Id", "Target"], rows)
    splits = ["train"] * 73 + ["val"] * 18 + ["test_val"] * 9
    write_csv(root / "split.stratified.small.0.csv", ["Id", "Target", "Split"],
              [[*row, splits[index * 37 % 100]] for index, row in enumerate(rows)])
    if composite_dir is not None:
        write_hpa_composites(root, Path(composite_dir), composite_channels)


def write_hpa_composites(root: Path, out_dir: Path, channels: str = "rgb") -> Path:
    """Stack each HPA sample's stain PNGs into one `<out_dir>/<Id>.png` (RGB, or RGBA for channels="rgby")."""
    stains = HPA_STAINS[:4 if channels == "rgby" else 3]
    with open(root / "train.csv", newline="") as f:
        ids = [row["Id"] for row in csv.DictReader(f)]
    for sample_id in ids:
        image = read_image_files(tuple(root / "train" / f"{sample_id}_{stain}.png" for stain in stains))
        write_image(out_dir / f"{sample_id}.png", image)
    return out_dir


def write_melanoma(root: Path, rng: np.random.Generator, per_class: int, size: tuple[int, int],
                   layout: str = "repackaged") -> None:
    """The re-packaged 2020 + 2019 folders with patient-isolated tfrecord folds (`per_class` images of each class
    per fold, two per patient, plus duplicate rows with tfrecord -1), or with layout="official" the 2020
    competition layout (`per_class` images of each class, no folds)."""
    if layout not in ("repackaged", "official"):
        raise ValueError(f"melanoma layout must be 'repackaged' or 'official', got {layout!r}")
    if layout == "official":
        rows = melanoma_rows(rng, "2020", fold=None, count=per_class, first_number=2_000_000)
        rows = [rows[i] for i in rng.permutation(len(rows))]
        write_melanoma_images(root / "jpeg" / "train", rows, rng, size)
        write_csv(root / "train.csv", MELANOMA_COLUMNS, [row[:-1] for row in rows])
        return
    for year, first_number in (("2020", 2_000_000), ("2019", 0)):
        rows = []
        for fold in range(MELANOMA_FOLDS):
            rows += melanoma_rows(rng, year, fold, per_class, first_number + len(rows))
        duplicates = melanoma_rows(rng, year, -1, 1, first_number + len(rows))[:MELANOMA_DUPLICATES]
        rows = [rows[i] for i in rng.permutation(len(rows))] + duplicates
        folder = root / f"melanoma-{year}"
        write_melanoma_images(folder / "train", rows, rng, size)
        write_csv(folder / "train.csv", MELANOMA_COLUMNS + ["tfrecord"], rows)


def melanoma_rows(rng: np.random.Generator, year: str, fold: int | None, count: int, first_number: int) -> list:
    """`count` benign and `count` malignant rows; consecutive pairs share a patient that no other fold has."""
    rows = []
    for index, target in enumerate([0] * count + [1] * count):
        patient = f"IP_{year}_{fold}_{index // 2:04d}"
        if year == "2019" and index % 6 == 0:
            patient = ""  # the 2019 data lacks many patient ids
        rows.append([f"ISIC_{first_number + index:07d}", patient, rng.choice(["male", "female"]),
                     float(rng.integers(3, 18) * 5), "torso", "melanoma" if target else "nevus",
                     "malignant" if target else "benign", target, fold])
    return rows


def write_melanoma_images(folder: Path, rows: list, rng: np.random.Generator, size: tuple[int, int]) -> None:
    for row in rows:
        write_image(folder / f"{row[0]}.jpg", class_image(rng, row[7], 2, size))


def write_cct20(root: Path, rng: np.random.Generator, per_class: int, size: tuple[int, int]) -> None:
    """`per_class` images of each of the 15 classes in train, half as many (at least one) in each other file,
    plus two empty images per file; one train image carries two boxes of the same animal."""
    classes = [category for category in CCT20_CATEGORIES if category != 30]
    categories = [{"id": category, "name": name} for category, name in CCT20_CATEGORIES.items()]
    for split in REGISTRY["cct20"].splits:  # the five annotation files
        count = per_class if split == "train" else max(1, per_class // 2)
        locations = (0, 1, 2, 3) if not split.startswith("trans") else (10, 11)
        annotated = [category for category in classes for _ in range(count)] + [30, 30]
        images, annotations = [], []
        for category in rng.permutation(annotated):
            image_id = hex_id(rng, (8, 4, 4, 4, 12))
            if category == 30:
                pixels = np.clip(rng.normal(110, 20, (*size, 3)), 0, 255).astype(np.uint8)
            else:
                pixels = class_image(rng, classes.index(category), len(classes), size)
            write_image(root / "eccv_18_all_images_sm" / f"{image_id}.jpg", pixels)
            images.append({"id": image_id, "file_name": f"{image_id}.jpg", "width": size[1], "height": size[0],
                           "location": int(rng.choice(locations)), "seq_id": hex_id(rng, (8,)),
                           "seq_num_frames": 1, "frame_num": 0})
            annotations.append({"id": hex_id(rng, (8,)), "image_id": image_id, "category_id": int(category)})
        if split == "train":
            first_animal = next(a for a in annotations if a["category_id"] != 30)
            annotations.append({**first_animal, "id": hex_id(rng, (8,))})
        coco = {"info": {"description": f"synthetic CCT-20 {split}"}, "images": images,
                "annotations": annotations, "categories": categories}
        atomic_write_text(root / "eccv_18_annotation_files" / f"{split}_annotations.json", json.dumps(coco))


def write_eurosat(root: Path, rng: np.random.Generator, per_class: int, size: tuple[int, int],
                  torchvision_layout: bool = False) -> None:
    """`2750/<Class>/<Class>_<n>.jpg`, n from 1; torchvision_layout=True writes under eurosat/2750/ instead."""
    folder = root / "eurosat" / "2750" if torchvision_layout else root / "2750"
    for label, class_name in enumerate(EUROSAT_CLASSES):
        for n in range(1, per_class + 1):
            write_image(folder / class_name / f"{class_name}_{n}.jpg", class_image(rng, label, 10, size))


def write_cifar10(root: Path, rng: np.random.Generator, per_class: int, size: tuple[int, int]) -> None:
    """`per_class` images of each class in the training batches (spread over all five) and in the test batch."""
    if size != (32, 32):
        raise ValueError(f"CIFAR-10 images are 32x32, got size {size}")
    folder = root / "cifar-10-batches-py"
    train_labels = balanced_labels(rng, 10, per_class)
    batches = [(f"data_batch_{i + 1}", part) for i, part in enumerate(np.array_split(train_labels, 5))]
    for file_name, labels in batches + [("test_batch", balanced_labels(rng, 10, per_class))]:
        # Python 2 pickles as the real files: string keys, R, G and B planes of 1,024 bytes per row
        data = np.stack([class_image(rng, label, 10, size).transpose(2, 0, 1).reshape(-1) for label in labels])
        batch = {"batch_label": file_name, "labels": [int(label) for label in labels], "data": data,
                 "filenames": [f"{CIFAR10_CLASSES[label]}_s_{i:06d}.png" for i, label in enumerate(labels)]}
        atomic_write_bytes(folder / file_name, pickle.dumps(batch, protocol=2))
    meta = {"num_cases_per_batch": len(batches[0][1]), "label_names": list(CIFAR10_CLASSES), "num_vis": 3072}
    atomic_write_bytes(folder / "batches.meta", pickle.dumps(meta, protocol=2))


WRITERS: dict[str, Callable[..., None]] = {"cct20": write_cct20, "aptos": write_aptos, "dr2015": write_dr2015,
                                           "hpa": write_hpa, "melanoma": write_melanoma, "cassava": write_cassava,
                                           "eurosat": write_eurosat, "cifar10": write_cifar10}


def write_fixture(name: str, root: Path, per_class: int = 4, seed: int = 0, size: tuple[int, int] | None = None,
                  **options: Any) -> Path:
    """Write a fake copy of dataset `name` into `root` (its dataset root) and return `root`.

    `size` is (height, width), default 32x32. Options: hpa composite_dir=PATH, composite_channels="rgb"|"rgby";
    melanoma layout="repackaged"|"official"; eurosat torchvision_layout=True; dr2015 test_labels=True.
    """
    if name not in WRITERS:
        raise ValueError(f"no synthetic writer for '{name}'; known: {', '.join(WRITERS)}")
    if per_class < 1:
        raise ValueError(f"per_class must be at least 1, got {per_class}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    WRITERS[name](root, np.random.default_rng(seed), per_class, tuple(size or DEFAULT_SIZE), **options)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=[*WRITERS, "all"], help="dataset to fake, or 'all' for every one")
    parser.add_argument("--root", type=Path, default=None,
                        help="dataset root to write, default synthetic/NAME (for 'all': the parent, default synthetic)")
    parser.add_argument("--per-class", type=int, default=4, help="images per class (see each writer for splits)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the generated ids, labels and pixels")
    parser.add_argument("--size", type=int, nargs=2, default=None, metavar=("HEIGHT", "WIDTH"),
                        help="image size (default 32 32; CIFAR-10 is always 32 32)")
    parser.add_argument("--test-labels", action="store_true",
                        help="dr2015: also the test set with its released grades (retinopathy_solution.csv, test/)")
    args = parser.parse_args()
    if args.name == "all":
        targets = [(name, (args.root or Path("synthetic")) / name) for name in WRITERS]
    else:
        targets = [(args.name, args.root or Path("synthetic") / args.name)]
    for name, root in targets:
        size = (32, 32) if name == "cifar10" else args.size
        options = {"test_labels": True} if name == "dr2015" and args.test_labels else {}
        write_fixture(name, root, per_class=args.per_class, seed=args.seed, size=size, **options)
        print(f"{name}: wrote {root} ({REGISTRY[name].num_classes} classes, {args.per_class} per class)")


if __name__ == "__main__":
    main()
