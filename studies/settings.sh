# Sourced by every script in studies/, not run on its own: the settings the studies share. Each script's header
# names the settings it reads and its defaults; these are read from the environment:
#
#   DATASETS="aptos eurosat"   the datasets: the study trains exactly these and its analysis reads exactly these
#   MODELS="resnet50 vgg13_bn" the models, by models.py name, or a group of its registry (testbed, ablation, clip,
#                              later, extra); same rule
#   SMOKE=1                    the study in miniature, on a CPU in minutes with nothing to download: it runs in
#                              ./smoke/ (its own datasets/, runs/, manifests/, reports/), on digits unless DATASETS
#                              names others (then tiny copies in each dataset's own layout are written there by
#                              data.synthetic; hpa's with a split file in the published one's format, imported by
#                              splits.py --from as the real one would be), with resnet18 and
#                              mobilenet_v3_small from random weights, one epoch at 16 px in batches of 32, two
#                              configurations of the paper's grid (AdamW with the cosine schedule at lr 0.01 and
#                              0.001, wd 1e-4) trained in one process, and 200 bootstrap resamples. It checks that a
#                              study runs, not its numbers.
#   PLAN_OPTIONS               more `grid.py plan` options, train.py's included (e.g. "--epochs 10"); they come after
#                              the study's and the smoke's own, so they win
#   TRAIN_OPTIONS              more train.py options, for the studies that run train.py themselves
#   ANALYZE_OPTIONS            more analyze.py options (e.g. "--n-boot 1000")
#   PYTHON                     the interpreter (python); LAUNCH: train.py's launcher ("accelerate launch"; with
#                              SMOKE=1 the interpreter itself)

STUDIES="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$STUDIES")"
STUDY="$(basename "$0")"
PYTHON="${PYTHON:-python}"
LAUNCH="${LAUNCH:-$([ "${SMOKE:-0}" = 1 ] && echo "$PYTHON" || echo "accelerate launch")}"
PLAN_OPTIONS="${PLAN_OPTIONS:-}"
TRAIN_OPTIONS="${TRAIN_OPTIONS:-}"
ANALYZE_OPTIONS="${ANALYZE_OPTIONS:-}"
SMOKE="${SMOKE:-0}"

# What the smoke setting adds: train.py options for every run, the grid (as grid.py plan restricts the paper's),
# grid.py run options, analyze.py options. Empty for a real study.
SMOKE_TRAIN="" SMOKE_GRID="" SMOKE_RUN="" SMOKE_ANALYZE=""
case "$SMOKE" in
  0) ;;
  1)
    SMOKE_TRAIN="--weights random --epochs 1 --img-size 16 --batch-size 32 --workers 0"
    SMOKE_GRID="--optimizer adamw --lr 0.01 0.001 --wd 1e-4"
    SMOKE_RUN="--pack 2"
    SMOKE_ANALYZE="--n-boot 200"
    if [ "${STUDY_SMOKE_DIR:-}" != "$PWD" ]; then  # a study calling another is already there
      mkdir -p smoke && cd smoke
      export STUDY_SMOKE_DIR="$PWD"
    fi
    ;;
  *) echo "$STUDY: error: SMOKE=$SMOKE: set SMOKE=1 for the study in miniature, or leave it out" >&2; exit 2 ;;
esac
for word in $PLAN_OPTIONS; do
  case "$word" in
    --datasets|--datasets=*|--models|--models=*)
      echo "$STUDY: error: PLAN_OPTIONS names $word; set DATASETS or MODELS instead (the analysis reads them too)" >&2
      exit 2 ;;
  esac
done

# study_defaults DATASETS MODELS [SMOKE_DATASETS]: the study's own datasets and models, unless the environment sets
# DATASETS or MODELS; in the smoke setting SMOKE_DATASETS (default digits) and two small models, with a tiny copy of
# every dataset that is not there yet.
study_defaults() {
  if [ "$SMOKE" = 1 ]; then
    DATASETS="${DATASETS:-${3:-digits}}"
    MODELS="${MODELS:-resnet18 mobilenet_v3_small}"
    local dataset
    for dataset in $DATASETS; do
      [ "$dataset" = digits ] || smoke_fixture "$dataset"
    done
  else
    DATASETS="${DATASETS:-$1}"
    MODELS="${MODELS:-$2}"
  fi
  export DATASETS MODELS
}

# smoke_fixture NAME [data.synthetic options]: a tiny copy of dataset NAME in datasets/NAME, unless one is there
# (HPA's split file imported as the paper's would be: README, Splits).
smoke_fixture() {
  [ -d "datasets/$1" ] && return 0
  PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m data.synthetic "$1" --root "datasets/$1" --per-class 10 \
    "${@:2}" > /dev/null
  if [ "$1" = hpa ]; then
    "$PYTHON" "$REPO/splits.py" hpa --root datasets/hpa --from datasets/hpa/split.stratified.small.0.csv > /dev/null
  fi
}

# model_names WORD...: the words with each models.py group (testbed, clip, ...) replaced by its models' names.
model_names() {
  PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -c '
import sys
from nets.registry import group_models
print(" ".join(name for word in sys.argv[1:] for name in (group_models(word) or [word])))' "$@"
}

# commas WORD...: the words joined by commas, as analyze.py's --datasets and --models take them.
commas() {
  local IFS=,
  echo "$*"
}
