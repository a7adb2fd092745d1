"""Scoring models on a dataset's splits the way train.py evaluates them, and reading runs' saved predictions."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from accelerate import Accelerator

import imagecache
import metrics
from augment import transforms
from common import errors, runrecord
from evaluation.options import EvalOptions
from nets import models_file, networks, registry
from training import engine


@dataclass
class LoadedModel:
    """A network ready to score, and how its inputs are made."""
    network: Any
    info: networks.ModelInfo
    regression: bool
    img_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    member: str          # its name in the evaluation (the run id)


def load_predictions(record_path: Path, record: dict, split: str) -> dict:
    relative = record.get("predictions", {}).get(split)
    if relative is None:
        raise errors.DataError(f"{record_path}: no saved predictions for split '{split}' "
                               f"(saved: {', '.join(record.get('predictions', {})) or 'none'})")
    try:
        return runrecord.read_predictions(record_path.parent / relative)
    except ValueError as error:
        raise errors.DataError(str(error)) from None


def score_all(task: str, num_classes: int, predictions: dict[str, dict], options: EvalOptions) -> dict[str, dict]:
    return {split: metrics.score_with_intervals(task, p["labels"], p["scores"], p["thresholds"], num_classes,
                                                level=options.level, n_boot=options.n_boot, seed=options.seed)
            for split, p in predictions.items()}


class Scorer:
    """Runs models over the splits of one dataset, the same way train.py evaluates them."""

    def __init__(self, samples, split_indices: dict, options: EvalOptions, accelerator: Accelerator):
        self.samples, self.split_indices, self.options, self.accelerator = samples, split_indices, options, accelerator
        self.spec = samples.spec

    def predict(self, model: LoadedModel, split: str) -> dict:
        if self.samples.options.get("unlabeled"):
            indices = np.arange(len(self.samples))
        else:
            indices = self.split_indices[split]  # main() checked the names before any model was loaded
        reader = None if self.samples.options.get("unlabeled") else imagecache.reader_for(
            self.samples, indices, model.img_size, "eval", self.options.cache, self.options.cache_dir)
        dataset = engine.SampleDataset(self.samples, indices, transforms.eval_transform(model.img_size), reader=reader)
        loader = self.accelerator.prepare(engine.make_loader(dataset, self.options.batch_size, False,
                                                             self.options.workers))
        outputs = engine.Outputs(self.spec.task, regression=model.regression)
        predicted = engine.predict([model.network], loader, self.accelerator, outputs,
                                   lambda batch: engine.to_model_input(batch["image"], model.mean, model.std, False),
                                   tta=self.options.tta, hflip=self.spec.hflip, vflip=self.spec.vflip,
                                   desc=f"{model.info.name} {split}")[0]
        index = predicted["index"]
        return {"ids": np.asarray([self.samples.ids[i] for i in index]), "labels": self.samples.labels[index],
                "scores": predicted["scores"]}


def load_run_model(record_path: Path, record: dict, accelerator: Accelerator, member: str) -> LoadedModel:
    config = record["config"]
    definition = record["model"].get("definition")  # a models file's model: rebuilt from the record, not the file
    model, info = networks.create_model(models_file.from_record(definition) if definition else config["model"],
                                        record["model"]["num_outputs"],
                                        weights=str(runrecord.files_of(record_path).best_weights),
                                        pool=config.get("pool", "avg"), in_chans=record["model"].get("in_chans", 3))
    # what the run trained with (older records: the weights' own statistics)
    normalization = record.get("normalization") or {"mean": info.mean, "std": info.std}
    return LoadedModel(accelerator.prepare(model), info, config.get("head") == "regression", config["img_size"],
                       tuple(normalization["mean"]), tuple(normalization["std"]), member)


def load_given_model(options: EvalOptions, spec, in_chans: int, accelerator: Accelerator, member: str) -> LoadedModel:
    """--model with --weights: a fine-tuned network without a run record."""
    num_outputs = 1 if options.head == "regression" else spec.num_classes
    model, info = networks.create_model(options.model, num_outputs, weights=options.weights, pool=options.pool,
                                        in_chans=in_chans)
    if info.head != "from file":
        raise errors.DataError(f"{options.weights}: its head does not fit the {num_outputs} outputs of {spec.name} "
                               f"(--head {options.head}), so the model would score a random head")
    mean, std = registry.normalization(options.model, options.normalize)
    return LoadedModel(accelerator.prepare(model), info, options.head == "regression",
                       registry.input_size(options.model, spec.name, options.img_size), tuple(mean), tuple(std),
                       member)
