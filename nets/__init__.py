"""The networks: `registry` (every architecture the toolkit knows, as data: weights, ImageNet top-1 and its source,
parameters, input size, normalisation; torch-free, so the analysis reads it cheaply), `models_file` (a user's own
models added to it with --models-file; torch-free), `weights` (pretrained weights in the libraries' caches: found
without the network, downloaded ahead with models.py --download, failing in seconds when missing) and `networks`
(building one: a fresh head, the requested weights, GeM pooling, extra input channels; torch and timm).
"""
