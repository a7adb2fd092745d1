"""Run identity: the id of a run, derived from exactly what changes its computation.

A run id names a run's record and folder, and a rerun of the same command finds its run by it (skip if finished,
resume if not). So the id must change when, and only when, the numbers a run produces would change:

  * IDENTITY lists the settings that do, by name (an allow-list). Where a run goes and how fast (--out, --workers,
    --cache, --compile, --root, ...) is left out, and so is every setting not listed.
  * A setting added later joins ADDED_LATER with the value that reproduces the behaviour from before it existed:
    at that value it is left out of the id, so an upgrade renames no run and a study resumed after it retrains
    nothing (tests/test_identity.py pins ids computed by earlier versions).

The id reads as the run's configuration, with a digest of the whole identity at the end:
    <dataset>-<model>-<imagenet|random|file>-<optimizer>-<schedule>-lr<lr>-wd<wd>-<augment>[-<phase>]-s<seed>-<digest>

The data itself is not in the id beyond the split file's SHA-256; the record keeps a fingerprint of the images
(count and bytes), and a record made from other images is refused rather than reused (training/command.py).
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

IDENTITY = ("dataset", "split_method", "split_seed", "channels", "extra_train", "train_on", "split_sha256",
            "model", "weights", "head", "pool", "img_size", "normalize",
            "optimizer", "schedule", "lr", "wd", "wd_convention", "epochs", "milestones", "batch_size",
            "augment", "label_smoothing", "seed", "eval_splits", "precision", "channels_last")
# LP-FT's phases: present only in LP-FT runs' configurations
PHASE = ("lp_ft_phase", "lp_ft_total_epochs", "init_from")
# Settings added after run ids were first published, each with the value that reproduces the earlier behaviour.
ADDED_LATER: dict[str, Any] = {
    "regression_loss": "smooth-l1",  # train.py --regression-loss (the regression head's loss was smooth L1)
    "model_definition": None,  # a --models-file model's definition digest (built-in and library models have none)
}


def identity(config: dict[str, Any]) -> dict[str, Any]:
    """The part of a run's configuration that decides its numbers (see the module docstring)."""
    missing = [key for key in IDENTITY if key not in config]
    if missing:
        raise KeyError(f"a run configuration lacks {', '.join(missing)}")
    kept = {key: config[key] for key in IDENTITY}
    kept.update({key: config[key] for key in PHASE if config.get(key) is not None})
    kept.update({key: config[key] for key, before in ADDED_LATER.items()
                 if key in config and config[key] != before})
    return kept


def run_id(config: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(identity(config), sort_keys=True).encode()).hexdigest()[:8]
    weights = config["weights"] if config["weights"] in ("imagenet", "random") else "file"
    phase = f"-{config['lp_ft_phase']}" if config.get("lp_ft_phase") else ""
    return (f"{config['dataset']}-{config['model']}-{weights}-{config['optimizer']}-{config['schedule']}"
            f"-lr{config['lr']:g}-wd{config['wd']:g}-{config['augment']}{phase}-s{config['seed']}-{digest}")
