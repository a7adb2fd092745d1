"""The networks: `registry` (every architecture the toolkit knows, as data: weights, ImageNet top-1 and its source,
parameters, input size, normalisation; torch-free, so the analysis reads it cheaply) and `networks` (building one:
a fresh head, the requested weights, GeM pooling, extra input channels; torch and timm).
"""
