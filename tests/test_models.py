"""models.py: every registry entry builds and runs, weights load honestly, and the registry matches the libraries."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file

from common import errors, fileio
from nets import networks, registry

from conftest import REPO

# Building and running the two ViT-L/14 towers (300M parameters each) on CPU takes 10-25 s apiece, more than this
# file's share of the suite's time budget; CLIP ViT-B/16 runs the same code paths.
SLOW = {"clip_vit_l14", "clip_vit_l14_336"}
RUN_SLOW = os.environ.get("RUN_SLOW") == "1"
# Random initialisation alone takes seconds for these, so they are built once, with the 1-output head and 4 input
# channels; their 5-class head comes from the same code as AlexNet's (VGG) and DeiT's (timm) 5-class heads.
BUILT_ONCE = {"vgg13_bn", "vgg16_bn", "swin_base", "clip_vit_b16", "resnet50_augmix", "resnet50_randaugment"}

# Families with one global average-pooling layer that GeM can replace. The rest pool inside forward()
# (DenseNet, ShuffleNet, MnasNet), keep a spatial grid (AlexNet, VGG), pool class maps (SqueezeNet), or use a
# class token or attention pool (DeiT, CLIP, Mixer).
GEM_FAMILIES = {"mobilenet_v3_small", "resnet50", "resnext50_32x4d", "resnet152", "resnet18", "resnet50_augmix",
                "resnet50_randaugment",
                "efficientnet_b0", "efficientnet_b4", "inception_resnet_v2", "convnext_tiny", "pnasnet5large",
                "swin_base", "caformer_s18"}


def registry_params():
    return [pytest.param(name, marks=pytest.mark.skipif(
        name in SLOW and not RUN_SLOW, reason="ViT-L/14 towers are slow on CPU; set RUN_SLOW=1 to include them"))
            for name in registry.REGISTRY]


def input_size_for(entry: registry.ModelEntry) -> int:
    """A small input the family accepts: AlexNet needs 63 px, Inception-ResNet-v2 75, ViT-style models their own."""
    if entry.fixed_input_size:
        return entry.input_size
    return {"alexnet": 64, "inception_resnet_v2": 75}.get(entry.name, 32)


def first_conv(model: torch.nn.Module) -> torch.nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))


@torch.no_grad()
def run(model: torch.nn.Module, channels: int, size: int) -> torch.Tensor:
    torch.manual_seed(0)
    return model.eval()(torch.randn(2, channels, size, size))


@pytest.mark.parametrize("name", registry_params())
def test_every_entry_builds_and_runs(name):
    entry = registry.REGISTRY[name]
    size = input_size_for(entry)

    if name not in BUILT_ONCE:
        model, info = networks.create_model(name, 5, weights="random")
        out = run(model, 3, size)
        assert out.shape == (2, 5) and torch.isfinite(out).all()
        assert info.weights_loaded == "random" and info.num_outputs == 5 and info.head == "fresh"
        assert info.params < entry.params  # counted on the built network, whose head is smaller
        json.dumps(info.to_record())  # goes into every run record

    # regression head, RGBY input, and GeM where the family has a global average pool, in one build
    pool = "gem" if name in GEM_FAMILIES else "avg"
    model, info = networks.create_model(name, 1, weights="random", in_chans=4, pool=pool)
    out = run(model, 4, size)
    assert out.shape == (2, 1) and torch.isfinite(out).all()
    assert (info.in_chans, info.pool, info.num_outputs) == (4, pool, 1)
    conv = first_conv(model)
    assert conv.in_channels == 4
    torch.testing.assert_close(conv.weight[:, 3], conv.weight[:, :3].mean(dim=1))
    assert any(isinstance(m, networks.GeM) for m in model.modules()) == (pool == "gem")


@pytest.mark.parametrize("name", ["alexnet", "mnasnet0_5", "squeezenet1_1", "deit_tiny"])
def test_gem_refused_without_a_global_pool(name):
    with pytest.raises(ValueError, match=f"{name}.*pool='gem'.*none"):
        networks.create_model(name, 5, weights="random", pool="gem")


def test_gem_is_the_generalized_mean():
    x = torch.rand(2, 3, 4, 5) + 0.1
    gem = networks.GeM(torch.nn.AdaptiveAvgPool2d(1))
    torch.testing.assert_close(gem(x), x.pow(3).mean(dim=(2, 3), keepdim=True).pow(1 / 3))
    with torch.no_grad():
        gem.p.fill_(1.0)
    torch.testing.assert_close(gem(x), x.mean(dim=(2, 3), keepdim=True))
    assert gem(x.half()).dtype == torch.float16


def test_testbed_is_the_papers_19_models():
    testbed = [e for e in registry.REGISTRY.values() if e.group == "testbed"]
    assert len(testbed) == 19
    assert sum(e.library == "torchvision" for e in testbed) == 12
    assert all(e.weights_tag == "IMAGENET1K_V1" for e in testbed if e.library == "torchvision")
    top1 = [e.imagenet_top1 for e in testbed]
    assert top1 == sorted(top1)
    assert (testbed[0].name, round(top1[0], 1)) == ("alexnet", 56.5)
    assert (testbed[-1].name, round(top1[-1], 1)) == ("efficientnet_b4", 83.4)
    assert {e.name for e in testbed if e.input_size == 224} == {"deit_tiny", "deit_small"}
    assert all(e.input_size == 256 for e in testbed if not e.name.startswith("deit"))
    assert {e.group for e in registry.REGISTRY.values()} == {"testbed", "ablation", "clip", "later", "extra"}
    assert registry.REGISTRY["resnet18"].group == "extra"


@pytest.mark.parametrize("entry", [e for e in registry.REGISTRY.values() if e.library == "torchvision"],
                         ids=lambda e: e.name)
def test_torchvision_entries_match_torchvision(entry):
    weights = torchvision.models.get_model_weights(entry.constructor)[entry.weights_tag]
    assert entry.imagenet_top1 == weights.meta["_metrics"]["ImageNet-1K"]["acc@1"]
    assert entry.params == weights.meta["num_params"]
    preprocessing = weights.transforms()
    assert entry.top1_image_size == preprocessing.crop_size[0]  # acc@1 is measured at the weights' crop size
    assert "torchvision" in entry.top1_source and "acc@1" in entry.top1_source
    assert (list(entry.mean), list(entry.std)) == (preprocessing.mean, preprocessing.std)
    with torch.device("meta"):  # the real architecture, without spending time on initialisation
        model = torchvision.models.get_model(entry.constructor, weights=None)
    assert sum(p.numel() for p in model.parameters()) == entry.params


@pytest.mark.parametrize("entry", [e for e in registry.REGISTRY.values() if e.library == "timm"], ids=lambda e: e.name)
def test_timm_entries_match_timm(entry):
    # timm ships no accuracies (models.py cites its published results table), but does ship the rest
    qualified = f"{entry.constructor}.{entry.weights_tag}"
    cfg = timm.models.get_pretrained_cfg(qualified)
    assert cfg is not None and cfg.hf_hub_id
    assert (entry.mean, entry.std) == (tuple(cfg.mean), tuple(cfg.std))
    assert entry.fixed_input_size == bool(cfg.fixed_input_size)
    if entry.group not in ("testbed", "ablation") or entry.fixed_input_size:  # the paper fine-tunes at 256 px
        assert entry.input_size == cfg.input_size[-1]
    # the one rule: the top-1 at the pretrained config's input_size, not its test_input_size (one documented exception)
    assert entry.imagenet_top1 is not None and entry.top1_source
    if entry.name == "efficientnet_b4":
        assert entry.top1_image_size == cfg.test_input_size[-1] and entry.top1_source.startswith("EXCEPTION")
    else:
        assert entry.top1_image_size == cfg.input_size[-1]
        assert f"at {entry.top1_image_size} px" in entry.top1_source or entry.group == "clip"
        assert "EXCEPTION" not in entry.top1_source
    if entry.group == "clip":  # the linear probe (Figure 8's x), with the zero-shot figure beside it
        assert "CLIP paper" in entry.top1_source and "linear-probe" in entry.top1_source
        assert "zero-shot" in entry.zero_shot_source and entry.zero_shot_top1 < entry.imagenet_top1
    else:
        assert qualified in entry.top1_source  # names exactly these weights
    with torch.device("meta"):
        model = timm.create_model(f"{entry.constructor}.{entry.weights_tag}")
    assert sum(p.numel() for p in model.parameters()) == entry.params
    assert networks._first_conv_name(model) == cfg.first_conv  # the layer in_chans > 3 extends


def test_augmentation_ablation_weights_are_timms_augmix_and_randaugment_resnet50():
    augmix, randaugment = registry.REGISTRY["resnet50_augmix"], registry.REGISTRY["resnet50_randaugment"]
    published = timm.list_pretrained("resnet50.*")
    assert registry.qualified_name(augmix) == "resnet50.am_in1k" and "resnet50.am_in1k" in published
    assert registry.qualified_name(randaugment) == "resnet50.ra_in1k" and "resnet50.ra_in1k" in published
    assert (augmix.imagenet_top1, randaugment.imagenet_top1) == (78.998, 78.81)
    assert augmix.params == randaugment.params == registry.REGISTRY["resnet50"].params  # the same architecture
    assert registry.input_size("resnet50_augmix", "aptos") == registry.input_size("resnet50", "aptos") == 256
    assert registry.REGISTRY["resnet50"].library == "torchvision"  # the ablation's standard ResNet-50


def test_convnext_tiny_top1_is_the_224_px_figure():
    entry = registry.REGISTRY["convnext_tiny"]
    assert (entry.imagenet_top1, entry.top1_image_size) == (82.066, 224)
    assert "82.698" in entry.top1_source  # the 288-px test-size figure is named, not used


def test_normalization_is_imagenets_by_default_as_in_appendix_d():
    for name in ("inception_resnet_v2", "pnasnet5large", "clip_vit_b16", "resnet50", "resnet10t.c3_in1k"):
        assert registry.normalization(name) == (registry.IMAGENET_MEAN, registry.IMAGENET_STD)
    assert registry.normalization("inception_resnet_v2", "model") == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert registry.normalization("pnasnet5large", "model") == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert registry.normalization("clip_vit_b16", "model") == (registry.CLIP_MEAN, registry.CLIP_STD)
    assert registry.normalization("resnet50", "model") == (registry.IMAGENET_MEAN, registry.IMAGENET_STD)
    with pytest.raises(errors.UsageError, match="--normalize weights: choose one of imagenet, model"):
        registry.normalization("resnet50", "weights")
    with pytest.raises(registry.UnknownModelError):
        registry.normalization("resnet5O")


def test_input_size_is_the_papers():
    assert registry.input_size("deit_small", "aptos") == 224
    assert registry.input_size("deit_small", "eurosat") == 224
    assert registry.input_size("resnet50", "aptos") == 256
    assert registry.input_size("resnet50", "eurosat") == 224
    assert registry.input_size("efficientnet_b4", "hpa") == 256
    assert registry.input_size("clip_vit_l14_336", "eurosat") == 336  # only accepts 336 px, even on EuroSAT
    assert registry.input_size("caformer_s18", "cct20") == 224
    assert registry.input_size("convnext_small.fb_in1k", "cassava") == 224
    assert registry.input_size("resnet50", "digits") == 32
    assert registry.input_size("resnet50", "aptos", requested=384) == 384
    with pytest.raises(errors.UsageError, match="only accepts 224"):
        registry.input_size("deit_small", "aptos", requested=256)


def test_registry_metadata_needs_no_torch():
    code = ("import sys; from nets import registry; registry.input_size('resnet50', 'aptos'); "
            "print('torch' in sys.modules, 'timm' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert result.stdout.split() == ["False", "False"]


def test_any_timm_model_with_its_own_metadata():
    entry = registry.get_entry("resnet10t")
    assert (entry.library, entry.group, entry.constructor) == ("timm", "timm", "resnet10t")
    assert entry.weights_tag == "c3_in1k"  # timm's default tag for the architecture
    assert entry.imagenet_top1 is None and entry.params is None
    assert entry.input_size == 176 and not entry.fixed_input_size
    model, info = networks.create_model("resnet10t.c3_in1k", 3, weights="random", pool="gem", in_chans=4)
    assert run(model, 4, 64).shape == (2, 3)
    assert info.library == "timm" and info.imagenet_top1 is None
    assert info.top1_source.startswith("unknown") and entry.top1_image_size is None


# One of each way torchvision's classifiers hold their head (fc, classifier Linear or Sequential, 1x1 conv, head,
# heads) and build (googlenet: no auxiliary heads, Google's input scaling; vit: its image size), outside the registry.
TORCHVISION_NAMES = ["mobilenet_v2", "regnet_x_400mf", "squeezenet1_0", "googlenet", "swin_t", "vit_b_32",
                     "resnet34.IMAGENET1K_V1"]


@pytest.mark.parametrize("name", TORCHVISION_NAMES)
def test_any_torchvision_classifier_with_its_weights_metadata(name):
    entry = registry.get_entry(name)
    arch, _, tag = name.partition(".")
    weights = torchvision.models.get_model_weights(arch)[tag or "IMAGENET1K_V1"]
    preprocessing = weights.transforms()
    assert (entry.library, entry.group, entry.constructor, entry.weights_tag) == ("torchvision", "torchvision", arch,
                                                                                  weights.name)
    assert entry.imagenet_top1 == weights.meta["_metrics"]["ImageNet-1K"]["acc@1"] and "acc@1" in entry.top1_source
    assert entry.params == weights.meta["num_params"]
    assert entry.top1_image_size == entry.input_size == preprocessing.crop_size[0]
    assert entry.fixed_input_size == arch.startswith("vit_")
    model, info = networks.create_model(name, 5, weights="random")
    size = entry.input_size if entry.fixed_input_size else 64
    assert run(model.train(), 3, size).shape == (2, 5)  # in training mode too: no auxiliary outputs
    assert info.imagenet_top1 == entry.imagenet_top1 and info.library == "torchvision"


def test_a_name_both_libraries_know_stays_timms():
    assert registry.get_entry("resnet34").library == "timm"  # as before torchvision names resolved
    assert registry.get_entry("resnet34.IMAGENET1K_V1").library == "torchvision"  # upper case: torchvision's tag
    assert registry.get_entry("resnet50").library == "torchvision"  # the registry first
    assert registry.get_entry("vit_h_14").weights_tag == "IMAGENET1K_SWAG_E2E_V1"  # no V1 weights: its DEFAULT
    with pytest.raises(registry.UnknownModelError, match="no weights IMAGENET1K_V9 for mobilenet_v2. Known: "
                                                         "IMAGENET1K_V1, IMAGENET1K_V2"):
        registry.get_entry("mobilenet_v2.IMAGENET1K_V9")
    with pytest.raises(networks.UnsupportedOptionError, match="googlenet.*cannot take 4"):
        networks.create_model("googlenet", 5, weights="random", in_chans=4)


def test_unknown_names_are_refused_with_suggestions():
    with pytest.raises(registry.UnknownModelError, match="resnet50") as error:
        registry.get_entry("resnet5O")
    suggestions = str(error.value).split("Close matches: ")[1].split(", ")
    assert len(suggestions) == len(set(suggestions))  # registry names are timm names too: each once
    with pytest.raises(ValueError, match="a1_in1k"):
        registry.get_entry("resnet50.no_such_tag")


@pytest.mark.parametrize("name,suffix", [("resnet18", ".safetensors"), ("resnet18", ".pth"),
                                         ("efficientnet_b0", ".safetensors")])
def test_weights_file_round_trip(tmp_path, name, suffix):
    """What train.py saves (a 4-channel GeM network with its trained head) loads back to identical outputs."""
    model, _ = networks.create_model(name, 5, weights="random", pool="gem", in_chans=4)
    with torch.no_grad():
        next(m for m in model.modules() if isinstance(m, networks.GeM)).p.fill_(2.5)  # a trained p must survive
    path = tmp_path / f"trained{suffix}"
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if suffix == ".safetensors":
        save_file(state, path)
    else:
        torch.save(state, path)

    loaded, info = networks.create_model(name, 5, weights=str(path), pool="gem", in_chans=4)
    torch.testing.assert_close(run(loaded, 4, 64), run(model, 4, 64), rtol=0, atol=0)
    assert info.weights_loaded == f"file:{path.resolve()} sha256={fileio.sha256_file(path)}"
    assert info.head == "from file"


def test_library_shaped_weights_file(tmp_path):
    """An ImageNet-style file (3 channels, 1000 classes): a fresh head, RGB filters kept and extended."""
    library_model = torchvision.models.resnet18()
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save({"state_dict": library_model.state_dict()}, path)  # a wrapped checkpoint is unwrapped

    model, info = networks.create_model("resnet18", 5, weights=str(path), in_chans=4, pool="gem")
    assert info.head == "fresh" and model.fc.weight.shape == (5, 512)
    torch.testing.assert_close(model.conv1.weight[:, :3], library_model.conv1.weight)
    torch.testing.assert_close(model.conv1.weight[:, 3], library_model.conv1.weight.mean(dim=1))
    torch.testing.assert_close(model.layer4[1].bn2.running_var, library_model.layer4[1].bn2.running_var)
    torch.testing.assert_close(model.avgpool.p, torch.tensor(3.0))


def test_wrong_weights_files_are_clear_errors(tmp_path):
    other = tmp_path / "resnet34.safetensors"
    save_file(torchvision.models.resnet34().state_dict(), other)
    with pytest.raises(ValueError, match=r"resnet34.safetensors does not fit resnet18.*unexpected: layer1\.2\."):
        networks.create_model("resnet18", 5, weights=str(other))

    state = torchvision.models.resnet18().state_dict()
    state["layer2.0.conv1.weight"] = torch.zeros(128, 32, 3, 3)
    del state["layer3.1.bn1.bias"]
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    shapes = r"layer2\.0\.conv1\.weight \(file \(128, 32, 3, 3\), model \(128, 64, 3, 3\)\)"
    with pytest.raises(ValueError, match=r"missing: layer3\.1\.bn1\.bias.*shape mismatch: " + shapes):
        networks.create_model("resnet18", 5, weights=str(bad))

    not_weights = tmp_path / "list.pth"
    torch.save([1, 2, 3], not_weights)
    with pytest.raises(ValueError, match="list.pth: expected a state dict"):
        networks.create_model("resnet18", 5, weights=str(not_weights))
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="garbage.safetensors: cannot read weights"):
        networks.create_model("resnet18", 5, weights=str(garbage))
    with pytest.raises(ValueError, match="no such file"):
        networks.create_model("resnet18", 5, weights=str(tmp_path / "missing.pth"))


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No network, whatever the machine has: name lookups and connections fail, the Hub is in offline mode;
    torchvision's cache is an empty folder under tmp_path, so nothing is read from or written to the real one."""
    def refuse(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "network disabled by the test")
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)  # else it retries for ~45 s
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


@pytest.mark.parametrize("name,where", [
    ("resnet18", "https://download.pytorch.org/models/resnet18-f37072fd.pth"),
    ("deit_tiny", "the Hugging Face Hub repo timm/deit_tiny_patch16_224.fb_in1k"),
])
def test_imagenet_weights_offline_fail_at_once(offline, name, where):
    with pytest.raises(networks.WeightsUnavailableError) as caught:
        networks.create_model(name, 5)
    message = str(caught.value)
    assert message.startswith(f"{name}: cannot load the pretrained weights")
    assert where in message and "--weights PATH" in message and "--weights random" in message
    if name == "resnet18":
        assert f"cache: {offline}" in message
        assert not any(p.is_file() for p in offline.parent.parent.rglob("*"))  # no partial download left


def test_timm_model_without_weights_is_refused(offline):
    with pytest.raises(networks.WeightsUnavailableError,
                       match="cs3darknet_s.*no downloadable weights.*--weights random"):
        networks.create_model("cs3darknet_s", 5)


def test_imagenet_weights_come_from_the_library_cache(offline):
    """weights='imagenet' uses torchvision's normal cache, offline too, and says which weights it loaded."""
    cached = torchvision.models.resnet18()
    offline.mkdir(parents=True)
    torch.save(cached.state_dict(), offline / "resnet18-f37072fd.pth")
    model, info = networks.create_model("resnet18", 5, in_chans=4)
    assert info.weights_loaded == "imagenet:IMAGENET1K_V1" and info.head == "fresh"
    torch.testing.assert_close(model.conv1.weight[:, :3], cached.conv1.weight)
    torch.testing.assert_close(model.layer3[0].conv2.weight, cached.layer3[0].conv2.weight)


def test_cli_table_and_json():
    def models_py(*args: str) -> str:
        return subprocess.run([sys.executable, str(REPO / "models.py"), *args], capture_output=True, text=True,
                              check=True).stdout

    table = models_py()
    assert "efficientnet_b4.ra2_in1k" in table and "83.41" in table and "alexnet.IMAGENET1K_V1" in table
    listed = json.loads(models_py("--json"))
    assert [e["name"] for e in listed] == list(registry.REGISTRY)
    assert listed[0]["imagenet_top1"] == 56.522 and listed[0]["params"] == 61100840
    by_name = {e["name"]: e for e in listed}
    assert all(e["imagenet_top1"] is not None and e["top1_source"] for e in listed)
    assert {"resnet50_augmix", "resnet50_randaugment", "clip_rn50", "clip_vit_l14_336"} <= set(by_name)
    # the CLIP paper's linear-probe top-1 (Figure 8's x: "a CLIP ViT L/14-336px model (85.4% ImageNet top-1)"),
    # with its zero-shot figure beside it
    clip = {name: (by_name[name]["imagenet_top1"], by_name[name]["zero_shot_top1"])
            for name in ("clip_rn50", "clip_vit_b16", "clip_vit_l14", "clip_vit_l14_336")}
    assert clip == {"clip_rn50": (73.3, 59.6), "clip_vit_b16": (80.2, 68.6), "clip_vit_l14": (83.9, 75.3),
                    "clip_vit_l14_336": (85.4, 76.2)}
    for name in clip:
        assert "linear-probe" in by_name[name]["top1_source"] and "CLIP paper" in by_name[name]["top1_source"]
        assert "zero-shot" in by_name[name]["zero_shot_source"]
    assert "am_in1k" in by_name["resnet50_augmix"]["top1_source"]
