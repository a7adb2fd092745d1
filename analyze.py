"""Turn a finished grid of run records into the paper's answer: does ImageNet accuracy predict real-world accuracy?

    python analyze.py runs/*.json                          # -> reports/report.md, tables/*.csv, analysis.json, figures/
    python analyze.py runs/ --datasets cct20,aptos,hpa --threshold 70 --logit --out reports/grid1
    python analyze.py runs/ --metric accuracy --datasets aptos,melanoma   # Appendix H: another metric
    python analyze.py runs/ --export results.json          # also one results file that others analyse against
    python analyze.py my-runs/ --reference results.json    # a new model beside published results, marked new

The steps, in the order they run (each a plain function in the module named):
  1. reading.load_runs          read every run record; unreadable, foreign, other-version and still-running files
                                are named and skipped, a run id read twice counted once; runs successive halving
                                stopped are counted in one note
  2. selection.select_best      per (dataset, model) the configuration with the best selection-split metric, with
                                intervals from its saved predictions on each dataset's shared resamples (only the
                                analysed metric is bootstrapped); grid_coverage lists diverged, failed and missing
                                configurations; reference.join adds the results files' rows (--reference)
  3. trends.trend_fits          per dataset, the metric regressed on ImageNet top-1 for all models and for models
                                above the threshold (Figure 1 / Table 2); trends.size_fits against model size
  4. appendix_n.appendix_n      does the average over the other real-world datasets predict a dataset better than
                                ImageNet? Nested OLS F-tests, Spearman correlations and a paired bootstrap test of
                                their difference (N.2, read both ways)
  5. benchmark.leaderboard      the benchmark score [§6] per model with its interval, the share of resamples
                                ranking it above the next model, and its rank range
  6. report.write_outputs       Markdown report, a CSV per table, analysis.json, figures (figures.py) as PNG and PDF;
                                reference.export the results file (--export)

The reported split is the paper's, as the dataset registry says (HPA: val, where its thresholds are chosen, with
test_val shown beside it). No torch is imported.
"""
from __future__ import annotations

import argparse
import sys

from analysis import pipeline, reference, report
from analysis.options import AnalyzeOptions
from analysis.reading import COMPARED_SETTINGS
from analysis.selection import CLIP_X
from common import cli, errors
from training.recipe import TUNED


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    parser.add_argument("records", nargs="*", help="run record files (runs/*.json) or folders holding them")
    parser.add_argument("--out", default="reports", help="folder for report.md, tables/, figures/, analysis.json")
    parser.add_argument("--datasets", default="all",
                        help="comma-separated datasets to analyse; with 'all', Appendix N and the benchmark score "
                             "use the real-world ones, with names they use exactly these")
    parser.add_argument("--models", default="all", help="comma-separated models to analyse")
    parser.add_argument("--metric", default=None,
                        help="metric to analyse, any the records hold (e.g. accuracy for APTOS and Melanoma); "
                             "configurations are still chosen by the dataset's own metric; when left out, each "
                             "dataset's own metric")
    parser.add_argument("--threshold", type=float, default=70.0,
                        help="ImageNet top-1 (%%) above which models enter the second trend fit")
    parser.add_argument("--slope-threshold", type=float, default=0.05,
                        help="a 0-100 slope below this is flagged as no meaningful progress")
    parser.add_argument("--logit", action="store_true", help="also fit and plot on logit-transformed axes")
    parser.add_argument("--n-boot", type=int, default=10000, help="bootstrap resamples for every interval and test")
    parser.add_argument("--level", type=float, default=0.95, help="confidence level of the intervals")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling")
    parser.add_argument("--compare", default=None, choices=sorted(set(TUNED) | set(COMPARED_SETTINGS)),
                        help="also tabulate, per dataset and model, the best configuration for each value of this "
                             "setting (Appendix G: --compare augment)")
    parser.add_argument("--grid", choices=("per-optimizer", "product", "seen"), default="per-optimizer",
                        help="expected grid: product of the hyperparameter values seen (per optimizer, or over "
                             "all), or the union of the configurations seen")
    parser.add_argument("--clip-x", choices=CLIP_X, default="linear-probe",
                        help="the ImageNet top-1 at which the CLIP towers are drawn (apart from the fits): the CLIP "
                             "paper's linear-probe accuracy, as the paper's Figure 8, or its zero-shot accuracy")
    parser.add_argument("--reference", action="append", default=None, metavar="FILE",
                        help="a results file (written by --export) to analyse the runs against, repeated for more: "
                             "their models join every table and figure, and the runs' models are marked new; none "
                             "when left out")
    parser.add_argument("--export", default=None, metavar="FILE",
                        help="also write the runs' results (not those of --reference files) as one "
                             "self-describing JSON file for --reference (schema: "
                             "analysis/reference.py)")
    return parser


def main(argv: list[str] | None = None) -> int:
    options = AnalyzeOptions.from_args(build_parser().parse_args(argv))
    analysis = pipeline.analyze(**options.analysis_arguments())
    for warning in analysis.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if not analysis.best:
        raise pipeline.nothing_to_analyse(analysis)
    if options.export:  # the runs' own results: those read from --reference files are in those files already
        own = [row for row in analysis.best if row.origin == "runs"]
        exported = reference.export(options.export, own, analysis.replicates, analysis.settings, analysis.run_commits)
        print(f"results of {len(own)} (dataset, model) pairs exported to {exported}")
    drawn, figure_notes = pipeline.make_figures(analysis)
    analysis.notes.extend(figure_notes)
    written = report.write_outputs(analysis, drawn, options.out)
    print(f"{len(analysis.best)} (dataset, model) results from {len(analysis.inputs)} file(s)"
          + (f" and {len(options.reference)} results file(s)" if options.reference else "")
          + f"; report: {written['report']}")
    return 0


if __name__ == "__main__":
    errors.run_main("analyze.py", main)
