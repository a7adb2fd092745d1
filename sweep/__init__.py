"""Grids of train.py runs (grid.py), kept apart from the trainer as timm's bulk_runner is: `plan` (the manifest of
a grid, with train.py's own run ids), `state` (manifest, locks, launch logs), `runner` (running pending runs here:
slots, packing, retries, signals), `halving` (successive halving), `slurm` (job-array scripts), `status` (what is
done and left), `estimate` (GPU-hours). No torch, except estimate's parameter counts.
"""
