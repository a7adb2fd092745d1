"""Test helper shared by the cache and verification tests: which samples were decoded from their files."""
from __future__ import annotations

import numpy as np

from data import Samples


def count_reads(samples: Samples) -> list[int]:
    """Record every sample index read from the original files (in this process: builds with workers=0)."""
    reads: list[int] = []
    original = Samples.read_image.__get__(samples)

    def counted(index: int) -> np.ndarray:
        reads.append(index)
        return original(index)

    samples.read_image = counted
    return reads
