"""Scoring finished runs (evaluate.py): `options` (the command line, typed and checked), `members` (which runs, on
which data, and whether they can be ensembled), `scoring` (models and saved predictions scored as train.py scores
them), `command` (the steps of one evaluation), `submissions` (Kaggle submission files in each competition's format).
"""
