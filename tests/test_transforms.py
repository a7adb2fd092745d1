"""Tests for transforms.py: pipeline shapes, the paper's crop and flips, the eval resize, normalize, TTA, seeding."""
from __future__ import annotations

import pickle
import random

import cv2
import numpy as np
import pytest
import torch
from torchvision.transforms import v2

from augment import transforms as T
from data import REGISTRY

SIZE = 48


def coordinate_image(size: int = 256) -> np.ndarray:
    """R = column, G = row, B = 0: every output pixel says where in the input it came from."""
    rows, cols = np.mgrid[0:size, 0:size]
    return np.stack([cols, rows, np.zeros_like(rows)], axis=2).astype(np.uint8)


def smooth_image(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """A low-frequency image, on which different resamplers agree closely."""
    coarse = np.random.default_rng(seed).integers(0, 256, (8, 10, channels)).astype(np.float32)
    return np.clip(cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)


def crop_geometry(out: np.ndarray, source_size: int = 256) -> tuple[float, float, bool, bool]:
    """Area fraction, aspect (w / h) and mirroring of the crop an output of coordinate_image shows."""
    n = out.shape[0]
    x = out[..., 0].astype(np.float64)
    y = out[..., 1].astype(np.float64)
    # Resampling keeps a linear ramp linear: the last minus the first pixel centre spans (n - 1) / n of the crop.
    width = abs(x[:, -1].mean() - x[:, 0].mean()) * n / (n - 1)
    height = abs(y[-1, :].mean() - y[0, :].mean()) * n / (n - 1)
    return width * height / source_size ** 2, width / height, x[0, 0] > x[0, -1], y[0, 0] > y[-1, 0]


@pytest.mark.parametrize("channels", [3, 4])
@pytest.mark.parametrize("augment", T.AUGMENTATIONS)
def test_every_augmentation_returns_a_square_uint8_crop(augment, channels):
    pipeline = T.train_transform(REGISTRY["cassava"], SIZE, augment, channels=channels)
    T.seed_transform(pipeline, 0)
    image = np.random.default_rng(1).integers(0, 256, (90, 130, channels), dtype=np.uint8)
    for _ in range(5):
        out = pipeline(image=image)["image"]
        assert out.shape == (SIZE, SIZE, channels) and out.dtype == np.uint8


def test_every_augmentation_is_described():
    assert tuple(T.AUGMENTATION_HELP) == T.AUGMENTATIONS


@pytest.mark.parametrize("channels", [3, 4])
def test_each_randaugment_and_augmix_op_keeps_shape_and_dtype(channels):
    image = smooth_image(40, 50, channels)
    ops = [(name, op) for name, op in T.RANDAUGMENT_OPS.items() if channels == 3 or name not in T.RGB_ONLY_OPS]
    ops += list(T.AUGMIX_OPS.items())
    for name, op in ops:
        for strength in (-1.0, 0.3, 1.0):
            out = op(image, strength)
            assert out.shape == image.shape and out.dtype == np.uint8, name


def test_randaugment_skips_colour_ops_on_rgby_images():
    transform = T.RandAugment(num_ops=2, magnitude=9)
    T.seed_transform(transform, 0)
    seen = {3: set(), 4: set()}
    for channels in (3, 4):
        image = smooth_image(32, 32, channels)
        for _ in range(150):
            transform(image=image)
            seen[channels].update(name for name, _ in transform.params["ops"])
    assert set(T.RGB_ONLY_OPS) <= seen[3]
    assert not set(T.RGB_ONLY_OPS) & seen[4]
    assert seen[4] == set(T.RANDAUGMENT_OPS) - set(T.RGB_ONLY_OPS)


def test_custom_ops_reject_non_uint8_images():
    with pytest.raises(ValueError, match="uint8"):
        T.RandAugment(num_ops=1)(image=np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        T.AugMix()(image=np.zeros((8, 8, 3), np.float32))


def test_paper_crop_covers_its_area_and_aspect_ranges_without_flips_on_eurosat():
    pipeline = T.train_transform(REGISTRY["eurosat"], 64, "paper")  # EuroSAT: the paper uses no flips
    T.seed_transform(pipeline, 0)
    image = coordinate_image()
    areas, aspects = [], []
    for _ in range(300):
        area, aspect, h_mirrored, v_mirrored = crop_geometry(pipeline(image=image)["image"])
        assert not h_mirrored and not v_mirrored
        areas.append(area)
        aspects.append(aspect)
    tolerance = 0.02  # uint8 rounding of the coordinates
    assert 0.65 - tolerance <= min(areas) and max(areas) <= 1 + tolerance
    assert 3 / 4 - tolerance <= min(aspects) and max(aspects) <= 4 / 3 + tolerance
    assert min(areas) < 0.70 and max(areas) > 0.95  # the whole range is used, not a fixed crop
    assert min(aspects) < 0.80 and max(aspects) > 1.25


def test_crop_scale_argument_is_honoured():
    pipeline = T.train_transform(REGISTRY["eurosat"], 64, "paper", scale=(0.2, 0.3))
    T.seed_transform(pipeline, 0)
    areas = [crop_geometry(pipeline(image=coordinate_image())["image"])[0] for _ in range(50)]
    assert 0.2 - 0.02 <= min(areas) and max(areas) <= 0.3 + 0.02


@pytest.mark.parametrize("dataset", ["cassava", "cct20", "eurosat"])
def test_flips_follow_the_dataset_spec_independently(dataset):
    spec = REGISTRY[dataset]
    pipeline = T.train_transform(spec, 32, "paper")
    T.seed_transform(pipeline, 1)
    image = coordinate_image()
    counts: dict[tuple[bool, bool], int] = {}
    draws = 400
    for _ in range(draws):
        key = crop_geometry(pipeline(image=image)["image"])[2:]
        counts[key] = counts.get(key, 0) + 1
    horizontal = [False, True] if spec.hflip else [False]
    vertical = [False, True] if spec.vflip else [False]
    expected = [(h, v) for h in horizontal for v in vertical]
    assert sorted(counts) == sorted(expected)
    for key in expected:  # each allowed combination about equally often: the two flips are independent
        assert abs(counts[key] / draws - 1 / len(expected)) < 0.08, counts


@pytest.mark.parametrize("shape, resize_size", [((150, 220), 72), ((223, 151), 65), ((40, 50), 64)])
def test_eval_transform_matches_torchvision_resize_and_centre_crop(shape, resize_size):
    image = smooth_image(*shape)
    ours = T.eval_transform(64, resize_size)(image=image)["image"]
    reference = v2.CenterCrop(64)(v2.Resize(resize_size, antialias=True)(torch.from_numpy(image).permute(2, 0, 1)))
    reference = reference.permute(1, 2, 0).numpy()
    assert ours.shape == reference.shape == (64, 64, 3) and ours.dtype == np.uint8
    assert np.abs(ours.astype(int) - reference.astype(int)).mean() < 1  # a pixel of offset would give ~4


def test_none_augmentation_is_the_eval_transform():
    image = smooth_image(90, 120)
    train = T.train_transform(REGISTRY["cassava"], SIZE, "none")(image=image)["image"]
    assert np.array_equal(train, T.eval_transform(SIZE)(image=image)["image"])


def test_bad_arguments_are_named():
    spec = REGISTRY["cassava"]
    with pytest.raises(ValueError, match="unknown augmentation 'mixup'"):
        T.train_transform(spec, SIZE, "mixup")
    with pytest.raises(ValueError, match="scale"):
        T.train_transform(spec, SIZE, "paper", scale=(0.9, 0.5))
    with pytest.raises(ValueError, match="resize_size"):
        T.eval_transform(64, 32)
    with pytest.raises(ValueError, match="magnitude"):
        T.RandAugment(magnitude=31)


@pytest.mark.parametrize("channels", [3, 4])
def test_normalize_equals_scaled_and_standardised_batch(channels):
    batch = torch.randint(0, 256, (2, channels, 5, 7), dtype=torch.uint8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    full_mean = list(mean) + ([sum(mean) / 3] if channels == 4 else [])
    full_std = list(std) + ([sum(std) / 3] if channels == 4 else [])
    expected = (batch.float() / 255 - torch.tensor(full_mean).view(1, -1, 1, 1)) / torch.tensor(full_std).view(
        1, -1, 1, 1)
    out = T.normalize(batch, mean, std)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_normalize_keeps_channels_last_and_rejects_bad_input():
    batch = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8).contiguous(memory_format=torch.channels_last)
    assert T.normalize(batch, (0.5,) * 3, (0.5,) * 3).is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="uint8"):
        T.normalize(batch.float(), (0.5,) * 3, (0.5,) * 3)
    with pytest.raises(ValueError, match="mean has 2 values"):
        T.normalize(batch, (0.5, 0.5), (0.5,) * 3)


def test_tta_views():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    assert T.tta_views(x) == [x]
    flips = T.tta_views(x, "flips")
    assert len(flips) == 2 and torch.equal(flips[0], x)
    assert torch.equal(flips[1][..., 0], x[..., -1])  # the first column is the last one mirrored
    with_vflip = T.tta_views(x, "flips", vflip=True)
    assert len(with_vflip) == 3 and torch.equal(with_vflip[2][..., 0, :], x[..., -1, :])
    dihedral = T.tta_views(x, "dihedral")
    assert len(dihedral) == 8 and all(view.shape == x.shape for view in dihedral)
    assert len({tuple(view.flatten().tolist()) for view in dihedral}) == 8  # all distinct
    for expected in (x, x.flip(-1), x.flip(-2), x.transpose(-2, -1)):
        assert any(torch.equal(view, expected) for view in dihedral)
    with pytest.raises(ValueError, match="square"):
        T.tta_views(torch.zeros(1, 3, 4, 5), "dihedral")
    with pytest.raises(ValueError, match="unknown TTA mode"):
        T.tta_views(x, "fivecrop")


@pytest.mark.parametrize("augment", ["paper", "randaugment", "augmix", "kaggle", "aptos-kaggle"])
def test_seeding_reproduces_a_pipeline_exactly(augment):
    image = np.random.default_rng(2).integers(0, 256, (70, 90, 3), dtype=np.uint8)

    def run(pipeline, seed):
        T.seed_transform(pipeline, seed)
        outputs = []
        for _ in range(6):
            np.random.seed(random.randrange(1000))  # global random state must not matter
            random.seed(np.random.randint(1000))
            outputs.append(pipeline(image=image)["image"])
        return outputs

    first = T.train_transform(REGISTRY["cassava"], 32, augment)
    second = T.train_transform(REGISTRY["cassava"], 32, augment)  # as built in another worker or after a resume
    reference = run(first, (7, 3))
    assert all(np.array_equal(a, b) for a, b in zip(reference, run(second, (7, 3))))
    copied = pickle.loads(pickle.dumps(first))  # what a spawned DataLoader worker receives
    assert all(np.array_equal(a, b) for a, b in zip(reference, run(copied, (7, 3))))
    assert not all(np.array_equal(a, b) for a, b in zip(reference, run(first, (7, 4))))
    assert all(np.array_equal(a, b) for a, b in zip(reference, run(first, (7, 3))))


def test_aptos_kaggle_recipe_rotates_flips_and_jitters_colour():
    pipeline = T.train_transform(REGISTRY["aptos"], 64, "aptos-kaggle")
    names = [type(step).__name__ for step in pipeline.transforms]
    assert names == ["RandomResizedCrop", "HorizontalFlip", "VerticalFlip", "Rotate", "ColorJitter"]
    jitter = pipeline.transforms[-1]
    assert (jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue) == ((0.8, 1.2), (0.8, 1.2),
                                                                                (0.8, 1.2), (-0.1, 0.1))
    assert pipeline.transforms[3].limit == (-180, 180)
    image = np.random.default_rng(0).integers(0, 256, (80, 100, 3), dtype=np.uint8)
    T.seed_transform(pipeline, 1)
    assert pipeline(image=image)["image"].shape == (64, 64, 3)
