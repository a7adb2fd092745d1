"""engine.train_one_epoch: divergence is caught in the epoch where it happens, without a host sync per step;
engine.predict on a split with nothing to score."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from accelerate import Accelerator

from augment import transforms
from common import errors
from common.runrecord import RunFiles
from data import open_dataset
from data.synthetic import write_fixture
from training import engine
from training.run import TrainRun, current_random_state


class BreaksAfter(torch.nn.Module):
    """A linear classifier whose output turns NaN from its `after`-th training call on."""

    def __init__(self, after: int):
        super().__init__()
        self.linear, self.calls, self.after = torch.nn.Linear(3 * 4 * 4, 2), 0, after

    def forward(self, x):
        self.calls += 1
        out = self.linear(x.flatten(1))
        return out * float("nan") if self.calls >= self.after else out


def batches(count: int) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    return [{"image": torch.randint(0, 256, (4, 3, 4, 4), dtype=torch.uint8, generator=generator),
             "label": torch.tensor([0, 1, 0, 1]), "index": torch.arange(4), "bad_indices": [], "fatal": None}
            for _ in range(count)]


def make_run(tmp_path, name: str, after: int, accelerator) -> TrainRun:
    model = BreaksAfter(after)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 3)
    return TrainRun(None, RunFiles(tmp_path, name), model, optimizer, scheduler, accelerator,
                    random_state=current_random_state(accelerator.device))


def model_input(batch):
    return engine.to_model_input(batch["image"], (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), False)


def test_divergence_is_caught_in_its_own_epoch_and_alone(tmp_path):
    accelerator = Accelerator(cpu=True)
    steps = 60  # more than two looks (every 25 steps) per epoch
    healthy = make_run(tmp_path, "healthy", after=10**9, accelerator=accelerator)
    mid_epoch = make_run(tmp_path, "mid", after=steps + 30, accelerator=accelerator)  # epoch 2, step 30
    last_step = make_run(tmp_path, "last", after=2 * steps + steps, accelerator=accelerator)  # epoch 3, last step
    runs = [healthy, mid_epoch, last_step]
    for epoch in (1, 2, 3):
        for run in runs:
            run.start_epoch()
        engine.train_one_epoch([r for r in runs if r.diverged_at is None], batches(steps), accelerator,
                               engine.Outputs("multiclass"), model_input, epoch=epoch)
        if epoch == 1:
            assert all(run.diverged_at is None for run in runs)
    assert healthy.diverged_at is None and torch.isfinite(healthy.loss_sum)
    assert mid_epoch.diverged_at == "non-finite training loss at epoch 2 (seen at step 50)"
    assert last_step.diverged_at == "non-finite training loss at epoch 3 (seen at step 60)"
    assert mid_epoch.model.calls == 2 * steps - 10  # it stopped training at the look after step 30 of epoch 2


def test_stop_request_ends_the_epoch_at_that_step(tmp_path):
    accelerator = Accelerator(cpu=True)
    run = make_run(tmp_path, "run", after=10**9, accelerator=accelerator)
    run.start_epoch()
    requests = iter([False] * 6 + [True] * 100)
    totals = engine.train_one_epoch([run], batches(20), accelerator, engine.Outputs("multiclass"), model_input,
                                    epoch=1, should_stop=lambda: next(requests))
    assert totals["stopped_at"] == 7 and run.samples == 28


def predict_split(samples, indices) -> list[dict]:
    dataset = engine.SampleDataset(samples, indices, transforms.eval_transform(4), skip_bad_images=True)
    loader = engine.make_loader(dataset, 4, False, 0)
    return engine.predict([torch.nn.Linear(3 * 4 * 4, 5)], loader, Accelerator(cpu=True), engine.Outputs("ordinal"),
                          lambda batch: model_input(batch).flatten(1), desc="eval val")


def test_a_split_with_no_readable_image_is_a_data_error_naming_it(tmp_path):
    root = write_fixture("aptos", tmp_path / "aptos", per_class=2)
    samples = open_dataset("aptos", root)
    assert len(predict_split(samples, np.arange(3))[0]["index"]) == 3
    for image in sorted((root / "train_images").iterdir()):  # pass the up-front header check, fail to decode
        image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    with pytest.raises(errors.DataError, match=r"^eval val: none of this split's images can be read \(all 3 failed"
                                               r".*--skip-bad-images.*--verify-images") as error:
        predict_split(samples, np.arange(3))
    assert "\n" not in str(error.value)
    with pytest.raises(errors.DataError, match="^eval val: this split has no images to score"):
        predict_split(samples, np.arange(0))


def test_packed_runs_hold_no_gradients_between_steps(tmp_path):
    """Each run's gradients are freed right after its step: N packed runs would otherwise keep N sets."""
    accelerator = Accelerator(cpu=True)
    runs = [make_run(tmp_path, name, after=10**9, accelerator=accelerator) for name in ("a", "b")]
    for run in runs:
        run.start_epoch()
    engine.train_one_epoch(runs, batches(3), accelerator, engine.Outputs("multiclass"), model_input, epoch=1)
    assert all(p.grad is None for run in runs for p in run.model.parameters())
    assert all(run.model.linear.weight.abs().sum() > 0 for run in runs)


def test_normalisation_constants_are_made_once_per_device():
    images = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    first = transforms.normalize(images, [0.5, 0.4, 0.3], [0.2, 0.2, 0.2])
    made = transforms._scale_255.cache_info().misses
    again = transforms.normalize(images, [0.5, 0.4, 0.3], [0.2, 0.2, 0.2])
    assert torch.equal(first, again) and transforms._scale_255.cache_info().misses == made
    expected = (images.float() / 255 - torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)) / 0.2
    assert torch.allclose(first, expected, atol=1e-5)
