"""The shared loop: datasets and loaders over `Samples`, one training epoch, and prediction on a split.

train.py and evaluate.py both go through here, so a number is computed the same way whichever script made it.

Determinism: the data order of an epoch comes from a generator seeded with (seed, epoch), and each sample's
augmentation from a seed derived from (seed, epoch, sample index). Neither depends on the worker count, the
worker that happened to load the sample, or what ran before, so a run resumed after epoch k sees exactly the
batches an uninterrupted run would.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

import transforms
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
    With skip_bad_images, an unreadable image yields {"bad": index}, which `collate` drops and reports in
    "bad_indices"; otherwise its BadImageError (naming the file) stops the run.
    """

    def __init__(self, samples: Samples, indices: np.ndarray, transform, seed: int = 0,
                 reader: ImageReader | None = None, skip_bad_images: bool = False):
        self.samples, self.indices, self.transform, self.seed = samples, np.asarray(indices), transform, seed
        self.reader = reader or samples.read_image
        self.skip_bad_images = skip_bad_images

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, position = key
        index = int(self.indices[position])
        try:
            image = self.reader(index)
        except BadImageError:
            if self.skip_bad_images:
                return {"bad": index}
            raise
        transforms.seed_transform(self.transform, sample_seed(self.seed, epoch, index))
        image = self.transform(image=image)["image"]
        label = self.samples.labels[index]
        return {"image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
                "label": torch.as_tensor(label), "index": index}


def collate(batch: list[dict]) -> dict:
    good = [item for item in batch if "bad" not in item]
    bad_indices = [item["bad"] for item in batch if "bad" in item]
    if not good:
        return {"image": None, "label": None, "index": None, "bad_indices": bad_indices}
    return {"image": torch.stack([item["image"] for item in good]),
            "label": torch.stack([item["label"] for item in good]),
            "index": torch.tensor([item["index"] for item in good]),
            "bad_indices": bad_indices}


def single_threaded_worker(_: int) -> None:
    # Each worker is already one of many processes: OpenCV's own thread pool would only make them compete.
    cv2.setNumThreads(1)


def make_loader(dataset: SampleDataset, batch_size: int, shuffle: bool, workers: int, seed: int = 0,
                drop_last: bool = False, pin_memory: bool = False) -> DataLoader:
    # The loader's own generator: creating an iterator draws a worker base seed from it, not from the global
    # RNG that dropout uses, so the worker count and a resume leave training's random numbers untouched.
    return DataLoader(dataset, batch_size=batch_size, sampler=EpochSampler(len(dataset), seed, shuffle),
                      generator=torch.Generator().manual_seed(seed),
                      num_workers=workers, collate_fn=collate, drop_last=drop_last, pin_memory=pin_memory,
                      persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None,
                      worker_init_fn=single_threaded_worker if workers > 0 else None)


@dataclass
class Outputs:
    """How a head's raw outputs become scores (see metrics.py) and a loss."""
    task: str
    regression: bool = False
    label_smoothing: float = 0.0

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.regression:  # ordinal grades as a continuous target (the APTOS winners' choice)
            return F.smooth_l1_loss(logits.squeeze(1).float(), labels.float())
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


class NonFiniteLoss(RuntimeError):
    pass


def to_model_input(images: torch.Tensor, mean, std, channels_last: bool) -> torch.Tensor:
    x = transforms.normalize(images, mean, std)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def train_one_epoch(model, loader, optimizer, accelerator, outputs: Outputs, mean, std, *, epoch: int,
                    channels_last: bool = False, start_step: int = 0, totals: dict | None = None,
                    should_stop: Callable[[], bool] = lambda: False) -> dict:
    """Train for one epoch (from `start_step` when resuming mid-epoch) and return the epoch's totals.

    Raises NonFiniteLoss at the first non-finite loss. Returns early with totals["stopped_at"] set to the
    step count when `should_stop()` turns true (SIGTERM), so the caller can save a mid-epoch state.
    """
    model.train()
    totals = dict(totals or {"loss_sum": 0.0, "samples": 0, "seconds": 0.0})
    totals.pop("stopped_at", None)
    bad_indices: list[int] = []
    started = time.perf_counter()
    bar = tqdm(total=len(loader), initial=start_step, desc=f"epoch {epoch} train", leave=False,
               disable=not accelerator.is_local_main_process)
    step = start_step
    for batch in loader:
        step += 1
        bad_indices += batch["bad_indices"]
        if batch["image"] is None:  # every image of the batch unreadable (--skip-bad-images, one process only)
            bar.update(1)
            continue
        with accelerator.autocast():
            logits = model(to_model_input(batch["image"], mean, std, channels_last))
            loss = outputs.loss(logits, batch["label"])
        loss_value = loss.item()  # the step's one host sync: for the log and the divergence check
        diverged, stop = agreed_flags(accelerator, not math.isfinite(loss_value), should_stop())
        if diverged:
            raise NonFiniteLoss(f"non-finite training loss ({loss_value}) at epoch {epoch}, step {step}")
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        optimizer.step()
        totals["loss_sum"] += loss_value * len(batch["label"])
        totals["samples"] += len(batch["label"])
        bar.update(1)
        if stop and step < len(loader) + start_step:
            totals["stopped_at"] = step
            break
    bar.close()
    totals["seconds"] += time.perf_counter() - started
    totals["bad_indices"] = bad_indices
    return totals


def agreed_flags(accelerator, *flags: bool) -> list[bool]:
    """Each flag true if it is true on any process, so that all processes stop or diverge at the same step."""
    if accelerator.num_processes == 1:  # no collective on the single-process hot path
        return [bool(flag) for flag in flags]
    summed = sum_over_processes(accelerator, dict(enumerate(flags)))
    return [summed[i] > 0 for i in range(len(flags))]


def sum_over_processes(accelerator, values: dict) -> dict:
    """Sum per-process counters (loss sums, sample counts) so that every process reports the whole epoch."""
    keys = sorted(values)
    summed = accelerator.reduce(torch.tensor([float(values[k]) for k in keys], device=accelerator.device), "sum")
    return dict(zip(keys, summed.tolist()))


@torch.no_grad()
def predict(model, loader, accelerator, outputs: Outputs, mean, std, *, channels_last: bool = False,
            tta: str = "none", hflip: bool = True, vflip: bool = False, desc: str = "eval") -> dict:
    """Scores for every sample of the loader's split, gathered from all processes without duplicates.

    Returns {"index": (N,) sample indices, "scores": (N, ...) numpy, "bad_indices": [skipped samples]}. With test-time
    augmentation the scores of the views (transforms.tta_views) are averaged.
    """
    model.eval()
    all_indices, all_scores, bad_indices = [], [], []
    for batch in tqdm(loader, desc=desc, leave=False, disable=not accelerator.is_local_main_process):
        bad_indices += batch["bad_indices"]
        if batch["image"] is None:
            continue
        views = transforms.tta_views(batch["image"], tta, hflip=hflip, vflip=vflip)
        with accelerator.autocast():
            scores = torch.stack([outputs.scores(model(to_model_input(view, mean, std, channels_last)))
                                  for view in views]).mean(0)
        indices, scores = accelerator.gather_for_metrics((batch["index"], scores))
        all_indices.append(indices.cpu())
        all_scores.append(scores.cpu())
    if not all_indices:
        raise RuntimeError(f"{desc}: no readable images in this split")
    return {"index": torch.cat(all_indices).numpy(), "scores": torch.cat(all_scores).numpy(),
            "bad_indices": bad_indices}
