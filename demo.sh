#!/usr/bin/env bash
# The offline demo: fine-tune three small models on scikit-learn's bundled digits (random weights, 2 epochs each),
# then analyse the runs as the paper does. About two minutes on a 2-core CPU; writes runs/ and reports/.
set -euo pipefail
cd "$(dirname "$0")"
for model in resnet18 mobilenet_v3_small shufflenet_v2_x0_5; do
  accelerate launch --cpu --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
    train.py --dataset digits --model "$model" --weights random --epochs 2
done
python analyze.py runs/*.json --out reports/demo
