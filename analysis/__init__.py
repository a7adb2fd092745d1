"""The paper's analysis from run records (analyze.py), torch-free, in the order it runs: `reading` (which records
are usable), `selection` (each model's best configuration with intervals), `trends` (fits against ImageNet top-1
and model size), `appendix_n` (F-tests, Spearman correlations, the benchmark score), `pipeline` (the whole
analysis), `figures` and `report` (what is written).
"""
