"""The Fréchet distance between two Gaussians, and the mean and covariance of activations it compares.

    stats = RunningStats(); stats.update(features_batch) ...; a = stats.result()   # mean and covariance, float64
    fid = frechet_distance(a.mu, a.sigma, b.mu, b.sigma)
    save_stats("a.npz", a, info); a, info = load_stats("a.npz")                    # pytorch-fid's mu, sigma keys

The distance: ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr sqrt(S1 S2), in float64. No matrix square root is formed:
with S1 = A A^T (Cholesky with complete pivoting, LAPACK dpstrf, which stops at S1's numerical rank), the nonzero
eigenvalues of S1 S2 are those of the symmetric positive semi-definite A^T S2 A (and of sqrt(S1) S2 sqrt(S1)), so
tr sqrt(S1 S2) is the sum of the square roots of its eigenvalues (numpy's eigvalsh). This agrees with
scipy.linalg.sqrtm to rounding on full-rank covariances, is exact for singular ones (fewer images than dimensions)
without the 1e-6 identity offset that pytorch-fid adds when sqrtm fails (an offset that slightly biases such
FIDs), never produces imaginary parts (scipy 1.11.2-1.12's sqrtm did), does not depend on sqrtm's `disp`
argument (removed in scipy 1.18), and costs a fraction of an eigendecomposition. Eigenvalues below rounding level
count as zero. Both covariances are checked alike (check_covariance): values finite, symmetric, no negative
variance, no clearly negative direction; anything else is an error, raised by load_stats for a file's.
"""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.linalg.lapack import dpstrf

from common import errors
from common.fileio import atomic_save_npz

MATRIX_SQRT = "tr sqrt(S1 S2) from eigvalsh(A^T S2 A), S1 = A A^T by pivoted Cholesky (LAPACK dpstrf); float64"
ROUNDING = 1e-9  # relative to the distance's scale, a negative result this small is rounding
# relative to the largest variance: an asymmetry, a negative variance or a factor's residual this small is rounding
PSD_TOLERANCE = 1e-6


class StatsFileError(errors.DataError, ValueError):
    """A statistics file that does not exist, cannot be read, or lacks mu and sigma of matching shapes."""


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64.

    With sigma1 = A A^T, the nonzero eigenvalues of sigma1 sigma2 are those of the symmetric positive semi-definite
    A^T sigma2 A, so tr sqrt(sigma1 sigma2) is the sum of their square roots: real, and exact also for singular
    covariances. The result is never negative: rounding below zero (a set with itself) gives 0.0. Raises
    ValueError on mismatched shapes, non-finite values, or a sigma that is no covariance (check_covariance: both
    are checked alike).
    """
    mu1, mu2 = np.asarray(mu1, dtype=np.float64), np.asarray(mu2, dtype=np.float64)
    sigma1, sigma2 = np.asarray(sigma1, dtype=np.float64), np.asarray(sigma2, dtype=np.float64)
    factors = []
    for name, mu, sigma in (("1", mu1, sigma1), ("2", mu2, sigma2)):
        if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)):
            raise ValueError(f"mu{name} must be (d,) and sigma{name} (d, d); got {mu.shape} and {sigma.shape}")
        if not np.isfinite(mu).all():
            raise ValueError(f"mu{name} contains NaN or infinite values")
        factors.append(check_covariance(sigma, f"sigma{name}"))
    if mu1.shape != mu2.shape:
        raise ValueError(f"the two statistics have different dimensions: {len(mu1)} and {len(mu2)}")
    factor = factors[0]
    product = factor.T @ sigma2 @ factor
    eigenvalues = np.linalg.eigvalsh((product + product.T) / 2)
    largest = max(float(np.abs(eigenvalues).max(initial=0.0)), np.finfo(np.float64).tiny)
    # eigvalsh is accurate to about r * eps * largest: below that an eigenvalue is a zero's rounding noise (sigma2
    # is positive semi-definite, so a negative one is rounding too)
    rounding = len(eigenvalues) * np.finfo(np.float64).eps * largest
    tr_sqrt = np.sqrt(eigenvalues[eigenvalues > rounding]).sum()
    diff = mu1 - mu2
    scale = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2))
    value = scale - 2 * tr_sqrt
    if value < -ROUNDING * max(scale, np.finfo(np.float64).tiny):
        raise ValueError(f"the distance came out clearly negative ({value:.3g} at scale {scale:.3g}): the covariances "
                         f"are numerically broken")
    return max(float(value), 0.0)  # a squared distance: a tiny negative is rounding (e.g. a set with itself)


def check_covariance(sigma: np.ndarray, name: str = "sigma") -> np.ndarray:
    """A (d, r) with sigma = A A^T and r its numerical rank, or ValueError "`name` <what is wrong>" when sigma is
    no covariance: values not finite, not symmetric, a negative variance, or a clearly negative direction.

    The factor is Cholesky's with complete pivoting (LAPACK dpstrf), which stops once the remaining pivots fall
    below d * eps * max(diag), so a singular covariance (fewer images than dimensions) costs little and its null
    directions are exactly zero. Tolerances are relative to the largest variance, so rounding passes.
    """
    sigma = np.asarray(sigma, dtype=np.float64)
    if not np.isfinite(sigma).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    scale = max(float(np.abs(np.diag(sigma)).max(initial=0.0)), np.finfo(np.float64).tiny)
    asymmetry = float(np.abs(sigma - sigma.T).max(initial=0.0))
    if asymmetry > PSD_TOLERANCE * scale:
        raise ValueError(f"{name} is not symmetric: entries [i, j] and [j, i] differ by up to {asymmetry:.3g} "
                         f"(largest variance {scale:.3g})")
    variances = np.diag(sigma)
    lowest = int(np.argmin(variances)) if len(variances) else 0
    if len(variances) and variances[lowest] < -PSD_TOLERANCE * scale:
        raise ValueError(f"{name} has a negative variance: {variances[lowest]:.3g} on its diagonal at dimension "
                         f"{lowest}")
    triangle, pivots, rank, _ = dpstrf(sigma, lower=1)
    factor = np.zeros((len(sigma), rank))
    factor[pivots - 1] = np.tril(triangle)[:, :rank]   # dpstrf factors sigma[piv][:, piv] and leaves junk above
    residual = float(np.abs(sigma - factor @ factor.T).max(initial=0.0))
    if residual > PSD_TOLERANCE * scale:
        raise ValueError(f"{name} is not positive semi-definite: its pivoted Cholesky factor misses it by "
                         f"{residual:.3g} (largest variance {scale:.3g})")
    return factor


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
        raise errors.UsageError(f"statistics file {path}: the name must end in .npz")
    atomic_save_npz(path, mu=stats.mu, sigma=stats.sigma, num_images=np.int64(stats.num_images),
                    info=np.array(json.dumps(info, sort_keys=True)))


def load_stats(path: str | Path) -> tuple[FeatureStats, dict[str, Any] | None]:
    """Statistics and their `info` (None in files without it, e.g. pytorch-fid's). Checks keys and shapes, that
    the values are finite and that sigma is a covariance (check_covariance), so that a broken file is named when it
    is read, before any features are computed."""
    path = Path(path)
    if not path.is_file():
        raise StatsFileError(f"statistics file {path} does not exist")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise StatsFileError(f"statistics file {path} cannot be read as .npz: {error}") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise StatsFileError(f"statistics file {path} holds one bare array, not an .npz archive with mu and sigma")
    with loaded:
        arrays = {key: loaded[key] for key in loaded.files}
    missing = [key for key in ("mu", "sigma") if key not in arrays]
    if missing:
        raise StatsFileError(f"statistics file {path}: no {' or '.join(missing)} array (keys found: "
                             f"{', '.join(arrays) or 'none'}); it must hold mu and sigma as pytorch-fid's do")
    mu, sigma = arrays["mu"].astype(np.float64), arrays["sigma"].astype(np.float64)
    num_images = int(arrays["num_images"]) if "num_images" in arrays else None
    info = json.loads(str(arrays["info"])) if "info" in arrays else None
    if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)):
        raise StatsFileError(f"statistics file {path}: mu must be (d,) and sigma (d, d), got {mu.shape} and "
                             f"{sigma.shape}")
    remake = f"remake it from the images with `python fid.py IMAGES --save-stats {path}`"
    if not np.isfinite(mu).all():
        raise StatsFileError(f"statistics file {path}: mu contains NaN or infinite values; {remake}")
    try:
        check_covariance(sigma, "sigma")
    except ValueError as problem:
        raise StatsFileError(f"statistics file {path}: {problem}, so it is no covariance; {remake}") from None
    return FeatureStats(mu, sigma, num_images), info
