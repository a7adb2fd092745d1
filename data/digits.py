"""scikit-learn's bundled handwritten digits (1,797 images of 8x8, ten classes): the dataset that needs no download.

It exists so that the demo, the tests and a new user's first run work offline. Pixels (0-16) are scaled to 0-255
and replicated to three channels, so every model and transform treats it like any other RGB dataset.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

from data import DatasetSpec, Samples


def load(spec: DatasetSpec, root: Path) -> Samples:
    bunch = load_digits()
    gray = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    images = np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=-1))
    ids = [f"digit-{i:04d}" for i in range(len(images))]
    return Samples(spec=spec, root=root, ids=ids, labels=bunch.target.astype(np.int64),
                   class_names=spec.class_names, images=images)
