"""Every architecture the toolkit can fine-tune, and how each is built.

The study plots transfer performance against ImageNet top-1, so the registry below is data the analysis depends on:
for each model, the library constructor, the exact pretrained weights, the ImageNet top-1 of those weights as the
library reports it, the parameter count, the normalisation the weights expect and the default fine-tuning size.

Groups: "testbed" is the paper's 19 ImageNet models; "clip" the CLIP image towers the paper also fine-tunes;
"later" architectures published after the paper; "extra" small models for demos. Any other timm model name
(`convnext_small`, `resnet50.a1_in1k`, ...) works too, with metadata from timm's pretrained config and top-1
unknown. Registry names take precedence over timm names of the same spelling ("resnet50" is torchvision's).

    python models.py            # the registry as a table
    python models.py --json     # the same as JSON

`create_model(name, num_classes, weights=..., pool=..., in_chans=...)` returns the network with a freshly
initialised head, and a JSON-serialisable dict saying what was built and which weights were really loaded.
Weights: "imagenet" (the library's pretrained weights, downloaded to its usual cache: TORCH_HOME for
torchvision, HF_HOME for timm), "random", or a path to a local .safetensors/.pth state dict. Pretrained weights
that cannot be fetched raise WeightsUnavailableError; nothing ever falls back to random weights silently.
Offline with timm weights already cached, set HF_HUB_OFFLINE=1: otherwise the Hub client retries the network
for tens of seconds before it falls back to the cache.
"""
from __future__ import annotations

import argparse
import difflib
import itertools
import json
import pickle
from dataclasses import asdict, dataclass
from pathlib import Path

import timm
import torch
import torchvision
from safetensors import SafetensorError
from safetensors.torch import load_file as load_safetensors
from timm.layers import SelectAdaptivePool2d
from torch import nn

import records

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = INCEPTION_STD = (0.5, 0.5, 0.5)  # Google-trained weights (Inception, PNASNet, Mixer)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

WEIGHT_FILE_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


@dataclass(frozen=True)
class ModelEntry:
    name: str                      # short name used on the command line
    label: str                     # for tables and figures
    library: str                   # "torchvision" or "timm"
    constructor: str               # torchvision builder name or timm architecture name
    weights_tag: str | None        # torchvision weights enum member, or timm pretrained tag
    imagenet_top1: float | None    # percent, of exactly these weights, as the library reports it
    params: int | None             # of the library's model with its original head
    input_size: int                # default fine-tuning input size
    group: str                     # "testbed", "clip", "later", "extra", or "timm" (any other timm model)
    mean: tuple[float, float, float] = IMAGENET_MEAN  # input normalisation these weights were trained with
    std: tuple[float, float, float] = IMAGENET_STD
    fixed_input_size: bool = False  # the network only accepts input_size (ViT-style position embeddings)


def _torchvision(name: str, label: str, top1: float, params: int, group: str = "testbed") -> ModelEntry:
    # top1 and params are torchvision's Weights.meta["_metrics"]["ImageNet-1K"]["acc@1"] and meta["num_params"]
    return ModelEntry(name, label, "torchvision", name, "IMAGENET1K_V1", top1, params, 256, group)


def _timm(name: str, label: str, arch: str, tag: str, top1: float | None, params: int, input_size: int,
          group: str, mean=IMAGENET_MEAN, std=IMAGENET_STD, fixed: bool = False) -> ModelEntry:
    return ModelEntry(name, label, "timm", arch, tag, top1, params, input_size, group, mean, std, fixed)


# timm does not ship ImageNet accuracies, so the timm top-1 values come from its published results table,
# results/results-imagenet.csv in huggingface/pytorch-image-models, which evaluates each model at its
# pretrained config's test size (e.g. 384 px for efficientnet_b4.ra2_in1k, 288 px for convnext_tiny.fb_in1k).
# The CLIP towers have no ImageNet classifier, so no top-1 is recorded for them.
# Parameter counts are of the library's model with its original head (tests/test_models.py rebuilds them).
REGISTRY: dict[str, ModelEntry] = {e.name: e for e in [
    # the paper's testbed, by ImageNet top-1
    _torchvision("alexnet", "AlexNet", 56.522, 61100840),
    _torchvision("squeezenet1_1", "SqueezeNet 1.1", 58.178, 1235496),
    _torchvision("shufflenet_v2_x0_5", "ShuffleNetV2 x0.5", 60.552, 1366792),
    _torchvision("mobilenet_v3_small", "MobileNetV3-Small", 67.668, 2542856),
    _torchvision("mnasnet0_5", "MnasNet 0.5", 67.734, 2218512),
    _torchvision("shufflenet_v2_x1_0", "ShuffleNetV2 x1.0", 69.362, 2278604),
    _torchvision("vgg13_bn", "VGG-13-BN", 71.586, 133053736),
    _timm("deit_tiny", "DeiT-tiny", "deit_tiny_patch16_224", "fb_in1k", 72.172, 5717416, 224, "testbed",
          fixed=True),
    _torchvision("vgg16_bn", "VGG-16-BN", 73.36, 138365992),
    _torchvision("densenet121", "DenseNet-121", 74.434, 7978856),
    _torchvision("resnet50", "ResNet-50", 76.13, 25557032),
    _torchvision("resnext50_32x4d", "ResNeXt-50 32x4d", 77.618, 25028904),
    _timm("efficientnet_b0", "EfficientNet-B0", "efficientnet_b0", "ra_in1k", 77.694, 5288548, 256, "testbed"),
    _torchvision("resnet152", "ResNet-152", 78.312, 60192808),
    _timm("deit_small", "DeiT-small", "deit_small_patch16_224", "fb_in1k", 79.844, 22050664, 224, "testbed",
          fixed=True),
    _timm("inception_resnet_v2", "Inception-ResNet-v2", "inception_resnet_v2", "tf_in1k", 80.462, 55843464, 256,
          "testbed", INCEPTION_MEAN, INCEPTION_STD),
    _timm("convnext_tiny", "ConvNeXt-tiny", "convnext_tiny", "fb_in1k", 82.698, 28589128, 256, "testbed"),
    _timm("pnasnet5large", "PNASNet-5-large", "pnasnet5large", "tf_in1k", 82.782, 86057668, 256, "testbed",
          INCEPTION_MEAN, INCEPTION_STD),
    _timm("efficientnet_b4", "EfficientNet-B4", "efficientnet_b4", "ra2_in1k", 83.414, 19341616, 256, "testbed"),
    # CLIP image towers with OpenAI's weights; the quickgelu variants use the activation those weights were
    # trained with (timm's plain CLIP ViTs use GELU)
    _timm("clip_rn50", "CLIP ResNet-50", "resnet50_clip", "openai", None, 38316896, 224, "clip",
          CLIP_MEAN, CLIP_STD, fixed=True),
    _timm("clip_vit_b16", "CLIP ViT-B/16", "vit_base_patch16_clip_quickgelu_224", "openai", None, 86193152, 224,
          "clip", CLIP_MEAN, CLIP_STD, fixed=True),
    _timm("clip_vit_l14", "CLIP ViT-L/14", "vit_large_patch14_clip_quickgelu_224", "openai", None, 303966976, 224,
          "clip", CLIP_MEAN, CLIP_STD, fixed=True),
    _timm("clip_vit_l14_336", "CLIP ViT-L/14@336px", "vit_large_patch14_clip_quickgelu_336", "openai", None,
          304294656, 336, "clip", CLIP_MEAN, CLIP_STD, fixed=True),
    # later architectures, outside the original testbed
    _timm("swin_base", "Swin-B", "swin_base_patch4_window7_224", "ms_in22k_ft_in1k", 85.272, 87768224, 224,
          "later", fixed=True),
    _timm("caformer_s18", "CAFormer-S18", "caformer_s18", "sail_in1k", 83.656, 26341656, 224, "later"),
    _timm("mixer_b16", "MLP-Mixer-B/16", "mixer_b16_224", "goog_in21k_ft_in1k", 76.602, 59880472, 224, "later",
          INCEPTION_MEAN, INCEPTION_STD, fixed=True),
    # small extras, outside the testbed (the offline demo trains resnet18 from random weights)
    _torchvision("resnet18", "ResNet-18", 69.758, 11689512, group="extra"),
]}


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights were asked for but cannot be had (no network, nothing cached, no such weights)."""


def get_entry(name: str) -> ModelEntry:
    """The registry entry for `name`, else an entry for the timm model `name` ("arch" or "arch.tag")."""
    if name in REGISTRY:
        return REGISTRY[name]
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, list(REGISTRY) + timm.list_models(), n=6)
        raise ValueError(f"unknown model {name!r}: not in models.py's registry (python models.py lists it) and "
                         f"not a timm model. Close matches: {', '.join(close) or 'none'}")
    arch = name.split(".")[0]
    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except RuntimeError as err:  # timm's answer to an unknown pretrained tag
        known = ", ".join(timm.list_pretrained(arch + ".*")) or "none"
        raise ValueError(f"{name!r}: {err} Known tags: {known}") from err
    if cfg is None:
        return ModelEntry(name, name, "timm", arch, None, None, None, 224, "timm")
    return ModelEntry(name, name, "timm", arch, cfg.tag, None, None, cfg.input_size[-1], "timm",
                      tuple(cfg.mean), tuple(cfg.std), bool(cfg.fixed_input_size))


def default_img_size(model_name: str, dataset_name: str | None = None) -> int:
    """The paper's fine-tuning size: 224 for DeiT and for EuroSAT, 256 for the rest of the testbed.

    Models that only accept one input size (DeiT, ViTs, Swin, Mixer) get that size whatever the dataset; CLIP
    towers, later architectures and other timm models get their native size."""
    entry = get_entry(model_name)
    if dataset_name is not None and dataset_name.lower() == "eurosat" and not entry.fixed_input_size:
        return 224
    return entry.input_size


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


def create_model(name: str, num_classes: int, weights: str = "imagenet", pool: str = "avg",
                 in_chans: int = 3) -> tuple[nn.Module, dict]:
    """Build `name` with a fresh `num_classes`-output head (1 = regression head) and the requested weights.

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
    entry = get_entry(name)

    if weights == "imagenet":
        model, weights_loaded = _pretrained(entry), f"imagenet:{entry.weights_tag}"
    elif entry.library == "torchvision":
        model, weights_loaded = torchvision.models.get_model(entry.constructor, weights=None), "random"
    else:
        model, weights_loaded = timm.create_model(_qualified_name(entry), pretrained=False), "random"

    head_keys = _reset_head(model, entry, num_classes)
    conv_key = None
    if in_chans > 3:
        conv_name = _first_conv_name(model)
        conv = model.get_submodule(conv_name)
        conv.weight = nn.Parameter(_with_extra_channels(conv.weight.detach(), in_chans))
        conv.in_channels = in_chans
        conv_key = f"{conv_name}.weight"
    gem_key = f"{_use_gem(model, entry)}.p" if pool == "gem" else None

    head = "fresh"
    if weights_file is not None:  # built with random weights above, now overwritten
        if _load_weights_file(model, weights_file, entry, head_keys, conv_key, gem_key):
            head = "from file"
        weights_loaded = f"file:{weights_file.resolve()} sha256={records.sha256_file(weights_file)}"

    info = {
        "name": entry.name, "label": entry.label, "library": entry.library, "constructor": entry.constructor,
        "weights_tag": entry.weights_tag, "weights_loaded": weights_loaded, "head": head,
        "imagenet_top1": entry.imagenet_top1, "params": sum(p.numel() for p in model.parameters()),
        "input_size": entry.input_size, "mean": list(entry.mean), "std": list(entry.std), "pool": pool,
        "in_chans": in_chans, "num_outputs": num_classes, "group": entry.group,
    }
    return model, info


def _weights_file(weights: str) -> Path | None:
    """None for "imagenet"/"random", else the existing weights file `weights` names."""
    if weights in ("imagenet", "random"):
        return None
    path = Path(weights)
    if not path.is_file():
        raise ValueError(f"weights={weights!r}: not 'imagenet', not 'random', and no such file")
    if path.suffix not in WEIGHT_FILE_SUFFIXES:
        raise ValueError(f"{path}: weights files must end in one of {', '.join(WEIGHT_FILE_SUFFIXES)}")
    return path


def _qualified_name(entry: ModelEntry) -> str:
    """"constructor.tag": the name timm builds pretrained models by, and how the table names weights."""
    return f"{entry.constructor}.{entry.weights_tag}" if entry.weights_tag else entry.constructor


def _pretrained(entry: ModelEntry) -> nn.Module:
    """The library's model with its pretrained weights, through the library's own download and cache."""
    if entry.library == "torchvision":
        tv_weights = torchvision.models.get_model_weights(entry.constructor)[entry.weights_tag]
        where = f"{tv_weights.url} (cache: {Path(torch.hub.get_dir()) / 'checkpoints'})"
        try:
            return torchvision.models.get_model(entry.constructor, weights=tv_weights)
        except OSError as err:  # URLError and other network/file errors
            raise WeightsUnavailableError(_unavailable(entry, str(err), where)) from err

    timm_name = _qualified_name(entry)
    cfg = timm.models.get_pretrained_cfg(timm_name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        # timm itself would only log a warning here and return random weights
        raise WeightsUnavailableError(_unavailable(entry, "timm lists no downloadable weights for it",
                                                   f"timm's pretrained configs for {timm_name}"))
    if cfg.hf_hub_id:
        from huggingface_hub import constants
        where = f"the Hugging Face Hub repo {cfg.hf_hub_id} (cache: {constants.HF_HUB_CACHE})"
    else:
        where = cfg.file or f"{cfg.url} (cache: {Path(torch.hub.get_dir()) / 'checkpoints'})"
    try:
        return timm.create_model(timm_name, pretrained=True)
    except OSError as err:  # huggingface_hub's offline/not-found errors and URLError are all OSErrors
        raise WeightsUnavailableError(_unavailable(entry, str(err), where)) from err


def _unavailable(entry: ModelEntry, reason: str, where: str) -> str:
    return (f"{entry.name}: cannot load the pretrained weights {entry.library} {_qualified_name(entry)} "
            f"({reason}). "
            f"Looked in {where}. Either get the weights file yourself and pass --weights PATH (a .safetensors or "
            f".pth state dict), or pass --weights random for a smoke run without pretrained weights.")


def _state_ids(model: nn.Module) -> dict[str, int]:
    return {name: id(t) for name, t in itertools.chain(model.named_parameters(), model.named_buffers())}


def _reset_head(model: nn.Module, entry: ModelEntry, num_classes: int) -> set[str]:
    """Replace the classifier with a freshly initialised one; return the state-dict keys that are new."""
    before = _state_ids(model)
    if entry.library == "timm":
        model.reset_classifier(num_classes)
    elif isinstance(getattr(model, "fc", None), nn.Linear):  # ResNet, ResNeXt, ShuffleNet
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    elif isinstance(model.classifier, nn.Linear):  # DenseNet
        model.classifier = nn.Linear(model.classifier.in_features, num_classes)
    else:  # a Sequential ending in Linear (AlexNet, VGG, MobileNet, MnasNet) or SqueezeNet's 1x1 conv + pool
        index = max(i for i, layer in enumerate(model.classifier) if isinstance(layer, (nn.Linear, nn.Conv2d)))
        old = model.classifier[index]
        model.classifier[index] = (nn.Linear(old.in_features, num_classes) if isinstance(old, nn.Linear)
                                   else nn.Conv2d(old.in_channels, num_classes, kernel_size=1))
    return {name for name, ident in _state_ids(model).items() if before.get(name) != ident}


def _first_conv_name(model: nn.Module) -> str:
    # for every registry entry the first Conv2d registered is the stem (tests check timm's pretrained_cfg agrees)
    name, conv = next((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d))
    if conv.in_channels != 3 or conv.groups != 1:
        raise ValueError(f"first convolution {name} takes {conv.in_channels} channels in {conv.groups} groups, "
                         f"expected a plain 3-channel (RGB) stem")
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
        raise ValueError(f"{entry.name}: pool='gem' replaces the global average-pooling layer of "
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
        raise ValueError(f"{path}: cannot read weights from it ({err})") from err
    # training checkpoints often wrap the state dict one level down
    if isinstance(loaded, dict) and not isinstance(next(iter(loaded.values()), None), torch.Tensor):
        loaded = loaded.get("state_dict", loaded.get("model", loaded))
    if not (isinstance(loaded, dict) and loaded
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items())):
        what = f"a dict with keys {list(loaded)[:5]}" if isinstance(loaded, dict) else type(loaded).__name__
        raise ValueError(f"{path}: expected a state dict (parameter name -> tensor), found {what}")
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
        raise ValueError(f"{path} does not fit {entry.name} ({entry.library} {entry.constructor}): "
                         + "; ".join(problems))
    model.load_state_dict({k: v for k, v in state.items() if head_fits or k not in head_keys}, strict=False)
    return head_fits


def registry_table() -> str:
    header = f"{'name':<20} {'group':<8} {'library':<12} {'weights':<46} {'top-1':>6} {'params':>8} {'input':>5}"
    lines = [header, "-" * len(header)]
    for e in REGISTRY.values():
        top1 = f"{e.imagenet_top1:.2f}" if e.imagenet_top1 is not None else "-"
        params = f"{e.params / 1e6:.1f}M" if e.params is not None else "-"
        lines.append(f"{e.name:<20} {e.group:<8} {e.library:<12} {_qualified_name(e):<46} {top1:>6} {params:>8} "
                     f"{e.input_size:>5}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="List the model registry (the paper's testbed, CLIP towers, "
                                                 "later architectures).")
    parser.add_argument("--json", action="store_true", help="print the registry as JSON instead of a table")
    args = parser.parse_args()
    if args.json:
        print(json.dumps([asdict(e) for e in REGISTRY.values()], indent=2))
    else:
        print(registry_table())


if __name__ == "__main__":
    main()
