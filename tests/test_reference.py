"""Results that travel (issue 22): analyze.py --export writes one results file; --reference analyses new runs
together with it, marks the new models, and refuses results made on another split or with another metric."""
from __future__ import annotations

import csv
import json
from dataclasses import asdict

import numpy as np
import pytest

import analyze
from analysis import figures, pipeline, reference

from test_analyze import run_script, write_run, write_scored_run

N_BOOT = 200
DATASETS = ("cct20", "cassava", "eurosat")
SPLITS = {d: f"{i + 1}" * 64 for i, d in enumerate(DATASETS)}  # each dataset's split file SHA-256


def grid(folder, models: dict[str, float], seed: int = 0, **record):
    rng = np.random.default_rng(seed)
    for dataset in DATASETS:
        for model, top1 in models.items():
            value = 0.3 + 0.006 * (top1 - 55) + rng.normal(0, 0.02)
            write_run(folder, dataset, model, value, top1=top1, params=1e6 * top1, split_sha256=SPLITS[dataset],
                      **record)
            write_run(folder, dataset, model, value - 0.05, top1=top1, lr=0.1, params=1e6 * top1,
                      split_sha256=SPLITS[dataset], **record)


TESTBED = {f"toy{i}": float(t) for i, t in enumerate(np.linspace(60, 82, 6))}


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A lab's six-model study, exported; another lab's new model (outside the registry, its ImageNet top-1 and
    source in its records, as a models file gives them)."""
    root = tmp_path_factory.mktemp("labs")
    grid(root / "published", TESTBED)
    grid(root / "mine", {"my_net": 78.5}, seed=1)
    for path in (root / "mine").glob("*.json"):
        record = json.loads(path.read_text())
        record["model"]["top1_source"] = "models.json: measured with evaluate.py --imagenet-val"
        path.write_text(json.dumps(record))
    results = root / "results.json"
    assert analyze.main([str(root / "published"), "--n-boot", str(N_BOOT), "--out", str(root / "report"),
                         "--export", str(results)]) == 0
    return root, results


def comparable(analysis) -> dict:
    """What an analysis concludes, without where each row was read from."""
    rows = [{k: v for k, v in asdict(b).items() if k not in ("record", "origin", "new")} for b in analysis.best]
    board = [{k: v for k, v in row.items() if k not in ("origin", "new")} for row in analysis.benchmark["rows"]]
    trends = [{k: v for k, v in row.items() if k != "new"} for row in analysis.trends]
    part = {k: analysis.appendix_n[k] for k in ("datasets", "models", "ols", "f_tests", "spearman", "note")}
    return json.loads(json.dumps({"best": rows, "trends": trends, "size": analysis.size_trends, "appendix_n": part,
                                  "benchmark": board}, default=str))


def test_exporting_then_importing_gives_the_same_analysis(published):
    root, results = published
    direct = pipeline.analyze([root / "published"], n_boot=N_BOOT)
    imported = pipeline.analyze([], n_boot=N_BOOT, references=[results])
    assert comparable(imported) == comparable(direct)
    assert direct.appendix_n["note"] is None and len(direct.benchmark["rows"]) == len(TESTBED)
    assert {b.origin for b in imported.best} == {str(results)} and not any(b.new for b in imported.best)
    # and the new lab's runs against the file equal the two labs' runs analysed together, the new model marked
    together = pipeline.analyze([root / "published", root / "mine"], n_boot=N_BOOT)
    against = pipeline.analyze([root / "mine"], n_boot=N_BOOT, references=[results])
    assert comparable(against) == comparable(together)
    assert {b.model for b in against.best if b.new} == {"my_net"}
    mine = next(b for b in against.best if b.model == "my_net")
    assert (mine.imagenet_top1, mine.top1_source) == (78.5, "record")  # outside the registry: from its records
    assert mine.top1_reference == "models.json: measured with evaluate.py --imagenet-val"


def test_the_file_describes_itself_and_stays_small(published):
    _, results = published
    content = json.loads(results.read_text())
    assert (content["format"], content["format_version"]) == ("imagenet-transfer results", 1)
    assert content["resampling"]["n_boot"] == N_BOOT and "crc32" in content["resampling"]["dataset_seed"]
    assert set(content["toolkit"]) == {"commit", "run_commits", "record_schema_version"}
    assert {d: content["datasets"][d]["split_sha256"] for d in DATASETS} == SPLITS
    assert len(content["results"]) == len(DATASETS) * len(TESTBED)
    result = content["results"][0]
    for field in ("configuration", "report_split", "metric", "score", "low", "high", "samples", "imagenet_top1",
                  "top1_source", "split_sha256", "replicates"):
        assert result[field] is not None, field
    assert len(reference.read_reference(results).replicates[(result["dataset"], result["model"])]) == N_BOOT
    # 4 bytes a resample (as base64), plus the description: 19 x 6 results of 10,000 resamples would take ~6 MB
    per_result = (results.stat().st_size - 2000) / len(content["results"])
    assert per_result < 4 * N_BOOT * 4 / 3 + 2500


def test_new_models_are_marked_in_figure1_the_trend_table_and_the_leaderboard(published, tmp_path):
    root, results = published
    out = tmp_path / "report"
    assert analyze.main([str(root / "mine"), "--reference", str(results), "--n-boot", str(N_BOOT),
                         "--out", str(out)]) == 0
    with open(out / "tables" / "leaderboard.csv") as f:
        board = {row["model"]: row for row in csv.DictReader(f)}
    assert board["my_net"]["new"] == "True" and {board[m]["new"] for m in TESTBED} == {"False"}
    assert board["my_net"]["origin"] == "runs" and {board[m]["origin"] for m in TESTBED} == {str(results)}
    with open(out / "tables" / "trends.csv") as f:
        assert {row["new"] for row in csv.DictReader(f)} == {"my_net"}
    text = (out / "report.md").read_text()
    assert f"| **my_net** (new) | {float(board['my_net']['score']):.2f} [" in text
    analysis = pipeline.analyze([root / "mine"], n_boot=N_BOOT, references=[results])
    figure = pipeline.make_figures(analysis)[0]["figure1"]()
    for ax in (ax for ax in figure.axes if ax.has_data()):
        (new,) = [c for c in ax.containers if c.get_label() == figures.NEW_LABEL]
        assert list(new.lines[0].get_xdata()) == [78.5] and new.lines[0].get_color() == figures.NEW_COLOUR
    assert any(text.get_text().endswith("my_net (78.5%) NEW") for text in figure.legends[0].get_texts())


def test_a_reference_on_another_split_is_refused_in_one_line(published, tmp_path):
    root, results = published
    other = "f" * 64
    write_run(tmp_path / "runs", "cassava", "my_net", 0.7, top1=78.5, split_sha256=other)
    result = run_script(tmp_path / "runs", "--reference", results, "--n-boot", N_BOOT, "--out", tmp_path / "out",
                        cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"analyze.py: error: cassava: split file SHA-256 {other} in the runs given, {SPLITS['cassava']} in "
        f"{results}; results on different splits cannot be compared (train on the reference's split file, or "
        f"analyse them apart)"]
    assert not (tmp_path / "out").exists()


def test_other_resamples_or_another_metric_are_refused(published, tmp_path):
    root, results = published
    with pytest.raises(analyze.errors.UsageError, match=f"--n-boot 10000 differs from the n_boot of --reference "
                                                        f"{results} \\({N_BOOT}\\).*pass --n-boot {N_BOOT}"):
        pipeline.analyze([root / "mine"], references=[results])
    rng = np.random.default_rng(0)
    for folder in ("published", "mine"):  # APTOS chosen by QWK; one lab exports accuracy, the other reads QWK
        for i in range(3):
            grades = rng.integers(0, 5, 200)
            scores = np.full((200, 5), 0.1)
            scores[np.arange(200), np.where(rng.random(200) < 0.6, grades, 0)] = 0.6
            write_scored_run(tmp_path / folder, "aptos", f"{folder}{i}", grades, scores, 60.0 + 5 * i, 0.01)
    exported = tmp_path / "accuracy.json"
    assert analyze.main([str(tmp_path / "published"), "--metric", "accuracy", "--n-boot", "20", "--export",
                         str(exported), "--out", str(tmp_path / "r1")]) == 0
    with pytest.raises(analyze.errors.DataError, match="aptos: the metric is defined differently in the runs given "
                                                       f"and {exported} \\(metric qwk vs accuracy\\)"):
        pipeline.analyze([tmp_path / "mine"], n_boot=20, references=[exported])


def test_reference_repeated_for_several_files_with_the_runs_given_after_it(published, tmp_path):
    """--reference once per file (a shell script adds one per file it is given), the runs' folders anywhere."""
    root, results = published
    grid(tmp_path / "other-lab", {"toy_other": 70.0}, seed=2)
    other = tmp_path / "other.json"
    assert analyze.main([str(tmp_path / "other-lab"), "--n-boot", str(N_BOOT), "--out", str(tmp_path / "other"),
                         "--export", str(other)]) == 0
    out = tmp_path / "report"
    assert analyze.main(["--reference", str(results), "--reference", str(other), str(root / "mine"), "--n-boot",
                         str(N_BOOT), "--out", str(out)]) == 0
    with open(out / "tables" / "leaderboard.csv") as f:
        origins = {row["model"]: row["origin"] for row in csv.DictReader(f)}
    assert origins == {"my_net": "runs", "toy_other": str(other), **{model: str(results) for model in TESTBED}}


def test_a_file_that_is_not_a_results_file_is_refused_naming_it(published, tmp_path):
    root, results = published
    record = next((root / "published").glob("*.json"))
    with pytest.raises(analyze.errors.DataError, match=f"--reference {record}: not a results file of analyze.py "
                                                       f"--export"):
        pipeline.analyze([], n_boot=N_BOOT, references=[record])
    cut = tmp_path / "cut.json"
    content = json.loads(results.read_text())
    content["results"][0]["replicates"] = content["results"][0]["replicates"][:800]  # 150 of the 200 values
    cut.write_text(json.dumps(content))
    with pytest.raises(analyze.errors.DataError, match=f"--reference {cut}: malformed results file .*replicates, "
                                                       f"not n_boot {N_BOOT}"):
        pipeline.analyze([], n_boot=N_BOOT, references=[cut])
    for part, key in (("analysis", "level"), ("toolkit", None)):  # a setting missing, or a whole block
        broken = tmp_path / f"without-{part}.json"
        content = json.loads(results.read_text())
        content[part].pop(key) if key else content.pop(part)
        broken.write_text(json.dumps(content))
        with pytest.raises(analyze.errors.DataError, match=f"--reference {broken}: malformed results file"):
            pipeline.analyze([], n_boot=N_BOOT, references=[broken])
