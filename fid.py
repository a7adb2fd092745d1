"""Fréchet Inception Distance (FID) between image sets: how far each dataset lies from ImageNet.

The paper explains why the real-world datasets behave differently by their FID to the ImageNet validation set,
with every dataset subsampled to 3,662 images (APTOS's size: FID depends on the number of images, so every
dataset is measured at the same size).

    # once: the reference statistics of ImageNet val (the standard val/ folder, flat or per class; all 50,000)
    python fid.py /data/imagenet/val --subset 0 --save-stats imagenet-val-stats.npz
    # one dataset against it: 3,662 images drawn with --seed 0 from datasets/aptos
    python fid.py aptos imagenet-val-stats.npz
    # the paper's table (CSV, Markdown, JSON) and bar figure, for every dataset under datasets/
    python fid.py --all-datasets --ref imagenet-val-stats.npz

Inputs. A and B are each a dataset name from the registry (read from --root, default <data-root>/<name>), an
image folder (every .jpg/.jpeg/.png/.bmp/.webp/.tif under it, any depth; other files are counted and skipped), or
a statistics file (.npz holding `mu` and `sigma`: the keys pytorch-fid writes and reads, so the files of both tools
interchange; ours add `num_images` and `info`, a JSON text of how they were made, which pytorch-fid ignores).
Dataset and folder inputs are subsampled: --subset images (default 3,662) drawn at random without replacement
with --seed; a set with fewer images is an error unless --allow-smaller (then all are used); --subset 0 uses all.
Which images of a dataset: --split all (default) draws from all its labelled images, as the paper subsampled the
dataset; APTOS's 3,662 is its whole labelled set, so its training split alone (80%) would be too small.
--split train|val|... draws from one split of splits.py (--split-file to name one).

Features: the 2048-d pool3 activations of InceptionV3 (--dims 64/192/768 take the spatially averaged output of
an earlier block, as pytorch-fid does). --weights selects the network:
  fid (default)  the standard FID Inception: TensorFlow's 2015-12-05 graph ported by pytorch-fid, file
                 pt_inception-2015-12-05-6726825d.pth from FID_WEIGHTS_URL below. Looked for in the torch hub
                 cache (where pytorch-fid keeps it, <torch hub dir>/checkpoints/) and downloaded there when missing.
  PATH           that same file, given by path (for machines without network).
  torchvision    torchvision's ImageNet InceptionV3 (IMAGENET1K_V1, through torchvision's download and cache):
                 a different network; its FIDs are labelled as such and are not comparable to published FIDs.
  random         fixed-seed random weights, for tests only.
The FID network differs from torchvision's: its average pools ignore the zero padding (count_include_pad=False),
the last block (Mixed_7c) max-pools in its pool branch, and it has 1,008 classes. It is built here on torchvision's
Inception3 modules, so the file loads with strict key checking. Its SHA-256 is not pinned here: it could not be
checked without network when this was written. fid.py prints and records the SHA-256 of the file it loads;
compare it once with the hash of a copy you trust (for instance `sha256sum` of the file pytorch-fid downloaded).

Preprocessing, and how it relates to other tools (the numbers users compare):
  here        each image, at its own size, is resized once to 299x299 with antialiased bicubic interpolation on
              float values (torch's interpolate(mode="bicubic", antialias=True), which uses PIL's bicubic kernel:
              it agrees with PIL's float resize to within 0.01 grey levels, see tests/test_fid.py), clamped to
              [0, 255], then scaled to [-1, 1] as (x - 127.5) / 127.5, the input range of both weight sets.
  pytorch-fid loads images as [0, 1] tensors and resizes inside the model with bilinear F.interpolate to 299
              without antialiasing, then 2x - 1. Images larger than 299 px (ImageNet, APTOS, HPA) alias there, and
              small ones (CIFAR-10) are upsampled bilinearly, so its FIDs differ from ours for the same weights.
  clean-fid   "clean" mode resizes each channel with PIL bicubic on float values and clips to [0, 255], the same
              resize as ours up to float rounding; its network input is (x - 128) / 128 and its default network
              is another port of the same TensorFlow graph. Expect close, not identical, numbers.
JPEG decoders (OpenCV here, PIL in both tools) can also differ by a grey level.

The distance: ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr sqrt(S1 S2), in float64. No matrix square root is formed:
with S1 = A A^T (Cholesky with complete pivoting, LAPACK dpstrf, which stops at S1's numerical rank), the nonzero
eigenvalues of S1 S2 are those of the symmetric positive semi-definite A^T S2 A (and of sqrt(S1) S2 sqrt(S1)), so
tr sqrt(S1 S2) is the sum of the square roots of its eigenvalues (numpy's eigvalsh). This agrees with
scipy.linalg.sqrtm to rounding on full-rank covariances, is exact for singular ones (fewer images than dimensions)
without the 1e-6 identity offset that pytorch-fid adds when sqrtm fails (an offset that slightly biases such
FIDs), never produces imaginary parts (scipy 1.11.2-1.12's sqrtm did), does not depend on sqrtm's `disp`
argument (removed in scipy 1.18), and costs a fraction of an eigendecomposition. Eigenvalues below rounding level
count as zero; a clearly negative direction means a covariance is not positive semi-definite: an error.

Speed: a DataLoader with --workers processes decodes and resizes; the network runs in float32 batches
(convolutions without TF32 on CUDA); mean and covariance are accumulated in float64 as a running sum and sum of
outer products, so activations are never stored. --amp (CUDA only) runs the network in float16 autocast; whether
that keeps the statistics within 1e-3 was NOT checked with real weights (no GPU when this was written): check it
with benchmarks/fid_features.py --device cuda --amp, which prints the relative change, before relying on it.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import io
import json
import os
import pickle
import re
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy.linalg.lapack import dpstrf
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision.models.inception import (BasicConv2d, Inception3, InceptionA, InceptionAux, InceptionB, InceptionC,
                                          InceptionD, InceptionE)
from tqdm import tqdm

from data import REGISTRY, open_dataset
from data.images import BadImageError, read_rgb
from records import (atomic_save_npz, atomic_write_bytes, atomic_write_json, atomic_write_text, provenance,
                     sha256_file)

FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{FID_WEIGHTS_FILE}"
FID_NUM_CLASSES = 1008           # the TensorFlow graph's classifier: 1,000 ImageNet classes and 8 unused
RANDOM_WEIGHTS_SEED = 0
INPUT_SIZE = 299
DIMS = (64, 192, 768, 2048)      # first max pool, second max pool, pre-aux (Mixed_6e), pool3
DEFAULT_SUBSET = 3662            # APTOS's number of labelled images: every dataset is measured at this size
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
RESIZE = ("bicubic with antialiasing to 299x299 on float RGB (torch interpolate, PIL's kernel), "
          "clamped to [0, 255]")
NORMALISATION = "(x - 127.5) / 127.5 for x in [0, 255]"
MATRIX_SQRT = "tr sqrt(S1 S2) from eigvalsh(A^T S2 A), S1 = A A^T by pivoted Cholesky (LAPACK dpstrf); float64"
# The paper's two groups in the figure: images gathered from the web like ImageNet's, and the real-world tasks.
WEB_SCRAPED = {"cifar10"}
DEMO_DATASETS = {"digits"}       # the offline demo is no dataset of the paper: --all-datasets leaves it out


# ----------------------------------------------------------------------------------------------------------------
# The distance


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64.

    With sigma1 = A A^T, the nonzero eigenvalues of sigma1 sigma2 are those of the symmetric positive semi-definite
    A^T sigma2 A, so tr sqrt(sigma1 sigma2) is the sum of their square roots: real, and exact also for singular
    covariances. Raises ValueError on mismatched shapes, non-finite values, or a covariance that is clearly not
    positive semi-definite.
    """
    mu1, mu2 = np.asarray(mu1, dtype=np.float64), np.asarray(mu2, dtype=np.float64)
    sigma1, sigma2 = np.asarray(sigma1, dtype=np.float64), np.asarray(sigma2, dtype=np.float64)
    for name, mu, sigma in (("1", mu1, sigma1), ("2", mu2, sigma2)):
        if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)):
            raise ValueError(f"mu{name} must be (d,) and sigma{name} (d, d); got {mu.shape} and {sigma.shape}")
        if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
            raise ValueError(f"mu{name} or sigma{name} contains NaN or infinite values")
    if mu1.shape != mu2.shape:
        raise ValueError(f"the two statistics have different dimensions: {len(mu1)} and {len(mu2)}")
    factor = _psd_factor(sigma1, "sigma1")
    product = factor.T @ sigma2 @ factor
    eigenvalues = np.linalg.eigvalsh((product + product.T) / 2)
    largest = max(float(np.abs(eigenvalues).max(initial=0.0)), np.finfo(np.float64).tiny)
    if eigenvalues.min(initial=0.0) < -1e-6 * largest:
        raise ValueError(f"sigma2 is not positive semi-definite: A^T sigma2 A has eigenvalue "
                         f"{eigenvalues.min():.3g} (largest {largest:.3g})")
    # eigvalsh is accurate to about r * eps * largest: below that an eigenvalue is a zero's rounding noise
    rounding = len(eigenvalues) * np.finfo(np.float64).eps * largest
    tr_sqrt = np.sqrt(eigenvalues[eigenvalues > rounding]).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_sqrt)


def _psd_factor(sigma: np.ndarray, name: str) -> np.ndarray:
    """A (d, r) with sigma = A A^T and r its numerical rank: Cholesky with complete pivoting (LAPACK dpstrf).

    The factorisation stops once the remaining pivots fall below d * eps * max(diag), so a singular covariance
    (fewer images than dimensions) costs little and its null directions are exactly zero. A residual beyond
    rounding means that sigma has a clearly negative direction: it is not a covariance.
    """
    triangle, pivots, rank, _ = dpstrf(sigma, lower=1)
    factor = np.zeros((len(sigma), rank))
    factor[pivots - 1] = np.tril(triangle)[:, :rank]   # dpstrf factors sigma[piv][:, piv] and leaves junk above
    scale = max(float(np.abs(np.diag(sigma)).max(initial=0.0)), np.finfo(np.float64).tiny)
    residual = float(np.abs(sigma - factor @ factor.T).max(initial=0.0))
    if residual > 1e-6 * scale:
        raise ValueError(f"{name} is not positive semi-definite: its pivoted Cholesky factor misses it by "
                         f"{residual:.3g} (largest variance {scale:.3g})")
    return factor


# ----------------------------------------------------------------------------------------------------------------
# Statistics: mean and covariance of the activations


@dataclass
class FeatureStats:
    mu: np.ndarray                 # (d,) float64
    sigma: np.ndarray              # (d, d) float64, normalised by n - 1 as np.cov
    num_images: int | None         # None for a statistics file that does not say (pytorch-fid's)


class RunningStats:
    """Mean and covariance of vectors fed in batches: a float64 running sum and sum of outer products.

    Sums are taken around the first batch's mean, so a large common offset does not cancel digits away.
    """

    def __init__(self) -> None:
        self.count = 0
        self.shift: torch.Tensor | None = None
        self.total: torch.Tensor | None = None
        self.outer: torch.Tensor | None = None

    def update(self, batch: torch.Tensor | np.ndarray) -> None:
        x = torch.as_tensor(batch).to(torch.float64)
        if x.ndim != 2:
            raise ValueError(f"expected a (batch, dims) array of features, got shape {tuple(x.shape)}")
        if self.shift is None:
            self.shift = x.mean(dim=0)
            self.total = torch.zeros_like(self.shift)
            self.outer = torch.zeros(len(self.shift), len(self.shift), dtype=torch.float64, device=x.device)
        x = x - self.shift
        self.total += x.sum(dim=0)
        self.outer += x.T @ x
        self.count += len(x)

    def result(self) -> FeatureStats:
        if self.count < 2:
            raise ValueError(f"a covariance needs at least 2 images, got {self.count}")
        mean = self.total / self.count
        sigma = (self.outer - self.count * torch.outer(mean, mean)) / (self.count - 1)
        sigma = (sigma + sigma.T) / 2
        return FeatureStats((self.shift + mean).cpu().numpy(), sigma.cpu().numpy(), self.count)


def save_stats(path: str | Path, stats: FeatureStats, info: dict[str, Any]) -> None:
    """`mu` and `sigma` as pytorch-fid writes them, plus `num_images` and `info` (JSON text), atomically."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"statistics file {path}: the name must end in .npz")
    atomic_save_npz(path, mu=stats.mu, sigma=stats.sigma, num_images=np.int64(stats.num_images),
                    info=np.array(json.dumps(info, sort_keys=True)))


def load_stats(path: str | Path) -> tuple[FeatureStats, dict[str, Any] | None]:
    """Statistics and their `info` (None in files without it, e.g. pytorch-fid's). Checks keys and shapes."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"statistics file {path} does not exist")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise ValueError(f"statistics file {path} cannot be read as .npz: {error}") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ValueError(f"statistics file {path} holds one bare array, not an .npz archive with mu and sigma")
    with loaded:
        arrays = {key: loaded[key] for key in loaded.files}
    missing = [key for key in ("mu", "sigma") if key not in arrays]
    if missing:
        raise ValueError(f"statistics file {path}: no {' or '.join(missing)} array (keys found: "
                         f"{', '.join(arrays) or 'none'}); it must hold mu and sigma as pytorch-fid's do")
    mu, sigma = arrays["mu"].astype(np.float64), arrays["sigma"].astype(np.float64)
    num_images = int(arrays["num_images"]) if "num_images" in arrays else None
    info = json.loads(str(arrays["info"])) if "info" in arrays else None
    if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)):
        raise ValueError(f"statistics file {path}: mu must be (d,) and sigma (d, d), got {mu.shape} and {sigma.shape}")
    return FeatureStats(mu, sigma, num_images), info


# ----------------------------------------------------------------------------------------------------------------
# The network


class FIDInceptionA(InceptionA):
    """InceptionA whose pool branch averages without counting the zero padding, as TensorFlow's average pool."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        pooled = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)
        return torch.cat([self.branch1x1(x), branch5x5, branch3x3dbl, self.branch_pool(pooled)], dim=1)


class FIDInceptionC(InceptionC):
    """InceptionC whose pool branch averages without counting the zero padding."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        branch7x7dbl = x
        for conv in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                     self.branch7x7dbl_5):
            branch7x7dbl = conv(branch7x7dbl)
        pooled = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)
        return torch.cat([self.branch1x1(x), branch7x7, branch7x7dbl, self.branch_pool(pooled)], dim=1)


class FIDInceptionE(InceptionE):
    """InceptionE whose pool branch averages without counting the padding, or max-pools (the graph's Mixed_7c)."""

    max_pool = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch3x3 = self.branch3x3_1(x)
        branch3x3 = torch.cat([self.branch3x3_2a(branch3x3), self.branch3x3_2b(branch3x3)], dim=1)
        branch3x3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        branch3x3dbl = torch.cat([self.branch3x3dbl_3a(branch3x3dbl), self.branch3x3dbl_3b(branch3x3dbl)], dim=1)
        if self.max_pool:
            pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        else:
            pooled = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)
        return torch.cat([self.branch1x1(x), branch3x3, branch3x3dbl, self.branch_pool(pooled)], dim=1)


def build_fid_inception() -> Inception3:
    """The FID Inception network (TensorFlow's 2015-12-05 graph), uninitialised; keys match pytorch-fid's file."""
    blocks = [BasicConv2d, FIDInceptionA, InceptionB, FIDInceptionC, InceptionD, FIDInceptionE, InceptionAux]
    net = Inception3(num_classes=FID_NUM_CLASSES, aux_logits=False, transform_input=False,
                     inception_blocks=blocks, init_weights=False)
    net.Mixed_7c.max_pool = True   # so the TensorFlow graph does (likely a bug there; kept for comparable numbers)
    return net


def randomise(net: nn.Module, seed: int = RANDOM_WEIGHTS_SEED) -> nn.Module:
    """He-normal weights (activations keep their scale through the whole network), drawn from a fixed seed."""
    generator = torch.Generator().manual_seed(seed)
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu", generator=generator)
    return net


class InceptionFeatures(nn.Module):
    """Activations of an InceptionV3 for 299x299 images with values in [0, 255]: (batch, dims) float32.

    dims 2048 is pool3 (the mean over the final 8x8 map); 64, 192 and 768 average the outputs of the first max
    pool, the second max pool and Mixed_6e. Only the layers needed run.
    """

    def __init__(self, net: Inception3, dims: int = 2048):
        super().__init__()
        if dims not in DIMS:
            raise ValueError(f"dims must be one of {DIMS}, got {dims}")
        stages = [net.Conv2d_1a_3x3, net.Conv2d_2a_3x3, net.Conv2d_2b_3x3, net.maxpool1]
        if dims >= 192:
            stages += [net.Conv2d_3b_1x1, net.Conv2d_4a_3x3, net.maxpool2]
        if dims >= 768:
            stages += [net.Mixed_5b, net.Mixed_5c, net.Mixed_5d, net.Mixed_6a, net.Mixed_6b, net.Mixed_6c,
                       net.Mixed_6d, net.Mixed_6e]
        if dims == 2048:
            stages += [net.Mixed_7a, net.Mixed_7b, net.Mixed_7c]
        self.body = nn.Sequential(*stages)
        self.dims = dims

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images - 127.5) / 127.5
        return self.body(x).mean(dim=(2, 3))


class WeightsUnavailable(RuntimeError):
    """The requested Inception weights cannot be had; the message names the file, the URL and the ways out."""


def _ways_out(problem: str) -> WeightsUnavailable:
    return WeightsUnavailable(
        f"{problem}\nThe standard FID Inception weights are the file {FID_WEIGHTS_FILE} ({FID_WEIGHTS_URL}; the same "
        f"file pytorch-fid downloads). Ways out:\n"
        f"  - download it where there is network and pass --weights /path/to/{FID_WEIGHTS_FILE}, or copy it to "
        f"{default_weights_path()}\n"
        f"  - --weights torchvision: torchvision's ImageNet InceptionV3 (its own download/cache); a different network, "
        f"FIDs not comparable with published ones\n"
        f"  - --weights random: random weights, for testing the pipeline only")


def default_weights_path() -> Path:
    """Where torch.hub (and so pytorch-fid) caches the FID weights file."""
    return Path(torch.hub.get_dir()) / "checkpoints" / FID_WEIGHTS_FILE


def load_inception(weights: str = "fid", dims: int = 2048) -> tuple[InceptionFeatures, dict[str, Any]]:
    """The feature extractor for --weights fid|PATH|torchvision|random, and a record of which weights it has.

    The record's `id` is what statistics files are checked against: FIDs mix only statistics of the same weights.
    Raises WeightsUnavailable (naming the file, the URL and the ways out) when the weights cannot be had.
    """
    if weights == "random":
        net = randomise(build_fid_inception())
        info = {"name": "random", "id": f"random-fid-inception-seed{RANDOM_WEIGHTS_SEED}", "seed": RANDOM_WEIGHTS_SEED}
    elif weights == "torchvision":
        from torchvision.models import Inception_V3_Weights, inception_v3
        try:
            # transform_input=False: we feed (x - 127.5) / 127.5, which is what transform_input makes of
            # ImageNet-normalised input, so both weight sets see the same range
            # torchvision insists on aux_logits=True with pretrained weights; the auxiliary head is then dropped
            net = inception_v3(weights=Inception_V3_Weights.IMAGENET1K_V1, aux_logits=True, transform_input=False)
            net.aux_logits, net.AuxLogits = False, None
        except OSError as error:
            raise _ways_out(f"torchvision's InceptionV3 weights ({Inception_V3_Weights.IMAGENET1K_V1.url}) could not "
                            f"be downloaded into {torch.hub.get_dir()}: {error}") from None
        info = {"name": "torchvision", "id": "torchvision-inception_v3-IMAGENET1K_V1",
                "url": Inception_V3_Weights.IMAGENET1K_V1.url,
                "note": "torchvision's ImageNet InceptionV3, not the standard FID network"}
    else:
        path = default_weights_path() if weights == "fid" else Path(weights)
        if weights == "fid" and not path.is_file():
            print(f"downloading {FID_WEIGHTS_URL} to {path}", file=sys.stderr)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                torch.hub.download_url_to_file(FID_WEIGHTS_URL, str(path))
            except OSError as error:
                raise _ways_out(f"{path} does not exist and could not be downloaded: {error}") from None
        if not path.is_file():
            raise _ways_out(f"weights file {path} does not exist")
        net = build_fid_inception()
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, pickle.UnpicklingError) as error:
            raise ValueError(f"{path} cannot be read as a PyTorch state dict: {error}") from None
        try:
            net.load_state_dict(state, strict=True)
        except (RuntimeError, TypeError, AttributeError) as error:
            raise ValueError(f"{path} is not the FID Inception state dict ({FID_WEIGHTS_FILE}): "
                             f"{str(error)[:1000]}") from None
        digest = sha256_file(path)
        print(f"FID Inception weights {path}  sha256 {digest}", file=sys.stderr)
        info = {"name": "fid", "id": f"fid-inception-sha256:{digest}", "path": str(path), "sha256": digest,
                "url": FID_WEIGHTS_URL}
    return InceptionFeatures(net.eval().requires_grad_(False), dims), info


# ----------------------------------------------------------------------------------------------------------------
# Images


def resize_for_inception(image: np.ndarray, size: int = INPUT_SIZE) -> torch.Tensor:
    """H x W x 3 uint8 RGB -> 3 x size x size float32 in [0, 255]: antialiased bicubic (PIL's kernel), clamped."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
    return x[0].clamp_(0, 255)


@dataclass
class FolderImages:
    """The image files under a folder, read as RGB (a picklable reader for DataLoader workers)."""
    files: list[Path]

    def read(self, index: int) -> np.ndarray:
        return read_rgb(self.files[index])


@dataclass
class ImageSet:
    """Images to measure: `read(i)` gives item i as H x W x 3 uint8 RGB; `indices` are the items used."""
    label: str
    read: Callable[[int], np.ndarray]
    indices: np.ndarray
    record: dict[str, Any]


@dataclass
class StatsFile:
    label: str
    stats: FeatureStats
    info: dict[str, Any] | None
    record: dict[str, Any]


class ResizedImages(Dataset):
    def __init__(self, images: ImageSet):
        self.images = images

    def __len__(self) -> int:
        return len(self.images.indices)

    def __getitem__(self, position: int) -> torch.Tensor:
        index = int(self.images.indices[position])
        image = self.images.read(index)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"{self.images.label}: item {index} is not an H x W x 3 uint8 RGB image "
                             f"(shape {image.shape}, dtype {image.dtype})")
        return resize_for_inception(image)


def choose_subset(pool: np.ndarray, size: int, seed: int, allow_smaller: bool, what: str) -> np.ndarray:
    """`size` items of `pool` drawn at random without replacement (seeded), ascending; size 0 means all."""
    pool = np.sort(np.asarray(pool, dtype=np.int64))
    if len(pool) == 0:
        raise ValueError(f"{what} has no images")
    if size < 0:
        raise ValueError(f"--subset must be 0 (all images) or positive, got {size}")
    if size == 0 or size == len(pool):
        return pool
    if len(pool) < size:
        if allow_smaller:
            return pool
        raise ValueError(f"{what} has {len(pool)} images, fewer than --subset {size}. FID depends on the number of "
                         f"images, so sets are compared at one size: pass --allow-smaller to use all {len(pool)} "
                         f"(the record says so), or a smaller --subset for every set")
    return np.sort(np.random.default_rng(seed).choice(pool, size=size, replace=False))


def _sha256_lines(lines: list[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def list_image_folder(folder: Path) -> tuple[list[Path], list[Path]]:
    """(image files, other files) under `folder` at any depth, sorted."""
    files = sorted(path for path in folder.rglob("*") if path.is_file())
    images = [path for path in files if path.suffix.lower() in IMAGE_SUFFIXES]
    return images, [path for path in files if path.suffix.lower() not in IMAGE_SUFFIXES]


def dataset_input(name: str, root: Path, split: str, split_file: Path | None, subset: int, seed: int,
                  allow_smaller: bool) -> ImageSet:
    samples = open_dataset(name, root)
    record: dict[str, Any] = {"kind": "dataset", "name": name, "root": str(root), "split": split}
    if split == "all":
        pool = np.arange(len(samples))
    else:
        from splits import resolve_split  # only a named split needs the split machinery (and writes its file)
        splits, path, sha = resolve_split(samples, split_file=split_file)
        if split not in splits:
            raise ValueError(f"dataset '{name}' has no images in split '{split}'; its splits: {', '.join(splits)}")
        pool = splits[split]
        record.update(split_file=str(path), split_sha256=sha)
    chosen = choose_subset(pool, subset, seed, allow_smaller, f"dataset '{name}' (split {split}) at {root}")
    record.update(num_available=len(pool), num_used=len(chosen), seed=seed,
                  ids_sha256=_sha256_lines([samples.ids[i] for i in chosen]))
    return ImageSet(name, samples.read_image, chosen, record)


def folder_input(folder: Path, subset: int, seed: int, allow_smaller: bool) -> ImageSet:
    images, others = list_image_folder(folder)
    if others:
        kinds = sorted({path.suffix.lower() or "(no suffix)" for path in others})
        print(f"{folder}: skipped {len(others)} files that are not images ({', '.join(kinds[:8])})", file=sys.stderr)
    chosen = choose_subset(np.arange(len(images)), subset, seed, allow_smaller, f"image folder {folder}")
    relative = [images[i].relative_to(folder).as_posix() for i in chosen]
    record = {"kind": "folder", "path": str(folder), "num_available": len(images), "num_used": len(chosen),
              "seed": seed, "skipped_non_images": len(others), "files_sha256": _sha256_lines(relative)}
    return ImageSet(folder.name, FolderImages(images).read, chosen, record)


def stats_input(path: Path) -> StatsFile:
    stats, info = load_stats(path)
    record = {"kind": "stats", "path": str(path), "sha256": sha256_file(path), "num_images": stats.num_images,
              "info": info}
    return StatsFile(path.stem, stats, info, record)


def open_input(text: str, *, root: Path | None = None, data_root: Path = Path("datasets"), split: str = "all",
               split_file: Path | None = None, subset: int = DEFAULT_SUBSET, seed: int = 0,
               allow_smaller: bool = False) -> ImageSet | StatsFile:
    """A command-line input: a statistics file (.npz), a registry dataset name, or an image folder."""
    path = Path(text)
    if path.suffix == ".npz":
        return stats_input(path)
    if text in REGISTRY:
        return dataset_input(text, root or data_root / text, split, split_file, subset, seed, allow_smaller)
    if path.is_dir():
        return folder_input(path, subset, seed, allow_smaller)
    raise ValueError(f"input '{text}' is neither a dataset name ({', '.join(REGISTRY)}), an image folder, nor a "
                     f"statistics file (.npz)")


# ----------------------------------------------------------------------------------------------------------------
# Feature extraction


def compute_statistics(images: ImageSet, model: InceptionFeatures, batch_size: int = 50, device: str = "cpu",
                       workers: int = 0, amp: bool = False) -> FeatureStats:
    """Mean and covariance of the model's activations over the images, streamed batch by batch."""
    device = torch.device(device)
    if amp and device.type != "cuda":
        raise ValueError("--amp is for CUDA devices only: on CPU the network runs in float32")
    loader = DataLoader(ResizedImages(images), batch_size=batch_size, num_workers=workers,
                        pin_memory=device.type == "cuda")
    model = model.to(device).to(memory_format=torch.channels_last)
    running = RunningStats()
    # cuDNN may run float32 convolutions in TF32 (10-bit mantissa) on recent GPUs; FID wants full float32
    precision = (torch.backends.cudnn.flags(enabled=True, benchmark=True, deterministic=False, allow_tf32=False)
                 if device.type == "cuda" else contextlib.nullcontext())
    with precision, torch.inference_mode():
        for batch in tqdm(loader, desc=f"features {images.label}", unit="batch", leave=False):
            batch = batch.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                features = model(batch)
            running.update(features.float())
    return running.result()


def made_with(weights: dict[str, Any], dims: int, amp: bool) -> dict[str, Any]:
    """How statistics are made: statistics made otherwise do not mix (check_compatible)."""
    return {"weights": weights, "dims": dims, "resize": RESIZE, "normalisation": NORMALISATION, "amp": amp}


def _identity(info: dict[str, Any]) -> dict[str, Any]:
    return {"weights": (info.get("weights") or {}).get("id"), "dims": info.get("dims"), "resize": info.get("resize"),
            "normalisation": info.get("normalisation")}


def check_compatible(stats: StatsFile, made_with: dict[str, Any] | None, other: str) -> None:
    """Refuse to mix statistics of other weights, dims or preprocessing; say so when a file does not record them."""
    path = stats.record["path"]
    if made_with is not None and len(stats.stats.mu) != made_with["dims"]:
        raise ValueError(f"statistics file {path} has {len(stats.stats.mu)} dimensions, {other} {made_with['dims']}")
    if stats.info is None:
        print(f"note: {path} does not record how it was made (a pytorch-fid file?): make sure it used the same "
              f"weights and preprocessing as {other}", file=sys.stderr)
        return
    if made_with is None:
        return
    ours, theirs = _identity(made_with), _identity(stats.info)
    for key, value in ours.items():
        if theirs[key] != value:
            raise ValueError(f"statistics file {path} was made with {key} {theirs[key]!r}, but {other} uses "
                             f"{value!r}: FIDs mix only statistics made the same way")


# ----------------------------------------------------------------------------------------------------------------
# Command line


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "input"


def _model(args: argparse.Namespace) -> tuple[InceptionFeatures, dict[str, Any]]:
    """The feature extractor of --weights/--dims, and how statistics made with it are described."""
    model, weights = load_inception(args.weights, args.dims)
    return model, made_with(weights, args.dims, args.amp)


def _input_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"data_root": args.data_root, "split": args.split, "split_file": args.split_file, "subset": args.subset,
            "seed": args.seed, "allow_smaller": args.allow_smaller}


def run_pair(args: argparse.Namespace) -> dict[str, Any]:
    """FID of A and B, written as a JSON record (returned); with A alone, only its statistics are saved."""
    num_datasets = sum(text in REGISTRY for text in args.inputs)
    if args.root is not None and num_datasets != 1:
        raise ValueError(f"--root names the root of one dataset input, but there are {num_datasets}: "
                         f"{'put both under --data-root' if num_datasets else 'leave --root out'}")
    sources = [open_input(text, root=args.root, **_input_options(args)) for text in args.inputs]
    saves = [args.save_stats, args.save_stats_b][:len(sources)]
    for source, save in zip(sources, saves):
        if save is not None and isinstance(source, StatsFile):
            raise ValueError(f"cannot save statistics of {source.record['path']}: it already is a statistics file")
    model = description = None
    if any(isinstance(source, ImageSet) for source in sources):
        model, description = _model(args)
    for source in sources:
        if isinstance(source, StatsFile):
            check_compatible(source, description, "this run" if model else "the other statistics file")
            description = description or source.info
    all_stats = []
    for source, save in zip(sources, saves):
        if isinstance(source, StatsFile):
            all_stats.append(source.stats)
            continue
        stats = compute_statistics(source, model, args.batch_size, args.device, args.workers, args.amp)
        if save is not None:
            save_stats(save, stats, {**description, "source": source.record, **provenance()})
            print(f"statistics of {source.label} ({stats.num_images} images) written to {save}")
        all_stats.append(stats)
    if len(sources) == 1:
        return {}
    (a, b), (stats_a, stats_b) = sources, all_stats
    value = frechet_distance(stats_a.mu, stats_a.sigma, stats_b.mu, stats_b.sigma)
    record = {"kind": "fid", "fid": value, "inputs": {"a": a.record, "b": b.record},
              "num_images": {"a": stats_a.num_images, "b": stats_b.num_images},
              "subset": args.subset, "seed": args.seed, "allow_smaller": args.allow_smaller,
              "made_with": description, "matrix_sqrt": MATRIX_SQRT, "device": args.device if model else None,
              "batch_size": args.batch_size, **provenance()}
    out = args.out_dir / f"fid_{_slug(a.label)}_vs_{_slug(b.label)}.json"
    atomic_write_json(out, record)
    print(f"FID({a.label}, {b.label}) = {value:.4f}   ({stats_a.num_images} and {stats_b.num_images} images; "
          f"record {out})")
    return record


def run_table(args: argparse.Namespace) -> list[dict[str, Any]]:
    """--all-datasets: FID of every dataset found under --data-root (and each --folder) to the --ref statistics."""
    if args.ref is None:
        raise ValueError("--all-datasets needs --ref: the reference statistics file (e.g. of ImageNet val)")
    reference = stats_input(args.ref)
    found = [name for name in REGISTRY if name not in DEMO_DATASETS and (args.data_root / name).is_dir()]
    folders = [parse_folder(text) for text in args.folder]
    if not found and not folders:
        raise ValueError(f"no dataset found under {args.data_root} (looked for "
                         f"{', '.join(n for n in REGISTRY if n not in DEMO_DATASETS)}) and no --folder given")
    # open every input first: a broken layout or too few images is reported before hours of feature extraction
    options = _input_options(args)
    sources = [(name, "web-scraped" if name in WEB_SCRAPED else "real-world", open_input(name, **options))
               for name in found]
    sources += [(name, "web-scraped", folder_input(path, args.subset, args.seed, args.allow_smaller))
                for name, path in folders]
    model, description = _model(args)
    check_compatible(reference, description, "this run")
    rows = []
    for name, group, source in sources:
        stats = compute_statistics(source, model, args.batch_size, args.device, args.workers, args.amp)
        value = frechet_distance(stats.mu, stats.sigma, reference.stats.mu, reference.stats.sigma)
        print(f"FID({name}, {reference.label}) = {value:.4f}   ({stats.num_images} images)")
        rows.append({"dataset": name, "group": group, "num_available": source.record["num_available"],
                     "num_used": stats.num_images, "fid": value, "input": source.record})
    write_table(args.out_dir, rows, {"reference": reference.record, "subset": args.subset, "seed": args.seed,
                                     "allow_smaller": args.allow_smaller, "made_with": description,
                                     "matrix_sqrt": MATRIX_SQRT, "device": args.device})
    return rows


def parse_folder(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not Path(path).is_dir():
        raise ValueError(f"--folder {text!r}: expected NAME=PATH with PATH an image folder")
    return name, Path(path)


TABLE_COLUMNS = ("dataset", "group", "num_available", "num_used", "fid")


def write_table(out_dir: Path, rows: list[dict[str, Any]], details: dict[str, Any]) -> None:
    """fid_table.csv / .md / .json and the bar figure fid_bars.png in out_dir, each written atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(TABLE_COLUMNS)
    for row in rows:
        writer.writerow([row[c] if c != "fid" else f"{row[c]:.4f}" for c in TABLE_COLUMNS])
    atomic_write_text(out_dir / "fid_table.csv", buffer.getvalue())
    lines = ["| dataset | group | images available | images used | FID to reference |", "|---|---|---:|---:|---:|"]
    lines += [f"| {r['dataset']} | {r['group']} | {r['num_available']} | {r['num_used']} | {r['fid']:.2f} |"
              for r in rows]
    atomic_write_text(out_dir / "fid_table.md", "\n".join(lines) + "\n")
    atomic_write_json(out_dir / "fid_table.json", {"kind": "fid_table", "rows": rows, **details, **provenance()})
    atomic_write_bytes(out_dir / "fid_bars.png", plot_table(rows, details["reference"]["path"]))
    print(f"table and figure written to {out_dir}/fid_table.{{csv,md,json}} and fid_bars.png")


def plot_table(rows: list[dict[str, Any]], reference: str) -> bytes:
    """PNG bytes of the bar figure: FID per dataset, web-scraped and real-world in two colours."""
    import matplotlib  # imported here: only the table needs it, and it is slow to import
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"web-scraped": "tab:blue", "real-world": "tab:orange"}
    ordered = sorted(rows, key=lambda row: row["fid"])
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * len(ordered), 3.5))
    ax.bar([row["dataset"] for row in ordered], [row["fid"] for row in ordered],
           color=[colours[row["group"]] for row in ordered])
    for group, colour in colours.items():
        ax.bar([], [], color=colour, label=group)
    sizes = sorted({row["num_used"] for row in rows})
    ax.set_ylabel(f"FID to {Path(reference).stem}")
    ax.set_title(f"{', '.join(map(str, sizes))} images per dataset", fontsize=9)
    ax.legend(frameon=False, fontsize=8)
    ax.tick_params(axis="x", labelrotation=30)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=150)
    plt.close(fig)
    return buffer.getvalue()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="*", metavar="A [B]",
                        help="dataset name, image folder or statistics file (.npz); one input with --save-stats")
    parser.add_argument("--subset", type=int, default=DEFAULT_SUBSET,
                        help="images drawn from each dataset/folder input, without replacement; 0 = all")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random subset")
    parser.add_argument("--allow-smaller", action="store_true",
                        help="use all images of an input that has fewer than --subset (instead of an error)")
    parser.add_argument("--split", default="all",
                        help="which images of a dataset input: all (default, the paper's choice) or a split name")
    parser.add_argument("--split-file", type=Path, default=None,
                        help="split file for --split other than all (default: splits.py's default split)")
    parser.add_argument("--root", type=Path, default=None,
                        help="root of the (one) dataset input (default <data-root>/<name>)")
    parser.add_argument("--data-root", type=Path, default=Path("datasets"),
                        help="folder holding the datasets, each at <data-root>/<name>")
    parser.add_argument("--weights", default="fid",
                        help="fid (standard FID Inception, torch hub cache), PATH to that file, torchvision, random")
    parser.add_argument("--dims", type=int, default=2048, choices=DIMS,
                        help="feature dimensions: 2048 = pool3 (standard); 64/192/768 = earlier blocks")
    parser.add_argument("--batch-size", type=int, default=50, help="images per forward pass")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                        help="DataLoader processes decoding and resizing images (0 = in the main process)")
    parser.add_argument("--device", default=default_device(), help="torch device (default cuda when available)")
    parser.add_argument("--amp", action="store_true",
                        help="float16 autocast on CUDA (faster; not checked to keep statistics within 1e-3)")
    parser.add_argument("--save-stats", type=Path, default=None, help="write the statistics of input A to this .npz")
    parser.add_argument("--save-stats-b", type=Path, default=None, help="write the statistics of input B to this .npz")
    parser.add_argument("--all-datasets", action="store_true",
                        help="FID of every dataset under --data-root (and --folder) to --ref: the paper's table")
    parser.add_argument("--ref", type=Path, default=None, help="reference statistics file for --all-datasets")
    parser.add_argument("--folder", action="append", default=[], metavar="NAME=PATH",
                        help="with --all-datasets: an extra image folder, shown as web-scraped (repeatable)")
    parser.add_argument("--out-dir", type=Path, default=Path("reports/fid"),
                        help="where the JSON record (and the table and figure) go")
    return parser


def run(argv: list[str] | None = None) -> dict[str, Any] | list[dict[str, Any]]:
    """The command line as a function (tests call it): the FID record, the table rows, or {} after --save-stats."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.all_datasets:
        if args.inputs:
            parser.error("--all-datasets takes no inputs A/B (datasets come from --data-root and --folder)")
        return run_table(args)
    if not 1 <= len(args.inputs) <= 2:
        parser.error("give two inputs A B for their FID, or one input with --save-stats")
    if len(args.inputs) == 1 and args.save_stats is None:
        parser.error("one input: pass --save-stats FILE to store its statistics, or a second input for the FID")
    if args.save_stats_b is not None and len(args.inputs) < 2:
        parser.error("--save-stats-b needs a second input")
    return run_pair(args)


def main() -> None:
    try:
        run()
    except (ValueError, FileNotFoundError, FileExistsError, WeightsUnavailable, BadImageError) as error:
        # bad inputs, files or weights: the message names which and what to do
        raise SystemExit(f"fid.py: error: {error}") from None


if __name__ == "__main__":
    main()
