#!/usr/bin/env bash
# The paper's grid, shared by Figure 1 / Table 2 and Appendix N: the 19 ImageNet models of the testbed fine-tuned on
# the six real-world datasets, 60 configurations each (6,840 runs), planned into manifests/paper.jsonl and run here.
#
#   bash studies/paper_grid.sh --gpus 0,1,2,3,4,5,6,7     # arguments go to `grid.py run` (python grid.py run -h)
#
# Run it in the folder holding datasets/<name> (README: Datasets); records go to runs/. Rerun it freely: finished runs
# are skipped, interrupted ones resume. PLAN_OPTIONS adds options to `grid.py plan` (e.g. PLAN_OPTIONS="--models
# resnet50" for one model); PYTHON names the interpreter. How long: python grid.py estimate --paper --gpus 8.
# On a Slurm cluster, submit the same manifest instead of running it here:
#   python grid.py slurm --manifest manifests/paper.jsonl --partition gpu > paper.sbatch && sbatch paper.sbatch
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python}"
# shellcheck disable=SC2086  # PLAN_OPTIONS is a list of options
"$PYTHON" "$REPO/grid.py" plan --datasets cct20 aptos hpa melanoma cassava eurosat --models testbed \
  --manifest manifests/paper.jsonl ${PLAN_OPTIONS:-} > /dev/null
"$PYTHON" "$REPO/grid.py" run --manifest manifests/paper.jsonl "$@"
