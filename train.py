"""Fine-tune an ImageNet model on a dataset with the paper's recipe: one run of the study's grid, or several at once.

    accelerate launch train.py --dataset hpa --model densenet121                 # the paper's defaults
    accelerate launch train.py --dataset digits --model resnet18 --weights random --epochs 2   # offline demo
    python train.py --dataset aptos --model resnet50 --optimizer adamw --lr 1e-4 --wd 1e-5
    accelerate launch train.py --dataset cassava --model alexnet --lr 0.1 0.01 0.001 0.0001 --wd 1e-4 0  # 8 runs
    accelerate launch train.py --dataset eurosat --model clip_vit_b16 --lp-ft    # linear probe, then fine-tune

The same command on a CPU, one GPU, many GPUs or a TPU (Accelerate places everything). Each run writes
runs/<run_id>.json, where run_id is derived from the configuration, and runs/<run_id>/ (trainrun.py says what it
keeps). Re-running the same command skips a complete (or diverged) run and resumes a partial one, so a shell loop
over the grid can be restarted at any time.

Several values of --optimizer, --schedule, --lr and --wd train every combination in one process ("packed"), on the
same decoded and augmented batches: each is its own run, with its own run id, record and random stream, exactly as
if it ran alone; one that diverges stops alone. One input pipeline then feeds several models.

Defaults reproduce the paper: batch 128; SGD with Nesterov momentum 0.9, or AdamW with the decay passed as
wd/lr; cosine annealing over the epochs or x0.1 steps at 15, 20, 25 (Melanoma: 10 epochs, step at 5), stepped once
per epoch; 30 epochs; input 224 for DeiT and EuroSAT, 256 otherwise (models.input_size); random resized crop (area
0.65-1) plus the dataset's flips; evaluation resizes the short side and centre-crops; ImageNet mean/std.
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
from pathlib import Path

import cli
import errors
import lpft
import models
import records
import transforms
from data import REGISTRY, default_root, get_spec
from data.cli import Inputs, add_data_arguments, open_inputs
from fit import fit
from trainrun import RunFiles

# Settings that say where and how fast a run goes, not what it computes: left out of the run id.
NOT_IN_RUN_ID = {"out", "workers", "log_with", "compile", "root", "split_file", "skip_bad_images", "composite_dir",
                 "cache", "cache_dir", "save_weights", "until_epoch", "lp_ft", "probe_lr", "probe_wd", "extra_root",
                 "augment_device", "verify_images", "max_pack"}
PACKED = records.PACKED  # flags that take several values: every combination is a run


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__.split("\n\n")[0])
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default="digits", choices=sorted(REGISTRY), help="dataset from the registry in data/")
    add_data_arguments(g)
    g.add_argument("--skip-bad-images", action="store_true", help="skip (and count in the record) images that fail to decode, instead of stopping")
    g.add_argument("--verify-images", action="store_true", help="decode every image before the first step and list all that fail (on with --cache build, which decodes them anyway); verified files are remembered by size and modification time under --cache-dir")
    g.add_argument("--workers", type=int, default=min(8, cli.usable_cores()), help="data-loading worker processes per device")
    g.add_argument("--cache", default="auto", choices=["auto", "build", "off"], help="prepared image cache (cache.py): use when present, build if missing, or read the original files")
    g.add_argument("--cache-dir", default="cache", help="folder of prepared image caches")
    g = p.add_argument_group("model")
    g.add_argument("--model", default="resnet18", help="name from models.py (python models.py lists them) or any timm model")
    g.add_argument("--weights", default="imagenet", help="'imagenet' (pretrained, as in the paper), 'random', or a local .safetensors/.pth file")
    g.add_argument("--head", default="classification", choices=["classification", "regression"], help="'regression': one output with cut points fit on val (ordinal datasets only)")
    g.add_argument("--pool", default="avg", choices=["avg", "gem"], help="global pooling: average (paper) or generalized mean")
    g.add_argument("--img-size", type=int, default=None, help="input size (by default models.input_size decides: 224 for DeiT and EuroSAT, 256 otherwise, a fixed-size model's own)")
    g.add_argument("--normalize", default="imagenet", choices=["imagenet", "model"], help="input mean/std: ImageNet's for every model (the paper's code), or the weights' own")
    g = p.add_argument_group("optimisation (several values of a flag: every combination is a run, trained together)")
    g.add_argument("--optimizer", nargs="+", default=None, choices=["sgd", "adamw"], help="SGD (Nesterov, momentum 0.9) or AdamW; default sgd (AdamW with --lp-ft)")
    g.add_argument("--schedule", nargs="+", default=None, choices=["cosine", "step"], help="cosine annealing over the epochs, or x0.1 at the dataset's milestones (15/20/25; Melanoma 5); default cosine")
    g.add_argument("--lr", nargs="+", type=float, default=None, help="learning rate(s); default 0.01, or with --lp-ft the paper's fine-tuning grid 1e-4 1e-5 1e-6 (paper grid: SGD 1e-1..1e-4, AdamW 1e-2..1e-5)")
    g.add_argument("--wd", nargs="+", type=float, default=None, help="weight decay(s); default 1e-4, or with --lp-ft 1e-3 1e-4 1e-5 1e-6 0 (paper grid: 1e-3..1e-6 and 0)")
    g.add_argument("--wd-convention", default="paper", choices=["paper", "plain"], help="AdamW only: 'paper' passes wd/lr to AdamW (as the paper's code), 'plain' passes wd")
    g.add_argument("--epochs", type=int, default=None, help="epochs; the paper's 30 (Melanoma 10) when not given")
    g.add_argument("--batch-size", type=int, default=128, help="global batch size, split evenly over processes")
    g.add_argument("--augment", default="paper", choices=list(transforms.AUGMENTATIONS), help="training augmentation: " + "; ".join(f"{name}: {what}" for name, what in transforms.AUGMENTATION_HELP.items()))
    g.add_argument("--augment-device", default="auto", choices=["auto", "cpu", "gpu"], help="where the paper's crop and flips are resampled: in the loader workers, or batched on the device (gpu_augment.py; 'auto': on CUDA)")
    g.add_argument("--label-smoothing", type=float, default=0.0, help="label smoothing of the cross-entropy loss")
    g.add_argument("--seed", type=int, default=0, help="seed of initialisation, data order and augmentation")
    g = p.add_argument_group("CLIP linear probe, then fine-tuning (paper, section 5.2)")
    g.add_argument("--lp-ft", action="store_true", help="train the head alone on a frozen backbone for a third of the epochs (AdamW, cosine, grid --probe-lr x --probe-wd), then fine-tune the best probe end to end (grid --lr x --wd)")
    g.add_argument("--probe-lr", nargs="+", type=float, default=list(lpft.PROBE_LR), help="learning rates of the linear probe")
    g.add_argument("--probe-wd", nargs="+", type=float, default=list(lpft.WEIGHT_DECAYS), help="weight decays of the linear probe")
    g = p.add_argument_group("run")
    g.add_argument("--eval-splits", nargs="*", default=[], help="more splits to evaluate each epoch (e.g. trans_test for CCT-20)")
    g.add_argument("--precision", default="auto", choices=["auto", "no", "bf16", "fp16"], help="mixed precision ('auto': bf16 on a GPU that has it, else fp32)")
    g.add_argument("--channels-last", default="auto", choices=["auto", "yes", "no"], help="channels-last memory format ('auto': on CUDA)")
    g.add_argument("--compile", action="store_true", help="torch.compile the model")
    g.add_argument("--save-weights", default="best", choices=["best", "none"], help="keep the best epoch's weights when the run completes (predictions and the record are always kept)")
    g.add_argument("--max-pack", type=int, default=None, help="train at most this many configurations at once (each holds its model, gradients and optimizer state on the device; AdamW: about 16 bytes per parameter); the rest follow in turn (when not given: all at once)")
    g.add_argument("--until-epoch", type=int, default=None, help="stop after this epoch with the state kept (status 'paused'); the same command without it continues")
    g.add_argument("--out", default="runs", help="folder of run records and run folders")
    g.add_argument("--log-with", default="none", choices=["none", "tensorboard", "wandb"], help="also log to an Accelerate tracker (if installed)")
    return p


def check_numbers(args) -> None:
    """The numeric flags' ranges, before anything is opened or built."""
    wrong = [f"--{flag} {value:g}" for flag, values in (
        ("batch-size", [args.batch_size]), ("epochs", [args.epochs]), ("lr", args.lr), ("probe-lr", args.probe_lr),
        ("max-pack", [args.max_pack]))
        for value in values or [] if value is not None and value <= 0]
    wrong += [f"--{flag} {value:g}" for flag, values in (
        ("workers", [args.workers]), ("wd", args.wd), ("probe-wd", args.probe_wd))
        for value in values or [] if value is not None and value < 0]
    if wrong:
        raise errors.UsageError(f"{', '.join(wrong)}: batch size, epochs, learning rates and --max-pack must be "
                                f"positive, workers and weight decays 0 or more")
    if not 0 <= args.label_smoothing < 1:
        raise errors.UsageError(f"--label-smoothing {args.label_smoothing:g} must lie in [0, 1)")


def resolve_config(args, inputs: Inputs | None = None, **one) -> dict:
    """One run's full configuration: `one` picks a value of each packed flag (the first ones when omitted)."""
    spec = get_spec(args.dataset)
    check_numbers(args)
    if args.lp_ft:
        lpft.check_arguments(args)
    config = dict(vars(args))
    for flag in PACKED:
        config[flag] = one.get(flag, (default_values(args, flag))[0])
    config["root"] = str(args.root or default_root(args.dataset))
    config["epochs"] = args.epochs if args.epochs is not None else spec.epochs
    config["img_size"] = models.input_size(args.model, args.dataset, args.img_size)
    config["milestones"] = list(spec.step_milestones)
    if inputs is not None:
        config["split_sha256"] = inputs.split_sha256
    if args.extra_train and get_spec(args.extra_train).task != spec.task:
        raise errors.UsageError(f"--extra-train {args.extra_train} is a {get_spec(args.extra_train).task} dataset; "
                                f"{args.dataset} is {spec.task}")
    if args.head == "regression" and spec.task != "ordinal":
        raise errors.UsageError(f"--head regression is for ordinal datasets; {args.dataset} is {spec.task}")
    if args.until_epoch is not None and not 1 <= args.until_epoch <= config["epochs"]:
        raise errors.UsageError(f"--until-epoch {args.until_epoch} must lie in 1..{config['epochs']} (--epochs)")
    if inputs is not None:
        unknown = [s for s in args.eval_splits if s not in inputs.split_indices]
        if unknown:
            raise errors.UsageError(f"--eval-splits {' '.join(unknown)}: not in {inputs.split_path} (it has "
                                    f"{', '.join(inputs.split_indices)})")
    return config


def default_values(args, flag: str) -> list:
    given = getattr(args, flag)
    if given is not None:
        return list(dict.fromkeys(given))  # a value given twice is one run
    if flag == "lr":
        return list(lpft.FINETUNE_LR) if args.lp_ft else [0.01]
    if flag == "wd":
        return list(lpft.FINETUNE_WD) if args.lp_ft else [1e-4]
    return {"optimizer": ["adamw"] if args.lp_ft else ["sgd"], "schedule": ["cosine"]}[flag]


def make_run_id(config: dict) -> str:
    identity = {k: v for k, v in sorted(config.items()) if k not in NOT_IN_RUN_ID and k != "run_id"}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:8]
    weights = config["weights"] if config["weights"] in ("imagenet", "random") else "file"
    phase = f"-{config['lp_ft_phase']}" if config.get("lp_ft_phase") else ""
    return (f"{config['dataset']}-{config['model']}-{weights}-{config['optimizer']}-{config['schedule']}"
            f"-lr{config['lr']:g}-wd{config['wd']:g}-{config['augment']}{phase}-s{config['seed']}-{digest}")


def configurations(args, inputs: Inputs) -> list[dict]:
    """Every run the command asks for, each with its run id (the product of the packed flags' values)."""
    if args.lp_ft:
        return lpft.probe_configurations(args, inputs)
    runs = []
    for values in itertools.product(*(default_values(args, flag) for flag in PACKED)):
        config = resolve_config(args, inputs, **dict(zip(PACKED, values)))
        runs.append({**config, "run_id": make_run_id(config)})
    return runs


def single_run_argv(argv: list[str], config: dict) -> list[str]:
    """train.py arguments of one configuration: `argv` with each packed flag reduced to the run's value."""
    return cli.without_flags(argv, PACKED) + [word for flag in PACKED for word in (
        f"--{flag}", repr(config[flag]) if isinstance(config[flag], float) else str(config[flag]))]  # repr: every digit


def plan_runs(argv: list[str]) -> list[dict]:
    """The runs `train.py argv` would train: [{"run_id", "config", "argv"}], with the dataset and split opened and
    checked but nothing trained. grid.py plans with this, so its run ids are train.py's."""
    args = build_parser().parse_args(argv)
    if args.lp_ft:
        raise errors.UsageError("plan --lp-ft runs with train.py itself: the fine-tuning runs depend on which probe wins")
    resolve_config(args)  # command-line problems first, before the dataset is read
    key = tuple(str(getattr(args, name)) for name in DATA_FLAGS)
    if key not in _opened:  # grid.py plans model after model on the same data: check the files once
        _opened[key] = open_inputs(args, args.eval_splits)
    return [{"run_id": config["run_id"], "config": config, "argv": single_run_argv(argv, config)}
            for config in configurations(args, _opened[key])]


# The flags that decide which images and split a command trains on (open_inputs' arguments).
DATA_FLAGS = ("dataset", "root", "split_file", "split_method", "split_seed", "channels", "composite_dir",
              "extra_train", "extra_root", "train_on", "eval_splits")
_opened: dict[tuple, Inputs] = {}


def finished_status(out: str | Path, run_id: str) -> str | None:
    """'complete' or 'diverged' when that run is finished (and is skipped), else None."""
    record = RunFiles(out, run_id).record
    if record.exists():
        status = records.read_json(record).get("status")
        return status if status in records.FINISHED else None
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    resolve_config(args)  # command-line problems first, then everything that can be wrong with the inputs
    inputs = open_inputs(args, args.eval_splits)
    print(inputs.describe())
    if args.lp_ft:
        return lpft.run(args, inputs, train_configurations)
    return train_configurations(args, inputs, configurations(args, inputs))


def train_configurations(args, inputs: Inputs, configs: list[dict]) -> int:
    """Train the runs of `configs` that are not finished yet, packed together (--max-pack at a time); 0, 1 if a run
    failed, or 143 after a SIGTERM."""
    pending = []
    for config in configs:
        status = finished_status(args.out, config["run_id"])
        if status is not None:
            print(f"{config['run_id']}: already {status} ({Path(args.out) / config['run_id']}.json), skipping")
        else:
            pending.append(config)
    if not pending:
        return 0
    size, status = args.max_pack or len(pending), 0
    for start in range(0, len(pending), size):
        status = max(status, fit(args, inputs, pending[start:start + size]))
        if status == 143:  # stopped: the same command resumes these and trains the rest
            break
    return status


if __name__ == "__main__":
    errors.run_main("train.py", main)
