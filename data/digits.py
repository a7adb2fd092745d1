"""scikit-learn's bundled handwritten digits (1,797 images of 8x8, ten classes): the dataset that needs no download.

It exists so that the demo, the tests and a new user's first run work offline. Pixels (0-16) are scaled to 0-255
and replicated to three channels, so every model and transform treats it like any other RGB dataset.

The data is scikit-learn's `digits.csv.gz`, read as `sklearn.datasets.load_digits` reads it (one row per image: 64
pixels, then the digit). It is read from scikit-learn's folder without importing scikit-learn, which takes about a
second, paid by every run on digits; if a scikit-learn release moves the file, `load_digits` reads it instead.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from data import DatasetSpec, Samples


def bundled_digits() -> tuple[np.ndarray, np.ndarray]:
    """(images N x 8 x 8 of 0-16, digits N) as load_digits returns them."""
    found = importlib.util.find_spec("sklearn")  # where the package is, without importing it
    path = Path(found.origin).parent / "datasets" / "data" / "digits.csv.gz" if found and found.origin else None
    if path is None or not path.is_file():
        from sklearn.datasets import load_digits  # here: only if the bundled file has moved

        bunch = load_digits()
        return bunch.images, bunch.target
    table = np.loadtxt(path, delimiter=",")
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(int)


def load(spec: DatasetSpec, root: Path) -> Samples:
    pixels, digits = bundled_digits()
    gray = np.round(pixels * (255.0 / 16.0)).astype(np.uint8)
    images = np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=-1))
    ids = [f"digit-{i:04d}" for i in range(len(images))]
    return Samples(spec=spec, root=root, ids=ids, labels=digits.astype(np.int64), class_names=spec.class_names,
                   images=images)
