"""Tests for data/verify.py and cache.py --verify-images: every image decoded up front, in parallel, once; bad ones
reported by name with the way out, before any compute."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cache
import imagecache
from data import Samples, open_dataset
from data.images import check_image_file
from data.synthetic import write_fixture
from imagecache.verify import MEMO_NAME, BadImage, BadImagesError, verify_images

from image_reads import count_reads  # tests/image_reads.py

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def eurosat_with_a_truncated_jpeg(tmp_path: Path) -> tuple[Samples, int]:
    root = write_fixture("eurosat", tmp_path / "eurosat", per_class=2, size=(48, 64))
    samples = open_dataset("eurosat", root)
    broken = 7
    path = samples.image_files[broken][0]
    data = path.read_bytes()
    path.write_bytes(data[:len(data) * 2 // 3])  # a download cut short: the header is intact, the tail missing
    return samples, broken


def test_a_truncated_jpeg_passes_the_header_check_and_is_reported_by_verification(eurosat_with_a_truncated_jpeg,
                                                                                   tmp_path):
    samples, broken = eurosat_with_a_truncated_jpeg
    path = samples.image_files[broken][0]
    assert check_image_file(path) is None  # the loaders' cheap check sees a JPEG
    assert open_dataset("eurosat", samples.root) is not None

    bad = verify_images(samples, np.arange(len(samples)), workers=2, memo_dir=tmp_path / "cache", progress=False)
    assert bad == [BadImage(broken, path, "image cannot be decoded (corrupt or truncated file)")]
    message = str(BadImagesError("eurosat", bad))
    assert str(path) in message and "--skip-bad-images" in message and "1 image(s) cannot be decoded" in message
    assert (tmp_path / "cache" / "eurosat" / MEMO_NAME).exists()


def test_verified_files_are_remembered_until_they_change(eurosat_with_a_truncated_jpeg, tmp_path):
    samples, broken = eurosat_with_a_truncated_jpeg
    indices = np.arange(len(samples))
    first = verify_images(samples, indices, workers=0, memo_dir=tmp_path, progress=False)
    reads = count_reads(samples)
    assert verify_images(samples, indices, workers=0, memo_dir=tmp_path, progress=False) == first
    assert reads == []  # paid once, the bad image included

    touched = samples.image_files[3][0]
    stat = touched.stat()
    os.utime(touched, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert verify_images(samples, indices, workers=0, memo_dir=tmp_path, progress=False) == first
    assert reads == [3]
    assert verify_images(samples, indices[:5], workers=0, memo_dir=tmp_path / "other", progress=False) == []
    assert reads == [3, 0, 1, 2, 3, 4]  # another memo folder knows nothing


def test_building_a_cache_verifies_every_image_in_the_same_pass(eurosat_with_a_truncated_jpeg, tmp_path):
    samples, broken = eurosat_with_a_truncated_jpeg
    indices = np.arange(len(samples))
    imagecache.prepare(samples, indices, imagecache.cache_settings(32, "train"), tmp_path, workers=2, progress=False)
    reads = count_reads(samples)
    bad = verify_images(samples, indices, workers=0, memo_dir=tmp_path, progress=False)
    assert reads == [] and [image.sample for image in bad] == [broken]


def test_cache_py_reports_every_bad_image_after_building_unless_told_to_skip_them(eurosat_with_a_truncated_jpeg,
                                                                                  tmp_path, monkeypatch, capsys):
    samples, broken = eurosat_with_a_truncated_jpeg
    monkeypatch.chdir(tmp_path)
    args = ["eurosat", "--root", str(samples.root), "--img-size", "32", "--workers", "2", "--cache-dir", "c"]
    with pytest.raises(BadImagesError, match="the cache is built and records them") as error:
        cache.main(args)
    assert str(samples.image_files[broken][0]) in str(error.value)
    assert cache.main([*args, "--skip-bad-images"]) == 0
    assert str(samples.image_files[broken][0]) in capsys.readouterr().out


def test_cache_py_verify_images_reports_before_building_anything(eurosat_with_a_truncated_jpeg, tmp_path):
    samples, broken = eurosat_with_a_truncated_jpeg
    result = subprocess.run([sys.executable, str(REPO / "cache.py"), "eurosat", "--root", str(samples.root),
                             "--verify-images", "--workers", "2", "--cache-dir", str(tmp_path / "c")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert "\ncache.py: error: dataset 'eurosat': 1 image(s) cannot be decoded:\n" in result.stderr
    assert str(samples.image_files[broken][0]) in result.stderr and "--skip-bad-images" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in (tmp_path / "c" / "eurosat").iterdir()) == [f".{MEMO_NAME}.lock", MEMO_NAME]
