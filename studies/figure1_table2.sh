#!/usr/bin/env bash
# Figure 1 and Table 2 of the paper: per dataset, the best configuration of each of the 19 models against its
# ImageNet top-1, with the linear trends over all models and over those above 70% (slopes, correlations, 95%
# intervals). Trains the paper's grid first (studies/paper_grid.sh: 6,840 runs, skipped when already done).
#
#   bash studies/figure1_table2.sh --gpus 0,1,2,3        # arguments go to `grid.py run`
#
# Writes reports/figure1_table2/: report.md ("Trend fits (Figure 1, Table 2)"), figures/figure1.png|pdf, tables/.
set -euo pipefail
STUDIES="$(cd "$(dirname "$0")" && pwd)"
bash "$STUDIES/paper_grid.sh" "$@"
"${PYTHON:-python}" "$STUDIES/../analyze.py" runs --datasets cct20,aptos,hpa,melanoma,cassava,eurosat \
  --out reports/figure1_table2
