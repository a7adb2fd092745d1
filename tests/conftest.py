"""Shared fixtures: a small digits split and one finished training run, made once per test session."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common import fileio
from data import open_dataset

REPO = Path(__file__).resolve().parent.parent
# The xdist workers (pyproject.toml) share the machine's cores: each worker, and every process a test starts, takes
# one thread (as the tests already ask of train.py), so that the workers do not fight over the same cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
# The files that take minutes, slowest first: run first, so that the workers (pyproject.toml: a file each) end
# together instead of one finishing a long file alone.
SLOW_FILES = ("test_studies.py", "test_benchmark_study.py", "test_demo.py", "test_slurm_cluster.py", "test_grid.py",
              "test_identity.py", "test_train.py", "test_packed.py")


def pytest_collection_modifyitems(items: list) -> None:
    items.sort(key=lambda item: SLOW_FILES.index(item.path.name) if item.path.name in SLOW_FILES else len(SLOW_FILES))


def small_digits_split(folder: Path, n_train: int = 160, n_val: int = 91) -> Path:
    """A split file with a small train and an odd-sized val split, so that runs take seconds."""
    samples = open_dataset("digits")
    rng = np.random.default_rng(0)
    order = rng.permutation(len(samples))
    assignment = np.full(len(samples), "unused", dtype=object)
    assignment[order[:n_train]] = "train"
    assignment[order[n_train:n_train + n_val]] = "val"
    path = folder / "digits-small.csv"
    # Samples marked "unused" are deliberately left out of every split.
    lines = ["id,label,split"] + [f"{i},{label},{s}" for i, label, s in zip(samples.ids, samples.labels, assignment)]
    path.write_text("\n".join(lines) + "\n")
    return path


def train(args: list[str], cwd: Path, launcher: list[str] | None = None, check: bool = True,
          extra_env: dict | None = None, **popen) -> subprocess.CompletedProcess:
    command = (launcher or [sys.executable]) + [str(REPO / "train.py"), *args]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **(extra_env or {})}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, **popen)
    if check and result.returncode != 0:
        raise AssertionError(f"train.py failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as f:
        header, *rows = list(csv.reader(f))
    return header, rows


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with open(path, "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows([header, *rows])


def only_record(out: Path) -> dict:
    found = sorted(out.glob("*.json"))
    assert len(found) == 1, found
    return fileio.read_json(found[0])


@pytest.fixture(scope="session")
def split_file(tmp_path_factory) -> Path:
    return small_digits_split(tmp_path_factory.mktemp("splits"))


def digits_args(split_file: Path, out: Path, epochs: int = 2, *extra: str) -> list[str]:
    # MobileNetV3 has dropout: resuming must restore the random numbers it draws, not only the data order.
    return ["--dataset", "digits", "--model", "mobilenet_v3_small", "--weights", "random",
            "--split-file", str(split_file), "--epochs", str(epochs), "--batch-size", "32", "--img-size", "16",
            "--workers", "0", "--lr", "0.05", "--out", str(out), *extra]


@pytest.fixture(scope="session")
def complete_run(tmp_path_factory, split_file):
    work = tmp_path_factory.mktemp("run")
    out = work / "runs"
    result = train(digits_args(split_file, out, 3), work)
    return work, out, result


