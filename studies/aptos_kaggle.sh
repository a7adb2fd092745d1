#!/usr/bin/env bash
# The APTOS 2019 Kaggle recipe of the paper's section 4.2 / Appendix F, from the data to a submission file: what the
# top solutions did besides picking an architecture. Train on APTOS plus every labelled image of the 2015
# diabetic-retinopathy competition (--extra-train dr2015), 512 px crops, random rotations and colour jitter
# (--augment aptos-kaggle), a regression head with a smooth-L1 loss and GeM pooling, cut points optimised on APTOS's
# validation split; then an ensemble of the models with flip test-time augmentation writes the submission.
#
#   bash studies/aptos_kaggle.sh                 # datasets/aptos (with test_images/) and datasets/dr2015
#
# Settings (environment): MODELS (default "efficientnet_b4 resnet50"), APTOS_ROOT, DR2015_ROOT, OUT (runs-aptos-kaggle),
# SUBMISSION (submission.csv), TRAIN_OPTIONS (more train.py options, e.g. "--epochs 15"), LAUNCH (default
# "accelerate launch"), PYTHON. Selection, cut points and the reported QWK use APTOS's validation split only; the
# 2015 images only add training data. For a final model on all labelled data, add "--train-on all" to
# TRAIN_OPTIONS in a second pass (it keeps the last epoch and fits no cut points: score it with these runs').
set -euo pipefail
if [ $# -gt 0 ]; then
  echo "aptos_kaggle.sh: error: takes no arguments (got: $*); set MODELS, APTOS_ROOT, DR2015_ROOT, OUT, SUBMISSION, TRAIN_OPTIONS, LAUNCH or PYTHON in the environment" >&2
  exit 2
fi
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python}"
LAUNCH="${LAUNCH:-accelerate launch}"
APTOS_ROOT="${APTOS_ROOT:-datasets/aptos}"
OUT="${OUT:-runs-aptos-kaggle}"
for model in ${MODELS:-efficientnet_b4 resnet50}; do
  # shellcheck disable=SC2086  # LAUNCH and TRAIN_OPTIONS are lists of words
  $LAUNCH "$REPO/train.py" --dataset aptos --root "$APTOS_ROOT" --extra-train dr2015 \
    --extra-root "${DR2015_ROOT:-datasets/dr2015}" --model "$model" --augment aptos-kaggle --img-size 512 \
    --head regression --pool gem --optimizer adamw --lr 1e-4 --wd 1e-5 --out "$OUT" ${TRAIN_OPTIONS:-}
done
# Every complete run of the study's folder goes into the ensemble.
"$PYTHON" "$REPO/evaluate.py" "$OUT" --ensemble mean --tta flips --test-dir "$APTOS_ROOT/test_images" \
  --submission "${SUBMISSION:-submission.csv}" --out "$OUT/evaluations"
