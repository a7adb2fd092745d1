"""The input pipeline of one train.py command, shared by every run of its pack: the readers (prepared cache or the
original files), the training loader with the paper's augmentation, one evaluation loader per split, and how a
loader batch becomes the models' input on the device.
"""
from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

import imagecache
from augment import transforms
from common import errors
from data import default_root
from data.inputs import DataOptions, Inputs
from imagecache.verify import BadImagesError, verify_images
from nets import registry
from training import engine
from training.options import TrainOptions


@dataclass
class Pipeline:
    train_loader: Any                      # prepared by the Accelerator
    eval_loaders: dict[str, Any]           # split -> prepared loader
    model_input: Callable[[dict], torch.Tensor]
    outputs: engine.Outputs
    input_path: str                        # where the crop and flips are resampled: "cpu" or "gpu"
    cache: dict[str, Any]                  # split -> the prepared cache's info, or None (the record's `cache`)
    mean: tuple[float, ...]
    std: tuple[float, ...]


def build_pipeline(options: TrainOptions, inputs: Inputs, img_size: int, accelerator,
                   channels_last: bool) -> Pipeline:
    samples, indices, spec = inputs.samples, inputs.split_indices, inputs.samples.spec
    per_device_batch, pin = options.batch_size // accelerator.num_processes, accelerator.device.type == "cuda"
    readers = {split: imagecache.reader_for(samples, indices[split], img_size,
                                            "train" if split == "train" else "eval", options.cache, options.cache_dir)
               for split in ["train", *inputs.eval_splits]}
    if options.verify_images or options.cache == "build":  # after a build this reads the memo the build filled
        verify_all_images(samples, indices, options, accelerator)
    input_path = augmentation_device(options, accelerator.device)
    train_set = engine.SampleDataset(samples, indices["train"],
                                     transforms.train_transform(spec, img_size, options.augment,
                                                                channels=samples.num_channels),
                                     seed=options.seed, reader=readers["train"],
                                     skip_bad_images=options.skip_bad_images, crop_on_device=input_path == "gpu",
                                     verify_command=verify_command(options))
    # drop_last as timm does: a final batch of one sample would break BatchNorm.
    train_loader = engine.make_loader(train_set, per_device_batch, True, options.workers, options.seed,
                                      drop_last=True, pin_memory=pin)
    if len(train_loader) == 0:
        raise errors.DataError(f"{inputs.split_path}: the train split has {len(train_set)} images, fewer than one "
                               f"batch of {per_device_batch}; lower --batch-size")
    eval_loaders = {split: engine.make_loader(
        engine.SampleDataset(samples, indices[split], transforms.eval_transform(img_size), seed=options.seed,
                             reader=readers[split], skip_bad_images=options.skip_bad_images,
                             verify_command=verify_command(options)),
        per_device_batch, False, options.workers, pin_memory=pin) for split in inputs.eval_splits}
    mean, std = registry.normalization(options.model, options.normalize)

    def model_input(batch: dict) -> torch.Tensor:
        return engine.to_model_input(engine.batch_images(batch, img_size), mean, std, channels_last)

    return Pipeline(train_loader=accelerator.prepare(train_loader),
                    eval_loaders={split: accelerator.prepare(loader) for split, loader in eval_loaders.items()},
                    model_input=model_input,
                    outputs=engine.Outputs(spec.task, regression=options.head == "regression",
                                           label_smoothing=options.label_smoothing,
                                           regression_loss=options.regression_loss),
                    input_path=input_path,
                    cache={split: reader.info if reader is not None else None for split, reader in readers.items()},
                    mean=tuple(mean), std=tuple(std))


def verify_command(options: TrainOptions) -> str:
    """The exact cache.py command that decodes every image this run reads and lists the bad ones: the run's data
    flags (cache.py takes train.py's) with the dataset's root spelled out."""
    words = ["python", "cache.py", options.dataset, "--root", str(options.root or default_root(options.dataset))]
    for flag in dataclasses.fields(DataOptions):
        value = getattr(options, flag.name)
        if flag.name not in ("dataset", "root") and value != flag.default:
            words += [f"--{flag.name.replace('_', '-')}", str(value)]
    if options.cache_dir != "cache":
        words += ["--cache-dir", options.cache_dir]
    return shlex.join([*words, "--verify-images"])


def verify_all_images(samples, indices: dict, options: TrainOptions, accelerator) -> None:
    """Decode every image of the run's splits before the first step (imagecache/verify.py), once per machine; stop
    listing every file that fails, unless --skip-bad-images (then they are skipped and counted as they come)."""
    every = np.unique(np.concatenate([rows for rows in indices.values()]))
    with accelerator.main_process_first():
        bad = verify_images(samples, every, workers=options.workers, memo_dir=options.cache_dir,
                            progress=accelerator.is_local_main_process)
    if bad and not options.skip_bad_images:
        raise BadImagesError(samples.name, bad)
    if bad:
        accelerator.print(f"{len(bad)} image(s) cannot be decoded and will be skipped (--skip-bad-images)")


def augmentation_device(options: TrainOptions, device: torch.device) -> str:
    """Where the training crop and flips are resampled: "cpu" (in the loader workers) or "gpu" (augment/gpu.py).

    auto: on the GPU whenever it applies (a CUDA device and --augment paper, the only pipeline it reproduces).
    Both paths draw the same crops and flips for every (seed, epoch, sample) and their pixels differ by at most one
    grey level, so choosing by model speed would gain nothing: the small models that outrun the CPU workers need it,
    and for the others it only frees the workers.
    """
    if options.augment_device == "cpu":
        return "cpu"
    if options.augment_device == "gpu" and options.augment != "paper":
        raise errors.UsageError(f"--augment-device gpu reproduces the 'paper' augmentation only (crop + flips), "
                                f"not --augment {options.augment}")
    applies = device.type == "cuda" and options.augment == "paper"
    return "gpu" if options.augment_device == "gpu" or applies else "cpu"
