"""analyze.py: from a grid of run records to the paper's tables, fits, statistics and figures.

The records are built here following the run record schema (as train.py writes them), with prediction files whose
accuracy is exactly the metric the record holds, so that every number the analysis reports has a known answer.
"""
from __future__ import annotations

import csv
import json
import math
import zlib

import numpy as np
import pytest
from matplotlib.image import imread
from matplotlib.lines import Line2D
from scipy import stats

import analyze
import records

N_BOOT = 200
N_SAMPLES = 1000  # accuracy resolution 0.001
NUM_CLASSES = 4


def write_run(folder, dataset, model, value, top1=None, optimizer="sgd", schedule="cosine", lr=0.01, wd=1e-4,
              status="complete", params=None, seed=0, weights="imagenet", predictions=True):
    """A run record (schema 1) whose selection-split accuracy is `value`, rounded to 1/N_SAMPLES, with the
    prediction file behind it. Returns the accuracy the record holds."""
    run_id = f"{dataset}-{model}-{optimizer}-{schedule}-lr{lr:g}-wd{wd:g}-s{seed}-{weights}"
    correct = int(round(value * N_SAMPLES))
    rng = np.random.default_rng(zlib.crc32(run_id.encode()))
    labels = rng.integers(0, NUM_CLASSES, N_SAMPLES)
    predicted = labels.copy()
    predicted[correct:] = (labels[correct:] + 1) % NUM_CLASSES
    scores = np.full((N_SAMPLES, NUM_CLASSES), 0.1 / (NUM_CLASSES - 1))
    scores[np.arange(N_SAMPLES), predicted] = 0.9
    accuracy = correct / N_SAMPLES
    record = {
        "schema_version": records.SCHEMA_VERSION, "run_id": run_id, "status": status,
        "error": "RuntimeError: CUDA out of memory" if status == "failed" else None,
        "diverged_epoch": 3 if status == "diverged" else None,
        "config": {"dataset": dataset, "model": model, "weights": weights, "optimizer": optimizer,
                   "schedule": schedule, "lr": lr, "wd": wd, "augment": "paper", "seed": seed, "epochs": 30},
        "dataset": {"name": dataset, "task": "multiclass", "metric": "accuracy", "num_classes": NUM_CLASSES,
                    "selection_split": "val", "report_split": None},
        "model": {"name": model, "imagenet_top1": top1, "params": params, "weights_loaded": "imagenet:IMAGENET1K_V1" if weights == "imagenet" else weights},
        "history": [], "best": None, "predictions": {},
    }
    if status == "complete":
        record["best"] = {"epoch": 2, "metrics": {"val_accuracy": accuracy}}
        if predictions:
            record["predictions"] = {"val": f"{run_id}/predictions-val.npz"}
            records.atomic_save_npz(folder / run_id / "predictions-val.npz", ids=np.arange(N_SAMPLES).astype(str),
                                    labels=labels, scores=scores, thresholds=np.array([]),
                                    task=np.asarray("multiclass"))
    records.atomic_write_json(folder / f"{run_id}.json", record)
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
    return analyze.analyze([folder], **options)


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
    x = analyze.logit(list(top1.values()))
    y = analyze.logit(np.array([values["cct20"][m] for m in top1]) * 100)
    assert trend(analysis, "cct20", axes="logit")["slope"] == pytest.approx(np.polyfit(x, y, 1)[0], abs=1e-10)


def test_bootstrap_interval_over_models_is_seeded():
    x = np.linspace(50, 90, 10)
    y = 0.5 * x + np.random.default_rng(1).normal(0, 2, 10)
    first, again = analyze.fit_trend(x, y, n_boot=300, seed=3), analyze.fit_trend(x, y, n_boot=300, seed=3)
    other = analyze.fit_trend(x, y, n_boot=300, seed=4)
    assert first == again and first["slope_low"] != other["slope_low"]
    assert math.isnan(analyze.fit_trend(x[:2], y[:2])["slope"])  # too few models for a fit


def test_ols_and_nested_f_tests_agree_with_statsmodels():
    sm = pytest.importorskip("statsmodels.api")
    rng = np.random.default_rng(0)
    imagenet, average = rng.normal(size=19), rng.normal(size=19)
    y = 0.3 * imagenet + 0.8 * average + rng.normal(0, 0.5, 19)
    full = analyze.ols(y, np.column_stack([imagenet, average]))
    restricted = analyze.ols(y, imagenet)
    sm_full = sm.OLS(y, sm.add_constant(np.column_stack([imagenet, average]))).fit()
    sm_restricted = sm.OLS(y, sm.add_constant(imagenet)).fit()
    np.testing.assert_allclose(full.coef, sm_full.params, rtol=0, atol=1e-8)
    np.testing.assert_allclose(restricted.coef, sm_restricted.params, rtol=0, atol=1e-8)
    assert full.r2 == pytest.approx(sm_full.rsquared, abs=1e-8)
    ours = analyze.nested_f_test(restricted, full)
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
    part = run_analysis(tmp_path).appendix_n
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

    score = np.mean([zs[d] for d in real], axis=0)
    board = part["leaderboard"]
    assert [row["model"] for row in board] == [models_[i] for i in np.argsort(-score)]
    assert [row["rank"] for row in board] == list(range(1, len(models_) + 1))
    assert board[0]["score"] == pytest.approx(score.max(), abs=1e-12)


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
    assert analyze.main([str(tmp_path / "broken.json"), "--out", str(tmp_path / "out")]) == 1
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
    models = pytest.importorskip("models")
    name, entry = next((n, e) for n, e in models.REGISTRY.items() if e.imagenet_top1 is not None)
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
    analysis = run_analysis(folder, datasets=["cassava"], model_names=["toy00", "toy01", "toy02", "nobody"])
    assert {(b.dataset, b.model) for b in analysis.best} == {("cassava", m) for m in ("toy00", "toy01", "toy02")}
    assert any("nobody" in w for w in analysis.warnings)


def test_figure1_has_a_labelled_panel_per_dataset_with_both_fits(grid, tmp_path):
    _, _, top1, analysis = grid
    figures, _ = analyze.make_figures(analysis)
    figure = figures["figure1"]
    panels = [ax for ax in figure.axes if ax.has_data()]
    assert [ax.get_title() for ax in panels] == ["cct20", "aptos", "cassava", "eurosat"]
    for ax in panels:
        assert {t.get_text() for t in ax.texts} == set(top1)
        fit_labels = [line.get_label() for line in ax.get_lines() if isinstance(line, Line2D)]
        assert any(label.startswith("all models") for label in fit_labels)
        assert any(label.startswith("ImageNet top-1 > 70%") for label in fit_labels)
        assert ax.get_xlabel() == "ImageNet top-1 (%)" and "accuracy" in ax.get_ylabel()
    files = analyze.save_figure(figure, tmp_path / "figure1")
    image = imread(files[0])
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert files[1].read_bytes().startswith(b"%PDF")


def test_spline_and_model_size_figures(grid):
    _, _, top1, analysis = grid
    figures, notes = analyze.make_figures(analysis)
    assert "figure1-logit" in figures and notes == []  # --logit adds the logit-axes version
    spline = figures["spline-cassava"]
    (ax,) = spline.axes
    assert any(line.get_label() == "smoothing spline" for line in ax.get_lines())
    size = figures["model-size"]
    assert all(ax.get_xscale() == "log" for ax in size.axes) and len(size.axes) == 4
    few = [b for b in analysis.best if b.dataset == "cassava"][:3]
    figure, note = analyze.plot_spline(few, "cassava")
    assert figure is None and "spline skipped" in note


def test_smoothing_spline_follows_a_curved_trend_without_chasing_model_scatter():
    x = np.linspace(55, 85, 19)
    truth = 100 - 60 * np.exp(-(x - 55) / 10)  # saturating, like accuracy on an easy dataset
    y = truth + np.random.default_rng(0).normal(0, 3, len(x))
    spline = analyze.smoothing_spline(x, y, np.full(len(x), 0.5))  # sampling error far below model scatter
    grid_x = np.linspace(55, 85, 200)
    line = np.polyval(np.polyfit(x, y, 1), grid_x)
    truth_grid = 100 - 60 * np.exp(-(grid_x - 55) / 10)
    assert np.sqrt(np.mean((spline(grid_x) - truth_grid) ** 2)) < 0.6 * np.sqrt(np.mean((line - truth_grid) ** 2))
    assert np.abs(np.diff(spline(grid_x), 2)).max() < 0.1  # smooth: no wiggles between neighbouring models


def test_outputs_report_every_dataset_and_every_table(tmp_path):
    folder, out = tmp_path / "runs", tmp_path / "reports"
    _, top1 = linear_grid(folder, {"aptos": 0.3, "cassava": 0.8, "eurosat": 0.02}, n_models=6)
    assert analyze.main([str(folder), "--out", str(out), "--n-boot", "50"]) == 0
    report = (out / "report.md").read_text()
    for dataset in ("aptos", "cassava", "eurosat"):
        assert f"### {dataset}" in report and f"figures/spline-{dataset}.png" in report
        assert f"- **{dataset}** (accuracy on val): all: slope" in report  # the summary answers per dataset
    assert "(no meaningful progress)" in report.split("- **eurosat**")[1].splitlines()[0]
    assert "figures/figure1.png" in report and "figures/model-size.png" in report
    for name in ("figure1", "model-size", "spline-aptos"):
        assert imread(out / "figures" / f"{name}.png").size > 0
        assert (out / "figures" / f"{name}.pdf").read_bytes().startswith(b"%PDF")
    with open(out / "tables" / "best.csv") as f:
        assert len(list(csv.DictReader(f))) == 3 * len(top1)
    with open(out / "tables" / "trends.csv") as f:
        assert {(r["dataset"], r["subset"]) for r in csv.DictReader(f)} == {
            (d, s) for d in ("aptos", "cassava", "eurosat") for s in ("all", "top1>70")}
    summary = json.loads((out / "analysis.json").read_text())
    assert summary["settings"]["n_boot"] == 50
    assert len(summary["tables"]["leaderboard"]) == len(top1)
    assert {row["dataset"] for row in summary["tables"]["appendix_n_f_tests"]} == {"aptos", "cassava", "eurosat"}


def test_demo_sized_input_still_gives_a_report_and_figure(tmp_path):
    folder = tmp_path / "runs"
    write_run(folder, "digits", "resnet18", 0.61, top1=69.8, weights="random")
    write_run(folder, "digits", "mobilenet_v3_small", 0.55, top1=67.7, weights="random")
    out = tmp_path / "reports"
    assert analyze.main([str(folder), "--out", str(out), "--n-boot", "20"]) == 0
    report = (out / "report.md").read_text()
    assert "### digits" in report and "Appendix N skipped" in report
    assert imread(out / "figures" / "figure1.png").size > 0
