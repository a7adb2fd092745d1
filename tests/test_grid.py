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

import grid
from common import errors, fileio
from common.cli import flag_values, without_flags
from nets import registry
from sweep import estimate, status
from sweep.halving import halving_outcome, halving_state, rung_epochs
from sweep.packs import form_packs, pack_argv
from sweep.runner import command, make_slots
from sweep.state import (
    UNREADABLE_GRACE_S,
    Entry,
    acquire,
    add_processes,
    live_holder,
    lock_path,
    read_log,
    read_manifest,
    release,
)
from training.config import plan_runs

from conftest import REPO

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


def settled_status(cwd: Path) -> dict | None:
    """grid.py status --json once no run holds a live lock (None while one does)."""
    report = status_json(cwd)
    return None if report["totals"]["running"] else report


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
        return fileio.read_json(entry.record_path)
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
    plan_args, _ = grid.build_parser().parse_known_args(["plan", "--datasets", "digits", "--models", "resnet18"])
    plan_help = " ".join(plan_args.subparser.format_help().split())
    assert "Every option not listed below goes to train.py as it is" in plan_help  # --weights, --epochs: train.py's
    for entry in entries[:3]:  # train.py's own planning of the same single configuration gives the same run id
        assert [run["run_id"] for run in plan_runs(list(entry.argv))] == [entry.run_id]

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

    # mistakes in train.py's options are caught once, before planning, in one line of grid.py's
    with pytest.raises(errors.UsageError, match=r"^train.py option: argument --augment: invalid choice: 'flip'"):
        grid.main(["plan", "--datasets", "digits", "--models", "resnet18", "--augment", "flip"])
    with pytest.raises(errors.UsageError, match=r"^train.py option: unrecognized arguments: --epoch 2"):
        grid.main(["plan", "--datasets", "digits", "--models", "resnet18", "--epoch", "2"])
    capsys.readouterr()
    for argv, expected in ((["plan", "--datasets", "aptoss", "--models", "resnet18"], "invalid choice: 'aptoss'"),
                           (["run", "--gpus-per-run", "-1"], "'-1' is not a whole number of 0 or more"),
                           (["run", "--slots", "0"], "'0' is not a whole number of 1 or more"),
                           (["run", "--retries", "-1"], "'-1' is not a whole number of 0 or more"),
                           (["slurm", "--max-parallel", "0"], "'0' is not a whole number of 1 or more"),
                           (["slurm", "--max-array-size", "0"], "'0' is not a whole number of 1 or more"),
                           (["estimate", "--gpus", "0"], "'0' is not a whole number of 1 or more"),
                           (["status", "--stale-after", "0"], "'0' is not a positive number")):
        with pytest.raises(SystemExit) as stopped:  # grid.py's own options: grid.py's usage, exit status 2
            grid.main(argv)
        error = capsys.readouterr().err
        assert stopped.value.code == 2 and f" {argv[0]}: error: argument {argv[1]}" in error, error
        assert expected in error and "train.py" not in error


def test_packs_are_rectangular_products_of_the_pending_configurations():
    lrs, wds = [0.1, 0.01, 0.001, 0.0001], [1e-3, 1e-4, 1e-5, 1e-6, 0.0]

    def entry(lr: float, wd: float) -> Entry:
        argv = ("--dataset", "aptos", "--optimizer", "sgd", "--schedule", "cosine", "--lr", f"{lr:g}",
                "--wd", f"{wd:g}")
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
    alone = command(make_slots(None, 3, 1)[2], ["--lr", "0.1"])
    assert alone == [sys.executable, str(REPO / "train.py"), "--lr", "0.1"]
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
    path.write_text(json.dumps({**own_host, "boot": "an-earlier-boot", "token": "x",
                                "processes": [[os.getpid(), "1"]]}))
    assert live_holder(entry) is None  # written before a reboot
    path.write_text(json.dumps({"host": "another-node", "token": "x", "processes": [[1, "1"]]}))
    assert live_holder(entry, stale_after=600) and acquire(entry, stale_after=600) is None  # touched just now
    old = time.time() - 700
    os.utime(path, (old, old))
    assert live_holder(entry, stale_after=600) is None and acquire(entry, stale_after=600)  # no heartbeat for 700 s


def test_a_lock_left_empty_by_a_killed_writer_is_broken_after_a_grace_period(tmp_path):
    """A lock file that exists but cannot be read (its writer was killed, or the disk was full, before it was
    written) must not hold the run forever; one just written is someone's, and is left alone."""
    entry = Entry("run-a", (), str(tmp_path), {"out": "runs"})
    path = lock_path(entry)
    path.write_text("")
    assert live_holder(entry) is None and acquire(entry) is None  # might be being written: not taken
    old = time.time() - UNREADABLE_GRACE_S - 1
    os.utime(path, (old, old))
    token = acquire(entry)
    assert token and live_holder(entry)["token"] == token
    assert sorted(p.name for p in path.parent.iterdir()) == [".breaking", path.name]  # no temporary file left
    path.write_text('{"host": "cut')
    os.utime(path, (old, old))
    assert acquire(entry)


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


def test_the_halving_benchmark_reports_a_group_where_no_run_completed(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "halving.py"), "--work", str(tmp_path),
                             "--datasets", "digits", "--models", "shufflenet_v2_x0_5", "--lrs", "1e4", "--wds", "0",
                             "--epochs", "2", "--factors", "2", "--img-size", "16", "--slots", "1"],
                            env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [record_of(e)["status"] for e in read_manifest(tmp_path / "manifests" / "digits.jsonl")] == ["diverged"]
    [row] = json.loads((tmp_path / "halving.json").read_text())
    assert row["full_choice"] is None and row["full_value"] is None and not row["same"]
    assert "1 group(s) without a complete run" in result.stdout


# --- run -----------------------------------------------------------------------------------------------------------

def test_grid_killed_half_way_and_restarted_trains_every_run_once(split_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    epochs = 4
    entries = plan_digits(split_file, MODELS, ["0.1", "0.01"], epochs)
    assert len(entries) == 4
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen([sys.executable, str(REPO / "grid.py"), "run", "--slots", "2"], cwd=tmp_path,
                                 env=ENV, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    def one_complete_and_one_half_way() -> list[Entry]:
        complete = any((record_of(e) or {}).get("status") == "complete" for e in entries)
        return mid_run(entries, epochs) if complete else []

    try:
        # the runs half-way when grid.py is killed (by the time they stop, they may have recorded one more epoch)
        halfway = wait_for(one_complete_and_one_half_way, 300, "one complete run and one half-way")
    finally:
        first.kill()  # SIGKILL: no clean-up; its train.py processes get SIGTERM from the kernel
        first.wait()
    interrupted = [e for e in entries if (record_of(e) or {}).get("status") != "complete"]
    assert interrupted
    # grid.py's death sent SIGTERM to its train.py processes: each saves its state, and status shows it interrupted
    stopped = wait_for(lambda: settled_status(tmp_path), 120, "the stopped runs to release their locks")
    saved = [e for e in interrupted if (record_of(e) or {}).get("status") == "interrupted"]
    assert all(e in saved for e in halfway) and stopped["totals"]["interrupted"] == len(saved)
    listed = {run["run_id"]: run for run in stopped["interrupted"]}
    assert set(listed) == {e.run_id for e in saved}
    assert all(listed[e.run_id]["stopped_at"] == record_of(e)["stopped_at"] for e in saved)
    table = grid_py(["status"], tmp_path).stdout.splitlines()
    assert table[0].split()[2:5] == ["complete", "running", "interrupted"]
    assert "interrupted runs (the same command resumes each where it stopped):" in table

    second = grid_py(["run", "--slots", "2"], tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    resumed = 0
    for entry in entries:
        starts = assert_trained_once(entry, epochs)
        resumed += len(starts) > 1
    assert resumed >= 1
    for output in (tmp_path / "runs" / ".grid" / "output").glob("*.log"):  # progress lines, not a bar's frames
        text = output.read_text()
        assert re.search(r"^epoch \d train: step \d+/5 \(\d+%\), \d+ img/s, loss ", text, re.M) and "\r" not in text
    report = status_json(tmp_path)
    assert report["totals"] == {"complete": 4, "running": 0, "interrupted": 0, "paused": 0, "diverged": 0, "failed": 0,
                                "pending": 0}
    assert grid_py(["status"], tmp_path).stdout.splitlines()[-3].split()[1:8] == ["4", "0", "0", "0", "0", "0", "0"]
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


def test_status_refuses_a_folder_without_records(split_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(errors.UsageError, match=rf"neither grid.jsonl nor runs/ in {tmp_path}: .*\(--manifest FILE\)"):
        grid.main(["status"])
    with pytest.raises(errors.UsageError, match="nosuchdir: no such folder; .*--manifest FILE"):
        grid.main(["status", "nosuchdir"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(errors.UsageError, match=r"empty: no run records \(<run_id>.json\)"):
        grid.main(["status", "empty"])
    result = grid_py(["status", "nosuchdir"], tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and not result.stdout


def test_status_time_left_is_shared_among_the_training_processes_not_the_packed_runs(tmp_path):
    """Five configurations packed in one train.py process and one run alone in another: the wall-clock left is the
    work left over two processes, since the pack's five runs train together at the pack's speed."""
    def planned(i: int, model: str) -> Entry:
        return Entry(f"run-{i}", (), str(tmp_path), {"dataset": "aptos", "model": model, "out": "runs", "epochs": 10,
                                                     "optimizer": "sgd", "schedule": "cosine", "lr": 0.1, "wd": 0.0})

    pack, alone = [planned(i, "mobilenet_v3_small") for i in range(5)], planned(5, "alexnet")
    trainers = [subprocess.Popen(["sleep", "60"]) for _ in range(2)]  # stand-ins for the two train.py processes
    try:
        for members, trainer in ((pack, trainers[0]), ([alone], trainers[1])):
            for entry in members:  # two of ten epochs done, each over 900 train and 300 val images at 100 img/s
                fileio.atomic_write_json(entry.record_path, {
                    "run_id": entry.run_id, "status": "running", "packed_with": len(members), "history": [
                        {"epoch": k, "val_qwk": 0.5, "images_per_s": 100.0} for k in (1, 2)],
                    "dataset": {"name": "aptos", "selection_split": "val", "report_split": None, "metric": "qwk",
                                "extra_splits": [], "split_sizes": {"train": 900, "val": 300}}})
                token = acquire(entry)
                add_processes(entry, token, [trainer.pid])  # what grid.py run does once train.py started
        report = status.status_report([*pack, alone], 600)
        assert report["running_now"] == 6 and report["processes_now"] == 2
        per_process_s = 8 * (900 + 300 / 3) / 100  # 8 epochs left at the process's 100 img/s
        assert report["hours_left"] * 3600 == pytest.approx(2 * per_process_s)
        assert (f"about {per_process_s / 60:.1f} min with the 2 train.py processes now running (6 runs)"
                in status.format_status(report))
    finally:
        for trainer in trainers:
            trainer.kill()
            trainer.wait()


# --- slurm ---------------------------------------------------------------------------------------------------------

def test_slurm_script_is_a_job_array_of_the_pending_runs(split_file, tmp_path, monkeypatch, capsys):
    """Written where no Slurm can be asked (the request is then unchecked, and grid.py says so); the checks against
    a cluster's nodes are in test_slurm_cluster.py."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "no-cluster.conf"))
    entries = plan_digits(split_file, MODELS, ["0.1", "0.01"], 2)
    capsys.readouterr()
    assert grid.main(["slurm", "--partition", "gpu", "--max-parallel", "3", "--time", "2-00:00:00",
                      "--sbatch-option=--account=abc"]) == 0
    script, message = capsys.readouterr()
    assert "no-cluster.conf does not exist: the request (1 GPU(s), 8 CPU(s) per task) is not checked" in message
    for line in ("#SBATCH --array=0-3%3", "#SBATCH --requeue", "#SBATCH --signal=B:TERM@120",
                 "#SBATCH --time=2-00:00:00", "#SBATCH --partition=gpu", "#SBATCH --gres=gpu:1",
                 "#SBATCH --account=abc", f"#SBATCH --chdir={tmp_path}"):
        assert line in script.splitlines()
    assert all(e.run_id in script for e in entries)
    assert " run --manifest " in script and " --gpus-per-run 1 --stale-after 600 " in script
    (tmp_path / "study.sbatch").write_text(script)
    assert subprocess.run(["bash", "-n", "study.sbatch"]).returncode == 0
    # CPU tasks: no GPU asked of Slurm, and grid.py run is told 0 GPUs (it hides them from train.py)
    assert grid.main(["slurm", "--gpus-per-run", "0", "--cpus-per-run", "2", "--mem", "8G"]) == 0
    script = capsys.readouterr().out.splitlines()
    assert "#SBATCH --cpus-per-task=2" in script and "#SBATCH --mem=8G" in script
    assert not any("--gres" in line for line in script)
    assert " --gpus-per-run 0 " in next(line for line in script if " run --manifest " in line)
    with pytest.raises(errors.UsageError, match="--mem lots: not a Slurm memory size"):
        grid.main(["slurm", "--mem", "lots"])
    assert grid.main(["slurm", "--pack", "2"]) == 0
    assert "#SBATCH --array=0-1%64" in capsys.readouterr().out  # 2 models x (1 pack of 2 learning rates)
    fileio.atomic_write_json(entries[0].record_path, {"run_id": entries[0].run_id, "status": "complete"})
    assert grid.main(["slurm"]) == 0
    script = capsys.readouterr().out
    assert "#SBATCH --array=0-2%64" in script and entries[0].run_id not in script  # pending runs only
    with pytest.raises(errors.UsageError, match="--time"):
        grid.main(["slurm", "--time", "tomorrow"])

    # more packs than the cluster's MaxArraySize: the packs are dealt out to that many tasks, each running its own
    # one after another
    capsys.readouterr()
    assert grid.main(["slurm", "--max-array-size", "2"]) == 0
    script, message = capsys.readouterr()
    assert "#SBATCH --array=0-1%64" in script.splitlines()
    assert ("3 packs are more than --max-array-size 2 (Slurm's MaxArraySize): each array task runs 1 or 2 packs one "
            "after another") in message
    tasks = [line.split("#")[0].strip().strip("'") for line in script.splitlines() if "  # task " in line]
    assert tasks == [f"{entries[1].run_id} | {entries[3].run_id}", entries[2].run_id]


# --- estimate ------------------------------------------------------------------------------------------------------

def test_estimate_of_the_paper_study_from_the_documented_table(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert grid.main(["estimate", "--paper", "--gpus", "8", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["runs"] == 19 * 6 * 60
    # one cell by hand: AlexNet on APTOS, 60 configurations of 30 epochs over 2,931 train and 731 val images
    rate = 25488 * 0.77
    by_hand = 60 * 30 * (2931 + 731 / 3) / rate / 3600
    alexnet_row = {"dataset": "aptos", "model": "alexnet", "epochs": 30, "img_size": 256, "precision": "bf16",
                   "compile": False, "count": 60}
    alexnet_aptos = estimate.estimate([alexnet_row], 1)
    assert alexnet_aptos["gpu_hours"] == pytest.approx(by_hand)
    assert result["gpu_hours"] == pytest.approx(sum(result["by_dataset"].values()))
    assert result["wall_clock_hours"] == pytest.approx(result["gpu_hours"] / 8)
    assert set(result["by_model"]) == {n for n, e in registry.REGISTRY.items() if e.group == "testbed"}

    # benchmarks/train_throughput.py --compile writes an eager and a compiled row per model: each run gets its own
    measured = {"machine": "test", "device": "fake GPU", "results": [
        {"model": "alexnet", "img_size": 128, "batch_size": 128, "precision": "bf16", "compile": False,
         "model_alone_img_per_s": 9000.0, "train_py_img_per_s": 4000.0, "input_path": "gpu"},
        {"model": "alexnet", "img_size": 128, "batch_size": 128, "precision": "bf16", "compile": True,
         "model_alone_img_per_s": 12000.0, "train_py_img_per_s": 6000.0, "input_path": "gpu"}]}
    (tmp_path / "tp.json").write_text(json.dumps(measured))
    table = estimate.load_throughput(tmp_path / "tp.json")
    with_file = estimate.estimate([alexnet_row], 1, table)
    assert with_file["gpu_hours"] == pytest.approx(60 * 30 * (2931 + 731 / 3) / (4000 / 4) / 3600)  # 4x the pixels
    compiled = estimate.estimate([{**alexnet_row, "compile": True}], 1, table)
    assert compiled["gpu_hours"] == pytest.approx(60 * 30 * (2931 + 731 / 3) / (6000 / 4) / 3600)
    no_fp32_row = estimate.training_rate("alexnet", 128, "fp32", table)
    assert no_fp32_row[0] == pytest.approx(14425 * 0.77 * 4) and no_fp32_row[1].startswith("H200")
    measured["results"][0]["train_py_img_per_s"] = "fast"
    (tmp_path / "tp.json").write_text(json.dumps(measured))
    with pytest.raises(errors.DataError, match=r"results\[0\].train_py_img_per_s"):
        grid.main(["estimate", "--paper", "--throughput", "tp.json"])
    with pytest.raises(errors.UsageError, match="benchmarks/train_throughput.py"):
        estimate.training_rate("clip_vit_b16", 224, "bf16")

    # the reference table is a file of the repository, in the format --throughput reads, naming its machine: passed
    # as --throughput it gives the same estimate and the same packs as the default
    assert estimate.REFERENCE.parent == REPO / "benchmarks"
    reference = json.loads(estimate.REFERENCE.read_text())
    assert "H200" in reference["machine"] and reference["train_py_efficiency"] == 0.77
    capsys.readouterr()
    assert grid.main(["estimate", "--paper", "--gpus", "8", "--json", "--throughput", str(estimate.REFERENCE)]) == 0
    from_file = json.loads(capsys.readouterr().out)
    assert from_file["gpu_hours"] == pytest.approx(result["gpu_hours"], rel=1e-4)  # its train.py figures: 0.1 img/s
    assert from_file["by_dataset"] == pytest.approx(result["by_dataset"], rel=1e-4)
    as_file = estimate.load_throughput(estimate.REFERENCE)
    for model in ("alexnet", "resnet50", "deit_small"):
        config = {"model": model, "img_size": 224, "batch_size": 128, "optimizer": "sgd", "precision": "auto"}
        assert estimate.pack_size([config], 141 * 2**30, as_file) == estimate.pack_size([config], 141 * 2**30)
    text = (REPO / "sweep" / "estimate.py").read_text() + (REPO / "README.md").read_text()
    assert not re.search(r"gpu-baseline|gpu-2026|\.\./shared", text)  # nothing outside the repository


def test_estimate_of_a_manifest_takes_each_runs_settings_and_the_records_split_sizes(tmp_path, monkeypatch, capsys):
    """The augmentation ablation's ResNet-50 weights cost what a ResNet-50 costs; a manifest's runs are estimated in
    the precision they were planned with; HPA's sizes from a record count test_val, evaluated every epoch."""
    from data.synthetic import write_fixture
    monkeypatch.chdir(tmp_path)
    root = write_fixture("hpa", tmp_path / "hpa", per_class=3)
    assert grid.main(["plan", "--datasets", "hpa", "--models", "resnet50_augmix", "shufflenet_v2_x0_5", "--grid",
                      "product", "--lr", "0.1", "--root", str(root), "--split-method", "stratified", "--precision",
                      "no", "--weights", "random", "--epochs", "1", "--img-size", "16", "--batch-size", "8",
                      "--workers", "0"]) == 0
    entries = read_manifest("grid.jsonl")
    small = next(e for e in entries if e.model == "shufflenet_v2_x0_5")
    assert grid_py(["run", "--runs", small.run_id], tmp_path).returncode == 0
    record = record_of(small)
    sizes = record["dataset"]["split_sizes"]
    capsys.readouterr()
    assert grid.main(["estimate", "--json", "--device", "gpu"]) == 0  # as if these runs went to GPUs
    result = json.loads(capsys.readouterr().out)
    assert result["precision"] == "fp32" and result["runs"] == 2 and result["device"] == "gpu"
    assert result["split_sizes"]["hpa"]["evaluated_per_epoch"] == sizes["val"] + sizes["test_val"] > sizes["val"]
    rate = 1708 * 0.77 * (256 / 16) ** 2  # ResNet-50's fp32 figure, at 16 px
    per_epoch = sizes["train"] + (sizes["val"] + sizes["test_val"]) / 3
    assert result["by_model"]["resnet50_augmix"] == pytest.approx(per_epoch / rate / 3600)
    with pytest.raises(errors.UsageError, match="--precision bf16 is for --paper"):
        grid.main(["estimate", "--precision", "bf16"])

    # as they are: the records trained on a CPU, so CPU process-hours at the speed the record measured, and the
    # model no record measured yet is named with the way to measure it (not "0 GPU-hours")
    assert record["runtime"]["device"] == "cpu"
    assert grid.main(["estimate", "--json"]) == 0
    on_cpu = json.loads(capsys.readouterr().out)
    assert on_cpu["device"] == "cpu" and on_cpu["device_because"] == "its runs' records trained on a CPU"
    measured = record["history"][0]["images_per_s"]
    assert on_cpu["by_model"] == {"shufflenet_v2_x0_5": pytest.approx(per_epoch / measured / 3600)}
    assert on_cpu["unmeasured"] == [{"dataset": "hpa", "model": "resnet50_augmix", "img_size": 16, "count": 1}]
    assert grid.main(["estimate"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("2 runs on a CPU (fp32): ") and "GPU-hours" not in text
    assert ("not costed, no CPU speed known: 1 run(s) of resnet50_augmix on hpa at 16 px; finish one of them (its "
            "record measures the speed) or measure it with `python benchmarks/train_throughput.py --device cpu "
            "--model resnet50_augmix --img-size 16 --json FILE` and pass --throughput FILE") in text
    assert text.endswith("device: CPU, because its runs' records trained on a CPU\n")


def test_auto_pack_fills_a_fast_models_gpu_within_its_memory():
    config = {"model": "alexnet", "img_size": 256, "batch_size": 128, "optimizer": "sgd", "precision": "auto"}
    assert estimate.pack_size([config], 141 * 2**30) == math.floor(25488 / 2950)
    one = estimate.config_memory_bytes("alexnet", 256, 128, "bf16", "sgd")
    assert estimate.pack_size([config], int(3.5 * one / 0.8)) == 3  # memory-bound
    assert estimate.pack_size([{**config, "model": "resnet152"}], 141 * 2**30) == 1  # GPU-bound
    # the precision is the run's own (train.py --precision no: fp32, twice the activations), for run and slurm alike
    one_fp32 = estimate.config_memory_bytes("alexnet", 256, 128, "fp32", "sgd")
    assert one_fp32 > one and estimate.pack_size([{**config, "precision": "no"}], int(3.5 * one_fp32 / 0.8)) == 3
    assert estimate.pack_size([config], int(3.5 * one_fp32 / 0.8)) > 3
    # a group with AdamW runs packs as many as AdamW's two moments leave room for
    adamw = estimate.config_memory_bytes("alexnet", 256, 128, "bf16", "adamw")
    assert estimate.pack_size([config, {**config, "optimizer": "adamw"}], int(3.5 * adamw / 0.8)) == 3


# --- studies -------------------------------------------------------------------------------------------------------

def test_a_study_script_runs_its_grid_then_the_analysis(tmp_path):
    from data.synthetic import write_fixture
    write_fixture("cifar10", tmp_path / "datasets" / "cifar10", per_class=4)
    env = {**ENV, "PYTHON": sys.executable, "MODELS": "shufflenet_v2_x0_5",
           "PLAN_OPTIONS": "--grid product --lr 0.05 --weights random --epochs 1 --img-size 16 --batch-size 16 "
                           "--workers 0"}
    result = subprocess.run(["bash", str(REPO / "studies" / "cifar10_control.sh")], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    entries = read_manifest(tmp_path / "manifests" / "cifar10.jsonl")
    assert [record_of(e)["status"] for e in entries] == ["complete"]
    report = (tmp_path / "reports" / "cifar10_control" / "report.md").read_text()
    assert "cifar10" in report and all(e.model in report for e in entries)
    for script in sorted((REPO / "studies").glob("*.sh")):
        assert subprocess.run(["bash", "-n", str(script)]).returncode == 0, script


def test_a_grid_whose_weights_cannot_be_had_stops_before_any_run(split_file, tmp_path, monkeypatch):
    """Pretrained weights neither cached nor reachable: one line naming the models and the download command, before
    a single run is launched (each run would otherwise fail, and be retried)."""
    monkeypatch.chdir(tmp_path)
    args = [word for word in tiny(split_file, 1) if word not in ("--weights", "random")]
    assert grid.main(["plan", "--datasets", "digits", "--models", "resnet18", "mobilenet_v3_small", "--grid",
                      "product", "--lr", "0.01", *args]) == 0
    offline = {**ENV, "TORCH_HOME": str(tmp_path / "torch"), "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1",
               "https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}  # nothing listens there
    result = subprocess.run([sys.executable, str(REPO / "grid.py"), "run"], cwd=tmp_path, env=offline,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("grid.py: error: the pretrained weights of 2 models")
    assert "python models.py --download mobilenet_v3_small resnet18" in line
    assert not (tmp_path / "runs" / ".grid" / "log").exists()  # no run was launched
