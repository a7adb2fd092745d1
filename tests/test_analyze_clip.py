"""The CLIP towers (models.py group "clip", trends.SEPARATE_GROUPS) are kept apart from the ImageNet models
everywhere, as the paper's Figure 8 draws them: in no top-1 or size fit, not in Appendix N, drawn as stars in
Figure 1 and the model-size figure, even on a dataset where they are the only models. The benchmark score scores
them like any model."""
from __future__ import annotations

import csv

import numpy as np
import pytest

import analyze
from analysis import figures, pipeline, trends
from nets import registry

from test_analyze import linear_grid, run_analysis, trend, write_run

CLIP = ("clip_vit_b16", "clip_vit_l14")
REASON = "CLIP: pretrained on image-text pairs, not ImageNet; Appendix N covers ImageNet models"


def write_clip(folder, dataset, value):
    for name in CLIP:  # far below the ImageNet models' trend: any fit they entered would move
        write_run(folder, dataset, name, value, params=registry.REGISTRY[name].params, lp_ft_phase="finetune")


@pytest.fixture(scope="module")
def with_clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip")
    values, top1 = linear_grid(folder, {"cassava": 0.8, "cct20": 0.5, "aptos": 0.3})
    for dataset in values:
        write_clip(folder, dataset, 0.15)
    return values, top1, run_analysis(folder)


def test_clip_is_left_out_of_appendix_n_with_its_reason(with_clip):
    _, top1, analysis = with_clip
    part = analysis.appendix_n
    assert part["note"] is None and part["models"] == sorted(top1)
    assert part["left_out"] == [{"model": name, "reason": REASON} for name in CLIP]
    # the benchmark score [§6] is for any representation: CLIP is scored, in its group
    board = analysis.benchmark["rows"]
    assert {row["model"] for row in board} == set(top1) | set(CLIP)
    assert {row["model"] for row in board if row["group"] == "clip"} == set(CLIP)
    assert any("clip_vit_b16, clip_vit_l14" in note and "Appendix N" in note for note in analysis.notes)


def test_clip_is_left_out_of_the_size_fits(with_clip):
    values, top1, analysis = with_clip
    for dataset in values:
        fit = next(f for f in analysis.size_trends if f["dataset"] == dataset and f["subset"] == "all")
        assert fit["models"].split(",") == sorted(top1, key=top1.get) and fit["n"] == len(top1)
        expected = trends.fit_trend(np.log10([1e6 * (1 + top1[m] - 50) for m in fit["models"].split(",")]),
                                    [values[dataset][m] * 100 for m in fit["models"].split(",")], n_boot=10)
        assert fit["slope"] == pytest.approx(expected["slope"], abs=1e-9)


def test_model_size_figure_draws_clip_apart_like_figure1(with_clip):
    _, top1, analysis = with_clip
    drawn, _ = pipeline.make_figures(analysis)
    for name in ("model-size", "figure1"):
        figure = drawn[name]()
        panels = [ax for ax in figure.axes if ax.has_data()]
        assert len(panels) == 3
        for ax in panels:
            stars = [c for c in ax.containers if c.get_label() == figures.SEPARATE_LABEL]
            (star,) = stars
            assert len(star.lines[0].get_xdata()) == len(CLIP) and star.lines[0].get_color() == figures.SEPARATE_COLOUR
            circles = [c for c in ax.containers if c.get_label() != figures.SEPARATE_LABEL]
            assert sum(len(c.lines[0].get_xdata()) for c in circles) == len(top1)
            assert len(ax.texts) == len(top1) + len(CLIP)  # every point numbered


def test_a_dataset_with_only_clip_models_gets_a_panel_without_a_fit(tmp_path):
    linear_grid(tmp_path, {"cassava": 0.8}, n_models=5)
    write_clip(tmp_path, "eurosat", 0.9)  # no ImageNet model ran eurosat: no fit there
    analysis = run_analysis(tmp_path, use_logit=True)
    assert {f["dataset"] for f in analysis.trends} == {"cassava"}
    drawn, _ = pipeline.make_figures(analysis)
    for name in ("figure1", "figure1-logit", "model-size"):
        figure = drawn[name]()
        panels = {ax.get_title(): ax for ax in figure.axes if ax.has_data()}
        assert list(panels) == ["cassava", "eurosat"], name
        eurosat = panels["eurosat"]
        assert "accuracy on val" in eurosat.get_ylabel()
        assert [c.get_label() for c in eurosat.containers] == [figures.SEPARATE_LABEL]
        assert not [line for line in eurosat.get_lines() if line.get_label().startswith(("all models", "ImageNet"))]


def star_positions(figure) -> list[list[float]]:
    return [sorted(c.lines[0].get_xdata()) for ax in figure.axes for c in ax.containers
            if c.get_label() == figures.SEPARATE_LABEL]


def test_figure8_draws_clip_at_its_linear_probe_top1_unless_told_zero_shot(tmp_path):
    """The paper's Figure 8: "a CLIP ViT L/14-336px model (85.4% ImageNet top-1)", the CLIP paper's linear-probe
    figure; --clip-x zero-shot draws the towers at the zero-shot one. Either way they stay out of the fits."""
    folder = tmp_path / "runs"
    linear_grid(folder, {"cassava": 0.8}, n_models=5)
    write_clip(folder, "cassava", 0.15)
    linear_probe = [registry.REGISTRY[name].imagenet_top1 for name in CLIP]
    zero_shot = [registry.REGISTRY[name].zero_shot_top1 for name in CLIP]
    assert linear_probe == [80.2, 83.9] and zero_shot == [68.6, 75.3]
    for clip_x, expected in (("linear-probe", linear_probe), ("zero-shot", zero_shot)):
        out = tmp_path / clip_x
        options = [] if clip_x == "linear-probe" else ["--clip-x", clip_x]  # linear-probe is the default
        assert analyze.main([str(folder), "--out", str(out), "--n-boot", "20", *options]) == 0
        with open(out / "tables" / "best.csv") as f:
            rows = {row["model"]: row for row in csv.DictReader(f)}
        assert [float(rows[name]["imagenet_top1"]) for name in CLIP] == expected
        assert {rows[name]["top1_source"] for name in CLIP} == {
            "models.py" if clip_x == "linear-probe" else "models.py (zero-shot)"}
        analysis = run_analysis(folder, clip_x=clip_x)
        assert star_positions(pipeline.make_figures(analysis)[0]["figure1"]()) == [expected]
        assert trend(analysis, "cassava")["n"] == 5
        assert any(f"at their {clip_x} ImageNet top-1" in note for note in analysis.notes)
