"""train.py's command line: the parser (shared with grid.py, which checks the options it passes on) and the typed
options it becomes. No torch here: a command is parsed and checked before torch is imported, and grid.py plans
without it.

    options = TrainOptions.from_args(build_parser().parse_args(argv))   # once, in the script
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass

import augment
from common import cli, errors
from data import REGISTRY
from data.inputs import DataOptions, add_data_arguments
from nets import models_file
from training import recipe


def build_parser(description: str = "Fine-tune an ImageNet model on a dataset with the paper's recipe: one run of "
                                      "the study's grid, or several at once.") -> argparse.ArgumentParser:
    """train.py's parser (train.py gives its docstring as the description; grid.py checks options with it)."""
    p = cli.parser(description)
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default="digits", choices=sorted(REGISTRY), help="dataset from the registry in data/")
    add_data_arguments(g)
    g.add_argument("--skip-bad-images", action="store_true",
                   help="skip (and count in the record) images that fail to decode, instead of stopping")
    g.add_argument("--verify-images", action="store_true",
                   help="decode every image before the first step and list all that fail (on with --cache build, "
                        "which decodes them anyway); verified files are remembered by size and modification time "
                        "under --cache-dir")
    g.add_argument("--workers", type=int, default=min(8, cli.usable_cores()),
                   help="data-loading worker processes per device")
    g.add_argument("--cache", default="auto", choices=["auto", "build", "off"],
                   help="prepared image cache (cache.py): use when present, build if missing, or read the original "
                        "files")
    g.add_argument("--cache-dir", default="cache", help="folder of prepared image caches")
    g = p.add_argument_group("model")
    g.add_argument("--model", default="resnet18",
                   help="name from models.py (python models.py lists them), a --models-file's, or any timm or "
                        "torchvision classification model")
    g.add_argument("--models-file", default=None,
                   help="JSON file of your own models (README, 'Benchmark your model'): each with its library, "
                        "constructor, weights or checkpoint, ImageNet top-1 and its source")
    g.add_argument("--weights", default="imagenet",
                   help="'imagenet' (pretrained, as in the paper), 'random', or a local .safetensors/.pth file")
    g.add_argument("--head", default="classification", choices=["classification", "regression"],
                   help="'regression': one output with cut points fit on val (ordinal datasets only)")
    g.add_argument("--regression-loss", default="smooth-l1", choices=["smooth-l1", "l1"],
                   help="loss of --head regression: smooth L1 (the top APTOS 2019 entry's) or L1 (the loss the "
                        "paper's Appendix F names)")
    g.add_argument("--pool", default="avg", choices=["avg", "gem"],
                   help="global pooling: average (paper) or generalized mean")
    g.add_argument("--img-size", type=int, default=None,
                   help="input size (by default models.input_size decides: 224 for DeiT and EuroSAT, 256 otherwise, a "
                        "fixed-size model's own)")
    g.add_argument("--normalize", default="imagenet", choices=["imagenet", "model"],
                   help="input mean/std: ImageNet's for every model (the paper's code), or the weights' own")
    g = p.add_argument_group("optimisation (several values of a flag: every combination is a run, trained together)")
    g.add_argument("--optimizer", nargs="+", default=None, choices=["sgd", "adamw"],
                   help="SGD (Nesterov, momentum 0.9) or AdamW; default sgd (AdamW with --lp-ft)")
    g.add_argument("--schedule", nargs="+", default=None, choices=["cosine", "step"],
                   help="cosine annealing over the epochs, or x0.1 at the dataset's milestones (15/20/25; Melanoma "
                        "5) or --milestones; default cosine")
    g.add_argument("--lr", nargs="+", type=float, default=None,
                   help="learning rate(s); default 0.01, or with --lp-ft the paper's fine-tuning grid 1e-4 1e-5 1e-6 "
                        "(paper grid: SGD 1e-1..1e-4, AdamW 1e-2..1e-5)")
    g.add_argument("--wd", nargs="+", type=float, default=None,
                   help="weight decay(s); default 1e-4, or with --lp-ft 1e-3 1e-4 1e-5 1e-6 0 (paper grid: 1e-3..1e-6 "
                        "and 0)")
    g.add_argument("--wd-convention", default="paper", choices=["paper", "plain"],
                   help="AdamW only: 'paper' passes wd/lr to AdamW (as the paper's code), 'plain' passes wd")
    g.add_argument("--epochs", type=int, default=None, help="epochs; the paper's 30 (Melanoma 10) when not given")
    g.add_argument("--milestones", nargs="+", type=int, default=None, metavar="EPOCH",
                   help="epochs after which the step schedule multiplies the learning rate by 0.1; the dataset's "
                        "when not given (15 20 25; Melanoma 5). The authors' code steps its 50-epoch runs at 20 30 "
                        "40. Cosine runs do not use them and record the dataset's, so their run ids stay the same")
    g.add_argument("--batch-size", type=int, default=recipe.BATCH_SIZE,
                   help="global batch size, split evenly over processes")
    g.add_argument("--augment", default="paper", choices=list(augment.AUGMENTATIONS),
                   help="training augmentation: " + "; ".join(f"{name}: {what}"
                                                              for name, what in augment.AUGMENTATION_HELP.items()))
    g.add_argument("--augment-device", default="auto", choices=["auto", "cpu", "gpu"],
                   help="where the paper's crop and flips are resampled: in the loader workers, or batched on the "
                        "device (augment/gpu.py; 'auto': on CUDA)")
    g.add_argument("--label-smoothing", type=float, default=0.0, help="label smoothing of the cross-entropy loss")
    g.add_argument("--seed", type=int, default=0, help="seed of initialisation, data order and augmentation")
    g = p.add_argument_group("CLIP linear probe, then fine-tuning (paper, section 5.2)")
    g.add_argument("--lp-ft", action="store_true",
                   help="train the head alone on a frozen backbone for a third of the epochs (AdamW, cosine, grid "
                        "--probe-lr x --probe-wd), then fine-tune the best probe end to end (grid --lr x --wd)")
    g.add_argument("--probe-lr", nargs="+", type=float, default=list(recipe.PROBE_LR),
                   help="learning rates of the linear probe")
    g.add_argument("--probe-wd", nargs="+", type=float, default=list(recipe.WEIGHT_DECAYS),
                   help="weight decays of the linear probe")
    g = p.add_argument_group("run")
    g.add_argument("--eval-splits", nargs="*", default=[],
                   help="more splits to evaluate each epoch (e.g. trans_test for CCT-20)")
    g.add_argument("--precision", default="auto", choices=["auto", "no", "bf16", "fp16"],
                   help="mixed precision ('auto': bf16 on a GPU that has it, else fp32)")
    g.add_argument("--channels-last", default="auto", choices=["auto", "yes", "no"],
                   help="channels-last memory format ('auto': on CUDA)")
    g.add_argument("--compile", action="store_true", help="torch.compile the model")
    g.add_argument("--save-weights", default="best", choices=["best", "none"],
                   help="keep the best epoch's weights when the run completes (predictions and the record are always "
                        "kept)")
    g.add_argument("--max-pack", type=int, default=None,
                   help="train at most this many configurations at once (each holds its model, gradients and "
                        "optimizer state on the device; AdamW: about 16 bytes per parameter); the rest follow in turn "
                        "(when not given: all at once)")
    g.add_argument("--until-epoch", type=int, default=None,
                   help="stop after this epoch with the state kept (status 'paused'); the same command without it "
                        "continues")
    g.add_argument("--out", default="runs", help="folder of run records and run folders")
    g.add_argument("--log-with", default="none", choices=["none", "tensorboard", "wandb"],
                   help="also log to an Accelerate tracker (if installed)")
    return p


@dataclass(frozen=True)
class TrainOptions(DataOptions):
    """One train.py command, as parsed: the data flags (DataOptions) and the rest. Packed flags (recipe.PACKED) hold
    every value given, or None for the recipe's default; resolve them with `values(flag)`."""
    skip_bad_images: bool = False
    verify_images: bool = False
    workers: int = 0
    cache: str = "auto"
    cache_dir: str = "cache"
    model: str = "resnet18"
    models_file: str | None = None
    model_definition: str | None = None  # not a flag: models_file.definition of --model (part of the run id)
    weights: str = "imagenet"
    head: str = "classification"
    regression_loss: str = "smooth-l1"
    pool: str = "avg"
    img_size: int | None = None
    normalize: str = "imagenet"
    optimizer: tuple[str, ...] | None = None
    schedule: tuple[str, ...] | None = None
    lr: tuple[float, ...] | None = None
    wd: tuple[float, ...] | None = None
    wd_convention: str = "paper"
    epochs: int | None = None
    milestones: tuple[int, ...] | None = None
    batch_size: int = recipe.BATCH_SIZE
    augment: str = "paper"
    augment_device: str = "auto"
    label_smoothing: float = 0.0
    seed: int = 0
    lp_ft: bool = False
    probe_lr: tuple[float, ...] = recipe.PROBE_LR
    probe_wd: tuple[float, ...] = recipe.WEIGHT_DECAYS
    eval_splits: tuple[str, ...] = ()
    precision: str = "auto"
    channels_last: str = "auto"
    compile: bool = False
    save_weights: str = "best"
    max_pack: int | None = None
    until_epoch: int | None = None
    out: str = "runs"
    log_with: str = "none"

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TrainOptions:
        """The parsed flags, typed, with the numbers' ranges and LP-FT's conflicts checked; a --models-file's models
        added to the registry, and the digest of --model's definition there kept (training/identity.py)."""
        models_file.use(args.models_file)
        options = cli.typed(cls, argparse.Namespace(**vars(args), model_definition=models_file.definition(args.model)))
        options.check()
        return options

    @property
    def data(self) -> DataOptions:
        return cli.typed(DataOptions, self)

    def values(self, flag: str) -> list:
        """The values of a packed flag: those given (a value given twice is one run), else the recipe's default."""
        given = getattr(self, flag)
        return list(dict.fromkeys(given)) if given is not None else list(recipe.default_values(flag, self.lp_ft))

    def check(self) -> None:
        """The numeric flags' ranges and the flags that conflict, before anything is opened or built."""
        wrong = [f"--{flag} {value:g}" for flag, values in (
            ("batch-size", [self.batch_size]), ("epochs", [self.epochs]), ("lr", self.lr), ("probe-lr", self.probe_lr),
            ("max-pack", [self.max_pack]))
            for value in values or [] if value is not None and value <= 0]
        wrong += [f"--{flag} {value:g}" for flag, values in (
            ("workers", [self.workers]), ("wd", self.wd), ("probe-wd", self.probe_wd))
            for value in values or [] if value is not None and value < 0]
        if wrong:
            raise errors.UsageError(f"{', '.join(wrong)}: batch size, epochs, learning rates and --max-pack must be "
                                    f"positive, workers and weight decays 0 or more")
        if not 0 <= self.label_smoothing < 1:
            raise errors.UsageError(f"--label-smoothing {self.label_smoothing:g} must lie in [0, 1)")
        if self.milestones is not None and (self.milestones[0] < 1 or list(self.milestones) != sorted(
                set(self.milestones))):
            raise errors.UsageError(f"--milestones {' '.join(map(str, self.milestones))}: give epochs of 1 or more in "
                                    f"increasing order, each once (e.g. --milestones 20 30 40)")
        if self.regression_loss != "smooth-l1" and self.head != "regression":
            raise errors.UsageError(f"--regression-loss {self.regression_loss} is the loss of a regression head: add "
                                    f"--head regression (a classification head trains with cross-entropy)")
        if self.lp_ft:
            self.check_lp_ft()

    def check_lp_ft(self) -> None:
        if self.optimizer not in (None, ("adamw",)) or self.schedule not in (None, ("cosine",)):
            raise errors.UsageError("--lp-ft trains with AdamW and a cosine schedule, as the paper: leave out "
                                    "--optimizer and --schedule")
        if self.train_on == "all":
            raise errors.UsageError("--lp-ft picks its probe on the selection split, which --train-on all trains "
                                    "on: train the final model with --train-on all without --lp-ft, at the chosen "
                                    "settings")
        if self.until_epoch is not None:
            raise errors.UsageError("--lp-ft runs both phases; --until-epoch applies to single-phase runs only")


def parse(argv: list[str] | None = None) -> TrainOptions:
    return TrainOptions.from_args(build_parser().parse_args(argv))
