"""--models-file: a user's model trains exactly as a registry model, its top-1 and source reach the record and the
analysis, its definition (the checkpoint's bytes included) is part of the run id, evaluate.py rebuilds it from the
record alone, and a wrong entry is one line naming the file, the entry and the field."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
import torchvision
from safetensors.torch import save_file

import analyze
import evaluate
import grid
import models
from common import errors, fileio
from nets import models_file, networks, registry
from training.config import plan_runs

from conftest import REPO, train

ENTRY = {"name": "my_resnet18", "label": "My ResNet-18", "library": "torchvision", "constructor": "resnet18",
         "checkpoint": "weights/my-resnet18.safetensors", "input_size": 224, "imagenet_top1": 71.25,
         "top1_source": "measured on ImageNet val by evaluate.py --imagenet-val (test)", "params": 11689512}


def write_models(folder, seed: int = 0, **changes) -> os.PathLike:
    """A models file in `folder` with ENTRY (plus changes) and its checkpoint: a ResNet-18 with ImageNet's head."""
    (folder / "weights").mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    save_file(torchvision.models.resnet18().state_dict(), folder / "weights" / "my-resnet18.safetensors")
    path = folder / "models.json"
    path.write_text(json.dumps({"models": [{**ENTRY, **changes}]}))
    return path


@pytest.fixture(autouse=True)
def no_models_left_behind():
    yield
    registry.set_added([])  # main(argv) calls in this process add a file's models for the process


def plan_id(models: os.PathLike, split_file, model: str = "my_resnet18", *extra: str) -> str:
    (run,) = plan_runs(["--dataset", "digits", "--model", model, "--models-file", str(models), "--split-file",
                        str(split_file), "--epochs", "1", *extra])
    return run["run_id"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, split_file):
    """One run of the models file's model on digits, from its checkpoint (the model's pretrained weights)."""
    work = tmp_path_factory.mktemp("models-file")
    models = write_models(work)
    train(["--dataset", "digits", "--model", "my_resnet18", "--models-file", "models.json", "--split-file",
           str(split_file), "--epochs", "1", "--img-size", "16", "--batch-size", "32", "--workers", "0"], work)
    (record_path,) = (work / "runs").glob("*.json")
    return work, models, record_path, fileio.read_json(record_path)


def test_a_models_file_model_trains_with_its_top1_in_the_record(trained):
    work, models, record_path, record = trained
    block = record["model"]
    assert (block["name"], block["label"], block["imagenet_top1"], block["top1_source"]) == (
        "my_resnet18", "My ResNet-18", 71.25, ENTRY["top1_source"])
    checkpoint = work / "weights" / "my-resnet18.safetensors"
    assert block["weights_loaded"] == f"imagenet:file:{checkpoint.resolve()} sha256={fileio.sha256_file(checkpoint)}"
    assert block["definition"]["checkpoint_sha256"] == fileio.sha256_file(checkpoint)
    assert len(record["config"]["model_definition"]) == 64 and record["config"]["models_file"] == "models.json"
    assert record["run_id"].startswith("digits-my_resnet18-imagenet-sgd-cosine")


def test_analyze_places_it_by_its_top1(trained, tmp_path):
    work, _, record_path, _ = trained
    assert analyze.main([str(record_path.parent), "--out", str(tmp_path / "report")]) == 0
    (best,) = fileio.read_json(tmp_path / "report" / "analysis.json")["tables"]["best"]
    assert (best["model"], best["imagenet_top1"]) == ("my_resnet18", 71.25)


def test_evaluate_rebuilds_it_from_the_record_without_the_file(trained, tmp_path, monkeypatch):
    work, models, record_path, record = trained
    moved = tmp_path / "elsewhere"
    shutil.copytree(work / "runs", moved)
    monkeypatch.chdir(tmp_path)  # neither models.json nor its checkpoint are here
    assert evaluate.main([str(moved / record_path.name), "--n-boot", "50", "--workers", "0"]) == 0
    (evaluation,) = tmp_path.glob("evaluations/*/evaluation.json")
    accuracy = fileio.read_json(evaluation)["results"][record["run_id"]]["val"]["accuracy"]["value"]
    assert accuracy == pytest.approx(record["best"]["metrics"]["val_accuracy"])


def test_the_definition_is_in_the_run_id(tmp_path, split_file):
    first = plan_id(write_models(tmp_path / "a"), split_file)
    assert plan_id(write_models(tmp_path / "b"), split_file) == first  # the same definition elsewhere: the same run
    relabelled = write_models(tmp_path / "c", label="Renamed", imagenet_top1=70.0, top1_source="another table",
                              params=None, group="mine")
    assert plan_id(relabelled, split_file) == first  # what the runs compute is unchanged
    assert plan_id(write_models(tmp_path / "d", seed=1), split_file) != first  # another checkpoint
    assert plan_id(write_models(tmp_path / "e", mean=[0.5, 0.5, 0.5]), split_file) != first
    # a registry model's id does not depend on whether a models file is given
    assert plan_id(tmp_path / "a" / "models.json", split_file, "resnet18") == plan_runs(
        ["--dataset", "digits", "--model", "resnet18", "--split-file", str(split_file), "--epochs", "1"])[0]["run_id"]


def test_grid_plan_passes_it_to_every_run(tmp_path, split_file, monkeypatch):
    models = write_models(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert grid.main(["plan", "--datasets", "digits", "--models", "my_resnet18", "--grid", "product", "--lr", "0.1",
                      "0.01", "--models-file", "models.json", "--split-file", str(split_file), "--epochs", "1"]) == 0
    runs = [json.loads(line) for line in (tmp_path / "grid.jsonl").read_text().splitlines()]
    assert len(runs) == 2 and all("--models-file" in run["argv"] for run in runs)
    assert {run["run_id"] for run in runs} == {plan_id(models, split_file, "my_resnet18", "--lr", lr)
                                              for lr in ("0.1", "0.01")}


def test_grid_plan_takes_a_group_of_the_file(tmp_path, split_file, monkeypatch):
    write_models(tmp_path, group="mine")
    monkeypatch.chdir(tmp_path)
    assert grid.main(["plan", "--datasets", "digits", "--models", "mine", "--grid", "product", "--lr", "0.1",
                      "--models-file", "models.json", "--split-file", str(split_file), "--epochs", "1"]) == 0
    (run,) = [json.loads(line) for line in (tmp_path / "grid.jsonl").read_text().splitlines()]
    assert run["config"]["model"] == "my_resnet18"


def test_models_py_lists_and_checks_the_file(tmp_path, capsys):
    assert models.main(["--models-file", str(write_models(tmp_path)), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed[-1]["name"] == "my_resnet18" and listed[-1]["imagenet_top1"] == 71.25
    assert listed[-1]["checkpoint"] == str((tmp_path / "weights" / "my-resnet18.safetensors").resolve())
    assert [e["name"] for e in listed[:-1]] == list(registry.REGISTRY)


@pytest.mark.parametrize("change,field,problem", [
    ({"input_size": None}, "input_size", "is not a whole number of pixels"),
    ({"library": "keras"}, "library", "is not one of torchvision, timm"),
    ({"imagenet_top1": 171.0}, "imagenet_top1", "is not a percentage"),
    ({"top1_source": None}, "top1_source", "missing; say where imagenet_top1 comes from"),
    ({"name": "resnet50"}, "name", "is a built-in model"),
    ({"name": "my model"}, "name", "is not a name of letters"),
    ({"checkpoint": "weights/missing.safetensors"}, "checkpoint", "no such file"),
    ({"weights_tag": "IMAGENET1K_V1"}, "checkpoint", "not both"),
    ({"top_1": 71.0}, "top_1", "not a field of a model"),
    ({"mean": [0.5, 0.5]}, "mean", "is not a list of 3 numbers"),
    ({"checkpoint_sha256": "0" * 64}, "checkpoint_sha256", "not the " + "0" * 64 + " pinned"),
])
def test_a_wrong_entry_is_one_line_naming_file_entry_and_field(tmp_path, split_file, change, field, problem):
    path = write_models(tmp_path, **change)
    if change.get("input_size", 0) is None:
        del_required = json.loads(path.read_text())
        del del_required["models"][0]["input_size"]  # missing rather than null
        path.write_text(json.dumps(del_required))
        problem = "missing; required are"
    with pytest.raises(errors.ExpectedError) as caught:
        plan_id(path, split_file)
    message = str(caught.value)
    name = change.get("name", "my_resnet18")
    assert message.startswith(f"{path}: model '{name}', field '{field}': ") and problem in message
    assert "\n" not in message


def test_an_unknown_constructor_is_named_when_the_network_is_built(tmp_path):
    path = tmp_path / "models.json"
    path.write_text(json.dumps({"models": [{**ENTRY, "checkpoint": None, "constructor": "resnet_eighteen"}]}))
    models_file.use(path)
    with pytest.raises(models_file.ModelsFileError,
                       match=f"{path}: model 'my_resnet18', field 'constructor': Unknown model resnet_eighteen"):
        networks.create_model("my_resnet18", 5, weights="random")


def test_a_file_that_is_not_json_is_one_line_and_exit_status_1(tmp_path):
    path = tmp_path / "models.json"
    path.write_text("{not json")
    result = subprocess.run([sys.executable, str(REPO / "models.py"), "--models-file", str(path)],
                            capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"models.py: error: {path}: not readable as JSON")
