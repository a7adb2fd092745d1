"""The study scripts of studies/ that the paper's other scripts do not already exercise, run on fixtures."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

from data.synthetic import write_fixture

from conftest import REPO


def test_aptos_kaggle_study_writes_a_submission_from_the_data(tmp_path):
    """APTOS + the 2015 DR images, the winners' augmentation and regression head, an ensemble with flip TTA, and a
    submission in the competition's format (tiny settings: random weights, one epoch, 32 px)."""
    aptos = write_fixture("aptos", tmp_path / "aptos", per_class=8)
    dr2015 = write_fixture("dr2015", tmp_path / "dr2015", per_class=4)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PYTHON": sys.executable,
           "LAUNCH": sys.executable, "MODELS": "resnet18 mobilenet_v3_small", "APTOS_ROOT": str(aptos),
           "DR2015_ROOT": str(dr2015), "OUT": str(tmp_path / "runs"), "SUBMISSION": str(tmp_path / "submission.csv"),
           "TRAIN_OPTIONS": "--weights random --epochs 1 --img-size 32 --batch-size 8 --workers 0"}
    result = subprocess.run(["bash", str(REPO / "studies" / "aptos_kaggle.sh")], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    records = sorted((tmp_path / "runs").glob("*.json"))
    assert len(records) == 2
    with open(tmp_path / "submission.csv", newline="") as f:
        header, *rows = list(csv.reader(f))
    test_ids = sorted(path.stem for path in (aptos / "test_images").iterdir())
    assert header == ["id_code", "diagnosis"] and [row[0] for row in rows] == test_ids
    assert all(row[1] in {"0", "1", "2", "3", "4"} for row in rows)
    assert "ensemble" in result.stdout


def test_the_demo_trains_above_chance_into_its_own_folder(tmp_path):
    """demo.sh with one of its three models (the README gives all three's results): well above chance (10%)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHON": sys.executable, "DEMO_MODELS": "resnet18",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    result = subprocess.run(["bash", str(REPO / "demo.sh")], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (tmp_path / "runs").exists() and (tmp_path / "demo" / "report" / "report.md").exists()
    with open(tmp_path / "demo" / "report" / "tables" / "best.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert row["model"] == "resnet18" and float(row["report_value"]) > 0.5


def test_study_scripts_without_arguments_refuse_them_and_name_their_settings(tmp_path):
    """clip_lpft.sh and aptos_kaggle.sh take their settings from the environment: an argument (e.g. `--gpus 0,1`
    meant for the grid studies) stops them before any training, in one line."""
    for script, settings in (("clip_lpft.sh", "DATASETS, MODELS, TRAIN_OPTIONS"),
                             ("aptos_kaggle.sh", "MODELS, APTOS_ROOT")):
        result = subprocess.run(["bash", str(REPO / "studies" / script), "--gpus", "0,1"], cwd=tmp_path,
                                env={**os.environ, "LAUNCH": "false"}, capture_output=True, text=True, timeout=60)
        assert result.returncode == 2 and not result.stdout, result.stdout + result.stderr
        assert result.stderr.startswith(f"{script}: error: takes no arguments (got: --gpus 0,1); set {settings}")
        assert result.stderr.count("\n") == 1 and not list(tmp_path.iterdir())
