#!/usr/bin/env bash
# The offline demo: three ImageNet architectures of different ImageNet top-1 (ShuffleNetV2 x0.5 60.6%, ResNet-18
# 69.8%, EfficientNet-B0 77.7%) fine-tuned on scikit-learn's bundled digits from random weights (no download:
# AdamW, 6 epochs, batch 64), then analysed as the paper analyses its study (best configuration per model, trend
# against ImageNet top-1, figures). Every model ends well above chance (10%). Writes demo/runs/ and demo/report/
# (report.md, figures/) in the current folder, apart from your own runs/. About three minutes on a 2-core CPU;
# rerunning skips finished runs. DEMO_MODELS picks other models.
set -euo pipefail
REPO="$(cd "$(dirname "$0")" && pwd)"
for model in ${DEMO_MODELS:-shufflenet_v2_x0_5 resnet18 efficientnet_b0}; do
  accelerate launch --cpu --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
    "$REPO/train.py" --dataset digits --model "$model" --weights random --epochs 6 --batch-size 64 \
    --optimizer adamw --lr 1e-3 --wd 1e-4 --out demo/runs
done
"${PYTHON:-python}" "$REPO/analyze.py" demo/runs --out demo/report
echo "demo: report in demo/report/report.md"
