"""From images to FID statistics: the network's features streamed batch by batch into a mean and covariance, and
how statistics were made (statistics made otherwise never mix)."""
from __future__ import annotations

import contextlib
import sys
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from common import errors
from frechet.distance import FeatureStats, RunningStats
from frechet.inception import NORMALISATION, RESIZE, InceptionFeatures
from frechet.inputs import ImageSet, ResizedImages, StatsFile, raise_problems


def compute_statistics(images: ImageSet, model: InceptionFeatures, batch_size: int = 50, device: str = "cpu",
                       workers: int = 0, amp: bool = False) -> FeatureStats:
    """Mean and covariance of the model's activations over the images, streamed batch by batch."""
    device = torch.device(device)
    if amp and device.type != "cuda":
        raise errors.UsageError("--amp is for CUDA devices only: on CPU the network runs in float32")
    loader = DataLoader(ResizedImages(images), batch_size=batch_size, num_workers=workers,
                        pin_memory=device.type == "cuda")
    model = model.to(device).to(memory_format=torch.channels_last)
    running = RunningStats()
    # cuDNN may run float32 convolutions in TF32 (10-bit mantissa) on recent GPUs; FID wants full float32
    precision = (torch.backends.cudnn.flags(enabled=True, benchmark=True, deterministic=False, allow_tf32=False)
                 if device.type == "cuda" else contextlib.nullcontext())
    with precision, torch.inference_mode():
        for batch, problems in tqdm(loader, desc=f"features {images.label}", unit="batch", leave=False):
            raise_problems(problems)
            batch = batch.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                features = model(batch)
            running.update(features.float())
    return running.result()


def made_with(weights: dict[str, Any], dims: int, amp: bool) -> dict[str, Any]:
    """How statistics are made: statistics made otherwise do not mix (check_compatible)."""
    return {"weights": weights, "dims": dims, "resize": RESIZE, "normalisation": NORMALISATION, "amp": amp}


def _made_the_same_way(info: dict[str, Any]) -> dict[str, Any]:
    return {"weights": (info.get("weights") or {}).get("id"), "dims": info.get("dims"), "resize": info.get("resize"),
            "normalisation": info.get("normalisation")}


def check_compatible(stats: StatsFile, description: dict[str, Any] | None, other: str) -> None:
    """Refuse to mix statistics of other weights, dims or preprocessing; say so when a file does not record them."""
    path = stats.record["path"]
    if description is not None and len(stats.stats.mu) != description["dims"]:
        raise errors.UsageError(f"statistics file {path} has {len(stats.stats.mu)} dimensions, {other} "
                                f"{description['dims']}: pass --dims {len(stats.stats.mu)}")
    if stats.info is None:
        print(f"note: {path} does not record how it was made (a pytorch-fid file?): make sure it used the same "
              f"weights and preprocessing as {other}", file=sys.stderr)
        return
    if description is None:
        return
    ours, theirs = _made_the_same_way(description), _made_the_same_way(stats.info)
    for key, value in ours.items():
        if theirs[key] != value:
            raise errors.UsageError(f"statistics file {path} was made with {key} {theirs[key]!r}, but {other} uses "
                                    f"{value!r}: FIDs mix only statistics made the same way")


def resolve_device(device: str) -> str:
    """--device auto: CUDA when available."""
    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
