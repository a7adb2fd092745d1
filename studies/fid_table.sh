#!/usr/bin/env bash
# The paper's FID table: the Frechet Inception Distance of each dataset (3,662 images drawn from each, APTOS's size)
# to the ImageNet validation set, with the standard FID Inception weights. Nothing to train, so no grid.py step.
#
#   bash studies/fid_table.sh /data/imagenet/val         # ImageNet's val/ folder (flat or per class; all 50,000)
#
# Needs the datasets under datasets/<name>, and pytorch-fid's weights file pt_inception-2015-12-05-6726825d.pth in
# the torch hub cache or named by FID_WEIGHTS=PATH. The ImageNet statistics are computed once and kept in
# imagenet-val-stats.npz. Writes reports/fid/ (the table as CSV, Markdown and JSON, and the bar figure).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python}"
WEIGHTS="${FID_WEIGHTS:-fid}"
if [ ! -f imagenet-val-stats.npz ]; then
  "$PYTHON" "$REPO/fid.py" "${1:?give the ImageNet val folder}" --subset 0 --weights "$WEIGHTS" \
    --save-stats imagenet-val-stats.npz
fi
"$PYTHON" "$REPO/fid.py" --all-datasets --ref imagenet-val-stats.npz --weights "$WEIGHTS" --out-dir reports/fid
