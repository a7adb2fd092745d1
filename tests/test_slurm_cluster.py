"""grid.py against a real local Slurm (tests/slurm_local.py: munge, slurmctld and slurmd on localhost, started once
for this module, when the tests run as root with slurm-wlm and munge installed; otherwise they skip and say why).
The script fits the partition's nodes and sbatch accepts what grid.py fills in; the job array finishes a grid, with
requeued tasks resuming; records keep the Slurm job and array task. The suite's slowest tests: kept few."""
from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from slurm_local import MAX_ARRAY_SIZE, Unavailable, start_cluster
from test_grid import (
    ENV,
    MODELS,
    assert_trained_once,
    grid_py,
    mid_run,
    plan_digits,
    record_of,
    status_json,
    wait_for,
)


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    try:
        cluster = start_cluster(tmp_path_factory.mktemp("slurm"))
    except Unavailable as why:
        pytest.skip(f"no local Slurm: {why}")
    yield cluster
    cluster.stop()


def slurm_grid_py(slurm, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """grid.py with the local cluster's configuration (what sinfo and sbatch read)."""
    return subprocess.run([sys.executable, str(REPO / "grid.py"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env={**ENV, "SLURM_CONF": slurm.env["SLURM_CONF"]})


def submit(slurm, cwd: Path, *options: str, check: bool = True) -> str | subprocess.CompletedProcess:
    """grid.py slurm's script for CPU tasks, submitted: the job id (the sbatch result with check=False)."""
    script = slurm_grid_py(slurm, ["slurm", "--gpus-per-run", "0", "--cpus-per-run", "1", "--max-parallel", "2",
                                   "--time", "30:00", *options], cwd)
    assert script.returncode == 0, script.stderr
    (cwd / "study.sbatch").write_text(script.stdout)
    submitted = slurm.run(["sbatch", "--parsable", "study.sbatch"], cwd=cwd, extra_env=ENV, check=check)
    return submitted.stdout.strip().split(";")[0] if check else submitted


def requeue_now(slurm, job: str, task: str) -> None:
    """Send what Slurm sends before the time limit to one array task, wait for the task to requeue itself, and let
    it start again at once instead of after Slurm's two-minute hold."""
    # scancel may hear "job can not be altered now" once the signal has made the task requeue itself, and then
    # retries for a minute: let it go, check the effect, and stop it
    signaller = subprocess.Popen(["scancel", "--signal=TERM", "--batch", f"{job}_{task}"], env=slurm.env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: slurm.job_states(job).get(task) == "PENDING", 120, f"task {task} requeued by itself")
    signaller.kill()
    signaller.wait()
    slurm.run(["scontrol", "update", f"JobId={job}_{task}", "StartTime=now"])


def test_slurm_array_finishes_the_grid_and_requeued_tasks_resume(slurm, split_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    epochs = 4
    entries = plan_digits(split_file, MODELS, ["0.1", "0.01"], epochs)
    job = submit(slurm, tmp_path)
    # task 0 gets what Slurm sends before the time limit (SIGTERM to the batch script): it requeues itself
    wait_for(lambda: mid_run(entries[:1], epochs), 300, "array task 0 half-way")
    # scancel may hear "job can not be altered now" once the signal has made the task requeue itself, and then
    # retries for a minute: let it go, check the effect, and stop it before it could signal the requeued task
    signaller = subprocess.Popen(["scancel", "--signal=TERM", "--batch", f"{job}_0"], env=slurm.env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # task 1 is cancelled outright: it stops with its state saved and stays cancelled until requeued by hand
    wait_for(lambda: mid_run(entries[1:2], epochs), 300, "array task 1 half-way")
    slurm.run(["scancel", f"{job}_1"])
    wait_for(lambda: slurm.job_states(job).get("0") == "PENDING", 120, "task 0 requeued by itself")
    signaller.kill()
    signaller.wait()
    wait_for(lambda: slurm.job_states(job).get("1") == "CANCELLED", 120, "task 1 cancelled")
    slurm.run(["scontrol", "requeue", f"{job}_1"])
    for task in ("0", "1"):  # skip Slurm's two-minute hold of a requeued task
        slurm.run(["scontrol", "update", f"JobId={job}_{task}", "StartTime=now"])
    wait_for(lambda: not slurm.run(["squeue", "-h", "-j", job], check=False).stdout.strip(), 400,
             "the job array to end", 1)
    for task, entry in enumerate(entries):
        starts = assert_trained_once(entry, epochs)
        assert len(starts) == (2 if entry in entries[:2] else 1)
        # the record keeps the Slurm job and array task that trained it (the last, for a requeued one)
        ids = record_of(entry)["slurm"]
        assert (ids["array_job_id"], ids["array_task_id"], ids["node"]) == (job, str(task), socket.gethostname())
        assert ids["job_id"].isdigit()
    assert len({record_of(entry)["slurm"]["job_id"] for entry in entries}) == 4  # each task is a job of its own
    assert status_json(tmp_path)["totals"]["complete"] == 4
    assert "no pending runs" in grid_py(["slurm"], tmp_path).stderr


def test_an_array_beyond_slurms_max_array_size_runs_several_packs_per_task(slurm, split_file, tmp_path, monkeypatch):
    """Six runs on a cluster whose MaxArraySize is 4: an array of six tasks is refused by sbatch; with
    --max-array-size 4, tasks 0 and 1 each run two packs in turn, and task 0, stopped half-way through its first,
    requeues itself and finishes both."""
    monkeypatch.chdir(tmp_path)
    epochs = 4
    entries = plan_digits(split_file, MODELS, ["0.1", "0.03", "0.01"], epochs)
    refused = submit(slurm, tmp_path, "--max-array-size", "6", check=False)
    assert refused.returncode != 0 and "array" in refused.stderr.lower(), refused.stderr
    job = submit(slurm, tmp_path, "--max-array-size", str(MAX_ARRAY_SIZE))
    wait_for(lambda: mid_run(entries[:1], epochs), 300, "array task 0 half-way through its first pack")
    requeue_now(slurm, job, "0")
    wait_for(lambda: not slurm.run(["squeue", "-h", "-j", job], check=False).stdout.strip(), 400,
             "the job array to end", 1)
    for entry in entries:
        starts = assert_trained_once(entry, epochs)
        assert len(starts) == (2 if entry is entries[0] else 1)
    # the packs dealt to task 0 (runs 0 and 4) and task 1 (runs 1 and 5) ran one after another in their task
    output = {task: next((tmp_path / "slurm-logs").glob(f"grid-{job}_{task}.out")).read_text() for task in "0123"}
    assert [output[task].count("time left:") for task in "0123"] == [3, 2, 1, 1]  # task 0: once more after requeue
    assert f"task {job}_0: requeueing it to resume" in output["0"]
    assert status_json(tmp_path)["totals"]["complete"] == 6


def test_the_script_fits_the_partition_and_sbatch_accepts_what_it_fills_in(slurm, split_file, tmp_path, monkeypatch):
    """The local cluster is one CPU node (no GPUs, the machine's cores): a GPU request is refused in one line before
    any script is written, and the defaults grid.py fills in for this partition are ones sbatch accepts."""
    monkeypatch.chdir(tmp_path)
    plan_digits(split_file, MODELS[:1], ["0.1"], 1)
    cpus, memory = (int(v) for v in slurm.run(["sinfo", "-h", "-N", "-o", "%c %m"]).stdout.split())
    node = f"its 1 node(s) have at most 0 GPU(s), {cpus} CPUs and {memory:,} MB of memory on one node (sinfo)"
    for options, asked, way_out in (
            (["--gpus-per-run", "1"], f"1 GPU(s), {min(8, cpus)} CPU(s)", "--gpus-per-run 0 for CPU tasks"),
            (["--cpus-per-run", str(cpus + 1)], f"0 GPU(s), {cpus + 1} CPU(s)", "a smaller --gpus-per-run"),
            (["--mem", f"{memory + 1}M"], f"0 GPU(s), {min(8, cpus)} CPU(s), {memory + 1}M of memory", "a smaller")):
        refused = slurm_grid_py(slurm, ["slurm", *options], tmp_path)
        assert refused.returncode == 2 and refused.stdout == "", refused.stderr
        assert refused.stderr.startswith(f"grid.py: error: partition 'debug' cannot hold a task of {asked}: {node}; "
                                         f"ask for {way_out}") and refused.stderr.count("\n") == 1, refused.stderr
    unknown = slurm_grid_py(slurm, ["slurm", "--partition", "gpu"], tmp_path)
    assert unknown.returncode == 2 and unknown.stderr == ("grid.py: error: --partition gpu: the cluster has no such "
                                                          "partition (sinfo lists debug)\n")

    written = slurm_grid_py(slurm, ["slurm", "--mem", "1G"], tmp_path)  # GPUs and CPUs left to grid.py
    assert written.returncode == 0, written.stderr
    script = written.stdout.splitlines()
    assert f"#SBATCH --cpus-per-task={min(8, cpus)}" in script and "#SBATCH --mem=1G" in script
    assert not any("--gres" in line for line in script)
    run_line = next(line for line in script if " run --manifest " in line)
    assert " --gpus-per-run 0 --stale-after 600 " in run_line  # what was decided reaches grid.py run unchanged
    (tmp_path / "study.sbatch").write_text(written.stdout)
    accepted = slurm.run(["sbatch", "--test-only", "study.sbatch"], cwd=tmp_path, check=False)
    assert accepted.returncode == 0, accepted.stderr
    # what grid.py refused, sbatch refuses too: a GPU on this CPU partition
    (tmp_path / "gpu.sbatch").write_text(written.stdout.replace("#SBATCH --ntasks=1", "#SBATCH --ntasks=1\n"
                                                                "#SBATCH --gres=gpu:1"))
    rejected = slurm.run(["sbatch", "--test-only", "gpu.sbatch"], cwd=tmp_path, check=False)
    assert rejected.returncode != 0 and "gres" in rejected.stderr.lower(), rejected.stderr
