"""A Slurm job-array script for a manifest's runs (grid.py slurm ... > study.sbatch; sbatch study.sbatch).

Array task i runs the i-th pack of pending runs (named in the script, so the mapping never changes after
submission) through `grid.py run --runs ...`: the same locks, skips, resumes and launch log as a local grid.
`--signal=B:TERM@120` asks Slurm to send SIGTERM to the batch script two minutes before the time limit; the script
hands it to grid.py, which hands it to train.py, which saves a mid-epoch state and exits 143; the script then
requeues its own task (`--requeue`; Slurm holds a requeued task for about two minutes), and the requeued task
resumes the run where it stopped. A task cancelled with `scancel` stops the same way but stays cancelled:
`scontrol requeue JOB_TASK` resumes it, and so does a new script, which holds only the runs still to do.
"""
from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import errors
from grid_state import Entry

GRID_PY = Path(__file__).resolve().parent / "grid.py"
TIME_LIMIT = re.compile(r"^(\d+-)?\d{1,2}(:\d{2}){0,2}$")


def sbatch_script(packs: list[list[Entry]], manifest: Path, *, partition: str | None, gpus_per_run: int,
                  max_parallel: int, time_limit: str, cpus_per_run: int, job_name: str, logs: Path,
                  extra: list[str]) -> str:
    """The job-array script: one array task per pack (packs of one run when not packing)."""
    if not packs:
        raise errors.UsageError("no pending runs in the manifest: nothing to submit (grid.py status shows them)")
    if not TIME_LIMIT.match(time_limit):
        raise errors.UsageError(f"--time {time_limit}: not a Slurm time limit (e.g. 24:00:00 or 2-00:00:00)")
    if max_parallel < 1 or gpus_per_run < 0 or cpus_per_run < 1:
        raise errors.UsageError("--max-parallel and --cpus-per-run must be at least 1, --gpus-per-run at least 0")
    cwd = packs[0][0].cwd
    header = [f"--job-name={job_name}", f"--array=0-{len(packs) - 1}%{max_parallel}", "--requeue",
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
             f"# {sum(len(p) for p in packs)} runs of {manifest.resolve()} in {len(packs)} array tasks; written by "
             "grid.py slurm", "set -u", "RUNS=("]
    lines += [f"  {shlex.quote(' '.join(e.run_id for e in pack))}  # task {i}" for i, pack in enumerate(packs)]
    lines += [")", "runs=${RUNS[$SLURM_ARRAY_TASK_ID]}",
              f"{shlex.join(grid)} --pack $(wc -w <<< \"$runs\") --runs $runs &",
              "child=$!",
              "trap 'kill -TERM $child 2>/dev/null' TERM",
              "while kill -0 $child 2>/dev/null; do wait $child; done  # a trapped signal ends a wait early",
              "wait $child; status=$?",
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
