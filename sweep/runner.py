"""Run a manifest's pending runs on this machine: one per GPU (or several GPUs per run), or N at a time on a CPU.

    python grid.py run --gpus 0,1,2,3         # one run per GPU (CUDA_VISIBLE_DEVICES)
    python grid.py run --gpus 0,1,2,3 --gpus-per-run 2    # accelerate launch --multi_gpu --num_processes 2
    python grid.py run --slots 2              # two at a time, on whatever devices the environment gives

Each run is taken with a lock (grid_state.py), so several `grid.py run` on one shared file system, and Slurm tasks,
never train one run twice at the same time. A run that is complete or diverged is skipped; an interrupted one
(crash, reboot, SIGTERM) resumes from its saved state, since train.py does so by itself; a failed one is retried once
per `grid.py run`. Runs that differ only in optimizer, schedule, learning rate or weight decay can be packed into
one train.py process (--pack) as rectangular sub-products of their grid, e.g. 1 lr x 5 wd.

SIGTERM or Ctrl-C stops every run cleanly (train.py saves a mid-epoch state) and exits with status 143; a later
`grid.py run` resumes them. If this process is killed outright, its train.py processes get SIGTERM from the kernel.
"""
from __future__ import annotations

import ctypes
import math
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from common import cli, errors, fileio, runrecord
from common.provenance import now
from common.runrecord import FINISHED, epochs_done
from nets import models_file, registry
from sweep import estimate
from sweep.halving import halving_state
from sweep.packs import form_packs, pack_argv
from sweep.state import (
    DEFAULT_STALE_AFTER_S,
    HEARTBEAT_S,
    Entry,
    acquire,
    add_processes,
    clear_stale_locks,
    grid_folder,
    live_holder,
    log_event,
    read_manifest,
    record_of,
    release,
    touch,
)
from sweep.status import format_status, status_report

TRAIN_PY = Path(__file__).resolve().parents[1] / "train.py"
STOPPED = (143, -signal.SIGTERM)  # train.py's status after saving a mid-epoch state on SIGTERM


@dataclass
class Slot:
    name: str
    gpus: list[str]          # CUDA_VISIBLE_DEVICES of this slot; empty: leave the environment's devices alone
    processes: int = 1       # > 1: accelerate launch --multi_gpu --num_processes N
    cpu_only: bool = False   # --gpus-per-run 0: the GPUs hidden (CUDA_VISIBLE_DEVICES empty)


@dataclass
class Launch:
    entries: list[Entry]
    until_epoch: int | None
    slot: Slot
    tokens: dict[str, str]
    process: subprocess.Popen | None = None
    output: Path | None = None


def make_slots(gpus: str | None, slots: int, gpus_per_run: int) -> list[Slot]:
    if gpus_per_run == 0:  # CPU runs (a Slurm CPU task, or a GPU machine's CPUs on purpose)
        if gpus:
            raise errors.UsageError(f"--gpus {gpus} with --gpus-per-run 0: give --slots N for runs on the CPU")
        return [Slot(f"cpu slot {i}", [], 1, cpu_only=True) for i in range(slots)]
    if gpus:
        ids = [g.strip() for g in gpus.split(",") if g.strip()]
        if len(ids) < gpus_per_run or len(ids) % gpus_per_run:
            raise errors.UsageError(f"--gpus {gpus}: {len(ids)} GPU(s) cannot be shared out in runs of "
                                    f"--gpus-per-run {gpus_per_run}")
        return [Slot(f"gpu {','.join(ids[i:i + gpus_per_run])}", ids[i:i + gpus_per_run], gpus_per_run)
                for i in range(0, len(ids), gpus_per_run)]
    return [Slot(f"slot {i}", [], gpus_per_run) for i in range(slots)]


def command(slot: Slot, argv: list[str]) -> list[str]:
    if slot.processes > 1:
        with socket.socket() as s:  # a free port for this run's processes to meet on
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
                str(slot.processes), "--main_process_port", str(port), str(TRAIN_PY), *argv]
    return [sys.executable, str(TRAIN_PY), *argv]


def last_error(path: Path) -> str | None:
    """A failed run's error as one line, from what it printed last (for a run that failed before its record)."""
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()
                 if line.strip()]
    except OSError:
        return None
    start = max((i for i, line in enumerate(lines) if "error" in line.lower()), default=len(lines) - 1)
    return " ".join(lines[start:])[:300] if lines else None


def _find_prctl():
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux
        return None


# Looked up here, in the parent: loading a library between fork and exec may deadlock on the loader's lock.
_PRCTL = _find_prctl()


def die_with_parent() -> None:
    """In the child before exec: ask the kernel for SIGTERM when grid.py dies, however it dies (Linux)."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def gpu_memory(slot: Slot) -> int | None:
    """Total memory of the slot's first GPU in bytes (nvidia-smi), or None when it cannot be asked."""
    try:
        found = subprocess.run(["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits", "-i",
                                slot.gpus[0]], capture_output=True, text=True, timeout=30, check=True).stdout
        return int(float(found.split()[0]) * 2**20)
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


@dataclass
class Runner:
    entries: list[Entry]
    slots: list[Slot]
    pack: str = "auto"                   # "auto" or a number
    halving: int | None = None
    retries: int = 1
    stale_after: float = DEFAULT_STALE_AFTER_S
    poll_s: float = 0.5                  # how often running processes are checked
    look_s: float = 5.0                  # how often the records and locks are looked at while nothing ends
    measured: dict | None = None         # --throughput
    failures: Counter = field(default_factory=Counter)
    launches: list[Launch] = field(default_factory=list)
    stop_signal: int = 0

    def __post_init__(self) -> None:
        self.groups: dict[tuple, list[Entry]] = {}
        for entry in self.entries:
            self.groups.setdefault(entry.group, []).append(entry)
        self.slot_memory: dict[str, int | None] = {}  # bytes of each slot's GPU, asked once
        self.cache: dict[str, tuple] = {}

    def record(self, entry: Entry) -> dict | None:
        """The run's record, read again only when the file changed (a grid holds thousands)."""
        try:
            stat = entry.record_path.stat()
        except FileNotFoundError:
            return None
        key = (stat.st_mtime_ns, stat.st_size)
        if self.cache.get(entry.run_id, (None,))[0] != key:
            self.cache[entry.run_id] = (key, record_of(entry))
        return self.cache[entry.run_id][1]

    # -- what to run next --
    def failed_for_good(self) -> set[str]:
        return {run_id for run_id, count in self.failures.items() if count > self.retries}

    def remaining(self, members: list[Entry]) -> tuple[list[Entry], int | None, int]:
        """The group's runs to train now (locked or not), the epoch to stop them at, and how many runs of the group
        may still train (with halving, those still in the race)."""
        found = {e.run_id: self.record(e) for e in members}
        out = self.failed_for_good()
        if self.halving:
            state = halving_state(members, found, self.halving, out)
            return state.work, state.until_epoch, len(state.left(found, out))
        work = [e for e in members if e.run_id not in out
                and not (found[e.run_id] and found[e.run_id]["status"] in FINISHED)]
        return work, None, len(work)

    def pack_size(self, free: list[Entry], slot: Slot) -> int:
        if self.pack != "auto":
            return int(self.pack)
        if not slot.gpus:
            return 1
        if slot.name not in self.slot_memory:
            self.slot_memory[slot.name] = gpu_memory(slot)
        memory = self.slot_memory[slot.name]
        return 1 if memory is None else estimate.pack_size([e.config for e in free], memory, self.measured)

    def take_next(self, slot: Slot) -> Launch | None:
        busy = {e.run_id for launch in self.launches for e in launch.entries}
        for members in self.groups.values():
            work, until_epoch, _ = self.remaining(members)
            free = [e for e in work if e.run_id not in busy and live_holder(e, self.stale_after) is None]
            if not free:
                continue
            for pack in form_packs(free, self.pack_size(free, slot)):
                tokens = {e.run_id: acquire(e, self.stale_after) for e in pack}
                if all(tokens.values()):
                    return Launch(pack, until_epoch, slot, tokens)
                for e in pack:
                    if tokens[e.run_id]:
                        release(e, tokens[e.run_id])
        return None

    def unfinished(self) -> int:
        return sum(self.remaining(members)[2] for members in self.groups.values())

    # -- starting and ending runs --
    def start(self, launch: Launch) -> None:
        first = launch.entries[0]
        argv = command(launch.slot, pack_argv(launch.entries, launch.until_epoch))
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if launch.slot.gpus or launch.slot.cpu_only:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(launch.slot.gpus)
        env.setdefault("OMP_NUM_THREADS", str(max(1, cli.usable_cores() // len(self.slots))))
        name = first.run_id + (f"+{len(launch.entries) - 1}" if len(launch.entries) > 1 else "")
        output = launch.output = grid_folder(first.out, "output") / f"{name}.log"
        for e in launch.entries:
            log_event(e, event="start", from_epoch=epochs_done(record_of(e)), until_epoch=launch.until_epoch,
                      pack=[m.run_id for m in launch.entries], slot=launch.slot.name, output=str(output),
                      command=argv)
        with open(output, "a", encoding="utf-8") as log:
            log.write(f"--- grid.py {now()} {launch.slot.name}: {' '.join(e.run_id for e in launch.entries)}\n"
                      f"{shlex.join(argv)}\n")
            log.flush()
            launch.process = subprocess.Popen(argv, cwd=first.cwd, env=env, stdout=log,
                                              stderr=subprocess.STDOUT, start_new_session=True,
                                              preexec_fn=die_with_parent)
        for e in launch.entries:
            add_processes(e, launch.tokens[e.run_id], [launch.process.pid])
        self.launches.append(launch)
        if self.stop_signal:  # the signal came while it was starting
            os.killpg(launch.process.pid, signal.SIGTERM)
        tqdm.write(f"start    {name} ({launch.slot.name})" + (f" until epoch {launch.until_epoch}"
                                                            if launch.until_epoch else ""))

    def end(self, launch: Launch, status: int) -> None:
        for e in launch.entries:
            record = record_of(e)
            state = (record or {}).get("status")
            if state in FINISHED or (launch.until_epoch and epochs_done(record) >= launch.until_epoch):
                outcome = state
            elif status in STOPPED or self.stop_signal:
                outcome = "stopped"
            else:
                outcome = runrecord.FAILED
                self.failures[e.run_id] += 1
            error = ((record or {}).get("error") or last_error(launch.output)) if outcome == runrecord.FAILED else None
            log_event(e, event="end", exit=status, outcome=outcome, epoch=epochs_done(record), error=error)
            release(e, launch.tokens[e.run_id])
            tqdm.write(f"{outcome:<8} {e.run_id} (exit {status}, epoch {epochs_done(record)})"
                       + (f": {error} (output: {launch.output})" if outcome == runrecord.FAILED else ""))
        self.launches.remove(launch)

    def annotate_halving(self) -> None:
        """Write into each record of a finished halving what it decided (factor, rungs, where the run stopped)."""
        for members in self.groups.values():
            found = {e.run_id: record_of(e) for e in members}
            state = halving_state(members, found, self.halving, self.failed_for_good())
            if not state.done:
                continue
            for e in members:
                record = found[e.run_id]
                note = state.annotation(e, self.halving)
                if record is None or record.get("halving") == note:
                    continue
                token = acquire(e, self.stale_after)
                if token:
                    record = record_of(e)
                    fileio.atomic_write_json(e.record_path, {**record, "halving": note})
                    release(e, token)

    # -- the loop --
    def on_signal(self, signum: int, _frame) -> None:
        """SIGTERM (also when Slurm sends it twice) or a first Ctrl-C: every run saves its state and stops. A second
        Ctrl-C kills them at once (each then resumes from its last epoch)."""
        again = signum == signal.SIGINT and self.stop_signal == signal.SIGINT
        self.stop_signal = signum
        for launch in self.launches:
            try:  # the whole process group of the run: accelerate's workers too
                os.killpg(launch.process.pid, signal.SIGKILL if again else signal.SIGTERM)
            except ProcessLookupError:
                pass

    def run(self) -> int:
        """Start runs on free slots until none is left to do; 0, 1 if a run failed for good, 143 when stopped."""
        previous = {s: signal.signal(s, self.on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        total = len(self.entries)
        bar = tqdm(total=total, desc="grid", unit="run", dynamic_ncols=True, disable=None)  # off without a terminal
        last_beat, last_look = time.monotonic(), -math.inf
        try:
            while True:
                ended = False
                for launch in list(self.launches):
                    status = launch.process.poll()
                    if status is not None:
                        self.end(launch, status)
                        ended = True
                if self.stop_signal:
                    if not self.launches:
                        return 143
                    time.sleep(0.2)
                    continue
                # Looking at every record costs a second on a 6,840-run grid: look when a run ends, else now and then
                # (runs held by other processes, e.g. another grid.py on the shared file system, end unseen).
                if ended or time.monotonic() - last_look >= self.look_s:
                    last_look = time.monotonic()
                    used = {launch.slot.name for launch in self.launches}
                    for slot in self.slots:
                        if slot.name not in used and not self.stop_signal:
                            launch = self.take_next(slot)
                            if launch is None:
                                break
                            self.start(launch)
                    left = self.unfinished()
                    bar.n = total - left
                    bar.set_postfix(running=sum(len(x.entries) for x in self.launches),
                                    failed=len(self.failed_for_good()))
                    if not left and not self.launches:
                        break
                if time.monotonic() - last_beat > HEARTBEAT_S:
                    for launch in self.launches:
                        for e in launch.entries:
                            touch(e)
                    last_beat = time.monotonic()
                time.sleep(self.poll_s)
            if self.halving:
                self.annotate_halving()
            clear_stale_locks(self.entries, self.stale_after)
        finally:
            bar.close()
            for s, handler in previous.items():
                signal.signal(s, handler)
        return 1 if self.failed_for_good() else 0


def entries_with_ids(entries: list[Entry], run_ids: list[str]) -> list[Entry]:
    known = {e.run_id: e for e in entries}
    missing = [r for r in run_ids if r not in known]
    if missing:
        shown = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
        raise errors.UsageError(f"--runs: {shown} not in the manifest; plan again or check the ids")
    return [known[r] for r in run_ids]


def run_grid(manifest: str, runs: list[str] | None, gpus: str | None, slots: int, gpus_per_run: int, pack: str,
             halving: int | None, retries: int, stale_after: float, throughput: str | None) -> int:
    """grid.py run: train the manifest's pending runs here; 0, 1 if a run failed for good, 143 when stopped."""
    entries = read_manifest(manifest)
    if runs:
        entries = entries_with_ids(entries, runs)
    check_weights([e for e in entries if not runrecord.is_finished(record_of(e))])
    measured = estimate.load_throughput(throughput) if throughput else None
    runner = Runner(entries, make_slots(gpus, slots, gpus_per_run), pack=pack, halving=halving, retries=retries,
                    stale_after=stale_after, measured=measured)
    status = runner.run()
    print(format_status(status_report(entries, stale_after)))
    if status == 143:
        print("grid.py: stopped; the runs saved their state: the same command resumes them", file=sys.stderr)
    return status


def check_weights(entries: list[Entry]) -> None:
    """Every model the pending runs fine-tune from pretrained weights has them here or can download them: checked
    once, before any run starts (a missing one would otherwise fail, and be retried, run after run)."""
    wanted = {(e.config["model"], e.config.get("models_file")) for e in entries
              if e.config.get("weights") == "imagenet"}
    if not wanted:
        return
    from nets import weights  # torch: only when pretrained weights are asked for
    found = []
    for model, models in sorted(wanted, key=str):
        models_file.use(models)
        found.append(registry.get_entry(model))
    weights.check_available(found)
