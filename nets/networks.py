"""Building the networks of models.py's registry: a fresh head, the requested weights, GeM pooling, extra channels.

`create_model(name, num_classes, weights=..., pool=..., in_chans=...)` returns the network with a freshly
initialised head, and a ModelInfo saying what was built and which weights were really loaded (the run record's
`model` block).
Weights: "imagenet" (the model's pretrained weights: the library's, from its usual cache or downloaded into it,
nets/weights.py; or a models file's checkpoint), "random", or a path to a local .safetensors/.pth state dict.
Pretrained weights that cannot be had raise WeightsUnavailableError in seconds; nothing ever falls back to random
weights silently. `imagenet_classifier` builds a network with its own ImageNet head, for measuring its top-1.
"""
from __future__ import annotations

import itertools
import pickle
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import timm
import torch
import torchvision
from safetensors import SafetensorError
from safetensors.torch import load_file as load_safetensors
from timm.layers import SelectAdaptivePool2d
from torch import nn

from common import errors, fileio
from common.errors import WeightsFileError, WeightsUnavailableError
from nets import models_file
from nets import weights as pretrained_weights
from nets.models_file import WEIGHT_FILE_SUFFIXES
from nets.registry import ModelEntry, get_entry, qualified_name

__all__ = ["GeM", "ModelInfo", "UnsupportedOptionError", "WEIGHT_FILE_SUFFIXES", "WeightsFileError",
           "WeightsUnavailableError", "create_model", "imagenet_classifier", "load_trained_weights"]


class UnsupportedOptionError(errors.UsageError, ValueError):
    """An option the chosen network cannot take (GeM without a global pool, RGBY without an RGB stem)."""


class GeM(nn.Module):
    """Generalized-mean pooling, (mean over positions of x^p)^(1/p), with a learnable p starting at 3.

    Wraps the family's own global average pool, so that its input layout (timm's Swin pools channels-last) and
    flattening are kept: average-pooling x^p and taking the 1/p-th power is exactly GeM."""

    def __init__(self, avg_pool: nn.Module, p: float = 3.0, eps: float = 1e-6):
        super().__init__()
        self.avg_pool = avg_pool
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # in float32: cubes of activations overflow float16 and lose most digits in bfloat16
        pooled = self.avg_pool(x.float().clamp(min=self.eps).pow(self.p))
        return pooled.pow(1.0 / self.p).to(x.dtype)


@dataclass(frozen=True)
class ModelInfo:
    """What create_model built: the registry entry's facts and which weights were really loaded."""
    name: str
    label: str
    library: str
    constructor: str
    weights_tag: str | None
    weights_loaded: str          # "imagenet:<tag>", "random" or "file:<path> sha256=<hex>"
    head: str                    # "fresh", or "from file" when a weights file held this head
    imagenet_top1: float | None
    top1_source: str | None
    params: int
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    pool: str
    in_chans: int
    num_outputs: int
    group: str | None
    head_parameters: tuple[str, ...]  # the fresh head's parameter names (a linear probe trains only these)
    definition: dict[str, Any] | None = None  # a models file's entry, as read (None: a built-in or library model)

    def to_record(self) -> dict[str, Any]:
        """The run record's model block. `input_size` goes there as `default_input_size`: the registry's default
        fine-tuning size for this model (the paper's 256, 224 for DeiT), which beside the record's config.img_size
        (the size this run trains at: the dataset's or --img-size) read as a contradiction under the one name;
        records written before keep `input_size`, which nothing reads."""
        block = {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}
        block["default_input_size"] = block.pop("input_size")
        return block


def create_model(name: str | ModelEntry, num_classes: int, weights: str = "imagenet", pool: str = "avg",
                 in_chans: int = 3) -> tuple[nn.Module, ModelInfo]:
    """Build `name` (or a given entry: a record's models-file model) with a fresh `num_classes`-output head
    (1 = regression head) and the requested weights.

    pool="gem" replaces the network's global average pool with GeM (an error for families without one).
    in_chans > 3 adds input channels to the first convolution, each initialised to the mean of its RGB filters
    (after the weights are loaded, so pretrained RGB filters are kept).
    weights=PATH loads a state dict of this network. It may come from the 3-channel, average-pooled library
    model (as the library's own download does): then a head of another size stays freshly initialised, a 3-channel
    first convolution is extended as above and GeM's p starts at 3. Any other missing, unexpected or differently
    shaped key is an error naming them.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1 (1 is the regression head), got {num_classes}")
    if pool not in ("avg", "gem"):
        raise ValueError(f"pool must be 'avg' or 'gem', got {pool!r}")
    if in_chans < 3:
        raise ValueError(f"in_chans must be 3 or more (extra channels extend the RGB filters), got {in_chans}")
    weights_file = _weights_file(weights)
    entry = name if isinstance(name, ModelEntry) else get_entry(name)
    checkpoint = Path(entry.checkpoint) if weights == "imagenet" and entry.checkpoint else None

    if weights == "imagenet" and checkpoint is None:
        model, weights_loaded = pretrained_weights.pretrained(entry), f"imagenet:{entry.weights_tag}"
    else:
        model, weights_loaded = _library_model(entry), "random"

    head_keys = _reset_head(model, entry, num_classes)
    conv_key = None
    if in_chans > 3:
        if getattr(model, "transform_input", False):
            raise UnsupportedOptionError(f"{entry.name}: its pretrained network re-scales its three input channels "
                                         f"itself (torchvision's transform_input), so it cannot take {in_chans}")
        conv_name = _first_conv_name(model)
        conv = model.get_submodule(conv_name)
        conv.weight = nn.Parameter(_with_extra_channels(conv.weight.detach(), in_chans))
        conv.in_channels = in_chans
        conv_key = f"{conv_name}.weight"
    gem_key = f"{_use_gem(model, entry)}.p" if pool == "gem" else None

    head = "fresh"
    if weights_file is not None or checkpoint is not None:  # built with random weights above, now overwritten
        if _load_weights_file(model, weights_file or checkpoint, entry, head_keys, conv_key, gem_key):
            head = "from file"
        weights_loaded = _file_loaded(weights_file, entry)

    info = ModelInfo(
        name=entry.name, label=entry.label, library=entry.library, constructor=entry.constructor,
        weights_tag=entry.weights_tag, weights_loaded=weights_loaded, head=head, imagenet_top1=entry.imagenet_top1,
        top1_source=entry.top1_source, params=sum(p.numel() for p in model.parameters()),
        input_size=entry.input_size, mean=tuple(entry.mean), std=tuple(entry.std), pool=pool, in_chans=in_chans,
        num_outputs=num_classes, group=entry.group,
        head_parameters=tuple(sorted(name for name, _ in model.named_parameters() if name in head_keys)),
        definition=models_file.as_record(entry))
    return model, info


def imagenet_classifier(name: str | ModelEntry, weights: str = "imagenet") -> tuple[nn.Module, str]:
    """The network with its own ImageNet head, to measure its top-1 (evaluate.py --imagenet-val), and which weights
    it holds: its pretrained ones (a models file's checkpoint included), a file holding the whole network
    (weights=PATH: every key must fit), or random ones."""
    weights_file = _weights_file(weights)
    entry = name if isinstance(name, ModelEntry) else get_entry(name)
    if weights == "imagenet" and entry.checkpoint is None:
        return pretrained_weights.pretrained(entry), f"imagenet:{entry.weights_tag}"
    model = _library_model(entry)
    if weights == "random":
        return model, "random"
    load_trained_weights(model, weights_file or Path(entry.checkpoint))
    return model, _file_loaded(weights_file, entry)


def _file_loaded(weights_file: Path | None, entry: ModelEntry) -> str:
    """What a run's record says it loaded from a file: "file:<path> sha256=<hex>", or for a models file's checkpoint
    (the model's own pretrained weights) "imagenet:file:<path> sha256=<hex>"."""
    if weights_file is not None:
        return f"file:{weights_file.resolve()} sha256={fileio.sha256_file(weights_file)}"
    return f"imagenet:file:{entry.checkpoint} sha256={models_file.checkpoint_sha256(entry)}"


def _library_model(entry: ModelEntry) -> nn.Module:
    """The library's network for the entry, randomly initialised, with its original head."""
    try:
        if entry.library == "torchvision":
            return torchvision.models.get_model(entry.constructor, weights=None, **_torchvision_arguments(entry))
        return timm.create_model(qualified_name(entry), pretrained=False)
    except (ValueError, RuntimeError) as error:  # the libraries' answers to an unknown architecture or tag
        if entry.models_file is None:
            raise
        field = "constructor' or 'weights_tag" if entry.weights_tag else "constructor"
        raise models_file.ModelsFileError(f"{entry.models_file}: model '{entry.name}', field '{field}': "
                                          f"{' '.join(str(error).split())}") from None


def load_trained_weights(model: nn.Module, path: Path) -> None:
    """Load weights this toolkit saved for exactly this network (a run's best.safetensors): every key must fit."""
    state = _read_state_dict(Path(path))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise WeightsFileError(f"{path} does not fit this network ({' '.join(str(err).split())[:300]})") from None


def _weights_file(weights: str) -> Path | None:
    """None for "imagenet"/"random", else the existing weights file `weights` names."""
    if weights in ("imagenet", "random"):
        return None
    path = Path(weights)
    if not path.is_file():
        raise WeightsFileError(f"weights={weights!r}: not 'imagenet', not 'random', and no such file")
    if path.suffix not in WEIGHT_FILE_SUFFIXES:
        raise WeightsFileError(f"{path}: weights files must end in one of {', '.join(WEIGHT_FILE_SUFFIXES)}")
    return path


def _torchvision_arguments(entry: ModelEntry) -> dict[str, Any]:
    """What torchvision's builder sets when it loads an entry's weights, set for a random build too: evaluate.py
    rebuilds a fine-tuned network randomly before loading its weights, and it must be the network that trained."""
    if entry.constructor.startswith("vit_"):  # position embeddings for the weights' image size
        return {"image_size": entry.input_size}
    if entry.constructor in ("googlenet", "inception_v3"):  # no auxiliary heads; Google's input scaling with weights
        return {"aux_logits": False, "transform_input": entry.weights_tag is not None, "init_weights": True}
    return {}


def _state_ids(model: nn.Module) -> dict[str, int]:
    return {name: id(t) for name, t in itertools.chain(model.named_parameters(), model.named_buffers())}


def _reset_head(model: nn.Module, entry: ModelEntry, num_classes: int) -> set[str]:
    """Replace the classifier with a freshly initialised one; return the state-dict keys that are new."""
    before = _state_ids(model)
    if entry.library == "timm":
        model.reset_classifier(num_classes)
    else:  # torchvision's classifiers: fc (ResNet, RegNet, ShuffleNet, Inception), classifier, head (Swin), heads (ViT)
        attribute = next(name for name in ("fc", "classifier", "head", "heads") if hasattr(model, name))
        holder = getattr(model, attribute)
        if isinstance(holder, nn.Linear):  # ResNet, ResNeXt, ShuffleNet, RegNet, DenseNet, Swin
            setattr(model, attribute, nn.Linear(holder.in_features, num_classes))
        else:  # a Sequential ending in Linear (AlexNet, VGG, MobileNet, MnasNet, EfficientNet, ConvNeXt, MaxViT,
            # ViT) or SqueezeNet's 1x1 conv + pool
            index = max(i for i, layer in enumerate(holder) if isinstance(layer, (nn.Linear, nn.Conv2d)))
            old = holder[index]
            holder[index] = (nn.Linear(old.in_features, num_classes) if isinstance(old, nn.Linear)
                             else nn.Conv2d(old.in_channels, num_classes, kernel_size=1))
    return {name for name, ident in _state_ids(model).items() if before.get(name) != ident}


def _first_conv_name(model: nn.Module) -> str:
    # for every registry entry the first Conv2d registered is the stem (tests check timm's pretrained_cfg agrees)
    name, conv = next((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d))
    if conv.in_channels != 3 or conv.groups != 1:
        raise UnsupportedOptionError(f"first convolution {name} takes {conv.in_channels} channels in {conv.groups} "
                                     f"groups, expected a plain 3-channel (RGB) stem")
    return name


def _with_extra_channels(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """RGB filters (out, 3, kh, kw) -> (out, in_chans, kh, kw), each added channel the mean of the RGB ones."""
    extra = weight.mean(dim=1, keepdim=True).expand(-1, in_chans - 3, -1, -1)
    return torch.cat([weight, extra], dim=1)


def _global_avg_pools(model: nn.Module, entry: ModelEntry) -> list[str]:
    """Names of the layers that average the final feature map to one vector per image."""
    if entry.library == "timm":  # timm's heads pool with SelectAdaptivePool2d ("fast" is a fast average)
        return [name for name, module in model.named_modules() if isinstance(module, SelectAdaptivePool2d)
                and module.pool_type.lower() in ("avg", "fast", "fastavg")]
    # torchvision's (ResNet, ResNeXt, MobileNetV3); its squeeze-excitation blocks have average pools of their own
    avgpool = getattr(model, "avgpool", None)
    return ["avgpool"] if isinstance(avgpool, nn.AdaptiveAvgPool2d) and avgpool.output_size in (1, (1, 1)) else []


def _use_gem(model: nn.Module, entry: ModelEntry) -> str:
    """Wrap the network's one global average-pooling layer in GeM; return the layer's name."""
    pools = _global_avg_pools(model, entry)
    if len(pools) != 1:
        found = f"several ({', '.join(pools)})" if pools else (
            "none (it pools inside forward(), keeps a spatial grid, or classifies from a token)")
        raise UnsupportedOptionError(f"{entry.name}: pool='gem' replaces the global average-pooling layer of "
                         f"{entry.constructor}, which has {found}; use pool='avg'")
    parent_name, _, child = pools[0].rpartition(".")
    setattr(model.get_submodule(parent_name), child, GeM(model.get_submodule(pools[0])))
    return pools[0]


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            loaded = load_safetensors(path, device="cpu")
        else:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, pickle.UnpicklingError, SafetensorError) as err:
        raise WeightsFileError(f"{path}: cannot read weights from it ({err})") from err
    # training checkpoints often wrap the state dict one level down
    if isinstance(loaded, dict) and not isinstance(next(iter(loaded.values()), None), torch.Tensor):
        loaded = loaded.get("state_dict", loaded.get("model", loaded))
    if not (isinstance(loaded, dict) and loaded
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items())):
        what = f"a dict with keys {list(loaded)[:5]}" if isinstance(loaded, dict) else type(loaded).__name__
        raise WeightsFileError(f"{path}: expected a state dict (parameter name -> tensor), found {what}")
    return loaded


def _load_weights_file(model: nn.Module, path: Path, entry: ModelEntry, head_keys: set[str],
                       conv_key: str | None, gem_key: str | None) -> bool:
    """Load `path` into `model` (see create_model for what may differ); return whether the head came from it.

    conv_key names the first convolution's weight when it was extended beyond 3 input channels, gem_key GeM's p."""
    state = _read_state_dict(path)
    own = model.state_dict()
    if conv_key is not None and conv_key in state and state[conv_key].ndim == 4 and state[conv_key].shape[1] == 3:
        state[conv_key] = _with_extra_channels(state[conv_key], own[conv_key].shape[1])
    head_fits = all(k in state and state[k].shape == own[k].shape for k in head_keys)

    optional = head_keys | ({gem_key} if gem_key else set())
    problems = []
    for kind, keys in [
        ("missing", [k for k in own if k not in state and k not in optional]),
        ("unexpected", [k for k in state if k not in own]),
        ("shape mismatch", [f"{k} (file {tuple(state[k].shape)}, model {tuple(own[k].shape)})" for k in state
                            if k in own and k not in head_keys and state[k].shape != own[k].shape]),
    ]:
        if keys:
            more = f" and {len(keys) - 10} more" if len(keys) > 10 else ""
            problems.append(f"{kind}: {', '.join(keys[:10])}{more}")
    if problems:
        raise WeightsFileError(f"{path} does not fit {entry.name} ({entry.library} {entry.constructor}): "
                         + "; ".join(problems))
    model.load_state_dict({k: v for k, v in state.items() if head_fits or k not in head_keys}, strict=False)
    return head_fits


