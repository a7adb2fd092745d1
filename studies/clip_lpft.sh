#!/usr/bin/env bash
# CLIP models with a linear probe, then end-to-end fine-tuning (the paper's section 5.2 and Figure 8, appendices I
# and J): for each real-world dataset and CLIP image tower, train.py --lp-ft trains the 15 probes (lr 1e-1, 1e-2,
# 1e-3 x wd 1e-3 .. 1e-6, 0) on a frozen backbone for a third of the epochs, then fine-tunes the best probe end to
# end (lr 1e-4, 1e-5, 1e-6 x the same decays) for the rest. The analysis draws the CLIP towers as separate markers
# beside the trends of every other model whose runs are in RUNS on these datasets (the paper grid's, when run).
#
#   bash studies/clip_lpft.sh
#   DATASETS="aptos eurosat" MODELS="clip_rn50 clip_vit_b16" bash studies/clip_lpft.sh
#   SMOKE=1 bash studies/clip_lpft.sh       # in miniature, on a CPU (studies/settings.sh), two epochs (LP-FT needs
#                                           # a probe epoch and a fine-tuning epoch), one probe, one fine-tuning
#
# Settings (environment; studies/settings.sh says more): DATASETS (default: the six real-world datasets), MODELS
# (default: clip, the four towers: clip_rn50 clip_vit_b16 clip_vit_l14 clip_vit_l14_336), RUNS (runs),
# TRAIN_OPTIONS (more train.py options), ANALYZE_OPTIONS, SMOKE, LAUNCH (default "accelerate launch"), PYTHON.
# Records go to RUNS (probes and fine-tuning runs, each resumable); the report to reports/clip_lpft/.
set -euo pipefail
if [ $# -gt 0 ]; then
  echo "clip_lpft.sh: error: takes no arguments (got: $*); set DATASETS, MODELS, RUNS, TRAIN_OPTIONS, ANALYZE_OPTIONS, SMOKE, LAUNCH or PYTHON in the environment" >&2
  exit 2
fi
source "$(dirname "$0")/settings.sh"
study_defaults "cct20 aptos hpa melanoma cassava eurosat" "clip"
SMOKE_LPFT=""
[ "$SMOKE" = 1 ] && SMOKE_LPFT="--epochs 2 --probe-lr 0.1 --probe-wd 0 --lr 1e-4 --wd 0"
for dataset in $DATASETS; do
  for model in $(model_names $MODELS); do
    # shellcheck disable=SC2086  # LAUNCH and the options are lists of words
    $LAUNCH "$REPO/train.py" --dataset "$dataset" --model "$model" --lp-ft --save-weights none --out "${RUNS:-runs}" \
      $SMOKE_TRAIN $SMOKE_LPFT $TRAIN_OPTIONS
  done
done
# shellcheck disable=SC2086  # the options are lists of words
"$PYTHON" "$REPO/analyze.py" "${RUNS:-runs}" --datasets "$(commas $DATASETS)" --out reports/clip_lpft \
  $SMOKE_ANALYZE $ANALYZE_OPTIONS
