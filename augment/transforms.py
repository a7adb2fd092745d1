"""Augmentation pipelines: the one place that turns a decoded image into a training or evaluation crop.

    from augment.transforms import train_transform, eval_transform, seed_transform, normalize
    pipeline = train_transform(spec, img_size=224, augment="paper")  # albumentations Compose
    seed_transform(pipeline, (run_seed, epoch, sample_index))         # reproducible, whatever the worker
    crop = pipeline(image=image)["image"]                             # img_size x img_size x C uint8
    inputs = normalize(batch.to(device), mean, std)                   # on the device, whole batches

Every pipeline takes an H x W x C uint8 image (RGB, or RGBY for HPA) and returns an img_size x img_size x C uint8
image. Normalisation is not part of it: batches travel as uint8 (4x less to copy) and `normalize` runs on the
device. `tta_views` makes the test-time-augmentation views of a device batch.

All resampling is bilinear, like torchvision's default, and switches to cv2.INTER_AREA whenever an image shrinks:
INTER_AREA is cv2's antialiased downscale, the counterpart of torchvision's Resize(antialias=True) and PIL.

albumentations 2.x keeps its own random state, untouched by np.random.seed or random.seed. A pipeline built here
starts from fresh entropy; call `seed_transform` to make it reproducible, and call it in every DataLoader worker
(or per sample), since forked workers otherwise inherit identical generators and draw identical augmentations.
"""
from __future__ import annotations

import functools
import os
import random
from collections.abc import Callable, Sequence
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # else every process asks the network for a newer version
import albumentations as A  # noqa: E402
import cv2
import numpy as np
import torch

from augment import AUGMENTATION_HELP, AUGMENTATIONS, TTA_MODES  # noqa: F401  (the names; the pipelines are here)
from data import DatasetSpec
from data.images import resize_center_crop

PAPER_SCALE = (0.65, 1.0)
PAPER_RATIO = (3 / 4, 4 / 3)
# Appendix F's two settings for APTOS: "Less augmentation only uses random resize crop with at least 0.65 area and
# horizontal flips"; the other adds "random rotations, color jitter". The paper names no crop area for the latter:
# both keep the paper's (0.65-1), so that they differ only by the rotations and the jitter.
APPENDIX_F = ("appendix-f-less", "appendix-f-more")


# ---------------------------------------------------------------------------------------------------------------
# Image ops shared by RandAugment and AugMix: uint8 H x W x C in, uint8 out, any channel count unless noted.
# Geometric ops resample bilinearly and fill uncovered pixels with black.

def _warp(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    out = cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out.reshape(image.shape)  # cv2 drops a trailing channel axis of size 1


def _rotate(image: np.ndarray, degrees: float) -> np.ndarray:
    height, width = image.shape[:2]
    return _warp(image, cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), degrees, 1.0))


def _shear(image: np.ndarray, shear_x: float, shear_y: float) -> np.ndarray:
    return _warp(image, np.array([[1.0, shear_x, 0.0], [shear_y, 1.0, 0.0]]))


def _translate(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    return _warp(image, np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]]))


def _blend(degenerate: np.ndarray, image: np.ndarray, factor: float) -> np.ndarray:
    """PIL ImageEnhance semantics: factor 0 gives `degenerate`, 1 the image, above 1 extrapolates."""
    degenerate = degenerate.astype(np.float32)
    out = degenerate + factor * (image.astype(np.float32) - degenerate)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _luminance(image: np.ndarray) -> np.ndarray:
    """H x W x 1 float32 grey level of an RGB image (ITU-R 601, as PIL's convert("L"))."""
    return image.astype(np.float32) @ np.array([[0.299], [0.587], [0.114]], dtype=np.float32)


def _brightness(image: np.ndarray, factor: float) -> np.ndarray:
    return _blend(np.zeros_like(image), image, factor)


def _saturation(image: np.ndarray, factor: float) -> np.ndarray:  # RGB only
    return _blend(np.broadcast_to(_luminance(image), image.shape), image, factor)


def _contrast(image: np.ndarray, factor: float) -> np.ndarray:  # RGB only
    return _blend(np.full(image.shape, _luminance(image).mean(), dtype=np.float32), image, factor)


def _sharpness(image: np.ndarray, factor: float) -> np.ndarray:
    kernel = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], dtype=np.float32) / 13
    smooth = cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REPLICATE).reshape(image.shape)
    smooth[0, :], smooth[-1, :], smooth[:, 0], smooth[:, -1] = image[0, :], image[-1, :], image[:, 0], image[:, -1]
    return _blend(smooth, image, factor)


def _posterize(image: np.ndarray, bits: int) -> np.ndarray:
    return image & np.uint8((0xFF << (8 - bits)) & 0xFF)


def _solarize(image: np.ndarray, threshold: float) -> np.ndarray:
    return np.where(image >= threshold, 255 - image, image)


def _autocontrast(image: np.ndarray) -> np.ndarray:
    low = image.min(axis=(0, 1)).astype(np.float32)
    high = image.max(axis=(0, 1)).astype(np.float32)
    flat = high <= low  # a constant channel stays as it is
    scale = np.where(flat, 1.0, 255.0 / np.where(flat, 1.0, high - low))
    out = (image.astype(np.float32) - np.where(flat, 0.0, low)) * scale
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _equalize(image: np.ndarray) -> np.ndarray:
    return np.stack([cv2.equalizeHist(np.ascontiguousarray(image[..., c])) for c in range(image.shape[2])], axis=2)


# RandAugment's ops as torchvision defines them; `m` is the signed strength in [-1, 1] (magnitude / 30, random sign).
RANDAUGMENT_OPS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "identity": lambda im, m: im,
    "shear_x": lambda im, m: _shear(im, 0.3 * m, 0.0),
    "shear_y": lambda im, m: _shear(im, 0.0, 0.3 * m),
    "translate_x": lambda im, m: _translate(im, 150 / 331 * m * im.shape[1], 0.0),
    "translate_y": lambda im, m: _translate(im, 0.0, 150 / 331 * m * im.shape[0]),
    "rotate": lambda im, m: _rotate(im, 30.0 * m),
    "brightness": lambda im, m: _brightness(im, 1 + 0.9 * m),
    "color": lambda im, m: _saturation(im, 1 + 0.9 * m),
    "contrast": lambda im, m: _contrast(im, 1 + 0.9 * m),
    "sharpness": lambda im, m: _sharpness(im, 1 + 0.9 * m),
    "posterize": lambda im, m: _posterize(im, 8 - round(4 * abs(m))),
    "solarize": lambda im, m: _solarize(im, 255.0 * (1 - abs(m))),
    "autocontrast": lambda im, m: _autocontrast(im),
    "equalize": lambda im, m: _equalize(im),
}
RGB_ONLY_OPS = ("color", "contrast")  # they read colour through RGB luminance weights

# AugMix's ops (Hendrycks et al. leave out colour ops, which overlap ImageNet-C); `v` is level / 10 with
# level ~ U(0.1, severity), signed for the geometric ops. All of them work on any number of channels.
AUGMIX_OPS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "autocontrast": lambda im, v: _autocontrast(im),
    "equalize": lambda im, v: _equalize(im),
    "posterize": lambda im, v: _posterize(im, 4 - int(4 * abs(v))),
    "solarize": lambda im, v: _solarize(im, 256 - int(256 * abs(v))),
    "rotate": lambda im, v: _rotate(im, 30.0 * v),
    "shear_x": lambda im, v: _shear(im, 0.3 * v, 0.0),
    "shear_y": lambda im, v: _shear(im, 0.0, 0.3 * v),
    "translate_x": lambda im, v: _translate(im, v * im.shape[1] / 3, 0.0),
    "translate_y": lambda im, v: _translate(im, 0.0, v * im.shape[0] / 3),
}


def _check_uint8(name: str, image: np.ndarray) -> None:
    if image.dtype != np.uint8 or image.ndim != 3:
        raise ValueError(f"{name} expects an H x W x C uint8 image, got shape {image.shape} dtype {image.dtype}")


class RandAugment(A.ImageOnlyTransform):
    """RandAugment (Cubuk et al. 2020): each call applies `num_ops` ops, drawn uniformly with replacement from
    RANDAUGMENT_OPS, at `magnitude` on the 0-30 scale (torchvision's; timm's "m9" means 9 of 10) with a random sign.

    Images that are not 3-channel (HPA's RGBY) draw from the ops without RGB_ONLY_OPS. Randomness comes only from
    the pipeline's generator, so `seed_transform` reproduces it.
    """

    MAX_MAGNITUDE = 30

    def __init__(self, num_ops: int = 2, magnitude: int = 9, p: float = 1.0):
        super().__init__(p=p)
        if num_ops < 0:
            raise ValueError(f"RandAugment num_ops must be >= 0, got {num_ops}")
        if not 0 <= magnitude <= self.MAX_MAGNITUDE:
            raise ValueError(f"RandAugment magnitude must be in [0, {self.MAX_MAGNITUDE}], got {magnitude}")
        self.num_ops, self.magnitude = num_ops, magnitude

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        shape = params["shape"]
        rgb = len(shape) == 3 and shape[2] == 3
        names = [name for name in RANDAUGMENT_OPS if rgb or name not in RGB_ONLY_OPS]
        picks = self.random_generator.integers(len(names), size=self.num_ops)
        signs = self.random_generator.choice([-1.0, 1.0], size=self.num_ops)
        return {"ops": [(names[i], float(sign)) for i, sign in zip(picks, signs)]}

    def apply(self, img: np.ndarray, ops: Sequence[tuple[str, float]] = (), **params: Any) -> np.ndarray:
        _check_uint8("RandAugment", img)
        strength = self.magnitude / self.MAX_MAGNITUDE
        for name, sign in ops:
            img = RANDAUGMENT_OPS[name](img, sign * strength)
        return img

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("num_ops", "magnitude")


class AugMix(A.ImageOnlyTransform):
    """AugMix (Hendrycks et al. 2020) on uint8 images: `width` chains of `depth` ops (depth 1-3 at random when
    depth is -1) drawn from AUGMIX_OPS at the given severity, mixed with Dirichlet(alpha) weights, then blended
    with the original image with a Beta(alpha, alpha) weight. Randomness comes only from the pipeline's generator.
    """

    def __init__(self, severity: int = 3, width: int = 3, depth: int = -1, alpha: float = 1.0, p: float = 1.0):
        super().__init__(p=p)
        if not 1 <= severity <= 10:
            raise ValueError(f"AugMix severity must be in [1, 10], got {severity}")
        if width < 1 or depth == 0 or depth < -1 or alpha <= 0:
            raise ValueError(f"AugMix needs width >= 1, depth >= 1 or -1 and alpha > 0; "
                             f"got width={width}, depth={depth}, alpha={alpha}")
        self.severity, self.width, self.depth, self.alpha = severity, width, depth, alpha

    def get_params(self) -> dict[str, Any]:
        rng, names = self.random_generator, list(AUGMIX_OPS)
        chains = []
        for _ in range(self.width):
            depth = self.depth if self.depth > 0 else int(rng.integers(1, 4))
            levels = rng.uniform(0.1, self.severity, size=depth) / 10 * rng.choice([-1.0, 1.0], size=depth)
            chains.append([(names[i], float(v)) for i, v in zip(rng.integers(len(names), size=depth), levels)])
        return {"chains": chains,
                "weights": rng.dirichlet([self.alpha] * self.width).tolist(),
                "mix": float(rng.beta(self.alpha, self.alpha))}

    def apply(self, img: np.ndarray, chains: Sequence[Sequence[tuple[str, float]]] = (),
              weights: Sequence[float] = (), mix: float = 0.0, **params: Any) -> np.ndarray:
        _check_uint8("AugMix", img)
        mixed = np.zeros(img.shape, dtype=np.float32)
        for weight, chain in zip(weights, chains):
            augmented = img
            for name, level in chain:
                augmented = AUGMIX_OPS[name](augmented, level)
            mixed += weight * augmented.astype(np.float32)
        out = (1 - mix) * img.astype(np.float32) + mix * mixed
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("severity", "width", "depth", "alpha")


# ---------------------------------------------------------------------------------------------------------------
# Pipelines

def _check_size(name: str, value: int) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _paper_crop(img_size: int, scale: tuple[float, float]) -> A.RandomResizedCrop:
    return A.RandomResizedCrop((img_size, img_size), scale=scale, ratio=PAPER_RATIO,
                               interpolation=cv2.INTER_LINEAR, area_for_downscale="image")


def _flips(spec: DatasetSpec) -> list[A.BasicTransform]:
    return ([A.HorizontalFlip(p=0.5)] if spec.hflip else []) + ([A.VerticalFlip(p=0.5)] if spec.vflip else [])


def train_transform(spec: DatasetSpec, img_size: int, augment: str = "paper",
                    scale: tuple[float, float] = PAPER_SCALE, *, channels: int = 3,
                    ra_num_ops: int = 2, ra_magnitude: int = 9) -> A.Compose:
    """The training pipeline `augment` (one of AUGMENTATIONS) for dataset `spec` at `img_size`.

    `scale` is RandomResizedCrop's area range; `channels` (3, or 4 for HPA's RGBY) only matters to "kaggle",
    whose hue/saturation jitter is 3-channel only; `ra_*` configure "randaugment". Seed it with `seed_transform`.
    """
    _check_size("img_size", img_size)
    if augment not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation '{augment}'; known: {', '.join(AUGMENTATIONS)}")
    if not (len(scale) == 2 and 0 < scale[0] <= scale[1] <= 1):
        raise ValueError(f"scale must be (low, high) with 0 < low <= high <= 1, got {scale!r}")
    if channels not in (3, 4):
        raise ValueError(f"channels must be 3 (RGB) or 4 (RGBY), got {channels!r}")
    if augment == "none":
        return eval_transform(img_size)

    steps: list[A.BasicTransform] = [_paper_crop(img_size, tuple(scale))]
    if augment == "kaggle" and spec.hflip and spec.vflip:
        steps.append(A.SquareSymmetry(p=1.0))  # the crop is square, so all 8 rotations/reflections are valid
    elif augment in APPENDIX_F:
        steps.append(A.HorizontalFlip(p=0.5))  # Appendix F names horizontal flips, whatever the dataset's
    else:
        steps += _flips(spec)
    if augment == "randaugment":
        steps.append(RandAugment(num_ops=ra_num_ops, magnitude=ra_magnitude))
    elif augment == "augmix":
        steps.append(AugMix())
    elif augment in ("aptos-kaggle", "appendix-f-more"):  # a fundus photograph has no up or left: any rotation
        steps += [A.VerticalFlip(p=0.5)] if augment == "aptos-kaggle" and not spec.vflip else []
        steps += [A.Rotate(limit=(-180, 180), interpolation=cv2.INTER_LINEAR, border_mode=cv2.BORDER_CONSTANT,
                           fill=0, p=1.0)]
        if channels == 3:  # Appendix F: "color jitter (brightness=0.2, contrast=0.2, saturation=0.2, hue=0.1)"
            steps.append(A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.1, p=1.0))
    elif augment == "kaggle":
        steps += [A.Affine(scale=(0.9, 1.1), translate_percent=(-0.0625, 0.0625), rotate=(-15, 15),
                           interpolation=cv2.INTER_LINEAR, border_mode=cv2.BORDER_CONSTANT, fill=0, p=0.5),
                  A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.5)]
        if channels == 3:
            steps.append(A.HueSaturationValue(hue_shift_limit=10, sat_shift_limit=20, val_shift_limit=10, p=0.5))
    return A.Compose(steps)


class ResizeCenterCrop(A.ImageOnlyTransform):
    """torchvision's Resize(resize_size) + CenterCrop(crop_size), pixel geometry included (cache_worker's
    resize_center_crop, the one definition, which the cache workers use without albumentations).
    (albumentations' SmallestMaxSize rounds the long side and CenterCrop floors the offset: up to a pixel off.)"""

    def __init__(self, resize_size: int, crop_size: int, p: float = 1.0):
        super().__init__(p=p)
        self.resize_size, self.crop_size = resize_size, crop_size

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        return resize_center_crop(img, self.resize_size, self.crop_size)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("resize_size", "crop_size")


def eval_transform(img_size: int, resize_size: int | None = None) -> A.Compose:
    """Resize the short side to `resize_size` (default img_size, as the paper) keeping the aspect ratio, then
    take the centre img_size x img_size crop: torchvision's Resize(resize_size) + CenterCrop(img_size)."""
    _check_size("img_size", img_size)
    resize_size = img_size if resize_size is None else resize_size
    _check_size("resize_size", resize_size)
    if resize_size < img_size:
        raise ValueError(f"resize_size ({resize_size}) must be >= img_size ({img_size}) to centre-crop img_size")
    return A.Compose([ResizeCenterCrop(resize_size, img_size)])


def seed_transform(transform: A.BaseCompose | A.BasicTransform, seed: int | Sequence[int]) -> None:
    """Reseed a pipeline (and every transform in it, RandAugment and AugMix included) from `seed`.

    `seed` may be a tuple such as (run_seed, epoch, sample_index): combinations never collide. One numpy Generator
    and one random.Random are shared by the whole pipeline. (albumentations' own Compose(seed=...) gives each
    transform its own generator with the same seed, so e.g. the horizontal and the vertical flip fire together.)
    """
    numpy_seed, python_seed = np.random.SeedSequence(seed).spawn(2)
    transform.set_random_state(np.random.default_rng(numpy_seed),
                               random.Random(int(python_seed.generate_state(1, np.uint64)[0])))


# ---------------------------------------------------------------------------------------------------------------
# Device-side batch operations

def _per_channel(values: Sequence[float], channels: int, what: str) -> list[float]:
    values = [float(v) for v in values]
    if len(values) == channels:
        return values
    if len(values) == 3 and channels == 4:
        return values + [sum(values) / 3]  # HPA's yellow channel: no ImageNet statistic, use the RGB average
    raise ValueError(f"normalize: {what} has {len(values)} values for a {channels}-channel batch "
                     f"(give 3, or one per channel)")


def normalize(batch: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(batch / 255 - mean) / std as float32, for an N x C x H x W uint8 batch on any device.

    mean/std are per channel on the 0-1 scale; with 3 values and a 4-channel (RGBY) batch, the 4th channel uses
    the mean of the three. One allocation (the float copy, which keeps channels_last), then in-place arithmetic.
    """
    if batch.dtype != torch.uint8 or batch.ndim != 4:
        raise ValueError(f"normalize expects an N x C x H x W uint8 batch, got {tuple(batch.shape)} {batch.dtype}")
    mean_255, std_255 = _scale_255(tuple(mean), tuple(std), batch.shape[1], batch.device)
    return batch.float().sub_(mean_255).div_(std_255)


@functools.lru_cache(maxsize=32)
def _scale_255(mean: tuple, std: tuple, channels: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    # Made once per device: a new device tensor per step would be two blocking host-to-device copies per step.
    mean_255 = torch.tensor(_per_channel(mean, channels, "mean"), device=device).mul_(255).view(1, -1, 1, 1)
    std_255 = torch.tensor(_per_channel(std, channels, "std"), device=device).mul_(255).view(1, -1, 1, 1)
    return mean_255, std_255


def tta_views(x: torch.Tensor, mode: str = "none", hflip: bool = True, vflip: bool = False) -> list[torch.Tensor]:
    """Test-time-augmentation views of an N x C x H x W batch, the original first.

    "none": [x]; "flips": x, then its horizontal mirror if hflip and its vertical mirror if vflip; "dihedral": the
    8 rotations/reflections of a square batch (use it only where the dataset allows both flips).
    """
    if mode == "none":
        return [x]
    if mode == "flips":
        return [x] + ([x.flip(-1)] if hflip else []) + ([x.flip(-2)] if vflip else [])
    if mode == "dihedral":
        if x.shape[-1] != x.shape[-2]:
            raise ValueError(f"dihedral TTA needs square images, got {x.shape[-2]} x {x.shape[-1]}")
        rotations = [torch.rot90(x, k, dims=(-2, -1)) for k in range(4)]
        return rotations + [r.transpose(-2, -1) for r in rotations]
    raise ValueError(f"unknown TTA mode '{mode}'; known: {', '.join(TTA_MODES)}")
