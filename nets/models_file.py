"""A user's models file: models added to the registry for one command, with the fields of the built-in entries.

    {"models": [
      {"name": "my_resnet50", "library": "timm", "constructor": "resnet50",
       "checkpoint": "weights/my_resnet50.safetensors", "input_size": 224,
       "imagenet_top1": 80.4, "top1_source": "measured on ImageNet val by evaluate.py --imagenet-val, ..."}
    ]}

Required: `name` (letters, digits, `_`, `.`, `-`; not a built-in name), `library` ("torchvision" or "timm"),
`constructor` (the library's architecture), `input_size` (the default fine-tuning size, px) and `imagenet_top1` (a
percentage, or null when unknown), with `top1_source` when it is given. Optional: `label`; the pretrained weights as
`weights_tag` (the library's own weights of the constructor) or `checkpoint` (a local .safetensors/.pth state dict
of the constructor's network, ImageNet head included; relative to the models file's folder), with
`checkpoint_sha256` to pin it; `top1_image_size`, `params`, `group` (default "user"), `mean` and `std` (default
ImageNet's), `fixed_input_size`. Any other field is refused, so a typo cannot pass unseen.

Scripts take it as `--models-file FILE` (train.py and so grid.py plan, evaluate.py, models.py): a flag rather than a
file found beside the runs, because the file is an input of the command like --split-file, grid.py passes it to each
run unchanged, and a run's record keeps what it needs afterwards: the entry itself in its `model` block (analyze.py
places the model by its top-1, evaluate.py rebuilds it without the file) and `model_definition` in its
configuration, the digest of everything in the entry that changes the numbers (library, constructor, weights or the
checkpoint's SHA-256, sizes, statistics), which joins the run id (training/identity.py), so a changed checkpoint is
a new run. Label, top-1, source, parameter count and group change no run.

No torch here: train.py's options and grid.py plan read the file before torch is imported.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

from common import errors, fileio
from nets import registry
from nets.registry import IMAGENET_MEAN, IMAGENET_STD, ModelEntry

WEIGHT_FILE_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
LIBRARIES = ("torchvision", "timm")
REQUIRED = ("name", "library", "constructor", "input_size", "imagenet_top1")
# Fields a file may not set: where an entry came from is the file's own path.
NOT_IN_FILE = ("models_file",)
# The entry's fields that change a run's numbers: the digest of these is the model's part of the run id.
DEFINITION = ("library", "constructor", "weights_tag", "checkpoint_sha256", "input_size", "fixed_input_size", "mean",
              "std")
DEFAULT_GROUP = "user"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_hashes: dict[tuple[str, int, int], str] = {}  # (path, size, mtime) -> SHA-256: each checkpoint read once


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _statistics(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 3 and all(_is_number(v) for v in value)


# field -> (is the value acceptable, what it must be); None is accepted for the optional fields not listed as needing
# a value
CHECKS = {
    "name": (lambda v: isinstance(v, str) and _NAME.fullmatch(v), "a name of letters, digits, '_', '.' and '-'"),
    "label": (lambda v: isinstance(v, str) and v.strip(), "a non-empty string"),
    "library": (lambda v: v in LIBRARIES, f"one of {', '.join(LIBRARIES)}"),
    "constructor": (lambda v: isinstance(v, str) and v.strip(), "the library's architecture name"),
    "weights_tag": (lambda v: v is None or (isinstance(v, str) and v.strip()), "the library's weights name, or null"),
    "checkpoint": (lambda v: v is None or (isinstance(v, str) and v.endswith(WEIGHT_FILE_SUFFIXES)),
                   f"a path ending in {', '.join(WEIGHT_FILE_SUFFIXES)}, or null"),
    "checkpoint_sha256": (lambda v: v is None or (isinstance(v, str) and _SHA256.fullmatch(v)),
                          "64 lower-case hex digits, or null"),
    "imagenet_top1": (lambda v: v is None or (_is_number(v) and 0 < v <= 100), "a percentage in (0, 100], or null"),
    "top1_source": (lambda v: v is None or (isinstance(v, str) and v.strip()), "a non-empty string"),
    "top1_image_size": (lambda v: v is None or _positive_int(v), "a whole number of pixels, or null"),
    "params": (lambda v: v is None or _positive_int(v), "a whole number, or null"),
    "input_size": (_positive_int, "a whole number of pixels"),
    "group": (lambda v: isinstance(v, str) and v.strip(), "a non-empty string"),
    "mean": (_statistics, "a list of 3 numbers (R, G, B on the 0-1 scale)"),
    "std": (lambda v: _statistics(v) and all(x > 0 for x in v), "a list of 3 positive numbers"),
    "fixed_input_size": (lambda v: isinstance(v, bool), "true or false"),
}


class ModelsFileError(errors.DataError, ValueError):
    """A models file that cannot be read, or an entry with a wrong field: names the file, the entry and the field."""


def use(path: str | os.PathLike | None) -> list[ModelEntry]:
    """Read the models file `path` and add its models to every lookup of this process (none: a command without a
    models file sees the built-in names only). Returns its entries."""
    entries = read(path) if path is not None else []
    registry.set_added(entries)
    return entries


def read(path: str | os.PathLike) -> list[ModelEntry]:
    """Every entry of the models file, checked field by field (a checkpoint must exist; it is hashed when used)."""
    path = Path(path)
    if not path.is_file():
        raise errors.UsageError(f"--models-file {path}: no such file (a JSON file {{\"models\": [...]}}; README, "
                                f"'Benchmark your model', shows one)")
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelsFileError(f"{path}: not readable as JSON ({error})") from None
    listed = content.get("models") if isinstance(content, dict) else content
    if not isinstance(listed, list) or (isinstance(content, dict) and set(content) != {"models"}):
        raise ModelsFileError(f"{path}: expected a JSON object with one key, \"models\", holding a list of models")
    entries, seen = [], set()
    for index, raw in enumerate(listed, 1):
        entry = _entry(path, index, raw)
        if entry.name in seen:
            raise ModelsFileError(f"{path}: model '{entry.name}', field 'name': given twice in this file")
        seen.add(entry.name)
        entries.append(entry)
    return entries


def _entry(path: Path, index: int, raw: Any) -> ModelEntry:
    name = raw.get("name") if isinstance(raw, dict) else None
    where = f"{path}: model " + (f"'{name}'" if isinstance(name, str) else f"{index} of the list")
    if not isinstance(raw, dict):
        raise ModelsFileError(f"{where}: expected a JSON object of fields, found {type(raw).__name__}")
    known = [f.name for f in fields(ModelEntry) if f.name not in NOT_IN_FILE]
    for field in raw:
        if field not in known:
            raise ModelsFileError(f"{where}, field '{field}': not a field of a model (known: {', '.join(known)})")
    for field in REQUIRED:
        if field not in raw:
            raise ModelsFileError(f"{where}, field '{field}': missing; required are {', '.join(REQUIRED)}")
    for field, value in raw.items():
        accepted, what = CHECKS.get(field, (lambda v: v is None or _is_number(v) or isinstance(v, str),
                                            "a number, a string or null"))
        if not accepted(value):
            raise ModelsFileError(f"{where}, field '{field}': {json.dumps(value)} is not {what}")
    if name in registry.REGISTRY:
        raise ModelsFileError(f"{where}, field 'name': '{name}' is a built-in model of models.py's registry, whose "
                              f"entry stays as it is; give yours another name")
    if raw.get("imagenet_top1") is not None and raw.get("top1_source") is None:
        raise ModelsFileError(f"{where}, field 'top1_source': missing; say where imagenet_top1 comes from (a paper, "
                              f"a results table, or evaluate.py --imagenet-val's record)")
    if raw.get("weights_tag") and raw.get("checkpoint"):
        raise ModelsFileError(f"{where}, field 'checkpoint': give the pretrained weights once, as weights_tag (the "
                              f"library's) or as checkpoint (a file), not both")
    if raw.get("checkpoint_sha256") and not raw.get("checkpoint"):
        raise ModelsFileError(f"{where}, field 'checkpoint_sha256': pins a checkpoint, and this model has none")
    values = {"label": name, "top1_image_size": None, "params": None, "group": DEFAULT_GROUP, **raw,
              "top1_source": raw.get("top1_source") or "unknown: not given in the models file"}
    if raw.get("checkpoint"):
        checkpoint = (path.parent / raw["checkpoint"]).resolve()
        if not checkpoint.is_file():
            raise ModelsFileError(f"{where}, field 'checkpoint': no such file {checkpoint} (a relative path is read "
                                  f"from the models file's folder)")
        values["checkpoint"] = str(checkpoint)
    values.update(mean=tuple(raw.get("mean", IMAGENET_MEAN)), std=tuple(raw.get("std", IMAGENET_STD)),
                  weights_tag=raw.get("weights_tag"), models_file=str(path.resolve()))
    return ModelEntry(**values)


def checkpoint_sha256(entry: ModelEntry) -> str | None:
    """The SHA-256 of the entry's checkpoint, checked against the one its models file pins (read once a process)."""
    if entry.checkpoint is None:
        return None
    stat = Path(entry.checkpoint).stat()
    key = (entry.checkpoint, stat.st_size, stat.st_mtime_ns)
    if key not in _hashes:
        _hashes[key] = fileio.sha256_file(entry.checkpoint)
    actual = _hashes[key]
    if entry.checkpoint_sha256 and entry.checkpoint_sha256 != actual:
        raise ModelsFileError(f"{entry.models_file}: model '{entry.name}', field 'checkpoint_sha256': "
                              f"{entry.checkpoint} has SHA-256 {actual}, not the {entry.checkpoint_sha256} pinned; "
                              f"the file has changed, so fix the pin or the file")
    return actual


def definition(name: str) -> str | None:
    """The digest of what in a models file's entry `name` changes a run's numbers (None for every other model: a
    built-in, torchvision's or timm's), so that the run id changes with it."""
    entry = next((e for e in registry.added_entries() if e.name == name), None)
    if entry is None:
        return None
    values = {**asdict(entry), "checkpoint_sha256": checkpoint_sha256(entry)}
    chosen = {key: list(v) if isinstance(v := values[key], tuple) else v for key in DEFINITION}
    return hashlib.sha256(json.dumps(chosen, sort_keys=True).encode()).hexdigest()


def as_record(entry: ModelEntry) -> dict[str, Any] | None:
    """A models file's entry as a run or evaluation record keeps it (the checkpoint's SHA-256 as read); None for
    every other model."""
    if entry.models_file is None:
        return None
    values = {**asdict(entry), "checkpoint_sha256": checkpoint_sha256(entry)}
    return {key: list(value) if isinstance(value, tuple) else value for key, value in values.items()}


def from_record(block: dict[str, Any]) -> ModelEntry:
    """The entry a record kept (as_record), to rebuild the network without the models file."""
    known = {f.name for f in fields(ModelEntry)}
    values = {key: tuple(value) if key in ("mean", "std") else value for key, value in block.items() if key in known}
    return ModelEntry(**values)


def file_entry(entry: ModelEntry, models_file: Path, **updates: Any) -> dict[str, Any]:
    """`entry` as a models file holds it, with `updates` (a measured top-1 and its source); a checkpoint's path is
    written relative to the models file's folder."""
    values = {**asdict(replace(entry, **updates)), "group": DEFAULT_GROUP if entry.models_file is None else entry.group}
    if values["checkpoint"]:
        values["checkpoint"] = os.path.relpath(values["checkpoint"], models_file.resolve().parent)
    kept = {key: list(value) if isinstance(value, tuple) else value for key, value in values.items()
            if key not in NOT_IN_FILE and (value is not None or key in REQUIRED)}
    return {key: kept[key] for key in CHECKS if key in kept} | {k: v for k, v in kept.items() if k not in CHECKS}


def write_entry(models_file: Path, entry: dict[str, Any]) -> str:
    """Add `entry` to the models file (created if missing), replacing the entry of the same name and leaving the
    others as written; returns what was done. The file and the new entry are checked before the file is changed,
    and it is written atomically."""
    models_file = Path(models_file)
    listed = []
    if models_file.exists():
        read(models_file)  # a file with a wrong entry is refused before it is changed
        content = json.loads(models_file.read_text(encoding="utf-8"))
        listed = content["models"] if isinstance(content, dict) else content
    _entry(models_file, len(listed) + 1, entry)
    done = "replaced" if any(e["name"] == entry["name"] for e in listed) else "added"
    listed = [entry if e["name"] == entry["name"] else e for e in listed] if done == "replaced" else [*listed, entry]
    fileio.atomic_write_text(models_file, json.dumps({"models": listed}, indent=2) + "\n")
    return f"{done} model '{entry['name']}' in {models_file}"
