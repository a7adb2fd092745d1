"""The loop over epochs for the runs of one train.py command: several configurations of one model on one dataset.

Set-up (`fit`): one Accelerator and one input pipeline (training/pipeline.py); then per run a model initialised right
after set_seed(seed), as a lone run's would be, its optimizer and scheduler, its saved state if it resumes, and its
record. Each epoch (`Pack.train`): engine.train_one_epoch trains every run on the same batches; engine.predict
scores all runs in one pass over each evaluation split; thresholds (HPA) and cut points (regression head) are fit
on the selection split and applied to all splits; each run's history, best epoch, state and record are written. A
run that diverges, pauses (--until-epoch), completes or fails leaves the pack; the others go on.
"""
from __future__ import annotations

import signal
from dataclasses import dataclass, field

import numpy as np
import torch
from accelerate import Accelerator, DataLoaderConfiguration

import metrics
from common import choice, errors, fileio, provenance, runrecord
from data.inputs import Inputs
from training import engine
from training.config import RunConfig
from training.options import TrainOptions
from training.pipeline import Pipeline, build_pipeline
from training.record import new_record
from training.run import MODEL, TrainRun, build_run, remove_state

STOPPED = 143  # exit status after SIGTERM with every state saved: the same command resumes


def fit(options: TrainOptions, inputs: Inputs, configs: list[RunConfig], fingerprint: dict[str, int]) -> int:
    """Train `configs` to the end; 0, 1 if a run failed, STOPPED on SIGTERM."""
    precision = resolve_precision(options.precision, len(configs))
    # non_blocking: a pinned batch is copied to the GPU without waiting for it, so the CPU queues the next step
    accelerator = Accelerator(mixed_precision=precision, step_scheduler_with_optimizer=False,
                              dataloader_config=DataLoaderConfiguration(non_blocking=True),
                              log_with=None if options.log_with == "none" else options.log_with,
                              project_dir=str(runrecord.RunFiles(options.out, configs[0].run_id).folder))
    check_processes(options, accelerator.num_processes)
    errors.report_from_every_rank()  # from here on the ranks read different shards: an error may be one rank's
    channels_last = options.channels_last == "yes" or (options.channels_last == "auto"
                                                       and accelerator.device.type == "cuda")
    pipeline = build_pipeline(options, inputs, configs[0].img_size, accelerator, channels_last)
    runs = [build_run(config, options, inputs.samples, accelerator, channels_last) for config in configs]
    for run in runs:
        if run.restore():
            partial = run.progress.partial
            accelerator.print(f"{run.run_id}: resuming after epoch {run.progress.epoch}"
                              + (f", step {partial['step']}" if partial else ""))
        run.record = new_record(run.config, run.model_info, options, inputs, fingerprint, pipeline, accelerator,
                                precision, packed_with=len(configs))
        run.write_record(inputs.samples.ids)
    if options.log_with != "none":
        accelerator.init_trackers(configs[0].run_id, config={k: v for k, v in configs[0].to_dict().items()
                                                             if not isinstance(v, list)})
    try:
        return Pack(options, inputs, accelerator, pipeline, runs).train()
    finally:
        for tracker in accelerator.trackers:  # not end_training(): LP-FT's second phase needs the process group
            tracker.finish()


def resolve_precision(precision: str, pack_size: int) -> str:
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    if precision == "fp16" and pack_size > 1:
        raise errors.UsageError("--precision fp16 cannot train several configurations together (they would share "
                                "one loss scaler); use bf16, or give one value per packed flag")
    return precision


def check_processes(options: TrainOptions, processes: int) -> None:
    if options.skip_bad_images and processes > 1:
        raise errors.UsageError("--skip-bad-images works in single-process runs only (skipped images would leave "
                                "the processes with batches of different sizes); remove or repair the files listed "
                                "by a single-process run, or find them first with --verify-images")
    if options.batch_size % processes:
        raise errors.UsageError(f"--batch-size {options.batch_size} must divide evenly over {processes} processes")


@dataclass
class EpochScores:
    """One run's evaluation after an epoch: per split its predictions, the thresholds fit on the selection split,
    and the metrics (runrecord.metric_key -> value); or why its outputs are unusable (`broken`)."""
    results: dict[str, dict] = field(default_factory=dict)
    thresholds: np.ndarray | None = None
    scores: dict[str, float] = field(default_factory=dict)
    broken: str | None = None


@dataclass
class Pack:
    """The runs of one command being trained together, epoch by epoch (see the module docstring)."""
    options: TrainOptions
    inputs: Inputs
    accelerator: Accelerator
    pipeline: Pipeline
    runs: list[TrainRun]

    def __post_init__(self) -> None:
        spec = self.inputs.samples.spec
        # Training on all labelled data (--train-on all) leaves nothing to select on: the last epoch is kept.
        split = self.inputs.selection_split
        self.selection_key = runrecord.metric_key(split, spec.metric) if split else None
        self.pending, self.failed, self.stop_requested = list(self.runs), 0, False

    def train(self) -> int:
        previous_handler = signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stop_requested", True))
        try:
            for run in list(self.pending):  # killed after its last epoch's state was saved, or rerun with --until-epoch
                if run.progress.epoch >= run.config.epochs:
                    self.complete(run)
                elif self.options.until_epoch is not None and run.progress.epoch >= self.options.until_epoch:
                    self.finish(run, runrecord.PAUSED)
            while self.pending:
                position = min(run.progress.position for run in self.pending)
                group = [run for run in self.pending if run.progress.position == position]  # same batches
                if self.train_epoch(group, *position) == STOPPED:
                    return STOPPED
        except BaseException as error:
            for run in self.pending:
                run.write_record(self.inputs.samples.ids, status=runrecord.FAILED, error=errors.one_line(error),
                                 finished_at=provenance.now())
            raise
        finally:
            signal.signal(signal.SIGTERM, previous_handler)
        self.accelerator.wait_for_everyone()  # every record written before any process reads them (LP-FT's winner)
        return 1 if self.failed else 0

    def train_epoch(self, group: list[TrainRun], done: int, step: int) -> int | None:
        """Train `group` (runs at the same position) through epoch done + 1, from `step`; STOPPED on SIGTERM."""
        accelerator, epoch = self.accelerator, done + 1
        for run in group:
            run.start_epoch()
        loader = self.pipeline.train_loader
        loader.set_epoch(epoch)
        if step:
            loader = accelerator.skip_first_batches(loader, step)
        lrs = {run.run_id: run.optimizer.param_groups[0]["lr"] for run in group}
        totals = engine.train_one_epoch(group, loader, accelerator, self.pipeline.outputs, self.pipeline.model_input,
                                        epoch=epoch, start_step=step, should_stop=lambda: self.stop_requested)
        if "stopped_at" not in totals and agreed(accelerator, self.stop_requested):
            totals["stopped_at"] = step + len(loader)  # trained to the end: save it before evaluating
        for run in group:
            run.progress.note_bad_images(totals["bad_indices"])
            if run.diverged_at:
                self.finish(run, runrecord.DIVERGED, error=run.diverged_at, diverged_epoch=epoch)
        group = [run for run in group if not run.diverged_at]
        if not group:
            return None
        summed = epoch_sums(accelerator, group)
        if "stopped_at" in totals:  # SIGTERM: keep the partial epoch, resume from this step
            for run in group:
                run.progress.partial = {"step": totals["stopped_at"], "totals": {
                    **summed[run.run_id], "seconds": run.seconds_before + totals["seconds"]}}
                run.save_state()
                run.write_record(self.inputs.samples.ids, status=runrecord.INTERRUPTED, stopped_at={
                    "epoch": epoch, "step": totals["stopped_at"], "steps": step + len(loader)})
                accelerator.print(f"{run.run_id}: stopped by SIGTERM at epoch {epoch}; state saved, rerun to resume")
            return STOPPED
        for run in group:
            run.scheduler.step()
        for run, scored in zip(group, self.evaluate(group)):
            if scored.broken:  # non-finite outputs: the last step's update broke the weights
                self.finish(run, runrecord.DIVERGED, error=scored.broken, diverged_epoch=epoch,
                            message=f"{run.run_id}: diverged: {scored.broken}")
                continue
            seconds = run.seconds_before + totals["seconds"]
            loss = summed[run.run_id]
            entry = {"epoch": epoch, "lr": lrs[run.run_id], "train_loss": loss["loss_sum"] / max(loss["samples"], 1),
                     "seconds": seconds, "images_per_s": loss["samples"] / max(seconds, 1e-9), **scored.scores}
            self.end_of_epoch(run, entry, scored)
        return None

    def evaluate(self, group: list[TrainRun]) -> list[EpochScores]:
        """Score every run of the group on every evaluation split, read once for all of them."""
        if not self.pipeline.eval_loaders:  # --train-on all: check at least that the weights are still finite
            return [EpochScores() if all(bool(torch.isfinite(p).all()) for p in run.model.parameters())
                    else EpochScores(broken="non-finite weights after the epoch's last update") for run in group]
        samples = self.inputs.samples
        spec = samples.spec
        predicted = {split: engine.predict([run.model for run in group], loader, self.accelerator,
                                           self.pipeline.outputs, self.pipeline.model_input, desc=f"eval {split}")
                     for split, loader in self.pipeline.eval_loaders.items()}
        evaluated = []
        for i in range(len(group)):
            results = {split: {**per_model[i], "labels": samples.labels[per_model[i]["index"]]}
                       for split, per_model in predicted.items()}
            broken = [split for split, result in results.items() if not np.isfinite(result["scores"]).all()]
            if broken:
                evaluated.append(EpochScores(broken=f"non-finite model outputs on split '{broken[0]}'"))
                continue
            thresholds = metrics.fit_on_selection(spec.task, results, self.inputs.selection_split, spec.num_classes)
            scores = {runrecord.metric_key(split, name): value for split, result in results.items()
                      for name, value in metrics.score(spec.task, result["labels"], result["scores"], thresholds,
                                                       spec.num_classes).items()}
            evaluated.append(EpochScores(results, thresholds, scores))
        return evaluated

    def end_of_epoch(self, run: TrainRun, entry: dict, scored: EpochScores) -> None:
        """Record the epoch, keep it if it is the best so far, save the state; then complete or pause the run."""
        progress, epoch, spec = run.progress, entry["epoch"], self.inputs.samples.spec
        progress.history.append(entry)
        for result in scored.results.values():
            progress.note_bad_images(result["bad_indices"])
        best_files = None
        key = self.selection_key
        if key is None or choice.better(entry[key], progress.best and progress.best["metrics"][key]):
            progress.best = {"epoch": epoch, "metrics": scored.scores}
            progress.predictions = {split: run.files.predictions_entry(split) for split in scored.results}
            best_files = self.best_epoch_files(run, scored)
        progress.epoch = epoch
        run.save_state(best_files)
        run.write_record(self.inputs.samples.ids)
        self.accelerator.log({f"{run.run_id}/{k}" if len(self.runs) > 1 else k: v for k, v in entry.items()
                              if v is not None}, step=epoch)
        self.accelerator.print(f"{run.run_id if len(self.runs) > 1 else 'epoch'} {epoch}/{run.config.epochs}  "
                               f"loss {entry['train_loss']:.4f}  "
                               + "  ".join(f"{k} {v:.4f}" for k, v in scored.scores.items() if k.endswith(spec.metric))
                               + f"  {entry['images_per_s']:.0f} img/s")
        if epoch == run.config.epochs:
            self.complete(run)
        elif self.options.until_epoch is not None and epoch >= self.options.until_epoch:
            self.finish(run, runrecord.PAUSED, message=f"{run.run_id}: paused after epoch {epoch} (--until-epoch); "
                                                       f"rerun without it to continue")

    def keep_weights(self, run: TrainRun) -> bool:
        return self.options.save_weights == "best" or run.config.lp_ft_phase == "probe"  # fine-tuning starts from it

    def best_epoch_files(self, run: TrainRun, scored: EpochScores) -> dict:
        """Writers of the best epoch's files: weights (safetensors) and each split's predictions."""
        samples, writers = self.inputs.samples, {}
        if self.keep_weights(run):  # the state's own copy of this epoch's weights, written just before
            writers[run.files.best_weights.name] = lambda path: fileio.link_or_copy(path.parent / MODEL, path)
        for split, result in scored.results.items():
            writers[run.files.predictions(split).name] = lambda path, r=result: runrecord.write_predictions(
                path, [samples.ids[i] for i in r["index"]], r["labels"], r["scores"], scored.thresholds,
                samples.spec.task)
        return writers

    def finish(self, run: TrainRun, status: str, message: str | None = None, keep: bool = True, **changes) -> None:
        """Take a run out of the pack with its final (or paused) record. A complete or diverged run's training state
        goes (after the record says so, so that a kill in between leaves a resumable run), and with it the best
        weights unless `keep`."""
        if status != runrecord.PAUSED:
            changes["finished_at"] = provenance.now()
        run.write_record(self.inputs.samples.ids, status=status, **changes)
        if status in runrecord.FINISHED and self.accelerator.is_main_process:
            remove_state(run.files)
            if not keep:
                run.files.best_weights.unlink(missing_ok=True)
        error = f": {changes['error']}" if changes.get("error") else ""
        self.accelerator.print(message or f"{run.run_id}: {status}{error}")
        self.pending.remove(run)
        run.release()

    def complete(self, run: TrainRun) -> None:
        """Finish a run after its last epoch; failed if it has no best epoch to report (its metric was always NaN)."""
        chosen, key = run.progress.best, self.selection_key
        if chosen is None:
            self.failed += 1
            self.finish(run, runrecord.FAILED, error=f"{key} was undefined (NaN) at every epoch; no best epoch "
                                                     f"to report")
            return
        what = (f"best epoch {chosen['epoch']}: {key} {chosen['metrics'][key]:.4f}" if key
                else f"trained on all labelled data, last epoch {chosen['epoch']} kept")
        self.finish(run, runrecord.COMPLETE, keep=self.keep_weights(run),
                    message=f"{run.run_id}: complete; {what} -> {run.files.record}")


def agreed(accelerator, flag: bool) -> bool:
    """True on every process if it is true on any (one collective; free with one process)."""
    if accelerator.num_processes == 1:
        return flag
    return engine.sum_over_processes(accelerator, {"flag": float(flag)})["flag"] > 0


def epoch_sums(accelerator, runs: list[TrainRun]) -> dict[str, dict]:
    """Each run's loss sum and sample count over all processes (one reduction for the whole pack)."""
    values = {f"{i}:{key}": value for i, run in enumerate(runs)
              for key, value in (("loss_sum", float(run.loss_sum)), ("samples", run.samples))}
    summed = engine.sum_over_processes(accelerator, values) if values else {}
    return {run.run_id: {"loss_sum": summed[f"{i}:loss_sum"], "samples": summed[f"{i}:samples"]}
            for i, run in enumerate(runs)}
