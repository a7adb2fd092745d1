"""A Slurm job-array script for a manifest's runs (grid.py slurm ... > study.sbatch; sbatch study.sbatch).

Array task i runs the i-th pack of pending runs (named in the script, so the mapping never changes after
submission) through `grid.py run --runs ...`: the same locks, skips, resumes and launch log as a local grid. Slurm
refuses arrays of more than MaxArraySize tasks (1001 unless the cluster sets it: `scontrol show config | grep
MaxArraySize`); with more packs than --max-array-size, each task runs several packs, one `grid.py run` after another.
`--signal=B:TERM@120` asks Slurm to send SIGTERM to the batch script two minutes before the time limit; the script
hands it to grid.py, which hands it to train.py, which saves a mid-epoch state and exits 143; the script then
requeues its own task (`--requeue`; Slurm holds a requeued task for about two minutes), and the requeued task
resumes the run where it stopped. A task cancelled with `scancel` stops the same way but stays cancelled:
`scontrol requeue JOB_TASK` resumes it, and so does a new script, which holds only the runs still to do.

Before writing anything, the request is checked against the partition's nodes as `sinfo` reports them: a task's
GPUs, CPUs and memory must fit on one node, or grid.py refuses in one line; the defaults left open (GPUs, CPUs) are
filled in with what the nodes have. Where `sinfo` cannot be asked (no Slurm on this machine), the script is written
unchecked and grid.py says so. The options given reach `grid.py run` in the script as they are.
"""
from __future__ import annotations

import math
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from common import errors, runrecord
from sweep import estimate
from sweep.packs import form_packs
from sweep.state import Entry, live_holder, read_manifest, record_of

GRID_PY = Path(__file__).resolve().parents[1] / "grid.py"
TIME_LIMIT = re.compile(r"^(\d+-)?\d{1,2}(:\d{2}){0,2}$")


DEFAULT_GPUS, DEFAULT_CPUS = 1, 8  # a task's request when the partition's nodes cannot be read (CPUs: loader workers)
MEMORY = re.compile(r"^(\d+)([KMGT]?)B?$", re.IGNORECASE)


@dataclass(frozen=True)
class Node:
    """One node of a partition, as sinfo reports it."""
    name: str
    cpus: int
    memory_mb: int
    gpus: int
    state: str


def gpu_count(gres: str) -> int:
    """The GPUs of sinfo's %G field: "gpu:4", "gpu:a100:4(S:0-1)", several entries separated by commas, "(null)"."""
    total = 0
    for entry in re.split(r",(?![^(]*\))", gres):
        fields = entry.split("(")[0].split(":")
        if fields[0] == "gpu" and len(fields) > 1 and fields[-1].isdigit():
            total += int(fields[-1])
    return total


def read_partition(partition: str | None) -> tuple[str, list[Node]] | str:
    """(the partition's name, its nodes) from sinfo, the cluster's default partition when `partition` is None; or,
    when Slurm cannot be asked from here, why not. A partition the cluster does not have is a UsageError."""
    configuration = os.environ.get("SLURM_CONF")
    if configuration and not Path(configuration).is_file():  # sinfo would retry for a minute before failing
        return f"SLURM_CONF={configuration} does not exist"
    try:
        found = subprocess.run(["sinfo", "--noheader", "--Node", "--format=%N|%c|%m|%G|%t|%P"], capture_output=True,
                               text=True, timeout=30)
    except FileNotFoundError:
        return "sinfo is not installed here"
    except (OSError, subprocess.SubprocessError) as error:
        return f"sinfo failed ({error})"
    if found.returncode != 0:
        return f"sinfo failed: {(found.stderr.strip().splitlines() or ['no output'])[-1]}"
    nodes: dict[str, list[Node]] = {}
    default = None
    for line in found.stdout.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 6:
            continue
        name, cpus, memory, gres, state, part = fields
        if part.endswith("*"):
            part = default = part[:-1]
        nodes.setdefault(part, []).append(Node(name, int(cpus), int(memory.rstrip("+")), gpu_count(gres), state))
    chosen = partition or default
    if chosen is None:
        raise errors.UsageError("the cluster has no default partition: name one with --partition "
                                f"({', '.join(sorted(nodes)) or 'sinfo lists none'})")
    if chosen not in nodes:
        raise errors.UsageError(f"--partition {chosen}: the cluster has no such partition (sinfo lists "
                                f"{', '.join(sorted(nodes)) or 'none'})")
    return chosen, nodes[chosen]


def memory_mb(text: str) -> int:
    """Slurm's --mem syntax (a number of megabytes, or with a K, M, G or T suffix) in megabytes."""
    match = MEMORY.match(text.strip())
    if not match:
        raise errors.UsageError(f"--mem {text}: not a Slurm memory size (e.g. 64G or 16000)")
    factor = {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024**2}[match[2].upper()]
    return math.ceil(int(match[1]) * factor)


@dataclass(frozen=True)
class Request:
    """What each array task asks of a node."""
    gpus: int
    cpus: int
    memory: str | None  # Slurm's --mem, or None for the cluster's default

    def text(self) -> str:
        return (f"{self.gpus} GPU(s), {self.cpus} CPU(s)" + (f", {self.memory} of memory" if self.memory else ""))


def fit_request(partition: str | None, gpus: int | None, cpus: int | None, memory: str | None) -> Request:
    """The task's request for `partition`: the defaults left open filled in from its nodes (GPUs when they have
    them, else none; CPUs up to DEFAULT_CPUS, as many as the nodes with those GPUs hold), and refused in one line
    when no node of the partition can hold it."""
    if memory is not None:
        memory_mb(memory)  # well-formed, whatever the cluster
    found = read_partition(partition)
    if isinstance(found, str):
        request = Request(DEFAULT_GPUS if gpus is None else gpus, DEFAULT_CPUS if cpus is None else cpus, memory)
        print(f"grid.py: {found}: the request ({request.text()} per task) is not checked against the cluster's "
              "nodes", file=sys.stderr)
        return request
    name, nodes = found
    if gpus is None:
        gpus = DEFAULT_GPUS if any(node.gpus for node in nodes) else 0
    if cpus is None:
        with_gpus = [node.cpus for node in nodes if node.gpus >= gpus] or [node.cpus for node in nodes]
        cpus = min(DEFAULT_CPUS, max(with_gpus))
    request = Request(gpus, cpus, memory)
    wanted_mb = memory_mb(memory) if memory else 0
    if not any(node.gpus >= gpus and node.cpus >= cpus and node.memory_mb >= wanted_mb for node in nodes):
        most = (f"at most {max(n.gpus for n in nodes)} GPU(s), {max(n.cpus for n in nodes)} CPUs and "
                f"{max(n.memory_mb for n in nodes):,} MB of memory on one node")
        way_out = ("--gpus-per-run 0 for CPU tasks" if gpus and not any(n.gpus for n in nodes)
                   else "a smaller --gpus-per-run, --cpus-per-run or --mem")
        raise errors.UsageError(f"partition '{name}' cannot hold a task of {request.text()}: its {len(nodes)} node(s) "
                                f"have {most} (sinfo); ask for {way_out}, or choose another --partition")
    return request


def array_tasks(packs: list[list[Entry]], max_array_size: int) -> list[list[list[Entry]]]:
    """The packs each array task runs: one per task, or, when there are more packs than Slurm's MaxArraySize allows
    array tasks, the packs dealt out in turn to max_array_size tasks (each then runs its packs one after another;
    dealing, not cutting in blocks, mixes the groups so the tasks take about as long as each other)."""
    count = min(len(packs), max_array_size)
    return [packs[i::count] for i in range(count)]


def sbatch_script(packs: list[list[Entry]], manifest: Path, *, partition: str | None, request: Request,
                  max_parallel: int, max_array_size: int, time_limit: str, job_name: str, logs: Path,
                  extra: list[str], stale_after: float) -> str:
    """The job-array script: array task i runs the packs of array_tasks(...)[i], one `grid.py run` each."""
    if not packs:
        raise errors.UsageError("no pending runs in the manifest: nothing to submit (grid.py status shows them)")
    tasks = array_tasks(packs, max_array_size)
    cwd = packs[0][0].cwd
    header = [f"--job-name={job_name}", f"--array=0-{len(tasks) - 1}%{max_parallel}", "--requeue",
              "--signal=B:TERM@120", f"--time={time_limit}", "--ntasks=1", f"--cpus-per-task={request.cpus}",
              f"--chdir={cwd}", f"--output={logs}/%x-%A_%a.out", "--open-mode=append"]
    if partition:
        header.append(f"--partition={partition}")
    if request.gpus:
        header.append(f"--gres=gpu:{request.gpus}")
    if request.memory:
        header.append(f"--mem={request.memory}")
    header += extra
    grid = [sys.executable, str(GRID_PY), "run", "--manifest", str(manifest.resolve()), "--slots", "1",
            "--gpus-per-run", str(request.gpus), "--stale-after", f"{stale_after:g}"]
    lines = ["#!/bin/bash", *(f"#SBATCH {shlex.quote(option)}" for option in header),
             f"# {sum(len(p) for p in packs)} runs of {manifest.resolve()} in {len(packs)} packs, {len(tasks)} array "
             "tasks; written by grid.py slurm", "set -u", "RUNS=(  # each task's packs of run ids, separated by |"]
    lines += [f"  {shlex.quote(' | '.join(' '.join(e.run_id for e in pack) for pack in task))}  # task {i}"
              for i, task in enumerate(tasks)]
    lines += [")", "IFS='|' read -ra packs <<< \"${RUNS[$SLURM_ARRAY_TASK_ID]}\"",
              "child= stopping=0 status=0",
              "trap 'stopping=1; [ -n \"$child\" ] && kill -TERM $child 2>/dev/null' TERM",
              "for runs in \"${packs[@]}\"; do  # one pack after another",
              "  if [ $stopping -eq 1 ]; then status=143; break; fi",
              f"  {shlex.join(grid)} --pack $(wc -w <<< \"$runs\") --runs $runs &",
              "  child=$!",
              "  while kill -0 $child 2>/dev/null; do wait $child; done  # a trapped signal ends a wait early",
              "  wait $child; code=$?; child=",
              "  if [ $code -eq 143 ]; then status=143; break; fi",
              "  if [ $code -ne 0 ]; then status=$code; fi  # a pack that failed: the next ones still run",
              "done",
              "task=\"${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}\"",
              "if [ $status -eq 143 ]; then  # stopped with its state saved",
              "  if scontrol show job -o \"$task\" | grep -q JobState=RUNNING; then  # time limit, preemption",
              "    echo \"task $task: requeueing it to resume\"; scontrol requeue \"$task\"",
              "  else  # scancel",
              "    echo \"task $task cancelled: its runs resume when submitted again (grid.py slurm)\"",
              "  fi",
              "fi",
              "exit $status", ""]
    return "\n".join(lines)


def write_script(manifest: str, *, partition: str | None, gpus_per_run: int | None, cpus_per_run: int | None,
                 memory: str | None, max_parallel: int, max_array_size: int, time_limit: str, pack: str,
                 gpu_memory: float, throughput: str | None, job_name: str, logs: str, extra: list[str],
                 stale_after: float) -> int:
    """grid.py slurm: print the job-array script of the manifest's pending runs (and a summary on stderr)."""
    if not TIME_LIMIT.match(time_limit):
        raise errors.UsageError(f"--time {time_limit}: not a Slurm time limit (e.g. 24:00:00 or 2-00:00:00)")
    request = fit_request(partition, gpus_per_run, cpus_per_run, memory)
    entries = read_manifest(manifest)
    todo = [e for e in entries if not runrecord.is_finished(record_of(e))]
    held = [e for e in todo if live_holder(e, stale_after)]
    todo = [e for e in todo if e not in held]
    measured = estimate.load_throughput(throughput) if throughput else None
    groups: dict[tuple, list[Entry]] = {}
    for entry in todo:
        groups.setdefault(entry.group, []).append(entry)
    packs = []
    for members in groups.values():
        size = int(pack) if pack != "auto" else estimate.pack_size(
            [e.config for e in members], int(gpu_memory * 2**30), measured) if request.gpus else 1
        packs += form_packs(members, size)
    logs = Path(logs).resolve()
    script = sbatch_script(packs, Path(manifest), partition=partition, request=request, max_parallel=max_parallel,
                           max_array_size=max_array_size, time_limit=time_limit, job_name=job_name, logs=logs,
                           extra=extra, stale_after=stale_after)
    logs.mkdir(parents=True, exist_ok=True)  # Slurm opens the output files before the script runs
    print(script, end="")
    tasks = min(len(packs), max_array_size)
    print(f"grid.py: {len(todo)} runs to do in {len(packs)} packs, {tasks} array tasks of {request.text()} "
          f"({len(entries) - len(todo) - len(held)} finished, {len(held)} running elsewhere and left out)",
          file=sys.stderr)
    if len(packs) > tasks:
        fewest, most = len(packs) // tasks, math.ceil(len(packs) / tasks)
        print(f"grid.py: {len(packs)} packs are more than --max-array-size {tasks} (Slurm's MaxArraySize): each array "
              f"task runs {fewest if fewest == most else f'{fewest} or {most}'} packs one after another",
              file=sys.stderr)
    return 0
