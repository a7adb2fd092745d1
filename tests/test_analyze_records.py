"""What the records feed into the tables: runs successive halving stopped (one note, not a warning or a missing
configuration each), Appendix G's comparison under --metric, a run read twice (counted once) and a folder holding
only a failed run (its error shown)."""
from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

import analyze
from analysis import reading

from test_analyze import run_analysis, run_script, write_run, write_scored_run


def halving_note(selected: bool) -> dict:
    """The `halving` field grid.py run --halving writes once a group is decided (grid_halving.Halving.annotation)."""
    return {"factor": 2, "rung_epochs": [15, 30], "group_size": 2, "survivors": [2, 1],
            "trained_to_epoch": 30 if selected else 15, "selected": selected}


def annotate(folder, model, lr, halving) -> str:
    (path,) = folder.glob(f"cassava-{model}-sgd-cosine-lr{lr:g}-*.json")
    record = json.loads(path.read_text())
    record["halving"] = halving
    path.write_text(json.dumps(record))
    return record["run_id"]


def test_runs_stopped_by_halving_are_one_note_not_warnings_or_missing(tmp_path, capsys):
    folder = tmp_path / "runs"
    stopped = []
    for i, top1 in enumerate((62.0, 71.0, 79.0)):
        write_run(folder, "cassava", f"toy{i}", 0.6 + i / 20, top1=top1)
        annotate(folder, f"toy{i}", 0.01, halving_note(selected=True))
        write_run(folder, "cassava", f"toy{i}", 0.5, top1=top1, lr=0.1, status="paused")
        stopped.append(annotate(folder, f"toy{i}", 0.1, halving_note(selected=False)))
        if i < 2:
            write_run(folder, "cassava", f"toy{i}", 0.4, top1=top1, lr=0.001)
    write_run(folder, "cassava", "toy2", 0.4, top1=79.0, lr=0.001, status="paused")  # an unfinished run: as before

    analysis = run_analysis(folder)
    assert [n for n in analysis.notes if "halving" in n] == [
        "3 run(s) stopped early by successive halving (grid.py run --halving), not counted: other configurations "
        "of their model did better at an earlier epoch; their configurations are not listed as missing"]
    assert not [w for w in analysis.warnings if any(run_id in w for run_id in stopped)]
    assert [w for w in analysis.warnings if "still paused" in w] == [
        f"{next(folder.glob('cassava-toy2-sgd-cosine-lr0.001-*.json'))}: run "
        f"'cassava-toy2-sgd-cosine-lr0.001-wd0.0001-s0-imagenet' is still paused; skipped"]
    assert [(r["model"], r["lr"]) for r in analysis.coverage["missing"]] == [("toy2", 0.001)]
    assert {(b.model, b.lr) for b in analysis.best} == {(f"toy{i}", 0.01) for i in range(3)}

    out = tmp_path / "report"
    assert analyze.main([str(folder), "--out", str(out), "--n-boot", "20"]) == 0
    stderr = capsys.readouterr().err
    assert not any(run_id in stderr for run_id in stopped) and "still paused" in stderr
    assert "3 run(s) stopped early by successive halving" in (out / "report.md").read_text()


def test_a_malformed_halving_field_is_named_and_the_file_skipped(tmp_path):
    write_run(tmp_path, "cassava", "toy0", 0.5, top1=70.0, status="paused")
    annotate(tmp_path, "toy0", 0.01, {"selected": "no"})
    runs, warnings = reading.load_runs([tmp_path])
    assert runs == [] and len(warnings) == 1
    assert "field 'halving' is not an object with a true or false 'selected'; skipped" in warnings[0]


def test_compare_reports_the_metric_flag_for_the_configurations_the_dataset_metric_chose(tmp_path):
    """Appendix G under --metric accuracy: per augmentation, the configuration with the best QWK, and its accuracy."""
    rng = np.random.default_rng(3)
    expected = {}
    for i, top1 in enumerate((60.0, 70.0, 80.0)):
        grades = rng.integers(0, 5, 400)
        near = np.clip(grades + rng.integers(-1, 2, 400), 0, 4)   # off by one grade: good QWK, poor accuracy
        exact = np.where(rng.random(400) < 0.7, grades, 4 - grades)  # often right, far off when wrong
        for augment in ("paper", "randaugment"):
            scored = {}
            for lr, predicted in ((0.01, near), (0.1, exact)):
                scores = np.full((400, 5), 0.05)
                scores[np.arange(400), predicted] = 0.8
                scored[lr] = write_scored_run(tmp_path, "aptos", f"toy{i}", grades, scores, top1, lr, augment)
            chosen = max(scored.values(), key=lambda s: s["qwk"])
            assert chosen["accuracy"] < max(s["accuracy"] for s in scored.values())  # the metrics disagree
            expected[(f"toy{i}", augment)] = chosen["accuracy"]

    rows = run_analysis(tmp_path, metric="accuracy", compare="augment").comparison["rows"]
    assert {(r["model"], r["value"]): r["result"] for r in rows} == pytest.approx(expected, abs=1e-12)
    assert {r["metric"] for r in rows} == {"accuracy"}

    out = tmp_path / "report"
    analyze.main([str(tmp_path), "--compare", "augment", "--metric", "accuracy", "--n-boot", "20", "--out", str(out)])
    with open(out / "tables" / "comparison.csv") as f:
        table = {(r["model"], r["value"]): float(r["result"]) for r in csv.DictReader(f)}
    assert table == pytest.approx(expected, abs=1e-9)
    assert "### aptos (accuracy on val)" in (out / "report.md").read_text()


def test_older_and_newer_hpa_records_are_analysed_together(tmp_path):
    """Records written before HPA was reported on val say report_split test_val; newer ones say None. Both are
    reported on val, so a grid that ran across the update keeps every run."""
    folder = tmp_path / "runs"
    for i, report_split in enumerate(["test_val", "test_val", None, None, None]):
        write_run(folder, "hpa", f"toy{i}", 0.5, top1=70.0 + i)
        (path,) = folder.glob(f"hpa-toy{i}-*.json")
        record = json.loads(path.read_text())
        record["dataset"].update(task="multilabel", metric="macro_f1", num_classes=28, report_split=report_split)
        record["best"]["metrics"] = {"val_macro_f1": 0.4 + i / 100, "test_val_macro_f1": 0.3}
        path.write_text(json.dumps(record))
    runs, warnings = reading.load_runs([folder])
    assert len(runs) == 5 and not warnings
    assert {(r.report_split, r.extra_split) for r in runs} == {("val", "test_val")}


def small_grid(folder, weights="imagenet"):
    """The 2 x 2 CPU grid of issue 20: two models, two learning rates, on EuroSAT."""
    for model, top1 in (("mobilenet_v3_small", 67.668), ("resnet18", 69.758)):
        for lr, value in ((0.01, 0.8), (0.1, 0.7)):
            write_run(folder, "eurosat", model, value + top1 / 1000, top1=top1, lr=lr, weights=weights)


def test_a_run_read_from_two_folders_is_counted_once(tmp_path, capsys):
    first, second = tmp_path / "a", tmp_path / "b"
    small_grid(first)
    shutil.copytree(first, second)
    out = tmp_path / "report"
    assert analyze.main([str(first), str(second), "--out", str(out), "--n-boot", "20"]) == 0
    with open(out / "tables" / "best.csv") as f:
        assert {row["model"]: row["configurations"] for row in csv.DictReader(f)} == {
            "mobilenet_v3_small": "2", "resnet18": "2"}  # not 4: each run once
    (warning,) = [line for line in capsys.readouterr().err.splitlines() if "more than one file" in line]
    assert warning.startswith("warning: 4 run id(s) read from more than one file, each counted once: '")
    assert f"{first}" in warning and f"also {second}" in warning and "and 1 more" in warning
    assert "4 run id(s) read from more than one file" in (out / "report.md").read_text()

    # the same file given twice; and a copy that failed beside the complete one, whichever is read first
    (record,) = first.glob("eurosat-resnet18-sgd-cosine-lr0.01-*.json")
    runs, warnings = reading.load_runs([record, record])
    assert len(runs) == 1 and warnings == [f"1 run id(s) read from more than one file, each counted once: "
                                           f"'{runs[0].run_id}' ({record} kept; the same file, given again)"]
    copy = json.loads(record.read_text())
    copy.update(status="failed", best=None, error="RuntimeError: out of memory")
    (tmp_path / "failed").mkdir()
    (tmp_path / "failed" / record.name).write_text(json.dumps(copy))
    runs, _ = reading.load_runs([tmp_path / "failed", first])
    assert {r.run_id: r.status for r in runs}[copy["run_id"]] == "complete" and len(runs) == 4


def test_a_folder_holding_only_a_failed_run_shows_its_error(tmp_path):
    folder = tmp_path / "runs"
    write_run(folder, "eurosat", "resnet18", 0.5, top1=69.8, status="failed",
              error="RuntimeError: DataLoader worker (pid 123) is killed by signal: Killed.")
    result = run_script(folder, "--out", tmp_path / "report", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    (record,) = folder.glob("*.json")
    assert line == (f"analyze.py: error: no complete run record among 1 input file(s); 1 failed ({record}: "
                    f"RuntimeError: DataLoader worker (pid 123) is killed by signal: Killed.); nothing to analyse")
