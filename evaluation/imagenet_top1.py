"""evaluate.py --imagenet-val: a model's ImageNet top-1 measured on the validation set, with its Clopper-Pearson
interval, written as a record a models file can cite, and as the models-file entry that makes it the model's top-1.

Each model is measured with its own evaluation transform, the resize, crop, interpolation and normalisation its
published top-1 was measured with: torchvision weights' transforms() (e.g. resize 256 bilinear, centre crop 224),
timm's resolve_data_config + create_transform for the pretrained config (e.g. resize 256 bicubic, crop 224); a
models file's checkpoint gets its architecture's transform with the file's mean, std and top1_image_size (a
torchvision one without a weights tag: resize to size/0.875, bilinear, centre crop). In float32, batch by batch;
top-1 is the share of images whose highest of the 1,000 outputs is their class.
"""
from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import timm.data
import torch
import torchvision
from PIL import Image
from torch.utils.data import DataLoader, Dataset, default_collate
from tqdm import tqdm

import metrics
from common import errors, fileio, provenance
from evaluation.imagenet_layout import ValImages, find_images
from evaluation.options import EvalOptions
from nets import models_file, networks, registry
from nets.registry import ModelEntry
from nets.weights import torchvision_weights

CLASSES = 1000


class ValDataset(Dataset):
    """The images, each decoded to RGB and put through the model's transform; a file that cannot be decoded is
    reported by name in the main process (an exception raised in a loader worker would carry its traceback)."""

    def __init__(self, paths: list[Path], transform):
        self.paths, self.transform = paths, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        try:
            with Image.open(self.paths[index]) as image:
                return self.transform(image.convert("RGB")), index, ""
        except (OSError, ValueError) as error:
            return torch.zeros(0), index, f"{self.paths[index]}: cannot be decoded ({error})"


def batch_or_problems(items: list[tuple]) -> tuple:
    """The loader's batch; or, when an image could not be decoded, only the problems (its empty stand-in cannot be
    stacked with the others, and the command stops on it anyway)."""
    problems = [problem for *_, problem in items if problem]
    return (None, None, problems) if problems else default_collate(items)


def measure(options: EvalOptions) -> int:
    entry = registry.get_entry(options.model)
    weights = options.weights or "imagenet"
    images = find_images(Path(options.imagenet_val), Path(options.imagenet_devkit) if options.imagenet_devkit
                         else None)
    model, weights_loaded = networks.imagenet_classifier(entry, weights)
    transform, size = evaluation_transform(entry, model)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    predicted = predict(model.to(device).eval(), images, transform, options, device)
    correct, n = int((predicted == images.labels).sum()), len(images.labels)
    top1 = 100 * correct / n
    low, high = (100 * bound for bound in metrics.clopper_pearson(correct, n, options.level))

    out = Path(options.out) / (options.name or default_name(options, weights))
    record_path = out / "imagenet-val.json"
    source = (f"measured on ImageNet val by evaluate.py --imagenet-val: {correct:,}/{n:,} images correct "
              f"({images.describe()}), {options.level:.0%} Clopper-Pearson interval [{low:.2f}, {high:.2f}], at "
              f"{size} px, weights {weights_loaded}, commit {provenance.git_commit()}, record {record_path.resolve()}")
    record = {"kind": "imagenet-val", "model": entry.name, "entry": models_file.as_record(entry) or asdict(entry),
              "weights_loaded": weights_loaded, "folder": provenance.path_as_given(options.imagenet_val),
              "layout": images.layout, "ground_truth_sha256": images.ground_truth, "images": n, "correct": correct,
              "top1": top1, "interval": {"low": low, "high": high, "level": options.level,
                                         "method": "Clopper-Pearson"},
              "top1_source": source, "transform": " ".join(repr(transform).split()), "image_size": size,
              "runtime": provenance.runtime(device), **provenance.provenance()}
    fileio.atomic_write_json(record_path, record)
    fileio.atomic_save_npz(out / "predictions.npz", files=np.asarray([p.name for p in images.paths]),
                           labels=images.labels, predicted=predicted)

    print(f"{entry.name}: ImageNet top-1 {top1:.3f}% [{low:.3f}, {high:.3f}] ({options.level:.0%} Clopper-Pearson), "
          f"{correct:,}/{n:,} correct; {images.describe()}; weights {weights_loaded}")
    if entry.imagenet_top1 is not None:
        print(f"{entry.name}: top-1 so far {entry.imagenet_top1} ({entry.top1_source})")
    print(f"-> {record_path}")
    if entry.name in registry.REGISTRY or weights == "random":
        return 0  # the registry keeps its published figures; random weights have no top-1 worth keeping
    target = Path(options.write_models_file or entry.models_file or "models.json")
    measured = {"imagenet_top1": round(top1, 3), "top1_source": source, "top1_image_size": size}
    if weights != "imagenet":  # the file measured is the model's pretrained weights from now on
        measured.update(checkpoint=str(Path(weights).resolve()), checkpoint_sha256=None, weights_tag=None)
    file_values = models_file.file_entry(entry, target, **measured)
    if options.write_models_file:
        print(models_file.write_entry(target, file_values))
    else:
        print(f"the entry that makes this {entry.name}'s top-1 in a models file such as {target} (or pass "
              f"--write-models-file FILE):")
        print(json.dumps(file_values, indent=2))
    return 0


def evaluation_transform(entry: ModelEntry, model: torch.nn.Module) -> tuple[Any, int]:
    """The transform the entry's top-1 is measured with, and its crop size (see the module docstring)."""
    from_file = entry.models_file is not None
    if entry.library == "timm":
        overrides = {"mean": tuple(entry.mean), "std": tuple(entry.std)} if from_file else {}
        if from_file and entry.top1_image_size:
            overrides["input_size"] = (3, entry.top1_image_size, entry.top1_image_size)
        config = timm.data.resolve_data_config(overrides, model=model)
        return timm.data.create_transform(**config), config["input_size"][-1]
    if entry.weights_tag is not None and not (from_file and entry.checkpoint):
        transform = torchvision_weights(entry).transforms()
        return transform, transform.crop_size[0]
    size = entry.top1_image_size or entry.input_size
    T = torchvision.transforms
    return T.Compose([T.Resize(round(size / 0.875), interpolation=T.InterpolationMode.BILINEAR, antialias=True),
                      T.CenterCrop(size), T.ToTensor(), T.Normalize(entry.mean, entry.std)]), size


def predict(model: torch.nn.Module, images: ValImages, transform, options: EvalOptions,
            device: torch.device) -> np.ndarray:
    """The class each image is given: the index of its highest output."""
    loader = DataLoader(ValDataset(images.paths, transform), batch_size=options.batch_size,
                        num_workers=options.workers, shuffle=False, collate_fn=batch_or_problems)
    predicted = np.full(len(images.paths), -1, dtype=np.int64)
    with torch.inference_mode():
        for batch, index, problems in tqdm(loader, desc="ImageNet val", unit="batch", disable=not sys.stderr.isatty()):
            failed = [problem for problem in problems if problem]
            if failed:
                raise errors.DataError(f"{failed[0]}; every validation image counts, so replace the file")
            logits = model(batch.to(device))
            if logits.ndim != 2 or logits.shape[1] != CLASSES:
                raise errors.DataError(f"{options.model} gives {tuple(logits.shape[1:])} outputs per image, not "
                                       f"ImageNet-1k's {CLASSES}: its weights were not trained on ImageNet-1k's "
                                       f"classes")
            predicted[index.numpy()] = logits.argmax(dim=1).cpu().numpy()
    return predicted


def default_name(options: EvalOptions, weights: str) -> str:
    """imagenet-val-<model>-<digest of what decides the number>, so that two measurements never collide."""
    decided = [options.model, weights, str(Path(options.imagenet_val).resolve()), options.imagenet_devkit,
               options.models_file and str(Path(options.models_file).resolve())]
    return f"imagenet-val-{options.model}-{hashlib.sha256(repr(decided).encode()).hexdigest()[:8]}"
