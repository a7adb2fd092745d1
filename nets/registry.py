"""The model registry: every architecture the toolkit knows, as data, its input size and its input normalisation.

The study plots transfer performance against ImageNet top-1, so the registry below is data the analysis depends on:
for each model, the library constructor, the exact pretrained weights, the ImageNet top-1 of those weights with
where that number comes from, the parameter count, the normalisation the weights were trained with and the default
fine-tuning size. This module imports neither torch nor timm (timm and torchvision only to look up a name outside the
registry), so the analysis reads it cheaply; networks.py builds the models.

Groups: "testbed" is the paper's 19 ImageNet models; "ablation" the ResNet-50 weights of the augmentation ablation
(App. G: AugMix, RandAugment; the standard ResNet-50 is the testbed's torchvision one); "clip" the CLIP image towers
the paper also fine-tunes; "later" architectures published after the paper; "extra" small models for demos.

Beyond the registry, a name resolves in this order: a models file's entry (nets/models_file.py: a user's models with
their top-1, `--models-file`); a torchvision weights name "arch.TAG" (`mobilenet_v2.IMAGENET1K_V2`: torchvision's
tags are upper case, timm's lower case); any timm model name (`convnext_small`, `resnet50.a1_in1k`, ...: metadata
from timm's pretrained config, top-1 unknown); any other torchvision classification architecture (`mobilenet_v2`,
`regnet_y_400mf`: its IMAGENET1K_V1 weights, else its DEFAULT ones, with their top-1 from torchvision's metadata).
Earlier steps win a name two of them know: registry names over timm's ("resnet50" is torchvision's), timm names
over torchvision's ("resnet34" is timm's, as it was before torchvision names resolved; "resnet34.IMAGENET1K_V1" is
torchvision's).

One rule for every ImageNet top-1: the accuracy of exactly these weights at their usual evaluation size, i.e.
torchvision's own metadata (224 px), and for timm weights the accuracy at the pretrained config's `input_size`
(not its larger `test_input_size`). `top1_source` says where each number comes from, `top1_image_size` at which
size it was measured; the one documented exception is EfficientNet-B4 (see its entry).
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, replace

from common import errors
from data import get_spec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = INCEPTION_STD = (0.5, 0.5, 0.5)  # Google-trained weights (Inception, PNASNet, Mixer)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
NORMALIZE_MODES = ("imagenet", "model")

# Where the timm numbers come from. timm ships no accuracies; its results table evaluates every weight once, at the
# pretrained config's test_input_size where one is set (else at input_size). The model cards on the Hugging Face Hub
# carry comparison tables with the input_size figures of weights that also have a test size.
TIMM_RESULTS = ("timm's results table, results/results-imagenet.csv of huggingface/pytorch-image-models "
                "(commit 0173a139), row {weights} at {size} px = the pretrained config's input_size")
TIMM_CARD = ("timm's model-card comparison table (Hugging Face Hub, timm/{card} model cards, img_size column), "
             "{weights} at {size} px = the pretrained config's input_size; the results table lists only its "
             "{test_size}-px test-size figure, {test_top1}")
# The CLIP towers' imagenet_top1 is the CLIP paper's linear-probe accuracy, the x at which Fang et al. draw them:
# Figure 8 places "a CLIP ViT L/14-336px model (85.4% ImageNet top-1)", and 85.4 is that tower's linear-probe
# figure (its zero-shot one is 76.2). The zero-shot accuracy is kept beside it (zero_shot_top1; analyze.py
# --clip-x zero-shot draws the towers there).
CLIP_LINEAR_PROBE = ("linear-probe ImageNet top-1 of OpenAI's {tower} in the CLIP paper (Radford et al. 2021, "
                     "arXiv:2103.00020, Table 10: logistic regression on the image tower's features); the x of "
                     "Fang et al.'s Figure 8, which places 'a CLIP ViT L/14-336px model (85.4% ImageNet top-1)'")
CLIP_ZERO_SHOT = ("zero-shot ImageNet top-1 of OpenAI's {tower} in the CLIP paper (Radford et al. 2021, "
                  "arXiv:2103.00020){confirmed}")


class UnknownModelError(errors.UsageError, ValueError):
    """A model name that is neither in the registry nor a timm model (or a timm name with an unknown tag)."""


@dataclass(frozen=True)
class ModelEntry:
    name: str                      # short name used on the command line
    label: str                     # for tables and figures
    library: str                   # "torchvision" or "timm"
    constructor: str               # torchvision builder name or timm architecture name
    weights_tag: str | None        # torchvision weights enum member, or timm pretrained tag
    imagenet_top1: float | None    # percent, of exactly these weights (see the module's rule)
    top1_source: str               # where imagenet_top1 comes from
    top1_image_size: int | None    # input size (px) at which imagenet_top1 was measured
    params: int | None             # of the library's model with its original head
    input_size: int                # default fine-tuning input size
    group: str                     # "testbed", "ablation", "clip", "later", "extra", or "timm" (any other timm model)
    mean: tuple[float, float, float] = IMAGENET_MEAN  # input normalisation these weights were trained with
    std: tuple[float, float, float] = IMAGENET_STD
    fixed_input_size: bool = False  # the network only accepts input_size (ViT-style position embeddings)
    zero_shot_top1: float | None = None  # CLIP towers: zero-shot ImageNet top-1 (imagenet_top1 is the linear probe)
    zero_shot_source: str | None = None  # where zero_shot_top1 comes from
    checkpoint: str | None = None   # a models file's own weights file (absolute path), the model's pretrained weights
    checkpoint_sha256: str | None = None  # the SHA-256 a models file pins for its checkpoint (checked when read)
    models_file: str | None = None  # the models file an entry comes from (None: built in, or a library's model)


def _torchvision(name: str, label: str, top1: float, params: int, group: str = "testbed") -> ModelEntry:
    # top1 and params are torchvision's Weights.meta["_metrics"]["ImageNet-1K"]["acc@1"] and meta["num_params"]
    source = (f"torchvision's metadata of {name} weights IMAGENET1K_V1: meta['_metrics']['ImageNet-1K']['acc@1'] "
              f"(resize 256, centre crop 224)")
    return ModelEntry(name, label, "torchvision", name, "IMAGENET1K_V1", top1, source, 224, params, 256, group)


def _timm(name: str, label: str, arch: str, tag: str, top1: float, source: str, top1_size: int, params: int,
          input_size: int, group: str, mean=IMAGENET_MEAN, std=IMAGENET_STD, fixed: bool = False) -> ModelEntry:
    return ModelEntry(name, label, "timm", arch, tag, top1, source, top1_size, params, input_size, group, mean, std,
                      fixed)


def _clip(name: str, label: str, arch: str, tower: str, linear_probe: float, zero_shot: float, confirmed: str,
          size: int, params: int) -> ModelEntry:
    entry = _timm(name, label, arch, "openai", linear_probe, CLIP_LINEAR_PROBE.format(tower=tower), size, params,
                  size, "clip", CLIP_MEAN, CLIP_STD, fixed=True)
    return replace(entry, zero_shot_top1=zero_shot, zero_shot_source=CLIP_ZERO_SHOT.format(tower=tower,
                                                                                           confirmed=confirmed))


def _results(weights: str, size: int) -> str:
    return TIMM_RESULTS.format(weights=weights, size=size)


# Parameter counts are of the library's model with its original head (tests/test_models.py rebuilds them), and
# top1_image_size is checked there against torchvision's and timm's own configs.
REGISTRY: dict[str, ModelEntry] = {e.name: e for e in [
    # the paper's testbed, by ImageNet top-1
    _torchvision("alexnet", "AlexNet", 56.522, 61100840),
    _torchvision("squeezenet1_1", "SqueezeNet 1.1", 58.178, 1235496),
    _torchvision("shufflenet_v2_x0_5", "ShuffleNetV2 x0.5", 60.552, 1366792),
    _torchvision("mobilenet_v3_small", "MobileNetV3-Small", 67.668, 2542856),
    _torchvision("mnasnet0_5", "MnasNet 0.5", 67.734, 2218512),
    _torchvision("shufflenet_v2_x1_0", "ShuffleNetV2 x1.0", 69.362, 2278604),
    _torchvision("vgg13_bn", "VGG-13-BN", 71.586, 133053736),
    _timm("deit_tiny", "DeiT-tiny", "deit_tiny_patch16_224", "fb_in1k", 72.172,
          _results("deit_tiny_patch16_224.fb_in1k", 224), 224, 5717416, 224, "testbed", fixed=True),
    _torchvision("vgg16_bn", "VGG-16-BN", 73.36, 138365992),
    _torchvision("densenet121", "DenseNet-121", 74.434, 7978856),
    _torchvision("resnet50", "ResNet-50", 76.13, 25557032),
    _torchvision("resnext50_32x4d", "ResNeXt-50 32x4d", 77.618, 25028904),
    _timm("efficientnet_b0", "EfficientNet-B0", "efficientnet_b0", "ra_in1k", 77.694,
          _results("efficientnet_b0.ra_in1k", 224), 224, 5288548, 256, "testbed"),
    _torchvision("resnet152", "ResNet-152", 78.312, 60192808),
    _timm("deit_small", "DeiT-small", "deit_small_patch16_224", "fb_in1k", 79.844,
          _results("deit_small_patch16_224.fb_in1k", 224), 224, 22050664, 224, "testbed", fixed=True),
    _timm("inception_resnet_v2", "Inception-ResNet-v2", "inception_resnet_v2", "tf_in1k", 80.462,
          _results("inception_resnet_v2.tf_in1k", 299), 299, 55843464, 256, "testbed", INCEPTION_MEAN, INCEPTION_STD),
    _timm("convnext_tiny", "ConvNeXt-tiny", "convnext_tiny", "fb_in1k", 82.066,
          TIMM_CARD.format(card="convnext_*", weights="convnext_tiny.fb_in1k", size=224, test_size=288,
                           test_top1=82.698), 224, 28589128, 256, "testbed"),
    _timm("pnasnet5large", "PNASNet-5-large", "pnasnet5large", "tf_in1k", 82.782,
          _results("pnasnet5large.tf_in1k", 331), 331, 86057668, 256, "testbed", INCEPTION_MEAN, INCEPTION_STD),
    # The one exception to the rule: timm publishes no figure at these weights' input_size (320 px), only the
    # results table's 83.414 at test_input_size 384, which is also the 83.4 the paper quotes. Kept rather than
    # leaving the paper's best model without an ImageNet top-1.
    _timm("efficientnet_b4", "EfficientNet-B4", "efficientnet_b4", "ra2_in1k", 83.414,
          "EXCEPTION to the one rule: timm's results table, results/results-imagenet.csv of "
          "huggingface/pytorch-image-models (commit 0173a139), row efficientnet_b4.ra2_in1k at 384 px = the "
          "pretrained config's test_input_size; no figure at its input_size (320 px) is published. The paper "
          "quotes this 83.4", 384, 19341616, 256, "testbed"),
    # the augmentation ablation (App. G): ResNet-50 pre-trained with AugMix and with RandAugment (timm's weights);
    # fine-tuned at the testbed's 256 px like torchvision's standard ResNet-50
    _timm("resnet50_augmix", "ResNet-50 (AugMix)", "resnet50", "am_in1k", 78.998,
          _results("resnet50.am_in1k", 224), 224, 25557032, 256, "ablation"),
    _timm("resnet50_randaugment", "ResNet-50 (RandAugment)", "resnet50", "ra_in1k", 78.81,
          TIMM_CARD.format(card="resnet*", weights="resnet50.ra_in1k", size=224, test_size=288, test_top1=79.836),
          224, 25557032, 256, "ablation"),
    # CLIP image towers with OpenAI's weights; the quickgelu variants use the activation those weights were
    # trained with (timm's plain CLIP ViTs use GELU)
    _clip("clip_rn50", "CLIP ResNet-50", "resnet50_clip", "RN50", 73.3, 59.6, "; not cross-checked here", 224,
          38316896),
    _clip("clip_vit_b16", "CLIP ViT-B/16", "vit_base_patch16_clip_quickgelu_224", "ViT-B/16", 80.2, 68.6,
          " (open_clip's README: '68.6% in paper')", 224, 86193152),
    _clip("clip_vit_l14", "CLIP ViT-L/14", "vit_large_patch14_clip_quickgelu_224", "ViT-L/14", 83.9, 75.3,
          " (open_clip's README: '75.3% in paper')", 224, 303966976),
    _clip("clip_vit_l14_336", "CLIP ViT-L/14@336px", "vit_large_patch14_clip_quickgelu_336", "ViT-L/14@336px", 85.4,
          76.2, "; not cross-checked here", 336, 304294656),
    # later architectures, outside the original testbed
    _timm("swin_base", "Swin-B", "swin_base_patch4_window7_224", "ms_in22k_ft_in1k", 85.272,
          _results("swin_base_patch4_window7_224.ms_in22k_ft_in1k", 224), 224, 87768224, 224, "later", fixed=True),
    _timm("caformer_s18", "CAFormer-S18", "caformer_s18", "sail_in1k", 83.656,
          _results("caformer_s18.sail_in1k", 224), 224, 26341656, 224, "later"),
    _timm("mixer_b16", "MLP-Mixer-B/16", "mixer_b16_224", "goog_in21k_ft_in1k", 76.602,
          _results("mixer_b16_224.goog_in21k_ft_in1k", 224), 224, 59880472, 224, "later", INCEPTION_MEAN,
          INCEPTION_STD, fixed=True),
    # small extras, outside the testbed (the offline demo trains resnet18 from random weights)
    _torchvision("resnet18", "ResNet-18", 69.758, 11689512, group="extra"),
]}


# The entries a models file adds for this process (nets/models_file.py sets them once the command line is read).
_ADDED: dict[str, ModelEntry] = {}
# torchvision names without a tag get the testbed's weights generation, or the architecture's DEFAULT without one
TORCHVISION_TAG = "IMAGENET1K_V1"
# torchvision's ViTs assert their image size, and MaxViT's window partition fits only its own
TORCHVISION_FIXED_SIZE = ("vit_", "maxvit_")


def groups() -> list[str]:
    """The names --models takes: "all" and every model's group, a models file's included."""
    return ["all", *dict.fromkeys(entry.group for entry in [*REGISTRY.values(), *_ADDED.values()])]


def group_models(group: str) -> list[str]:
    """The models of a group ("all": every one), a models file's included."""
    return [entry.name for entry in [*REGISTRY.values(), *_ADDED.values()] if group in ("all", entry.group)]


def set_added(entries: list[ModelEntry]) -> None:
    """Make a models file's entries known to every lookup in this process, replacing those of an earlier file."""
    _ADDED.clear()
    _ADDED.update({entry.name: entry for entry in entries})


def added_entries() -> list[ModelEntry]:
    return list(_ADDED.values())


def get_entry(name: str) -> ModelEntry:
    """The entry `name` resolves to, in the module docstring's order: the registry's, a models file's, or one made
    from torchvision's or timm's own metadata."""
    if name in REGISTRY:
        return REGISTRY[name]
    if name in _ADDED:
        return _ADDED[name]
    arch, _, tag = name.partition(".")
    if tag.isupper():  # torchvision's weights names: IMAGENET1K_V1, IMAGENET1K_SWAG_E2E_V1, DEFAULT
        return _torchvision_entry(name, arch, tag)
    import timm  # only for names outside the registry: the registry itself needs no torch
    if timm.is_model(name):
        return _timm_entry(name, arch)
    if name in torchvision_classifiers():
        return _torchvision_entry(name, name, None)
    candidates = list(dict.fromkeys([*REGISTRY, *_ADDED, *timm.list_models(), *torchvision_classifiers()]))
    close = difflib.get_close_matches(name, candidates, n=6)
    raise UnknownModelError(f"unknown model {name!r}: not in models.py's registry (python models.py lists it), not a "
                            f"timm model and not a torchvision classification model. Close matches: "
                            f"{', '.join(close) or 'none'}")


def torchvision_classifiers() -> list[str]:
    """torchvision's ImageNet classification architectures (not its detection, segmentation or video models)."""
    import torchvision  # only for names outside the registry
    return torchvision.models.list_models(module=torchvision.models)


def _timm_entry(name: str, arch: str) -> ModelEntry:
    import timm  # only for names outside the registry
    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except RuntimeError as err:  # timm's answer to an unknown pretrained tag
        known = ", ".join(timm.list_pretrained(arch + ".*")) or "none"
        raise UnknownModelError(f"{name!r}: {err} Known tags: {known}") from err
    unknown = "unknown: not in models.py's registry"
    if cfg is None:
        return ModelEntry(name, name, "timm", arch, None, None, unknown, None, None, 224, "timm")
    return ModelEntry(name, name, "timm", arch, cfg.tag, None, unknown, None, None, cfg.input_size[-1], "timm",
                      tuple(cfg.mean), tuple(cfg.std), bool(cfg.fixed_input_size))


def _torchvision_entry(name: str, arch: str, tag: str | None) -> ModelEntry:
    """A torchvision architecture with its weights' own metadata: top-1, parameters, evaluation size, statistics.
    It is fine-tuned at the size its top-1 was measured at, as timm models outside the registry are."""
    import torchvision  # only for names outside the registry
    if arch not in torchvision_classifiers():
        close = difflib.get_close_matches(arch, torchvision_classifiers(), n=6)
        raise UnknownModelError(f"unknown model {name!r}: {arch!r} is not a torchvision classification model (an "
                                f"upper-case tag such as IMAGENET1K_V1 names torchvision weights). Close matches: "
                                f"{', '.join(close) or 'none'}")
    enum = torchvision.models.get_model_weights(arch)
    tag = tag or (TORCHVISION_TAG if TORCHVISION_TAG in enum.__members__ else enum.DEFAULT.name)
    if tag not in enum.__members__:
        raise UnknownModelError(f"{name!r}: torchvision has no weights {tag} for {arch}. Known: "
                                f"{', '.join(enum.__members__)}")
    weights = enum[tag]  # DEFAULT is another name of one of them
    preprocessing = weights.transforms()
    crop, resize = preprocessing.crop_size[0], preprocessing.resize_size[0]
    source = (f"torchvision's metadata of {arch} weights {weights.name}: meta['_metrics']['ImageNet-1K']['acc@1'] "
              f"(resize {resize}, centre crop {crop})")
    return ModelEntry(name, name, "torchvision", arch, weights.name, weights.meta["_metrics"]["ImageNet-1K"]["acc@1"],
                      source, crop, weights.meta["num_params"], crop, "torchvision", tuple(preprocessing.mean),
                      tuple(preprocessing.std), arch.startswith(TORCHVISION_FIXED_SIZE))


def normalization(model_name: str, mode: str = "imagenet") -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) on the 0-1 scale that a run normalises its inputs with (train.py/evaluate.py --normalize).

    "imagenet" (the default) is the paper's recipe for every model, CLIP and Google-trained weights included:
    "we use ImageNet's mean and standard deviation" (Appendix D), as the authors' released code does. "model" uses
    the statistics these weights were trained with (0.5 for Inception-ResNet-v2, PNASNet and Mixer; CLIP's own).
    """
    if mode not in NORMALIZE_MODES:
        raise errors.UsageError(f"--normalize {mode}: choose one of {', '.join(NORMALIZE_MODES)}")
    if mode == "imagenet":
        get_entry(model_name)  # an unknown model is an error here too, not only when the network is built
        return IMAGENET_MEAN, IMAGENET_STD
    entry = get_entry(model_name)
    return tuple(entry.mean), tuple(entry.std)


def input_size(model_name: str, dataset_name: str, requested: int | None = None) -> int:
    """The one decision of a run's input size, used by train.py, evaluate.py and cache.py alike.

    The paper's recipe: 224 for DeiT and for EuroSAT, 256 for the rest of the testbed. Models that accept only one
    input size (DeiT, CLIP and other ViTs, Swin, Mixer) get that size on every dataset; a dataset with a size of its
    own (EuroSAT 224, digits 32) sets it for the other models; otherwise the model's registry size. `requested`
    (--img-size) overrides it, except for a fixed-size model, which refuses any other size.
    """
    entry = get_entry(model_name)
    if entry.fixed_input_size:
        if requested not in (None, entry.input_size):
            raise errors.UsageError(f"--img-size {requested}: {model_name} only accepts {entry.input_size} px "
                                    f"inputs (fixed position embeddings); leave --img-size out")
        return entry.input_size
    if requested is not None:
        if requested < 1:
            raise errors.UsageError(f"--img-size must be a positive number of pixels, got {requested}")
        return requested
    return get_spec(dataset_name).img_size or entry.input_size


def qualified_name(entry: ModelEntry) -> str:
    """"constructor.tag": the name timm builds pretrained models by, and how the table names weights."""
    return f"{entry.constructor}.{entry.weights_tag}" if entry.weights_tag else entry.constructor


def registry_table(entries: list[ModelEntry] | None = None) -> str:
    """The entries (the registry's when not given) as models.py prints them."""
    header = (f"{'name':<20} {'group':<8} {'library':<12} {'weights':<46} {'top-1':>6} {'at px':>5} {'params':>8} "
              f"{'input':>5}")
    lines = [header, "-" * len(header)]
    for e in REGISTRY.values() if entries is None else entries:
        top1 = f"{e.imagenet_top1:.2f}" if e.imagenet_top1 is not None else "-"
        params = f"{e.params / 1e6:.1f}M" if e.params is not None else "-"
        lines.append(f"{e.name:<20} {e.group:<8} {e.library:<12} {qualified_name(e):<46} {top1:>6} "
                     f"{e.top1_image_size or '-':>5} {params:>8} {e.input_size:>5}")
    return "\n".join(lines + ["", "Sources of the top-1 numbers: python models.py --json (field top1_source)."])
