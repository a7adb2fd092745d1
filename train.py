"""Fine-tune one ImageNet model on one dataset with the paper's recipe: one run of the study's grid.

    accelerate launch train.py --dataset hpa --model densenet121                 # the paper's defaults
    accelerate launch train.py --dataset digits --model resnet18 --weights random --epochs 2   # offline demo
    python train.py --dataset aptos --model resnet50 --optimizer adamw --lr 1e-4 --wd 1e-5

The same command on a CPU, one GPU, many GPUs or a TPU (Accelerate places everything). Each run writes
runs/<run_id>.json, where run_id is derived from the configuration, and runs/<run_id>/ with the best epoch's
per-sample predictions, its weights and the latest training state. Re-running the same command skips a complete
(or diverged) run and resumes a partial one, so a shell loop over the grid can be restarted at any time.

Defaults reproduce the paper: batch 128; SGD with Nesterov momentum 0.9, or AdamW with the decay passed as
wd/lr; cosine annealing over the epochs or x0.1 steps at 15, 20, 25 (Melanoma: 10 epochs, step at 5), stepped once
per epoch; 30 epochs; input 224 for DeiT and EuroSAT, 256 otherwise; random resized crop (area 0.65-1) plus the
dataset's flips; evaluation resizes the short side and centre-crops; ImageNet mean/std.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from safetensors.torch import save as safetensors_bytes

import cache
import engine
import metrics
import models
import networks
import records
import splits
import transforms
from data import REGISTRY, get_spec, open_dataset
from data.cli import add_data_arguments, dataset_options

# Settings that say where and how fast a run goes, not what it computes: left out of the run id.
NOT_IN_RUN_ID = {"out", "workers", "log_with", "compile", "root", "split_file", "skip_bad_images", "composite_dir",
                 "cache", "cache_dir"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default="digits", choices=sorted(REGISTRY), help="dataset from the registry in data/")
    add_data_arguments(g)
    g.add_argument("--skip-bad-images", action="store_true", help="skip (and count in the record) images that fail to decode, instead of stopping")
    g.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="data-loading worker processes per device")
    g.add_argument("--cache", default="auto", choices=["auto", "build", "off"], help="prepared image cache (cache.py): use when present, build if missing, or read the original files")
    g.add_argument("--cache-dir", default="cache", help="folder of prepared image caches")
    g = p.add_argument_group("model")
    g.add_argument("--model", default="resnet18", help="name from models.py (python models.py lists them) or any timm model")
    g.add_argument("--weights", default="imagenet", help="'imagenet' (pretrained, as in the paper), 'random', or a local .safetensors/.pth file")
    g.add_argument("--head", default="classification", choices=["classification", "regression"], help="'regression': one output with cut points fit on val (ordinal datasets only)")
    g.add_argument("--pool", default="avg", choices=["avg", "gem"], help="global pooling: average (paper) or generalized mean")
    g.add_argument("--img-size", type=int, default=None, help="training/eval input size (default: 224 for DeiT and EuroSAT, 256 otherwise)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--optimizer", default="sgd", choices=["sgd", "adamw"], help="SGD (Nesterov, momentum 0.9) or AdamW")
    g.add_argument("--schedule", default="cosine", choices=["cosine", "step"], help="cosine annealing over the epochs, or x0.1 at the dataset's milestones (15/20/25; Melanoma 5)")
    g.add_argument("--lr", type=float, default=0.01, help="learning rate (paper grid: SGD 1e-1..1e-4, AdamW 1e-2..1e-5)")
    g.add_argument("--wd", type=float, default=1e-4, help="weight decay (paper grid: 1e-3..1e-6 and 0)")
    g.add_argument("--wd-convention", default="paper", choices=["paper", "plain"], help="AdamW only: 'paper' passes wd/lr to AdamW (as the paper's code), 'plain' passes wd")
    g.add_argument("--epochs", type=int, default=None, help="epochs (default: the paper's, 30; Melanoma 10)")
    g.add_argument("--batch-size", type=int, default=128, help="global batch size, split evenly over processes")
    g.add_argument("--augment", default="paper", choices=list(transforms.AUGMENTATIONS), help="training augmentation (transforms.py)")
    g.add_argument("--label-smoothing", type=float, default=0.0, help="label smoothing of the cross-entropy loss")
    g.add_argument("--seed", type=int, default=0, help="seed of initialisation, data order and augmentation")
    g = p.add_argument_group("run")
    g.add_argument("--eval-splits", nargs="*", default=[], help="more splits to evaluate each epoch (e.g. trans_test for CCT-20)")
    g.add_argument("--precision", default="auto", choices=["auto", "no", "bf16", "fp16"], help="mixed precision ('auto': bf16 on a GPU that has it, else fp32)")
    g.add_argument("--channels-last", default="auto", choices=["auto", "yes", "no"], help="channels-last memory format ('auto': on CUDA)")
    g.add_argument("--compile", action="store_true", help="torch.compile the model")
    g.add_argument("--out", default="runs", help="folder of run records and run folders")
    g.add_argument("--log-with", default="none", choices=["none", "tensorboard", "wandb"], help="also log to an Accelerate tracker (if installed)")
    return p


def resolve_config(args: argparse.Namespace) -> dict:
    """The run's full configuration, with dataset- and model-dependent defaults filled in."""
    spec = get_spec(args.dataset)
    config = dict(vars(args))
    config["root"] = str(args.root or Path("datasets") / args.dataset)
    config["epochs"] = args.epochs if args.epochs is not None else spec.epochs
    config["img_size"] = models.input_size(args.model, args.dataset, args.img_size)
    config["milestones"] = list(spec.step_milestones)
    if args.head == "regression" and spec.task != "ordinal":
        raise SystemExit(f"--head regression is for ordinal datasets; {args.dataset} is {spec.task}")
    return config


def make_run_id(config: dict) -> str:
    identity = {k: v for k, v in sorted(config.items()) if k not in NOT_IN_RUN_ID}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:8]
    weights = config["weights"] if config["weights"] in ("imagenet", "random") else "file"
    return (f"{config['dataset']}-{config['model']}-{weights}-{config['optimizer']}-{config['schedule']}"
            f"-lr{config['lr']:g}-wd{config['wd']:g}-{config['augment']}-s{config['seed']}-{digest}")


def build_optimizer(model: torch.nn.Module, config: dict) -> torch.optim.Optimizer:
    if config["optimizer"] == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config["lr"], momentum=0.9, nesterov=True,
                               weight_decay=config["wd"])
    # The paper's code passed wd/lr to AdamW, whose decay is multiplied by lr again: the effective decay is wd.
    decay = config["wd"] / config["lr"] if config["wd_convention"] == "paper" else config["wd"]
    return torch.optim.AdamW(model.parameters(), lr=config["lr"], weight_decay=decay)


def build_scheduler(optimizer: torch.optim.Optimizer, config: dict):
    if config["schedule"] == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config["epochs"])
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=config["milestones"], gamma=0.1)


class RunFiles:
    """Where one run keeps its files.

    The training state and the best epoch's files (weights, predictions) are written together into a new state
    folder that is swapped in with renames, so they always belong to the same epoch; the best files are then
    published into the run folder by hard links (written again from the state on resume).
    """

    def __init__(self, out: str | Path, run_id: str):
        self.record = Path(out) / f"{run_id}.json"
        self.folder = Path(out) / run_id
        self.state = self.folder / "state"

    def existing_state(self) -> Path | None:
        # A kill between the two renames of save_state() leaves the previous state as state.old.
        for candidate in (self.state, self.state.with_suffix(".old")):
            if (candidate / "progress.json").exists():
                return candidate
        return None

    def publish_best(self) -> None:
        """Link the state's best files into the run folder, each replacing its old version atomically."""
        for source in sorted(self.state.glob(f"{BEST_PREFIX}*")):
            target = self.folder / source.name.removeprefix(BEST_PREFIX)
            temporary = target.with_name(f".{target.name}.link")
            temporary.unlink(missing_ok=True)
            link_or_copy(source, temporary)
            os.replace(temporary, target)


BEST_PREFIX = "best-epoch-"  # state files that are the best epoch's weights and predictions


def link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)  # no second copy of the weights on disk
    except OSError:  # file systems without hard links
        shutil.copyfile(source, target)


def save_state(accelerator: Accelerator, files: RunFiles, progress: dict, best_files: dict | None) -> None:
    """Accelerate's state (model, optimizer, scheduler, scaler, RNG), our progress and the best epoch's files,
    swapped in atomically. `best_files` maps file names to writers (path -> None) for a new best epoch; with None
    the previous best files are carried over."""
    new, old = files.state.with_suffix(".new"), files.state.with_suffix(".old")
    if accelerator.is_main_process:
        shutil.rmtree(new, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(new), safe_serialization=True)
    if accelerator.is_main_process:
        if best_files is not None:
            for name, write in best_files.items():
                write(new / f"{BEST_PREFIX}{name}")
        else:
            for previous in files.state.glob(f"{BEST_PREFIX}*"):
                link_or_copy(previous, new / previous.name)
        records.atomic_write_json(new / "progress.json", progress)
        shutil.rmtree(old, ignore_errors=True)
        if files.state.exists():
            files.state.rename(old)
        new.rename(files.state)
        shutil.rmtree(old, ignore_errors=True)
        files.publish_best()
    accelerator.wait_for_everyone()


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def evaluate_splits(model, loaders: dict, accelerator, outputs, samples, spec, mean, std, channels_last) -> tuple:
    """Predict every evaluated split; fit thresholds/cut points on the selection split and apply them to all."""
    results = {}
    for split, loader in loaders.items():
        predicted = engine.predict(model, loader, accelerator, outputs, mean, std, channels_last=channels_last,
                                   desc=f"eval {split}")
        order = np.argsort(predicted["index"], kind="stable")
        index, scores = predicted["index"][order], predicted["scores"][order]
        if not np.isfinite(scores).all():  # the last step's update can leave non-finite weights behind
            raise engine.NonFiniteLoss(f"non-finite model outputs on split '{split}'")
        results[split] = {"index": index, "scores": scores, "labels": samples.labels[index],
                          "bad_indices": predicted["bad_indices"]}
    selection = results[spec.selection_split]
    thresholds = metrics.fit_decision(spec.task, selection["labels"], selection["scores"], spec.num_classes)
    scores = {}
    for split, result in results.items():
        for name, value in metrics.score(spec.task, result["labels"], result["scores"], thresholds,
                                         spec.num_classes).items():
            scores[f"{split}_{name}"] = value
    return results, thresholds, scores


def best_epoch_files(model, accelerator, results: dict, thresholds, samples, task: str) -> dict:
    """Writers of the best epoch's files: weights (safetensors) and each split's predictions."""
    state_dict = accelerator.unwrap_model(model, keep_torch_compile=False).state_dict()
    weights = safetensors_bytes({k: v.detach().cpu().contiguous() for k, v in state_dict.items()})
    writers = {"best.safetensors": lambda path: records.atomic_write_bytes(path, weights)}
    for split, result in results.items():
        writers[f"predictions-{split}.npz"] = lambda path, r=result: records.write_predictions(
            path, [samples.ids[i] for i in r["index"]], r["labels"], r["scores"], thresholds, task)
    return writers


def is_better(value: float, best: float | None) -> bool:
    """NaN (a metric undefined on this epoch's predictions) never wins, and never blocks a later epoch."""
    return bool(np.isfinite(value)) and (best is None or not np.isfinite(best) or value > best)


def note_bad_images(progress: dict, indices: list[int]) -> None:
    """Remember which samples were skipped as unreadable (each once, however many epochs met it)."""
    progress["bad_images"] = sorted(set(progress["bad_images"]) | {int(i) for i in indices})


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = resolve_config(args)
    spec = get_spec(args.dataset)

    # Everything that can be wrong with the inputs fails here, before any compute.
    samples = open_dataset(args.dataset, config["root"], **dataset_options(args.dataset, args))
    split_indices, split_path, split_sha = splits.resolve_split(samples, args.split_file, args.split_method,
                                                                args.split_seed)
    config["split_sha256"] = split_sha
    eval_splits = [spec.selection_split] + [s for s in [spec.report_split, *args.eval_splits]
                                            if s and len(split_indices.get(s, ())) > 0]
    for split in ["train", *eval_splits]:
        if len(split_indices.get(split, ())) == 0:
            raise SystemExit(f"{split_path}: split '{split}' is empty or missing")

    run_id = make_run_id(config)
    files = RunFiles(args.out, run_id)
    if files.record.exists():
        previous = records.read_json(files.record)
        if previous.get("status") in ("complete", "diverged"):
            print(f"{run_id}: already {previous['status']} ({files.record}), skipping")
            return 0

    precision = args.precision
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    accelerator = Accelerator(mixed_precision=precision, step_scheduler_with_optimizer=False,
                              log_with=None if args.log_with == "none" else args.log_with,
                              project_dir=str(files.folder))  # tracker logs go into the run's folder
    if args.skip_bad_images and accelerator.num_processes > 1:
        raise SystemExit("--skip-bad-images works in single-process runs only (skipped images would leave the "
                         "processes with batches of different sizes); remove or repair the files listed by a "
                         "single-process run")
    if args.batch_size % accelerator.num_processes:
        raise SystemExit(f"--batch-size {args.batch_size} must divide evenly over {accelerator.num_processes} processes")
    channels_last = args.channels_last == "yes" or (args.channels_last == "auto" and accelerator.device.type == "cuda")

    set_seed(args.seed)
    num_outputs = 1 if args.head == "regression" else spec.num_classes
    model, model_info = networks.create_model(args.model, num_outputs, weights=args.weights, pool=args.pool,
                                            in_chans=samples.num_channels)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if args.compile:
        model = torch.compile(model)
    mean, std = model_info["mean"], model_info["std"]
    outputs = engine.Outputs(spec.task, regression=args.head == "regression", label_smoothing=args.label_smoothing)

    per_device_batch = args.batch_size // accelerator.num_processes
    pin = accelerator.device.type == "cuda"
    readers = {split: cache.reader_for(samples, split_indices[split], config["img_size"],
                                       "train" if split == "train" else "eval", args.cache, args.cache_dir)
               for split in ["train", *eval_splits]}
    train_set = engine.SampleDataset(samples, split_indices["train"],
                                     transforms.train_transform(spec, config["img_size"], args.augment,
                                                                channels=samples.num_channels),
                                     seed=args.seed, reader=readers["train"], skip_bad_images=args.skip_bad_images)
    # drop_last as timm does: a final batch of one sample would break BatchNorm.
    train_loader = engine.make_loader(train_set, per_device_batch, True, args.workers, args.seed, drop_last=True,
                                      pin_memory=pin)
    eval_loaders = {split: engine.make_loader(
        engine.SampleDataset(samples, split_indices[split], transforms.eval_transform(config["img_size"]),
                             seed=args.seed, reader=readers[split], skip_bad_images=args.skip_bad_images),
        per_device_batch, False, args.workers, pin_memory=pin) for split in eval_splits}
    if len(train_loader) == 0:
        raise SystemExit(f"train split has {len(train_set)} images, fewer than one batch of {per_device_batch}")

    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config)
    model, optimizer, scheduler, train_loader, *prepared = accelerator.prepare(
        model, optimizer, scheduler, train_loader, *eval_loaders.values())
    eval_loaders = dict(zip(eval_loaders, prepared))

    progress = {"epoch": 0, "history": [], "best": None, "predictions": {}, "partial": None, "bad_images": []}
    state_dir = files.existing_state()
    if state_dir is not None:
        accelerator.load_state(str(state_dir))
        progress = records.read_json(state_dir / "progress.json")
        if accelerator.is_main_process and state_dir == files.state:
            files.publish_best()  # a kill may have come between the state swap and the links
        accelerator.print(f"{run_id}: resuming after epoch {progress['epoch']}"
                          + (f", step {progress['partial']['step']}" if progress["partial"] else ""))

    record = {
        "schema_version": records.SCHEMA_VERSION, "run_id": run_id, "status": "running", "error": None,
        "diverged_epoch": None, "config": config,
        "dataset": {"name": spec.name, "task": spec.task, "metric": spec.metric, "num_classes": spec.num_classes,
                    "class_names": list(samples.class_names), "selection_split": spec.selection_split,
                    "report_split": spec.report_split if spec.report_split in eval_splits else None,
                    "split_file": str(split_path), "split_sha256": split_sha,
                    "split_sizes": {k: int(len(v)) for k, v in split_indices.items()},
                    "excluded": samples.options.get("excluded", {})},
        "model": model_info, "precision": precision, "num_processes": accelerator.num_processes,
        "cache": {split: reader.info if reader is not None else None for split, reader in readers.items()},
        "started_at": now(), "finished_at": None, **records.provenance(),
    }

    def write_record(**changes) -> None:
        record.update(history=progress["history"], best=progress["best"], predictions=progress["predictions"],
                      skipped_bad_images=len(progress["bad_images"]),
                      bad_image_ids=[samples.ids[i] for i in progress["bad_images"]],
                      **changes)
        if accelerator.is_main_process:
            records.atomic_write_json(files.record, record)

    write_record()
    if args.log_with != "none":
        accelerator.init_trackers(run_id, config={k: v for k, v in config.items() if not isinstance(v, list)})

    stop_requested = []
    signal.signal(signal.SIGTERM, lambda *_: stop_requested.append(True))
    selection_key = f"{spec.selection_split}_{spec.metric}"
    try:
        for epoch in range(progress["epoch"] + 1, config["epochs"] + 1):
            partial = progress.pop("partial", None) or {}
            progress["partial"] = None
            train_loader.set_epoch(epoch)
            loader = accelerator.skip_first_batches(train_loader, partial["step"]) if partial else train_loader
            lr = optimizer.param_groups[0]["lr"]
            # A partial epoch's sums were saved summed over processes: the main process carries them on.
            carried = partial.get("totals") if accelerator.is_main_process else None
            totals = engine.train_one_epoch(model, loader, optimizer, accelerator, outputs, mean, std, epoch=epoch,
                                            channels_last=channels_last, start_step=partial.get("step", 0),
                                            totals=carried, should_stop=lambda: bool(stop_requested))
            note_bad_images(progress, totals.pop("bad_indices"))
            summed = {**engine.sum_over_processes(accelerator, {k: totals[k] for k in ("loss_sum", "samples")}),
                      "seconds": totals["seconds"]}
            if "stopped_at" in totals:  # SIGTERM: keep the partial epoch, resume from this step
                progress["partial"] = {"step": totals["stopped_at"], "totals": summed}
                save_state(accelerator, files, progress, None)
                write_record()
                accelerator.print(f"{run_id}: stopped by SIGTERM at epoch {epoch}; state saved, rerun to resume")
                return 143
            scheduler.step()
            results, thresholds, scores = evaluate_splits(model, eval_loaders, accelerator, outputs, samples, spec,
                                                          mean, std, channels_last)
            entry = {"epoch": epoch, "lr": lr, "train_loss": summed["loss_sum"] / max(summed["samples"], 1),
                     "seconds": totals["seconds"], "images_per_s": summed["samples"] / max(totals["seconds"], 1e-9),
                     **scores}
            progress["history"].append(entry)
            for result in results.values():
                note_bad_images(progress, result["bad_indices"])
            best_files = None
            if is_better(scores[selection_key], progress["best"] and progress["best"]["metrics"][selection_key]):
                progress["best"] = {"epoch": epoch, "metrics": scores}
                progress["predictions"] = {split: f"{run_id}/predictions-{split}.npz" for split in results}
                best_files = best_epoch_files(model, accelerator, results, thresholds, samples, spec.task)
            progress["epoch"] = epoch
            save_state(accelerator, files, progress, best_files)
            write_record()
            accelerator.log({k: v for k, v in entry.items() if v is not None}, step=epoch)
            accelerator.print(f"epoch {epoch}/{config['epochs']}  loss {entry['train_loss']:.4f}  "
                              + "  ".join(f"{k} {v:.4f}" for k, v in scores.items() if k.endswith(spec.metric))
                              + f"  {entry['images_per_s']:.0f} img/s")
    except engine.NonFiniteLoss as error:
        write_record(status="diverged", error=str(error), diverged_epoch=epoch, finished_at=now())
        accelerator.print(f"{run_id}: diverged: {error}")
        return 0
    except BaseException as error:
        write_record(status="failed", error=f"{type(error).__name__}: {error}", finished_at=now())
        raise
    finally:
        accelerator.end_training()
    if progress["best"] is None:
        write_record(status="failed", error=f"{selection_key} was undefined (NaN) at every epoch", finished_at=now())
        raise SystemExit(f"{run_id}: {selection_key} was undefined at every epoch; no best epoch to report")
    write_record(status="complete", finished_at=now())
    best = progress["best"]
    accelerator.print(f"{run_id}: complete; best epoch {best['epoch']}: {selection_key} "
                      f"{best['metrics'][selection_key]:.4f} -> {files.record}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
