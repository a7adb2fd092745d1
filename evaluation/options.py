"""evaluate.py's settings, typed once from its command line, and the checks made before any data or model is
touched."""
from __future__ import annotations

import argparse
import hashlib
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from common import cli, errors
from evaluation import submissions
from nets import models_file, registry

# Options added after evaluation names were first derived: left out of the name when not given, so that a command
# of the earlier kind keeps its name.
ADDED_LATER = ("models_file", "imagenet_val", "imagenet_devkit", "write_models_file")
# What belongs to scoring fine-tuned runs (their data, inputs and heads), refused with --imagenet-val rather than
# silently ignored.
SCORING_ONLY = ("dataset", "split", "from_predictions", "submission", "test_dir", "tta", "head", "img_size", "pool",
                "channels", "normalize", "root", "split_file", "cache")


@dataclass(frozen=True)
class EvalOptions:
    runs: tuple[str, ...] = ()
    runs_dir: str = "runs"
    from_predictions: bool = False
    split: tuple[str, ...] | None = None
    tta: str = "none"
    ensemble: str = "mean"
    level: float = 0.95
    n_boot: int = 10_000
    seed: int = 0
    out: str = "evaluations"
    name: str | None = None
    dataset: str | None = None
    model: str | None = None
    models_file: str | None = None
    weights: str | None = None
    head: str = "classification"
    img_size: int | None = None
    pool: str = "avg"
    channels: str = "rgb"
    normalize: str = "imagenet"
    root: str | None = None
    split_file: str | None = None
    batch_size: int = 128
    workers: int = 4
    cache: str = "auto"
    cache_dir: str = "cache"
    submission: str | None = None
    test_dir: str | None = None
    imagenet_val: str | None = None
    imagenet_devkit: str | None = None
    write_models_file: str | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> EvalOptions:
        """The parsed flags, typed; a --models-file's models added to the registry."""
        models_file.use(args.models_file)
        return cli.typed(cls, args)

    def evaluation_name(self) -> str:
        """--name, or the first input's name plus a digest of every setting, so different evaluations never
        collide."""
        if self.name:
            return self.name
        inputs = list(self.runs) or [f"{self.model}-{Path(self.weights or 'none').stem}"]
        settings = {key: list(value) if isinstance(value, tuple) else value
                    for key, value in sorted(asdict(self).items())
                    if key not in ("out", "name", "workers", "batch_size")
                    and not (key in ADDED_LATER and value is None)}
        digest = hashlib.sha256(repr(settings).encode()).hexdigest()[:8]
        stem = Path(inputs[0]).name.removesuffix(".json") if inputs else "eval"
        source = "predictions" if self.from_predictions else f"tta{self.tta}"
        return f"{stem}{'+' + str(len(inputs) - 1) if len(inputs) > 1 else ''}-{source}-{digest}"


    def check_imagenet_val(self) -> None:
        """--imagenet-val measures one model's ImageNet top-1: refuse what does not belong to it, before any image
        is read or model built."""
        if not self.model:
            raise errors.UsageError("--imagenet-val needs --model: the model whose ImageNet top-1 to measure (its "
                                    "pretrained weights unless --weights says otherwise)")
        defaults = {field.name: field.default for field in fields(self)}
        given = (["runs"] if self.runs else []) + ["--" + name.replace("_", "-") for name in SCORING_ONLY
                                                   if getattr(self, name) != defaults[name]]
        if given:
            raise errors.UsageError(f"--imagenet-val measures --model on ImageNet's validation images, at the size "
                                    f"and with the transform of its weights; {', '.join(given)} belong to scoring "
                                    f"fine-tuned runs: leave them out")
        entry = registry.get_entry(self.model)  # an unknown name fails here, before any image is read
        if self.write_models_file and entry.name in registry.REGISTRY:
            raise errors.UsageError(f"--write-models-file: {entry.name} is a built-in model whose top-1 is models.py's "
                                    f"published figure; measure it without --write-models-file to compare")
        if self.write_models_file and self.weights == "random":
            raise errors.UsageError("--write-models-file with --weights random: the top-1 of random weights is no "
                                    "model's top-1")
        cli.check_interval_settings(self.level, self.n_boot)

    def check(self, spec) -> None:
        """Everything about the command line that can be wrong, before any data or model is touched."""
        if self.write_models_file or self.imagenet_devkit:
            raise errors.UsageError("--write-models-file and --imagenet-devkit belong to --imagenet-val (measuring "
                                    "a model's ImageNet top-1)")
        if self.model and not self.weights:
            raise errors.UsageError("--model needs --weights: the fine-tuned weights file to evaluate")
        if self.from_predictions and (self.tta != "none" or self.submission or self.model):
            raise errors.UsageError("--from-predictions reuses the runs' saved predictions; --tta, --submission and "
                                    "--model need a model")
        if self.tta == "flips" and not (spec.hflip or spec.vflip):
            raise errors.UsageError(f"--tta flips: {spec.name} is trained without flips, so there is no flipped view "
                                    f"to average (the scores would equal --tta none)")
        if self.tta == "dihedral" and not (spec.hflip and spec.vflip):
            raise errors.UsageError(f"--tta dihedral: {spec.name} is not trained with both flips, so rotated views "
                                    f"are new to it")
        if self.submission and not self.test_dir:
            raise errors.UsageError("--submission needs --test-dir (the competition's unlabeled test images)")
        if self.submission:
            submissions.check_competition(spec.name)
        cli.check_interval_settings(self.level, self.n_boot)
