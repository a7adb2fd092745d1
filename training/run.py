"""One configuration's run inside train.py: its model, optimizer, scheduler, random stream, progress and saved
state, and how it is built (build_run: the model initialised right after set_seed, the optimizer, the schedule).

train.py trains one configuration, or several configurations of one model on one dataset in one process ("packed":
`--lr 0.1 0.01 --wd 1e-4 1e-5`), on the same batches. Each configuration is a TrainRun with its own run id, record,
predictions and training state, and its own random stream (dropout, stochastic depth), so that it trains exactly as
if it had run alone: its model is initialised right after `set_seed(seed)`, as a lone run's is, and the global
random state is swapped in and out around each of its steps.

A run's files are common/runrecord.py's RunFiles (the record, predictions, best weights, the state folder). The
state folder holds the model (safetensors), optimizer and scheduler state dicts, each process's random state,
progress.json and the best epoch's files. A new state is written to state.new and swapped in with renames, so a
kill at any moment leaves one whole state; the best files are published into the run folder by hard links.
"""
from __future__ import annotations

import io
import os
import shutil
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import set_seed
from safetensors.torch import load_file as load_safetensors
from safetensors.torch import save as safetensors_bytes

from common import fileio, runrecord
from common.runrecord import RunFiles
from nets import networks
from training import recipe
from training.config import RunConfig
from training.options import TrainOptions

BEST_PREFIX = "best-epoch-"  # state files that are the best epoch's weights and predictions
MODEL, OPTIMIZER, SCHEDULER, SCALER, PROGRESS = "model.safetensors", "optimizer.pt", "scheduler.pt", "scaler.pt", \
    "progress.json"


def existing_state(files: RunFiles) -> Path | None:
    """The run's latest whole state folder, or None. A kill between the two renames of a state swap leaves the
    previous state as state.old."""
    for candidate in (files.state, files.state.with_suffix(".old")):
        if (candidate / PROGRESS).exists():
            return candidate
    return None


def publish_best(files: RunFiles) -> None:
    """Link the state's best files into the run folder, each replacing its old version atomically."""
    for source in sorted(files.state.glob(f"{BEST_PREFIX}*")):
        target = files.folder / source.name.removeprefix(BEST_PREFIX)
        if target.exists() and os.path.samefile(source, target):
            continue  # already published (os.replace of a link to the same file would leave the link behind)
        temporary = target.with_name(f".{target.name}.link")
        temporary.unlink(missing_ok=True)
        fileio.link_or_copy(source, temporary)
        os.replace(temporary, target)


def remove_state(files: RunFiles) -> None:
    """A finished run keeps its record, predictions and (if saved) best weights; the state goes."""
    for folder in (files.state, files.state.with_suffix(".new"), files.state.with_suffix(".old")):
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Progress:
    """What a resume needs besides the tensors, saved as the state's progress.json."""
    epoch: int = 0                                              # epochs done
    history: list[dict[str, Any]] = field(default_factory=list)  # one entry per epoch (the record's history)
    best: dict[str, Any] | None = None                         # {"epoch", "metrics"} of the best epoch so far
    predictions: dict[str, str] = field(default_factory=dict)  # split -> the best epoch's predictions file
    partial: dict[str, Any] | None = None                      # {"step", "totals"} of an epoch stopped by SIGTERM
    bad_images: list[int] = field(default_factory=list)         # samples skipped as unreadable

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, saved: dict[str, Any]) -> Progress:
        return cls(**saved)

    def note_bad_images(self, indices) -> None:
        """Remember which samples were skipped as unreadable (each once, however many epochs met it)."""
        self.bad_images = sorted(set(self.bad_images) | {int(i) for i in indices})

    @property
    def position(self) -> tuple[int, int]:
        """(epochs done, steps done in the next epoch): runs at the same position train on the same batches."""
        return self.epoch, self.partial["step"] if self.partial else 0


class TrainRun:
    """One configuration being trained: see the module docstring. `record` is the run record as last written
    (training/record.py makes it); `write_record` fills in the parts that come from `progress`."""

    def __init__(self, config: RunConfig | None, files: RunFiles, model, optimizer, scheduler, accelerator, *,
                 random_state: dict, model_info: networks.ModelInfo | None = None,
                 head_modules: list[torch.nn.Module] | None = None):
        self.config, self.run_id, self.files = config, files.run_id, files
        self.model, self.optimizer, self.scheduler, self.accelerator = model, optimizer, scheduler, accelerator
        self.model_info = model_info
        self.progress = Progress()
        self.record: runrecord.RunRecord = {}
        self.random_state = random_state
        self.loss_sum, self.samples, self.seconds_before = 0.0, 0, 0.0
        self.diverged_at: str | None = None
        # A linear probe trains these alone: the rest of the network stays in eval mode (frozen BatchNorm
        # statistics, no dropout), so the backbone is exactly the one it started from.
        self.head_modules = head_modules

    # -- training ------------------------------------------------------------------------------------------------
    def train_mode(self) -> None:
        if self.head_modules is None:
            self.model.train()
            return
        self.model.eval()
        for module in self.head_modules:
            module.train()

    @contextmanager
    def random_stream(self):
        """Swap this run's random state in for the duration of one of its steps."""
        _set_random_state(self.accelerator.device, self.random_state)
        try:
            yield
        finally:
            self.random_state = current_random_state(self.accelerator.device)

    def start_epoch(self) -> None:
        """Reset the running loss, or carry on a partial epoch's sums (main process only: they were summed) and its
        training time so far."""
        partial, self.progress.partial = self.progress.partial, None
        carried = (partial or {}).get("totals") or {}
        carried = carried if self.accelerator.is_main_process else {}
        self.loss_sum, self.samples = float(carried.get("loss_sum", 0.0)), int(carried.get("samples", 0))
        self.seconds_before = float(carried.get("seconds", 0.0))

    # -- state ---------------------------------------------------------------------------------------------------
    def save_state(self, best_files: dict | None = None) -> None:
        """Model, optimizer, scheduler, random states, progress and the best epoch's files, swapped in atomically.

        `best_files` maps file names to writers (path -> None) for a new best epoch; with None the previous best
        files are carried over."""
        accelerator, state = self.accelerator, self.files.state
        new, old = state.with_suffix(".new"), state.with_suffix(".old")
        if accelerator.is_main_process:
            shutil.rmtree(new, ignore_errors=True)
            new.mkdir(parents=True)
        accelerator.wait_for_everyone()
        fileio.atomic_write_bytes(new / f"random-{accelerator.process_index}.pt", _tensor_bytes(self.random_state))
        accelerator.wait_for_everyone()  # every process's random state is in before the folder is swapped in
        if accelerator.is_main_process:
            fileio.atomic_write_bytes(new / MODEL, self.weights_bytes())
            fileio.atomic_write_bytes(new / OPTIMIZER, _tensor_bytes(self.optimizer.state_dict()))
            fileio.atomic_write_bytes(new / SCHEDULER, _tensor_bytes(self.scheduler.state_dict()))
            if accelerator.scaler is not None:
                fileio.atomic_write_bytes(new / SCALER, _tensor_bytes(accelerator.scaler.state_dict()))
            if best_files is not None:
                for name, write in best_files.items():
                    write(new / f"{BEST_PREFIX}{name}")
            else:
                for previous in state.glob(f"{BEST_PREFIX}*"):
                    fileio.link_or_copy(previous, new / previous.name)
            fileio.atomic_write_json(new / PROGRESS, self.progress.to_json())
            shutil.rmtree(old, ignore_errors=True)
            if state.exists():
                state.rename(old)
            new.rename(state)
            shutil.rmtree(old, ignore_errors=True)
            publish_best(self.files)
        accelerator.wait_for_everyone()

    def restore(self) -> bool:
        """Load the latest saved state, if there is one; True when the run resumes."""
        folder = existing_state(self.files)
        if folder is None:
            return False
        device = self.accelerator.device
        # into the module under any torch.compile wrapper: the saved keys have no _orig_mod. prefix
        model = self.accelerator.unwrap_model(self.model)
        getattr(model, "_orig_mod", model).load_state_dict(load_safetensors(folder / MODEL, device=str(device)))
        self.optimizer.load_state_dict(_load(folder / OPTIMIZER, device))
        self.scheduler.load_state_dict(_load(folder / SCHEDULER, "cpu"))
        if self.accelerator.scaler is not None and (folder / SCALER).exists():
            self.accelerator.scaler.load_state_dict(_load(folder / SCALER, "cpu"))
        random_file = folder / f"random-{self.accelerator.process_index}.pt"
        if random_file.exists():
            self.random_state = _load(random_file, "cpu")
        else:  # resumed with more processes than it was saved with
            print(f"{self.run_id}: no saved random state for process {self.accelerator.process_index}; it continues "
                  f"from a fresh one, so dropout draws differ from an uninterrupted run")
        self.progress = Progress.from_json(fileio.read_json(folder / PROGRESS))
        if self.accelerator.is_main_process and folder == self.files.state:
            publish_best(self.files)  # a kill may have come between the state swap and the links
        return True

    def weights_bytes(self) -> bytes:
        model = self.accelerator.unwrap_model(self.model)
        state_dict = getattr(model, "_orig_mod", model).state_dict()  # saved without torch.compile's prefix
        return safetensors_bytes({k: v.detach().cpu().contiguous() for k, v in state_dict.items()})

    # -- record --------------------------------------------------------------------------------------------------
    def write_record(self, sample_ids: list[str], **changes) -> None:
        progress = self.progress
        self.record.update(history=progress.history, best=progress.best, predictions=progress.predictions,
                           skipped_bad_images=len(progress.bad_images),
                           bad_image_ids=[sample_ids[i] for i in progress.bad_images], **changes)
        if self.accelerator.is_main_process:
            fileio.atomic_write_json(self.files.record, self.record)

    def release(self) -> None:
        """Drop this run's references once it trains no more in a pack (diverged, paused, finished). Its device
        memory is freed when the command ends: the Accelerator keeps the prepared model and optimizer too."""
        self.model = self.optimizer = self.scheduler = None


def current_random_state(device: torch.device) -> dict:
    """The global random state (CPU, and the device's on CUDA): what a run swaps in around its steps."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["device"] = torch.cuda.get_rng_state(device)
    return state


def _set_random_state(device: torch.device, state: dict) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "device" in state:
        torch.cuda.set_rng_state(state["device"], device)


def _tensor_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _load(path: Path, device) -> dict:
    return torch.load(path, map_location=device, weights_only=True)


# -- building a run ---------------------------------------------------------------------------------------------

def build_run(config: RunConfig, options: TrainOptions, samples, accelerator, channels_last: bool) -> TrainRun:
    """One configuration's model (initialised right after set_seed, as a lone run's), optimizer and scheduler."""
    set_seed(options.seed)
    num_outputs = 1 if options.head == "regression" else samples.spec.num_classes
    model, info = networks.create_model(options.model, num_outputs, weights=options.weights, pool=options.pool,
                                        in_chans=samples.num_channels)
    initial_state = current_random_state(accelerator.device)  # before anything else draws from it
    if config.init_from:  # LP-FT's fine-tuning starts from the best probe's weights
        networks.load_trained_weights(model, RunFiles(options.out, config.init_from).best_weights)
    heads = None
    if config.lp_ft_phase == "probe":  # the linear probe: only the fresh head learns
        head = set(info.head_parameters)
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(name in head)
        heads = head_modules(model, info)  # named on the bare model, before compile/DDP add prefixes
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if options.compile:
        model = torch.compile(model)
    optimizer = build_optimizer([p for p in model.parameters() if p.requires_grad], config.optimizer, config.lr,
                                config.wd, config.wd_convention)
    scheduler = build_scheduler(optimizer, config.schedule, config.epochs, config.milestones)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    return TrainRun(config, RunFiles(options.out, config.run_id), model, optimizer, scheduler, accelerator,
                    model_info=info, random_state=initial_state, head_modules=heads)


def head_modules(model, info: networks.ModelInfo) -> list[torch.nn.Module]:
    names = {key.rsplit(".", 1)[0] for key in info.head_parameters}
    return [module for name, module in model.named_modules() if name in names]


def build_optimizer(parameters, optimizer: str, lr: float, wd: float, wd_convention: str = "paper"
                    ) -> torch.optim.Optimizer:
    if optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=recipe.SGD_MOMENTUM, nesterov=True, weight_decay=wd)
    # The paper's code passed wd/lr to AdamW, whose decay is multiplied by lr again: the effective decay is wd.
    return torch.optim.AdamW(parameters, lr=lr, weight_decay=wd / lr if wd_convention == "paper" else wd)


def build_scheduler(optimizer: torch.optim.Optimizer, schedule: str, epochs: int, milestones) -> Any:
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(milestones), gamma=recipe.STEP_GAMMA)
