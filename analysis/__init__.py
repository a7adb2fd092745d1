"""The paper's analysis from run records (analyze.py), torch-free, in the order it runs: `options` (analyze.py's
settings), `reading` (which records are usable), `selection` (each model's best configuration with intervals, drawn
on `resampling`'s per-dataset resamples), `reference` (results files: --export, --reference), `trends` (fits
against ImageNet top-1 and model size), `appendix_n` (F-tests, Spearman correlations), `benchmark` (the §6 score
with its interval and ranks), `pipeline` (the whole analysis), `figures` and `report` (what is written).
"""
