#!/usr/bin/env bash
# The APTOS 2019 Kaggle experiment of the paper (section 4.2, Appendix F) as the paper ran it: one submission file
# per model and setting, and a table of what can be measured offline beside the files, ready for the leaderboard.
#
#   original         each model's configuration as the paper grid chose it on APTOS (analyze.py's choice among the
#                    grid's runs in RUNS; grid runs keep no weights, so it is retrained with its weights kept: the
#                    same command, the same run id), submitted as it is: "We submitted the original models we
#                    trained to Kaggle as well".
#   all-data-more    the same model "trained using AdamW with a cosine scheduler" (at its best AdamW learning rate
#                    and weight decay in the grid) "on all the available training data": APTOS 2019's train and val
#                    splits (--train-on all) and every graded DR-2015 image (trainLabels.csv and the test set's
#                    retinopathy_solution.csv: 88,702), with "random resize crop to 512, random rotations, color
#                    jitter (brightness=0.2, contrast=0.2, saturation=0.2, hue=0.1)" (--augment appendix-f-more).
#   all-data-less    the same with "Less augmentation [that] only uses random resize crop with at least 0.65 area
#                    and horizontal flips" (--augment appendix-f-less).
# The new models have no held-out split; the table gives, for each, the validation QWK of the same recipe trained
# on APTOS's train split (plus DR-2015) and chosen on val, beside the original's. The paper reports that the new
# models "do at least 0.03 QWK points better" on the leaderboard.
#
# EXTRAS=1 adds the top Kaggle entry's extras as an experiment of its own, not the paper's recipe: a regression head
# with the L1 loss the paper names (train.py --head regression --regression-loss l1), GeM pooling, cut points fitted
# on val, flip test-time augmentation and the mean ensemble of the models (submissions/extras-ensemble.csv).
#
#   bash studies/aptos_kaggle.sh --gpus 0,1        # arguments go to `grid.py run` of the grid's APTOS runs
#   MODELS="resnet50 deit_small" EXTRAS=1 bash studies/aptos_kaggle.sh
#   SMOKE=1 bash studies/aptos_kaggle.sh           # in miniature, on a CPU (studies/settings.sh), with tiny copies of
#                                                  # APTOS and DR-2015 (test labels included)
#
# Settings (environment; studies/settings.sh says more): MODELS (default: resnet50 efficientnet_b4), RUNS (the paper
# grid's records: runs; its APTOS runs of MODELS are trained first when missing), APTOS_ROOT (datasets/aptos, with
# test_images/), DR2015_ROOT (datasets/dr2015: trainLabels.csv and train/, and for the test labels
# retinopathy_solution.csv and test/), OUT (runs-aptos-kaggle), ADAMW_LR and ADAMW_WD (when not given: each model's
# best AdamW configuration among the grid's APTOS runs), TRAIN_OPTIONS (more train.py options for the new models),
# PLAN_OPTIONS, ANALYZE_OPTIONS, EXTRAS, SMOKE, LAUNCH, PYTHON.
# Writes, under OUT: submissions/<model>-original.csv, <model>-all-data-more.csv, <model>-all-data-less.csv (and
# extras-ensemble.csv), appendix_f.md and appendix_f.csv (the table), original/, offline/, all-data/ (the runs),
# grid-choice/ and report/ (analyze.py's reports of the grid's APTOS runs and of the new recipe's offline runs).
set -euo pipefail
source "$(dirname "$0")/settings.sh"
DATASETS=aptos  # this study's one dataset
study_defaults aptos "resnet50 efficientnet_b4" aptos
APTOS_ROOT="${APTOS_ROOT:-datasets/aptos}"
DR2015_ROOT="${DR2015_ROOT:-datasets/dr2015}"
RUNS="${RUNS:-runs}"
OUT="${OUT:-runs-aptos-kaggle}"
NAMES="$(model_names $MODELS)"
[ "$SMOKE" = 1 ] && smoke_fixture dr2015 --test-labels

# csv_row FILE KEY=VALUE... COLUMN...: the columns of the row of CSV FILE whose KEYs have these VALUEs, on one line
# (nothing when no row has them, an error when several do).
csv_row() {
  "$PYTHON" - "$@" <<'PY'
import csv, sys
path, words = sys.argv[1], sys.argv[2:]
wanted = dict(word.split("=", 1) for word in words if "=" in word)
with open(path, newline="") as f:
    rows = [row for row in csv.DictReader(f) if all(row[key] == value for key, value in wanted.items())]
if len(rows) > 1:
    sys.exit(f"aptos_kaggle.sh: error: {path} has {len(rows)} rows with {' '.join(wanted)}, expected one")
if rows:
    print(*(rows[0][column] for column in words if "=" not in column))
PY
}

# record_value RECORD KEY...: values of a run record's config.
record_value() {
  PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -c '
import sys
from common.runrecord import read_record
config = read_record(sys.argv[1])["config"]
print(*(config[key] for key in sys.argv[2:]))' "$@"
}

# retrain_argv RECORD: the train.py arguments that made the run of RECORD alone (a packed command reduced to its
# configuration), without --out and --save-weights, one per line.
retrain_argv() {
  PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -c '
import shlex, sys
from types import SimpleNamespace
from common import cli
from common.runrecord import read_record
from training.config import single_run_argv
record = read_record(sys.argv[1])
argv = single_run_argv(shlex.split(record["command"])[1:], SimpleNamespace(**record["config"]))
print("\n".join(cli.without_flags(argv, ("out", "save_weights"))))' "$1"
}

# only_record FOLDER: the one run record in FOLDER (a folder holds one final model; an error when it holds more).
only_record() {
  local records=("$1"/*.json)
  if [ "${#records[@]}" != 1 ] || [ ! -f "${records[0]}" ]; then
    echo "aptos_kaggle.sh: error: $1 holds ${#records[@]} run records, expected one (runs of an earlier command" \
         "with other options?): move the others away, or set another OUT" >&2
    exit 1
  fi
  echo "${records[0]}"
}

# submit RUNS FILE [evaluate.py options]: the Kaggle submission of RUNS (a record or a folder), as OUT/submissions/FILE
# (evaluate.py prints the scores of the splits held out, if any).
submit() {
  "$PYTHON" "$REPO/evaluate.py" "$1" --test-dir "$APTOS_ROOT/test_images" --submission "$OUT/submissions/$2" \
    --out "$OUT/evaluations" "${@:3}"
}

# 0. The paper grid's APTOS runs of these models (skipped when done), and its choices among them.
DATASETS=aptos MODELS="$NAMES" MANIFEST=manifests/paper-aptos.jsonl RUNS="$RUNS" \
  PLAN_OPTIONS="--root $APTOS_ROOT $PLAN_OPTIONS" bash "$STUDIES/paper_grid.sh" "$@"
# shellcheck disable=SC2086  # the options are lists of words
"$PYTHON" "$REPO/analyze.py" "$RUNS" --datasets aptos --models "$(commas $NAMES)" --compare optimizer \
  --out "$OUT/grid-choice" $SMOKE_ANALYZE $ANALYZE_OPTIONS > /dev/null
mkdir -p "$OUT/submissions"
if [ -f "$DR2015_ROOT/retinopathy_solution.csv" ]; then
  DR2015_USED="DR-2015 train + test labels"
else
  DR2015_USED="DR-2015 train labels only"
  echo "aptos_kaggle.sh: warning: $DR2015_ROOT/retinopathy_solution.csv is missing: the new models train on DR-2015's" \
       "35,126 training images only, not on all 88,702 graded ones (the test set's grades and test/ images: kaggle" \
       "competitions download -c diabetic-retinopathy-detection)" >&2
fi

declare -A CHOSEN GRID_QWK ADAMW
for model in $NAMES; do
  # 1. The original model: the grid's chosen run, retrained by its own command with its weights kept.
  chosen="$(csv_row "$OUT/grid-choice/tables/best.csv" "model=$model" run_id record selection_value)"
  read -r run_id record grid_qwk <<< "$chosen"
  argv="$(retrain_argv "$record")"
  mapfile -t argv <<< "$argv"
  # shellcheck disable=SC2086  # LAUNCH is a list of words
  $LAUNCH "$REPO/train.py" "${argv[@]}" --save-weights best --out "$OUT/original/$model"
  if [ ! -f "$OUT/original/$model/$run_id.json" ]; then
    echo "aptos_kaggle.sh: error: retraining $record did not make run $run_id in $OUT/original/$model (see the" \
         "train.py output above: was the grid trained by another version of the toolkit?)" >&2
    exit 1
  fi
  submit "$OUT/original/$model/$run_id.json" "$model-original.csv"
  CHOSEN[$model]="$(record_value "$record" optimizer schedule lr wd augment img_size)"
  GRID_QWK[$model]="$grid_qwk"

  # 2. The same model with the paper's interventions, under more and less augmentation.
  adamw_id="$(csv_row "$OUT/grid-choice/tables/comparison.csv" "model=$model" value=adamw run_id)"
  if [ -n "${ADAMW_LR:-}" ] && [ -n "${ADAMW_WD:-}" ]; then
    lr="$ADAMW_LR" wd="$ADAMW_WD"
  elif [ -n "$adamw_id" ]; then
    adamw="$(record_value "$RUNS/$adamw_id.json" lr wd)"
    read -r lr wd <<< "$adamw"
  else
    echo "aptos_kaggle.sh: error: the grid in $RUNS has no complete AdamW run of $model on APTOS to take the" \
         "learning rate and weight decay from: set ADAMW_LR and ADAMW_WD" >&2
    exit 2
  fi
  ADAMW[$model]="$lr $wd"
  for setting in more less; do
    recipe=(--dataset aptos --root "$APTOS_ROOT" --extra-train dr2015 --extra-root "$DR2015_ROOT" --model "$model"
            --augment "appendix-f-$setting" --img-size 512 --optimizer adamw --schedule cosine --lr "$lr" --wd "$wd")
    # shellcheck disable=SC2086  # LAUNCH and the options are lists of words
    $LAUNCH "$REPO/train.py" "${recipe[@]}" --save-weights none --out "$OUT/offline" $SMOKE_TRAIN $TRAIN_OPTIONS
    # shellcheck disable=SC2086
    $LAUNCH "$REPO/train.py" "${recipe[@]}" --train-on all --out "$OUT/all-data/$model-$setting" $SMOKE_TRAIN \
      $TRAIN_OPTIONS
    final="$(only_record "$OUT/all-data/$model-$setting")"
    submit "$final" "$model-all-data-$setting.csv"
  done
done

# 3. What can be measured offline: the validation QWK of the retrained originals and of the new recipe trained on
# the train split, per fine-tuning augmentation (paper = the original's).
# shellcheck disable=SC2086,SC2046  # the options are lists of words, and one folder a model
"$PYTHON" "$REPO/analyze.py" $(for model in $NAMES; do echo "$OUT/original/$model"; done) "$OUT/offline" \
  --datasets aptos --compare augment --out "$OUT/report" $SMOKE_ANALYZE $ANALYZE_OPTIONS > /dev/null

if [ "${EXTRAS:-0}" = 1 ]; then
  # The top Kaggle entry's extras, not the paper's recipe: trained on the train split, so that cut points are fitted
  # on val, then one ensemble of every model with flip test-time augmentation.
  for model in $NAMES; do
    read -r lr wd <<< "${ADAMW[$model]}"
    # shellcheck disable=SC2086  # LAUNCH and the options are lists of words
    $LAUNCH "$REPO/train.py" --dataset aptos --root "$APTOS_ROOT" --extra-train dr2015 --extra-root "$DR2015_ROOT" \
      --model "$model" --augment appendix-f-more --img-size 512 --head regression --regression-loss l1 --pool gem \
      --optimizer adamw --schedule cosine --lr "$lr" --wd "$wd" --out "$OUT/extras" $SMOKE_TRAIN $TRAIN_OPTIONS
  done
  scores="$(submit "$OUT/extras" extras-ensemble.csv --ensemble mean --tta flips)"
  echo "$scores"
  # the ensemble's val QWK (the only model's, with one)
  EXTRAS_QWK="$(awk '$2 == "val" { last = $4; if ($1 == "ensemble") ensemble = $4 }
                     END { print (ensemble != "" ? ensemble : last) }' <<< "$scores")"
fi

# The table: one row per model and experiment, the leaderboard's columns left to fill in.
qwk() {  # qwk VALUE: four decimals, or "-" when the run did not complete
  if [ -n "$1" ]; then printf '%.4f' "$1"; else printf -- '-'; fi
}
ROWS=()
for model in $NAMES; do
  read -r optimizer schedule lr wd augment img_size <<< "${CHOSEN[$model]}"
  retrained="$(csv_row "$OUT/report/tables/comparison.csv" "model=$model" "value=$augment" result)"
  ROWS+=("$model|original (\"we submitted the original models we trained\")|APTOS train split|$optimizer $schedule\
 lr $lr wd $wd, $augment augmentation, $img_size px|$(qwk "${GRID_QWK[$model]}") (grid), $(qwk "$retrained")\
 (retrained)|submissions/$model-original.csv")
  for setting in more less; do
    offline="$(csv_row "$OUT/report/tables/comparison.csv" "model=$model" "value=appendix-f-$setting" result)"
    final="$(only_record "$OUT/all-data/$model-$setting")"
    config="$(record_value "$final" optimizer schedule lr wd augment img_size)"
    read -r optimizer schedule lr wd augment img_size <<< "$config"
    ROWS+=("$model|all data, $setting augmentation|APTOS train + val, $DR2015_USED|$optimizer $schedule lr $lr wd\
 $wd, $augment augmentation, $img_size px|$(qwk "$offline") (APTOS train split + DR-2015)|\
submissions/$model-all-data-$setting.csv")
  done
done
if [ "${EXTRAS:-0}" = 1 ]; then
  ROWS+=("$NAMES|extras, not Appendix F: regression head (L1 loss), GeM, flip TTA, mean ensemble|APTOS train split\
 + $DR2015_USED|adamw cosine at each model's lr and wd above, appendix-f-more augmentation|$(qwk "$EXTRAS_QWK")\
 (ensemble, flip TTA, cut points fitted on val)|submissions/extras-ensemble.csv")
fi
{
  echo "# APTOS 2019 on Kaggle: the paper's Appendix F, one submission per model and experiment"
  echo
  echo "Submit each file to aptos2019-blindness-detection (late submissions are scored) and fill in the leaderboard"
  echo "columns. Appendix F: the new models \"do at least 0.03 QWK points better\" than the originals. The val QWK of"
  echo "a new model is that of the same recipe trained on APTOS's train split (plus DR-2015) and chosen on val: the"
  echo "submitted model trains on train + val and keeps its last epoch."
  echo
  echo "| model | experiment | trained on | configuration | val QWK (offline) | submission file | public LB | private LB |"
  echo "|---|---|---|---|---|---|---|---|"
  for row in "${ROWS[@]}"; do echo "| ${row//|/ | } |  |  |"; done
} > "$OUT/appendix_f.md"
{
  echo "model,experiment,trained_on,configuration,val_qwk,submission,public_lb,private_lb"
  for row in "${ROWS[@]}"; do
    row="${row//\"/\"\"}"  # CSV doubles the quotes inside a field
    echo "\"${row//|/\",\"}\",,"
  done
} > "$OUT/appendix_f.csv"
echo "aptos_kaggle.sh: the table of submissions is $OUT/appendix_f.md"
