"""train.py run as a user runs it (a subprocess), on the bundled digits and on generated HPA files."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import metrics
import train as train_script
from common import fileio, runrecord
from data import DatasetError

from conftest import REPO, digits_args, only_record, train

TIMING_KEYS = {"seconds", "images_per_s"}


def comparable(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in entry.items() if k not in TIMING_KEYS} for entry in history]


def test_full_run_writes_a_complete_record(complete_run, split_file):
    work, out, result = complete_run
    record = only_record(out)
    assert record["schema_version"] == runrecord.SCHEMA_VERSION
    assert record["status"] == "complete" and record["error"] is None
    assert record["run_id"].startswith("digits-mobilenet_v3_small-random-sgd-cosine-lr0.05-wd0.0001-paper-s0-")
    assert [e["epoch"] for e in record["history"]] == [1, 2, 3]
    for entry in record["history"]:
        assert {"train_loss", "lr", "seconds", "images_per_s", "val_accuracy"} <= set(entry)
        assert np.isfinite(entry["train_loss"])
    lrs = [e["lr"] for e in record["history"]]
    assert lrs[0] == pytest.approx(0.05) and lrs[0] > lrs[1] > lrs[2]  # cosine, stepped per epoch
    best = record["best"]
    assert best["metrics"]["val_accuracy"] == max(e["val_accuracy"] for e in record["history"])
    assert record["dataset"]["split_sha256"] == fileio.sha256_file(split_file)
    assert record["dataset"]["split_sizes"]["train"] == 160 and record["dataset"]["split_sizes"]["val"] == 91
    assert record["model"]["weights_loaded"] == "random" and record["model"]["params"] > 1e6
    # the model's default size (the paper's 256) and the size this run trains at, each named for what it is
    assert (record["model"]["default_input_size"], record["config"]["img_size"]) == (256, 16)
    assert "input_size" not in record["model"]
    assert record["config"]["optimizer"] == "sgd" and record["config"]["batch_size"] == 32
    assert record["versions"]["torch"] and "train.py" in record["command"]

    predictions = np.load(out / record["predictions"]["val"])
    assert predictions["scores"].shape == (91, 10) and len(set(predictions["ids"])) == 91
    recomputed = metrics.accuracy(predictions["labels"], predictions["scores"].argmax(1))
    assert recomputed == pytest.approx(best["metrics"]["val_accuracy"])
    assert (out / record["run_id"] / "best.safetensors").exists()

    # output to a file (not a terminal): progress lines instead of a bar, each tenth of the epoch; the running loss
    # is the last look's, which at the epoch's last step is the epoch's training loss
    for entry in record["history"]:
        lines = [line for line in result.stdout.splitlines() if line.startswith(f"epoch {entry['epoch']} train: ")]
        assert [line.split()[4] for line in lines] == [f"{step}/5" for step in range(1, 6)]  # 160 images, batch 32
        assert re.fullmatch(rf"epoch \d train: step 5/5 \(100%\), \d+ img/s, loss {entry['train_loss']:.4f}, \d+ s",
                            lines[-1]), lines[-1]
    assert "\r" not in result.stdout + result.stderr


def test_rerunning_a_complete_run_skips_it(complete_run, split_file, monkeypatch, capsys):
    work, out, _ = complete_run
    record_path = next(out.glob("*.json"))
    before = record_path.read_bytes()
    monkeypatch.chdir(work)
    assert train_script.main(digits_args(split_file, out, 3)) == 0
    assert "already complete" in capsys.readouterr().out
    assert record_path.read_bytes() == before


def test_killed_run_resumes_to_the_same_history(complete_run, split_file, tmp_path):
    _, _, _ = complete_run
    reference = only_record(complete_run[1])
    out = tmp_path / "runs"
    command = [sys.executable, str(REPO / "train.py"), *digits_args(split_file, out, 3)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:  # kill -9 as soon as epoch 1 is recorded
        found = list(out.glob("*.json"))
        if found:
            try:
                if len(fileio.read_json(found[0])["history"]) >= 1:
                    break
            except (json.JSONDecodeError, KeyError):
                pytest.fail("a reader saw a partly written record")
        time.sleep(0.05)
    process.kill()
    process.wait()
    interrupted = only_record(out)
    assert interrupted["status"] == "running" and 1 <= len(interrupted["history"]) <= 3

    result = train(digits_args(split_file, out, 3), tmp_path)
    resumed = only_record(out)
    assert resumed["status"] == "complete"
    assert comparable(resumed["history"]) == comparable(reference["history"])
    if len(interrupted["history"]) < 3:
        assert "resuming after epoch" in result.stdout


def test_sigterm_saves_state_and_the_resumed_run_matches(complete_run, split_file, tmp_path):
    reference = only_record(complete_run[1])
    out = tmp_path / "runs"
    command = [sys.executable, str(REPO / "train.py"), *digits_args(split_file, out, 3)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not list(out.glob("*.json")):
        time.sleep(0.02)
    time.sleep(1.0)  # inside epoch 1's training
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode in (143, 0), stderr
    if process.returncode == 143:
        assert "stopped by SIGTERM" in stdout
        state = next(out.glob("*/state"))
        step = json.loads((state / "progress.json").read_text())["partial"]["step"]
        assert step >= 1
        # the record and grid.py status (table and JSON) call it interrupted, and say where it stopped
        record = only_record(out)
        assert record["status"] == "interrupted" and record["stopped_at"]["step"] == step
        shown = json.loads(grid_status(out, "--json").stdout)
        assert shown["totals"]["interrupted"] == 1 and shown["totals"]["running"] == shown["totals"]["pending"] == 0
        assert shown["interrupted"] == [{"run_id": record["run_id"], "epochs_done": len(record["history"]),
                                         "epochs": 3, "stopped_at": record["stopped_at"]}]
        table = grid_status(out).stdout.splitlines()
        columns = table[0].split()
        assert table[1].split()[columns.index("interrupted")] == "1"
        epoch = record["stopped_at"]["epoch"]
        assert f"  {record['run_id']}: stopped by SIGTERM in epoch {epoch} of 3, at step {step} of 5" in table
    train(digits_args(split_file, out, 3), tmp_path)
    assert comparable(only_record(out)["history"]) == comparable(reference["history"])


def grid_status(folder, *options: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, str(REPO / "grid.py"), "status", str(folder), *options],
                            capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    return result


def test_non_finite_loss_marks_the_run_diverged(split_file, tmp_path):
    out = tmp_path / "runs"
    result = train(digits_args(split_file, out, 2, "--lr", "1e12"), tmp_path)
    record = only_record(out)
    assert result.returncode == 0
    assert record["status"] == "diverged" and record["diverged_epoch"] == 1
    assert "non-finite" in record["error"]
    again = train(digits_args(split_file, out, 2, "--lr", "1e12"), tmp_path)
    assert "already diverged" in again.stdout


def test_weights_broken_by_an_epochs_last_step_also_mark_the_run_diverged(split_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "runs"
    args = digits_args(split_file, out, 1, "--lr", "1e12")
    args[args.index("--batch-size") + 1] = "160"  # one step per epoch: the loss is finite, the update is not
    assert train_script.main(args) == 0
    record = only_record(out)
    assert record["status"] == "diverged" and "non-finite model outputs" in record["error"]


def test_two_processes_evaluate_each_sample_exactly_once(split_file, tmp_path):
    out = tmp_path / "runs"
    # `accelerate launch --cpu` starts a single process whatever --num_processes says (accelerate 1.15); two CPU
    # processes come from the multi-process launcher with ACCELERATE_USE_CPU set (gloo backend, MULTI_CPU).
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    train(digits_args(split_file, out, 1), tmp_path, launcher=launcher, extra_env={"ACCELERATE_USE_CPU": "true"})
    record = only_record(out)
    assert record["num_processes"] == 2 and record["status"] == "complete"
    predictions = np.load(out / record["predictions"]["val"])
    assert len(predictions["ids"]) == 91 and len(set(predictions["ids"])) == 91


def test_hpa_thresholds_are_chosen_on_val_and_applied_to_test_val(tmp_path):
    from data.synthetic import write_fixture
    root = write_fixture("hpa", tmp_path / "hpa", per_class=3)
    out = tmp_path / "runs"
    train(["--dataset", "hpa", "--root", str(root), "--model", "resnet18", "--weights", "random", "--epochs", "1",
           "--batch-size", "8", "--img-size", "16", "--workers", "0", "--out", str(out),
           "--split-method", "stratified"], tmp_path)
    record = only_record(out)
    assert record["dataset"]["report_split"] is None and record["dataset"]["extra_splits"] == ["test_val"]
    val = np.load(out / record["predictions"]["val"])
    test_val = np.load(out / record["predictions"]["test_val"])
    chosen = metrics.choose_thresholds(val["labels"], val["scores"])
    np.testing.assert_allclose(val["thresholds"], chosen)
    np.testing.assert_allclose(test_val["thresholds"], chosen)
    applied = metrics.macro_f1(test_val["labels"], (test_val["scores"] >= chosen).astype(int))
    assert record["best"]["metrics"]["test_val_macro_f1"] == pytest.approx(applied)


def test_bad_dataset_fails_before_any_compute(tmp_path):
    from data.synthetic import write_fixture
    root = write_fixture("aptos", tmp_path / "aptos")
    csv = root / "train.csv"
    csv.write_text(csv.read_text().replace("id_code,diagnosis", "id_code,grade"))
    with pytest.raises(DatasetError, match=r"train.csv: column 'diagnosis' is missing"):
        train_script.main(["--dataset", "aptos", "--root", str(root), "--weights", "random", "--out",
                           str(tmp_path / "runs")])
    assert not (tmp_path / "runs").exists()


def test_corrupt_image_names_the_file_or_is_skipped_and_counted(tmp_path, monkeypatch):
    from data import BadImageError
    from data.synthetic import write_fixture
    root = write_fixture("aptos", tmp_path / "aptos", per_class=10)
    corrupt = sorted((root / "train_images").iterdir())[0]
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)  # passes the up-front header check, fails to decode
    monkeypatch.chdir(tmp_path)
    args = ["--dataset", "aptos", "--root", str(root), "--model", "resnet18", "--weights", "random", "--epochs", "1",
            "--batch-size", "8", "--img-size", "16", "--workers", "0", "--split-method", "stratified"]
    with pytest.raises(BadImageError, match=corrupt.name) as error:
        train_script.main([*args, "--out", str(tmp_path / "strict"), "--workers", "2"])
    assert "--skip-bad-images" in str(error.value) and "--verify-images" in str(error.value)
    # the hint names the exact command that lists every bad image of this data, and that command does so
    command = f"python cache.py aptos --root {root} --split-method stratified --verify-images"
    assert f"`{command}` lists every bad image" in str(error.value)
    listed = subprocess.run([sys.executable, str(REPO / "cache.py"), *command.split()[2:]], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert listed.returncode == 1 and f"{corrupt}: " in listed.stderr, listed.stderr
    failed = only_record(tmp_path / "strict")
    assert failed["status"] == "failed" and corrupt.name in failed["error"]
    assert "\n" not in failed["error"] and failed["error"].startswith("UnreadableImage: ")
    assert train_script.main([*args, "--out", str(tmp_path / "lenient"), "--skip-bad-images"]) == 0
    record = only_record(tmp_path / "lenient")
    assert record["status"] == "complete" and record["skipped_bad_images"] == 1


def test_run_reads_through_the_prepared_cache_and_records_it(split_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "runs"
    args = digits_args(split_file, out, 1, "--cache-dir", str(tmp_path / "cache"))
    assert train_script.main([*args, "--cache", "build"]) == 0
    record = only_record(out)
    assert record["cache"]["train"]["images"] == 160 and record["cache"]["val"]["images"] == 91
    kinds = {record["cache"]["train"]["settings"]["kind"], record["cache"]["val"]["settings"]["kind"]}
    assert kinds == {"train", "eval"}
    shutil.rmtree(out)
    assert train_script.main([*args, "--cache", "off"]) == 0
    uncached = only_record(out)
    assert uncached["cache"] == {"train": None, "val": None}
    assert uncached["run_id"] == record["run_id"]  # where images are read from is not part of the experiment


def test_worker_count_does_not_change_the_run(split_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    histories = []
    for workers in ("0", "2"):
        args = digits_args(split_file, tmp_path / f"out{workers}", 1)
        args[args.index("--workers") + 1] = workers
        assert train_script.main(args) == 0
        histories.append(comparable(only_record(tmp_path / f"out{workers}")["history"]))
    assert histories[0] == histories[1]
