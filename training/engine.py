"""The shared loop: datasets and loaders over `Samples`, one training epoch, and prediction on a split.

train.py and evaluate.py both go through here, so a number is computed the same way whichever script made it.

Determinism: the data order of an epoch comes from a generator seeded with (seed, epoch), and each sample's
augmentation from a seed derived from (seed, epoch, sample index). Neither depends on the worker count, the
worker that happened to load the sample, or what ran before, so a run resumed after epoch k sees exactly the
batches an uninterrupted run would.
"""
from __future__ import annotations

import math
import multiprocessing
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from augment import gpu, transforms
from common import errors
from data import BadImageError, Samples

ImageReader = Callable[[int], np.ndarray]  # sample index -> H x W x C uint8 image


def sample_seed(seed: int, *keys: int) -> int:
    """A well-mixed 32-bit seed from the run's seed and keys (epoch; epoch and sample index)."""
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0])


class EpochSampler(Sampler):
    """Yields (epoch, sample position) pairs: shuffled with a generator seeded by (seed, epoch), or in order.

    The epoch travels with each key so that workers (persistent or not) seed augmentation without shared state.
    """

    def __init__(self, size: int, seed: int = 0, shuffle: bool = True):
        self.size, self.seed, self.shuffle, self.epoch = size, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(sample_seed(self.seed, self.epoch))
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = range(self.size)
        return iter([(self.epoch, position) for position in order])


class SampleDataset(Dataset):
    """The images of one split, transformed to uint8 C x H x W tensors (normalisation happens on the device).

    `reader` maps a sample index to its image: by default the dataset's own files; a prepared cache can replace it.
    An unreadable image yields {"bad": index, "error": (path, reason, verify_command)}, or "error": None with
    skip_bad_images. `collate` drops it from the batch and lists its index in "bad_indices"; the first error that
    is not None goes into the batch's "fatal", and `check_batch` raises it in the main process, naming the file and
    the ways out (a worker's exception would reach it as a bare RuntimeError). `verify_command` is the cache.py
    command that lists every bad image of the run's data at once (default: the whole dataset at its root).
    """

    def __init__(self, samples: Samples, indices: np.ndarray, transform, seed: int = 0,
                 reader: ImageReader | None = None, skip_bad_images: bool = False, crop_on_device: bool = False,
                 verify_command: str | None = None):
        self.samples, self.indices, self.transform, self.seed = samples, np.asarray(indices), transform, seed
        self.reader = reader or samples.read_image
        self.skip_bad_images = skip_bad_images
        self.verify_command = verify_command or shlex.join(
            ["python", "cache.py", samples.name, "--root", str(samples.root), "--verify-images"])
        # The device-side path (gpu_augment.py): workers draw the crop and flips and hand over the crop region;
        # the device resizes the batch. Same draws as `transform`, pixels within one grey level.
        self.regions = gpu.RegionSampler(transform) if crop_on_device else None

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, position = key
        index = int(self.indices[position])
        try:
            image = self.reader(index)
        except BadImageError as error:
            return {"bad": index, "error": None if self.skip_bad_images else (str(error.path), error.reason,
                                                                               self.verify_command)}
        label = torch.as_tensor(self.samples.labels[index])
        if self.regions is not None:
            return {"region": self.regions(image, sample_seed(self.seed, epoch, index)), "label": label,
                    "index": index}
        transforms.seed_transform(self.transform, sample_seed(self.seed, epoch, index))
        image = self.transform(image=image)["image"]
        return {"image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))), "label": label,
                "index": index}


def collate(batch: list[dict]) -> dict:
    good = [item for item in batch if "bad" not in item]
    bad = [item for item in batch if "bad" in item]
    # collate runs in the workers: the main process raises, from check_batch()
    fatal = next((item["error"] for item in bad if item["error"] is not None), None)
    bad_indices = [item["bad"] for item in bad]
    if not good:
        return {"image": None, "label": None, "index": None, "bad_indices": bad_indices, "fatal": fatal}
    if "region" in good[0]:  # the device-side path: regions, sizes and flips instead of finished images
        images = gpu.collate_regions([item["region"] for item in good])
    else:
        images = {"image": torch.stack([item["image"] for item in good])}
    return {**images, "label": torch.stack([item["label"] for item in good]),
            "index": torch.tensor([item["index"] for item in good]), "bad_indices": bad_indices, "fatal": fatal}


class UnreadableImage(BadImageError):
    """An image that could not be decoded in the middle of a run, with the ways out."""


def check_batch(batch: dict) -> bool:
    """Stop at an unreadable image (not skipped), naming the file and the ways out; False for an empty batch."""
    if batch["fatal"] is not None:
        path, reason, verify_command = batch["fatal"]
        raise UnreadableImage(path, f"{reason}. Repair or remove the file; `{verify_command}` lists every bad image "
                                    f"at once (train.py: --verify-images before the first step, or --skip-bad-images "
                                    f"to skip and record them)")
    return batch.get("image") is not None or batch.get("regions") is not None


def single_threaded_worker(_: int) -> None:
    # Each worker is already one of many processes: OpenCV's own thread pool would only make them compete.
    cv2.setNumThreads(1)


# Workers start from a fork server, not by forking this process: a fork copies OpenCV's (or OpenMP's) thread pool in
# whatever state its locks are, and a worker then hangs at its first cv2 call once this process has used cv2 with
# threads (building a cache, verifying images). The fork server is a clean process, started once.
WORKER_START = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else None


def make_loader(dataset: SampleDataset, batch_size: int, shuffle: bool, workers: int, seed: int = 0,
                drop_last: bool = False, pin_memory: bool = False) -> DataLoader:
    # The loader's own generator: creating an iterator draws a worker base seed from it, not from the global
    # RNG that dropout uses, so the worker count and a resume leave training's random numbers untouched.
    return DataLoader(dataset, batch_size=batch_size, sampler=EpochSampler(len(dataset), seed, shuffle),
                      generator=torch.Generator().manual_seed(seed),
                      num_workers=workers, collate_fn=collate, drop_last=drop_last, pin_memory=pin_memory,
                      persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None,
                      worker_init_fn=single_threaded_worker if workers > 0 else None,
                      multiprocessing_context=WORKER_START if workers > 0 else None)


@dataclass
class Outputs:
    """How a head's raw outputs become scores (see metrics.py) and a loss."""
    task: str
    regression: bool = False
    label_smoothing: float = 0.0
    regression_loss: str = "smooth-l1"  # or "l1", the loss the paper's Appendix F names

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.regression:  # ordinal grades as a continuous target (the APTOS winners' choice)
            loss = F.l1_loss if self.regression_loss == "l1" else F.smooth_l1_loss
            return loss(logits.squeeze(1).float(), labels.float())
        if self.task == "multilabel":
            return F.binary_cross_entropy_with_logits(logits.float(), labels.float())
        return F.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing)

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.regression:
            return logits.squeeze(1)
        if self.task == "multilabel":
            return torch.sigmoid(logits)
        return torch.softmax(logits, dim=1)


def to_model_input(images: torch.Tensor, mean, std, channels_last: bool) -> torch.Tensor:
    x = transforms.normalize(images, mean, std)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def batch_images(batch: dict, img_size: int) -> torch.Tensor:
    """The batch's N x C x S x S uint8 images: as the workers made them, or resized on the device from regions."""
    if batch.get("regions") is None:
        return batch["image"]
    return gpu.resized_crops(batch["regions"], batch["sizes"], batch["flips"], img_size,
                                     out_dtype=torch.uint8)


# How often (in steps) the training loop looks at the losses: each look is one host sync, which stops the CPU from
# queuing the next steps while the GPU works. A non-finite loss poisons the running sum, so a look every k steps and
# one at the epoch's end catch every divergence in the epoch where it happened.
CHECK_EVERY = 25


def train_one_epoch(runs: list, loader, accelerator, outputs: Outputs, model_input: Callable, *, epoch: int,
                    start_step: int = 0, should_stop: Callable[[], bool] = lambda: False,
                    check_every: int = CHECK_EVERY) -> dict:
    """Train every run of `runs` for one epoch on the same batches (from `start_step` when resuming mid-epoch).

    A run is a trainrun.TrainRun: its model, optimizer and random stream, and its running loss (`loss_sum`, kept on
    the device, and `samples`). `model_input(batch)` turns a loader batch into the models' input, once for all runs.
    A run whose loss became non-finite is left out from the next look on, with `run.diverged_at` set to a message.
    Returns {"seconds", "bad_indices", and "stopped_at" (the step count) when should_stop() turned true (SIGTERM)}.
    """
    active = [run for run in runs if run.diverged_at is None]
    for run in active:
        run.train_mode()
    bad_indices: list[int] = []
    started = time.perf_counter()
    last = len(loader) + start_step
    progress = EpochProgress(epoch, start_step, last, shown=accelerator.is_main_process)
    step, stopped_at = start_step, None
    for batch in loader:
        step += 1
        bad_indices += batch["bad_indices"]
        images = 0
        if check_batch(batch):  # False: every image of the batch unreadable (--skip-bad-images)
            inputs, labels = model_input(batch), batch["label"]
            images = len(labels) * accelerator.num_processes
            for run in active:
                with run.random_stream():  # the run's own dropout draws, as if it trained alone
                    with accelerator.autocast():
                        loss = outputs.loss(run.model(inputs), labels)
                    accelerator.backward(loss)
                    run.optimizer.step()
                    run.optimizer.zero_grad(set_to_none=True)  # no gradients held between steps (N runs packed)
                run.loss_sum = run.loss_sum + loss.detach().float() * len(labels)
                run.samples += len(labels)
        stop = should_stop() if accelerator.num_processes == 1 else False
        if step % check_every == 0 or step == last or stop:
            stop, running_losses = look_at_losses(active, accelerator, epoch, step, should_stop())
            progress.looked([loss for run, loss in zip(active, running_losses) if run.diverged_at is None])
            active = [run for run in active if run.diverged_at is None]
        progress.step(step, images)
        if not active or (stop and step < last):
            stopped_at = step if active else None
            break
    progress.close()
    totals = {"seconds": time.perf_counter() - started, "bad_indices": bad_indices}
    if stopped_at is not None:
        totals["stopped_at"] = stopped_at
    return totals


def progress_bar_off(accelerator) -> bool | None:
    """Bars on the main process's terminal only: None lets tqdm turn them off when the output is a file (logs of
    grid.py and Slurm jobs would otherwise fill with carriage-return lines)."""
    return None if accelerator.is_local_main_process else True


def look_at_losses(runs: list, accelerator, epoch: int, step: int, stop: bool) -> tuple[bool, list[float]]:
    """One host sync: mark runs whose running loss is non-finite on any process. Returns whether any process must
    stop, and each run's running mean loss over the epoch so far (all processes), which the progress shows."""
    device = accelerator.device
    values = torch.stack([torch.as_tensor(float(stop), device=device),
                          *[torch.as_tensor(run.loss_sum, device=device, dtype=torch.float32) for run in runs],
                          *[torch.as_tensor(float(run.samples), device=device) for run in runs]])
    if accelerator.num_processes > 1:  # every process stops or diverges at the same step
        values = accelerator.reduce(values, "sum")
    values = values.tolist()
    loss_sums, samples = values[1:len(runs) + 1], values[len(runs) + 1:]
    for run, loss_sum in zip(runs, loss_sums):
        if not math.isfinite(loss_sum):
            run.diverged_at = f"non-finite training loss at epoch {epoch} (seen at step {step})"
    return values[0] > 0, [loss_sum / count if count else math.nan for loss_sum, count in zip(loss_sums, samples)]


# What a user sees while an epoch trains. On a terminal, a tqdm bar. Where the output is a file (grid.py's
# .grid/output/*.log, a Slurm task's output) a bar's carriage-return frames would fill it, so instead one line each
# tenth of the epoch, and at least once a minute when a tenth takes longer.
PROGRESS_LINES_PER_EPOCH = 10
PROGRESS_AT_LEAST_EVERY_S = 60.0


class EpochProgress:
    """Progress of one training epoch: steps, images/s and the running loss, as of the last look at the losses
    (look_at_losses, every CHECK_EVERY steps): showing it adds no host sync. `shown`: on the main process only."""

    def __init__(self, epoch: int, start_step: int, last: int, shown: bool, terminal: bool | None = None):
        self.epoch, self.last = epoch, last
        terminal = sys.stderr.isatty() if terminal is None else terminal
        self.bar = tqdm(total=last, initial=start_step, desc=f"epoch {epoch} train", unit="step", leave=False,
                        dynamic_ncols=True) if shown and terminal else None
        self.lines = shown and not terminal
        self.every = max(1, math.ceil(last / PROGRESS_LINES_PER_EPOCH))
        self.started = self.printed = time.perf_counter()
        self.images, self.losses = 0, []

    def looked(self, losses: list[float]) -> None:
        """The running mean loss of each run still training, as a look at the losses fetched it."""
        self.losses = losses

    def step(self, step: int, images: int) -> None:
        self.images += images
        now = time.perf_counter()
        if self.bar is not None:
            self.bar.set_postfix_str(f"{self.rate(now):.0f} img/s, loss {self.loss_text()}", refresh=False)
            self.bar.update(1)
        elif self.lines and (step % self.every == 0 or step == self.last
                             or now - self.printed >= PROGRESS_AT_LEAST_EVERY_S):
            self.printed = now
            print(f"epoch {self.epoch} train: step {step}/{self.last} ({step / self.last:.0%}), "
                  f"{self.rate(now):.0f} img/s, loss {self.loss_text()}, {now - self.started:.0f} s", flush=True)

    def rate(self, now: float) -> float:
        return self.images / max(now - self.started, 1e-9)

    def loss_text(self) -> str:
        """One run's running loss; a pack's lowest and highest; '-' before the first look."""
        finite = [loss for loss in self.losses if math.isfinite(loss)]
        if not finite:
            return "-"
        low, high = min(finite), max(finite)
        return f"{low:.4f}" if len(finite) == 1 else f"{low:.4f}..{high:.4f} ({len(finite)} runs)"

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def sum_over_processes(accelerator, values: dict) -> dict:
    """Sum per-process counters (loss sums, sample counts) so that every process reports the whole epoch."""
    keys = sorted(values)
    summed = accelerator.reduce(torch.tensor([float(values[k]) for k in keys], device=accelerator.device), "sum")
    return dict(zip(keys, summed.tolist()))


@torch.no_grad()
def predict(models: list, loader, accelerator, outputs: Outputs, model_input: Callable, *, tta: str = "none",
            hflip: bool = True, vflip: bool = False, desc: str = "eval") -> list[dict]:
    """Scores of each model in `models` for every sample of the loader's split, read once for all of them and
    gathered from all processes without duplicates.

    Returns one dict per model: {"index": (N,) sample indices, sorted, "scores": (N, ...) numpy, "bad_indices":
    [skipped samples]}. With test-time augmentation the scores of the views (transforms.tta_views) are averaged. A split
    with no readable image is a DataError that starts with `desc` (which names the split).
    """
    for model in models:
        model.eval()
    indices, scores, bad_indices = [], [[] for _ in models], []
    for batch in tqdm(loader, desc=desc, leave=False, disable=progress_bar_off(accelerator)):
        bad_indices += batch["bad_indices"]
        if not check_batch(batch):
            continue
        views = [model_input({**batch, "image": view})
                 for view in transforms.tta_views(batch["image"], tta, hflip=hflip, vflip=vflip)]
        gathered_index = None
        for model, collected in zip(models, scores):
            with accelerator.autocast():
                mean_scores = torch.stack([outputs.scores(model(view)) for view in views]).mean(0)
            gathered_index, gathered = accelerator.gather_for_metrics((batch["index"], mean_scores))
            collected.append(gathered.cpu())
        indices.append(gathered_index.cpu())
    if not indices:
        if not bad_indices:
            raise errors.DataError(f"{desc}: this split has no images to score; check the split file")
        raise errors.DataError(f"{desc}: none of this split's images can be read (all {len(bad_indices)} failed to "
                               f"decode and were skipped under --skip-bad-images), so nothing is left to score; "
                               f"repair or replace the files (train.py --verify-images lists them all)")
    index = torch.cat(indices).numpy()
    order = np.argsort(index, kind="stable")  # sample order, whatever the processes and workers did
    return [{"index": index[order], "scores": torch.cat(collected).numpy()[order], "bad_indices": bad_indices}
            for collected in scores]
