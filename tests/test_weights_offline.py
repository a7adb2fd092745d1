"""Weights before the run (issue 20, item 3): pretrained weights placed where the libraries' caches keep them
(torchvision: $TORCH_HOME/hub/checkpoints/<the file of the weights' URL>; timm: the Hugging Face cache,
models--timm--<weights>/snapshots/<revision>/model.safetensors with refs/main) load with no network at all, and
weights that are missing fail without waiting on the network, in one line naming --weights, HF_HUB_OFFLINE=1 and
the download command. The files are randomly initialised networks saved in the libraries' formats."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file

from nets import networks, registry, weights

from conftest import REPO, small_digits_split

REVISION = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def no_network(monkeypatch):
    """Every name lookup and connection fails at once, and is counted: loading cached weights must make none."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise socket.gaierror(socket.EAI_NONAME, "network disabled by the test")
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Empty library caches under tmp_path: torchvision's by TORCH_HOME, the Hub's by its cache constant (what
    HF_HOME sets when the process starts; the subprocess test below sets HF_HOME itself)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)  # as on a machine where nobody set it
    return tmp_path / "torch" / "hub" / "checkpoints", tmp_path / "hf" / "hub"


def place_torchvision(checkpoints: Path, name: str) -> dict[str, torch.Tensor]:
    entry = registry.get_entry(name)
    url = torchvision.models.get_model_weights(entry.constructor)[entry.weights_tag].url
    state = torchvision.models.get_model(entry.constructor, weights=None).state_dict()
    checkpoints.mkdir(parents=True, exist_ok=True)
    torch.save(state, checkpoints / url.rsplit("/", 1)[1])
    return state


def place_timm(hub: Path, name: str) -> dict[str, torch.Tensor]:
    entry = registry.get_entry(name)
    hub_id = timm.models.get_pretrained_cfg(registry.qualified_name(entry)).hf_hub_id  # timm/<architecture>.<tag>
    repo = hub / f"models--{hub_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(REVISION)
    (repo / "snapshots" / REVISION).mkdir(parents=True)
    state = {k: v.contiguous() for k, v in timm.create_model(registry.qualified_name(entry)).state_dict().items()}
    save_file(state, repo / "snapshots" / REVISION / "model.safetensors")
    return state


@pytest.mark.parametrize("name,library", [("resnet18", "torchvision"), ("mobilenet_v2", "torchvision"),
                                          ("efficientnet_b0", "timm")])
def test_cached_weights_load_with_no_network(caches, no_network, name, library):
    checkpoints, hub = caches
    placed = place_torchvision(checkpoints, name) if library == "torchvision" else place_timm(hub, name)
    model, info = networks.create_model(name, 5)  # a fresh 5-class head on the cached backbone
    assert info.weights_loaded == f"imagenet:{registry.get_entry(name).weights_tag}" and info.head == "fresh"
    loaded = model.state_dict()
    backbone = [key for key in placed if key in loaded and loaded[key].shape == placed[key].shape]
    assert len(backbone) > 0.9 * len(placed)
    for key in backbone:
        torch.testing.assert_close(loaded[key], placed[key], rtol=0, atol=0)
    full, _ = networks.imagenet_classifier(name)  # with its ImageNet head, for --imagenet-val
    for key, value in full.state_dict().items():
        torch.testing.assert_close(value, placed[key], rtol=0, atol=0)
    assert no_network == []


def check_message(message: str, name: str) -> None:
    assert message.startswith(f"{name}: cannot load the pretrained weights") and "\n" not in message
    for way_out in ("--weights PATH", "--weights random", "HF_HUB_OFFLINE=1", f"python models.py --download {name}"):
        assert way_out in message


@pytest.mark.parametrize("name", ["resnet18", "deit_tiny"])
def test_missing_weights_offline_fail_without_asking_the_network(caches, monkeypatch, name):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)

    def no_probe(*args):
        raise AssertionError("with HF_HUB_OFFLINE=1 nothing asks the network")
    monkeypatch.setattr(weights, "reachable", no_probe)
    with pytest.raises(networks.WeightsUnavailableError) as caught:
        networks.create_model(name, 5)
    check_message(str(caught.value), name)
    assert "HF_HUB_OFFLINE=1 says this machine is offline" in str(caught.value)


@pytest.mark.parametrize("name", ["mobilenet_v2", "deit_tiny"])
def test_missing_weights_without_a_network_fail_at_once(caches, no_network, name):
    with pytest.raises(networks.WeightsUnavailableError) as caught:
        networks.create_model(name, 5)
    check_message(str(caught.value), name)
    assert "cannot be reached" in str(caught.value)
    assert len(no_network) == 1  # one look at the source's host, no retries
    checkpoints, hub = caches
    assert not any(path.is_file() for path in [*checkpoints.parent.parent.rglob("*"), *hub.parent.rglob("*")])


def test_reachable_follows_the_proxy(monkeypatch):
    asked = []
    monkeypatch.setenv("https_proxy", "http://proxy.example:3128")
    monkeypatch.setattr(socket, "create_connection", lambda address, timeout: asked.append(address) or socket.socket())
    assert weights.reachable("https://huggingface.co/timm/x") and asked == [("proxy.example", 3128)]


def run(script: str, args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / script), *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(REPO), **env}, timeout=300)


def test_download_finds_placed_weights_and_train_py_fails_in_one_line(tmp_path):
    """What a cluster user does: models.py --download with the caches set by TORCH_HOME and HF_HOME (here the weights
    are placed there first, as the login node's download leaves them), and a run whose weights are missing, offline."""
    env = {"TORCH_HOME": str(tmp_path / "torch"), "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    place_torchvision(tmp_path / "torch" / "hub" / "checkpoints", "resnet18")
    place_timm(tmp_path / "hf" / "hub", "efficientnet_b0")
    result = run("models.py", ["--download", "resnet18", "efficientnet_b0"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"resnet18: already in the cache, {tmp_path}/torch/hub/checkpoints/resnet18-f37072fd.pth"
    assert lines[1].startswith("efficientnet_b0: already in the cache, ") and REVISION in lines[1]

    split = small_digits_split(tmp_path)
    result = run("train.py", ["--dataset", "digits", "--model", "deit_tiny", "--split-file", str(split),
                              "--epochs", "1", "--workers", "0"], env, tmp_path)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("train.py: error: ")
    check_message(line.removeprefix("train.py: error: "), "deit_tiny")
