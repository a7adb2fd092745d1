"""CIFAR-10, the paper's web-scraped control: 32x32 photos of ten object classes, held in memory.

Layout: torchvision's `cifar-10-batches-py/` (pickled dicts `data_batch_1`..`data_batch_5`, `test_batch`,
`batches.meta`). The five data batches are the official "train" split, the test batch the "val" split.
The pickles are read here rather than through torchvision.datasets.CIFAR10, which checks each file's md5 sum
and so rejects the small generated copies the tests use.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from data import DatasetSpec, Samples
from data._checks import raise_if_problems, require_dir, require_root

BATCHES = [(f"data_batch_{i}", "train", "train") for i in range(1, 6)] + [("test_batch", "val", "test")]
PIXELS = 3 * 32 * 32


class ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and NumPy arrays only: a pickle can run any code it names, so nothing else."""

    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def load(spec: DatasetSpec, root: Path) -> Samples:
    require_root(spec, root)
    folder = root / "cifar-10-batches-py"
    problems: list[str] = []
    images, labels, ids, splits = [], [], [], []
    if require_dir(folder, problems):
        meta = read_pickle(folder / "batches.meta", problems)
        if meta is not None and tuple(meta.get("label_names", ())) != spec.class_names:
            problems.append(f"{folder / 'batches.meta'}: label_names {meta.get('label_names')} "
                            f"are not CIFAR-10's {list(spec.class_names)}")
        counts = {"train": 0, "test": 0}
        for file_name, split, prefix in BATCHES:
            batch = read_batch(folder / file_name, spec.num_classes, problems)
            if batch is None:
                continue
            pixels, batch_labels = batch
            images.append(pixels.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))  # stored as R, G, B planes
            labels.append(batch_labels)
            ids += [f"{prefix}-{counts[prefix] + i:05d}" for i in range(len(batch_labels))]
            splits += [split] * len(batch_labels)
            counts[prefix] += len(batch_labels)
        problems += [f"{folder}: the official {split} split has no images" for split in ("train", "val")
                     if split not in splits]
    raise_if_problems(spec, root, problems)
    return Samples(spec=spec, root=root, ids=ids, labels=np.concatenate(labels).astype(np.int64),
                   class_names=spec.class_names, images=np.ascontiguousarray(np.concatenate(images)),
                   official_split=np.array(splits))


def read_pickle(path: Path, problems: list[str]) -> dict | None:
    """The dict in pickle `path` (Python 2 strings decoded as latin-1, as torchvision does), or None and a problem."""
    if not path.is_file():
        problems.append(f"{path}: file is missing")
        return None
    try:
        with open(path, "rb") as f:
            content = ArrayUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as error:
        problems.append(f"{path}: cannot be read as a CIFAR pickle ({error})")
        return None
    if not isinstance(content, dict):
        problems.append(f"{path}: expected a pickled dict, found {type(content).__name__}")
        return None
    return content


def read_batch(path: Path, num_classes: int, problems: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """(N x 3072 uint8 pixels, N labels) of one batch file, checked for shape and label range."""
    batch = read_pickle(path, problems)
    if batch is None:
        return None
    if "data" not in batch or "labels" not in batch:
        problems.append(f"{path}: needs keys 'data' and 'labels', found {sorted(batch)}")
        return None
    pixels, labels = np.asarray(batch["data"]), np.asarray(batch["labels"])
    if pixels.dtype != np.uint8 or pixels.ndim != 2 or pixels.shape[1] != PIXELS:
        problems.append(f"{path}: 'data' must be N x {PIXELS} uint8, found {pixels.shape} {pixels.dtype}")
        return None
    if labels.shape != (len(pixels),) or not np.issubdtype(labels.dtype, np.integer):
        problems.append(f"{path}: 'labels' must be {len(pixels)} integers, found {labels.shape} {labels.dtype}")
        return None
    if len(bad := np.flatnonzero((labels < 0) | (labels >= num_classes))):
        problems.append(f"{path}: labels[{bad[0]}] = {labels[bad[0]]} is out of range (0..{num_classes - 1}); "
                        f"{len(bad)} label(s) out of range")
        return None
    return pixels, labels
