"""Prepared image caches: every image decoded once, shrunk, and stored so that training reads it without decoding
(cache.py builds them; train.py and evaluate.py read them through `reader_for`).

Modules: `store` (the on-disk layout, the key, reading: CachedImages), `build` (the parallel, resumable build),
`worker` (the light decoding processes: numpy and OpenCV only), `verify` (decode every image up front and remember
the good ones), `sizes` (which sizes to prepare, and which cache a run reads).
"""
from imagecache.build import ensure_built, prepare
from imagecache.sizes import input_sizes, reader_for
from imagecache.store import CachedImages, CacheError, cache_settings, open_cache

__all__ = ["CacheError", "CachedImages", "cache_settings", "ensure_built", "input_sizes", "open_cache", "prepare",
           "reader_for"]
