"""Packing a grid's runs: runs that differ only in optimizer, schedule, learning rate or weight decay train together
in one train.py process (train.py takes several values of each and trains their product), so a pack must be a
product of values.
"""
from __future__ import annotations

import math

from common import cli
from sweep.state import AXES, Entry


def form_packs(candidates: list[Entry], size: int) -> list[list[Entry]]:
    """Split one group's runs into packs of at most `size` that are each a product (optimizer x schedule x lr x
    wd) of values, so train.py can take each pack as one command: learning rates with the same set of weight
    decays are tiled into rectangles of up to `size` configurations."""
    packs = []
    by_method: dict[tuple, dict] = {}
    for entry in candidates:
        optimizer, schedule, lr, wd = entry.axes
        by_method.setdefault((optimizer, schedule), {}).setdefault(lr, []).append(entry)
    for rows in by_method.values():
        by_decays: dict[tuple, list[list[Entry]]] = {}
        for row in rows.values():
            by_decays.setdefault(tuple(e.config["wd"] for e in row), []).append(row)
        for decays, block in by_decays.items():
            width = min(len(decays), size)
            height = max(1, size // width)
            for i in range(0, len(block), height):
                for j in range(0, len(decays), width):
                    packs.append([e for row in block[i:i + height] for e in row[j:j + width]])
    return packs


def pack_argv(entries: list[Entry], until_epoch: int | None) -> list[str]:
    """train.py's arguments for a pack: the shared ones, then each axis with its values (as the plan wrote them)."""
    argv = cli.without_flags(entries[0].argv, AXES)
    for axis in AXES:
        values = list(dict.fromkeys(cli.flag_values(e.argv, axis)[0] for e in entries))
        argv += [f"--{axis.replace('_', '-')}", *values]
    assert math.prod(len(cli.flag_values(argv, a)) for a in AXES) == len(entries), "a pack must be a product"
    return argv + ([] if until_epoch is None else ["--until-epoch", str(until_epoch)])
