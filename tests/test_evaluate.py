"""evaluate.py on a finished run: scores with intervals, ensembles, TTA, saved predictions and submissions."""
from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest

import evaluate
import metrics
from common import errors, fileio, runrecord
from data import get_spec
from data.synthetic import write_fixture
from evaluation import command as evaluation_command
from evaluation import submissions

from conftest import only_record


def run_evaluate(*args: str) -> dict:
    assert evaluate.main([*args, "--n-boot", "200", "--workers", "0"]) == 0


def evaluation(out) -> dict:
    found = sorted(out.glob("*/evaluation.json"))
    assert len(found) == 1, found
    return fileio.read_json(found[0])


def run_folder(complete_run):
    _, out, _ = complete_run
    record = only_record(out)
    return out / record["run_id"], record


def copy_run(folder, record: dict, to, run_id: str | None = None, without: tuple[str, ...] = (), **changes) -> str:
    """A copy of the run (its folder and record) in folder `to`, as run `run_id`, leaving out files named in
    `without`; `changes` replace record fields: `dataset={...}` is merged into the record's own block."""
    run_id = run_id or record["run_id"]
    shutil.copytree(folder, to / run_id, ignore=shutil.ignore_patterns(*without))
    changed = {key: {**record[key], **value} if isinstance(value, dict) else value for key, value in changes.items()}
    fileio.atomic_write_json(to / f"{run_id}.json", {**record, "run_id": run_id, **changed, "predictions": {
        split: relative.replace(record["run_id"], run_id) for split, relative in record["predictions"].items()}})
    return str(to / run_id)


def test_scores_from_saved_predictions_match_the_run(complete_run, tmp_path):
    folder, record = run_folder(complete_run)
    run_evaluate(str(folder), "--from-predictions", "--out", str(tmp_path))
    result = evaluation(tmp_path)["results"][record["run_id"]]["val"]
    assert result["accuracy"]["value"] == pytest.approx(record["best"]["metrics"]["val_accuracy"])
    low, high = metrics.clopper_pearson(round(result["accuracy"]["value"] * 91), 91)
    assert (result["accuracy"]["low"], result["accuracy"]["high"]) == pytest.approx((low, high))
    assert result["accuracy"]["method"] == "clopper-pearson"
    assert result["macro_f1"]["method"] == "bootstrap" and result["macro_f1"]["low"] <= result["macro_f1"]["high"]


def test_model_evaluation_without_tta_equals_the_runs_own_predictions(complete_run, tmp_path, monkeypatch):
    folder, record = run_folder(complete_run)
    monkeypatch.chdir(complete_run[0])  # the run's split file path is relative to where it ran
    run_evaluate(str(folder), "--tta", "none", "--out", str(tmp_path))
    saved = np.load(folder.parent / record["predictions"]["val"])
    name = evaluation(tmp_path)["name"]
    again = np.load(tmp_path / name / f"predictions-{record['run_id']}-val.npz")
    assert list(again["ids"]) == list(saved["ids"])
    np.testing.assert_allclose(again["scores"], saved["scores"], atol=1e-5)


def test_ensemble_of_a_run_with_its_copy_equals_the_run(complete_run, tmp_path):
    folder, record = run_folder(complete_run)
    copy_run(folder, record, tmp_path / "copy", f"{record['run_id']}-copy")
    run_evaluate(str(folder), str(tmp_path / "copy"), "--from-predictions", "--out", str(tmp_path / "evals"))
    results = evaluation(tmp_path / "evals")["results"]
    assert results["ensemble"]["val"] == results[record["run_id"]]["val"]


@pytest.mark.parametrize("block, field, value", [
    ("config", "head", "regression"), ("model", "num_outputs", 9), ("dataset", "split_sha256", "0" * 64)])
def test_runs_that_score_or_split_differently_are_not_ensembled(complete_run, tmp_path, block, field, value):
    folder, record = run_folder(complete_run)
    other = copy_run(folder, record, tmp_path / "other", "other-run", **{block: {field: value}})
    with pytest.raises(errors.UsageError, match=rf"^cannot ensemble run {record['run_id']} and run other-run: their "
                                                rf"{block}.{field} differ .*--ensemble none"):
        evaluate.main([str(folder), other, "--from-predictions", "--out", str(tmp_path / "evals")])
    run_evaluate(str(folder), other, "--from-predictions", "--ensemble", "none", "--out", str(tmp_path / "evals"))
    assert "ensemble" not in evaluation(tmp_path / "evals")["results"]


def test_runs_with_different_selection_splits_are_evaluated_apart(complete_run, tmp_path):
    folder, record = run_folder(complete_run)
    other = copy_run(folder, record, tmp_path / "other", "other-run", dataset={"selection_split": "train"})
    for mode in ("mean", "none"):  # thresholds would be fit on the first run's selection split for both
        with pytest.raises(errors.UsageError, match=rf"different selection splits \({record['run_id']}: val, "
                                                    rf"other-run: train\); evaluate them in separate commands"):
            evaluate.main([str(folder), other, "--from-predictions", "--ensemble", mode])


def test_a_run_without_weights_is_refused_before_its_data_is_opened(complete_run, tmp_path, monkeypatch):
    folder, record = run_folder(complete_run)
    bare = copy_run(folder, record, tmp_path / "runs", without=("best.safetensors",))
    monkeypatch.setattr(evaluation_command, "open_run_data",
                        lambda *a: pytest.fail("the data was opened before the check"))
    with pytest.raises(errors.DataError) as error:
        evaluate.main([bare, "--workers", "0", "--out", str(tmp_path / "evals")])
    message = str(error.value)
    assert message.startswith(f"run {record['run_id']} has no weights file {bare}/best.safetensors")
    assert "--from-predictions" in message and "\n" not in message
    run_evaluate(bare, "--from-predictions", "--out", str(tmp_path / "evals"))


def test_a_folder_of_runs_leaves_out_other_json_files_with_one_note(complete_run, tmp_path, capsys):
    folder, record = run_folder(complete_run)
    runs = tmp_path / "runs"
    copy_run(folder, record, runs)
    copy_run(folder, record, runs, "still-running", status="running")
    (runs / "config.json").write_text('{"lr": 0.1}')
    (runs / "list.json").write_text("[1, 2]")
    (runs / "broken.json").write_text("{")
    run_evaluate(str(runs), "--from-predictions", "--out", str(tmp_path / "evals"))
    assert list(evaluation(tmp_path / "evals")["results"]) == [record["run_id"]]
    note = capsys.readouterr().err.strip()
    assert note.startswith(f"note: {runs}: left out 4 JSON file(s) that are not complete run records: ")
    assert "\n" not in note
    for name, why in [("broken.json", "is not valid JSON"), ("config.json", "is not a run record"),
                      ("list.json", "is not a run record"), ("still-running.json", "run status is 'running'")]:
        assert f"{name} ({why}" in note
    for name in ("broken.json", "config.json", "list.json", record["run_id"] + ".json"):
        (runs / name).unlink()
    with pytest.raises(errors.DataError, match=r"no complete run record in this folder \(left out: still-running"):
        evaluate.main([str(runs), "--from-predictions", "--out", str(tmp_path / "evals")])


def test_the_same_run_twice_is_refused_not_weighed_double(complete_run, tmp_path):
    folder, record = run_folder(complete_run)
    with pytest.raises(errors.UsageError, match="given twice"):
        evaluate.main([str(folder), str(folder.parent / f"{record['run_id']}.json"), "--from-predictions",
                       "--out", str(tmp_path)])


def test_a_bare_run_id_or_a_folder_of_runs(complete_run, tmp_path, monkeypatch):
    folder, record = run_folder(complete_run)
    monkeypatch.chdir(complete_run[0])  # where runs/ is
    run_evaluate(record["run_id"], "--from-predictions", "--out", str(tmp_path / "by-id"))
    run_evaluate(str(folder.parent), "--from-predictions", "--out", str(tmp_path / "by-folder"))
    assert evaluation(tmp_path / "by-id")["results"] == evaluation(tmp_path / "by-folder")["results"]
    with pytest.raises(errors.DataError, match="no-such-run"):
        evaluate.main(["no-such-run", "--from-predictions"])


def test_evaluation_from_another_folder_finds_the_runs_data(complete_run, tmp_path, monkeypatch):
    """The record keeps its data paths as they resolved, so the cwd does not matter (issue 15.5)."""
    folder, record = run_folder(complete_run)
    monkeypatch.chdir(tmp_path)
    run_evaluate(str(folder), "--out", str(tmp_path / "evals"))
    result = evaluation(tmp_path / "evals")["results"][record["run_id"]]["val"]
    assert result["accuracy"]["value"] == pytest.approx(record["best"]["metrics"]["val_accuracy"])


def test_flip_tta_is_refused_where_the_dataset_has_no_flips(complete_run, tmp_path):
    folder, _ = run_folder(complete_run)  # digits, like EuroSAT, is trained without flips
    with pytest.raises(errors.UsageError, match="trained without flips"):
        evaluate.main([str(folder), "--tta", "flips", "--out", str(tmp_path)])


def test_refuses_a_run_that_is_not_complete(complete_run, tmp_path):
    folder, record = run_folder(complete_run)
    copy = tmp_path / "runs"
    copy.mkdir()
    broken = dict(record, status="running")
    fileio.atomic_write_json(copy / f"{record['run_id']}.json", broken)
    with pytest.raises(errors.DataError, match="status is 'running'"):
        evaluate.main([str(copy / record["run_id"])])


@pytest.mark.parametrize("dataset, header, check", [
    ("aptos", ["id_code", "diagnosis"], lambda v: v in {"0", "1", "2", "3", "4"}),
    ("hpa", ["Id", "Predicted"], lambda v: all(0 <= int(t) < 28 for t in v.split())),
    ("melanoma", ["image_name", "target"], lambda v: 0.0 <= float(v) <= 1.0),
    ("cassava", ["image_id", "label"], lambda v: v in {"0", "1", "2", "3", "4"}),
])
def test_submission_files_have_each_competitions_format(dataset, header, check, tmp_path):
    spec = get_spec(dataset)
    rng = np.random.default_rng(0)
    ids = np.array([f"img{i}" for i in range(6)])
    if spec.task == "multilabel":
        scores, thresholds = rng.random((6, 28)), np.full(28, 0.5)
    else:
        scores, thresholds = rng.dirichlet(np.ones(spec.num_classes), 6), None
    path = tmp_path / "submission.csv"
    submissions.write_submission(path, dataset, ids, scores, thresholds)
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == header and [r[0] for r in rows[1:]] == list(ids)
    assert all(check(r[1]) for r in rows[1:])


def test_submission_end_to_end_on_an_unlabeled_aptos_folder(tmp_path, monkeypatch):
    from conftest import train
    root = write_fixture("aptos", tmp_path / "aptos", per_class=10)
    test_dir = tmp_path / "test_images"
    test_dir.mkdir()
    for source in sorted((root / "train_images").iterdir())[:5]:
        shutil.copy(source, test_dir / f"test{source.name}")
    out = tmp_path / "runs"
    train(["--dataset", "aptos", "--root", str(root), "--model", "resnet18", "--weights", "random", "--epochs",
           "1", "--batch-size", "8", "--img-size", "16", "--workers", "0", "--out", str(out)], tmp_path)
    record = only_record(out)
    monkeypatch.chdir(tmp_path)
    submission = tmp_path / "submission.csv"
    run_evaluate(str(out / record["run_id"]), "--submission", str(submission), "--test-dir", str(test_dir),
                 "--out", str(tmp_path / "evals"), "--tta", "flips")
    assert evaluation(tmp_path / "evals")["tta"] == "flips"
    lines = submission.read_text().splitlines()
    assert lines[0] == "id_code,diagnosis" and len(lines) == 6
    assert [line.split(",")[0] for line in lines[1:]] == sorted(p.stem for p in test_dir.iterdir())

    # A final model trained on all labelled data (regression head): no split to fit cut points on, the default ones
    final = tmp_path / "final"
    train(["--dataset", "aptos", "--root", str(root), "--model", "resnet18", "--weights", "random", "--epochs",
           "1", "--batch-size", "8", "--img-size", "16", "--workers", "0", "--out", str(final), "--train-on", "all",
           "--head", "regression"], tmp_path)
    run_id = only_record(final)["run_id"]
    with pytest.raises(errors.UsageError, match="trained on all labelled data .* --submission"):
        evaluate.main([str(final / run_id), "--out", str(tmp_path / "evals")])
    run_evaluate(str(final / run_id), "--submission", str(submission), "--test-dir", str(test_dir),
                 "--out", str(tmp_path / "evals"))
    lines = submission.read_text().splitlines()
    assert lines[0] == "id_code,diagnosis" and len(lines) == 6
    assert all(line.split(",")[1] in "01234" for line in lines[1:])


def test_interval_settings_are_checked_before_any_model_runs(complete_run, monkeypatch):
    folder, _ = run_folder(complete_run)
    monkeypatch.setattr(evaluation_command, "load_run_model",
                        lambda *a: pytest.fail("a model was loaded before the check"))
    for flags in (["--level", "2"], ["--n-boot", "0"]):
        with pytest.raises(errors.UsageError, match="--n-boot must be at least 1"):
            evaluate.main([str(folder), *flags])


def test_unknown_split_is_an_error_before_any_model_runs(complete_run, tmp_path, monkeypatch):
    folder, _ = run_folder(complete_run)
    monkeypatch.setattr(evaluation_command, "load_run_model",
                        lambda *a: pytest.fail("a model was loaded before the check"))
    with pytest.raises(errors.UsageError, match=r"--split tset: not in the split file \(it has train, val\)"):
        evaluate.main([str(folder), "--split", "val", "tset", "--workers", "0", "--out", str(tmp_path)])
    with pytest.raises(errors.UsageError, match="--split tset: not in .*saved predictions"):
        evaluate.main([str(folder), "--split", "tset", "--from-predictions", "--out", str(tmp_path)])


def test_runs_on_different_images_are_not_ensembled(complete_run, tmp_path):
    folder, record = run_folder(complete_run)
    other = tmp_path / "runs"
    shutil.copytree(folder, other / record["run_id"])
    predictions = other / record["predictions"]["val"]
    saved = runrecord.read_predictions(predictions)
    runrecord.write_predictions(predictions, saved["ids"][::-1], saved["labels"][::-1], saved["scores"][::-1],
                              saved["thresholds"], saved["task"])
    fileio.atomic_write_json(other / f"{record['run_id']}.json", record)
    with pytest.raises(errors.DataError, match="not of the same images"):
        evaluate.main([str(folder), str(other / record["run_id"]), "--from-predictions", "--out", str(tmp_path)])


def test_model_mode_needs_weights_whose_head_fits(complete_run, tmp_path, monkeypatch):
    folder, record = run_folder(complete_run)
    monkeypatch.chdir(complete_run[0])
    base = ["--dataset", "digits", "--model", record["config"]["model"],
            "--split-file", record["dataset"]["split_file"], "--workers", "0", "--out", str(tmp_path)]
    with pytest.raises(errors.UsageError, match="--model needs --weights"):
        evaluate.main(base)
    with pytest.raises(errors.DataError, match="head does not fit"):
        evaluate.main([*base, "--weights", str(folder / "best.safetensors"), "--head", "regression"])
    run_evaluate(*base, "--weights", str(folder / "best.safetensors"), "--img-size", "16")
    result = next(iter(evaluation(tmp_path)["results"].values()))["val"]
    assert result["accuracy"]["value"] == pytest.approx(record["best"]["metrics"]["val_accuracy"])
