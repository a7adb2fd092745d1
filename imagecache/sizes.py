"""Which caches a run reads and cache.py prepares: one per input size, decided as train.py decides it.

    reader = reader_for(samples, indices["train"], 256, "train", mode="auto")   # CachedImages, or None
    sizes = input_sizes("aptos", ["deit_small", "resnet50"])                    # [224, 256]
"""
from __future__ import annotations

from common import errors
from data import Samples
from imagecache.build import ensure_built
from imagecache.store import CachedImages, cache_settings, open_cache
from nets import registry

DEFAULT_GROUP = "testbed"


def reader_for(samples: Samples, indices, img_size: int, kind: str, mode: str = "auto",
               cache_dir: str = "cache") -> CachedImages | None:
    """What train.py and evaluate.py read images through: the prepared cache ("auto": when present; "build":
    prepared first if missing), or None for the original files ("off", or no cache prepared)."""
    if mode == "off":
        return None
    settings = cache_settings(img_size, kind)
    if mode == "build":
        return ensure_built(samples, indices, settings, cache_dir).images
    return open_cache(samples, indices, settings, cache_dir)


def input_sizes(dataset: str, model_names: list[str] | None = None, group: str | None = None,
                img_sizes: list[int] | None = None) -> list[int]:
    """The input sizes to prepare: registry.input_size(model, dataset, size) of each model and each --img-size, as
    train.py decides them. Only --img-size: those sizes. Nothing: the sizes of the paper's testbed."""
    names = model_names or (registry.group_models(group) if group else None)
    if group and not names:
        raise errors.UsageError(f"--models {group}: no such group of models; choose from "
                                f"{', '.join(registry.groups())} (a --models-file's groups count too)")
    if names is None and img_sizes:
        if min(img_sizes) < 1:
            raise errors.UsageError(f"--img-size must be a positive number of pixels, got {min(img_sizes)}")
        return sorted(set(img_sizes))
    names = names or registry.group_models(DEFAULT_GROUP)
    return sorted({registry.input_size(name, dataset, size) for name in names for size in (img_sizes or [None])})
