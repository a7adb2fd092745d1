#!/usr/bin/env bash
# Figure 1 and Table 2 of the paper: per dataset, the best configuration of each of the 19 models against its
# ImageNet top-1, with the linear trends over all models and over those above 70% (slopes, correlations, 95%
# intervals). Trains the paper's grid first (studies/paper_grid.sh: 6,840 runs, skipped when already done), then
# analyses exactly the datasets and models it trained.
#
#   bash studies/figure1_table2.sh --gpus 0,1,2,3        # arguments go to `grid.py run`
#   DATASETS="aptos cassava" MODELS="resnet50 densenet121 vgg13_bn" bash studies/figure1_table2.sh --gpus 0,1
#   SMOKE=1 bash studies/figure1_table2.sh                # in miniature, on a CPU (studies/settings.sh)
#
# Settings (environment; studies/settings.sh says more): DATASETS (default: the six real-world datasets), MODELS
# (default: testbed), RUNS (runs), PLAN_OPTIONS, ANALYZE_OPTIONS, SMOKE, PYTHON.
# Writes reports/figure1_table2/: report.md ("Trend fits (Figure 1, Table 2)"), figures/figure1.png|pdf, tables/.
set -euo pipefail
source "$(dirname "$0")/settings.sh"
study_defaults "cct20 aptos hpa melanoma cassava eurosat" "testbed"
bash "$STUDIES/paper_grid.sh" "$@"
# shellcheck disable=SC2086,SC2046  # the options and the model names are lists of words
"$PYTHON" "$REPO/analyze.py" "${RUNS:-runs}" --datasets "$(commas $DATASETS)" --models "$(commas $(model_names $MODELS))" \
  --out reports/figure1_table2 $SMOKE_ANALYZE $ANALYZE_OPTIONS
