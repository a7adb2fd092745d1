"""Fréchet Inception Distance between ImageNet and each dataset (fid.py), apart from the network as pytorch-fid
keeps it: `inception` (the FID Inception network and its weights), `inputs` (datasets, image folders and
statistics files as inputs, with their subsets), `features` (images to statistics), `distance` (the distance and
statistics files), `command` (a pair, or the paper's table). The constants here are torch-free, for fid.py's parser.
"""
DIMS = (64, 192, 768, 2048)  # feature dimensions: first max pool, second max pool, pre-aux (Mixed_6e), pool3
DEFAULT_SUBSET = 3662        # APTOS's number of labelled images: every dataset is measured at this size
