"""Reading image files as RGB uint8 arrays, and the cheap up-front check every loader runs on its files.

OpenCV decodes fastest but returns BGR; every colour image is converted to RGB here, the one place images are
read, so no model ever sees BGR (the paper's released loaders did, for four of six datasets).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from common import errors

# Magic numbers of the formats the datasets ship; a file that starts otherwise is reported before training starts.
SIGNATURES = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG"}


class BadImageError(errors.DataError, RuntimeError):
    """An image file is missing or cannot be decoded. The message names the file."""

    def __init__(self, path: Path | str, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"{self.path}: {reason}")


def check_image_file(path: Path) -> str | None:
    """A problem string naming `path` if it is missing, empty or not a PNG/JPEG; None if it looks fine.

    Reads only the first bytes, so checking a whole dataset up front costs seconds, not a decode of every image.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except FileNotFoundError:
        return f"{path}: image file is missing"
    except OSError as error:
        return f"{path}: image file cannot be read ({error.strerror or error})"
    if not head:
        return f"{path}: image file is empty"
    if not any(head.startswith(signature) for signature in SIGNATURES):
        return f"{path}: not a PNG or JPEG file (starts with {head[:4]!r})"
    return None


def check_image_files(files: list[tuple[Path, ...]]) -> list[str]:
    return [problem for group in files for path in group if (problem := check_image_file(path))]


def read_rgb(path: Path) -> np.ndarray:
    """H x W x 3 uint8 RGB image (grayscale files are replicated to three channels)."""
    image = _decode(path, cv2.IMREAD_COLOR)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_gray(path: Path) -> np.ndarray:
    """H x W uint8 single-channel image (HPA's per-stain PNGs)."""
    return _decode(path, cv2.IMREAD_GRAYSCALE)


def read_image_files(files: tuple[Path, ...], num_channels: int = 3) -> np.ndarray:
    """One sample's image: a single colour file, or per-channel grayscale files stacked in the given order.

    With one file and num_channels=4 the file must carry four channels (a pre-composited RGBY PNG).
    """
    if len(files) == 1 and num_channels == 3:
        return read_rgb(files[0])
    if len(files) == 1:
        image = _decode(files[0], cv2.IMREAD_UNCHANGED)
        if image.ndim != 3 or image.shape[2] != 4:
            raise BadImageError(files[0], f"expected a 4-channel (RGBY) image, got shape {image.shape}")
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)  # OpenCV orders 4-channel PNGs as BGRA
    channels = [read_gray(path) for path in files]
    shapes = {channel.shape for channel in channels}
    if len(shapes) != 1:
        raise BadImageError(files[0], f"channel files of one sample differ in size: {sorted(shapes)}")
    return np.stack(channels, axis=-1)


def _decode(path: Path, flags: int) -> np.ndarray:
    try:
        buffer = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise BadImageError(path, "image file is missing") from None
    except OSError as error:
        raise BadImageError(path, f"image file cannot be read ({error})") from None
    image = cv2.imdecode(buffer, flags) if buffer.size else None
    if image is None:
        raise BadImageError(path, "image cannot be decoded (corrupt or truncated file)")
    return image


# Resizing: one definition, shared by the cache's workers and the evaluation transform

def shrink(image: np.ndarray, short_side: int) -> np.ndarray:
    """Shrink so that the short side is `short_side` (aspect ratio kept, antialiased); smaller images unchanged.

    Sizes are rounded as albumentations' SmallestMaxSize rounds them, and INTER_AREA is what augment/transforms.py uses
    whenever an image shrinks.
    """
    height, width = image.shape[:2]
    if min(height, width) <= short_side:
        return image
    scale = short_side / min(height, width)
    new_height, new_width = max(1, round(height * scale)), max(1, round(width * scale))
    resized = cv2.resize(image, (new_width, new_height), interpolation=cv2.INTER_AREA)
    return resized.reshape(new_height, new_width, image.shape[2])


def resize_center_crop(image: np.ndarray, resize_size: int, crop_size: int) -> np.ndarray:
    """augment.transforms.eval_transform without albumentations (which cache workers do not import): torchvision's
    Resize(resize_size) + CenterCrop(crop_size). The short side becomes resize_size and the long side
    int(resize_size * long / short), INTER_AREA when shrinking, bilinear otherwise; the crop's offset rounds half to
    even. tests/test_cache.py checks that it equals transforms.eval_transform pixel for pixel."""
    height, width = image.shape[:2]
    short, long = min(height, width), max(height, width)
    new_long = int(resize_size * long / short)
    new_height, new_width = (resize_size, new_long) if height <= width else (new_long, resize_size)
    interpolation = cv2.INTER_AREA if resize_size < short else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_width, new_height), interpolation=interpolation).reshape(
        new_height, new_width, *image.shape[2:])
    top = int(round((new_height - crop_size) / 2))
    left = int(round((new_width - crop_size) / 2))
    return resized[top:top + crop_size, left:left + crop_size]
