"""The benchmark score [§6] with its interval and ranks (issue 22), checked against a direct computation: each
dataset's test samples resampled with its own seed (README: SeedSequence([seed, crc32(name)])), every model scored
on those resamples with scikit-learn, the scores averaged over the datasets resample by resample."""
from __future__ import annotations

import csv
import json
import zlib

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, cohen_kappa_score, roc_auc_score

import analyze
import metrics
from analysis import figures, pipeline
from common import runrecord

from test_analyze import write_run, write_scored_run

N_BOOT = 300
MODELS = {"toy0": 62.0, "toy1": 70.0, "toy2": 71.0, "toy3": 80.0}  # toy1 and toy2 are close: a rank to doubt


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Three datasets with three metrics (accuracy, QWK, ROC AUC), four models, one worse configuration each."""
    folder, out = tmp_path_factory.mktemp("runs"), tmp_path_factory.mktemp("report")
    rng = np.random.default_rng(11)
    for i, (model, top1) in enumerate(MODELS.items()):
        skill = 0.55 + 0.1 * i - (0.07 if model == "toy2" else 0.0)
        write_run(folder, "cassava", model, skill, top1=top1)
        write_run(folder, "cassava", model, skill - 0.1, top1=top1, lr=0.1)
        grades = rng.integers(0, 5, 300)
        predicted = np.where(rng.random(300) < skill, grades, rng.integers(0, 5, 300))
        scores = np.full((300, 5), 0.05)
        scores[np.arange(300), predicted] = 0.8
        write_scored_run(folder, "aptos", model, grades, scores, top1, 0.01)
        target = (rng.random(400) < 0.3).astype(int)
        p = np.clip(0.3 + skill * 0.4 * target + rng.normal(0, 0.2, 400), 0.01, 0.99)
        write_scored_run(folder, "melanoma", model, target, np.column_stack([1 - p, p]), top1, 0.01)
    assert analyze.main([str(folder), "--out", str(out), "--n-boot", str(N_BOOT)]) == 0
    return folder, out


def dataset_seed(seed: int, name: str) -> int:
    """As README states it, independently of analysis/resampling.py."""
    return int(np.random.SeedSequence([seed, zlib.crc32(name.encode())]).generate_state(1, dtype=np.uint64)[0])


def resampled_metric(dataset: str, labels, scores) -> np.ndarray:
    """The dataset's metric on each of its N_BOOT resamples, by scikit-learn, one resample at a time."""
    indices = np.concatenate(list(metrics.resample_indices(len(labels), N_BOOT, dataset_seed(0, dataset))))
    if dataset == "cassava":
        return np.array([accuracy_score(labels[i], scores[i].argmax(1)) for i in indices])
    if dataset == "aptos":
        return np.array([cohen_kappa_score(labels[i], scores[i].argmax(1), weights="quadratic", labels=range(5))
                         for i in indices])
    return np.array([roc_auc_score(labels[i], scores[i][:, 1]) for i in indices])


def chosen_predictions(out, dataset: str, model: str) -> dict:
    with open(out / "tables" / "best.csv") as f:
        (row,) = [r for r in csv.DictReader(f) if r["dataset"] == dataset and r["model"] == model]
    record = json.loads(open(row["record"]).read())
    arrays = runrecord.read_predictions(runrecord.files_of(row["record"]).out / record["predictions"]["val"])
    order = np.argsort(arrays["ids"].astype(str), kind="stable")  # resamples index the samples in order of id
    return {"labels": arrays["labels"][order], "scores": arrays["scores"][order], "row": row}


def leaderboard(out) -> list[dict]:
    with open(out / "tables" / "leaderboard.csv") as f:
        return list(csv.DictReader(f))


def test_the_interval_and_ranks_equal_a_direct_computation(study):
    _, out = study
    board = leaderboard(out)
    datasets = ["aptos", "melanoma", "cassava"]  # registry order
    resampled = {}
    for model in MODELS:
        per_dataset = []
        for dataset in datasets:
            chosen = chosen_predictions(out, dataset, model)
            per_dataset.append(100 * resampled_metric(dataset, chosen["labels"], chosen["scores"]))
        resampled[model] = np.mean(per_dataset, axis=0)
    order = [row["model"] for row in board]
    assert order == sorted(MODELS, key=lambda m: -float(next(r["score"] for r in board if r["model"] == m)))
    ranks = np.argsort(np.argsort(-np.column_stack([resampled[m] for m in order]), axis=1), axis=1) + 1
    for position, row in enumerate(board):
        values = resampled[row["model"]]
        low, high = np.percentile(values, [2.5, 97.5])
        assert float(row["score_low"]) == pytest.approx(low, abs=1e-4)
        assert float(row["score_high"]) == pytest.approx(high, abs=1e-4)
        assert float(row["score_low"]) < float(row["score"]) < float(row["score_high"])
        assert int(row["n_boot_used"]) == N_BOOT
        if position + 1 < len(board):
            below = resampled[board[position + 1]["model"]]
            assert float(row["p_above_next"]) == pytest.approx(np.mean(values > below) + 0.5 * np.mean(values == below),
                                                               abs=1e-12)
        else:
            assert row["p_above_next"] == ""
        rank_low, rank_high = np.percentile(ranks[:, position], [2.5, 97.5], method="lower")[0], \
            np.percentile(ranks[:, position], 97.5, method="higher")
        assert (float(row["rank_low"]), float(row["rank_high"])) == (rank_low, rank_high)
    doubtful = next(row for row in board if row["model"] == "toy2")  # close to toy1: not always above or below
    neighbour = board[[r["model"] for r in board].index("toy2") - 1]
    assert 0.02 < float(neighbour["p_above_next"]) < 0.98 or 0.02 < float(doubtful["p_above_next"]) < 0.98


def test_each_models_interval_is_the_one_metrics_intervals_gives(study):
    """The report split's intervals come from the same resamples as the benchmark's, and equal metrics.intervals
    of the sorted predictions with the dataset's seed (Clopper-Pearson for accuracy)."""
    _, out = study
    for dataset, task, metric in (("aptos", "ordinal", "qwk"), ("melanoma", "binary", "roc_auc"),
                                  ("cassava", "multiclass", "accuracy")):
        for model in MODELS:
            chosen = chosen_predictions(out, dataset, model)
            (expected,) = metrics.intervals(task, [(chosen["labels"], chosen["scores"], None)], None, [metric],
                                            n_boot=N_BOOT, seed=dataset_seed(0, dataset))
            row = chosen["row"]
            assert (float(row["report_low"]), float(row["report_high"])) == pytest.approx(
                (expected[metric]["low"], expected[metric]["high"]), abs=1e-12)
            assert row["interval_method"] == expected[metric]["method"]


def test_every_output_carries_the_interval(study):
    folder, out = study
    board = leaderboard(out)
    summary = json.loads((out / "analysis.json").read_text())["tables"]["leaderboard"]
    assert [(r["model"], r["score_low"], r["score_high"]) for r in summary] == [
        (r["model"], float(r["score_low"]), float(r["score_high"])) for r in board]
    report = (out / "report.md").read_text()
    section = report.split("## Benchmark score (§6)")[1].split("\n## ")[0]
    for row in board:
        assert f"| {row['model']} | {float(row['score']):.2f} [{float(row['score_low']):.2f}, " \
               f"{float(row['score_high']):.2f}] |" in section
    assert (out / "figures" / "benchmark.png").exists() and (out / "figures" / "benchmark.pdf").exists()
    figure = pipeline.make_figures(pipeline.analyze([folder], n_boot=N_BOOT))[0]["benchmark"]()
    (ax,) = figure.axes
    bars = [container for container in ax.containers]
    assert len(bars) == len(MODELS)
    for container, row in zip(bars, board):  # drawn top down by rank, each with its interval
        (segments,) = container.lines[2]
        (x0, _), (x1, _) = segments.get_segments()[0]
        assert (x0, x1) == pytest.approx((float(row["score_low"]), float(row["score_high"])), abs=1e-9)
    assert [label.get_text() for label in ax.get_yticklabels()] == [f"{r['rank']}. {r['model']}" for r in board]
    assert figures.NEW_COLOUR not in {c.lines[0].get_color() for c in bars}  # no reference: nothing is new
