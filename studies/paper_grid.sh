#!/usr/bin/env bash
# The paper's grid, shared by Figure 1 / Table 2, Appendix N and the APTOS Kaggle study: the 19 ImageNet models of
# the testbed fine-tuned on the six real-world datasets, 60 configurations each (6,840 runs), planned into a
# manifest and run here.
#
#   bash studies/paper_grid.sh --gpus 0,1,2,3,4,5,6,7     # arguments go to `grid.py run` (python grid.py run -h)
#   DATASETS="aptos eurosat" MODELS="resnet50 densenet121" bash studies/paper_grid.sh --gpus 0,1
#   SMOKE=1 bash studies/paper_grid.sh                      # in miniature, on a CPU (studies/settings.sh)
#
# Settings (environment; studies/settings.sh says more): DATASETS (default: cct20 aptos hpa melanoma cassava
# eurosat), MODELS (default: testbed), RUNS (where the records go: runs), MANIFEST (manifests/paper.jsonl),
# PLAN_OPTIONS (more `grid.py plan` options, e.g. "--epochs 10"), SMOKE, PYTHON.
# Run it in the folder holding datasets/<name> (README: Datasets). Rerun it freely: finished runs are skipped,
# interrupted ones resume. How long: python grid.py estimate --paper --gpus 8.
# On a Slurm cluster, submit the same manifest instead of running it here:
#   python grid.py slurm --manifest manifests/paper.jsonl --partition gpu > paper.sbatch && sbatch paper.sbatch
set -euo pipefail
source "$(dirname "$0")/settings.sh"
study_defaults "cct20 aptos hpa melanoma cassava eurosat" "testbed"
MANIFEST="${MANIFEST:-manifests/paper.jsonl}"
# shellcheck disable=SC2086  # DATASETS, MODELS and the options are lists of words
"$PYTHON" "$REPO/grid.py" plan --datasets $DATASETS --models $MODELS --out "${RUNS:-runs}" --manifest "$MANIFEST" \
  $SMOKE_TRAIN $SMOKE_GRID $PLAN_OPTIONS > /dev/null
# shellcheck disable=SC2086
"$PYTHON" "$REPO/grid.py" run --manifest "$MANIFEST" $SMOKE_RUN "$@"
