"""One configuration's run inside train.py: its files, model, optimizer, scheduler, random stream, progress, record,
and how it is built (build_run: the model initialised right after set_seed, the optimizer, the schedule).

train.py trains one configuration, or several configurations of one model on one dataset in one process ("packed":
`--lr 0.1 0.01 --wd 1e-4 1e-5`), on the same batches. Each configuration is a TrainRun with its own run id, record,
predictions and training state, and its own random stream (dropout, stochastic depth), so that it trains exactly as
if it had run alone: its model is initialised right after `set_seed(seed)`, as a lone run's is, and the global
random state is swapped in and out around each of its steps.

Files of run <id> under --out:
    <id>.json                      the record (atomic writes; read by grid.py status, evaluate.py, analyze.py)
    <id>/predictions-<split>.npz   the best epoch's per-sample predictions
    <id>/best.safetensors          the best epoch's weights (--save-weights best)
    <id>/state/                    the latest training state, removed when the run completes

The state folder holds the model (safetensors), optimizer and scheduler state dicts, each process's random state,
progress.json and the best epoch's files. A new state is written to state.new and swapped in with renames, so a
kill at any moment leaves one whole state; the best files are published into the run folder by hard links.
"""
from __future__ import annotations

import io
import os
import shutil
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import torch
from safetensors.torch import load_file as load_safetensors
from accelerate.utils import set_seed
from safetensors.torch import save as safetensors_bytes

import networks
import records

BEST_PREFIX = "best-epoch-"  # state files that are the best epoch's weights and predictions
MODEL, OPTIMIZER, SCHEDULER, SCALER, PROGRESS = "model.safetensors", "optimizer.pt", "scheduler.pt", "scaler.pt", \
    "progress.json"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)  # no second copy of the weights on disk
    except OSError:  # file systems without hard links
        shutil.copyfile(source, target)


class RunFiles:
    """Where one run keeps its files (see the module docstring)."""

    def __init__(self, out: str | Path, run_id: str):
        self.record = Path(out) / f"{run_id}.json"
        self.folder = Path(out) / run_id
        self.state = self.folder / "state"

    def existing_state(self) -> Path | None:
        # A kill between the two renames of a state swap leaves the previous state as state.old.
        for candidate in (self.state, self.state.with_suffix(".old")):
            if (candidate / PROGRESS).exists():
                return candidate
        return None

    def publish_best(self) -> None:
        """Link the state's best files into the run folder, each replacing its old version atomically."""
        for source in sorted(self.state.glob(f"{BEST_PREFIX}*")):
            target = self.folder / source.name.removeprefix(BEST_PREFIX)
            if target.exists() and os.path.samefile(source, target):
                continue  # already published (os.replace of a link to the same file would leave the link behind)
            temporary = target.with_name(f".{target.name}.link")
            temporary.unlink(missing_ok=True)
            link_or_copy(source, temporary)
            os.replace(temporary, target)

    def remove_state(self) -> None:
        """A finished run keeps its record, predictions and (if saved) best weights; the state goes."""
        for folder in (self.state, self.state.with_suffix(".new"), self.state.with_suffix(".old")):
            shutil.rmtree(folder, ignore_errors=True)


class TrainRun:
    """One configuration being trained: see the module docstring.

    `progress` is what a resume needs besides the tensors (epoch, history, best, partial epoch, bad images);
    `record` is the run record without the parts `write_record` fills in from `progress`.
    """

    def __init__(self, config: dict, files: RunFiles, model, optimizer, scheduler, accelerator, *,
                 random_state: dict, head_modules: list[torch.nn.Module] | None = None):
        self.config, self.run_id, self.files = config, config["run_id"], files
        self.model, self.optimizer, self.scheduler, self.accelerator = model, optimizer, scheduler, accelerator
        self.progress = {"epoch": 0, "history": [], "best": None, "predictions": {}, "partial": None,
                         "bad_images": []}
        self.record: dict = {}
        self.model_info: dict = {}
        self.random_state = random_state
        self.loss_sum, self.samples, self.seconds_before = 0.0, 0, 0.0
        self.diverged_at: str | None = None
        # A linear probe trains these alone: the rest of the network stays in eval mode (frozen BatchNorm
        # statistics, no dropout), so the backbone is exactly the one it started from.
        self.head_modules = head_modules

    @staticmethod
    def current_random_state(device: torch.device) -> dict:
        return _random_state(device)

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
            self.random_state = _random_state(self.accelerator.device)

    def start_epoch(self, carried: dict | None) -> None:
        """Reset the running loss, or carry on a partial epoch's sums (main process only: they were summed) and its
        training time so far."""
        carried = carried if carried and self.accelerator.is_main_process else {}
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
        records.atomic_write_bytes(new / f"random-{accelerator.process_index}.pt", _tensor_bytes(self.random_state))
        accelerator.wait_for_everyone()  # every process's random state is in before the folder is swapped in
        if accelerator.is_main_process:
            records.atomic_write_bytes(new / MODEL, self.weights_bytes())
            records.atomic_write_bytes(new / OPTIMIZER, _tensor_bytes(self.optimizer.state_dict()))
            records.atomic_write_bytes(new / SCHEDULER, _tensor_bytes(self.scheduler.state_dict()))
            if accelerator.scaler is not None:
                records.atomic_write_bytes(new / SCALER, _tensor_bytes(accelerator.scaler.state_dict()))
            if best_files is not None:
                for name, write in best_files.items():
                    write(new / f"{BEST_PREFIX}{name}")
            else:
                for previous in state.glob(f"{BEST_PREFIX}*"):
                    link_or_copy(previous, new / previous.name)
            records.atomic_write_json(new / PROGRESS, self.progress)
            shutil.rmtree(old, ignore_errors=True)
            if state.exists():
                state.rename(old)
            new.rename(state)
            shutil.rmtree(old, ignore_errors=True)
            self.files.publish_best()
        accelerator.wait_for_everyone()

    def restore(self) -> bool:
        """Load the latest saved state, if there is one; True when the run resumes."""
        folder = self.files.existing_state()
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
        self.progress = records.read_json(folder / PROGRESS)
        if self.accelerator.is_main_process and folder == self.files.state:
            self.files.publish_best()  # a kill may have come between the state swap and the links
        return True

    def weights_bytes(self) -> bytes:
        model = self.accelerator.unwrap_model(self.model)
        state_dict = getattr(model, "_orig_mod", model).state_dict()  # saved without torch.compile's prefix
        return safetensors_bytes({k: v.detach().cpu().contiguous() for k, v in state_dict.items()})

    # -- record --------------------------------------------------------------------------------------------------
    def write_record(self, sample_ids: list[str], **changes) -> None:
        progress = self.progress
        self.record.update(history=progress["history"], best=progress["best"], predictions=progress["predictions"],
                           skipped_bad_images=len(progress["bad_images"]),
                           bad_image_ids=[sample_ids[i] for i in progress["bad_images"]], **changes)
        if self.accelerator.is_main_process:
            records.atomic_write_json(self.files.record, self.record)

    def release(self) -> None:
        """Drop this run's references once it trains no more in a pack (diverged, paused, finished). Its device
        memory is freed when the command ends: the Accelerator keeps the prepared model and optimizer too."""
        self.model = self.optimizer = self.scheduler = None


def _random_state(device: torch.device) -> dict:
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

def build_run(config: dict, args, samples, accelerator, channels_last: bool) -> TrainRun:
    """One configuration's model (initialised right after set_seed, as a lone run's), optimizer and scheduler."""
    spec = samples.spec
    set_seed(args.seed)
    num_outputs = 1 if args.head == "regression" else spec.num_classes
    model, info = networks.create_model(args.model, num_outputs, weights=args.weights, pool=args.pool,
                                        in_chans=samples.num_channels)
    random_state = TrainRun.current_random_state(accelerator.device)  # before anything else draws from it
    if config.get("init_from"):  # LP-FT's fine-tuning starts from the best probe's weights
        probe_weights = RunFiles(args.out, config["init_from"]).folder / "best.safetensors"
        networks.load_trained_weights(model, probe_weights)
    head_only = config.get("lp_ft_phase") == "probe"
    heads = None
    if head_only:  # the linear probe: only the fresh head learns
        head = set(info["head_parameters"])
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(name in head)
        heads = head_modules(model, info)  # named on the bare model, before compile/DDP add prefixes
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if args.compile:
        model = torch.compile(model)
    optimizer = build_optimizer([p for p in model.parameters() if p.requires_grad], config)
    scheduler = build_scheduler(optimizer, config)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    run = TrainRun(config, RunFiles(args.out, config["run_id"]), model, optimizer, scheduler, accelerator,
                   random_state=random_state, head_modules=heads)
    run.model_info = info
    return run


def head_modules(model, info: dict) -> list[torch.nn.Module]:
    names = {key.rsplit(".", 1)[0] for key in info["head_parameters"]}
    return [module for name, module in model.named_modules() if name in names]


def build_optimizer(parameters, config: dict) -> torch.optim.Optimizer:
    if config["optimizer"] == "sgd":
        return torch.optim.SGD(parameters, lr=config["lr"], momentum=0.9, nesterov=True, weight_decay=config["wd"])
    # The paper's code passed wd/lr to AdamW, whose decay is multiplied by lr again: the effective decay is wd.
    decay = config["wd"] / config["lr"] if config["wd_convention"] == "paper" else config["wd"]
    return torch.optim.AdamW(parameters, lr=config["lr"], weight_decay=decay)


def build_scheduler(optimizer: torch.optim.Optimizer, config: dict):
    if config["schedule"] == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config["epochs"])
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=config["milestones"], gamma=0.1)
