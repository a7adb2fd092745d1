"""Every script of studies/ run end to end in its smoke setting (SMOKE=1, studies/settings.sh: random weights, one
epoch, 16 px, tiny data) as a user runs it, with the datasets and models it is given reaching both its grid and its
analysis; the train.py options the studies added (--milestones, --regression-loss), DR-2015's test labels and
Appendix F's augmentations; and the demo.

Each study starts several processes (a train.py, an evaluate.py or an analyze.py costs seconds of imports alone), so
these tests take tens of seconds each; figure1_table2.sh and appendix_n.sh share one grid.
"""
from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from augment import transforms
from common import fileio
from data import REGISTRY, open_dataset
from data.synthetic import write_fixture
from training.config import plan_runs
from training.engine import Outputs

from conftest import REPO, read_csv, small_digits_split

STUDIES = REPO / "studies"
SMOKE_MODELS = {"resnet18", "mobilenet_v3_small"}  # settings.sh's
# The test that runs each script's smoke setting (test_every_study_script_has_a_smoke_test keeps this complete).
SMOKED = {"paper_grid.sh": "test_paper_grid_trains_the_datasets_and_models_it_is_given",
          "figure1_table2.sh": "test_figure1_table2_analyses_exactly_the_datasets_and_models_given",
          "appendix_n.sh": "test_appendix_n_runs_on_the_same_grid_and_says_why_it_skips_a_small_one",
          "cifar10_control.sh": "test_cifar10_control_runs_on_a_fixture_copy_of_cifar10",
          "augmentation_ablation.sh": "test_augmentation_ablation_steps_its_50_epoch_runs_at_20_30_40",
          "clip_lpft.sh": "test_clip_lpft_probes_then_fine_tunes_and_analyses",
          "fid_table.sh": "test_fid_table_measures_the_given_datasets_against_statistics_fid_py_made",
          "aptos_kaggle.sh": "test_aptos_study_writes_appendix_f_submissions_per_model_and_setting",
          "benchmark_model.sh": "test_benchmark_a_model_of_a_models_file_against_a_reference_on_the_six_datasets"}


def study(script: str, cwd: Path, *args: str, check: bool = True, **settings: str) -> subprocess.CompletedProcess:
    """bash studies/SCRIPT ARGS in `cwd` with SMOKE=1 and the given settings in the environment."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PYTHON": sys.executable, "SMOKE": "1",
           **settings}
    result = subprocess.run(["bash", str(STUDIES / script), *args], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=900)
    if check:
        assert result.returncode == 0, f"{script} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


def records(folder: Path) -> list[dict]:
    return [fileio.read_json(path) for path in sorted(folder.glob("*.json"))]


def manifest(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_every_study_script_has_a_smoke_test():
    scripts = {path.name for path in STUDIES.glob("*.sh")} - {"settings.sh"}
    assert scripts == set(SMOKED)
    tests = "".join(path.read_text() for path in Path(__file__).parent.glob("test_*.py"))
    assert all(f"def {name}(" in tests for name in SMOKED.values())
    for script in scripts:  # each header says how to run it in miniature
        assert "SMOKE=1" in (STUDIES / script).read_text(), script


@pytest.fixture(scope="module")
def paper_grid(tmp_path_factory):
    """studies/paper_grid.sh's smoke setting on a tiny copy of APTOS: two models, two configurations each. The
    figure and Appendix N studies analyse it, the APTOS study starts from it."""
    work = tmp_path_factory.mktemp("paper-grid")
    study("paper_grid.sh", work, DATASETS="aptos")
    return work


def test_paper_grid_trains_the_datasets_and_models_it_is_given(paper_grid):
    work = paper_grid
    assert (work / "smoke" / "datasets" / "aptos" / "train.csv").is_file()  # the smoke's copy in APTOS's layout
    runs = records(work / "smoke" / "runs")
    assert {(r["config"]["dataset"], r["config"]["model"]) for r in runs} == {("aptos", m) for m in SMOKE_MODELS}
    assert all(r["status"] == "complete" and r["config"]["epochs"] == 1 and r["config"]["weights"] == "random"
               and (r["config"]["optimizer"], r["config"]["schedule"]) == ("adamw", "cosine") for r in runs)
    assert sorted(r["config"]["lr"] for r in runs) == [0.001, 0.001, 0.01, 0.01]
    assert len(manifest(work / "smoke" / "manifests" / "paper.jsonl")) == 4
    assert not (work / "runs").exists()  # the smoke keeps to smoke/


def test_figure1_table2_analyses_exactly_the_datasets_and_models_given(paper_grid):
    """MODELS names one of the grid's two models: the grid has nothing left to train, and the analysis leaves the
    other model's runs out."""
    result = study("figure1_table2.sh", paper_grid, DATASETS="aptos", MODELS="resnet18")
    assert "(0 to do)" in result.stdout + result.stderr
    report = paper_grid / "smoke" / "reports" / "figure1_table2"
    _, rows = read_csv(report / "tables" / "best.csv")
    assert [(row[0], row[1]) for row in rows] == [("aptos", "resnet18")]
    assert "Trend fits" in (report / "report.md").read_text()


def test_appendix_n_runs_on_the_same_grid_and_says_why_it_skips_a_small_one(paper_grid):
    study("appendix_n.sh", paper_grid, DATASETS="aptos")
    report = paper_grid / "smoke" / "reports" / "appendix_n"
    header, rows = read_csv(report / "tables" / "best.csv")
    assert {row[header.index("model")] for row in rows} == SMOKE_MODELS
    assert "needs at least 3 datasets" in (report / "report.md").read_text()


def test_grid_studies_take_datasets_and_models_from_their_settings_not_plan_options(tmp_path):
    result = study("figure1_table2.sh", tmp_path, check=False, PLAN_OPTIONS="--models resnet50")
    assert result.returncode == 2 and not list((tmp_path / "smoke").glob("*/*"))
    assert result.stderr.startswith("figure1_table2.sh: error: PLAN_OPTIONS names --models; set DATASETS or MODELS")


def test_cifar10_control_runs_on_a_fixture_copy_of_cifar10(tmp_path):
    """With DATASETS naming a dataset, the smoke setting trains on a tiny copy in its native layout."""
    study("cifar10_control.sh", tmp_path, DATASETS="cifar10", MODELS="resnet18")
    assert (tmp_path / "smoke" / "datasets" / "cifar10" / "cifar-10-batches-py" / "test_batch").is_file()
    runs = records(tmp_path / "smoke" / "runs")
    assert {(r["config"]["dataset"], r["config"]["model"]) for r in runs} == {("cifar10", "resnet18")}
    assert (tmp_path / "smoke" / "reports" / "cifar10_control" / "report.md").is_file()


def test_augmentation_ablation_steps_its_50_epoch_runs_at_20_30_40(tmp_path):
    """The study's step runs at its 50 epochs: milestones 20/30/40, the authors' choice, in every record (the
    smoke trains one epoch of them)."""
    split = small_digits_split(tmp_path)
    study("augmentation_ablation.sh", tmp_path, MODELS="resnet18", AUGMENTS="paper randaugment",
          PLAN_OPTIONS=f"--split-file {split}")
    runs = records(tmp_path / "smoke" / "runs-ablation")
    assert sorted((r["config"]["augment"], r["config"]["lr"]) for r in runs) == [
        ("paper", 0.01), ("paper", 0.1), ("randaugment", 0.01), ("randaugment", 0.1)]
    assert all(r["config"]["schedule"] == "step" and r["config"]["milestones"] == [20, 30, 40] for r in runs)
    planned = manifest(tmp_path / "smoke" / "manifests" / "ablation-paper.jsonl")[0]["argv"]
    assert " ".join(planned).count("--epochs 50") == 1 and "--milestones 20 30 40" in " ".join(planned)
    header, rows = read_csv(tmp_path / "smoke" / "reports" / "augmentation_ablation" / "tables" / "comparison.csv")
    assert sorted(row[header.index("value")] for row in rows) == ["paper", "randaugment"]


def test_clip_lpft_probes_then_fine_tunes_and_analyses(tmp_path):
    split = small_digits_split(tmp_path)
    study("clip_lpft.sh", tmp_path, MODELS="resnet18", TRAIN_OPTIONS=f"--split-file {split}")
    phases = sorted(r["config"]["lp_ft_phase"] for r in records(tmp_path / "smoke" / "runs"))
    assert phases == ["finetune", "probe"]
    assert (tmp_path / "smoke" / "reports" / "clip_lpft" / "report.md").is_file()


def test_study_scripts_that_train_alone_refuse_arguments(tmp_path):
    """clip_lpft.sh takes its settings from the environment: an argument meant for the grid studies (--gpus 0,1)
    stops it before any training, in one line."""
    result = subprocess.run(["bash", str(STUDIES / "clip_lpft.sh"), "--gpus", "0,1"], cwd=tmp_path,
                            env={**os.environ, "LAUNCH": "false"}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and not result.stdout, result.stdout + result.stderr
    assert result.stderr.startswith("clip_lpft.sh: error: takes no arguments (got: --gpus 0,1); set DATASETS, MODELS")
    assert result.stderr.count("\n") == 1 and not list(tmp_path.iterdir())


def test_fid_table_measures_the_given_datasets_against_statistics_fid_py_made(tmp_path):
    """Random weights, a statistics file fid.py makes from a fixture folder standing in for ImageNet val, the
    smoke's datasets (aptos, eurosat) and not a third dataset present beside them."""
    write_fixture("cassava", tmp_path / "smoke" / "datasets" / "cassava")
    study("fid_table.sh", tmp_path)
    assert (tmp_path / "smoke" / "imagenet-val-stats.npz").is_file()
    (table,) = (tmp_path / "smoke" / "reports" / "fid").glob("fid_table_*.csv")
    header, rows = read_csv(table)
    assert sorted(row[0] for row in rows) == ["aptos", "eurosat"]
    assert all(float(row[header.index("fid")]) >= 0 for row in rows)


def test_aptos_study_writes_appendix_f_submissions_per_model_and_setting(paper_grid):
    """One model of the paper grid's, EXTRAS=1: the grid's choice, the original retrained, the new models on all data
    (APTOS train + val, DR-2015 train + test labels) under more and less augmentation, the extras, a submission
    each, and the table that maps each file to its experiment. The longest test here (ten train.py and evaluate.py
    processes), for the study with the most steps."""
    result = study("aptos_kaggle.sh", paper_grid, MODELS="resnet18", EXTRAS="1")
    assert "(0 to do)" in result.stdout + result.stderr  # the grid's runs were there
    smoke = paper_grid / "smoke"
    out = smoke / "runs-aptos-kaggle"
    test_ids = sorted(path.stem for path in (smoke / "datasets" / "aptos" / "test_images").iterdir())
    files = ["resnet18-original.csv", "resnet18-all-data-more.csv", "resnet18-all-data-less.csv",
             "extras-ensemble.csv"]
    assert sorted(path.name for path in (out / "submissions").iterdir()) == sorted(files)
    for name in files:
        header, rows = read_csv(out / "submissions" / name)
        assert header == ["id_code", "diagnosis"] and sorted(row[0] for row in rows) == test_ids
        assert all(row[1] in {"0", "1", "2", "3", "4"} for row in rows)

    (grid_choice,) = [row for row in csv.DictReader(open(out / "grid-choice" / "tables" / "best.csv"))]
    original = fileio.read_json(out / "original" / "resnet18" / f"{grid_choice['run_id']}.json")
    grid_record = fileio.read_json(smoke / "runs" / f"{grid_choice['run_id']}.json")
    assert original["config"] == {**grid_record["config"], "out": original["config"]["out"], "save_weights": "best"}

    for setting in ("more", "less"):
        (final,) = records(out / "all-data" / f"resnet18-{setting}")
        config = final["config"]
        assert (config["train_on"], config["extra_train"], config["optimizer"], config["schedule"],
                config["augment"]) == ("all", "dr2015", "adamw", "cosine", f"appendix-f-{setting}")
        # all 50 APTOS images (train + val) and DR-2015's 50 training and 50 test images, every one trained on
        assert final["dataset"]["combined_with"][1]["samples"] == 100 and final["dataset"]["split_sizes"] == {
            "train": 150}
    assert "aptos + dr2015: 150 samples (50 aptos + 100 dr2015)" in result.stdout
    (extras,) = records(out / "extras")
    assert (extras["config"]["head"], extras["config"]["regression_loss"], extras["config"]["pool"]) == (
        "regression", "l1", "gem")

    with open(out / "appendix_f.csv", newline="") as f:
        table = {(row["model"], row["experiment"].split(" (")[0]): row for row in csv.DictReader(f)}
    assert {key: row["submission"] for key, row in table.items()} == {
        ("resnet18", "original"): "submissions/resnet18-original.csv",
        ("resnet18", "all data, more augmentation"): "submissions/resnet18-all-data-more.csv",
        ("resnet18", "all data, less augmentation"): "submissions/resnet18-all-data-less.csv",
        ("resnet18", "extras, not Appendix F: regression head"): "submissions/extras-ensemble.csv"}
    assert all(re.match(r"\d\.\d{4} \(", row["val_qwk"]) for row in table.values())
    assert "DR-2015 train + test labels" in table[("resnet18", "all data, more augmentation")]["trained_on"]
    assert "| resnet18 | all data, less augmentation |" in (out / "appendix_f.md").read_text()


def test_readme_maps_the_aptos_study_files_to_appendix_f_experiments():
    studies = (REPO / "README.md").read_text().split("## Studies")[1].split("\n## ")[0]
    for name, experiment in (("<model>-original.csv", "original models"),
                             ("<model>-all-data-more.csv", "more augmentation"),
                             ("<model>-all-data-less.csv", "less augmentation"),
                             ("extras-ensemble.csv", "extras")):
        line = next(line for line in studies.splitlines() if name in line)
        assert experiment in line, line


def test_dr2015_reads_the_test_labels_when_present(tmp_path):
    train_only = open_dataset("dr2015", write_fixture("dr2015", tmp_path / "a", per_class=3))
    both = open_dataset("dr2015", write_fixture("dr2015", tmp_path / "b", per_class=3, test_labels=True))
    assert len(train_only) == 15 and train_only.options["read"] == {"trainLabels.csv": 15}
    assert len(both) == 30 and both.options["read"] == {"trainLabels.csv": 15, "retinopathy_solution.csv": 15}
    assert both.image_files[-1][0].parent.name == "test"
    assert not set(both.columns["patient_id"][:15]) & set(both.columns["patient_id"][15:])


def test_appendix_f_augmentations_are_the_papers():
    """"less" is the crop with at least 0.65 area and horizontal flips only, even on a dataset the paper also flips
    vertically; "more" adds rotations and the stated colour jitter."""
    less = transforms.train_transform(REGISTRY["cassava"], 32, "appendix-f-less")
    more = transforms.train_transform(REGISTRY["aptos"], 32, "appendix-f-more")
    assert [type(step).__name__ for step in less.transforms] == ["RandomResizedCrop", "HorizontalFlip"]
    assert less.transforms[0].scale == transforms.PAPER_SCALE == (0.65, 1.0)
    assert [type(step).__name__ for step in more.transforms] == ["RandomResizedCrop", "HorizontalFlip", "Rotate",
                                                                 "ColorJitter"]
    jitter = more.transforms[-1]
    assert (jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue) == ((0.8, 1.2), (0.8, 1.2),
                                                                                (0.8, 1.2), (-0.1, 0.1))


@pytest.mark.parametrize("options, message", [
    (["--milestones", "30", "20"], "--milestones 30 20: give epochs of 1 or more in increasing order"),
    (["--regression-loss", "l1"], "--regression-loss l1 is the loss of a regression head: add --head regression")])
def test_the_studies_train_py_options_are_checked_before_any_work(tmp_path, options, message):
    result = subprocess.run([sys.executable, str(REPO / "train.py"), *options], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and result.stderr.startswith(f"train.py: error: {message}"), result.stderr


def test_milestones_reach_step_runs_only_and_leave_earlier_run_ids_alone(tmp_path, monkeypatch):
    """--milestones steps the step runs (the record's config says where); a cosine run keeps the dataset's, so its
    id is the one it had before the option existed, and so does a run with the default smooth-L1 loss."""
    monkeypatch.chdir(tmp_path)  # the aptos fixture's split file is made under splits/
    split = small_digits_split(tmp_path)
    base = ["--dataset", "digits", "--model", "resnet18", "--weights", "random", "--split-file", str(split),
            "--schedule", "cosine", "step"]
    before = {run["config"]["schedule"]: run for run in plan_runs(base)}
    after = {run["config"]["schedule"]: run for run in plan_runs([*base, "--milestones", "20", "30", "40"])}
    assert after["step"]["config"]["milestones"] == [20, 30, 40] and before["step"]["config"]["milestones"] == [
        15, 20, 25]
    assert after["cosine"]["run_id"] == before["cosine"]["run_id"] != before["step"]["run_id"] != after["step"][
        "run_id"]
    regression = ["--dataset", "aptos", "--root", str(write_fixture("aptos", tmp_path / "aptos", per_class=8)),
                  "--weights", "random", "--head", "regression"]
    smooth, = plan_runs(regression)
    explicit, = plan_runs([*regression, "--regression-loss", "smooth-l1"])
    l1, = plan_runs([*regression, "--regression-loss", "l1"])
    assert smooth["run_id"] == explicit["run_id"] != l1["run_id"] and l1["config"]["regression_loss"] == "l1"


def test_the_regression_head_trains_with_the_loss_asked_for():
    """--regression-loss l1 is the plain L1 of Appendix F; the default stays smooth L1 (quadratic below 1)."""
    outputs, labels = torch.tensor([[0.5], [3.0], [1.2]]), torch.tensor([0, 1, 4])
    l1 = Outputs("ordinal", regression=True, regression_loss="l1").loss(outputs, labels)
    smooth = Outputs("ordinal", regression=True).loss(outputs, labels)
    assert torch.isclose(l1, torch.tensor((0.5 + 2.0 + 2.8) / 3))
    assert torch.isclose(smooth, F.smooth_l1_loss(outputs.squeeze(1), labels.float())) and smooth < l1
