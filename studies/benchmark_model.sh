#!/usr/bin/env bash
# Benchmark one model on the paper's real-world tasks, as section 6 proposes ("we suggest simply using the average
# accuracy across our tasks as a benchmark for future representation learning research"): the model fine-tuned on
# the six datasets over the paper's 60 configurations (360 runs, planned with grid.py), its best configuration per
# dataset, and its benchmark score with an interval and its rank beside published results (analyze.py
# --reference), without rerunning the testbed.
#
#   bash studies/benchmark_model.sh convnext_small.fb_in1k --reference testbed.json -- --gpus 0,1,2,3
#   bash studies/benchmark_model.sh my_convnext --models-file models.json --reference testbed.json --budget halving
#   bash studies/benchmark_model.sh my_convnext --models-file models.json --slurm -- --partition gpu
#   SMOKE=1 DATASETS="aptos eurosat" bash studies/benchmark_model.sh mobilenet_v2   # in miniature, on a CPU
#
# MODEL: a models.py name, any torchvision or timm name, or a model of --models-file (README, "Benchmark your
# model": its checkpoint and ImageNet top-1 go there). Options:
#   --models-file FILE   your models (train.py's --models-file: the runs' records keep the entry and its top-1)
#   --reference FILE     published results to rank against (analyze.py --export of the testbed); repeat for more
#   --budget full|halving  full: every configuration for every epoch (the paper's protocol, default); halving:
#                        successive halving with factor 3 (grid.py run --halving 3), about half the GPU-hours (the
#                        paper's 60 configurations: 870 of 1,800 epochs); the report says the configurations were
#                        chosen so; trained here, not with --slurm
#   --slurm              submit the runs as a Slurm job array (grid.py slurm) and the analysis as a job that starts
#                        when the array has ended, instead of running here
#   -- ...               options for grid.py run (e.g. --gpus 0,1,2,3), or for grid.py slurm with --slurm
# Settings (environment; studies/settings.sh says more): DATASETS (default: the six real-world datasets), RUNS (where
# the records go: runs-benchmark), PLAN_OPTIONS, ANALYZE_OPTIONS, SMOKE, PYTHON.
# First it prints what the grid costs (grid.py estimate); then it trains (rerun freely: finished runs are skipped)
# and writes reports/benchmark-<model>/: report.md (the leaderboard with the model's row, Figure 1 with it marked,
# the trend table) and <model>-results.json, the model's own results for others to rank against (--export).
set -euo pipefail
usage="usage: bash studies/benchmark_model.sh MODEL [--models-file FILE] [--reference FILE]... \
[--budget full|halving] [--slurm] [-- grid.py options]"
MODEL="" MODELS_FILE="" BUDGET="full" SLURM=0 REFERENCES=()
while [ $# -gt 0 ]; do
  case "$1" in
    --models-file) MODELS_FILE="${2:?$usage}"; shift 2 ;;
    --reference) REFERENCES+=("${2:?$usage}"); shift 2 ;;
    --budget) BUDGET="${2:?$usage}"; shift 2 ;;
    --slurm) SLURM=1; shift ;;
    --) shift; break ;;
    -*) echo "benchmark_model.sh: error: unknown option $1 ($usage)" >&2; exit 2 ;;
    *) [ -z "$MODEL" ] || { echo "benchmark_model.sh: error: one model at a time, got $MODEL and $1" >&2; exit 2; }
       MODEL="$1"; shift ;;
  esac
done
[ -n "$MODEL" ] || { echo "benchmark_model.sh: error: name the model to benchmark ($usage)" >&2; exit 2; }
if [ "$BUDGET" = halving ] && [ "$SLURM" = 1 ]; then
  echo "benchmark_model.sh: error: --budget halving trains here (grid.py run --halving): a Slurm array runs every" \
       "configuration to the end; leave out --slurm, or use --budget full" >&2
  exit 2
fi
case "$BUDGET" in
  full) HALVING=() ;;
  halving) HALVING=(--halving 3) ;;
  *) echo "benchmark_model.sh: error: --budget $BUDGET: choose full (the paper's protocol) or halving" >&2; exit 2 ;;
esac
absolute() { echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }
MODELS_FILE_OPTION=() REFERENCE_OPTIONS=()
for reference in "${REFERENCES[@]}"; do
  [ -f "$reference" ] || { echo "benchmark_model.sh: error: --reference $reference: no such file (analyze.py --export writes one)" >&2; exit 2; }
  REFERENCE_OPTIONS+=(--reference "$(absolute "$reference")")
done
if [ -n "$MODELS_FILE" ]; then
  [ -f "$MODELS_FILE" ] || { echo "benchmark_model.sh: error: --models-file $MODELS_FILE: no such file" >&2; exit 2; }
  MODELS_FILE_OPTION=(--models-file "$(absolute "$MODELS_FILE")")
fi
MODELS="$MODEL"
source "$(dirname "$0")/settings.sh"  # with SMOKE=1 it moves into ./smoke
study_defaults "cct20 aptos hpa melanoma cassava eurosat" "$MODEL"
RUNS="${RUNS:-runs-benchmark}"
NAME="$(echo "$MODEL" | tr -c 'A-Za-z0-9_.\n-' '_')"
MANIFEST="manifests/benchmark-$NAME.jsonl"
REPORT="reports/benchmark-$NAME"

# shellcheck disable=SC2086  # DATASETS and the options are lists of words
"$PYTHON" "$REPO/grid.py" plan --datasets $DATASETS --models "$MODEL" "${MODELS_FILE_OPTION[@]}" --out "$RUNS" \
  --manifest "$MANIFEST" $SMOKE_TRAIN $SMOKE_GRID $PLAN_OPTIONS > /dev/null
"$PYTHON" "$REPO/grid.py" estimate --manifest "$MANIFEST"
# shellcheck disable=SC2086,SC2046
ANALYZE=("$PYTHON" "$REPO/analyze.py" "$RUNS" --datasets "$(commas $DATASETS)" "${REFERENCE_OPTIONS[@]}" --export "$REPORT/$NAME-results.json" --out "$REPORT" $SMOKE_ANALYZE $ANALYZE_OPTIONS)
if [ "$SLURM" = 1 ]; then
  "$PYTHON" "$REPO/grid.py" slurm --manifest "$MANIFEST" "$@" > "benchmark-$NAME.sbatch"
  array=$(sbatch --parsable "benchmark-$NAME.sbatch")
  analysis=$(sbatch --parsable --dependency="afterany:${array%%;*}" --job-name="analyze-$NAME" \
    --output="$REPORT.slurm.out" --wrap="cd $(printf %q "$PWD") && $(printf '%q ' "${ANALYZE[@]}")")
  echo "benchmark_model.sh: submitted the runs (job $array, benchmark-$NAME.sbatch) and the analysis (job $analysis," \
    "after the array) -> $REPORT"
  exit 0
fi
# shellcheck disable=SC2086
"$PYTHON" "$REPO/grid.py" run --manifest "$MANIFEST" "${HALVING[@]}" $SMOKE_RUN "$@"
"${ANALYZE[@]}"
