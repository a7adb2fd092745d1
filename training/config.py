"""From one train.py command to its runs: each run's full configuration, with its run id. No torch here, so grid.py
plans with exactly train.py's runs and ids.

    options = training.options.parse(argv)
    inputs = open_inputs(options.data, options.eval_splits)
    for config in configurations(options, inputs): ...          # RunConfig, one per combination of packed values
    plan_runs(argv)                                              # grid.py: [(run id, config dict, one run's argv)]
"""
from __future__ import annotations

import functools
import itertools
from dataclasses import asdict, dataclass
from typing import Any

from common import cli, errors
from data import default_root, get_spec
from data.inputs import Inputs, open_inputs
from nets import registry
from training import identity, recipe
from training.options import TrainOptions, build_parser


@dataclass(frozen=True)
class RunConfig:
    """One run: the command's options, one value of each packed flag, and what the dataset and model decide."""
    options: TrainOptions
    optimizer: str
    schedule: str
    lr: float
    wd: float
    root: str
    epochs: int
    img_size: int
    milestones: tuple[int, ...]
    split_sha256: str | None = None
    lp_ft_phase: str | None = None         # "probe" or "finetune" in an LP-FT command
    lp_ft_total_epochs: int | None = None
    init_from: str | None = None           # a fine-tuning run: the run id of the probe it starts from

    @functools.cached_property
    def run_id(self) -> str:
        """training/identity.py's id (known once the split is: run_config() with the command's inputs)."""
        return identity.run_id(self.to_dict(with_id=False))

    def __getattr__(self, name: str) -> Any:
        """The command's options read through the configuration (config.model, config.seed, ...)."""
        if name == "options":
            raise AttributeError(name)
        return getattr(self.options, name)

    def to_dict(self, with_id: bool = True) -> dict[str, Any]:
        """The configuration as the run record and grid.py's manifest hold it (every option, packed ones resolved)."""
        values = {key: list(value) if isinstance(value, tuple) else value
                  for key, value in asdict(self.options).items()}
        values.update(optimizer=self.optimizer, schedule=self.schedule, lr=self.lr, wd=self.wd, root=self.root,
                      epochs=self.epochs, img_size=self.img_size, milestones=list(self.milestones))
        if self.split_sha256 is not None:
            values["split_sha256"] = self.split_sha256
        values.update({key: getattr(self, key) for key in identity.PHASE if getattr(self, key) is not None})
        if with_id:
            values["run_id"] = self.run_id
        return values


def run_config(options: TrainOptions, inputs: Inputs | None = None, **packed: Any) -> RunConfig:
    """One run's configuration: `packed` picks a value of each packed flag (the first ones when omitted). Checks
    the combination of flags; with `inputs`, also what depends on the split."""
    spec = get_spec(options.dataset)
    epochs = options.epochs if options.epochs is not None else spec.epochs
    if options.extra_train and get_spec(options.extra_train).task != spec.task:
        raise errors.UsageError(f"--extra-train {options.extra_train} is a {get_spec(options.extra_train).task} "
                                f"dataset; {options.dataset} is {spec.task}")
    if options.head == "regression" and spec.task != "ordinal":
        raise errors.UsageError(f"--head regression is for ordinal datasets; {options.dataset} is {spec.task}")
    if options.until_epoch is not None and not 1 <= options.until_epoch <= epochs:
        raise errors.UsageError(f"--until-epoch {options.until_epoch} must lie in 1..{epochs} (--epochs)")
    if inputs is not None:
        unknown = [s for s in options.eval_splits if s not in inputs.split_indices]
        if unknown:
            raise errors.UsageError(f"--eval-splits {' '.join(unknown)}: not in {inputs.split_path} (it has "
                                    f"{', '.join(inputs.split_indices)})")
    chosen = {flag: packed.get(flag, options.values(flag)[0]) for flag in recipe.PACKED}
    # Only a step run uses milestones; a cosine run keeps the dataset's (which enter its run id) whatever is given.
    stepped = chosen["schedule"] == "step" and options.milestones is not None
    return RunConfig(options, **chosen, root=str(options.root or default_root(options.dataset)), epochs=epochs,
                     img_size=registry.input_size(options.model, options.dataset, options.img_size),
                     milestones=tuple(options.milestones if stepped else spec.step_milestones),
                     split_sha256=inputs.split_sha256 if inputs is not None else None)


def configurations(options: TrainOptions, inputs: Inputs) -> list[RunConfig]:
    """Every run the command asks for: the product of the packed flags' values (LP-FT's phases: training/lpft.py)."""
    return [run_config(options, inputs, **dict(zip(recipe.PACKED, values)))
            for values in itertools.product(*(options.values(flag) for flag in recipe.PACKED))]


def single_run_argv(argv: list[str], config: RunConfig) -> list[str]:
    """train.py arguments of one configuration: `argv` with each packed flag reduced to the run's value."""
    values = {flag: getattr(config, flag) for flag in recipe.PACKED}
    return cli.without_flags(argv, recipe.PACKED) + [word for flag, value in values.items() for word in (
        f"--{flag}", repr(value) if isinstance(value, float) else str(value))]  # repr: every digit


# The flags that decide which images and split a command trains on: planning opens each such data once.
_opened: dict[tuple, Inputs] = {}


def plan_runs(argv: list[str]) -> list[dict[str, Any]]:
    """The runs `train.py argv` would train: [{"run_id", "config", "argv"}], with the dataset and split opened and
    checked but nothing trained. grid.py plans with this, so its run ids are train.py's."""
    options = TrainOptions.from_args(build_parser().parse_args(argv))
    if options.lp_ft:
        raise errors.UsageError("plan --lp-ft runs with train.py itself: the fine-tuning runs depend on which probe "
                                "wins")
    run_config(options)  # command-line problems first, before the dataset is read
    key = (options.data, options.eval_splits)
    if key not in _opened:  # grid.py plans model after model on the same data: check the files once
        _opened[key] = open_inputs(options.data, options.eval_splits)
    return [{"run_id": config.run_id, "config": config.to_dict(), "argv": single_run_argv(argv, config)}
            for config in configurations(options, _opened[key])]
