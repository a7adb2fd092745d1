"""Plan, run, watch and cost a grid of train.py runs: the paper's study is 19 models x 6 datasets x 60 configurations.

    python grid.py plan --datasets aptos hpa --models resnet50 densenet121       # -> grid.jsonl, one command a run
    python grid.py plan --datasets digits --models resnet18 --grid product --lr 0.1 0.01 --weights random --epochs 2
    python grid.py run --gpus 0,1,2,3             # the pending runs, one per GPU; resumable, lock per run
    python grid.py run --slots 2 --pack 5         # on a CPU, two processes, five configurations packed in each
    python grid.py status                         # per dataset x model: complete/running/.../pending, best, time left
    python grid.py slurm --partition gpu > study.sbatch && sbatch study.sbatch   # a job array, a task per pack
    python grid.py estimate --paper --gpus 8      # GPU-hours and wall-clock of the paper's full study

`plan` asks train.py for the runs (train.plan_runs: the same run ids train.py makes) of every dataset x model x seed
x configuration of the grid, writes them to a manifest (JSON lines: run id, train.py arguments, folder, config) and
prints one train.py command per run still to do, for `xargs -P` or GNU parallel. The paper's grid is the default:
SGD (Nesterov) with cosine and with step schedules at lr 1e-1..1e-4, AdamW with cosine at lr 1e-2..1e-5, each with
wd 1e-3..1e-6 and 0 (60 configurations). train.py's own --optimizer, --schedule, --lr and --wd (several values
each) restrict it; `--grid product` takes exactly the values given; `--grid FILE` reads a JSON list of blocks, each
{"optimizer": [...], "schedule": [...], "lr": [...], "wd": [...]}. Every other option goes to train.py as it is
(e.g. --weights random --epochs 2); grid runs keep no weights unless given --save-weights best.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
from pathlib import Path

import cli
import errors
import grid_estimate
import grid_run
import grid_slurm
from grid_status import entries_from_records, format_status, status_report
import models
from data import REGISTRY as DATASETS
from grid_state import (AXES, DEFAULT_STALE_AFTER_S, FINISHED, Entry, live_holder, read_manifest, read_record,
                        write_manifest)

WEIGHT_DECAYS = [1e-3, 1e-4, 1e-5, 1e-6, 0.0]
GRIDS = {  # the paper's 60 configurations (Section 3 and the authors' code)
    "paper": [{"optimizer": ["sgd"], "schedule": ["cosine", "step"], "lr": [1e-1, 1e-2, 1e-3, 1e-4], "wd": WEIGHT_DECAYS},
              {"optimizer": ["adamw"], "schedule": ["cosine"], "lr": [1e-2, 1e-3, 1e-4, 1e-5], "wd": WEIGHT_DECAYS}],
    "product": [{}],  # exactly the values given by --optimizer/--schedule/--lr/--wd (train.py's default otherwise)
}
RESERVED = {"--dataset": "--datasets", "--model": "--models", "--seed": "--seeds",
            "--until-epoch": "grid.py run --halving"}
DEFAULT_MANIFEST = "grid.jsonl"


# --- plan ----------------------------------------------------------------------------------------------------------

def load_grid(name: str) -> list[dict]:
    if name in GRIDS:
        return [dict(block) for block in GRIDS[name]]
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
    """Every run of the grid, as train.plan_runs makes them (the dataset and split are opened, nothing trained)."""
    import train  # torch: only planning needs it
    model_names = [name for given in model_names for name in (models.group_models(given) or [given])]
    for flag, instead in RESERVED.items():
        if any(token == flag or token.startswith(flag + "=") for token in passthrough):
            raise errors.UsageError(f"{flag} is set by the grid; use {instead}")
    check_train_options(train.build_parser(), passthrough, datasets[0], model_names[0])
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
                    for run in train.plan_runs(argv):
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
    return shlex.join([sys.executable, str(grid_run.TRAIN_PY), *entry.argv])


def cmd_plan(args: argparse.Namespace, passthrough: list[str]) -> int:
    wanted = {axis: getattr(args, axis) for axis in AXES if getattr(args, axis)}
    blocks = restrict(load_grid(args.grid), wanted)
    entries = plan(args.datasets, args.models, args.seeds, blocks, passthrough)
    write_manifest(args.manifest, entries)
    pending = [e for e in entries if (read_record(e) or {}).get("status") not in FINISHED]
    for entry in pending:
        print(train_command(entry))
    print(f"grid.py: {len(entries)} runs ({len(pending)} to do) written to {args.manifest}", file=sys.stderr)
    return 0


# --- status --------------------------------------------------------------------------------------------------------

def cmd_status(args: argparse.Namespace) -> int:
    manifest = args.manifest or (DEFAULT_MANIFEST if Path(DEFAULT_MANIFEST).exists() and not args.folders else None)
    if manifest:
        entries = read_manifest(manifest)
    elif not args.folders and not Path("runs").is_dir():
        raise errors.UsageError(f"neither {DEFAULT_MANIFEST} nor runs/ in {Path.cwd()}: run in the study's folder, or "
                                "give the manifest (--manifest FILE) or the folder of run records")
    else:
        entries = []
        for folder in args.folders or ["runs"]:
            if not Path(folder).is_dir():
                raise errors.UsageError(f"{folder}: no such folder; give the folder of run records (train.py --out) "
                                        "or the manifest (--manifest FILE)")
            found = entries_from_records(Path(folder))
            if not found:
                raise errors.UsageError(f"{folder}: no run records (<run_id>.json) in it; give the folder train.py "
                                        "wrote to (--out) or the manifest (--manifest FILE)")
            entries += found
    report = status_report(entries, args.stale_after)
    print(json.dumps(report, indent=2, sort_keys=True) if args.json else format_status(report))
    return 0


# --- run, slurm, estimate ------------------------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    entries = read_manifest(args.manifest)
    if args.runs:
        entries = grid_run.entries_with_ids(entries, args.runs)
    measured = grid_estimate.load_throughput(args.throughput) if args.throughput else None
    runner = grid_run.Runner(entries, grid_run.make_slots(args.gpus, args.slots, args.gpus_per_run), pack=args.pack,
                             halving=args.halving, retries=args.retries, stale_after=args.stale_after,
                             measured=measured)
    status = runner.run()
    print(format_status(status_report(entries, args.stale_after)))
    if status == 143:
        print("grid.py: stopped; the runs saved their state: the same command resumes them", file=sys.stderr)
    return status


def cmd_slurm(args: argparse.Namespace) -> int:
    entries = read_manifest(args.manifest)
    todo = [e for e in entries if (read_record(e) or {}).get("status") not in FINISHED]
    held = [e for e in todo if live_holder(e, args.stale_after)]
    todo = [e for e in todo if e not in held]
    measured = grid_estimate.load_throughput(args.throughput) if args.throughput else None
    groups: dict[tuple, list[Entry]] = {}
    for entry in todo:
        groups.setdefault(entry.group, []).append(entry)
    packs = []
    for members in groups.values():
        size = int(args.pack) if args.pack != "auto" else grid_estimate.pack_size(
            [e.config for e in members], int(args.gpu_memory * 2**30), measured) if args.gpus_per_run else 1
        packs += grid_run.form_packs(members, size)
    logs = Path(args.logs).resolve()
    script = grid_slurm.sbatch_script(packs, Path(args.manifest), partition=args.partition,
                                      gpus_per_run=args.gpus_per_run, max_parallel=args.max_parallel,
                                      max_array_size=args.max_array_size, time_limit=args.time,
                                      cpus_per_run=args.cpus_per_run, job_name=args.job_name, logs=logs,
                                      extra=args.sbatch_option)
    logs.mkdir(parents=True, exist_ok=True)  # Slurm opens the output files before the script runs
    print(script, end="")
    tasks = min(len(packs), args.max_array_size)
    print(f"grid.py: {len(todo)} runs to do in {len(packs)} packs, {tasks} array tasks "
          f"({len(entries) - len(todo) - len(held)} finished, {len(held)} running elsewhere and left out)",
          file=sys.stderr)
    if len(packs) > tasks:
        fewest, most = len(packs) // tasks, math.ceil(len(packs) / tasks)
        print(f"grid.py: {len(packs)} packs are more than --max-array-size {tasks} (Slurm's MaxArraySize): each array "
              f"task runs {fewest if fewest == most else f'{fewest} or {most}'} packs one after another",
              file=sys.stderr)
    return 0


def cmd_estimate(args: argparse.Namespace) -> int:
    measured = grid_estimate.load_throughput(args.throughput) if args.throughput else None
    if args.paper:
        rows, found = grid_estimate.paper_study(args.precision or "bf16"), []
    elif args.precision:
        raise errors.UsageError(f"--precision {args.precision} is for --paper; a manifest's runs train in the "
                                "precision they were planned with (grid.py plan ... --precision no|bf16)")
    else:
        entries = read_manifest(args.manifest)
        rows = grid_estimate.manifest_rows([e.config for e in entries])
        found = [record for record in map(read_record, entries) if record]
    result = grid_estimate.estimate(rows, args.gpus, measured, found)
    print(json.dumps(result, indent=2, sort_keys=True) if args.json else grid_estimate.format_estimate(result))
    return 0


# --- command line --------------------------------------------------------------------------------------------------

def pack_setting(text: str) -> str:
    if text != "auto" and not (text.isdigit() and int(text) >= 1):
        raise argparse.ArgumentTypeError(f"'{text}' is neither 'auto' nor a number of configurations (1 or more)")
    return text


def whole_number(minimum: int, what: str = "a whole number"):
    """An argparse type: a whole number of `minimum` or more."""
    def parse(text: str) -> int:
        if not text.isdigit() or int(text) < minimum:
            raise argparse.ArgumentTypeError(f"'{text}' is not {what} of {minimum} or more")
        return int(text)
    return parse


positive_int, count = whole_number(1), whole_number(0)
halving_factor = whole_number(2, "a halving factor: a whole number")


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"'{text}' is not a positive number")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False,
                                     formatter_class=cli.HelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    options = {"formatter_class": cli.HelpFormatter, "allow_abbrev": False}

    p = commands.add_parser("plan", help="write the manifest of a grid and print its train.py commands", **options)
    p.add_argument("--datasets", nargs="+", required=True, choices=sorted(DATASETS), metavar="DATASET",
                   help=f"datasets from the registry in data/: {', '.join(sorted(DATASETS))}")
    p.add_argument("--models", nargs="+", required=True, help="models from models.py (or timm names), or a group of "
                                                             "its registry: testbed (the paper's 19), clip, later")
    p.add_argument("--grid", default="paper", help="'paper' (60 configurations), 'product' (exactly the values "
                                                   "given below) or a JSON file of blocks")
    p.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds: one run of each configuration per seed")
    p.add_argument("--optimizer", nargs="+", help="restrict the grid to these optimizers (sgd, adamw)")
    p.add_argument("--schedule", nargs="+", help="restrict the grid to these schedules (cosine, step)")
    p.add_argument("--lr", nargs="+", type=float, help="restrict the grid to these learning rates")
    p.add_argument("--wd", nargs="+", type=float, help="restrict the grid to these weight decays")
    p.add_argument("--manifest", default=DEFAULT_MANIFEST, help="manifest file to write (JSON lines)")

    p = commands.add_parser("status", help="what is complete, running, failed or left, and the time left", **options)
    p.add_argument("folders", nargs="*", help="folders of run records, read when no manifest is used "
                                              "(when neither is given: runs/)")
    p.add_argument("--manifest", help=f"manifest of the grid (when not given: {DEFAULT_MANIFEST} if it exists and "
                                      "no folder is given)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")

    p = commands.add_parser("run", help="run the manifest's pending runs on this machine", **options)
    p.add_argument("--gpus", help="comma-separated GPU ids to run on, e.g. 0,1,2,3 (when not given: --slots)")
    p.add_argument("--slots", type=positive_int, default=1,
                   help="runs at a time without --gpus, on the environment's devices")
    p.add_argument("--gpus-per-run", type=positive_int, default=1, help="processes (GPUs) per run: accelerate launch "
                                                               "--multi_gpu --num_processes N when above 1")
    p.add_argument("--pack", type=pack_setting, default="auto", help="configurations per train.py process: a number, "
                   "or 'auto' (on GPUs as many as the input path can feed and the memory holds; 1 without --gpus)")
    p.add_argument("--halving", type=halving_factor, help="successive halving with this factor (e.g. 3: all "
                   "configurations for a third of the epochs, the best third for another third, ...); off when "
                   "not given")
    p.add_argument("--retries", type=count, default=1, help="times a failed run is tried again by this command")
    p.add_argument("--runs", nargs="+", help="only these run ids of the manifest (what a Slurm array task runs)")
    p.add_argument("--throughput", help="benchmarks/train_throughput.py --json output, for --pack auto")

    p = commands.add_parser("slurm", help="print a Slurm job-array script for the pending runs", **options)
    p.add_argument("--partition", help="Slurm partition (when not given: the cluster's default)")
    p.add_argument("--gpus-per-run", type=count, default=1, help="GPUs per array task (--gres=gpu:N); 0 for CPU jobs")
    p.add_argument("--cpus-per-run", type=positive_int, default=8,
                   help="CPU cores per array task (data-loading workers)")
    p.add_argument("--max-parallel", type=positive_int, default=64, help="array tasks running at once (%%M)")
    p.add_argument("--max-array-size", type=positive_int, default=1001, help="the most array tasks the cluster "
                   "accepts (its MaxArraySize); with more packs, each task runs several one after another")
    p.add_argument("--time", default="24:00:00", help="time limit of each array task")
    p.add_argument("--pack", type=pack_setting, default="1", help="configurations per array task: a number, or "
                   "'auto' (as many as the input path can feed and --gpu-memory holds)")
    p.add_argument("--gpu-memory", type=float, default=80.0, help="GiB of memory of the cluster's GPUs, for --pack auto")
    p.add_argument("--throughput", help="benchmarks/train_throughput.py --json output, for --pack auto")
    p.add_argument("--job-name", default="grid", help="Slurm job name")
    p.add_argument("--logs", default="slurm-logs", help="folder of the array tasks' output files")
    p.add_argument("--sbatch-option", action="append", default=[], help="one more #SBATCH option, e.g. "
                   "--sbatch-option=--account=abc (repeat for more)")

    p = commands.add_parser("estimate", help="GPU-hours and wall-clock of the planned runs", **options)
    p.add_argument("--paper", action="store_true", help="estimate the paper's full study (19 models x 6 datasets x "
                                                        "60 configurations) instead of a manifest")
    p.add_argument("--gpus", type=positive_int, default=1, help="GPUs the runs share, for the wall-clock")
    p.add_argument("--precision", choices=["bf16", "fp32"], help="with --paper: the training precision (when not "
                   "given: bf16, train.py's default on GPUs); a manifest's runs use their planned precision")
    p.add_argument("--throughput", help="benchmarks/train_throughput.py --json output measured on your machine "
                                        "(when not given: the documented H200 table)")
    p.add_argument("--json", action="store_true", help="print the estimate as JSON")

    for name in ("status", "run", "slurm", "estimate"):
        sub = commands.choices[name]
        if name != "status":
            sub.add_argument("--manifest", default=DEFAULT_MANIFEST, help="manifest written by grid.py plan")
        if name != "estimate":
            sub.add_argument("--stale-after", type=positive_float, default=DEFAULT_STALE_AFTER_S, help="seconds "
                             "after which another host's lock that is no longer touched is stale")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, passthrough = parser.parse_known_args(argv)
    if passthrough and args.command != "plan":
        parser.error(f"unrecognized arguments: {' '.join(passthrough)}")
    if args.command == "plan":
        return cmd_plan(args, passthrough)
    return {"status": cmd_status, "run": cmd_run, "slurm": cmd_slurm, "estimate": cmd_estimate}[args.command](args)


if __name__ == "__main__":
    errors.run_main("grid.py", main)
