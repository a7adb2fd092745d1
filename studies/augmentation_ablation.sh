#!/usr/bin/env bash
# The augmentation ablation of the paper's section 5.1 / Appendix G: "ResNet-50 models pre-trained with standard crop
# and flip augmentation, AugMix, and RandAugment, and then fine-tune on our default augmentation, AugMix, and
# RandAugment ... DeiT-tiny and DeiT-small ... fine-tuning on the same three augmentations ... 50 epochs", on CCT-20
# and APTOS: the 3 x 3 and 2 x 3 grids, each fine-tuning over the paper's hyperparameter grid, planned into
# manifests/ablation-<augmentation>.jsonl and run with grid.py (arguments go to `grid.py run`).
#
#   bash studies/augmentation_ablation.sh --gpus 0,1,2,3
#
# PLAN_OPTIONS adds options to `grid.py plan` (e.g. "--optimizer sgd" to shrink the grid); PYTHON names the
# interpreter. Records go to runs-ablation/; reports/augmentation_ablation/ tabulates the best configuration of each
# pre-training x fine-tuning augmentation as Appendix G does ("Comparison by augment").
#
# The step schedule keeps each dataset's milestones whatever --epochs is (train.py: x0.1 at epochs 15, 20 and 25, the
# paper's 30-epoch placement), so at 50 epochs its runs spend the last 25 epochs at 1/1000 of their starting rate; the
# paper's notes at hand do not say where its 50-epoch runs stepped. PLAN_OPTIONS="--schedule cosine" leaves the step
# runs out (40 configurations instead of 60); the records carry the milestones used (config.milestones).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python}"
for augment in paper augmix randaugment; do
  # shellcheck disable=SC2086  # PLAN_OPTIONS is a list of options
  "$PYTHON" "$REPO/grid.py" plan --datasets cct20 aptos \
    --models resnet50 resnet50_augmix resnet50_randaugment deit_tiny deit_small \
    --augment "$augment" --epochs 50 --out runs-ablation --manifest "manifests/ablation-$augment.jsonl" \
    ${PLAN_OPTIONS:-} > /dev/null
  "$PYTHON" "$REPO/grid.py" run --manifest "manifests/ablation-$augment.jsonl" "$@"
done
"$PYTHON" "$REPO/analyze.py" runs-ablation --compare augment --out reports/augmentation_ablation
