"""The paper's random resized crop and flips split in two: the random draws on the CPU, the pixels on the device.

    from augment.gpu import RegionSampler, collate_regions, resized_crops
    sampler = RegionSampler(transforms.train_transform(spec, img_size, "paper"))  # once, in the Dataset
    region = sampler(image, engine.sample_seed(seed, epoch, index))  # worker: the crop as a view, no resampling
    batch = collate_regions([region, ...])                           # worker: {"regions", "sizes", "flips"}
    images = resized_crops(batch["regions"].to(device), batch["sizes"], batch["flips"], img_size,
                           out_dtype=torch.uint8)                   # device: N x C x S x S, one batched op
    inputs = engine.to_model_input(images, mean, std, channels_last)  # as for the CPU path's batches

Why: the small models (AlexNet, SqueezeNet, ShuffleNet, MobileNetV3-small, MNASNet) train faster than CPU workers
can resize crops. Here a worker only draws the crop box and flips and slices the cached image; the resize to
img_size x img_size and the flips of the whole batch run on the device.

Same augmentation as the CPU path, not merely a similar one:
  - RegionSampler seeds the pipeline with transforms.seed_transform and runs albumentations' own parameter code
    (the Compose's draw, each transform's should_apply, RandomResizedCrop.get_params_dependent_on_data) without
    the image operations, so a (seed, epoch, sample) gets the box and flips the CPU path gives it, whatever the
    worker count.
  - resized_crops resamples with the weights cv2.resize uses in RandomResizedCrop: bilinear when the crop grows in
    both directions; cv2.INTER_AREA's exact area averaging when it shrinks in both; and where it shrinks in one
    direction only, INTER_AREA's two-tap interpolation, which OpenCV uses for both directions in that case. Each
    direction is a gather of a few taps per output pixel (separable, like cv2), with the flips folded into the
    tables. Output differs from the CPU path's only by cv2's uint8 rounding: at most 1 grey level (the tests
    check this); with out_dtype=torch.uint8 it is quantised like the CPU path's batch.

Only the "paper" augmentation (RandomResizedCrop + the dataset's flips) has this form; RegionSampler refuses others.
The resize runs in float32 whatever autocast says.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np
import torch

from augment import transforms

# How each sample is resampled (what RandomResizedCrop's cv2.resize does for that crop size).
LINEAR, AREA, AREA_LINEAR = 0, 1, 2
AREA_SLIVER = 1e-3  # cv2's INTER_AREA ignores overlaps of a source pixel thinner than this


@dataclass(frozen=True)
class Region:
    """One sample's crop before resizing: `pixels` is a view (h x w x C uint8) into the image, `box` its
    (x_min, y_min, x_max, y_max) in that image, and the flips to apply after resizing."""
    pixels: np.ndarray
    box: tuple[int, int, int, int]
    hflip: bool
    vflip: bool


# ---------------------------------------------------------------------------------------------------------------
# Worker side: the random draws

class RegionSampler:
    """Draws what `pipeline` (transforms.train_transform(spec, img_size, "paper")) would draw for a seed, and
    returns the crop as a Region instead of resizing it. Picklable, cheap: use one per Dataset."""

    def __init__(self, pipeline: A.Compose):
        self.pipeline = pipeline
        self.img_size = check_pipeline(pipeline)

    def draw(self, image: np.ndarray, seed: int | Sequence[int]) -> tuple[tuple[int, int, int, int], bool, bool]:
        """(box, hflip, vflip) that the pipeline, seeded with `seed` (as transforms.seed_transform takes it),
        draws for `image`; box is (x_min, y_min, x_max, y_max)."""
        pipeline = self.pipeline
        transforms.seed_transform(pipeline, seed)
        # A.Compose.__call__ and BasicTransform.__call__ without the image operations: the Compose's own draw
        # (made even though its p is 1), then each transform's should_apply and parameter draws, all from the
        # generators that seed_transform shares between them.
        pipeline.py_random.random()
        data = {"image": image}
        box, flips = None, {A.HorizontalFlip: False, A.VerticalFlip: False}
        for transform in pipeline.transforms:
            if not transform.should_apply():
                continue
            params = transform.update_transform_params(transform.get_params(), data)
            params.update(transform.get_params_dependent_on_data(params, data))
            if isinstance(transform, A.RandomResizedCrop):
                box = tuple(int(v) for v in params["crop_coords"])
            else:
                flips[type(transform)] = True
        return box, flips[A.HorizontalFlip], flips[A.VerticalFlip]

    def __call__(self, image: np.ndarray, seed: int | Sequence[int]) -> Region:
        """The Region the pipeline would crop from `image` (H x W x C uint8) for `seed`: a view, not a copy."""
        if image.ndim != 3 or image.dtype != np.uint8:
            raise ValueError(f"RegionSampler expects an H x W x C uint8 image, got shape {image.shape} "
                             f"dtype {image.dtype}")
        box, hflip, vflip = self.draw(image, seed)
        x_min, y_min, x_max, y_max = box
        return Region(image[y_min:y_max, x_min:x_max], box, hflip, vflip)


def check_pipeline(pipeline: A.Compose) -> int:
    """The output size of a "paper" training pipeline; ValueError for any pipeline this module cannot reproduce."""
    steps = list(getattr(pipeline, "transforms", []))
    crop = steps[0] if steps else None
    problem = None
    if type(pipeline) is not A.Compose or pipeline.p != 1:
        problem = "it is not a plain albumentations Compose applied always"
    elif type(crop) is not A.RandomResizedCrop or crop.p != 1:
        problem = "it does not start with RandomResizedCrop (p=1)"
    elif crop.size[0] != crop.size[1]:
        problem = f"its crop is not square ({crop.size})"
    elif crop.interpolation != cv2.INTER_LINEAR or crop.area_for_downscale != "image":
        problem = "its crop does not resample bilinearly with INTER_AREA when shrinking"
    elif not all(type(t) in (A.HorizontalFlip, A.VerticalFlip) for t in steps[1:]) or \
            len({type(t) for t in steps[1:]}) != len(steps) - 1:
        problem = "it has steps other than one HorizontalFlip and one VerticalFlip after the crop"
    if problem:
        raise ValueError(f"GPU-side augmentation reproduces only the 'paper' pipeline (RandomResizedCrop + the "
                         f"dataset's flips); this pipeline cannot be split: {problem}. Use the CPU path for it")
    return int(crop.size[0])


def collate_regions(regions: Sequence[Region]) -> dict[str, torch.Tensor]:
    """Pad a batch of regions into one tensor: {"regions": N x C x Hmax x Wmax uint8 (channels_last memory, i.e.
    stored N x Hmax x Wmax x C, so filling it is a plain copy; the padding is left uninitialised and never read),
    "sizes": N x 2 int64 (h, w of each region), "flips": N x 2 bool (hflip, vflip)}."""
    if not regions:
        raise ValueError("collate_regions needs at least one region")
    channels = {r.pixels.shape[2] for r in regions}
    if len(channels) != 1 or any(r.pixels.dtype != np.uint8 for r in regions):
        raise ValueError(f"collate_regions expects uint8 regions with one channel count, got channel counts "
                         f"{sorted(channels)} and dtypes {sorted({str(r.pixels.dtype) for r in regions})}")
    sizes = torch.tensor([r.pixels.shape[:2] for r in regions], dtype=torch.int64)
    height, width = (int(v) for v in sizes.max(0).values)
    stored = torch.empty((len(regions), height, width, channels.pop()), dtype=torch.uint8)
    pixels = stored.numpy()
    for i, region in enumerate(regions):
        h, w = region.pixels.shape[:2]
        pixels[i, :h, :w] = region.pixels
    return {"regions": stored.permute(0, 3, 1, 2),
            "sizes": sizes,
            "flips": torch.tensor([(r.hflip, r.vflip) for r in regions], dtype=torch.bool)}


# ---------------------------------------------------------------------------------------------------------------
# Device side: one batched resize

def resampling_modes(sizes: torch.Tensor, img_size: int) -> torch.Tensor:
    """Per sample, how RandomResizedCrop(area_for_downscale="image") and cv2.resize resample a crop of `sizes`
    (N x 2: h, w) to img_size: LINEAR (no side shrinks), AREA (both shrink or stay), else AREA_LINEAR."""
    shrinks = sizes > img_size
    stays_or_shrinks = sizes >= img_size
    modes = torch.full_like(sizes[:, 0], LINEAR)
    modes = torch.where(shrinks.any(1), AREA_LINEAR, modes)
    return torch.where(shrinks.any(1) & stays_or_shrinks.all(1), AREA, modes)


def axis_tables(lengths: torch.Tensor, modes: torch.Tensor, flips: torch.Tensor, size: int,
                taps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cv2.resize's sampling along one axis as `taps` (source index, weight) pairs per output pixel.

    lengths (N,) are the source lengths, modes (N,) from resampling_modes, flips (N,) reverse the output.
    Returns index (N, size, taps) int64 and weight (N, size, taps) float32. The arithmetic follows OpenCV's
    resize.cpp (float32 where OpenCV rounds to float), so the weights are OpenCV's.
    """
    length = lengths.to(torch.float64)[:, None]
    inv_scale = size / length
    scale = 1 / inv_scale
    out = torch.arange(size, dtype=torch.float64, device=lengths.device)[None, :]
    out = torch.where(flips[:, None], size - 1 - out, out)

    # Two-tap modes: the first tap `start` and the second tap's weight `frac`.
    linear_pos = ((out + 0.5) * scale - 0.5).float().double()
    linear_start = torch.floor(linear_pos)
    area_start = torch.floor(out * scale)
    area_frac = ((out + 1) - (area_start + 1) * inv_scale).float().double()
    area_frac = torch.where(area_frac <= 0, 0.0, area_frac - torch.floor(area_frac))
    linear = (modes == LINEAR)[:, None]
    start = torch.where(linear, linear_start, area_start)
    frac = torch.where(linear, linear_pos - linear_start, area_frac)
    frac = torch.where((start < 0) | (start >= length - 1), 0.0, frac)
    start = torch.minimum(start.clamp(min=0), length - 1)

    tap = torch.arange(taps, dtype=torch.float64, device=lengths.device)
    source = start[..., None] + tap                                   # N x size x taps
    two_tap = torch.where(tap == 0, 1 - frac[..., None], torch.where(tap == 1, frac[..., None], 0.0))
    # AREA: the share of the output cell [out * scale, (out + 1) * scale) that source pixel i covers.
    cell_low = (out * scale)[..., None]
    cell_high = torch.minimum((out + 1) * scale, length)[..., None]
    overlap = (torch.minimum(cell_high, source + 1) - torch.maximum(cell_low, source)).clamp(min=0)
    overlap = torch.where(overlap > AREA_SLIVER, overlap, 0.0) / (cell_high - cell_low)
    weight = torch.where((modes == AREA)[:, None, None], overlap, two_tap)
    index = torch.minimum(source, length[..., None] - 1).long()
    return index, weight.float()


def resample_axis(x: torch.Tensor, dim: int, index: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Sum over taps of weight * x gathered at index along `dim` (2 or 3) of an N x C x H x W tensor, in float32."""
    x = x.float()
    size, taps = index.shape[1:]
    shape = list(x.shape)
    shape[dim] = size
    view = [x.shape[0], 1, 1, 1]
    view[dim] = size
    out = x.gather(dim, index[:, :, 0].reshape(view).expand(shape)).mul_(weight[:, :, 0].reshape(view))
    for k in range(1, taps):
        out.addcmul_(x.gather(dim, index[:, :, k].reshape(view).expand(shape)), weight[:, :, k].reshape(view))
    return out


def resized_crops(regions: torch.Tensor, sizes: torch.Tensor, flips: torch.Tensor, img_size: int, *,
                  out_dtype: torch.dtype = torch.float32, channels_last: bool = False) -> torch.Tensor:
    """Resize each region to img_size x img_size and flip it, on the regions' device, in one batched operation.

    regions: N x C x Hmax x Wmax uint8 from collate_regions (each region at the top left, padding never read);
    sizes: N x 2 (h, w); flips: N x 2 bool (hflip, vflip); both may be on the CPU or the device.
    Returns N x C x img_size x img_size on the 0-255 scale: float32 (out_dtype=torch.float32, unrounded), or
    uint8 rounded like the CPU path's (out_dtype=torch.uint8; what transforms.normalize takes). Computed in
    float32 even under autocast; channels_last=True returns channels_last memory.
    """
    if regions.dtype != torch.uint8 or regions.ndim != 4:
        raise ValueError(f"resized_crops expects N x C x H x W uint8 regions, got {tuple(regions.shape)} "
                         f"{regions.dtype}")
    n, _, height, width = regions.shape
    if tuple(sizes.shape) != (n, 2) or tuple(flips.shape) != (n, 2) or flips.dtype != torch.bool:
        raise ValueError(f"resized_crops: sizes must be N x 2 integers and flips N x 2 bool for N={n}, got "
                         f"{tuple(sizes.shape)} {sizes.dtype} and {tuple(flips.shape)} {flips.dtype}")
    if out_dtype not in (torch.float32, torch.uint8):
        raise ValueError(f"resized_crops: out_dtype must be torch.float32 or torch.uint8, got {out_dtype}")
    if not isinstance(img_size, int) or isinstance(img_size, bool) or img_size < 1:
        raise ValueError(f"resized_crops: img_size must be a positive integer, got {img_size!r}")
    on_cpu = sizes.device.type == "cpu"  # checking values on the device would make the host wait for it
    if on_cpu and not ((sizes >= 1).all() and (sizes[:, 0] <= height).all() and (sizes[:, 1] <= width).all()):
        raise ValueError(f"resized_crops: sizes must lie within 1..{height} x 1..{width}, the padded regions")
    device = regions.device
    sizes = sizes.to(device, torch.int64, non_blocking=True)
    flips = flips.to(device, non_blocking=True)
    modes = resampling_modes(sizes, img_size)
    with torch.autocast(device.type, enabled=False):
        # Enough taps for the largest possible shrink along each axis; unused taps weigh 0.
        x_index, x_weight = axis_tables(sizes[:, 1], modes, flips[:, 0], img_size,
                                        max(2, math.ceil(width / img_size) + 1))
        y_index, y_weight = axis_tables(sizes[:, 0], modes, flips[:, 1], img_size,
                                        max(2, math.ceil(height / img_size) + 1))
        out = resample_axis(resample_axis(regions, 3, x_index, x_weight), 2, y_index, y_weight)
    if out_dtype == torch.uint8:
        out = out.round_().clamp_(0, 255).to(torch.uint8)
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out
