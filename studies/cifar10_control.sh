#!/usr/bin/env bash
# The CIFAR-10 control of the paper (Appendix E): the same 60-configuration grid and 19 models on CIFAR-10 (the full
# training set, the official test set as val), where ImageNet accuracy should predict transfer strongly, as Kornblith
# et al. found. 1,140 runs into manifests/cifar10.jsonl, then the trend fit of exactly those datasets and models.
#
#   bash studies/cifar10_control.sh --gpus 0,1,2,3       # arguments go to `grid.py run`
#   MODELS="resnet50 densenet121 vgg13_bn" bash studies/cifar10_control.sh --gpus 0,1
#   SMOKE=1 DATASETS=cifar10 bash studies/cifar10_control.sh   # in miniature, on a CPU (studies/settings.sh)
#
# Settings (environment; studies/settings.sh says more): DATASETS (default: cifar10), MODELS (default: testbed),
# RUNS (runs), PLAN_OPTIONS, ANALYZE_OPTIONS, SMOKE, PYTHON.
# Needs datasets/cifar10/cifar-10-batches-py (python -m data.download cifar10). Writes reports/cifar10_control/
# (report.md, figures/figure1.png).
set -euo pipefail
source "$(dirname "$0")/settings.sh"
study_defaults "cifar10" "testbed"
# shellcheck disable=SC2086  # DATASETS, MODELS and the options are lists of words
"$PYTHON" "$REPO/grid.py" plan --datasets $DATASETS --models $MODELS --out "${RUNS:-runs}" \
  --manifest manifests/cifar10.jsonl $SMOKE_TRAIN $SMOKE_GRID $PLAN_OPTIONS > /dev/null
# shellcheck disable=SC2086
"$PYTHON" "$REPO/grid.py" run --manifest manifests/cifar10.jsonl $SMOKE_RUN "$@"
# shellcheck disable=SC2086,SC2046  # the options and the model names are lists of words
"$PYTHON" "$REPO/analyze.py" "${RUNS:-runs}" --datasets "$(commas $DATASETS)" --models "$(commas $(model_names $MODELS))" \
  --out reports/cifar10_control $SMOKE_ANALYZE $ANALYZE_OPTIONS
