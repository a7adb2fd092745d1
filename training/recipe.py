"""The paper's fine-tuning recipe: the one place for its grid, its defaults and LP-FT's settings (no torch here).

Section 3: "We fine-tune each model ... using both SGD with momentum 0.9 and AdamW ... with a cosine annealing
learning rate schedule for 30 epochs [and] a step schedule [with SGD]"; the authors' code gives the values below.
Per dataset the registry (data/__init__.py) holds what varies: the epochs (Melanoma 10), the step milestones
(15/20/25; Melanoma 5) and the input size; models.input_size decides a model's size.
"""
from __future__ import annotations

import itertools
import math

# train.py's flags that take several values: every combination is a run, and runs that differ only in these can
# be trained together in one process ("packed"). The per-model grid of the paper is over these axes.
PACKED = ("optimizer", "schedule", "lr", "wd")
# The settings the paper tunes per model (the packed axes), plus the augmentation of the ablation (App. G).
TUNED = (*PACKED, "augment")

WEIGHT_DECAYS = (1e-3, 1e-4, 1e-5, 1e-6, 0.0)
PAPER_GRID = (  # Section 3 and the authors' code
    {"optimizer": ("sgd",), "schedule": ("cosine", "step"), "lr": (1e-1, 1e-2, 1e-3, 1e-4), "wd": WEIGHT_DECAYS},
    {"optimizer": ("adamw",), "schedule": ("cosine",), "lr": (1e-2, 1e-3, 1e-4, 1e-5), "wd": WEIGHT_DECAYS},
)
PAPER_CONFIGURATIONS = sum(math.prod(len(values) for values in block.values()) for block in PAPER_GRID)  # 60

# One run's defaults (train.py without the packed flags): the paper's optimizer and schedule at a middle lr.
DEFAULTS = {"optimizer": ("sgd",), "schedule": ("cosine",), "lr": (0.01,), "wd": (1e-4,)}
BATCH_SIZE = 128           # global, split evenly over processes
SGD_MOMENTUM = 0.9         # with Nesterov
STEP_GAMMA = 0.1           # the step schedule multiplies the learning rate by this at each milestone

# LP-FT (section 5.2): "During the linear probe, we search over 1e-1, 1e-2 and 1e-3 learning rates, and during
# fine-tuning, over 1e-4, 1e-5 and 1e-6. For both parts, we search over 1e-3 to 1e-6 and 0 for weight decay";
# "AdamW with a cosine decay schedule", "a third of the epochs going toward linear probing".
PROBE_LR = (1e-1, 1e-2, 1e-3)
FINETUNE_LR = (1e-4, 1e-5, 1e-6)
LP_FT_DEFAULTS = {"optimizer": ("adamw",), "schedule": ("cosine",), "lr": FINETUNE_LR, "wd": WEIGHT_DECAYS}


def default_values(flag: str, lp_ft: bool = False) -> tuple:
    """The values a packed flag takes when train.py is not given it."""
    return (LP_FT_DEFAULTS if lp_ft else DEFAULTS)[flag]


def probe_epochs(total: int) -> int:
    """A third of the epochs go to the linear probe (at least one, and at least one left for fine-tuning)."""
    return min(max(1, round(total / 3)), total - 1)


def paper_configurations() -> list[dict]:
    """The paper's 60 configurations, one dict of the packed axes each, in grid order."""
    return [dict(zip(block, values)) for block in PAPER_GRID for values in itertools.product(*block.values())]
