"""The loop over epochs for the runs of one train.py command: several configurations of one model on one dataset.

Set-up: one Accelerator and one input pipeline (readers, train loader, evaluation loaders); then per run a model
initialised right after set_seed(seed), as a lone run's would be, its optimizer and scheduler, and its saved state
if it resumes. Each epoch: engine.train_one_epoch trains every run on the same batches; engine.predict scores all
runs in one pass over each evaluation split; thresholds (HPA) and cut points (regression head) are fit on the
selection split and applied to all splits; each run's history, best epoch, state and record are written. A run that
diverges, pauses (--until-epoch), completes or fails leaves the pack; the others go on.
"""
from __future__ import annotations

import signal

import numpy as np
import torch
from accelerate import Accelerator, DataLoaderConfiguration

import cache
import engine
import errors
import metrics
import models
import records
import transforms
from data.verify import BadImagesError, verify_images
from trainrun import MODEL, RunFiles, TrainRun, build_run, link_or_copy, now


def fit(args, inputs, configs: list[dict]) -> int:
    """Train `configs` (resolved configurations with run ids) to the end; 0, 1 if a run failed, 143 on SIGTERM."""
    spec, samples = inputs.samples.spec, inputs.samples
    precision = args.precision
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    if precision == "fp16" and len(configs) > 1:
        raise errors.UsageError("--precision fp16 cannot train several configurations together (they would share "
                                "one loss scaler); use bf16, or give one value per packed flag")
    # non_blocking: a pinned batch is copied to the GPU without waiting for it, so the CPU queues the next step
    accelerator = Accelerator(mixed_precision=precision, step_scheduler_with_optimizer=False,
                              dataloader_config=DataLoaderConfiguration(non_blocking=True),
                              log_with=None if args.log_with == "none" else args.log_with,
                              project_dir=str(RunFiles(args.out, configs[0]["run_id"]).folder))
    if args.skip_bad_images and accelerator.num_processes > 1:
        raise errors.UsageError("--skip-bad-images works in single-process runs only (skipped images would leave "
                                "the processes with batches of different sizes); remove or repair the files listed "
                                "by a single-process run, or find them first with --verify-images")
    if args.batch_size % accelerator.num_processes:
        raise errors.UsageError(f"--batch-size {args.batch_size} must divide evenly over "
                                f"{accelerator.num_processes} processes")
    errors.report_from_every_rank()  # from here on the ranks read different shards: an error may be one rank's
    channels_last = args.channels_last == "yes" or (args.channels_last == "auto" and accelerator.device.type == "cuda")

    # One input pipeline for every run of the pack.
    img_size, per_device_batch = configs[0]["img_size"], args.batch_size // accelerator.num_processes
    indices, pin = inputs.split_indices, accelerator.device.type == "cuda"
    readers = {split: cache.reader_for(samples, indices[split], img_size, "train" if split == "train" else "eval",
                                       args.cache, args.cache_dir) for split in ["train", *inputs.eval_splits]}
    if args.verify_images or args.cache == "build":  # after a build this reads the memo the build filled
        verify_all_images(samples, indices, args, accelerator)
    input_path = augmentation_device(args, accelerator.device)
    train_set = engine.SampleDataset(samples, indices["train"],
                                     transforms.train_transform(spec, img_size, args.augment,
                                                                channels=samples.num_channels),
                                     seed=args.seed, reader=readers["train"], skip_bad_images=args.skip_bad_images,
                                     crop_on_device=input_path == "gpu")
    # drop_last as timm does: a final batch of one sample would break BatchNorm.
    train_loader = engine.make_loader(train_set, per_device_batch, True, args.workers, args.seed, drop_last=True,
                                      pin_memory=pin)
    if len(train_loader) == 0:
        raise errors.DataError(f"{inputs.split_path}: the train split has {len(train_set)} images, fewer than one "
                               f"batch of {per_device_batch}; lower --batch-size")
    eval_loaders = {split: engine.make_loader(
        engine.SampleDataset(samples, indices[split], transforms.eval_transform(img_size), seed=args.seed,
                             reader=readers[split], skip_bad_images=args.skip_bad_images),
        per_device_batch, False, args.workers, pin_memory=pin) for split in inputs.eval_splits}
    train_loader = accelerator.prepare(train_loader)
    eval_loaders = {split: accelerator.prepare(loader) for split, loader in eval_loaders.items()}

    runs = [build_run(config, args, samples, accelerator, channels_last) for config in configs]
    mean, std = models.normalization(args.model, args.normalize)

    def model_input(batch: dict) -> torch.Tensor:
        return engine.to_model_input(engine.batch_images(batch, img_size), mean, std, channels_last)

    outputs = engine.Outputs(spec.task, regression=args.head == "regression", label_smoothing=args.label_smoothing)
    base_record = {
        "schema_version": records.SCHEMA_VERSION, "status": "running", "error": None, "diverged_epoch": None,
        "dataset": {"name": spec.name, "task": spec.task, "metric": spec.metric, "num_classes": spec.num_classes,
                    "class_names": list(samples.class_names), "selection_split": inputs.selection_split,
                    "report_split": spec.report_split if spec.report_split in inputs.eval_splits else None,
                    "extra_splits": [s for s in spec.extra_splits if s in inputs.eval_splits],
                    "split_file": str(inputs.split_path), "split_sha256": inputs.split_sha256,
                    "split_method": inputs.split.method, "split_seed": inputs.split.seed,
                    "papers_split": inputs.split.papers, "split_description": inputs.split.description,
                    "split_sizes": {k: int(len(v)) for k, v in indices.items()},
                    "excluded": samples.options.get("excluded", {}),
                    "combined_with": samples.options.get("concatenated")},
        "paths": {"root": records.path_as_given(configs[0]["root"]),
                  "split_file": records.path_as_given(inputs.split_path),
                  "out": records.path_as_given(args.out), "cache_dir": records.path_as_given(args.cache_dir)},
        "normalization": {"mode": args.normalize, "mean": list(mean), "std": list(std)},
        "precision": precision, "num_processes": accelerator.num_processes, "packed_with": len(configs),
        "input_path": input_path,
        "runtime": records.runtime(accelerator.device, accelerator.num_processes),
        "cache": {split: reader.info if reader is not None else None for split, reader in readers.items()},
        "started_at": now(), "finished_at": None, **records.provenance(),
    }
    for run in runs:
        if run.restore():
            partial = run.progress["partial"]
            accelerator.print(f"{run.run_id}: resuming after epoch {run.progress['epoch']}"
                              + (f", step {partial['step']}" if partial else ""))
        run.record = {**base_record, "run_id": run.run_id, "config": run.config, "model": run.model_info,
                      "lp_ft": lp_ft_block(run.config, args.out)}
        run.write_record(samples.ids)
    if args.log_with != "none":
        accelerator.init_trackers(configs[0]["run_id"], config={k: v for k, v in configs[0].items()
                                                                if not isinstance(v, list)})

    stop_requested = []
    previous_handler = signal.signal(signal.SIGTERM, lambda *_: stop_requested.append(True))
    # Training on all labelled data (--train-on all) leaves nothing to select on: the last epoch is kept.
    selection_key = f"{inputs.selection_split}_{spec.metric}" if inputs.selection_split else None
    pending, failed = list(runs), 0
    try:
        for run in list(pending):  # killed after its last epoch's state was saved, or rerun with --until-epoch
            if run.progress["epoch"] >= run.config["epochs"]:
                failed += complete(run, samples, pending, selection_key, args)
            elif args.until_epoch is not None and run.progress["epoch"] >= args.until_epoch:
                finish(run, samples, pending, status="paused")
        while pending:
            done, step = min(position(run) for run in pending)
            group = [run for run in pending if position(run) == (done, step)]  # same epoch and step: same batches
            epoch = done + 1
            for run in group:
                run.start_epoch((run.progress.pop("partial", None) or {}).get("totals"))
                run.progress["partial"] = None
            train_loader.set_epoch(epoch)
            loader = accelerator.skip_first_batches(train_loader, step) if step else train_loader
            lrs = {run.run_id: run.optimizer.param_groups[0]["lr"] for run in group}
            totals = engine.train_one_epoch(group, loader, accelerator, outputs, model_input, epoch=epoch,
                                            start_step=step, should_stop=lambda: bool(stop_requested))
            if "stopped_at" not in totals and agreed(accelerator, bool(stop_requested)):
                totals["stopped_at"] = step + len(loader)  # trained to the end: save it before evaluating
            for run in group:
                note_bad_images(run.progress, totals["bad_indices"])
                if run.diverged_at:
                    finish(run, samples, pending, status="diverged", error=run.diverged_at, diverged_epoch=epoch)
            group = [run for run in group if not run.diverged_at]
            if not group:
                continue
            summed = epoch_sums(accelerator, group)
            if "stopped_at" in totals:  # SIGTERM: keep the partial epoch, resume from this step
                for run in group:
                    run.progress["partial"] = {"step": totals["stopped_at"], "totals": {
                        **summed[run.run_id], "seconds": run.seconds_before + totals["seconds"]}}
                    run.save_state()
                    run.write_record(samples.ids)
                    accelerator.print(f"{run.run_id}: stopped by SIGTERM at epoch {epoch}; state saved, rerun to resume")
                return 143
            for run in group:
                run.scheduler.step()
            evaluated = evaluate_splits(group, eval_loaders, accelerator, outputs, model_input, samples,
                                        inputs.selection_split) if eval_loaders else [finite_weights(run) for run in group]
            for run, result in zip(group, evaluated):
                if isinstance(result, str):  # non-finite outputs: the last step's update broke the weights
                    finish(run, samples, pending, status="diverged", error=result, diverged_epoch=epoch,
                           message=f"{run.run_id}: diverged: {result}")
                    continue
                results, thresholds, scores = result
                loss = summed[run.run_id]
                seconds = run.seconds_before + totals["seconds"]
                entry = {"epoch": epoch, "lr": lrs[run.run_id], "train_loss": loss["loss_sum"] / max(loss["samples"], 1),
                         "seconds": seconds, "images_per_s": loss["samples"] / max(seconds, 1e-9), **scores}
                end_of_epoch(run, entry, scores, results, thresholds, samples, selection_key, args)
                accelerator.log({f"{run.run_id}/{k}" if len(runs) > 1 else k: v for k, v in entry.items()
                                 if v is not None}, step=epoch)
                accelerator.print(f"{run.run_id if len(runs) > 1 else 'epoch'} {epoch}/{run.config['epochs']}  "
                                  f"loss {entry['train_loss']:.4f}  "
                                  + "  ".join(f"{k} {v:.4f}" for k, v in scores.items() if k.endswith(spec.metric))
                                  + f"  {entry['images_per_s']:.0f} img/s")
                if epoch == run.config["epochs"]:
                    failed += complete(run, samples, pending, selection_key, args)
                elif args.until_epoch is not None and epoch >= args.until_epoch:
                    finish(run, samples, pending, status="paused")
                    accelerator.print(f"{run.run_id}: paused after epoch {epoch} (--until-epoch); rerun without it "
                                      f"to continue")
    except BaseException as error:
        for run in pending:
            run.write_record(samples.ids, status="failed", error=records.one_line(error), finished_at=now())
        raise
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
        for tracker in accelerator.trackers:  # not end_training(): LP-FT's second phase needs the process group
            tracker.finish()
    accelerator.wait_for_everyone()  # every record written before any process reads them (LP-FT's winner)
    return 1 if failed else 0


def agreed(accelerator, flag: bool) -> bool:
    """True on every process if it is true on any (one collective; free with one process)."""
    if accelerator.num_processes == 1:
        return flag
    return engine.sum_over_processes(accelerator, {"flag": float(flag)})["flag"] > 0


def verify_all_images(samples, indices: dict, args, accelerator) -> None:
    """Decode every image of the run's splits before the first step (data/verify.py), once per machine; stop listing
    every file that fails, unless --skip-bad-images (then they are skipped and counted as they come)."""
    every = np.unique(np.concatenate([rows for rows in indices.values()]))
    with accelerator.main_process_first():
        bad = verify_images(samples, every, workers=args.workers, memo_dir=args.cache_dir,
                            progress=accelerator.is_local_main_process)
    if bad and not args.skip_bad_images:
        raise BadImagesError(samples.name, bad)
    if bad:
        accelerator.print(f"{len(bad)} image(s) cannot be decoded and will be skipped (--skip-bad-images)")


def augmentation_device(args, device: torch.device) -> str:
    """Where the training crop and flips are resampled: "cpu" (in the loader workers) or "gpu" (gpu_augment.py).

    auto: on the GPU whenever it applies (a CUDA device and --augment paper, the only pipeline it reproduces).
    Both paths draw the same crops and flips for every (seed, epoch, sample) and their pixels differ by at most one
    grey level, so choosing by model speed would gain nothing: the small models that outrun the CPU workers need it,
    and for the others it only frees the workers.
    """
    if args.augment_device == "cpu":
        return "cpu"
    applies = device.type == "cuda" and args.augment == "paper"
    if args.augment_device == "gpu" and args.augment != "paper":
        raise errors.UsageError(f"--augment-device gpu reproduces the 'paper' augmentation only (crop + flips), "
                                f"not --augment {args.augment}")
    return "gpu" if args.augment_device == "gpu" or applies else "cpu"


def finite_weights(run: TrainRun):
    """With no split to evaluate (--train-on all), what the outputs check does otherwise: catch a last update that
    broke the weights before they are saved. ({}, None, {}) like evaluate_splits' result, or a message."""
    if all(bool(torch.isfinite(p).all()) for p in run.model.parameters()):
        return {}, None, {}
    return "non-finite weights after the epoch's last update"


def lp_ft_block(config: dict, out) -> dict | None:
    """For the record: which LP-FT phase this run is and, for fine-tuning, the probe it started from."""
    phase = config.get("lp_ft_phase")
    if phase is None:
        return None
    block = {"phase": phase}
    if config.get("init_from"):
        probe = records.read_json(RunFiles(out, config["init_from"]).record)
        block.update(probe_run_id=config["init_from"], probe_history=probe["history"], probe_best=probe["best"],
                     probe_config={k: probe["config"][k] for k in ("lr", "wd", "epochs")})
    return block


def position(run: TrainRun) -> tuple[int, int]:
    partial = run.progress.get("partial")
    return run.progress["epoch"], partial["step"] if partial else 0


def note_bad_images(progress: dict, indices: list[int]) -> None:
    """Remember which samples were skipped as unreadable (each once, however many epochs met it)."""
    progress["bad_images"] = sorted(set(progress["bad_images"]) | {int(i) for i in indices})


def epoch_sums(accelerator, runs: list[TrainRun]) -> dict[str, dict]:
    """Each run's loss sum and sample count over all processes (one reduction for the whole pack)."""
    values = {f"{i}:{key}": value for i, run in enumerate(runs)
              for key, value in (("loss_sum", float(run.loss_sum)), ("samples", run.samples))}
    summed = engine.sum_over_processes(accelerator, values) if values else {}
    return {run.run_id: {"loss_sum": summed[f"{i}:loss_sum"], "samples": summed[f"{i}:samples"]}
            for i, run in enumerate(runs)}


def evaluate_splits(runs: list[TrainRun], loaders: dict, accelerator, outputs, model_input, samples,
                    selection_split: str | None) -> list:
    """Per run: (results per split, thresholds, scores), or a message when its outputs are not finite."""
    predicted = {split: engine.predict([run.model for run in runs], loader, accelerator, outputs, model_input,
                                       desc=f"eval {split}") for split, loader in loaders.items()}
    evaluated = []
    for i, run in enumerate(runs):
        results = {}
        for split, per_model in predicted.items():
            index, scores = per_model[i]["index"], per_model[i]["scores"]
            results[split] = {"index": index, "scores": scores, "labels": samples.labels[index],
                              "bad_indices": per_model[i]["bad_indices"]}
        broken = [split for split, result in results.items() if not np.isfinite(result["scores"]).all()]
        if broken:
            evaluated.append(f"non-finite model outputs on split '{broken[0]}'")
            continue
        spec = samples.spec
        thresholds = metrics.fit_on_selection(spec.task, results, selection_split, spec.num_classes)
        scores = {f"{split}_{name}": value for split, result in results.items()
                  for name, value in metrics.score(spec.task, result["labels"], result["scores"], thresholds,
                                                   spec.num_classes).items()}
        evaluated.append((results, thresholds, scores))
    return evaluated


def is_better(value: float, best: float | None) -> bool:
    """NaN (a metric undefined on this epoch's predictions) never wins, and never blocks a later epoch."""
    return bool(np.isfinite(value)) and (best is None or not np.isfinite(best) or value > best)


def end_of_epoch(run: TrainRun, entry: dict, scores: dict, results: dict, thresholds, samples, selection_key: str,
                 args) -> None:
    progress = run.progress
    progress["history"].append(entry)
    for result in results.values():
        note_bad_images(progress, result["bad_indices"])
    best_files = None
    if selection_key is None or is_better(entry[selection_key],
                                          progress["best"] and progress["best"]["metrics"][selection_key]):
        progress["best"] = {"epoch": entry["epoch"], "metrics": scores}
        progress["predictions"] = {split: f"{run.run_id}/predictions-{split}.npz" for split in results}
        best_files = best_epoch_files(run, results, thresholds, samples, samples.spec.task, keep_weights(run, args))
    progress["epoch"] = entry["epoch"]
    run.save_state(best_files)
    run.write_record(samples.ids)


def keep_weights(run: TrainRun, args) -> bool:
    return args.save_weights == "best" or run.config.get("lp_ft_phase") == "probe"  # fine-tuning starts from it


def best_epoch_files(run: TrainRun, results: dict, thresholds, samples, task: str, weights: bool) -> dict:
    """Writers of the best epoch's files: weights (safetensors) and each split's predictions."""
    writers = {}
    if weights:  # the state's own copy of this epoch's weights, written just before
        writers["best.safetensors"] = lambda path: link_or_copy(path.parent / MODEL, path)
    for split, result in results.items():
        writers[f"predictions-{split}.npz"] = lambda path, r=result: records.write_predictions(
            path, [samples.ids[i] for i in r["index"]], r["labels"], r["scores"], thresholds, task)
    return writers


def finish(run: TrainRun, samples, pending: list, status: str, message: str | None = None, keep: bool = True,
           **changes) -> None:
    """Take a run out of the pack with its final (or paused) record. A complete or diverged run's training state
    goes (after the record says so, so that a kill in between leaves a resumable run), and with it the best weights
    unless `keep`."""
    if status != "paused":
        changes["finished_at"] = now()
    run.write_record(samples.ids, status=status, **changes)
    if status in records.FINISHED and run.accelerator.is_main_process:
        run.files.remove_state()
        if not keep:
            (run.files.folder / "best.safetensors").unlink(missing_ok=True)
    error = f": {changes['error']}" if changes.get("error") else ""
    run.accelerator.print(message or f"{run.run_id}: {status}{error}")
    pending.remove(run)
    run.release()


def complete(run: TrainRun, samples, pending: list, selection_key: str, args) -> int:
    """Finish a run after its last epoch; 1 if it has no best epoch to report (its metric was always NaN)."""
    best = run.progress["best"]
    if best is None:
        finish(run, samples, pending, status="failed",
               error=f"{selection_key} was undefined (NaN) at every epoch; no best epoch to report")
        return 1
    chosen = (f"best epoch {best['epoch']}: {selection_key} {best['metrics'][selection_key]:.4f}" if selection_key
              else f"trained on all labelled data, last epoch {best['epoch']} kept")
    finish(run, samples, pending, status="complete", keep=keep_weights(run, args),
           message=f"{run.run_id}: complete; {chosen} -> {run.files.record}")
    return 0
