"""grid.py as a user runs it: plan a digits grid, run it (killed and restarted), halve it, submit it to a real local
Slurm, watch it with status and cost it with estimate. Tiny runs: random weights, 16 px, a 160-image train split."""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import errors
import grid
import grid_estimate
import records
from conftest import REPO
from grid_halving import halving_outcome, halving_state, rung_epochs
from grid_run import command, form_packs, make_slots, pack_argv
from cli import flag_values, without_flags
from grid_state import Entry, acquire, live_holder, lock_path, read_log, read_manifest, release
from slurm_local import Unavailable, start_cluster

ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
MODELS = ["mobilenet_v3_small", "shufflenet_v2_x0_5"]


def tiny(split_file: Path, epochs: int) -> list[str]:
    return ["--weights", "random", "--epochs", str(epochs), "--img-size", "16", "--batch-size", "32", "--workers", "0",
            "--split-file", str(split_file)]


def plan_digits(split_file: Path, models: list[str], lrs: list[str], epochs: int, *extra: str) -> list[Entry]:
    """grid.py plan in the current folder: models x lrs x wd 1e-4 with SGD + cosine; returns the manifest."""
    assert grid.main(["plan", "--datasets", "digits", "--models", *models, "--grid", "product", "--optimizer", "sgd",
                      "--schedule", "cosine", "--lr", *lrs, "--wd", "1e-4", *tiny(split_file, epochs), *extra]) == 0
    return read_manifest("grid.jsonl")


def grid_py(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "grid.py"), *args], cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=timeout)


def status_json(cwd: Path) -> dict:
    result = grid_py(["status", "--json"], cwd)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def wait_for(condition, timeout: float, what: str, poll: float = 0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(poll)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def record_of(entry: Entry) -> dict | None:
    try:
        return records.read_json(entry.record_path)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def epochs_of(entry: Entry) -> list[int]:
    return [h["epoch"] for h in (record_of(entry) or {}).get("history") or []]


def mid_run(entries: list[Entry], epochs: int) -> list[Entry]:
    """Runs that have recorded at least one epoch and have at least one more to go."""
    return [e for e in entries if 1 <= len(epochs_of(e)) <= epochs - 2]


def assert_trained_once(entry: Entry, epochs: int) -> list[dict]:
    """The run is complete with each epoch recorded once, and no step was trained twice: each process that trained
    and was stopped saved where it was (train.py: "stopped by SIGTERM at epoch E") and the next one went on from
    there ("resuming after epoch E-1, step S"); a process stopped before it trained anything left nothing to resume.
    grid.py heads each process's output with a "--- grid.py" line. Returns the run's starts from grid.py's log."""
    record = record_of(entry)
    assert record["status"] == "complete" and record["run_id"] == entry.run_id
    assert epochs_of(entry) == list(range(1, epochs + 1))
    starts = [event for event in read_log(entry) if event["event"] == "start"]
    outputs = "".join(Path(name).read_text() for name in dict.fromkeys(start["output"] for start in starts))
    processes = [part for part in outputs.split("--- grid.py ")[1:] if entry.run_id in part.splitlines()[0]]
    assert len(processes) == len(starts)
    for before, after in zip(processes, processes[1:]):
        stopped = re.search(rf"{entry.run_id}: stopped by SIGTERM at epoch (\d+)", before)
        resumed = re.search(rf"{entry.run_id}: resuming after epoch (\d+)", after)
        if stopped:
            assert resumed and int(resumed[1]) == int(stopped[1]) - 1, (before, after)
        else:
            assert not resumed and not re.search(r"epoch \d+/\d+|\d+/\d+ +loss", before), (before, after)
    return starts


# --- plan ----------------------------------------------------------------------------------------------------------

def test_plan_writes_the_paper_grid_with_train_pys_run_ids(split_file, tmp_path, monkeypatch, capsys):
    import train
    monkeypatch.chdir(tmp_path)
    assert grid.main(["plan", "--datasets", "digits", "--models", "resnet18", *tiny(split_file, 2)]) == 0
    entries = read_manifest("grid.jsonl")
    assert len(entries) == 60
    assert {(e.config["optimizer"], e.config["schedule"]) for e in entries} == {("sgd", "cosine"), ("sgd", "step"),
                                                                                ("adamw", "cosine")}
    assert sorted({e.config["lr"] for e in entries if e.config["optimizer"] == "adamw"}) == [1e-5, 1e-4, 1e-3, 1e-2]
    assert sorted({e.config["wd"] for e in entries}) == [0.0, 1e-6, 1e-5, 1e-4, 1e-3]
    commands = capsys.readouterr().out.splitlines()
    assert len(commands) == 60 and all("train.py" in c and "--save-weights none" in c for c in commands)
    for entry in entries[:3]:  # train.py's own planning of the same single configuration gives the same run id
        assert [run["run_id"] for run in train.plan_runs(list(entry.argv))] == [entry.run_id]

    restricted = plan_digits(split_file, ["resnet18"], ["0.1", "0.01"], 2)
    assert len(restricted) == 2 and {e.config["lr"] for e in restricted} == {0.1, 0.01}
    assert grid.main(["plan", "--datasets", "digits", "--models", "resnet18", "--optimizer", "sgd", "--lr", "0.1",
                      "--wd", "0", *tiny(split_file, 2)]) == 0
    assert len(read_manifest("grid.jsonl")) == 2  # cosine and step
    with pytest.raises(errors.UsageError, match=r"--lr 0.05: not in this grid .*--grid product"):
        grid.main(["plan", "--datasets", "digits", "--models", "resnet18", "--lr", "0.05", *tiny(split_file, 2)])
    with pytest.raises(errors.UsageError, match="--models"):
        grid.main(["plan", "--datasets", "digits", "--models", "resnet18", "--model", "alexnet"])
    with pytest.raises(errors.UsageError, match=r"--optimizer adamw --schedule step: no block .* nothing would run"):
        grid.main(["plan", "--datasets", "digits", "--models", "resnet18", "--optimizer", "adamw", "--schedule",
                   "step", *tiny(split_file, 2)])  # each value is in the grid, the pair is not
    with pytest.raises(errors.UsageError, match="--gpus-per-run 0"):
        grid.main(["run", "--gpus-per-run", "0"])


def test_packs_are_rectangular_products_of_the_pending_configurations():
    lrs, wds = [0.1, 0.01, 0.001, 0.0001], [1e-3, 1e-4, 1e-5, 1e-6, 0.0]

    def entry(lr: float, wd: float) -> Entry:
        argv = ("--dataset", "aptos", "--optimizer", "sgd", "--schedule", "cosine", "--lr", f"{lr:g}", "--wd", f"{wd:g}")
        return Entry(f"r-{lr:g}-{wd:g}", argv, "/x", {"dataset": "aptos", "model": "m", "out": "runs", "epochs": 30,
                                                      "optimizer": "sgd", "schedule": "cosine", "lr": lr, "wd": wd})

    full = [entry(lr, wd) for lr in lrs for wd in wds]
    done = {("r-0.1-0.001"), ("r-0.01-0")}  # two configurations already complete
    pending = [e for e in full if e.run_id not in done]
    for size, members, expected_packs in ((5, full, 4), (10, full, 2), (1, full, 20), (20, full, 1), (5, pending, 4)):
        packs = form_packs(members, size)
        assert len(packs) == expected_packs, (size, [len(p) for p in packs])
        assert sorted(e.run_id for p in packs for e in p) == sorted(e.run_id for e in members)
        for pack in packs:
            assert len(pack) <= size
            argv = pack_argv(pack, None)
            assert len(flag_values(argv, "lr")) * len(flag_values(argv, "wd")) == len(pack)
            assert without_flags(argv, ("lr", "wd")) == ["--dataset", "aptos", "--optimizer", "sgd", "--schedule",
                                                         "cosine"]
    assert sorted(len(p) for p in form_packs(pending, 5)) == [4, 4, 5, 5]  # 1 x 4 twice (one wd done), 1 x 5 twice
    assert pack_argv(full[:2], 10)[-2:] == ["--until-epoch", "10"]

    slots = make_slots("0,1,2,3", 1, 2)  # two runs at a time, each on two GPUs through accelerate launch
    assert [(slot.gpus, slot.processes) for slot in slots] == [(["0", "1"], 2), (["2", "3"], 2)]
    launch = command(slots[1], ["--lr", "0.1"])
    assert launch[1:6] == ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    assert launch[-3:] == [str(REPO / "train.py"), "--lr", "0.1"]
    assert command(make_slots(None, 3, 1)[2], ["--lr", "0.1"]) == [sys.executable, str(REPO / "train.py"), "--lr", "0.1"]
    with pytest.raises(errors.UsageError, match="--gpus-per-run 2"):
        make_slots("0,1,2", 1, 2)


# --- locks and halving rules ---------------------------------------------------------------------------------------

def test_a_run_lock_is_exclusive_and_stale_locks_are_recognised(tmp_path):
    entry = Entry("run-a", (), str(tmp_path), {"out": "runs"})
    token = acquire(entry)
    assert token and live_holder(entry)["processes"][0][0] == os.getpid()
    assert acquire(entry) is None  # held by a live process
    release(entry, token)
    assert live_holder(entry) is None

    dead = subprocess.Popen(["true"])
    dead.wait()
    path = lock_path(entry)
    own_host = {"host": socket.gethostname(), "boot": Path("/proc/sys/kernel/random/boot_id").read_text().strip()}
    path.write_text(json.dumps({**own_host, "token": "x", "processes": [[dead.pid, "1"]]}))
    assert live_holder(entry) is None and acquire(entry)  # a crashed holder's lock is broken and taken
    path.write_text(json.dumps({**own_host, "boot": "an-earlier-boot", "token": "x", "processes": [[os.getpid(), "1"]]}))
    assert live_holder(entry) is None  # written before a reboot
    path.write_text(json.dumps({"host": "another-node", "token": "x", "processes": [[1, "1"]]}))
    assert live_holder(entry, stale_after=600) and acquire(entry, stale_after=600) is None  # touched just now
    old = time.time() - 700
    os.utime(path, (old, old))
    assert live_holder(entry, stale_after=600) is None and acquire(entry, stale_after=600)  # no heartbeat for 700 s


def test_halving_keeps_the_best_share_of_each_rung():
    assert rung_epochs(30, 3) == [10, 20, 30] and rung_epochs(4, 2) == [2, 4] and rung_epochs(2, 3) == [1, 2]
    members = [Entry(f"r{i}", (), "/x", {"out": "runs", "epochs": 30}) for i in range(6)]

    def record(run_id: str, epochs: int, values: list[float], status: str = "paused") -> dict:
        history = [{"epoch": k + 1, "val_accuracy": values[min(k, len(values) - 1)]} for k in range(epochs)]
        return {"run_id": run_id, "status": status, "history": history,
                "dataset": {"selection_split": "val", "metric": "accuracy"}}

    state = halving_state(members, {}, 3, set())
    assert [m.run_id for m in state.work] == [f"r{i}" for i in range(6)] and state.until_epoch == 10
    found = {f"r{i}": record(f"r{i}", 10, [0.1 * i]) for i in range(6)}
    found["r5"] = record("r5", 3, [0.9], status="diverged")  # out of the race whatever its score
    found["r0"] = record("r0", 12, [0.0] * 10 + [0.99] * 2)  # epochs after the rung do not count for it
    state = halving_state(members, found, 3, set())
    assert [m.run_id for m in state.work] == ["r4", "r3"] and state.until_epoch == 20  # the best ceil(6/3)
    found.update(r4=record("r4", 20, [0.4]), r3=record("r3", 20, [0.3] * 10 + [0.5]))
    state = halving_state(members, found, 3, set())
    assert [m.run_id for m in state.work] == ["r3"] and state.until_epoch is None  # last rung: to the end
    found["r3"] = record("r3", 30, [0.3] * 10 + [0.5], status="complete")
    state = halving_state(members, found, 3, set())
    assert state.done and state.annotation(members[3], 3)["selected"]
    assert state.annotation(members[1], 3) == {"factor": 3, "rung_epochs": [10, 20, 30], "group_size": 6,
                                               "survivors": [6, 2, 1], "trained_to_epoch": 10, "selected": False}

    # replayed on a finished full grid of 4 configurations x 4 epochs, factor 2 (rungs at epochs 2 and 4)
    four = [Entry(f"q{i}", (), "/x", {"out": "runs", "epochs": 4}) for i in range(4)]
    full = {"q0": record("q0", 4, [0.5, 0.6, 0.7, 0.9], "complete"),   # slow starter: the full grid's choice
            "q1": record("q1", 4, [0.6, 0.7, 0.7, 0.8], "complete"),
            "q2": record("q2", 4, [0.7, 0.75, 0.75, 0.75], "complete"),
            "q3": {**record("q3", 2, [0.8]), "status": "diverged", "diverged_epoch": 3}}  # best at 2, diverges at 3
    outcome = halving_outcome(four, full, 2)
    # epoch 2 keeps q3 and q2; q3 diverges on its way to epoch 4, so q1, next best at epoch 2, takes its place
    assert outcome == {"full_choice": "q0", "halving_choice": "q1", "full_epochs": 16, "halving_epochs": 2 + 2 + 4 + 4}


# --- run -----------------------------------------------------------------------------------------------------------

def test_grid_killed_half_way_and_restarted_trains_every_run_once(split_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    epochs = 4
    entries = plan_digits(split_file, MODELS, ["0.1", "0.01"], epochs)
    assert len(entries) == 4
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen([sys.executable, str(REPO / "grid.py"), "run", "--slots", "2"], cwd=tmp_path,
                                 env=ENV, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: any((record_of(e) or {}).get("status") == "complete" for e in entries)
                 and mid_run(entries, epochs), 300, "one complete run and one half-way")
    finally:
        first.kill()  # SIGKILL: no clean-up; its train.py processes get SIGTERM from the kernel
        first.wait()
    interrupted = [e for e in entries if (record_of(e) or {}).get("status") != "complete"]
    assert interrupted

    second = grid_py(["run", "--slots", "2"], tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    resumed = 0
    for entry in entries:
        starts = assert_trained_once(entry, epochs)
        resumed += len(starts) > 1
    assert resumed >= 1
    report = status_json(tmp_path)
    assert report["totals"] == {"complete": 4, "running": 0, "paused": 0, "diverged": 0, "failed": 0, "pending": 0}
    assert grid_py(["status"], tmp_path).stdout.splitlines()[-3].split()[1:7] == ["4", "0", "0", "0", "0", "0"]
    assert json.loads(grid_py(["status", "runs", "--json"], tmp_path).stdout)["totals"] == report["totals"]
    assert not list((tmp_path / "runs" / ".grid" / "locks").glob("*.lock"))
    assert not any((tmp_path / "runs" / e.run_id / "best.safetensors").exists() for e in entries)
    assert not any((tmp_path / "runs" / e.run_id / "state").exists() for e in entries)


def test_halving_with_packs_trains_the_best_half_to_the_end(split_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    entries = plan_digits(split_file, ["shufflenet_v2_x0_5"], ["0.3", "0.1", "0.03", "0.01"], 4)
    result = grid_py(["run", "--slots", "1", "--pack", "4", "--halving", "2"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    found = {e.run_id: record_of(e) for e in entries}
    at_rung = sorted(entries, key=lambda e: (-max(h["val_accuracy"] for h in found[e.run_id]["history"][:2]),
                                             e.run_id))
    for rank, entry in enumerate(at_rung):
        record, starts = found[entry.run_id], [x for x in read_log(entry) if x["event"] == "start"]
        assert starts[0]["from_epoch"] == 0 and starts[0]["until_epoch"] == 2 and len(starts[0]["pack"]) == 4
        assert record["halving"]["rung_epochs"] == [2, 4] and record["halving"]["survivors"] == [4, 2]
        if rank < 2:  # the best half at epoch 2 went on, in one pack, from where it stopped
            assert record["status"] == "complete" and epochs_of(entry) == [1, 2, 3, 4]
            assert [s["from_epoch"] for s in starts] == [0, 2] and len(starts[1]["pack"]) == 2
            assert record["halving"]["selected"]
        else:
            assert record["status"] == "paused" and epochs_of(entry) == [1, 2] and len(starts) == 1
            assert not record["halving"]["selected"]
    assert status_json(tmp_path)["totals"]["paused"] == 2


def test_a_run_on_several_processes_goes_through_accelerate_launch(split_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    [entry] = plan_digits(split_file, ["shufflenet_v2_x0_5"], ["0.1"], 1)
    result = subprocess.run([sys.executable, str(REPO / "grid.py"), "run", "--gpus-per-run", "2"], cwd=tmp_path,
                            env={**ENV, "ACCELERATE_USE_CPU": "true"}, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    record = record_of(entry)
    assert record["status"] == "complete" and record["num_processes"] == 2  # two CPU processes (gloo) here


def test_a_failed_run_is_retried_once_and_its_error_shown(split_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    copy = tmp_path / "split.csv"
    copy.write_bytes(split_file.read_bytes())
    [entry] = plan_digits(copy, ["shufflenet_v2_x0_5"], ["0.1"], 1)
    copy.write_text("id,label,split\n")  # the split file is broken after planning
    result = grid_py(["run"], tmp_path)
    assert result.returncode == 1
    ends = [x for x in read_log(entry) if x["event"] == "end"]
    assert [x["outcome"] for x in ends] == ["failed", "failed"]
    report = status_json(tmp_path)
    assert report["totals"]["failed"] == 1 and "split" in report["failed"][0]["error"]
    assert "\n" not in report["failed"][0]["error"]


def test_status_only_reads_and_survives_a_log_line_cut_short(split_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    [entry] = plan_digits(split_file, ["shufflenet_v2_x0_5"], ["0.1"], 1)
    assert grid_py(["run"], tmp_path).returncode == 0
    shutil.rmtree(entry.out / ".grid" / "locks")
    log = entry.out / ".grid" / "log" / f"{entry.run_id}.jsonl"
    log.write_text(log.read_text() + '{"event": "start", "ti')  # killed while writing
    report = status_json(tmp_path)
    assert report["totals"]["complete"] == 1
    assert not (entry.out / ".grid" / "locks").exists()


# --- slurm ---------------------------------------------------------------------------------------------------------

def test_slurm_script_is_a_job_array_of_the_pending_runs(split_file, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    entries = plan_digits(split_file, MODELS, ["0.1", "0.01"], 2)
    capsys.readouterr()
    assert grid.main(["slurm", "--partition", "gpu", "--max-parallel", "3", "--time", "2-00:00:00",
                      "--sbatch-option=--account=abc"]) == 0
    script = capsys.readouterr().out
    for line in ("#SBATCH --array=0-3%3", "#SBATCH --requeue", "#SBATCH --signal=B:TERM@120",
                 "#SBATCH --time=2-00:00:00", "#SBATCH --partition=gpu", "#SBATCH --gres=gpu:1",
                 "#SBATCH --account=abc", f"#SBATCH --chdir={tmp_path}"):
        assert line in script.splitlines()
    assert all(e.run_id in script for e in entries)
    (tmp_path / "study.sbatch").write_text(script)
    assert subprocess.run(["bash", "-n", "study.sbatch"]).returncode == 0
    assert grid.main(["slurm", "--pack", "2"]) == 0
    assert "#SBATCH --array=0-1%64" in capsys.readouterr().out  # 2 models x (1 pack of 2 learning rates)
    records.atomic_write_json(entries[0].record_path, {"run_id": entries[0].run_id, "status": "complete"})
    assert grid.main(["slurm"]) == 0
    script = capsys.readouterr().out
    assert "#SBATCH --array=0-2%64" in script and entries[0].run_id not in script  # pending runs only
    with pytest.raises(errors.UsageError, match="--time"):
        grid.main(["slurm", "--time", "tomorrow"])


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    try:
        cluster = start_cluster(tmp_path_factory.mktemp("slurm"))
    except Unavailable as why:
        pytest.skip(f"no local Slurm: {why}")
    yield cluster
    cluster.stop()


def submit(slurm, cwd: Path) -> str:
    script = grid_py(["slurm", "--gpus-per-run", "0", "--cpus-per-run", "1", "--max-parallel", "2", "--time", "30:00"],
                     cwd)
    assert script.returncode == 0, script.stderr
    (cwd / "study.sbatch").write_text(script.stdout)
    return slurm.run(["sbatch", "--parsable", "study.sbatch"], cwd=cwd, extra_env=ENV).stdout.strip().split(";")[0]


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
    for entry in entries:
        starts = assert_trained_once(entry, epochs)
        assert len(starts) == (2 if entry in entries[:2] else 1)
    assert status_json(tmp_path)["totals"]["complete"] == 4
    assert "no pending runs" in grid_py(["slurm"], tmp_path).stderr


# --- estimate ------------------------------------------------------------------------------------------------------

def test_estimate_of_the_paper_study_from_the_documented_table(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert grid.main(["estimate", "--paper", "--gpus", "8", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["runs"] == 19 * 6 * 60
    # one cell by hand: AlexNet on APTOS, 60 configurations of 30 epochs over 2,931 train and 731 val images
    rate = 25488 * 0.77
    by_hand = 60 * 30 * (2931 + 731 / 3) / rate / 3600
    alexnet_aptos = grid_estimate.estimate([{"dataset": "aptos", "model": "alexnet", "epochs": 30, "img_size": 256,
                                             "count": 60}], 1, "bf16")
    assert alexnet_aptos["gpu_hours"] == pytest.approx(by_hand)
    assert result["gpu_hours"] == pytest.approx(sum(result["by_dataset"].values()))
    assert result["wall_clock_hours"] == pytest.approx(result["gpu_hours"] / 8)
    assert set(result["by_model"]) == {n for n, e in __import__("models").REGISTRY.items() if e.group == "testbed"}

    measured = {"machine": "test", "device": "fake GPU", "results": [
        {"model": "alexnet", "img_size": 128, "batch_size": 128, "precision": "bf16", "model_alone_img_per_s": 9000.0,
         "train_py_img_per_s": 4000.0, "input_path": "gpu"}]}
    (tmp_path / "tp.json").write_text(json.dumps(measured))
    with_file = grid_estimate.estimate([{"dataset": "aptos", "model": "alexnet", "epochs": 30, "img_size": 256,
                                         "count": 60}], 1, "bf16", grid_estimate.load_throughput(tmp_path / "tp.json"))
    assert with_file["gpu_hours"] == pytest.approx(60 * 30 * (2931 + 731 / 3) / (4000 / 4) / 3600)  # 4x the pixels
    measured["results"][0]["train_py_img_per_s"] = "fast"
    (tmp_path / "tp.json").write_text(json.dumps(measured))
    with pytest.raises(errors.DataError, match=r"results\[0\].train_py_img_per_s"):
        grid.main(["estimate", "--paper", "--throughput", "tp.json"])
    with pytest.raises(errors.UsageError, match="benchmarks/train_throughput.py"):
        grid_estimate.training_rate("clip_vit_b16", 224, "bf16")


def test_auto_pack_fills_a_fast_models_gpu_within_its_memory():
    config = {"model": "alexnet", "img_size": 256, "batch_size": 128, "optimizer": "sgd"}
    assert grid_estimate.auto_pack_size(config, "bf16", 141 * 2**30) == math.floor(25488 / 2950)
    one = grid_estimate.config_memory_bytes("alexnet", 256, 128, "bf16", "sgd")
    assert grid_estimate.auto_pack_size(config, "bf16", int(3.5 * one / 0.8)) == 3  # memory-bound
    assert grid_estimate.auto_pack_size({**config, "model": "resnet152"}, "bf16", 141 * 2**30) == 1  # GPU-bound


# --- studies -------------------------------------------------------------------------------------------------------

def test_a_study_script_runs_its_grid_then_the_analysis(tmp_path):
    from data.synthetic import write_fixture
    write_fixture("cifar10", tmp_path / "datasets" / "cifar10", per_class=4)
    env = {**ENV, "PYTHON": sys.executable,
           "PLAN_OPTIONS": "--models shufflenet_v2_x0_5 --grid product --lr 0.05 --weights random --epochs 1 "
                           "--img-size 16 --batch-size 16 --workers 0"}
    result = subprocess.run(["bash", str(REPO / "studies" / "cifar10_control.sh")], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    entries = read_manifest(tmp_path / "manifests" / "cifar10.jsonl")
    assert [record_of(e)["status"] for e in entries] == ["complete"]
    report = (tmp_path / "reports" / "cifar10_control" / "report.md").read_text()
    assert "cifar10" in report and all(e.model in report for e in entries)
    for script in sorted((REPO / "studies").glob("*.sh")):
        assert subprocess.run(["bash", "-n", str(script)]).returncode == 0, script
