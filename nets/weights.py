"""Pretrained weights: where torchvision and timm keep them, whether this machine has them, fetching them ahead of
time (`python models.py --download`), and failing in seconds, in one line, when they are neither here nor reachable.

The libraries' own caches, as they are: torchvision's checkpoints under $TORCH_HOME/hub/checkpoints/<file of the
weights' URL>; timm's Hugging Face Hub downloads under $HF_HOME/hub (HF_HUB_CACHE), as
models--timm--<weights>/snapshots/<revision>/model.safetensors with refs/main naming the revision; timm's older URL
weights in torch's cache too. On a cluster whose compute nodes have no internet: `python models.py --download
testbed` on the login node, with the TORCH_HOME and HF_HOME the compute nodes see, and runs there find them.

Weights this machine has are loaded without asking the network: the Hub client would otherwise ask for a newer
revision first, and offline it retries for about 45 s before it falls back to its cache, in every run of a grid.
Weights it does not have are downloaded only when the source's host answers within PROBE_SECONDS (through the
proxy when one is set); with HF_HUB_OFFLINE=1, or when the host does not answer, loading stops at once with the ways
out (WeightsUnavailableError).
"""
from __future__ import annotations

import contextlib
import os
import socket
import threading
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import huggingface_hub
import timm
import torch
import torchvision
from huggingface_hub import constants as hub_constants
from torch import nn

from common.errors import WeightsUnavailableError
from nets.registry import ModelEntry, qualified_name

PROBE_SECONDS = 3.0


@dataclass(frozen=True)
class Source:
    """Where an entry's pretrained weights come from and where the library caches them."""
    url: str            # what the library downloads from (its host is probed)
    described: str      # the same, for messages
    cache: Path         # the library's cache folder for them
    cached: Path | None  # the cached file, when this machine has it
    hub: bool           # a Hugging Face Hub download (timm)


def source(entry: ModelEntry) -> Source:
    """Where `entry`'s pretrained weights are, following the library's own choice of source (timm: a local file,
    else the Hub, else a URL)."""
    if entry.library == "torchvision":
        if entry.weights_tag is None:
            raise WeightsUnavailableError(unavailable(entry, "its models file gives neither weights_tag nor "
                                                      "checkpoint", str(entry.models_file)))
        url = torchvision_weights(entry).url
        return _torch_hub_source(url, url)
    cfg = timm.models.get_pretrained_cfg(qualified_name(entry))
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        # timm itself would only log a warning here and return random weights
        raise WeightsUnavailableError(unavailable(entry, "timm lists no downloadable weights for it",
                                                  f"timm's pretrained configs for {qualified_name(entry)}"))
    if cfg.file:
        return Source(cfg.file, cfg.file, Path(cfg.file).parent, Path(cfg.file) if Path(cfg.file).is_file() else None,
                      False)
    if cfg.hf_hub_id:
        repo, _, revision = cfg.hf_hub_id.partition("@")
        found = (huggingface_hub.try_to_load_from_cache(repo, name, revision=revision or None)
                 for name in _hub_file_names(cfg.hf_hub_filename))
        cached = next((Path(path) for path in found if isinstance(path, str)), None)
        return Source(f"{hub_constants.ENDPOINT}/{repo}",
                      f"the Hugging Face Hub repo {repo} ({hub_constants.ENDPOINT})",
                      Path(hub_constants.HF_HUB_CACHE), cached, True)
    return _torch_hub_source(cfg.url, cfg.url)


def _torch_hub_source(url: str, described: str) -> Source:
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    file = cache / os.path.basename(urlparse(url).path)
    return Source(url, described, cache, file if file.is_file() else None, False)


def _hub_file_names(filename: str | None) -> list[str]:
    """The files timm asks the Hub for, in its order: a safetensors copy first, then the named file."""
    filename = filename or "pytorch_model.bin"
    safe = {"pytorch_model.bin": "model.safetensors", "open_clip_pytorch_model.bin": "open_clip_model.safetensors"}
    alternative = safe.get(filename, filename[:-4] + ".safetensors" if filename.endswith(".bin") else None)
    return [name for name in (alternative, filename) if name]


def torchvision_weights(entry: ModelEntry):
    return torchvision.models.get_model_weights(entry.constructor)[entry.weights_tag]


def pretrained(entry: ModelEntry) -> nn.Module:
    """The library's network with its pretrained weights and its ImageNet head: from the cache without the network,
    else downloaded into it, else WeightsUnavailableError at once."""
    where = source(entry)
    if where.cached is None:
        check_reachable(entry, where)
    try:
        with hub_offline(where.hub and where.cached is not None):
            if entry.library == "torchvision":
                return torchvision.models.get_model(entry.constructor, weights=torchvision_weights(entry))
            return timm.create_model(qualified_name(entry), pretrained=True)
    except OSError as err:  # URLError and the Hub's errors (offline, not found) are all OSErrors
        raise WeightsUnavailableError(unavailable(entry, " ".join(str(err).split()), where.described,
                                                  where.cache)) from err


def check_reachable(entry: ModelEntry, where: Source) -> None:
    """Stop at once when weights that are not cached cannot be downloaded either."""
    if hub_constants.is_offline_mode():
        reason = "not in the cache, and HF_HUB_OFFLINE=1 says this machine is offline"
    elif not reachable(where.url):
        reason = (f"not in the cache, and {urlparse(where.url).hostname} cannot be reached (no connection within "
                  f"{PROBE_SECONDS:g} s)")
    else:
        return
    raise WeightsUnavailableError(unavailable(entry, reason, where.described, where.cache))


def check_available(entries: list[ModelEntry]) -> None:
    """Before a grid starts its runs: every model's pretrained weights are in this machine's cache or can be
    downloaded now; else one error naming them all, so that a grid fails in seconds instead of run after run."""
    missing = []
    for entry in entries:
        if entry.checkpoint:
            continue
        where = source(entry)
        if where.cached is None:
            try:
                check_reachable(entry, where)
            except WeightsUnavailableError as error:
                missing.append((entry, str(error)))
    if len(missing) == 1:
        raise WeightsUnavailableError(missing[0][1])
    if missing:
        names = " ".join(entry.name for entry, _ in missing)
        raise WeightsUnavailableError(f"the pretrained weights of {len(missing)} models are neither in this "
                                      f"machine's cache nor reachable ({names}); fetch them on a machine with "
                                      f"internet with `python models.py --download {names}` into the "
                                      f"TORCH_HOME/HF_HOME this machine reads (then set HF_HUB_OFFLINE=1 here), or "
                                      f"plan with --weights PATH or --weights random. First: {missing[0][1]}")


@contextlib.contextmanager
def hub_offline(on: bool):
    """The Hub client in offline mode for one load: it then reads its cache without asking for a newer revision.
    huggingface_hub reads the setting at each request, so setting it here is enough."""
    before = hub_constants.HF_HUB_OFFLINE
    hub_constants.HF_HUB_OFFLINE = before or on
    try:
        yield
    finally:
        hub_constants.HF_HUB_OFFLINE = before


def reachable(url: str, seconds: float = PROBE_SECONDS) -> bool:
    """Whether `url`'s host (or the proxy the environment sets for it) accepts a connection within `seconds`. In a
    thread, because a name lookup has no timeout of its own."""
    parsed = urlparse(url)
    host, port = parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(parsed.scheme)
    if proxy and not urllib.request.proxy_bypass(host or ""):
        proxied = urlparse(proxy if "://" in proxy else f"http://{proxy}")
        host, port = proxied.hostname, proxied.port or 80
    answered: list[bool] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=seconds).close()
            answered.append(True)
        except OSError:
            answered.append(False)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(seconds)
    return answered == [True]


def unavailable(entry: ModelEntry, reason: str, where: str, cache: Path | None = None) -> str:
    """The one line of a missing-weights failure: what, why, where it looked, and the three ways out."""
    models_file = f" --models-file {entry.models_file}" if entry.models_file else ""
    return (f"{entry.name}: cannot load the pretrained weights {entry.library} {qualified_name(entry)} ({reason}). "
            f"Looked in {where}" + (f" (cache: {cache})" if cache else "") + ". Ways out: fetch them on a machine "
            f"with internet with `python models.py --download {entry.name}{models_file}` into the TORCH_HOME/HF_HOME "
            f"this machine reads (then set HF_HUB_OFFLINE=1 here so that nothing asks the network); or pass "
            f"--weights PATH (a .safetensors or .pth state dict); or --weights random for a smoke run without "
            f"pretrained weights.")


def download(entry: ModelEntry) -> str:
    """Fetch `entry`'s pretrained weights into the library's cache (models.py --download); says what was done."""
    if entry.checkpoint:
        return f"{entry.name}: its models file names a local checkpoint, {entry.checkpoint}; nothing to download"
    where = source(entry)
    if where.cached is not None:
        return f"{entry.name}: already in the cache, {where.cached}"
    pretrained(entry)
    where = source(entry)
    size = f"{where.cached.stat().st_size / 1e6:.1f} MB " if where.cached else ""
    return f"{entry.name}: downloaded {size}into {where.cached or where.cache}"
