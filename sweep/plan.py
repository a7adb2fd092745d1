"""Planning a grid (grid.py plan): every dataset x model x seed x configuration of a grid, as the runs train.py
itself would make (training.config.plan_runs: the same run ids), written to a manifest.

The paper's grid (training/recipe.py) is the default: SGD (Nesterov) with cosine and with step schedules at lr
1e-1..1e-4, AdamW with cosine at lr 1e-2..1e-5, each with wd 1e-3..1e-6 and 0 (60 configurations). train.py's own
--optimizer, --schedule, --lr and --wd restrict it; "product" takes exactly the values given; a JSON file holds a
list of blocks, each {"optimizer": [...], "schedule": [...], "lr": [...], "wd": [...]}. No torch here.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
from pathlib import Path

from common import cli, errors, runrecord
from nets import models_file, registry
from sweep.state import Entry, record_of, write_manifest
from training.config import plan_runs
from training.options import build_parser
from training.recipe import PACKED as AXES
from training.recipe import PAPER_GRID

TRAIN_PY = Path(__file__).resolve().parents[1] / "train.py"
GRIDS = {
    "paper": PAPER_GRID,
    "product": ({},),  # exactly the values given by --optimizer/--schedule/--lr/--wd (train.py's default otherwise)
}
RESERVED = {"--dataset": "--datasets", "--model": "--models", "--seed": "--seeds",
            "--until-epoch": "grid.py run --halving"}


def load_grid(name: str) -> list[dict]:
    """The blocks of the grid `name`: "paper", "product", or a JSON file of blocks."""
    if name in GRIDS:
        return [{axis: list(values) for axis, values in block.items()} for block in GRIDS[name]]
    try:
        blocks = json.loads(Path(name).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise errors.UsageError(f"--grid {name}: neither {', '.join(GRIDS)} nor an existing JSON file") from None
    except (OSError, json.JSONDecodeError) as error:
        raise errors.DataError(f"--grid {name}: cannot read the grid file ({error})") from error
    numbers = ("lr", "wd")
    if not isinstance(blocks, list) or not all(isinstance(b, dict) and set(b) <= set(AXES) for b in blocks) or not all(
            isinstance(v, list) and v and all(isinstance(x, (int, float)) == (axis in numbers) for x in v)
            for b in blocks for axis, v in b.items()):
        raise errors.DataError(f"{name}: a grid file is a JSON list of blocks, each mapping some of "
                               f"{', '.join(AXES)} to a non-empty list of values (numbers for lr and wd)")
    return [{axis: [float(x) if axis in numbers else x for x in v] for axis, v in b.items()} for b in blocks]


def same(a, b) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return str(a) == str(b)
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)


def restrict(blocks: list[dict], wanted: dict[str, list]) -> list[dict]:
    """Each block with every axis cut down to the wanted values; a wanted value no block has is an error."""
    result = []
    for block in blocks:
        block = dict(block)
        for axis, values in wanted.items():
            block[axis] = [v for v in block[axis] if any(same(v, w) for w in values)] if axis in block else values
        if all(block.values()):
            result.append(block)
    for axis, values in wanted.items():
        if not all(axis in b for b in blocks):  # an axis the grid leaves to train.py takes the values given
            continue
        unknown = [w for w in values if not any(same(v, w) for b in blocks for v in b[axis])]
        if unknown:
            offered = sorted({str(v) for b in blocks for v in b.get(axis, [])})
            raise errors.UsageError(f"--{axis} {' '.join(map(str, unknown))}: not in this grid ({axis} values: "
                                    f"{' '.join(offered)}); `--grid product` runs exactly the values given")
    if wanted and not result:
        asked = " ".join(f"--{axis} {' '.join(map(str, values))}" for axis, values in wanted.items())
        raise errors.UsageError(f"{asked}: no block of this grid has these values together, so nothing would run; "
                                f"`python grid.py plan --help` names the grids, `--grid product` runs any combination")
    return result


def plan(datasets: list[str], model_names: list[str], seeds: list[int], blocks: list[dict],
         passthrough: list[str]) -> list[Entry]:
    """Every run of the grid, as training.config.plan_runs makes them (the dataset and split are opened, nothing
    trained)."""
    models_file.use(next(iter(cli.flag_values(passthrough, "models_file")), None))  # its groups count too
    model_names = [name for given in model_names for name in (registry.group_models(given) or [given])]
    for flag, instead in RESERVED.items():
        if any(token == flag or token.startswith(flag + "=") for token in passthrough):
            raise errors.UsageError(f"{flag} is set by the grid; use {instead}")
    check_train_options(build_parser(), passthrough, datasets[0], model_names[0])
    if not any(t == "--save-weights" or t.startswith("--save-weights=") for t in passthrough):
        passthrough = [*passthrough, "--save-weights", "none"]  # 6,840 runs of weights would need terabytes
    entries: dict[str, Entry] = {}
    for dataset in datasets:
        for model in model_names:
            for seed in seeds:
                for block in blocks:
                    argv = [*passthrough, "--dataset", dataset, "--model", model, "--seed", str(seed)]
                    for axis, values in block.items():
                        argv += [f"--{axis}", *(format(v, "g") if isinstance(v, float) else str(v) for v in values)]
                    for run in plan_runs(argv):
                        entries.setdefault(run["run_id"], Entry(run["run_id"], tuple(run["argv"]), os.getcwd(),
                                                                run["config"]))
    return list(entries.values())


def check_train_options(parser: argparse.ArgumentParser, passthrough: list[str], dataset: str, model: str) -> None:
    """The options grid.py passes on to train.py, parsed once by train.py's own parser before anything is planned:
    a mistake is one line, not train.py's usage under grid.py's name. Options go by their full names (the grid
    reads some of them, e.g. --dataset, which an abbreviation would hide)."""
    def refuse(message: str):
        raise errors.UsageError(f"train.py option: {message} (`python train.py --help` lists train.py's options, "
                                "by the full names grid.py takes)")

    parser.error, parser.allow_abbrev = refuse, False
    parser.parse_args([*passthrough, "--dataset", dataset, "--model", model])


def train_command(entry: Entry) -> str:
    return shlex.join([sys.executable, str(TRAIN_PY), *entry.argv])


def plan_grid(datasets: list[str], model_names: list[str], seeds: list[int], grid: str, wanted: dict[str, list],
              passthrough: list[str], manifest: str) -> int:
    """grid.py plan: write the manifest and print one train.py command per run still to do."""
    blocks = restrict(load_grid(grid), wanted)
    entries = plan(datasets, model_names, seeds, blocks, passthrough)
    write_manifest(manifest, entries)
    pending = [e for e in entries if not runrecord.is_finished(record_of(e))]
    for entry in pending:
        print(train_command(entry))
    print(f"grid.py: {len(entries)} runs ({len(pending)} to do) written to {manifest}", file=sys.stderr)
    return 0
