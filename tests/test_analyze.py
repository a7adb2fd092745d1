"""analyze.py (with runrecords.py, selection.py, trends.py): from a grid of run records to the paper's tables,
fits and statistics. Figures and report files: tests/test_report.py.

The records are built here following the run record schema (as train.py writes them), with prediction files whose
accuracy is exactly the metric the record holds, so that every number the analysis reports has a known answer.
"""
from __future__ import annotations

import csv
import json
import math
import zlib
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import analyze
from analysis import appendix_n, figures, pipeline, reading, trends
from common import errors, fileio, runrecord
from nets import registry

N_BOOT = 200
N_SAMPLES = 1000  # accuracy resolution 0.001
NUM_CLASSES = 4


def write_run(folder, dataset, model, value, top1=None, optimizer="sgd", schedule="cosine", lr=0.01, wd=1e-4,
              status="complete", params=None, seed=0, weights="imagenet", predictions=True, error=None, **config):
    """A run record (schema 1) whose selection-split accuracy is `value`, rounded to 1/N_SAMPLES, with the
    prediction file behind it. Returns the accuracy the record holds."""
    run_id = f"{dataset}-{model}-{optimizer}-{schedule}-lr{lr:g}-wd{wd:g}-s{seed}-{weights}" + "".join(
        f"-{key}{value}" for key, value in sorted(config.items()))
    correct = int(round(value * N_SAMPLES))
    rng = np.random.default_rng(zlib.crc32(run_id.encode()))
    labels = rng.integers(0, NUM_CLASSES, N_SAMPLES)
    predicted = labels.copy()
    predicted[correct:] = (labels[correct:] + 1) % NUM_CLASSES
    scores = np.full((N_SAMPLES, NUM_CLASSES), 0.1 / (NUM_CLASSES - 1))
    scores[np.arange(N_SAMPLES), predicted] = 0.9
    accuracy = correct / N_SAMPLES
    record = {
        "schema_version": runrecord.SCHEMA_VERSION, "run_id": run_id, "status": status,
        "error": (error or "RuntimeError: CUDA out of memory") if status == "failed" else None,
        "diverged_epoch": 3 if status == "diverged" else None,
        "config": {"dataset": dataset, "model": model, "weights": weights, "optimizer": optimizer,
                   "schedule": schedule, "lr": lr, "wd": wd, "augment": "paper", "seed": seed, "epochs": 30,
                   **config},
        "dataset": {"name": dataset, "task": "multiclass", "metric": "accuracy", "num_classes": NUM_CLASSES,
                    "selection_split": "val", "report_split": None},
        "model": {"name": model, "imagenet_top1": top1, "params": params,
                  "weights_loaded": "imagenet:IMAGENET1K_V1" if weights == "imagenet" else weights},
        "history": [], "best": None, "predictions": {},
    }
    if status == "complete":
        record["best"] = {"epoch": 2, "metrics": {"val_accuracy": accuracy}}
        if predictions:
            record["predictions"] = {"val": f"{run_id}/predictions-val.npz"}
            fileio.atomic_save_npz(folder / run_id / "predictions-val.npz", ids=np.arange(N_SAMPLES).astype(str),
                                    labels=labels, scores=scores, thresholds=np.array([]),
                                    task=np.asarray("multiclass"))
    fileio.atomic_write_json(folder / f"{run_id}.json", record)
    return accuracy


def linear_grid(folder, slopes, n_models=10, noise=0.004, seed=0):
    """Models with ImageNet top-1 spread over 55-85%; on each dataset accuracy = 0.1 + slope/100 * top1 + noise.

    Each model also gets a worse configuration (lr 0.1) that the best-per-model choice must pass over.
    Returns {dataset: {model: record accuracy}} and {model: top1}."""
    rng = np.random.default_rng(seed)
    top1 = {f"toy{i:02d}": float(t) for i, t in enumerate(np.linspace(55, 85, n_models))}
    values = {}
    for dataset, slope in slopes.items():
        values[dataset] = {}
        for model, t in top1.items():
            truth = 0.1 + slope / 100 * t + rng.normal(0, noise)
            values[dataset][model] = write_run(folder, dataset, model, truth, top1=t, params=1e6 * (1 + t - 50))
            write_run(folder, dataset, model, truth - 0.05, top1=t, lr=0.1, params=1e6 * (1 + t - 50))
    return values, top1


def run_analysis(folder, **options):
    options.setdefault("n_boot", N_BOOT)
    return pipeline.analyze([folder], **options)


def trend(analysis, dataset, subset="all", axes="linear"):
    (row,) = [r for r in analysis.trends if r["dataset"] == dataset and r["subset"] == subset and r["axes"] == axes]
    return row


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs")
    values, top1 = linear_grid(folder, {"cassava": 0.8, "eurosat": 0.02, "cct20": 0.5, "aptos": 0.3})
    return folder, values, top1, run_analysis(folder, use_logit=True)


def test_best_configuration_per_model_is_the_best_selection_metric(grid):
    _, values, top1, analysis = grid
    assert len(analysis.best) == 4 * len(top1)
    for row in analysis.best:
        assert row.lr == 0.01 and row.configurations == 2
        assert row.selection_value == row.report_value == values[row.dataset][row.model]
        assert row.imagenet_top1 == top1[row.model] and row.top1_source == "record"
        # the interval comes from the saved predictions and holds the recorded value
        assert row.selection_low <= row.selection_value <= row.selection_high
        assert row.selection_high - row.selection_low < 0.1
    assert analysis.warnings == []


def test_slopes_and_correlations_recover_the_linear_ground_truth(grid):
    _, values, top1, analysis = grid
    x = np.array(list(top1.values()))
    for dataset, true_slope in {"cassava": 0.8, "cct20": 0.5, "aptos": 0.3}.items():
        y = np.array([values[dataset][m] for m in top1]) * 100  # fractions are put on the 0-100 axis
        row = trend(analysis, dataset)
        assert row["n"] == len(top1) and row["metric_scale"] == 100
        assert row["slope"] == pytest.approx(np.polyfit(x, y, 1)[0], abs=1e-10)
        assert row["slope"] == pytest.approx(true_slope, abs=0.05)
        assert row["r"] == pytest.approx(stats.pearsonr(x, y).statistic, abs=1e-12)
        assert row["slope_low"] < row["slope"] < row["slope_high"]
        assert row["r_low"] <= row["r"] <= row["r_high"]
        assert row["no_progress"] is False


def test_models_above_the_threshold_are_fit_separately(grid):
    folder, values, top1, analysis = grid
    above = [m for m, t in top1.items() if t > 70]
    row = trend(analysis, "cassava", "top1>70")
    assert row["n"] == len(above) and row["models"].split(",") == above
    x = np.array([top1[m] for m in above])
    y = np.array([values["cassava"][m] for m in above]) * 100
    assert row["slope"] == pytest.approx(np.polyfit(x, y, 1)[0], abs=1e-10)

    stricter = run_analysis(folder, threshold=80.0, datasets=["cassava"])
    assert trend(stricter, "cassava", "top1>80")["n"] == sum(t > 80 for t in top1.values())


def test_flat_dataset_is_flagged_as_no_meaningful_progress(grid):
    _, _, _, analysis = grid
    assert trend(analysis, "eurosat")["slope"] < 0.05
    assert trend(analysis, "eurosat")["no_progress"] is True
    assert trend(analysis, "eurosat", axes="logit")["no_progress"] is None  # the paper's 0.05 reads 0-100 slopes


def test_logit_axes_fit_the_logit_transformed_values(grid):
    _, values, top1, analysis = grid
    x = trends.logit(list(top1.values()))
    y = trends.logit(np.array([values["cct20"][m] for m in top1]) * 100)
    assert trend(analysis, "cct20", axes="logit")["slope"] == pytest.approx(np.polyfit(x, y, 1)[0], abs=1e-10)


def test_bootstrap_interval_over_models_is_seeded():
    x = np.linspace(50, 90, 10)
    y = 0.5 * x + np.random.default_rng(1).normal(0, 2, 10)
    first, again = trends.fit_trend(x, y, n_boot=300, seed=3), trends.fit_trend(x, y, n_boot=300, seed=3)
    other = trends.fit_trend(x, y, n_boot=300, seed=4)
    assert first == again and first["slope_low"] != other["slope_low"]
    assert math.isnan(trends.fit_trend(x[:2], y[:2])["slope"])  # too few models for a fit


def test_ols_and_nested_f_tests_agree_with_statsmodels():
    sm = pytest.importorskip("statsmodels.api")
    rng = np.random.default_rng(0)
    imagenet, average = rng.normal(size=19), rng.normal(size=19)
    y = 0.3 * imagenet + 0.8 * average + rng.normal(0, 0.5, 19)
    full = appendix_n.ols(y, np.column_stack([imagenet, average]))
    restricted = appendix_n.ols(y, imagenet)
    sm_full = sm.OLS(y, sm.add_constant(np.column_stack([imagenet, average]))).fit()
    sm_restricted = sm.OLS(y, sm.add_constant(imagenet)).fit()
    np.testing.assert_allclose(full.coef, sm_full.params, rtol=0, atol=1e-8)
    np.testing.assert_allclose(restricted.coef, sm_restricted.params, rtol=0, atol=1e-8)
    assert full.r2 == pytest.approx(sm_full.rsquared, abs=1e-8)
    ours = appendix_n.nested_f_test(restricted, full)
    f_value, p_value, df_diff = sm_full.compare_f_test(sm_restricted)
    assert ours["F"] == pytest.approx(f_value, abs=1e-8) and ours["p"] == pytest.approx(p_value, abs=1e-8)
    assert ours["df_num"] == df_diff and ours["df_den"] == 16


def appendix_grid(folder, n_models=8, seed=0):
    """Four real-world datasets driven by a shared latent factor that ImageNet accuracy only partly explains,
    plus the cifar10 control, and one model that lacks a dataset."""
    rng = np.random.default_rng(seed)
    top1 = {f"toy{i:02d}": float(t) for i, t in enumerate(np.linspace(60, 84, n_models))}
    latent = {m: rng.normal() for m in top1}
    values = {}
    for dataset in ("cct20", "aptos", "cassava", "eurosat", "cifar10"):
        values[dataset] = {m: write_run(folder, dataset, m, 0.5 + 0.004 * (t - 70) + 0.03 * latent[m]
                                        + rng.normal(0, 0.01), top1=t) for m, t in top1.items()}
    write_run(folder, "cct20", "lonely", 0.6, top1=75.0)
    return values, top1


def test_appendix_n_matches_statsmodels_and_scipy(tmp_path):
    sm = pytest.importorskip("statsmodels.api")
    values, top1 = appendix_grid(tmp_path)
    analysis = run_analysis(tmp_path)
    part = analysis.appendix_n
    real = ["cct20", "aptos", "cassava", "eurosat"]  # cifar10 is the web-scraped control: not real-world
    assert part["datasets"] == real and part["note"] is None
    assert part["models"] == sorted(top1) and part["left_out"] == [{"model": "lonely", "reason": "no result on "
                                                                   "aptos, cassava, eurosat"}]

    def z(v):
        p = np.asarray(v)
        t = np.log(p / (1 - p))
        return (t - t.mean()) / t.std(ddof=1)

    models_ = sorted(top1)
    zs = {d: z([values[d][m] for m in models_]) for d in real}
    z_imagenet = z([top1[m] / 100 for m in models_])
    for d in real:
        others = np.mean([zs[o] for o in real if o != d], axis=0)
        both = sm.OLS(zs[d], sm.add_constant(np.column_stack([z_imagenet, others]))).fit()
        only_imagenet = sm.OLS(zs[d], sm.add_constant(z_imagenet)).fit()
        only_average = sm.OLS(zs[d], sm.add_constant(others)).fit()
        tests = {t["test"]: t for t in part["f_tests"] if t["dataset"] == d}
        f_value, p_value, _ = both.compare_f_test(only_imagenet)
        assert tests["average adds to ImageNet"]["F"] == pytest.approx(f_value, abs=1e-8)
        assert tests["average adds to ImageNet"]["p"] == pytest.approx(p_value, abs=1e-8)
        f_value, p_value, _ = both.compare_f_test(only_average)
        assert tests["ImageNet adds to average"]["F"] == pytest.approx(f_value, abs=1e-8)
        assert tests["ImageNet adds to average"]["p"] == pytest.approx(p_value, abs=1e-8)
        (fit,) = [o for o in part["ols"] if o["dataset"] == d and o["model"] == "both"]
        np.testing.assert_allclose([fit["intercept"], fit["imagenet_coef"], fit["average_coef"]], both.params,
                                   rtol=0, atol=1e-8)
        (rho,) = [s for s in part["spearman"] if s["dataset"] == d]
        expected_imagenet = stats.spearmanr([values[d][m] for m in models_], [top1[m] for m in models_])
        assert rho["rho_imagenet"] == pytest.approx(expected_imagenet.statistic, abs=1e-8)
        assert rho["p_imagenet"] == pytest.approx(expected_imagenet.pvalue, abs=1e-8)
        assert rho["rho_average"] == pytest.approx(stats.spearmanr(zs[d], others).statistic, abs=1e-8)

    # the paper's benchmark score [§6]: the plain average of the datasets' metrics on 0-100, by hand
    by_hand = {m: sum(values[d][m] * 100 for d in real) / len(real) for m in models_}
    board = analysis.benchmark["rows"]
    assert analysis.benchmark["datasets"] == real
    assert analysis.benchmark["left_out"] == [{"model": "lonely", "reason": "no result on aptos, cassava, eurosat"}]
    assert [row["model"] for row in board] == sorted(models_, key=lambda m: -by_hand[m])
    assert [row["rank"] for row in board] == list(range(1, len(models_) + 1))
    for row in board:
        assert row["score"] == pytest.approx(by_hand[row["model"]], abs=1e-9)
        assert row["standardised_logit_score"] == pytest.approx(
            np.mean([zs[d][models_.index(row["model"])] for d in real]), abs=1e-12)
        assert row["cassava"] == pytest.approx(values["cassava"][row["model"]] * 100, abs=1e-9)


def test_datasets_flag_picks_the_appendix_n_datasets(tmp_path):
    appendix_grid(tmp_path)
    part = run_analysis(tmp_path, datasets=["cct20", "aptos", "cifar10"]).appendix_n
    assert part["datasets"] == ["cct20", "aptos", "cifar10"] and len(part["f_tests"]) == 6
    few = run_analysis(tmp_path, datasets=["cct20", "aptos"])
    assert few.appendix_n["note"].startswith("skipped") and few.appendix_n["f_tests"] == []


def test_bad_files_are_named_and_skipped_and_coverage_is_listed(tmp_path, capsys):
    folder = tmp_path / "runs"
    for i, t in enumerate((62.0, 71.0, 79.0)):
        write_run(folder, "cassava", f"toy{i}", 0.6 + i / 20, top1=t)
        write_run(folder, "cassava", f"toy{i}", 0.55, top1=t, lr=0.1)
    write_run(folder, "cassava", "toy0", 0.5, top1=62.0, wd=0.0)  # only toy0 ran wd=0: the others miss it
    write_run(folder, "cassava", "toy1", 0.5, top1=71.0, wd=0.0, status="diverged")
    write_run(folder, "cassava", "toy2", 0.5, top1=79.0, wd=0.0, status="failed")
    write_run(folder, "cassava", "toy3", 0.5, top1=80.0, status="running")
    (folder / "truncated.json").write_text('{"schema_version": 1, "run_id": "x", "sta')
    (folder / "binary.json").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    (folder / "list.json").write_text("[1, 2, 3]")
    (folder / "split-meta.json").write_text('{"dataset": "cassava", "seed": 0}')
    newer = json.loads(next(folder.glob("cassava-toy0-sgd-cosine-lr0.01*.json")).read_text())
    newer["schema_version"] = 2
    (folder / "newer.json").write_text(json.dumps(newer))
    del newer["best"]
    newer["schema_version"] = 1
    (folder / "no-best.json").write_text(json.dumps(newer))
    out = tmp_path / "reports"

    assert analyze.main([str(folder), "--out", str(out), "--n-boot", "50"]) == 0
    stderr = capsys.readouterr().err
    for name, reason in (("truncated.json", "not valid JSON"), ("binary.json", "not valid JSON"),
                         ("list.json", "not a run record"), ("split-meta.json", "not a run record"),
                         ("newer.json", "schema_version 2"), ("no-best.json", "no 'best.metrics'"),
                         ("cassava-toy3-", "still running")):
        assert any(name in line and reason in line for line in stderr.splitlines()), (name, stderr)
    report = (out / "report.md").read_text()
    assert "truncated.json" in report and "newer.json" in report

    analysis = run_analysis(folder)
    coverage = analysis.coverage
    assert [(r["model"], r["diverged_epoch"]) for r in coverage["diverged"]] == [("toy1", 3)]
    assert [(r["model"], r["error"]) for r in coverage["failed"]] == [("toy2", "RuntimeError: CUDA out of memory")]
    # wd=0 exists for every model (diverged and failed runs count as run); lr=0.1 with wd=0 exists for none
    assert sorted((r["model"], r["lr"], r["wd"]) for r in coverage["missing"]) == [
        ("toy0", 0.1, 0.0), ("toy1", 0.1, 0.0), ("toy2", 0.1, 0.0)]
    seen = run_analysis(folder, grid="seen").coverage["missing"]
    assert seen == []
    assert {b.model for b in analysis.best} == {"toy0", "toy1", "toy2"}


def test_no_usable_record_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(errors.DataError, match=r"no complete run record among 1 input file\(s\)"):
        analyze.main([str(tmp_path / "broken.json"), "--out", str(tmp_path / "out")])
    assert "broken.json" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_missing_predictions_and_mixed_settings_are_reported(tmp_path):
    write_run(tmp_path, "cassava", "toy0", 0.7, top1=70.0, predictions=False)
    write_run(tmp_path, "cassava", "toy1", 0.8, top1=75.0)
    write_run(tmp_path, "cassava", "toy1", 0.6, top1=75.0, weights="random")
    analysis = run_analysis(tmp_path)
    assert any("toy0" in w and "no predictions file for split 'val'" in w for w in analysis.warnings)
    assert any("cassava/toy1" in w and "config.weights" in w for w in analysis.warnings)
    (row,) = [b for b in analysis.best if b.model == "toy0"]
    assert row.selection_value == 0.7 and math.isnan(row.selection_low)
    assert any("random initialisation" in n and "toy1" in n for n in analysis.notes)


def test_imagenet_top1_comes_from_models_py_and_unknown_models_are_left_out(tmp_path):
    name, entry = next((n, e) for n, e in registry.REGISTRY.items() if e.imagenet_top1 is not None)
    write_run(tmp_path, "cassava", name, 0.8, top1=1.0)  # a wrong number in the record: models.py wins
    write_run(tmp_path, "cassava", "mystery", 0.7, top1=None)
    for i, t in enumerate((60.0, 65.0, 72.0)):
        write_run(tmp_path, "cassava", f"toy{i}", 0.6 + i / 50, top1=t)
    analysis = run_analysis(tmp_path)
    facts = {b.model: b for b in analysis.best}
    assert facts[name].imagenet_top1 == entry.imagenet_top1 and facts[name].top1_source == "models.py"
    assert facts["toy0"].top1_source == "record" and facts["mystery"].imagenet_top1 is None
    assert analysis.unknown_top1 == ["mystery"]
    assert "mystery" not in trend(analysis, "cassava")["models"].split(",")
    assert trend(analysis, "cassava")["n"] == 4


def test_filters_keep_only_the_requested_datasets_and_models(grid):
    folder, _, top1, _ = grid
    analysis = run_analysis(folder, datasets=["cassava"], model_names=["toy00", "toy01", "toy02"])
    assert {(b.dataset, b.model) for b in analysis.best} == {("cassava", m) for m in ("toy00", "toy01", "toy02")}
    with pytest.raises(errors.UsageError, match="--models names 'nobody', which no usable run record has"):
        run_analysis(folder, datasets=["cassava"], model_names=["toy00", "nobody"])


def test_smoothing_spline_follows_a_curved_trend_without_chasing_model_scatter():
    x = np.linspace(55, 85, 19)
    truth = 100 - 60 * np.exp(-(x - 55) / 10)  # saturating, like accuracy on an easy dataset
    y = truth + np.random.default_rng(0).normal(0, 3, len(x))
    spline = trends.smoothing_spline(x, y, np.full(len(x), 0.5))  # sampling error far below model scatter
    grid_x = np.linspace(55, 85, 200)
    line = np.polyval(np.polyfit(x, y, 1), grid_x)
    truth_grid = 100 - 60 * np.exp(-(grid_x - 55) / 10)
    assert np.sqrt(np.mean((spline(grid_x) - truth_grid) ** 2)) < 0.6 * np.sqrt(np.mean((line - truth_grid) ** 2))
    assert np.abs(np.diff(spline(grid_x), 2)).max() < 0.1  # smooth: no wiggles between neighbouring models


def test_size_trends_fit_the_metric_against_log10_parameters(grid):
    _, values, top1, analysis = grid
    (row,) = [r for r in analysis.size_trends if r["dataset"] == "cassava" and r["subset"] == "all"]
    params = {m: 1e6 * (1 + t - 50) for m, t in top1.items()}
    x = np.log10([params[m] for m in top1])
    y = np.array([values["cassava"][m] for m in top1]) * 100
    assert row["slope"] == pytest.approx(np.polyfit(x, y, 1)[0], abs=1e-9) and row["n"] == len(top1)
    (above,) = [r for r in analysis.size_trends if r["dataset"] == "cassava" and r["subset"] == "top1>70"]
    assert above["n"] == sum(t > 70 for t in top1.values())


def brute_force_difference(target, imagenet, others, indices):
    """The N.2 statistic resample by resample with scipy: re-standardise, average, two Spearman correlations."""
    out = []
    for row in indices:
        average = np.mean([(o[row] - o[row].mean()) / o[row].std(ddof=1) for o in others], axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append(stats.spearmanr(target[row], average).statistic
                       - stats.spearmanr(target[row], imagenet[row]).statistic)
    return np.array(out)


def test_appendix_n2_difference_test_equals_brute_force_resampling():
    rng = np.random.default_rng(3)
    latent = rng.normal(size=19)
    imagenet = 0.4 * latent + rng.normal(size=19)
    others = [latent + rng.normal(0, 0.4, 19) for _ in range(4)]
    target = latent + rng.normal(0, 0.4, 19)
    indices = trends.model_resamples(19, 400, seed=5)
    ours = appendix_n.spearman_difference(target, imagenet, others, indices)
    np.testing.assert_allclose(ours, brute_force_difference(target, imagenet, others, indices), atol=1e-12)
    result = appendix_n.difference_test(target, imagenet, others, n_boot=400, seed=5)
    defined = ours[~np.isnan(ours)]
    assert result["p_difference"] == pytest.approx(np.mean(defined <= 0), abs=1e-15)
    assert result["n_boot_used"] == len(defined)
    average = np.mean([(o - o.mean()) / o.std(ddof=1) for o in others], axis=0)
    assert result["difference"] == pytest.approx(stats.spearmanr(target, average).statistic
                                                 - stats.spearmanr(target, imagenet).statistic, abs=1e-12)
    # the average predicts this dataset far better than ImageNet: a small p; the other way round: a large one
    assert result["p_difference"] < 0.05 < appendix_n.difference_test(target, latent + rng.normal(0, 0.1, 19),
                                                                   [rng.normal(size=19) for _ in range(4)],
                                                                   n_boot=400)["p_difference"]


def test_appendix_n2_is_reported_per_dataset(tmp_path):
    values, top1 = appendix_grid(tmp_path)
    part = run_analysis(tmp_path).appendix_n
    models_ = sorted(top1)
    real = ["cct20", "aptos", "cassava", "eurosat"]
    logits = {d: trends.logit(np.array([values[d][m] for m in models_]) * 100) for d in real}
    imagenet = np.array([top1[m] for m in models_])
    for row in part["spearman"]:
        others = [logits[o] for o in real if o != row["dataset"]]
        expected = brute_force_difference(logits[row["dataset"]], imagenet, others,
                                          trends.model_resamples(len(models_), N_BOOT, seed=0))
        assert row["p_difference"] == pytest.approx(np.mean(expected[~np.isnan(expected)] <= 0), abs=1e-12)
        assert row["difference"] == pytest.approx(row["rho_average"] - row["rho_imagenet"], abs=1e-12)
        assert row["difference_low"] <= row["difference_high"]


def write_scored_run(folder, dataset, model, labels, scores, top1, lr, augment="paper"):
    """A run record whose best.metrics are metrics.score of these predictions on the dataset's val split."""
    import metrics
    from data import REGISTRY
    spec = REGISTRY[dataset]
    run_id = f"{dataset}-{model}-lr{lr:g}-{augment}"
    scored = metrics.score(spec.task, labels, scores, None, spec.num_classes)
    record = {"schema_version": runrecord.SCHEMA_VERSION, "run_id": run_id, "status": "complete", "error": None,
              "diverged_epoch": None,
              "config": {"dataset": dataset, "model": model, "weights": "imagenet", "optimizer": "sgd",
                         "schedule": "cosine", "lr": lr, "wd": 1e-4, "augment": augment, "seed": 0},
              "dataset": {"name": dataset, "task": spec.task, "metric": spec.metric, "num_classes": spec.num_classes,
                          "selection_split": "val", "report_split": None},
              "model": {"name": model, "imagenet_top1": top1, "params": None, "weights_loaded": "imagenet:x"},
              "best": {"epoch": 1, "metrics": {f"val_{k}": v for k, v in scored.items()}},
              "predictions": {"val": f"{run_id}/predictions-val.npz"}}
    runrecord.write_predictions(folder / run_id / "predictions-val.npz", np.arange(len(labels)).astype(str), labels,
                              scores, None, spec.task)
    fileio.atomic_write_json(folder / f"{run_id}.json", record)
    return scored


def test_metric_flag_analyses_accuracy_of_aptos_and_melanoma_on_the_chosen_configurations(tmp_path):
    rng = np.random.default_rng(9)
    chosen = {}
    for i, t in enumerate((60.0, 66.0, 72.0, 78.0)):
        grades = rng.integers(0, 5, 400)
        near = np.clip(grades + rng.integers(-1, 2, 400), 0, 4)   # off by one grade: good QWK, poor accuracy
        exact = np.where(rng.random(400) < 0.7, grades, 4 - grades)  # often right, far off when wrong
        for lr, predicted in ((0.01, near), (0.1, exact)):
            scores = np.full((400, 5), 0.05)
            scores[np.arange(400), predicted] = 0.8
            scored = write_scored_run(tmp_path, "aptos", f"toy{i}", grades, scores, t, lr)
            chosen.setdefault(("aptos", f"toy{i}"), []).append((scored["qwk"], scored["accuracy"]))
        target = (rng.random(500) < 0.3).astype(int)
        p = np.clip(0.3 + 0.3 * target + rng.normal(0, 0.2, 500), 0.01, 0.99)
        scored = write_scored_run(tmp_path, "melanoma", f"toy{i}", target, np.column_stack([1 - p, p]), t, 0.01)
        chosen[("melanoma", f"toy{i}")] = [(scored["roc_auc"], scored["accuracy"])]
    analysis = run_analysis(tmp_path, metric="accuracy")
    assert {b.dataset for b in analysis.best} == {"aptos", "melanoma"}
    for row in analysis.best:
        by_metric, accuracy = max(chosen[(row.dataset, row.model)])  # chosen by QWK / ROC AUC, reported: accuracy
        assert row.metric == "accuracy" and row.chosen_by in ("qwk", "roc_auc")
        assert row.report_value == accuracy and row.interval_method == "clopper-pearson"
        assert row.report_low < accuracy < row.report_high
        if row.dataset == "aptos":  # the better-QWK configuration is chosen though the other is more accurate
            assert row.lr == 0.01 and accuracy < min(a for _, a in chosen[(row.dataset, row.model)]) + 1e-12 \
                and accuracy < max(a for _, a in chosen[(row.dataset, row.model)])
    assert {(t["dataset"], t["metric"]) for t in analysis.trends} == {("aptos", "accuracy"), ("melanoma", "accuracy")}
    with pytest.raises(errors.UsageError, match="--metric kappa: no dataset's records hold it; they hold aptos: "
                                                "accuracy, balanced_accuracy, macro_f1, qwk"):
        run_analysis(tmp_path, metric="kappa")


def test_hpa_is_reported_on_val_where_thresholds_are_chosen_with_test_val_beside_it(tmp_path):
    """A real train.py run on the HPA fixture: the paper reports HPA on val [4.3], test_val is an extra column."""
    from data.synthetic import write_fixture

    from conftest import train
    root = write_fixture("hpa", tmp_path / "hpa", per_class=3)
    runs, out = tmp_path / "runs", tmp_path / "reports"
    train(["--dataset", "hpa", "--root", str(root), "--model", "resnet18", "--weights", "random", "--epochs", "1",
           "--batch-size", "8", "--img-size", "16", "--workers", "0", "--out", str(runs),
           "--split-method", "stratified"], tmp_path)
    (record_path,) = runs.glob("*.json")
    record = json.loads(record_path.read_text())
    assert record["dataset"]["report_split"] is None and record["dataset"]["extra_splits"] == ["test_val"]
    analyze.main([str(runs), "--out", str(out), "--n-boot", "50"])
    with open(out / "tables" / "best.csv") as f:
        (row,) = list(csv.DictReader(f))
    metrics_ = record["best"]["metrics"]
    assert (row["selection_split"], row["report_split"], row["extra_split"]) == ("val", "val", "test_val")
    assert float(row["report_value"]) == pytest.approx(metrics_["val_macro_f1"], abs=1e-12)
    assert float(row["extra_value"]) == pytest.approx(metrics_["test_val_macro_f1"], abs=1e-12)
    assert float(row["extra_low"]) <= float(row["extra_value"]) <= float(row["extra_high"])
    report = (out / "report.md").read_text()
    table = report.split("### hpa")[1].split("##")[0]
    assert "| val macro_f1 (chosen on, reported) | test_val macro_f1 |" in table
    with open(out / "tables" / "trends.csv") as f:
        assert {r["split"] for r in csv.DictReader(f)} == {"val"}
    # the recomputed values (thresholds fitted on val, as saved) agree with the record: no warning about them
    assert "differs from the record" not in report


def run_script(*args, cwd):
    import subprocess
    import sys
    return subprocess.run([sys.executable, str(analyze.__file__), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_an_unknown_dataset_filter_names_it_and_the_datasets_present_without_a_traceback(tmp_path):
    folder = tmp_path / "runs"
    write_run(folder, "eurosat", "toy0", 0.9, top1=70.0)
    write_run(folder, "cassava", "toy0", 0.8, top1=70.0)
    result = run_script(folder, "--datasets", "eurosatt", "--out", tmp_path / "out", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "analyze.py: error: --datasets names 'eurosatt', which no usable run record has ('eurosatt': did you mean "
        "'eurosat'?); the records hold the datasets cassava, eurosat"]
    assert not (tmp_path / "out").exists()
    (folder / "broken.json").write_text("{")
    only_broken = run_script(folder / "broken.json", cwd=tmp_path)
    assert only_broken.returncode == 1 and "Traceback" not in only_broken.stderr
    assert only_broken.stderr.splitlines()[-1].startswith("analyze.py: error: no complete run record among 1 input")


def test_the_analysis_modules_do_not_import_torch():
    import subprocess
    import sys
    code = ("import sys, analyze, analysis.reading, analysis.selection, analysis.trends, analysis.figures, "
            "analysis.report, analysis.pipeline, analysis.appendix_n; "
            "print(sorted(m for m in ('torch', 'timm', 'torchvision') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=str(Path(analyze.__file__).parent))
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr


def test_a_bad_predictions_file_is_named_and_the_other_models_keep_their_intervals(tmp_path):
    for i, t in enumerate((60.0, 70.0, 80.0)):
        write_run(tmp_path, "cassava", f"toy{i}", 0.6 + i / 20, top1=t)
    (bad,) = tmp_path.glob("cassava-toy1-*/predictions-val.npz")
    with np.load(bad) as arrays:
        saved = dict(arrays)
    saved["scores"][3, 0] = np.nan
    fileio.atomic_save_npz(bad, **saved)
    (truncated,) = tmp_path.glob("cassava-toy2-*/predictions-val.npz")
    truncated.write_bytes(truncated.read_bytes()[:100])
    analysis = run_analysis(tmp_path)
    rows = {b.model: b for b in analysis.best}
    assert rows["toy0"].report_low < rows["toy0"].report_value < rows["toy0"].report_high
    assert math.isnan(rows["toy1"].report_low) and math.isnan(rows["toy2"].report_low)
    assert any(str(bad) in w and "NaN/inf" in w for w in analysis.warnings)
    assert any(str(truncated) in w and "cannot be read" in w for w in analysis.warnings)


def test_compare_tabulates_the_best_configuration_per_setting_value(tmp_path):
    """Appendix G: --compare augment gives, per model, the best configuration of each fine-tuning augmentation."""
    expected = {}
    for model, top1 in (("resnet50", 76.1), ("resnet50_augmix", 79.0)):
        for k, augment in enumerate(("paper", "augmix", "randaugment")):
            best = 0.5 + 0.1 * k + (0.05 if model == "resnet50_augmix" else 0)
            write_run(tmp_path, "aptos", model, best, top1=top1, lr=0.01, augment=augment)
            write_run(tmp_path, "aptos", model, best - 0.2, top1=top1, lr=0.1, augment=augment)
            expected[(model, augment)] = best
    out = tmp_path / "report"
    analyze.main([str(tmp_path), "--compare", "augment", "--n-boot", "20", "--out", str(out)])
    with open(out / "tables" / "comparison.csv") as f:
        rows = list(csv.DictReader(f))
    assert {(r["model"], r["value"]): float(r["result"]) for r in rows} == pytest.approx(expected, abs=1e-3)
    assert {r["configurations"] for r in rows} == {"2"}
    report = (out / "report.md").read_text()
    assert "## Comparison by augment (Appendix G)" in report
    assert "| model | augment=augmix | augment=paper | augment=randaugment |" in report


def test_clip_towers_are_drawn_apart_and_linear_probes_are_not_candidates(tmp_path):
    """Figure 8: CLIP (LP-FT) beside the ImageNet models' trend, not in it; LP-FT's probes are not candidates."""
    rng = np.random.default_rng(0)
    testbed = {name: e.imagenet_top1 for name, e in registry.REGISTRY.items() if e.group == "testbed"}
    for name, top1 in testbed.items():
        write_run(tmp_path, "cassava", name, 0.3 + 0.5 * top1 / 100 + rng.normal(0, 0.005))
    write_run(tmp_path, "cassava", "clip_vit_b16", 0.2, lp_ft_phase="finetune")
    write_run(tmp_path, "cassava", "clip_vit_b16", 0.99, lr=0.1, lp_ft_phase="probe")  # never chosen
    result = pipeline.analyze([tmp_path], n_boot=N_BOOT)
    (clip,) = [b for b in result.best if b.model == "clip_vit_b16"]
    assert clip.report_value == pytest.approx(0.2) and clip.group == "clip"
    assert any("linear-probe" in w for w in result.warnings)
    fit = next(f for f in result.trends if f["subset"] == "all" and f["axes"] == "linear")
    assert fit["n"] == len(testbed)  # CLIP is not in the fit
    assert any("clip_vit_b16" in note and "Figure 8" in note for note in result.notes)
    figure = figures.plot_trends(result.best, result.trends)
    labels = [text for ax in figure.axes for text in ax.get_legend_handles_labels()[1]]
    assert "CLIP (LP-FT), not fitted" in labels


def test_a_final_model_trained_on_all_data_is_named_not_compared(tmp_path):
    write_run(tmp_path, "aptos", "resnet50", 0.6, top1=76.1)
    path = next(tmp_path.glob("*.json"))
    record = json.loads(path.read_text())
    record["dataset"]["selection_split"] = None
    path.write_text(json.dumps(record))
    runs, warnings = reading.load_runs([tmp_path])
    assert runs == [] and "--train-on all" in warnings[0]


@pytest.mark.parametrize("name", ["analyze_study", "analyze_reference", "bootstrap"])
def test_the_analysis_benchmarks_show_each_default_once_in_their_help(name, monkeypatch):
    import importlib.util

    from test_report import assert_each_default_shown_once
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
                     "NUMEXPR_NUM_THREADS"):
        monkeypatch.delenv(variable, raising=False)  # bootstrap.py sets them on import; restored after the test
    spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / "benchmarks" / f"{name}.py")
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    assert_each_default_shown_once(benchmark.build_parser())
