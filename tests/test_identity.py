"""Run identity survives an upgrade: the ids below were computed by the toolkit at commit fb7877c (before
training/identity.py), so a grid started then resumes now without retraining; an option added later at the value
that reproduces the earlier behaviour changes no id; a record is never reused for other data."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from data.inputs import open_inputs
from data.synthetic import write_fixture
from training import identity, lpft
from training.config import RunConfig, plan_runs, run_config
from training.options import parse

from conftest import REPO, small_digits_split, train

# Computed at fb7877c by train.plan_runs and lpft's phase configurations on these exact inputs.
PINNED = {
    "plain": ["digits-resnet18-random-sgd-cosine-lr0.01-wd0.0001-paper-s0-1dba2b99"],
    "packed": ["digits-resnet18-random-sgd-cosine-lr0.1-wd0.0001-paper-s0-2ab5565a",
               "digits-resnet18-random-sgd-cosine-lr0.1-wd0-paper-s0-9c5b787e",
               "digits-resnet18-random-sgd-cosine-lr0.01-wd0.0001-paper-s0-1dba2b99",
               "digits-resnet18-random-sgd-cosine-lr0.01-wd0-paper-s0-a68e8b01",
               "digits-resnet18-random-adamw-cosine-lr0.1-wd0.0001-paper-s0-3711ecd3",
               "digits-resnet18-random-adamw-cosine-lr0.1-wd0-paper-s0-833512bf",
               "digits-resnet18-random-adamw-cosine-lr0.01-wd0.0001-paper-s0-042d958c",
               "digits-resnet18-random-adamw-cosine-lr0.01-wd0-paper-s0-f8c8ce40"],
    "weights_file": ["digits-resnet18-file-sgd-cosine-lr0.01-wd0.0001-paper-s0-e32ccc0c"],
    "default_split": ["digits-mobilenet_v3_small-random-sgd-cosine-lr0.01-wd0.0001-paper-s0-157a855f"],
    "extra_train": ["aptos-resnet18-random-sgd-cosine-lr0.01-wd0.0001-paper-s0-1494f74b"],
    "lp_ft_probe": ["digits-resnet18-random-adamw-cosine-lr0.1-wd0-paper-probe-s0-ff9dc72b",
                    "digits-resnet18-random-adamw-cosine-lr0.01-wd0-paper-probe-s0-4788cf6d"],
    "lp_ft_finetune": ["digits-resnet18-random-adamw-cosine-lr0.001-wd0-paper-finetune-s0-d18f8b65"],
}


@pytest.fixture(scope="module")
def inputs_folder(tmp_path_factory):
    work = tmp_path_factory.mktemp("identity")
    return work, small_digits_split(work), write_fixture("aptos", work / "aptos", per_class=8), \
        write_fixture("dr2015", work / "dr2015")


def ids(argv: list[str]) -> list[str]:
    return [run["run_id"] for run in plan_runs(argv)]


def test_run_ids_are_those_of_earlier_versions(inputs_folder, monkeypatch):
    work, split, aptos, dr2015 = inputs_folder
    monkeypatch.chdir(work)
    base = ["--dataset", "digits", "--model", "resnet18", "--weights", "random", "--split-file", str(split),
            "--epochs", "2"]
    assert ids(base) == PINNED["plain"]
    assert ids([*base, "--optimizer", "sgd", "adamw", "--lr", "0.1", "0.01", "--wd", "1e-4", "0"]) == PINNED["packed"]
    assert ids(["--dataset", "digits", "--model", "resnet18", "--weights", "weights/finetuned.safetensors",
                "--split-file", str(split), "--epochs", "2"]) == PINNED["weights_file"]
    default_split = ["--dataset", "digits", "--model", "mobilenet_v3_small", "--weights", "random"]
    assert ids(default_split) == PINNED["default_split"]
    assert ids(["--dataset", "aptos", "--root", str(aptos), "--extra-train", "dr2015", "--extra-root", str(dr2015),
                "--model", "resnet18", "--weights", "random", "--epochs", "3", "--img-size", "32"]) == \
        PINNED["extra_train"]
    options = parse([*base[:-1], "3", "--lp-ft", "--probe-lr", "0.1", "0.01", "--probe-wd", "0", "--lr", "1e-3",
                     "--wd", "0"])
    inputs = open_inputs(options.data, options.eval_splits)
    probes = lpft.phase_configurations(options, inputs, lpft.PROBE)
    assert [c.run_id for c in probes] == PINNED["lp_ft_probe"]
    finetunes = lpft.phase_configurations(options, inputs, lpft.FINETUNE, init_from=probes[0].run_id)
    assert [c.run_id for c in finetunes] == PINNED["lp_ft_finetune"]


def test_only_what_changes_the_numbers_is_in_the_id(inputs_folder, monkeypatch):
    work, split, *_ = inputs_folder
    monkeypatch.chdir(work)
    base = ["--dataset", "digits", "--model", "resnet18", "--weights", "random", "--split-file", str(split)]
    where_and_how_fast = ["--out", "elsewhere", "--workers", "3", "--cache", "off", "--compile", "--max-pack", "2",
                          "--save-weights", "none", "--log-with", "tensorboard", "--verify-images"]
    assert ids([*base, *where_and_how_fast]) == ids(base)
    for changed in (["--seed", "1"], ["--epochs", "3"], ["--augment", "none"], ["--label-smoothing", "0.1"],
                    ["--img-size", "48"], ["--batch-size", "64"]):
        assert ids([*base, *changed]) != ids(base), changed


def test_a_setting_added_later_renames_no_run_at_its_old_behaviour(inputs_folder, monkeypatch):
    work, split, *_ = inputs_folder
    monkeypatch.chdir(work)
    options = parse(["--dataset", "digits", "--model", "resnet18", "--weights", "random", "--split-file", str(split)])
    config = run_config(options, open_inputs(options.data)).to_dict()
    before = identity.run_id(config)
    monkeypatch.setitem(identity.ADDED_LATER, "new_setting", "as before")
    assert identity.run_id({**config, "new_setting": "as before"}) == before
    assert identity.run_id({**config, "new_setting": "something else"}) != before
    assert identity.run_id({**config, "an_unlisted_option": 7}) == before  # an allow-list: unknown keys stay out
    assert isinstance(run_config(options, open_inputs(options.data)), RunConfig)


def test_a_record_made_from_other_images_is_refused_not_reused(tmp_path):
    good = write_fixture("eurosat", tmp_path / "eurosat", per_class=5)
    copy = tmp_path / "eurosat_copy"
    shutil.copytree(good, copy)
    first = sorted(copy.rglob("*.jpg"))[0]
    first.write_bytes(first.read_bytes()[:-40])  # the same file list and split, one image cut short
    args = ["--dataset", "eurosat", "--model", "resnet18", "--weights", "random", "--epochs", "1", "--img-size", "16",
            "--batch-size", "8", "--workers", "0", "--out", str(tmp_path / "runs"), "--split-method", "stratified"]
    train([*args, "--root", str(good)], tmp_path)
    again = train([*args, "--root", str(good)], tmp_path)
    assert "already complete" in again.stdout
    other = train([*args, "--root", str(copy), "--skip-bad-images"], tmp_path, check=False)
    assert other.returncode == 1 and "already complete" not in other.stdout
    (line,) = other.stderr.strip().splitlines()
    assert line.startswith("train.py: error: ") and "was made from other data (images" in line
    assert "--out" in line  # the way out


def run_in(folder, script, argv: list[str]) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, str(script), *argv], cwd=folder, capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.mark.skipif(subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", "fb7877c^{commit}"],
                                   capture_output=True).returncode != 0,
                    reason="needs the repository's history (commit fb7877c)")
def test_a_grid_half_run_by_an_earlier_version_finishes_without_retraining(tmp_path, split_file):
    """grid.py at fb7877c plans a 2-run grid and trains one run and the first epoch of the other; this version
    resumes: the finished run is skipped, the other goes on from epoch 1, and the ids are the same."""
    old = tmp_path / "old"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(old), "fb7877c"], check=True,
                   capture_output=True)
    try:
        work = tmp_path / "study"
        work.mkdir()
        plan = ["plan", "--datasets", "digits", "--models", "mobilenet_v3_small", "--grid", "product", "--lr", "0.05",
                "0.01", "--weights", "random", "--split-file", str(split_file), "--epochs", "2", "--batch-size", "32",
                "--img-size", "16", "--workers", "0"]
        run_in(work, old / "grid.py", plan)
        entries = [json.loads(line) for line in (work / "grid.jsonl").read_text().splitlines()]
        first, second = entries
        run_in(work, old / "train.py", first["argv"])
        run_in(work, old / "train.py", [*second["argv"], "--until-epoch", "1"])
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(old)], capture_output=True)
    run_in(work, REPO / "grid.py", ["run", "--slots", "1"])
    log = lambda entry: [json.loads(line) for line in  # noqa: E731
                         (work / "runs" / ".grid" / "log" / f"{entry['run_id']}.jsonl").read_text().splitlines()]
    assert not (work / "runs" / ".grid" / "log" / f"{first['run_id']}.jsonl").exists()  # complete: never launched
    starts = [event for event in log(second) if event["event"] == "start"]
    assert [event["from_epoch"] for event in starts] == [1]  # resumed after the epoch the old version trained
    records = [json.loads((work / "runs" / f"{entry['run_id']}.json").read_text()) for entry in entries]
    assert [r["status"] for r in records] == ["complete", "complete"] and len(records[1]["history"]) == 2
