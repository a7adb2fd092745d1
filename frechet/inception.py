"""The FID Inception network and its weights: InceptionV3 as the standard FID's TensorFlow graph has it.

    model, weights = inception.load_inception("fid", dims=2048)     # (batch, 3, 299, 299) in [0, 255] -> (batch, 2048)
    features = model(torch.stack([inception.resize_for_inception(image) for image in images]))

--weights selects the network: "fid" (the standard FID Inception, TensorFlow's 2015-12-05 graph ported by
pytorch-fid, file FID_WEIGHTS_FILE from FID_WEIGHTS_URL, looked for in the torch hub cache where pytorch-fid keeps
it and downloaded there when missing), a PATH to that file, "torchvision" (torchvision's ImageNet InceptionV3: a
different network, its FIDs not comparable to published ones) or "random" (fixed-seed random weights, for tests).
The FID network differs from torchvision's: its average pools ignore the zero padding (count_include_pad=False),
the last block (Mixed_7c) max-pools in its pool branch, and it has 1,008 classes. It is built here on torchvision's
Inception3 modules, so the file loads with strict key checking. Its SHA-256 is not pinned (it could not be checked
without network when this was written): the SHA-256 of the file loaded is printed and recorded.
"""
from __future__ import annotations

import pickle
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.inception import (
    BasicConv2d,
    Inception3,
    InceptionA,
    InceptionAux,
    InceptionB,
    InceptionC,
    InceptionD,
    InceptionE,
)

from common.errors import WeightsFileError, WeightsUnavailableError
from common.fileio import sha256_file
from frechet import DIMS

FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{FID_WEIGHTS_FILE}"
FID_NUM_CLASSES = 1008           # the TensorFlow graph's classifier: 1,000 ImageNet classes and 8 unused
RANDOM_WEIGHTS_SEED = 0
INPUT_SIZE = 299
RESIZE = ("bicubic with antialiasing to 299x299 on float RGB (torch interpolate, PIL's kernel), "
          "clamped to [0, 255]")
NORMALISATION = "(x - 127.5) / 127.5 for x in [0, 255]"


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


def _ways_out(problem: str) -> WeightsUnavailableError:
    return WeightsUnavailableError(
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
    Raises WeightsUnavailableError (naming the file, the URL and the ways out) when the weights cannot be had.
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
            raise WeightsFileError(f"{path} cannot be read as a PyTorch state dict: {error}") from None
        try:
            net.load_state_dict(state, strict=True)
        except (RuntimeError, TypeError, AttributeError) as error:
            raise WeightsFileError(f"{path} is not the FID Inception state dict ({FID_WEIGHTS_FILE}): "
                                   f"{str(error)[:1000]}") from None
        digest = sha256_file(path)
        print(f"FID Inception weights {path}  sha256 {digest}", file=sys.stderr)
        info = {"name": "fid", "id": f"fid-inception-sha256:{digest}", "path": str(path), "sha256": digest,
                "url": FID_WEIGHTS_URL}
    return InceptionFeatures(net.eval().requires_grad_(False), dims), info


def resize_for_inception(image: np.ndarray, size: int = INPUT_SIZE) -> torch.Tensor:
    """H x W x 3 uint8 RGB -> 3 x size x size float32 in [0, 255]: antialiased bicubic (PIL's kernel), clamped."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
    return x[0].clamp_(0, 255)
