"""evaluate.py's settings, typed once from its command line, and the checks made before any data or model is
touched."""
from __future__ import annotations

import argparse
import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

from common import cli, errors
from evaluation import submissions


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

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> EvalOptions:
        return cli.typed(cls, args)

    def evaluation_name(self) -> str:
        """--name, or the first input's name plus a digest of every setting, so different evaluations never
        collide."""
        if self.name:
            return self.name
        inputs = list(self.runs) or [f"{self.model}-{Path(self.weights or 'none').stem}"]
        settings = {key: list(value) if isinstance(value, tuple) else value
                    for key, value in sorted(asdict(self).items())
                    if key not in ("out", "name", "workers", "batch_size")}
        digest = hashlib.sha256(repr(settings).encode()).hexdigest()[:8]
        stem = Path(inputs[0]).name.removesuffix(".json") if inputs else "eval"
        source = "predictions" if self.from_predictions else f"tta{self.tta}"
        return f"{stem}{'+' + str(len(inputs) - 1) if len(inputs) > 1 else ''}-{source}-{digest}"


    def check(self, spec) -> None:
        """Everything about the command line that can be wrong, before any data or model is touched."""
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
