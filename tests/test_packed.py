"""train.py with several configurations in one process, LP-FT, pausing, what a finished run keeps, and records."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import torch
from accelerate.utils import set_seed
from safetensors.torch import load_file

import train as train_script
from common import errors, fileio
from nets import networks
from training import command as training_command
from training.config import plan_runs
from training.options import build_parser

from conftest import REPO, digits_args, train

TIMING_KEYS = {"seconds", "images_per_s"}


def comparable(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in entry.items() if k not in TIMING_KEYS} for entry in history]


def records_by_lr_wd(out) -> dict[tuple[float, float], dict]:
    found = {}
    for path in sorted(out.glob("*.json")):
        record = fileio.read_json(path)
        found[(record["config"]["lr"], record["config"]["wd"])] = record
    return found


def assert_same_history(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(comparable(a), comparable(b)):
        assert x.keys() == y.keys()
        for key in x:
            assert x[key] == pytest.approx(y[key], rel=1e-5, abs=1e-6), key


@pytest.fixture(scope="module")
def packed(tmp_path_factory, split_file):
    """Four configurations (2 lr x 2 wd) of MobileNetV3 (dropout) trained together for 2 epochs."""
    work = tmp_path_factory.mktemp("packed")
    out = work / "runs"
    args = digits_args(split_file, out, 2)
    args[args.index("--lr") + 1:args.index("--lr") + 2] = ["0.05", "0.01"]
    result = train([*args, "--wd", "1e-4", "0"], work)
    return work, out, args, result


def test_packed_configurations_equal_separate_runs(packed, split_file, tmp_path):
    work, out, _, _ = packed
    together = records_by_lr_wd(out)
    assert len(together) == 4 and all(r["status"] == "complete" for r in together.values())
    assert len({r["run_id"] for r in together.values()}) == 4
    assert all(r["packed_with"] == 4 for r in together.values())
    for lr, wd in [(0.05, 0.0001), (0.01, 0.0)]:
        alone = tmp_path / f"alone-{lr}-{wd}"
        args = digits_args(split_file, alone, 2)
        args[args.index("--lr") + 1] = str(lr)
        train([*args, "--wd", str(wd)], tmp_path)
        (record,) = records_by_lr_wd(alone).values()
        assert record["run_id"] == together[(lr, wd)]["run_id"]  # the same experiment, whichever way it ran
        assert_same_history(record["history"], together[(lr, wd)]["history"])


def test_plan_runs_gives_train_pys_run_ids(packed, monkeypatch):
    work, out, args, _ = packed
    monkeypatch.chdir(work)
    planned = plan_runs([*args, "--wd", "1e-4", "0"])
    assert sorted(p["run_id"] for p in planned) == sorted(r["run_id"] for r in records_by_lr_wd(out).values())
    for p in planned:  # each plan's argv is a single-configuration command with the same run id
        (again,) = plan_runs(p["argv"])
        assert again["run_id"] == p["run_id"]


def test_planned_commands_keep_every_digit_of_a_learning_rate(packed, monkeypatch):
    work, _, args, _ = packed
    monkeypatch.chdir(work)
    args = [*args, "--wd", "0"]
    args[args.index("--lr") + 1:args.index("--lr") + 3] = ["1.23456789e-4"]
    (planned,) = plan_runs(args)
    assert planned["config"]["lr"] == 1.23456789e-4
    assert build_parser().parse_args(planned["argv"]).lr == [1.23456789e-4]


def test_lp_ft_refuses_training_on_all_labelled_data(tmp_path):
    result = train(["--dataset", "digits", "--lp-ft", "--train-on", "all"], tmp_path, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("train.py: error: --lp-ft picks its probe on the selection split")


def test_a_finished_run_keeps_record_predictions_and_best_weights_not_its_state(packed):
    _, out, _, _ = packed
    for record in records_by_lr_wd(out).values():
        folder = out / record["run_id"]
        assert not (folder / "state").exists()
        assert (folder / "best.safetensors").exists() and (folder / "predictions-val.npz").exists()


def test_a_diverging_configuration_stops_alone(split_file, tmp_path):
    out = tmp_path / "runs"
    args = digits_args(split_file, out, 2)
    args[args.index("--lr") + 1:args.index("--lr") + 2] = ["1e12", "0.05"]
    result = train([*args, "--save-weights", "none"], tmp_path)
    assert result.returncode == 0
    found = {r["config"]["lr"]: r for r in records_by_lr_wd(out).values()}
    assert found[1e12]["status"] == "diverged" and found[1e12]["diverged_epoch"] == 1
    assert found[0.05]["status"] == "complete" and len(found[0.05]["history"]) == 2
    assert not (out / found[0.05]["run_id"] / "best.safetensors").exists()  # --save-weights none
    assert (out / found[0.05]["run_id"] / "predictions-val.npz").exists()


def test_paused_pack_resumes_each_configuration_to_the_same_history(packed, split_file, tmp_path):
    _, reference_out, args, _ = packed
    out = tmp_path / "runs"
    args = [*args[:args.index("--out")], "--out", str(out), "--wd", "1e-4", "0"]
    first = train([*args, "--until-epoch", "1"], tmp_path)
    paused = records_by_lr_wd(out)
    assert {r["status"] for r in paused.values()} == {"paused"} and first.returncode == 0
    assert all(len(r["history"]) == 1 for r in paused.values())
    resumed = train(args, tmp_path)
    assert resumed.stdout.count("resuming after epoch 1") == 4
    reference = records_by_lr_wd(reference_out)
    for key, record in records_by_lr_wd(out).items():
        assert record["status"] == "complete"
        assert_same_history(record["history"], reference[key]["history"])


def test_record_says_how_the_number_was_made(packed):
    _, out, _, _ = packed
    record = next(iter(records_by_lr_wd(out).values()))
    runtime = record["runtime"]
    assert runtime["device"] == "cpu" and runtime["num_processes"] == 1
    assert runtime["torch_threads"] >= 1 and runtime["omp_num_threads"] == "1"  # tests set OMP_NUM_THREADS=1
    assert runtime["device_name"] and "launcher" in runtime
    assert os.path.isabs(record["paths"]["split_file"]["resolved"])
    assert record["normalization"]["mode"] == "imagenet"


def test_linear_probe_then_fine_tuning(split_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "runs"
    args = digits_args(split_file, out, 3)
    del args[args.index("--lr"):args.index("--lr") + 2]
    assert train_script.main([*args, "--lp-ft", "--probe-lr", "0.1", "0.01", "--probe-wd", "0",
                              "--lr", "1e-3", "--wd", "0"]) == 0
    found = [fileio.read_json(p) for p in sorted(out.glob("*.json"))]
    probes = [r for r in found if r["lp_ft"]["phase"] == "probe"]
    (finetune,) = [r for r in found if r["lp_ft"]["phase"] == "finetune"]
    assert len(probes) == 2 and all(r["status"] == "complete" for r in found)
    assert all(len(r["history"]) == 1 and r["config"]["optimizer"] == "adamw" for r in probes)  # a third of 3 epochs
    assert len(finetune["history"]) == 2 and finetune["config"]["epochs"] == 2
    probe_ids = {r["run_id"]: r for r in probes}
    assert finetune["lp_ft"]["probe_run_id"] in probe_ids
    winner = probe_ids[finetune["lp_ft"]["probe_run_id"]]
    assert finetune["lp_ft"]["probe_history"] == winner["history"]  # both phases' histories in the record
    assert winner["best"]["metrics"]["val_accuracy"] == max(r["best"]["metrics"]["val_accuracy"] for r in probes)

    # The probe trained the head alone: every other weight and BatchNorm statistic is the initial one.
    set_seed(0)
    initial, info = networks.create_model("mobilenet_v3_small", 10, weights="random")
    probed = load_file(out / winner["run_id"] / "best.safetensors")
    head = set(info.head_parameters)
    assert head and len(head) < len(probed)
    for key, value in initial.state_dict().items():
        if key in head:
            assert not torch.equal(probed[key], value), key
        else:
            assert torch.equal(probed[key], value), key

    assert train_script.main([*args, "--lp-ft", "--probe-lr", "0.1", "0.01", "--probe-wd", "0",
                              "--lr", "1e-3", "--wd", "0"]) == 0  # everything done: all skipped


def test_expected_error_under_accelerate_launch_is_one_short_message(tmp_path):
    command = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "1",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", str(REPO / "train.py"),
               "--dataset", "aptos",
               "--root", str(tmp_path / "no-such-folder"), "--weights", "random"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    output = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode == -signal.SIGUSR1  # not SIGTERM's 143, which means "state saved, resume"
    assert len(output) < 6 and "Traceback" not in result.stdout + result.stderr, output
    assert output[0].startswith("train.py: error: dataset 'aptos'") and "no-such-folder" in "".join(output)


def test_usage_errors_exit_2_without_a_traceback(tmp_path):
    result = train(["--dataset", "cassava", "--head", "regression", "--root", str(tmp_path)], tmp_path, check=False)
    assert result.returncode in (1, 2) and "Traceback" not in result.stderr
    result = train(["--dataset", "digits", "--model", "resnet19"], tmp_path, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("train.py: error: unknown model 'resnet19'")


def test_crops_resized_on_the_device_train_like_the_cpu_path(packed, split_file, tmp_path, monkeypatch):
    """--augment-device gpu runs gpu_augment's path (here on CPU tensors): same crops, pixels within a grey level."""
    monkeypatch.chdir(tmp_path)
    _, reference_out, _, _ = packed
    out = tmp_path / "runs"
    args = digits_args(split_file, out, 2)
    assert train_script.main([*args, "--wd", "1e-4", "--augment-device", "gpu"]) == 0
    (record,) = records_by_lr_wd(out).values()
    reference = records_by_lr_wd(reference_out)[(0.05, 1e-4)]
    assert record["input_path"] == "gpu" and reference["input_path"] == "cpu"
    assert record["run_id"] == reference["run_id"]  # where the crop is resampled is not part of the experiment
    for ours, theirs in zip(record["history"], reference["history"]):
        assert ours["train_loss"] == pytest.approx(theirs["train_loss"], rel=0.02)


def test_verify_images_reports_a_truncated_image_before_the_first_step(tmp_path, monkeypatch):
    from data.synthetic import write_fixture
    from imagecache.verify import BadImagesError
    root = write_fixture("aptos", tmp_path / "aptos", per_class=6)
    broken = sorted((root / "train_images").iterdir())[3]
    broken.write_bytes(broken.read_bytes()[:200])  # a PNG cut short: its header still looks right
    monkeypatch.chdir(tmp_path)
    args = ["--dataset", "aptos", "--root", str(root), "--model", "resnet18", "--weights", "random", "--epochs", "1",
            "--batch-size", "8", "--img-size", "16", "--workers", "0", "--out", str(tmp_path / "runs"),
            "--cache-dir", str(tmp_path / "cache")]
    with pytest.raises(BadImagesError, match=broken.name) as error:
        train_script.main([*args, "--verify-images"])
    assert "--skip-bad-images" in str(error.value)
    assert not list((tmp_path / "runs").glob("*.json"))  # stopped before any run started
    assert train_script.main([*args, "--verify-images", "--skip-bad-images"]) == 0
    (record,) = records_by_lr_wd(tmp_path / "runs").values()
    assert record["status"] == "complete" and broken.stem in record["bad_image_ids"]


def test_a_run_killed_after_its_last_saved_epoch_completes_without_training_more(split_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "runs"
    args = digits_args(split_file, out, 2)
    assert train_script.main([*args, "--until-epoch", "1"]) == 0
    assert train_script.main([*args, "--until-epoch", "1"]) == 0  # already there: nothing trained
    (record,) = records_by_lr_wd(out).values()
    assert record["status"] == "paused" and len(record["history"]) == 1
    progress_file = out / record["run_id"] / "state" / "progress.json"
    progress = fileio.read_json(progress_file)
    fileio.atomic_write_json(progress_file, {**progress, "epoch": 2})  # as if killed right after epoch 2's save
    assert train_script.main(args) == 0
    (record,) = records_by_lr_wd(out).values()
    assert record["status"] == "complete" and [e["epoch"] for e in record["history"]] == [1]
    assert not (out / record["run_id"] / "state").exists()


def test_a_final_aptos_model_on_all_labelled_data_plus_dr2015(tmp_path, monkeypatch):
    from data.synthetic import write_fixture
    aptos = write_fixture("aptos", tmp_path / "aptos", per_class=6)
    dr2015 = write_fixture("dr2015", tmp_path / "dr2015", per_class=3)
    monkeypatch.chdir(tmp_path)
    assert train_script.main(["--dataset", "aptos", "--root", str(aptos), "--extra-train", "dr2015", "--extra-root",
                              str(dr2015), "--train-on", "all", "--model", "resnet18", "--weights", "random",
                              "--epochs", "2", "--batch-size", "8", "--img-size", "16", "--workers", "0",
                              "--head", "regression", "--out", str(tmp_path / "runs")]) == 0
    (record,) = records_by_lr_wd(tmp_path / "runs").values()
    dataset = record["dataset"]
    assert record["status"] == "complete" and dataset["selection_split"] is None
    assert dataset["split_sizes"] == {"train": 30 + 15}  # APTOS's train and val, and every 2015 image
    assert [p["dataset"] for p in dataset["combined_with"]] == ["aptos", "dr2015"]
    assert record["best"]["epoch"] == 2  # nothing to select on: the last epoch is kept
    assert (tmp_path / "runs" / record["run_id"] / "best.safetensors").exists()


@pytest.mark.parametrize("flags, message", [
    (["--batch-size", "0"], "--batch-size 0: batch size, epochs, learning rates and --max-pack must be positive"),
    (["--epochs", "0"], "--epochs 0:"), (["--lr", "0.1", "-1"], "--lr -1:"), (["--workers", "-1"], "--workers -1:"),
    (["--optimizer", "adamw", "--lr", "0"], "--lr 0:"), (["--label-smoothing", "1.5"], r"\[0, 1\)"),
    (["--lp-ft", "--until-epoch", "1"], "--lp-ft runs both phases"),
])
def test_impossible_numbers_are_refused_before_the_data_is_opened(flags, message, monkeypatch):
    monkeypatch.setattr(training_command, "open_inputs", lambda *a: pytest.fail("the data was opened before the check"))
    with pytest.raises(errors.UsageError, match=message):
        train_script.main(["--dataset", "digits", "--weights", "random", *flags])


def test_max_pack_trains_the_configurations_in_turn_with_the_same_records(packed, split_file, tmp_path):
    work, out, args, _ = packed
    alone = tmp_path / "runs"
    args = [*args, "--wd", "1e-4", "0", "--max-pack", "3"]
    args[args.index("--out") + 1] = str(alone)
    train(args, tmp_path)
    together, in_turn = records_by_lr_wd(out), records_by_lr_wd(alone)
    assert sorted(r["packed_with"] for r in in_turn.values()) == [1, 3, 3, 3]
    for key, record in in_turn.items():
        assert record["run_id"] == together[key]["run_id"]
        assert_same_history(record["history"], together[key]["history"])


def test_an_unknown_evaluation_split_is_named_with_the_splits_there(split_file, tmp_path):
    with pytest.raises(errors.UsageError, match=r"--eval-splits bogus: not in .* \(it has train, val"):
        train_script.main(["--dataset", "digits", "--weights", "random", "--split-file", str(split_file),
                           "--eval-splits", "bogus", "--out", str(tmp_path / "runs")])
