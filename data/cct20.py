"""Caltech Camera Traps, the ECCV'18 subset (CCT-20): camera-trap photos of 15 animal classes at 20 locations.

Layout: `eccv_18_annotation_files/<split>_annotations.json` for the five official splits (train, cis_val,
cis_test, trans_val, trans_test; COCO format: images, annotations, categories) and
`eccv_18_all_images_sm/<image id>.jpg`. Every image of the five files is one sample, its official split the
file it came from. Images annotated "empty" (category 30) are excluded and counted in `options["excluded"]`;
the classes are the remaining category ids that occur, sorted by id. `options["files"]` holds how many images each
annotation file lists (the paper's split is these files: data.Published).
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from data import DatasetSpec, Samples
from data._checks import duplicate_ids, load_json, name_problem, raise_if_problems, require_dir, require_root
from data.images import check_image_files

EMPTY_CATEGORY = 30
EMPTY = "annotated empty (category 30)"


def load(spec: DatasetSpec, root: Path) -> Samples:
    require_root(spec, root)
    problems: list[str] = []
    category_names: dict[int, str] = {}
    ids, categories, splits, places, locations = [], [], [], [], []
    files_read, listed_per_file = [], {}
    for split in spec.splits:  # the registry's split names are the five annotation files
        path = root / "eccv_18_annotation_files" / f"{split}_annotations.json"
        coco = load_json(path, problems)
        if coco is None:
            continue
        if not isinstance(coco, dict) or not {"images", "annotations", "categories"} <= set(coco):
            problems.append(f"{path}: not a COCO annotation file (needs keys images, annotations, categories)")
            continue
        files_read.append(split)
        listed_per_file[str(path.relative_to(root))] = len(coco["images"])
        read_categories(path, coco["categories"], category_names, problems)
        image_categories = read_annotations(path, coco["annotations"], problems)
        listed = set()
        for index, image in enumerate(coco["images"]):
            try:
                image_id = str(image["id"])
            except (KeyError, TypeError):
                problems.append(f"{path}: images[{index}] has no id")
                continue
            if problem := name_problem(image_id):
                problems.append(f"{path}: images[{index}] id {problem}")
                continue
            listed.add(image_id)
            found = image_categories.get(image_id, set())
            if len(found) != 1:
                what = "has no annotation" if not found else f"has conflicting categories {sorted(found)}"
                problems.append(f"{path}: image {image_id!r} {what}")
                continue
            ids.append(image_id)
            categories.append(next(iter(found)))
            splits.append(split)
            places.append(str(path))
            location = image.get("location")
            locations.append("" if location is None else str(location))
        problems += [f"{path}: annotation refers to image {image_id!r}, which is not in its images"
                     for image_id in sorted(image_categories.keys() - listed)]
    problems += duplicate_ids(ids, places)

    keep = np.array([category != EMPTY_CATEGORY for category in categories], dtype=bool)
    class_ids = sorted({category for category in categories if category != EMPTY_CATEGORY})
    problems += [f"category id {category} is annotated but not listed in any file's categories"
                 for category in class_ids if category not in category_names]
    if ids and len(class_ids) != spec.num_classes:
        problems.append(f"{root}: found {len(class_ids)} non-empty categories {class_ids}, "
                        f"expected the {spec.num_classes} of CCT-20")
    splits = np.array(splits)
    problems += [f"{root / 'eccv_18_annotation_files' / f'{split}_annotations.json'}: no non-empty images"
                 for split in files_read if not np.any(keep & (splits == split))]
    ids = [image_id for image_id, k in zip(ids, keep) if k]
    files = [(root / "eccv_18_all_images_sm" / f"{image_id}.jpg",) for image_id in ids]
    if require_dir(root / "eccv_18_all_images_sm", problems):
        problems += check_image_files(files)
    raise_if_problems(spec, root, problems)

    label_of = {category: label for label, category in enumerate(class_ids)}
    labels = np.array([label_of[category] for category, k in zip(categories, keep) if k], dtype=np.int64)
    columns = {"location": np.array(locations)[keep]} if any(locations) else {}
    return Samples(spec=spec, root=root, ids=ids, labels=labels,
                   class_names=tuple(category_names[category] for category in class_ids), image_files=files,
                   official_split=splits[keep], columns=columns,
                   options={"excluded": {EMPTY: int(np.sum(~keep))}, "category_ids": class_ids,
                            "files": listed_per_file})


def read_categories(path: Path, entries: Any, names: dict[int, str], problems: list[str]) -> None:
    """Add the file's {id: name} categories to `names`; a name that differs between files is a problem."""
    for index, entry in enumerate(entries):
        try:
            category, name = int(entry["id"]), str(entry["name"])
        except (KeyError, TypeError, ValueError):
            problems.append(f"{path}: categories[{index}] needs an integer id and a name, got {entry!r}")
            continue
        if names.setdefault(category, name) != name:
            problems.append(f"{path}: category {category} is named {name!r} here but {names[category]!r} elsewhere")


def read_annotations(path: Path, entries: Any, problems: list[str]) -> dict[str, set[int]]:
    """The set of category ids annotated on each image id (several boxes of one animal are one category)."""
    found: dict[str, set[int]] = defaultdict(set)
    for index, entry in enumerate(entries):
        try:
            found[str(entry["image_id"])].add(int(entry["category_id"]))
        except (KeyError, TypeError, ValueError):
            problems.append(f"{path}: annotations[{index}] needs an image_id and an integer category_id, "
                            f"got {entry!r}")
    return found
