#!/usr/bin/env bash
# CLIP models with a linear probe, then end-to-end fine-tuning (the paper's section 5.2 and Figure 8, appendices I
# and J): for each real-world dataset and CLIP image tower, train.py --lp-ft trains the 15 probes (lr 1e-1, 1e-2,
# 1e-3 x wd 1e-3 .. 1e-6, 0) on a frozen backbone for a third of the epochs, then fine-tunes the best probe end to
# end (lr 1e-4, 1e-5, 1e-6 x the same decays) for the rest. The analysis draws the CLIP towers as separate markers
# beside the ImageNet models' trends (it also reads the paper grid's runs/ when present).
#
#   bash studies/clip_lpft.sh
#
# Settings (environment): DATASETS (the six real-world ones), MODELS (clip_rn50 clip_vit_b16 clip_vit_l14
# clip_vit_l14_336), TRAIN_OPTIONS (more train.py options), LAUNCH (default "accelerate launch"), PYTHON. Records go
# to runs/ (probes and fine-tuning runs, each resumable); the report to reports/clip_lpft/.
set -euo pipefail
if [ $# -gt 0 ]; then
  echo "clip_lpft.sh: error: takes no arguments (got: $*); set DATASETS, MODELS, TRAIN_OPTIONS, LAUNCH or PYTHON in the environment" >&2
  exit 2
fi
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python}"
LAUNCH="${LAUNCH:-accelerate launch}"
for dataset in ${DATASETS:-cct20 aptos hpa melanoma cassava eurosat}; do
  for model in ${MODELS:-clip_rn50 clip_vit_b16 clip_vit_l14 clip_vit_l14_336}; do
    # shellcheck disable=SC2086  # LAUNCH and TRAIN_OPTIONS are lists of words
    $LAUNCH "$REPO/train.py" --dataset "$dataset" --model "$model" --lp-ft --save-weights none ${TRAIN_OPTIONS:-}
  done
done
"$PYTHON" "$REPO/analyze.py" runs --out reports/clip_lpft
