#!/usr/bin/env bash
# Appendix N of the paper: does the average over the other real-world datasets predict a dataset's results better
# than ImageNet accuracy does? (nested OLS F-tests and Spearman correlations over the 19 models), from the same
# grid as Figure 1 (studies/paper_grid.sh: 6,840 runs, skipped when already done). It needs at least 3 datasets and
# 5 models; with fewer the report says why it skipped.
#
#   bash studies/appendix_n.sh --gpus 0,1,2,3            # arguments go to `grid.py run`
#   DATASETS="cct20 aptos hpa" bash studies/appendix_n.sh --gpus 0,1
#   SMOKE=1 bash studies/appendix_n.sh                    # in miniature, on a CPU (studies/settings.sh)
#
# Settings (environment; studies/settings.sh says more): DATASETS (default: the six real-world datasets), MODELS
# (default: testbed), RUNS (runs), PLAN_OPTIONS, ANALYZE_OPTIONS, SMOKE, PYTHON.
# Writes reports/appendix_n/: report.md ("Appendix N"), tables/ and analysis.json.
set -euo pipefail
source "$(dirname "$0")/settings.sh"
study_defaults "cct20 aptos hpa melanoma cassava eurosat" "testbed"
bash "$STUDIES/paper_grid.sh" "$@"
# shellcheck disable=SC2086,SC2046  # the options and the model names are lists of words
"$PYTHON" "$REPO/analyze.py" "${RUNS:-runs}" --datasets "$(commas $DATASETS)" --models "$(commas $(model_names $MODELS))" \
  --out reports/appendix_n $SMOKE_ANALYZE $ANALYZE_OPTIONS
