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
"""
from __future__ import annotations

import math
import re
import shlex
import sys
from pathlib import Path

from common import errors, runrecord
from sweep import estimate
from sweep.runner import form_packs
from sweep.state import Entry, live_holder, read_manifest, record_of

GRID_PY = Path(__file__).resolve().parents[1] / "grid.py"
TIME_LIMIT = re.compile(r"^(\d+-)?\d{1,2}(:\d{2}){0,2}$")


def array_tasks(packs: list[list[Entry]], max_array_size: int) -> list[list[list[Entry]]]:
    """The packs each array task runs: one per task, or, when there are more packs than Slurm's MaxArraySize allows
    array tasks, the packs dealt out in turn to max_array_size tasks (each then runs its packs one after another;
    dealing, not cutting in blocks, mixes the groups so the tasks take about as long as each other)."""
    count = min(len(packs), max_array_size)
    return [packs[i::count] for i in range(count)]


def sbatch_script(packs: list[list[Entry]], manifest: Path, *, partition: str | None, gpus_per_run: int,
                  max_parallel: int, max_array_size: int, time_limit: str, cpus_per_run: int, job_name: str,
                  logs: Path, extra: list[str]) -> str:
    """The job-array script: array task i runs the packs of array_tasks(...)[i], one `grid.py run` each."""
    if not packs:
        raise errors.UsageError("no pending runs in the manifest: nothing to submit (grid.py status shows them)")
    if not TIME_LIMIT.match(time_limit):
        raise errors.UsageError(f"--time {time_limit}: not a Slurm time limit (e.g. 24:00:00 or 2-00:00:00)")
    tasks = array_tasks(packs, max_array_size)
    cwd = packs[0][0].cwd
    header = [f"--job-name={job_name}", f"--array=0-{len(tasks) - 1}%{max_parallel}", "--requeue",
              "--signal=B:TERM@120", f"--time={time_limit}", "--ntasks=1", f"--cpus-per-task={cpus_per_run}",
              f"--chdir={cwd}", f"--output={logs}/%x-%A_%a.out", "--open-mode=append"]
    if partition:
        header.append(f"--partition={partition}")
    if gpus_per_run:
        header.append(f"--gres=gpu:{gpus_per_run}")
    header += extra
    grid = [sys.executable, str(GRID_PY), "run", "--manifest", str(manifest.resolve()), "--slots", "1",
            "--gpus-per-run", str(max(gpus_per_run, 1))]
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


def write_script(manifest: str, *, partition: str | None, gpus_per_run: int, cpus_per_run: int, max_parallel: int,
                 max_array_size: int, time_limit: str, pack: str, gpu_memory: float, throughput: str | None,
                 job_name: str, logs: str, extra: list[str], stale_after: float) -> int:
    """grid.py slurm: print the job-array script of the manifest's pending runs (and a summary on stderr)."""
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
            [e.config for e in members], int(gpu_memory * 2**30), measured) if gpus_per_run else 1
        packs += form_packs(members, size)
    logs = Path(logs).resolve()
    script = sbatch_script(packs, Path(manifest), partition=partition,
                                      gpus_per_run=gpus_per_run, max_parallel=max_parallel,
                                      max_array_size=max_array_size, time_limit=time_limit,
                                      cpus_per_run=cpus_per_run, job_name=job_name, logs=logs,
                                      extra=extra)
    logs.mkdir(parents=True, exist_ok=True)  # Slurm opens the output files before the script runs
    print(script, end="")
    tasks = min(len(packs), max_array_size)
    print(f"grid.py: {len(todo)} runs to do in {len(packs)} packs, {tasks} array tasks "
          f"({len(entries) - len(todo) - len(held)} finished, {len(held)} running elsewhere and left out)",
          file=sys.stderr)
    if len(packs) > tasks:
        fewest, most = len(packs) // tasks, math.ceil(len(packs) / tasks)
        print(f"grid.py: {len(packs)} packs are more than --max-array-size {tasks} (Slurm's MaxArraySize): each array "
              f"task runs {fewest if fewest == most else f'{fewest} or {most}'} packs one after another",
              file=sys.stderr)
    return 0
