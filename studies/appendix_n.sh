#!/usr/bin/env bash
# Appendix N of the paper: does the average over the other real-world datasets predict a dataset's results better
# than ImageNet accuracy does? (nested OLS F-tests and Spearman correlations over the 19 models), from the same
# grid as Figure 1 (studies/paper_grid.sh: 6,840 runs, skipped when already done).
#
#   bash studies/appendix_n.sh --gpus 0,1,2,3            # arguments go to `grid.py run`
#
# Writes reports/appendix_n/: report.md ("Appendix N"), tables/ and analysis.json.
set -euo pipefail
STUDIES="$(cd "$(dirname "$0")" && pwd)"
bash "$STUDIES/paper_grid.sh" "$@"
"${PYTHON:-python}" "$STUDIES/../analyze.py" runs --datasets cct20,aptos,hpa,melanoma,cassava,eurosat \
  --out reports/appendix_n
