"""Scoring finished runs (evaluate.py): `options` (the command line, typed and checked), `members` (which runs, on
which data, and whether they can be ensembled), `scoring` (models and saved predictions scored as train.py scores
them), `command` (the steps of one evaluation), `submissions` (Kaggle submission files in each competition's format);
and measuring a model's ImageNet top-1 (--imagenet-val): `imagenet_layout` (the validation images and their labels
in either layout), `imagenet_top1` (the model's own transform, the count, its interval, the record and models-file
entry).
"""
