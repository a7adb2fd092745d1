#!/usr/bin/env bash
# The CIFAR-10 control of the paper (Appendix E): the same 60-configuration grid and 19 models on CIFAR-10 (the full
# training set, the official test set as val), where ImageNet accuracy should predict transfer strongly, as Kornblith
# et al. found. 1,140 runs into manifests/cifar10.jsonl, then the trend fit.
#
#   bash studies/cifar10_control.sh --gpus 0,1,2,3       # arguments go to `grid.py run`
#
# Needs datasets/cifar10/cifar-10-batches-py (torchvision's CIFAR10 download). PLAN_OPTIONS adds options to
# `grid.py plan`, PYTHON names the interpreter. Writes reports/cifar10_control/ (report.md, figures/figure1.png).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python}"
# shellcheck disable=SC2086  # PLAN_OPTIONS is a list of options
"$PYTHON" "$REPO/grid.py" plan --datasets cifar10 --models testbed --manifest manifests/cifar10.jsonl \
  ${PLAN_OPTIONS:-} > /dev/null
"$PYTHON" "$REPO/grid.py" run --manifest manifests/cifar10.jsonl "$@"
"$PYTHON" "$REPO/analyze.py" runs --datasets cifar10 --out reports/cifar10_control
