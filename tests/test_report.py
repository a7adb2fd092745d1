"""figures.py and report.py: Figure 1 as the paper draws it with readable labels, the model-size and spline
figures, the report and tables analyze.py writes (well-formed whatever an error message holds), and --help."""
from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from matplotlib.image import imread
from matplotlib.lines import Line2D

import analyze
from analysis import figures, pipeline, report
from nets import registry

from test_analyze import N_BOOT, linear_grid, run_analysis, write_run


def assert_each_default_shown_once(parser) -> None:
    """Every option's default appears once in --help ("(default: ...)"); a default of None (said in words) and a
    switch's (off) never."""
    text = parser.format_help()
    options = " ".join(text[text.index("options:"):].split())  # undo the line wrapping
    shown = [action for action in parser._actions if action.option_strings
             and action.default is not None and action.default is not False and action.help is not None
             and action.dest != "help"]
    assert "default: None" not in text
    assert options.count("(default: ") == len(shown), options
    for action in shown:  # each shown once, in the flag's own help
        assert (action.help or "").count("(default") == 0, action.option_strings


@pytest.fixture(scope="module")
def testbed(tmp_path_factory):
    """The paper's 19 testbed models (their real ImageNet top-1, clustered as in life) on three datasets."""
    folder = tmp_path_factory.mktemp("testbed")
    rng = np.random.default_rng(4)
    testbed = {name: e.imagenet_top1 for name, e in registry.REGISTRY.items() if e.group == "testbed"}
    for dataset, slope in (("cct20", 0.6), ("aptos", 0.1), ("cassava", 0.3)):
        for name, top1 in testbed.items():
            write_run(folder, dataset, name, 0.2 + slope * top1 / 100 + rng.normal(0, 0.01), top1=top1)
    return testbed, run_analysis(folder)


def text_boxes(figure, ax):
    renderer = figure.canvas.get_renderer()
    return [(t.get_text(), t.get_window_extent(renderer)) for t in ax.texts]


def test_figure1_draws_the_paper_colours_and_numbers_every_model_without_overlaps(testbed, tmp_path):
    names, analysis = testbed
    drawn, _ = pipeline.make_figures(analysis)
    figure = drawn["figure1"]()
    panels = [ax for ax in figure.axes if ax.has_data()]
    assert [ax.get_title() for ax in panels] == ["cct20", "aptos", "cassava"]
    numbers = figures.model_numbers(analysis.best)
    assert list(numbers) == sorted(names, key=names.get)  # numbered by ImageNet top-1
    (key,) = figure.legends
    assert [t.get_text().split()[:2] for t in key.get_texts()] == [[str(n), m] for m, n in numbers.items()]
    for ax in panels:
        boxes = text_boxes(figure, ax)
        assert sorted(int(text) for text, _ in boxes) == list(range(1, 20))
        for i, (_, a) in enumerate(boxes):
            for _, b in boxes[i + 1:]:
                assert figures._overlap(a, b) == 0.0  # no number covers another
        lines = {line.get_label(): line.get_color() for line in ax.get_lines() if isinstance(line, Line2D)}
        assert [c for label, c in lines.items() if label.startswith("all models")] == ["tab:green"]
        assert [c for label, c in lines.items() if label.startswith("ImageNet top-1 > 70%")] == ["tab:blue"]
        assert ax.get_xlabel() == "ImageNet top-1 (%)" and "accuracy" in ax.get_ylabel()
    files = figures.save_figure(figure, tmp_path / "figure1")
    image = imread(files[0])
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert files[1].read_bytes().startswith(b"%PDF")
    for ax in panels:  # saving keeps the placement
        boxes = text_boxes(figure, ax)
        assert all(figures._overlap(a, b) == 0.0 for i, (_, a) in enumerate(boxes) for _, b in boxes[i + 1:])


def test_model_size_figure_has_both_trend_lines_with_their_slopes(testbed):
    _, analysis = testbed
    drawn, notes = pipeline.make_figures(analysis)
    size = drawn["model-size"]()
    panels = [ax for ax in size.axes if ax.has_data()]
    assert all(ax.get_xscale() == "log" for ax in panels) and len(panels) == 3
    for ax, dataset in zip(panels, ("cct20", "aptos", "cassava")):
        fits = {f["subset"]: f for f in analysis.size_trends if f["dataset"] == dataset}
        labels = {line.get_label(): line.get_color() for line in ax.get_lines()}
        assert labels[f"all models: {fits['all']['slope']:+.2f} per 10x parameters"] == "tab:green"
        assert labels[f"ImageNet top-1 > 70%: {fits['top1>70']['slope']:+.2f} per 10x parameters"] == "tab:blue"
    spline = drawn["spline-cassava"]()
    (ax,) = [ax for ax in spline.axes if ax.has_data()]
    assert any(line.get_label() == "smoothing spline" for line in ax.get_lines())
    for figure in (size, spline):  # the key of model numbers fits on the figure
        (key,) = figure.legends
        box = key.get_window_extent(figure.canvas.get_renderer())
        assert box.x0 >= 0 and box.x1 <= figure.bbox.x1 and box.y0 >= 0
    assert notes == []


def test_too_few_models_for_a_spline_is_a_note(tmp_path):
    for i, t in enumerate((60.0, 70.0, 80.0)):
        write_run(tmp_path, "cassava", f"toy{i}", 0.5 + i / 10, top1=t)
    drawn, notes = pipeline.make_figures(run_analysis(tmp_path))
    assert "spline-cassava" not in drawn and any("spline skipped" in note for note in notes)


def test_outputs_report_every_dataset_and_every_table(tmp_path):
    folder, out = tmp_path / "runs", tmp_path / "reports"
    _, top1 = linear_grid(folder, {"aptos": 0.3, "cassava": 0.8, "eurosat": 0.02}, n_models=6)
    assert analyze.main([str(folder), "--out", str(out), "--n-boot", "50", "--logit"]) == 0
    report_text = (out / "report.md").read_text()
    for dataset in ("aptos", "cassava", "eurosat"):
        assert f"### {dataset}" in report_text and f"figures/spline-{dataset}.png" in report_text
        assert f"- **{dataset}** (accuracy on val): all: slope" in report_text  # the summary answers per dataset
    assert "(no meaningful progress)" in report_text.split("- **eurosat**")[1].splitlines()[0]
    assert "figures/figure1.png" in report_text and "figures/model-size.png" in report_text
    assert "figures/figure1-logit.png" in report_text and "Appendix N.2, the paper's reading" in report_text
    for name in ("figure1", "model-size", "spline-aptos"):
        assert imread(out / "figures" / f"{name}.png").size > 0
        assert (out / "figures" / f"{name}.pdf").read_bytes().startswith(b"%PDF")
    with open(out / "tables" / "best.csv") as f:
        assert len(list(csv.DictReader(f))) == 3 * len(top1)
    with open(out / "tables" / "trends.csv") as f:
        assert {(r["dataset"], r["subset"], r["axes"]) for r in csv.DictReader(f)} == {
            (d, s, a) for d in ("aptos", "cassava", "eurosat") for s in ("all", "top1>70") for a in ("linear", "logit")}
    with open(out / "tables" / "leaderboard.csv") as f:
        header = next(csv.reader(f))
    assert header[:6] == ["rank", "model", "new", "score", "score_low", "score_high"]
    summary = json.loads((out / "analysis.json").read_text())
    assert summary["settings"]["n_boot"] == 50
    assert len(summary["tables"]["leaderboard"]) == len(top1)
    assert all(row["score_low"] < row["score"] < row["score_high"] for row in summary["tables"]["leaderboard"])
    assert {row["dataset"] for row in summary["tables"]["appendix_n_f_tests"]} == {"aptos", "cassava", "eurosat"}
    assert len(summary["tables"]["size_trends"]) == 6


def test_demo_sized_input_still_gives_a_report_and_figure(tmp_path):
    folder = tmp_path / "runs"
    write_run(folder, "digits", "resnet18", 0.61, top1=69.8, weights="random")
    write_run(folder, "digits", "mobilenet_v3_small", 0.55, top1=67.7, weights="random")
    out = tmp_path / "reports"
    assert analyze.main([str(folder), "--out", str(out), "--n-boot", "20"]) == 0
    report_text = (out / "report.md").read_text()
    assert "### digits" in report_text and "Appendix N skipped" in report_text
    assert imread(out / "figures" / "figure1.png").size > 0


NASTY_ERRORS = ["ValueError: a | b || c", "RuntimeError: line one\nline two\r\nline three",
                "OSError: " + "x" * 5000, "KeyError: 'a\\|b' | trailing backslash \\"]


def test_failed_runs_table_stays_well_formed_whatever_the_error_text(tmp_path):
    folder, out = tmp_path / "runs", tmp_path / "reports"
    for i, t in enumerate((60.0, 70.0, 80.0)):
        write_run(folder, "cassava", f"toy{i}", 0.6, top1=t)
    for i, error in enumerate(NASTY_ERRORS):
        write_run(folder, "cassava", "toy0", 0.5, top1=60.0, lr=0.1 * (i + 1), status="failed", error=error)
    analyze.main([str(folder), "--out", str(out), "--n-boot", str(N_BOOT)])
    section = (out / "report.md").read_text().split("## Failed runs\n\n")[1].split("\n\n")[0].splitlines()
    assert len(section) == 2 + len(NASTY_ERRORS)  # header, rule, one line per failed run
    columns = section[0].count("|")
    assert all(line.count("|") == columns for line in section) and set(section[1]) == {"|", "-"}
    assert all(line.startswith("| ") and line.endswith(" |") for line in section[:1] + section[2:])
    assert all(len(line) < 600 for line in section)
    with open(out / "tables" / "failed.csv", newline="") as f:
        assert sorted(row["error"] for row in csv.DictReader(f)) == sorted(NASTY_ERRORS)  # the CSV keeps them whole


def test_markdown_cells_escape_pipes_and_join_lines():
    table = report.markdown_table([{"a": "x | y\nz", "b": 0.123456}], ["a", "b"])
    assert table.splitlines()[2] == "| x &#124; y z | 0.1235 |"
    assert list(csv.reader(io.StringIO(report.csv_text([{"a": "p|q\nr"}], ["a"]))))[1] == ["p|q\nr"]


def test_analyze_help_shows_each_default_once():
    assert_each_default_shown_once(analyze.build_parser())


def test_random_init_models_are_drawn_hollow_with_a_legend_entry_and_marked_in_the_tables(tmp_path):
    folder, out = tmp_path / "runs", tmp_path / "reports"
    for i, top1 in enumerate((62.0, 71.0, 79.0)):
        write_run(folder, "cassava", f"toy{i}", 0.6 + i / 20, top1=top1, params=1e6 * (i + 1))
    write_run(folder, "cassava", "resnet18", 0.5, top1=69.758, weights="random")
    assert analyze.main([str(folder), "--out", str(out), "--n-boot", "20"]) == 0
    analysis = run_analysis(folder)
    drawn, _ = pipeline.make_figures(analysis)
    for name in ("figure1", "model-size", "spline-cassava"):
        (ax,) = [ax for ax in drawn[name]().axes if ax.has_data()]
        (hollow,) = [c for c in ax.containers if c.get_label() == figures.RANDOM_LABEL]
        marker = hollow.lines[0]
        assert list(marker.get_xdata()) == [69.758 if name != "model-size" else registry.REGISTRY["resnet18"].params]
        assert marker.get_markerfacecolor() == "white" and marker.get_markeredgecolor() == figures.POINT_COLOUR
        assert figures.RANDOM_LABEL in ax.get_legend_handles_labels()[1]
        filled = [c for c in ax.containers if c.get_label() != figures.RANDOM_LABEL]
        assert all(c.lines[0].get_markerfacecolor() != "white" for c in filled)
    with open(out / "tables" / "best.csv") as f:
        assert {row["model"]: row["random_init"] for row in csv.DictReader(f)} == {
            "toy0": "False", "toy1": "False", "toy2": "False", "resnet18": "True"}
    with open(out / "tables" / "trends.csv") as f:
        assert {row["random_init"] for row in csv.DictReader(f)} == {"resnet18", ""}
    assert "| resnet18 (random init) | 69.76 |" in (out / "report.md").read_text()


def test_empty_tables_say_why_and_appendix_n_skipped_lists_no_models(tmp_path):
    folder, out = tmp_path / "runs", tmp_path / "reports"
    for i, top1 in enumerate((62.0, 71.0, 79.0)):
        write_run(folder, "eurosat", f"toy{i}", 0.6 + i / 20, top1=top1)
    assert analyze.main([str(folder), "--out", str(out), "--n-boot", "20"]) == 0
    text = (out / "report.md").read_text()
    assert "## Failed runs\n\n_none: no run failed_" in text
    assert "## Diverged configurations\n\n_none: no run diverged_" in text
    assert "Models: none" not in text and "Appendix N skipped: needs at least 3 datasets, has 1 (eurosat)." in text
    empty = json.loads((out / "analysis.json").read_text())["empty_tables"]
    assert empty["failed"] == "no run failed" and empty["comparison"] == "no --compare setting was given"
    assert empty["appendix_n_f_tests"] == "Appendix N skipped: needs at least 3 datasets, has 1 (eurosat)"
    assert "best" not in empty and "trends" not in empty
    for name in empty:  # an empty table's CSV is its header alone: programs read zero rows
        with open(out / "tables" / f"{name}.csv") as f:
            assert len(f.read().splitlines()) == 1, name


@pytest.mark.parametrize("counts", [(2_542_856, 11_689_512), (11_200_000, 11_689_512), (1_235_496, 138_365_992)])
def test_the_model_size_axis_has_readable_ticks_on_any_range(counts):
    figure, (ax,) = figures.new_figure(1)
    ax.plot(counts, [0.5, 0.6], "o")
    ax.set_xscale("log")
    figures.size_ticks(ax, counts)
    figure.draw_without_rendering()
    low, high = ax.get_xlim()
    shown = [(tick.get_text(), tick.get_window_extent()) for tick, value in
             zip(ax.get_xticklabels(), ax.get_xticks()) if low <= value <= high]
    assert len(shown) >= 3 and all(text for text, _ in shown) and len({text for text, _ in shown}) == len(shown)
    assert all(figures._overlap(a, b) == 0.0 for i, (_, a) in enumerate(shown) for _, b in shown[i + 1:])
    assert low < min(counts) and max(counts) < high
