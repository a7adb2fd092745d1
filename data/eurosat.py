"""EuroSAT (RGB): 64x64 Sentinel-2 satellite patches of ten land-use classes.

Layout: `2750/<ClassName>/<ClassName>_<n>.jpg` as the EuroSAT zip unpacks, or `eurosat/2750/...` as
torchvision.datasets.EuroSAT stores it. Samples come in torchvision ImageFolder's order (class folders sorted,
each walked recursively with os.walk, file names sorted), because the paper's split draws over that order.
Files without an image extension are skipped, as ImageFolder does, and counted in `options["excluded"]`.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from data import DatasetError, DatasetSpec, Samples
from data._checks import raise_if_problems, require_root
from data.images import check_image_files

# torchvision.datasets.folder.IMG_EXTENSIONS, the extensions ImageFolder accepts (compared in lower case)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
NOT_AN_IMAGE = "no image file extension"
OUTSIDE = "file outside the class folders"


def load(spec: DatasetSpec, root: Path) -> Samples:
    require_root(spec, root)
    folder = next((path for path in (root / "2750", root / "eurosat" / "2750") if path.is_dir()), None)
    if folder is None:
        raise DatasetError(spec.name, root, [f"{root}: neither 2750/ nor eurosat/2750/ exists"
                                             + inner_folder_hint(spec, root)])
    problems: list[str] = []
    found = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
    problems += [f"{folder / name}: unknown class folder (EuroSAT's classes: {', '.join(spec.class_names)})"
                 for name in found if name not in spec.class_names]
    problems += [f"{folder / name}: class folder is missing" for name in spec.class_names if name not in found]
    ids, labels, files = [], [], []
    outside = sum(1 for entry in os.scandir(folder) if not entry.is_dir())
    skipped = 0
    for label, class_name in enumerate(spec.class_names):  # sorted, as ImageFolder sorts the folders
        class_dir = folder / class_name
        count = 0
        for walked, _, names in sorted(os.walk(class_dir, followlinks=True)):
            for name in sorted(names):
                path = Path(walked) / name
                if not name.lower().endswith(IMAGE_EXTENSIONS):
                    skipped += 1
                    continue
                ids.append(path.relative_to(folder).as_posix())
                labels.append(label)
                files.append((path,))
                count += 1
        if class_name in found and count == 0:
            problems.append(f"{class_dir}: class folder has no images")
    problems += check_image_files(files)
    raise_if_problems(spec, root, problems)
    return Samples(spec=spec, root=root, ids=ids, labels=np.array(labels, dtype=np.int64),
                   class_names=spec.class_names, image_files=files,
                   options={"excluded": {NOT_AN_IMAGE: skipped, OUTSIDE: outside}})


def inner_folder_hint(spec: DatasetSpec, root: Path) -> str:
    """The way out when --root names the image folder itself (…/2750, holding the class folders) instead of the
    folder that contains it."""
    if not any((root / name).is_dir() for name in spec.class_names):
        return ""
    if root.name == "2750":
        return f"; {root} is EuroSAT's image folder itself: give the folder that contains 2750/ (--root {root.parent})"
    return (f"; {root} holds EuroSAT's class folders: they belong in a folder named 2750/, and --root is the folder "
            f"that contains 2750/")
