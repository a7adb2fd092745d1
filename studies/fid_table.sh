#!/usr/bin/env bash
# The paper's FID table: the Frechet Inception Distance of each dataset (3,662 images drawn from each, APTOS's size)
# to the ImageNet validation set, with the standard FID Inception weights. Nothing to train, so no grid.py step.
#
#   bash studies/fid_table.sh /data/imagenet/val         # ImageNet's val/ folder (flat or per class; all 50,000)
#   DATASETS="aptos eurosat" bash studies/fid_table.sh /data/imagenet/val
#   SMOKE=1 bash studies/fid_table.sh                     # in miniature, on a CPU (studies/settings.sh): random
#                                                         # weights, 64-d features, tiny copies of aptos and eurosat,
#                                                         # and of "ImageNet val" when no folder is given
#
# Settings (environment; studies/settings.sh says more): DATASETS (default: every dataset found under datasets/),
# FID_WEIGHTS (pytorch-fid's weights file pt_inception-2015-12-05-6726825d.pth, or "fid": that file in the torch
# hub cache), FID_OPTIONS (more fid.py options for both steps, e.g. "--workers 4"), SMOKE, PYTHON.
# The ImageNet statistics are computed once and kept in imagenet-val-stats.npz. Writes reports/fid/ (the table as
# CSV, Markdown and JSON, and the bar figure).
set -euo pipefail
source "$(dirname "$0")/settings.sh"
FID_OPTIONS="${FID_OPTIONS:-}"
WEIGHTS="${FID_WEIGHTS:-fid}"
VAL="${1:-}"
if [ "$SMOKE" = 1 ]; then
  study_defaults "" "" "aptos eurosat"
  WEIGHTS="${FID_WEIGHTS:-random}"
  FID_OPTIONS="--dims 64 --subset 10 --allow-smaller --workers 0 --batch-size 10 $FID_OPTIONS"
  if [ -z "$VAL" ]; then  # a stand-in for ImageNet val: a folder of 20 images
    VAL=imagenet-val-standin
    [ -d "$VAL" ] || PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m data.synthetic eurosat --root "$VAL" \
      --per-class 2 > /dev/null
  fi
fi
DATA_ROOT=datasets
if [ -n "${DATASETS:-}" ]; then  # fid.py --all-datasets measures every dataset under its --data-root: link the chosen
  DATA_ROOT=reports/fid/datasets
  mkdir -p "$DATA_ROOT"
  rm -f "$DATA_ROOT"/*
  for dataset in $DATASETS; do
    [ -d "datasets/$dataset" ] || { echo "fid_table.sh: error: DATASETS names $dataset, but datasets/$dataset is not a folder" >&2; exit 2; }
    ln -s "$(cd "datasets/$dataset" && pwd)" "$DATA_ROOT/$dataset"
  done
fi
if [ ! -f imagenet-val-stats.npz ]; then
  # shellcheck disable=SC2086  # FID_OPTIONS is a list of options
  "$PYTHON" "$REPO/fid.py" "${VAL:?give the ImageNet val folder}" $FID_OPTIONS --subset 0 --weights "$WEIGHTS" \
    --save-stats imagenet-val-stats.npz
fi
# shellcheck disable=SC2086
"$PYTHON" "$REPO/fid.py" --all-datasets --data-root "$DATA_ROOT" --ref imagenet-val-stats.npz --weights "$WEIGHTS" \
  $FID_OPTIONS --out-dir reports/fid
