"""What analyze.py and fid.py write for people and programs: Markdown and CSV tables, the analysis report, --help.

    report.write_outputs(analysis, figures, "reports")   # report.md, tables/*.csv, analysis.json, figures/*.png|pdf

A table is a list of rows (dicts) and its columns. Every cell of a Markdown table is one line with its pipes
escaped and long text shortened, so that any text (an error message with newlines and pipes, a 5,000-character
traceback) leaves the table well-formed; the CSV and JSON files keep the text whole.
"""
from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Callable, Sequence

from matplotlib.figure import Figure

from analysis.appendix_n import SIGNIFICANCE
from analysis.figures import save_figure
from analysis.pipeline import Analysis
from analysis.reading import dataset_order
from analysis.selection import Best, describe_config
from common import fileio
from training.recipe import TUNED

MAX_CELL = 200  # characters of text shown in a Markdown cell; the CSV has all of it
TREND_COLUMNS = ["dataset", "metric", "split", "axes", "subset", "n", "slope", "slope_low", "slope_high",
                 "intercept", "r", "r_low", "r_high", "r_p", "no_progress"]
LEADERBOARD_COLUMNS = ["rank", "model", "new", "score", "score_low", "score_high", "n_boot_used", "p_above_next",
                       "rank_low", "rank_high", "imagenet_top1", "imagenet_rank", "top1_source", "group",
                       "random_init", "origin", "standardised_logit_score"]  # then one column per dataset
SIZE_COLUMNS = ["dataset", "metric", "split", "x", "subset", "n", "slope", "slope_low", "slope_high", "intercept",
                "r", "r_low", "r_high", "r_p"]


def cell_text(value: Any, limit: int = MAX_CELL) -> str:
    """Text for one Markdown line: line breaks become spaces, and text over `limit` characters is shortened."""
    text = re.sub(r"\s*[\r\n]+\s*", " ", str(value)).strip()
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return cell_text(value).replace("|", "&#124;")  # an entity, not a backslash: no parser splits a cell on it


def markdown_table(rows: list[dict[str, Any]], columns: Sequence[str], why_empty: str | None = None) -> str:
    """A Markdown table; without rows, the reason it is empty (`why_empty`) in its place."""
    if not rows:
        return f"_none: {cell_text(why_empty)}_\n" if why_empty else "_none_\n"
    lines = ["| " + " | ".join(_cell(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def csv_text(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: "" if row.get(c) is None else row.get(c) for c in columns})
    return buffer.getvalue()


def tables(analysis: Analysis) -> dict[str, tuple[list[dict[str, Any]], list[str]]]:
    """Every table of the analysis: name -> (rows, columns)."""
    coverage, part_n = analysis.coverage, analysis.appendix_n
    grid_columns = ["dataset", "model", *TUNED]
    return {
        "best": ([asdict(b) for b in analysis.best], [f.name for f in fields(Best)]),
        "diverged": (coverage["diverged"], grid_columns + ["diverged_epoch", "run_id", "record"]),
        "failed": (coverage["failed"], grid_columns + ["error", "run_id", "record"]),
        "missing": (coverage["missing"], grid_columns),
        "trends": (analysis.trends, TREND_COLUMNS + ["metric_scale", "models", "random_init", "new"]),
        "size_trends": (analysis.size_trends, SIZE_COLUMNS + ["metric_scale", "models"]),
        "appendix_n_ols": (part_n["ols"], ["dataset", "model", "intercept", "imagenet_coef", "average_coef", "r2",
                                           "rss", "df_resid"]),
        "appendix_n_f_tests": (part_n["f_tests"], ["dataset", "test", "F", "p", "df_num", "df_den"]),
        "appendix_n_spearman": (part_n["spearman"], ["dataset", "rho_imagenet", "p_imagenet", "rho_average",
                                                     "p_average", "difference", "difference_low",
                                                     "difference_high", "p_difference", "n_boot_used",
                                                     "higher_and_significant", "difference_significant"]),
        "leaderboard": (analysis.benchmark["rows"], LEADERBOARD_COLUMNS + analysis.benchmark["datasets"]),
        "skipped": ([{"warning": w} for w in analysis.warnings], ["warning"]),
        "comparison": (analysis.comparison["rows"] if analysis.comparison else [],
                       ["dataset", "model", "value", "metric", "split", "result", "configurations", "run_id"]),
    }


def empty_reasons(analysis: Analysis) -> dict[str, str]:
    """Why each empty table is empty, by table name. report.md says it in the table's place and analysis.json
    under `empty_tables`; an empty table's CSV is its header alone, so that programs read zero rows."""
    part_n = analysis.appendix_n
    skipped = f"Appendix N {part_n['note']}" if part_n["note"] else "Appendix N has no models"
    reasons = {
        "best": "no complete run",
        "diverged": "no run diverged",
        "failed": "no run failed",
        "missing": f"every model has a record for every configuration of the grid (--grid {analysis.settings['grid']})",
        "trends": "no model outside the groups drawn apart has a known ImageNet top-1, which the fits need",
        "size_trends": "no model outside the groups drawn apart has a known parameter count",
        "appendix_n_ols": skipped, "appendix_n_f_tests": skipped, "appendix_n_spearman": skipped,
        "leaderboard": analysis.benchmark["note"] or "no model to score",
        "skipped": "every input file was used",
        "comparison": "no --compare setting was given",
    }
    return {name: reasons[name] for name, (rows, _) in tables(analysis).items() if not rows}


def comparison_tables(comparison: dict[str, Any]) -> list[str]:
    """Appendix G's layout: per dataset, one row per model and one column per value of the compared setting."""
    key, lines = comparison["key"], []
    for dataset in sorted({row["dataset"] for row in comparison["rows"]}, key=dataset_order):
        rows = [row for row in comparison["rows"] if row["dataset"] == dataset]
        values = sorted({str(row["value"]) for row in rows})
        table = []
        for model in dict.fromkeys(row["model"] for row in rows):
            cells = {str(row["value"]): row["result"] for row in rows if row["model"] == model}
            table.append({"model": model, **{f"{key}={value}": cells.get(value) for value in values}})
        lines += [f"### {dataset} ({rows[0]['metric']} on {rows[0]['split']})", "",
                  markdown_table(table, ["model", *[f"{key}={value}" for value in values]])]
    return lines


def _with_interval(value: float | None, low: float, high: float, digits: int = 4) -> str:
    if value is None:
        return ""
    if math.isnan(low) or math.isnan(high):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def best_table(rows: list[Best]) -> str:
    """One dataset's chosen configurations: the analysed metric on the selection, reported and extra splits."""
    lines = []
    for b in rows:
        line = {"model": b.model + (" (random init)" if b.random_init else ""), "ImageNet top-1": b.imagenet_top1,
                "configuration": describe_config({k: getattr(b, k) for k in TUNED})}
        if b.report_split == b.selection_split:
            line[f"{b.report_split} {b.metric} (chosen on, reported)"] = _with_interval(
                b.report_value, b.report_low, b.report_high)
        else:
            line[f"{b.selection_split} {b.metric}"] = _with_interval(b.selection_value, b.selection_low,
                                                                     b.selection_high)
            line[f"{b.report_split} {b.metric} (reported)"] = _with_interval(b.report_value, b.report_low,
                                                                             b.report_high)
        if b.extra_split:
            line[f"{b.extra_split} {b.metric}"] = _with_interval(b.extra_value, b.extra_low, b.extra_high)
        line["configs"] = b.configurations
        lines.append(line)
    columns = list(dict.fromkeys(key for line in lines for key in line))
    return markdown_table(lines, columns)


def summary_lines(analysis: Analysis) -> list[str]:
    """The answer in a few sentences: each dataset's linear trend, and what Appendix N found."""
    lines = []
    fits = [f for f in analysis.trends if f["axes"] == "linear"]
    for dataset in sorted({f["dataset"] for f in fits}, key=dataset_order):
        parts = []
        for fit in (f for f in fits if f["dataset"] == dataset):
            if math.isnan(fit["slope"]):
                parts.append(f"{fit['subset']}: too few models ({fit['n']})")
                continue
            parts.append(f"{fit['subset']}: slope {fit['slope']:.3g} [{fit['slope_low']:.3g}, "
                         f"{fit['slope_high']:.3g}], r {fit['r']:.2f}, {fit['n']} models"
                         + (" (no meaningful progress)" if fit["no_progress"] else ""))
        first = next(f for f in fits if f["dataset"] == dataset)
        lines.append(f"- **{dataset}** ({first['metric']} on {first['split']}): " + "; ".join(parts))
    part_n = analysis.appendix_n
    total = len(part_n["datasets"])
    if part_n["f_tests"]:
        for question, finding in (("average adds to ImageNet", "the average of the other datasets adds to ImageNet"),
                                  ("ImageNet adds to average", "ImageNet adds to the average of the other datasets")):
            hits = [t["dataset"] for t in part_n["f_tests"] if t["test"] == question and t["p"] < SIGNIFICANCE]
            lines.append(f"- Appendix N: {finding} (F-test p < {SIGNIFICANCE:g}) on {len(hits)} of {total} datasets"
                         + (f" ({', '.join(hits)})" if hits else ""))
    if part_n["spearman"]:
        lines += n2_summary(part_n["spearman"], total)
    return lines or ["- no dataset has enough models with a known ImageNet top-1 for a fit"]


def n2_summary(rows: list[dict[str, Any]], total: int) -> list[str]:
    """Appendix N.2 both ways: the paper's reading first, the stricter difference test beside it, and the datasets
    on which they disagree, with both p-values."""
    def listed(names: list[str]) -> str:
        return f"{len(names)} of {total} datasets" + (f" ({', '.join(names)})" if names else "")

    paper = [r["dataset"] for r in rows if r["higher_and_significant"]]
    strict = [r["dataset"] for r in rows if r["difference_significant"]]
    lines = [f"- Appendix N.2, the paper's reading: the Spearman correlation with the other datasets' average is "
             f"higher than with ImageNet and significant (its own p < {SIGNIFICANCE:g}) on {listed(paper)}",
             f"- Appendix N.2, the stricter test: the difference of the two correlations is significant (paired "
             f"bootstrap over models, one-sided p < {SIGNIFICANCE:g}) on {listed(strict)}"]
    for r in rows:
        if r["higher_and_significant"] != r["difference_significant"]:
            lines.append(f"  - {r['dataset']}: rho(average) {r['rho_average']:.2f} (p {r['p_average']:.2g}) vs "
                         f"rho(ImageNet) {r['rho_imagenet']:.2f} (p {r['p_imagenet']:.2g}); difference "
                         f"{r['difference']:+.2f}, p {r['p_difference']:.2g}: "
                         + ("higher and significant, but not significantly higher than with ImageNet"
                            if r["higher_and_significant"] else
                            "significantly higher than with ImageNet, but the correlation with the average is not "
                            "itself significant"))
    return lines


def leaderboard_section(analysis: Analysis) -> list[str]:
    """The benchmark score [§6] per model with its interval, how often it ranks above the next model and its rank
    range across resamples; new models (analysed against a results file) in bold."""
    board, level = analysis.benchmark, analysis.settings["level"]
    lines = ["## Benchmark score (§6)", "",
             f"The paper's proposal, \"the average accuracy across our tasks\": each model's plain average of its "
             f"reported metric (0-100) over {', '.join(board['datasets']) or 'no dataset'}. Brackets: "
             f"{level:.0%} interval from {analysis.settings['n_boot']} resamples of every dataset's test samples "
             f"(each dataset resampled independently, the same resamples for every model; on each resample the "
             f"model's score is the average of its metric over the datasets). `P(above next)`: the share of those "
             f"resamples on which the model scores above the next one down; `rank range`: the central {level:.0%} "
             f"of its rank across them. Only sampling error of the test sets is measured, not the training run's "
             f"own randomness. The CSV and JSON add each model's average standardised logit score (Appendix N's "
             f"scale).", ""]
    if analysis.halved_runs:
        lines += ["Configurations were chosen by successive halving (grid.py run --halving): each score is that "
                  "of the configuration it kept.", ""]
    table = [{"rank": row["rank"],
              "model": (f"**{row['model']}** (new)" if row["new"] else row["model"])
              + (" (random init)" if row["random_init"] else ""),
              "score": _with_interval(row["score"], row["score_low"], row["score_high"], digits=2),
              "P(above next)": row["p_above_next"],
              "rank range": "" if math.isnan(row["rank_low"]) else f"{row['rank_low']:g}-{row['rank_high']:g}",
              "ImageNet top-1": row["imagenet_top1"], **{d: row[d] for d in board["datasets"]}}
             for row in board["rows"]]
    columns = ["rank", "model", "score", "P(above next)", "rank range", "ImageNet top-1", *board["datasets"]]
    lines += [markdown_table(table, columns, board["note"])]
    if board["left_out"]:
        lines += ["Not scored: " + "; ".join(f"{x['model']} ({x['reason']})" for x in board["left_out"]), ""]
    return lines


def benchmark_summary(analysis: Analysis) -> list[str]:
    """The summary's line on the benchmark score: the top model and every new one, with intervals."""
    rows = analysis.benchmark["rows"]
    if not rows:
        return []
    shown = [rows[0]] + [row for row in rows[1:] if row["new"]]
    return [f"- Benchmark score [§6] over {len(analysis.benchmark['datasets'])} dataset(s), {len(rows)} models: "
            + "; ".join(f"{row['model']}{' (new)' if row['new'] else ''} rank {row['rank']}, "
                        f"{_with_interval(row['score'], row['score_low'], row['score_high'], digits=2)}"
                        for row in shown)]


def markdown_report(analysis: Analysis, figure_files: dict[str, list[Path]], out: Path) -> str:
    """The report a person reads: summary, what was left out, every table, and links to the figures."""
    settings = analysis.settings
    lines = ["# Does ImageNet accuracy predict accuracy on real-world tasks?", "",
             f"{len(analysis.inputs)} input file(s); {len(analysis.best)} (dataset, model) results. "
             f"Settings: threshold {settings['threshold']:g}% ImageNet top-1, slope threshold "
             f"{settings['slope_threshold']:g}, {settings['level']:.0%} intervals from {settings['n_boot']} bootstrap "
             f"resamples (seed {settings['seed']}), grid = {settings['grid']}"
             + (f", metric {settings['metric']}" if settings["metric"] else "") + ".", ""]
    lines += ["## Summary", ""] + summary_lines(analysis) + benchmark_summary(analysis) + [""]
    if analysis.warnings:
        lines += ["## Files and results left out", ""] + [f"- {cell_text(w, 1000)}" for w in analysis.warnings] + [""]
    if analysis.notes:
        lines += ["## Notes", ""] + [f"- {cell_text(n, 1000)}" for n in analysis.notes] + [""]
    if analysis.unknown_top1:
        lines += [f"Models with unknown ImageNet top-1, left out of the fits: {', '.join(analysis.unknown_top1)}", ""]

    lines += ["## Best configuration per model", "",
              "Chosen on the selection split by the dataset's metric; the reported split gives the number used in "
              "the fits (the paper's: HPA is reported on val, where its thresholds are chosen, with test_val "
              f"beside it). Brackets: {settings['level']:.0%} interval over the split's samples (Clopper-Pearson "
              "for accuracy, bootstrap otherwise; `interval_method` in tables/best.csv).", ""]
    for dataset in sorted({b.dataset for b in analysis.best}, key=dataset_order):
        rows = [b for b in analysis.best if b.dataset == dataset]
        chosen_by = "" if rows[0].chosen_by == rows[0].metric else \
            f"Configurations chosen by {rows[0].chosen_by} on {rows[0].selection_split}; shown: {rows[0].metric}.\n\n"
        lines += [f"### {dataset}", "", chosen_by + best_table(rows)]

    all_tables, why = tables(analysis), empty_reasons(analysis)
    for title, name in (("Diverged configurations", "diverged"), ("Failed runs", "failed"),
                        ("Configurations missing from the grid", "missing")):
        table_rows, columns = all_tables[name]
        lines += [f"## {title}", "", markdown_table(table_rows, [c for c in columns if c != "record"], why.get(name))]

    lines += ["## Trend fits (Figure 1, Table 2)", "",
              "Metric (x100 when stored as a fraction) regressed on ImageNet top-1 (%); slope on 0-100 axes, "
              f"bootstrap interval over models. `no_progress`: slope below {settings['slope_threshold']:g}.", "",
              markdown_table(analysis.trends, TREND_COLUMNS + (["new"] if settings["references"] else []),
                             why.get("trends")),
              "## Model size (Appendix L)", "",
              "Metric (0-100) regressed on log10(parameter count): the slope is the change per tenfold parameters.",
              "", markdown_table(analysis.size_trends, SIZE_COLUMNS, why.get("size_trends"))]
    for name, files in figure_files.items():
        png = next(p for p in files if p.suffix == ".png")
        lines += [f"![{name}]({png.relative_to(out).as_posix()})", ""]

    lines += leaderboard_section(analysis)
    if analysis.comparison:
        lines += [f"## Comparison by {analysis.comparison['key']} (Appendix G)", "",
                  f"Each cell: the best configuration among the runs with that {analysis.comparison['key']}, "
                  f"chosen on the selection split; its reported-split metric.", ""]
        lines += comparison_tables(analysis.comparison)
    part_n = analysis.appendix_n
    lines += ["## Appendix N: does the average over real-world datasets predict better than ImageNet?", "",
              "Each dataset's metric and ImageNet top-1 are logit-transformed and standardised across models. Per "
              "dataset, OLS of its score on ImageNet, on the average of the other datasets, and on both; the F-tests "
              "ask whether the second predictor adds to the first (small p: it does). N.2: Spearman correlations "
              "of each dataset with ImageNet and with the other datasets' average, and a paired bootstrap over "
              "models of their difference (models resampled with replacement, the average re-standardised on each "
              "resample; `p_difference` is the one-sided share of resamples where the average does not correlate "
              "better). Two readings of N.2: `higher_and_significant` is the paper's sentence (the correlation with "
              f"the average is higher than with ImageNet and significant, `p_average` < {SIGNIFICANCE:g}); "
              f"`difference_significant` asks more, that the difference itself is significant (`p_difference` < "
              f"{SIGNIFICANCE:g}).", ""]
    if part_n["note"]:
        lines += [f"Appendix N {part_n['note']}.", ""]
    else:
        lines += [f"Datasets: {', '.join(part_n['datasets'])}. Models: {', '.join(part_n['models'])}.", ""]
    if part_n["left_out"]:
        lines += ["Left out: " + "; ".join(f"{x['model']} ({x['reason']})" for x in part_n["left_out"]), ""]
    for title, name in (("Nested F-tests", "appendix_n_f_tests"), ("OLS fits", "appendix_n_ols"),
                        ("N.2: Spearman rank correlations and their difference", "appendix_n_spearman")):
        if all_tables[name][0]:
            lines += [f"### {title}", "", markdown_table(*all_tables[name])]
    return "\n".join(lines)


def write_outputs(analysis: Analysis, figures: dict[str, Callable[[], Figure]], out: str | Path) -> dict[str, Any]:
    """Write report.md, tables/<name>.csv, analysis.json and figures/<name>.png|pdf under `out`; return the paths.
    `figures` maps each figure's name to a function drawing it: they are drawn and saved one at a time."""
    out = Path(out)
    figure_files = {name: save_figure(draw(), out / "figures" / name) for name, draw in figures.items()}
    all_tables = tables(analysis)
    for name, (rows, columns) in all_tables.items():
        fileio.atomic_write_text(out / "tables" / f"{name}.csv", csv_text(rows, columns))
    summary = {"settings": analysis.settings, "inputs": analysis.inputs, "warnings": analysis.warnings,
               "notes": analysis.notes, "unknown_top1": analysis.unknown_top1,
               "tables": {name: rows for name, (rows, _) in all_tables.items()},
               "appendix_n": {k: analysis.appendix_n[k] for k in ("datasets", "models", "left_out", "note")},
               "empty_tables": empty_reasons(analysis),
               "figures": {name: [str(p) for p in files] for name, files in figure_files.items()}}
    fileio.atomic_write_json(out / "analysis.json", summary)
    fileio.atomic_write_text(out / "report.md", markdown_report(analysis, figure_files, out))
    return {"report": out / "report.md", "json": out / "analysis.json", "tables": out / "tables",
            "figures": figure_files}
