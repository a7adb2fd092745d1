"""Tests for cache.py: building, reuse, invalidation, resuming, refusing damaged caches, and that training and
evaluation from the cache are the same experiment as from the original files."""
from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest

import imagecache
from augment import transforms
from common import errors
from data import REGISTRY, BadImageError, Samples, images, open_dataset
from data.synthetic import write_fixture, write_image
from imagecache import build, store
from training import engine

from image_reads import count_reads  # tests/image_reads.py

REPO = Path(__file__).resolve().parent.parent
SIZE = 32          # training input size of the tests: train cache short side 36, eval cache 32 x 32
SHAPE = (60, 90)   # fixture images (height, width), larger than both variants


@pytest.fixture
def aptos(tmp_path: Path) -> Samples:
    return open_dataset("aptos", write_fixture("aptos", tmp_path / "aptos", per_class=4, size=SHAPE))


def stored(folder: Path) -> tuple[bytes, np.ndarray]:
    return (folder / store.DATA).read_bytes(), np.load(folder / store.INDEX)


def test_settings_follow_the_paper_sizes():
    assert imagecache.cache_settings(256, "train") == {"kind": "train", "img_size": 256, "short_side": 288,
                                                        "crop": None}
    assert imagecache.cache_settings(224, "train")["short_side"] == 252
    assert imagecache.cache_settings(256, "eval") == {"kind": "eval", "img_size": 256, "short_side": 256, "crop": 256}
    with pytest.raises(ValueError, match="kind"):
        imagecache.cache_settings(256, "test")


def test_build_stores_shrunk_images_and_a_second_prepare_reuses_them(aptos, tmp_path):
    indices = np.arange(len(aptos))
    settings = imagecache.cache_settings(SIZE, "train")
    assert imagecache.open_cache(aptos, indices, settings, tmp_path / "cache") is None
    folder = imagecache.prepare(aptos, indices, settings, tmp_path / "cache", workers=2, chunk_size=3, progress=False)
    images = imagecache.open_cache(aptos, indices, settings, tmp_path / "cache")
    for i in indices:
        expected = cv2.resize(aptos.read_image(i), (54, 36), interpolation=cv2.INTER_AREA)  # 60x90 -> short side 36
        assert np.array_equal(images(i), expected)
    assert images.info == {"path": str(folder), "key": images.manifest["key"], "format": "npy", "settings": settings,
                           "images": len(indices), "bytes": len(indices) * 36 * 54 * 3, "bad_images": 0}

    reads = count_reads(aptos)
    assert imagecache.prepare(aptos, indices, settings, tmp_path / "cache", workers=0, progress=False) == folder
    assert reads == []

    # The parallel build wrote exactly what an in-process build writes.
    other = imagecache.prepare(aptos, indices, settings, tmp_path / "other", workers=0, chunk_size=5, progress=False)
    assert stored(other)[0] == stored(folder)[0] and np.array_equal(stored(other)[1], stored(folder)[1])


@pytest.mark.parametrize("fmt", ["npy", "jpeg"])
def test_the_bytes_are_the_same_whatever_the_number_of_workers_and_chunks(aptos, tmp_path, fmt):
    indices = np.arange(len(aptos))[::-1]  # any order: the cache keeps the order of the indices
    settings = imagecache.cache_settings(SIZE, "train")
    builds = [imagecache.prepare(aptos, indices, settings, tmp_path / f"{workers}-{chunk}", workers=workers, fmt=fmt,
                            chunk_size=chunk, progress=False)
              for workers, chunk in [(0, None), (1, 20), (3, 1), (4, None)]]
    first = stored(builds[0])
    assert all(stored(b)[0] == first[0] and np.array_equal(stored(b)[1], first[1]) for b in builds[1:])
    assert np.array_equal(first[1][:, 0], indices)


def test_multi_file_samples_are_built_alike_by_worker_processes(tmp_path):
    hpa = open_dataset("hpa", write_fixture("hpa", tmp_path / "hpa", per_class=1, size=(40, 40)), channels="rgby")
    indices = np.arange(len(hpa))
    for kind in ("train", "eval"):
        settings = imagecache.cache_settings(SIZE, kind)
        here = imagecache.prepare(hpa, indices, settings, tmp_path / "here", workers=0, progress=False)
        there = imagecache.prepare(hpa, indices, settings, tmp_path / "there", workers=2, progress=False)
        assert stored(here)[0] == stored(there)[0] and np.array_equal(stored(here)[1], stored(there)[1])


def test_a_killed_parallel_build_resumes_and_ends_with_the_same_bytes(aptos, tmp_path, capsys):
    """The builder is SIGKILLed right after its first checkpoint, while workers have written chunks past it."""
    indices = np.arange(len(aptos))
    settings = imagecache.cache_settings(SIZE, "eval")
    clean = imagecache.prepare(aptos, indices, settings, tmp_path / "clean", workers=0, progress=False)
    killed = textwrap.dedent(f"""
        import os, signal, numpy as np
        from imagecache import build
        from data import open_dataset
        def checkpoint_then_die(*args):
            real_checkpoint(*args)
            os.kill(os.getpid(), signal.SIGKILL)
        real_checkpoint, build.checkpoint, build.CHECKPOINT_SECONDS = build.checkpoint, checkpoint_then_die, 0
        build.prepare(open_dataset("aptos", {str(aptos.root)!r}), np.arange({len(aptos)}), {settings!r},
                            {str(tmp_path / "cache")!r}, workers=2, progress=False, chunk_size=2)
        """)
    result = subprocess.run([sys.executable, "-c", killed], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == -signal.SIGKILL, result.stderr
    folder = tmp_path / "cache" / clean.relative_to(tmp_path / "clean")
    assert (folder / store.PROGRESS).exists() and not (folder / store.MANIFEST).exists()

    assert imagecache.prepare(aptos, indices, settings, tmp_path / "cache", workers=2, progress=False) == folder
    assert "resuming an interrupted build at image 2 of 20" in capsys.readouterr().out
    assert stored(folder)[0] == stored(clean)[0] and np.array_equal(stored(folder)[1], stored(clean)[1])


def test_one_builder_per_folder_the_other_waits_and_reuses_its_cache(aptos, tmp_path):
    indices = np.arange(len(aptos))
    settings = imagecache.cache_settings(SIZE, "train")
    reads, read = count_reads(aptos), aptos.read_image
    aptos.read_image = lambda index: (time.sleep(0.005), read(index))[1]  # a build long enough to overlap
    with ThreadPoolExecutor(2) as pool:  # each call opens the lock file itself, as two processes would
        folders = list(pool.map(lambda _: imagecache.prepare(aptos, indices, settings, tmp_path, workers=0,
                                                        progress=False), range(2)))
    assert folders[0] == folders[1] and sorted(reads) == list(indices)  # built once
    assert imagecache.open_cache(aptos, indices, settings, tmp_path) is not None


def test_worker_processes_import_neither_torch_nor_albumentations():
    """What makes a worker start in a fraction of a second, whatever script started the build."""
    heavy = subprocess.run([sys.executable, "-c", "import sys, imagecache.worker; "
                            "print(sorted({'torch', 'albumentations', 'timm', 'sklearn'} & set(sys.modules)))"],
                           cwd=REPO, capture_output=True, text=True, check=True)
    assert heavy.stdout.strip() == "[]"


@pytest.mark.parametrize("shape", [(60, 90, 3), (90, 60, 3), (31, 47, 4), (32, 32, 3), (20, 25, 3), (101, 33, 1)])
def test_the_eval_view_without_albumentations_is_transforms_eval_transform(shape):
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    for resize, crop in [(SIZE, SIZE), (36, SIZE), (64, 64)]:
        expected = transforms.eval_transform(crop, resize)(image=image)["image"]
        assert np.array_equal(images.resize_center_crop(image, resize, crop), expected)


def test_in_memory_dataset_is_keyed_on_its_pixels(tmp_path):
    digits = open_dataset("digits")  # 8 x 8 images in memory
    indices = np.arange(40)
    settings = imagecache.cache_settings(SIZE, "train")
    imagecache.prepare(digits, indices, settings, tmp_path, workers=0, progress=False)
    images = imagecache.open_cache(digits, indices, settings, tmp_path)
    assert all(np.array_equal(images(i), digits.images[i]) for i in indices)  # smaller than 36: kept as it is

    digits.images = digits.images.copy()
    digits.images[7, 3, 3] ^= 1
    assert imagecache.open_cache(digits, indices, settings, tmp_path) is None
    assert imagecache.open_cache(digits, np.arange(41), settings, tmp_path) is None  # another split is another cache


def test_hpa_stains_are_cached_composited(tmp_path):
    hpa = open_dataset("hpa", write_fixture("hpa", tmp_path / "hpa", per_class=1, size=(40, 40)), channels="rgby")
    indices = np.arange(0, len(hpa), 3)
    settings = imagecache.cache_settings(SIZE, "eval")
    imagecache.prepare(hpa, indices, settings, tmp_path, workers=0, progress=False)
    images = imagecache.open_cache(hpa, indices, settings, tmp_path)
    pipeline = transforms.eval_transform(SIZE)
    assert all(np.array_equal(images(i), pipeline(image=hpa.read_image(i))["image"]) for i in indices)
    assert images(indices[0]).shape == (SIZE, SIZE, 4)
    with pytest.raises(errors.UsageError, match="npy"):  # cache.py --format jpeg: one line, no traceback
        imagecache.prepare(hpa, indices, settings, tmp_path, workers=0, fmt="jpeg", progress=False)


def test_changed_source_file_or_settings_make_the_cache_stale(aptos, tmp_path):
    indices = np.arange(len(aptos))
    settings = imagecache.cache_settings(SIZE, "train")
    old = imagecache.prepare(aptos, indices, settings, tmp_path, workers=0, progress=False)
    assert imagecache.open_cache(aptos, indices, imagecache.cache_settings(SIZE + 8, "train"), tmp_path) is None
    assert imagecache.open_cache(aptos, indices, imagecache.cache_settings(SIZE, "eval"), tmp_path) is None

    path = aptos.image_files[5][0]
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched: same bytes, newer time
    assert imagecache.open_cache(aptos, indices, settings, tmp_path) is None

    new_picture = np.full((*SHAPE, 3), 17, dtype=np.uint8)
    write_image(path, new_picture)
    assert imagecache.open_cache(aptos, indices, settings, tmp_path) is None
    reads = count_reads(aptos)
    new = imagecache.prepare(aptos, indices, settings, tmp_path, workers=0, progress=False)
    assert new != old and sorted(reads) == list(indices)
    assert np.array_equal(imagecache.open_cache(aptos, indices, settings, tmp_path)(5), np.full((36, 54, 3), 17))


def test_interrupted_build_resumes_with_the_remaining_chunks_only(aptos, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(build, "CHECKPOINT_SECONDS", 0)  # record progress after every chunk
    indices = np.arange(len(aptos))  # 20 images, chunks of 4
    settings = imagecache.cache_settings(SIZE, "train")
    clean = imagecache.prepare(aptos, indices, settings, tmp_path / "clean", workers=0, progress=False)

    original = aptos.read_image

    def fails_at_image_10(index: int) -> np.ndarray:
        if index == 10:
            raise RuntimeError("power cut")
        return original(index)

    aptos.read_image = fails_at_image_10
    with pytest.raises(RuntimeError, match="power cut"):
        imagecache.prepare(aptos, indices, settings, tmp_path / "cache", workers=0, chunk_size=4, progress=False)
    assert imagecache.open_cache(aptos, indices, settings, tmp_path / "cache") is None
    folder = tmp_path / "cache" / clean.relative_to(tmp_path / "clean")
    assert not (folder / store.MANIFEST).exists()
    # A build killed while writing its next chunk leaves bytes past the recorded point; they must be ignored.
    with open(folder / store.DATA_PARTIAL, "ab") as f:
        f.write(b"half a chunk")
    with open(folder / store.INDEX_PARTIAL, "ab") as f:
        f.write(b"\x01" * 20)

    aptos.read_image = original
    reads = count_reads(aptos)
    assert imagecache.prepare(aptos, indices, settings, tmp_path / "cache", workers=0, chunk_size=4,
                         progress=False) == folder
    assert reads == list(range(8, 20))  # chunks 0-1 were recorded; chunk 2 (images 8-11) onwards is redone
    assert "resuming" in capsys.readouterr().out
    assert stored(folder)[0] == stored(clean)[0] and np.array_equal(stored(folder)[1], stored(clean)[1])
    assert sorted(p.name for p in folder.iterdir()) == sorted([store.LOCK, store.DATA, store.INDEX, store.MANIFEST])


def damage_data(folder: Path) -> Path:
    path = folder / store.DATA
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - 100)
    return path


def damage_index(folder: Path) -> Path:
    path = folder / store.INDEX
    index = np.load(path)
    np.save(path, index[:-1])
    return path


def damage_manifest(folder: Path) -> Path:
    path = folder / store.MANIFEST
    path.write_text(path.read_text()[:50])
    return path


@pytest.mark.parametrize("damage", [damage_data, damage_index, damage_manifest])
def test_damaged_cache_is_refused_naming_the_file_until_rebuilt(aptos, tmp_path, damage):
    indices = np.arange(len(aptos))
    settings = imagecache.cache_settings(SIZE, "eval")
    folder = imagecache.prepare(aptos, indices, settings, tmp_path, workers=0, progress=False)
    damaged = damage(folder)
    for attempt in (lambda: imagecache.open_cache(aptos, indices, settings, tmp_path),
                    lambda: imagecache.prepare(aptos, indices, settings, tmp_path, workers=0, progress=False)):
        with pytest.raises(imagecache.CacheError) as error:
            attempt()
        assert str(damaged) in str(error.value) and "--rebuild" in str(error.value)
    imagecache.prepare(aptos, indices, settings, tmp_path, workers=0, progress=False, rebuild=True)
    assert imagecache.open_cache(aptos, indices, settings, tmp_path)(0).shape == (SIZE, SIZE, 3)


def test_unreadable_image_is_recorded_and_raises_the_same_error_from_the_cache(aptos, tmp_path):
    broken = aptos.image_files[3][0]
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png")
    indices = np.arange(len(aptos))
    settings = imagecache.cache_settings(SIZE, "train")
    imagecache.prepare(aptos, indices, settings, tmp_path, workers=2, progress=False)
    images = imagecache.open_cache(aptos, indices, settings, tmp_path)
    assert images.info["bad_images"] == 1
    with pytest.raises(BadImageError, match=str(broken)):
        images(3)
    assert images(4).shape == (36, 54, 3)


def test_reader_pickles_and_feeds_dataloader_workers_the_same_batches(aptos, tmp_path):
    indices = np.arange(len(aptos))
    settings = imagecache.cache_settings(SIZE, "eval")
    imagecache.prepare(aptos, indices, settings, tmp_path, workers=0, progress=False)
    images = imagecache.open_cache(aptos, indices, settings, tmp_path)
    images(0)  # opens the memory map, which must not travel with a pickle
    assert np.array_equal(pickle.loads(pickle.dumps(images))(2), images(2))

    def batches(reader, workers: int) -> list[np.ndarray]:
        dataset = engine.SampleDataset(aptos, indices, transforms.eval_transform(SIZE), reader=reader)
        return [b["image"].numpy() for b in engine.make_loader(dataset, 8, shuffle=False, workers=workers)]

    from_cache, from_files = batches(images, 2), batches(None, 0)
    assert all(np.array_equal(a, b) for a, b in zip(from_cache, from_files)) and len(from_cache) == 3


def test_eval_view_from_the_cache_equals_the_eval_transform_of_the_original(aptos, tmp_path):
    indices = np.arange(len(aptos))
    pipeline = transforms.eval_transform(SIZE)
    for fmt, tolerance in (("npy", 0.0), ("jpeg", 4.0)):  # JPEG's error on these noisy fixtures is about 3
        settings = imagecache.cache_settings(SIZE, "eval")
        imagecache.prepare(aptos, indices, settings, tmp_path, workers=0, fmt=fmt, progress=False)
        images = imagecache.open_cache(aptos, indices, settings, tmp_path)
        assert images.info["format"] == fmt  # asking for another format rebuilds in that format
        for i in indices:
            cached = images(i)
            assert np.array_equal(pipeline(image=cached)["image"], cached)  # the eval transform is now a no-op
            error = np.abs(cached.astype(float) - pipeline(image=aptos.read_image(i))["image"]).mean()
            assert error <= tolerance


def ramp_image(height: int, width: int) -> np.ndarray:
    """R = relative column, G = relative row (0-255): a crop's pixels say which part of the image it shows."""
    rows, cols = np.mgrid[0:height, 0:width]
    return np.stack([np.rint(255 * cols / (width - 1)), np.rint(255 * rows / (height - 1)),
                     np.zeros_like(rows)], axis=2).astype(np.uint8)


def crop_regions(pipeline, image: np.ndarray, seeds: range) -> np.ndarray:
    """(left, right, top, bottom) of each seeded crop, as fractions of the image's width and height."""
    regions = []
    for seed in seeds:
        transforms.seed_transform(pipeline, seed)
        out = pipeline(image=image)["image"].astype(float) / 255
        n = out.shape[0]
        x0, x1 = sorted((out[:, 0, 0].mean(), out[:, -1, 0].mean()))  # flips swap the ends
        y0, y1 = out[0, :, 1].mean(), out[-1, :, 1].mean()
        # pixel centres of the crop span (n - 1) / n of it: widen back to its edges
        pad_x, pad_y = (x1 - x0) / (2 * (n - 1)), (y1 - y0) / (2 * (n - 1))
        regions.append((x0 - pad_x, x1 + pad_x, y0 - pad_y, y1 + pad_y))
    return np.array(regions)


def test_crops_from_the_cached_copy_cover_the_same_regions_as_from_the_original(tmp_path):
    height, width = 300, 400
    original = ramp_image(height, width)
    samples = Samples(spec=REGISTRY["aptos"], root=tmp_path, ids=["ramp"], labels=np.zeros(1, dtype=np.int64),
                      class_names=REGISTRY["aptos"].class_names, images=original[None])
    img_size = 64
    settings = imagecache.cache_settings(img_size, "train")
    imagecache.prepare(samples, [0], settings, tmp_path, workers=0, progress=False)
    cached = imagecache.open_cache(samples, [0], settings, tmp_path)(0)
    assert cached.shape == (72, 96, 3)  # short side 1.125 x 64, the original's 3:4 kept

    pipeline = transforms.train_transform(REGISTRY["aptos"], img_size)
    summaries = []
    for image in (original, cached):
        regions = crop_regions(pipeline, image, range(300))
        widths, heights = regions[:, 1] - regions[:, 0], regions[:, 3] - regions[:, 2]
        area, aspect = widths * heights, (widths * width) / (heights * height)  # in the original's pixels
        assert area.min() > 0.65 - 0.03 and area.max() < 1 + 0.03
        assert aspect.min() > 3 / 4 - 0.05 and aspect.max() < 4 / 3 + 0.05
        assert regions[:, 0].min() < 0.02 and regions[:, 1].max() > 0.98  # every part of the image gets seen
        assert regions[:, 2].min() < 0.02 and regions[:, 3].max() > 0.98
        summaries.append([area.mean(), aspect.mean(), regions[:, :2].mean(), regions[:, 2:].mean()])
    assert np.allclose(summaries[0], summaries[1], atol=0.02)


def test_train_py_reads_a_jpeg_cache_it_finds_instead_of_rebuilding_it(aptos, tmp_path):
    """cache.py --format jpeg, then train.py --cache build: the JPEG cache is used as it is."""
    indices = np.arange(len(aptos))
    settings = imagecache.cache_settings(SIZE, "train")
    imagecache.prepare(aptos, indices, settings, tmp_path, workers=0, fmt="jpeg", progress=False)
    reads = count_reads(aptos)
    images = imagecache.reader_for(aptos, indices, SIZE, "train", mode="build", cache_dir=str(tmp_path))
    assert images.info["format"] == "jpeg" and reads == []
    fresh = imagecache.reader_for(aptos, indices, SIZE, "eval", mode="build", cache_dir=str(tmp_path))
    assert fresh.info["format"] == "npy"  # nothing there yet: the default format


def test_a_worker_killed_from_outside_is_a_one_line_error_saying_the_build_resumes():
    from common import errors
    from imagecache.worker import WorkerLost, worker_pool
    with worker_pool(1) as pool:
        pool.processes[0].kill()
        with pytest.raises(WorkerLost, match=r"cache worker 0 ended unexpectedly \(killed by SIGKILL.*resume") as error:
            pool.receive()
    assert isinstance(error.value, errors.ExpectedError)
