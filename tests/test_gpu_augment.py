"""Tests for gpu_augment.py: the split crop path gives the CPU path's crops, flips and pixels.

Tolerance: the device output differs from transforms.train_transform's by at most 1 grey level per pixel (cv2
rounds to uint8 with fixed-point weights; the device path computes OpenCV's weights in float32), and by at most
0.35 grey levels on average over a batch.
"""
from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from augment import gpu as G
from augment import transforms as T
from data import REGISTRY
from training import engine

SIZE = 48
# (height, width) of cached images: smaller than SIZE (every crop grows), around it (crops grow in one direction
# and shrink in the other), larger (crops shrink), wide and tall, and too elongated for any 3/4-4/3 crop.
SHAPES = [(30, 40), (40, 30), (52, 54), (54, 60), (64, 80), (90, 70), (130, 100), (60, 200), (210, 50)]


def smooth_image(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """Photo-like: smooth shapes plus grain, so that the resampling method matters but not overwhelmingly."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (6, 8, channels)).astype(np.float32)
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC).reshape(height, width, channels)
    return np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)


def coordinate_image(height: int, width: int) -> np.ndarray:
    """R = column, G = row, B = 255 - column: every output pixel says where in the input it came from."""
    rows, cols = np.mgrid[0:height, 0:width]
    return np.stack([cols, rows, 255 - cols], axis=2).astype(np.uint8)


def cpu_path(pipeline, image: np.ndarray, seed: int) -> tuple[np.ndarray, tuple, bool, bool]:
    """What the CPU path produces and draws: (crop, box, hflip, vflip), read from the transforms' applied params."""
    T.seed_transform(pipeline, seed)
    out = pipeline(image=image)["image"]
    applied = {type(t): bool(t.get_applied_params()) for t in pipeline.transforms[1:]}
    box = tuple(int(v) for v in pipeline.transforms[0].get_applied_params()["crop_coords"])
    return out, box, applied.get(A.HorizontalFlip, False), applied.get(A.VerticalFlip, False)


def device_path(regions: list[G.Region], img_size: int = SIZE, **options) -> np.ndarray:
    batch = G.collate_regions(regions)
    out = G.resized_crops(batch["regions"], batch["sizes"], batch["flips"], img_size, **options)
    return out.permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("dataset", ["cassava", "cct20", "eurosat"])
def test_draws_equal_the_cpu_pipelines_draws(dataset):
    pipeline = T.train_transform(REGISTRY[dataset], SIZE, "paper")
    sampler = G.RegionSampler(T.train_transform(REGISTRY[dataset], SIZE, "paper"))
    seen = set()
    for shape in SHAPES + [(288, 384), (500, 333)]:
        image = smooth_image(*shape)
        for index in range(40):
            seed = engine.sample_seed(7, 3, index)
            _, box, hflip, vflip = cpu_path(pipeline, image, seed)
            region = sampler(image, seed)
            assert (region.box, region.hflip, region.vflip) == (box, hflip, vflip), (shape, index)
            x_min, y_min, x_max, y_max = box
            assert np.shares_memory(region.pixels, image)  # a view: the worker resamples nothing
            assert np.array_equal(region.pixels, image[y_min:y_max, x_min:x_max])
            seen.add((hflip, vflip))
    spec = REGISTRY[dataset]
    expected = {(h, v) for h in ((False, True) if spec.hflip else (False,))
                for v in ((False, True) if spec.vflip else (False,))}
    assert seen == expected  # flips happen exactly where the dataset allows them, in every combination


def test_draws_do_not_depend_on_what_was_drawn_before():
    sampler = G.RegionSampler(T.train_transform(REGISTRY["cassava"], SIZE, "paper"))
    image = smooth_image(90, 70)
    forward = [sampler(image, seed).box for seed in range(20)]
    backward = [sampler(image, seed).box for seed in reversed(range(20))]
    assert forward == backward[::-1]
    assert len(set(forward)) > 10  # and the seeds do matter


@pytest.mark.parametrize("make_image", [smooth_image, coordinate_image])
def test_device_output_matches_the_cpu_path(make_image):
    pipeline = T.train_transform(REGISTRY["cassava"], SIZE, "paper")
    sampler = G.RegionSampler(pipeline)
    regions, expected = [], []
    for index, shape in enumerate(SHAPES * 3):
        image = make_image(*shape)
        seed = engine.sample_seed(1, 0, index)
        expected.append(cpu_path(pipeline, image, seed)[0])
        regions.append(sampler(image, seed))
    sizes = torch.tensor([r.pixels.shape[:2] for r in regions])
    assert set(G.resampling_modes(sizes, SIZE).tolist()) == {G.LINEAR, G.AREA, G.AREA_LINEAR}
    expected = np.stack(expected).astype(np.float32)
    out = device_path(regions)
    assert out.dtype == np.float32 and out.shape == expected.shape
    assert np.abs(out - expected).max() <= 1.0
    assert np.abs(out - expected).mean() <= 0.35
    rounded = device_path(regions, out_dtype=torch.uint8)
    assert rounded.dtype == np.uint8 and np.abs(rounded - expected).max() <= 1
    assert np.array_equal(rounded, np.clip(np.rint(out), 0, 255).astype(np.uint8))


def test_large_crops_match_at_a_real_input_size():
    """256 px from the cache's train variant (short side 288), as a ResNet-50 run reads it."""
    pipeline = T.train_transform(REGISTRY["hpa"], 256, "paper", channels=4)
    sampler = G.RegionSampler(pipeline)
    images = [smooth_image(288, 384, 4, seed=1), smooth_image(384, 288, 4, seed=2), smooth_image(288, 288, 4)]
    regions = [sampler(image, seed) for seed, image in enumerate(images)]
    expected = np.stack([cpu_path(pipeline, image, seed)[0] for seed, image in enumerate(images)])
    assert np.abs(device_path(regions, 256) - expected).max() <= 1.0


def test_flips_mirror_the_resized_crop():
    sampler = G.RegionSampler(T.train_transform(REGISTRY["cassava"], SIZE, "paper"))
    region = sampler(coordinate_image(90, 70), 3)
    variants = [G.Region(region.pixels, region.box, hflip, vflip) for hflip in (False, True) for vflip in (False, True)]
    plain, vertical, horizontal, both = device_path(variants)
    assert np.array_equal(horizontal, plain[:, ::-1])
    assert np.array_equal(vertical, plain[::-1])
    assert np.array_equal(both, plain[::-1, ::-1])
    # the coordinate image: columns decrease from left to right once mirrored, rows once flipped upside down
    assert plain[0, 0, 0] < plain[0, -1, 0] and horizontal[0, 0, 0] > horizontal[0, -1, 0]
    assert plain[0, 0, 1] < plain[-1, 0, 1] and vertical[0, 0, 1] > vertical[-1, 0, 1]


def test_regions_of_different_sizes_batch_like_single_regions():
    sampler = G.RegionSampler(T.train_transform(REGISTRY["cassava"], SIZE, "paper"))
    regions = [sampler(smooth_image(*shape, seed=i), i) for i, shape in enumerate(SHAPES)]
    batch = G.collate_regions(regions)
    heights, widths = zip(*(r.pixels.shape[:2] for r in regions))
    assert tuple(batch["regions"].shape) == (len(regions), 3, max(heights), max(widths))
    assert batch["regions"].is_contiguous(memory_format=torch.channels_last)
    assert batch["sizes"].tolist() == [list(r.pixels.shape[:2]) for r in regions]
    assert batch["flips"].tolist() == [[r.hflip, r.vflip] for r in regions]
    together = device_path(regions)
    alone = np.concatenate([device_path([region]) for region in regions])
    np.testing.assert_allclose(together, alone, atol=1e-3)

    # the padding is never read: fill it with white, then with black
    outputs = []
    for fill in (255, 0):
        padded = batch["regions"].clone()
        for i, (h, w) in enumerate(batch["sizes"].tolist()):
            padded[i, :, h:, :] = fill
            padded[i, :, :, w:] = fill
        outputs.append(G.resized_crops(padded, batch["sizes"], batch["flips"], SIZE))
    assert torch.equal(*outputs)


def test_elongated_images_fall_back_to_the_centre_crop():
    # No crop of area >= 0.65 with aspect 3/4-4/3 fits in 288 x 1000: albumentations takes the central 4/3 crop.
    pipeline = T.train_transform(REGISTRY["eurosat"], 256, "paper")
    sampler = G.RegionSampler(pipeline)
    for shape, box in [((288, 1000), (308, 0, 692, 288)), ((1000, 288), (0, 308, 288, 692))]:
        image = smooth_image(*shape)
        for seed in range(3):
            region = sampler(image, seed)
            assert region.box == box and region.box == cpu_path(pipeline, image, seed)[1]
        assert np.abs(device_path([region], 256) - cpu_path(pipeline, image, seed)[0]).max() <= 1.0


class RegionDataset(Dataset):
    """The worker side as a Dataset would run it: seeds from (seed, epoch, sample)."""

    def __init__(self, images: list[np.ndarray], pipeline):
        self.images, self.sampler = images, G.RegionSampler(pipeline)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: tuple[int, int]) -> G.Region:
        epoch, index = key
        return self.sampler(self.images[index], engine.sample_seed(5, epoch, index))


def test_batches_do_not_depend_on_the_worker_count():
    images = [smooth_image(*SHAPES[i % len(SHAPES)], seed=i) for i in range(12)]
    dataset = RegionDataset(images, T.train_transform(REGISTRY["cassava"], SIZE, "paper"))
    results = []
    for workers in (0, 2):
        sampler = engine.EpochSampler(len(dataset), seed=5)
        sampler.set_epoch(2)
        loader = DataLoader(dataset, batch_size=5, sampler=sampler, num_workers=workers,
                            collate_fn=G.collate_regions)
        results.append([G.resized_crops(b["regions"], b["sizes"], b["flips"], SIZE) for b in loader])
    assert len(results[0]) == 3
    for alone, parallel in zip(*results):
        assert torch.equal(alone, parallel)


def test_resize_runs_in_float32_under_autocast_and_can_return_channels_last():
    sampler = G.RegionSampler(T.train_transform(REGISTRY["cassava"], SIZE, "paper"))
    batch = G.collate_regions([sampler(smooth_image(*shape), i) for i, shape in enumerate(SHAPES)])
    args = (batch["regions"], batch["sizes"], batch["flips"], SIZE)
    plain = G.resized_crops(*args)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = G.resized_crops(*args, channels_last=True)
    assert autocast.dtype == torch.float32 and torch.equal(autocast, plain)
    assert autocast.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_gives_the_cpu_result():
    sampler = G.RegionSampler(T.train_transform(REGISTRY["cassava"], 256, "paper"))
    batch = G.collate_regions([sampler(smooth_image(288, 384, seed=i), i) for i in range(8)])
    cpu = G.resized_crops(batch["regions"], batch["sizes"], batch["flips"], 256)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        cuda = G.resized_crops(batch["regions"].cuda(), batch["sizes"], batch["flips"].cuda(), 256)
    assert cuda.is_cuda and (cuda.cpu() - cpu).abs().max() <= 1e-3


@pytest.mark.parametrize("augment", ["none", "randaugment", "augmix", "kaggle"])
def test_only_the_paper_pipeline_can_be_split(augment):
    with pytest.raises(ValueError, match="only the 'paper' pipeline"):
        G.RegionSampler(T.train_transform(REGISTRY["cassava"], SIZE, augment))


def test_every_dataset_paper_pipeline_can_be_split():
    for spec in REGISTRY.values():
        assert G.RegionSampler(T.train_transform(spec, 224, "paper")).img_size == 224


def test_bad_batches_are_refused():
    batch = G.collate_regions([G.Region(np.zeros((10, 12, 3), np.uint8), (0, 0, 12, 10), False, False)])
    with pytest.raises(ValueError, match="within 1..10 x 1..12"):
        G.resized_crops(batch["regions"], torch.tensor([[11, 12]]), batch["flips"], SIZE)
    with pytest.raises(ValueError, match="img_size must be a positive integer"):
        G.resized_crops(batch["regions"], batch["sizes"], batch["flips"], 0)
    with pytest.raises(ValueError, match="uint8"):
        G.resized_crops(batch["regions"].float(), batch["sizes"], batch["flips"], SIZE)
    with pytest.raises(ValueError, match="H x W x C uint8"):
        G.RegionSampler(T.train_transform(REGISTRY["cassava"], SIZE, "paper"))(np.zeros((10, 12)), 0)
