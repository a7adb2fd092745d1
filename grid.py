"""Plan, run, watch and cost a grid of train.py runs: the paper's study is 19 models x 6 datasets x 60 configurations.

    python grid.py plan --datasets aptos hpa --models resnet50 densenet121       # -> grid.jsonl, one command a run
    python grid.py plan --datasets digits --models resnet18 --grid product --lr 0.1 0.01 --weights random --epochs 2
    python grid.py run --gpus 0,1,2,3             # the pending runs, one per GPU; resumable, lock per run
    python grid.py run --slots 2 --pack 5         # on a CPU, two processes, five configurations packed in each
    python grid.py status                         # per dataset x model: complete/running/.../pending, best, time left
    python grid.py slurm --partition gpu > study.sbatch && sbatch study.sbatch   # a job array, a task per pack
    python grid.py estimate --paper --gpus 8      # GPU-hours and wall-clock of the paper's full study

`plan` asks train.py for the runs (training.config.plan_runs: the same run ids train.py makes) of every dataset x model
x seed x configuration of the grid, writes them to a manifest (JSON lines: run id, train.py arguments, folder, config)
and prints one train.py command per run still to do, for `xargs -P` or GNU parallel. The paper's grid is the default:
SGD (Nesterov) with cosine and with step schedules at lr 1e-1..1e-4, AdamW with cosine at lr 1e-2..1e-5, each with wd
1e-3..1e-6 and 0 (60 configurations). train.py's own --optimizer, --schedule, --lr and --wd (several values each)
restrict it; `--grid product` takes exactly the values given; `--grid FILE` reads a JSON list of blocks, each
{"optimizer": [...], "schedule": [...], "lr": [...], "wd": [...]}. Every other option goes to train.py as it is (e.g.
--weights random --epochs 2); grid runs keep no weights unless given --save-weights best.
"""
from __future__ import annotations

import argparse

from common import cli, errors
from data import REGISTRY
from sweep.cost import show_estimate
from sweep.plan import plan_grid
from sweep.runner import run_grid
from sweep.slurm import write_script
from sweep.state import DEFAULT_MANIFEST, DEFAULT_STALE_AFTER_S
from sweep.status import show_status
from training.recipe import PACKED


def pack_setting(text: str) -> str:
    if text != "auto" and not (text.isdigit() and int(text) >= 1):
        raise argparse.ArgumentTypeError(f"'{text}' is neither 'auto' nor a number of configurations (1 or more)")
    return text


halving_factor = cli.whole_number(2, "a halving factor: a whole number")


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__, allow_abbrev=False)
    commands = parser.add_subparsers(dest="command", required=True)
    options = {"formatter_class": cli.HelpFormatter, "allow_abbrev": False}

    p = commands.add_parser("plan", help="write the manifest of a grid and print its train.py commands",
                            description="Write the manifest of a grid and print its train.py commands.\n\n"
                            "Every option not listed below goes to train.py as it is, checked first by train.py's own\n"
                            "parser (by full name): `python train.py --help` lists them, e.g. --weights random\n"
                            "--epochs 2 --root DIR --precision no.", **options)
    p.add_argument("--datasets", nargs="+", required=True, choices=sorted(REGISTRY), metavar="DATASET",
                   help=f"datasets from the registry in data/: {', '.join(sorted(REGISTRY))}")
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
    p.add_argument("--slots", type=cli.positive_int, default=1,
                   help="runs at a time without --gpus, on the environment's devices")
    p.add_argument("--gpus-per-run", type=cli.count, default=1,
                   help="GPUs (processes) per run: accelerate launch --multi_gpu --num_processes N when above 1; 0: "
                        "one process on the CPU, with the GPUs hidden (CUDA_VISIBLE_DEVICES empty)")
    p.add_argument("--pack", type=pack_setting, default="auto", help="configurations per train.py process: a number, "
                   "or 'auto' (on GPUs as many as the input path can feed and the memory holds; 1 without --gpus)")
    p.add_argument("--halving", type=halving_factor, help="successive halving with this factor (e.g. 3: all "
                   "configurations for a third of the epochs, the best third for another third, ...); off when "
                   "not given")
    p.add_argument("--retries", type=cli.count, default=1, help="times a failed run is tried again by this command")
    p.add_argument("--runs", nargs="+", help="only these run ids of the manifest (what a Slurm array task runs)")
    p.add_argument("--throughput", help="benchmarks/train_throughput.py --json output, for --pack auto")

    p = commands.add_parser("slurm", help="print a Slurm job-array script for the pending runs", **options)
    p.add_argument("--partition", help="Slurm partition (when not given: the cluster's default)")
    p.add_argument("--gpus-per-run", type=cli.count, help="GPUs per array task (--gres=gpu:N; 0 for CPU tasks); when "
                   "not given: 1 on a partition whose nodes have GPUs (sinfo), else 0")
    p.add_argument("--cpus-per-run", type=cli.positive_int, help="CPU cores per array task (data-loading workers); "
                   "when not given: 8, or as many as the partition's nodes have when fewer")
    p.add_argument("--mem", help="memory per array task, in Slurm's syntax (e.g. 64G); when not given: the "
                                 "partition's default")
    p.add_argument("--max-parallel", type=cli.positive_int, default=64, help="array tasks running at once (%%M)")
    p.add_argument("--max-array-size", type=cli.positive_int, default=1001, help="the most array tasks the cluster "
                   "accepts (its MaxArraySize); with more packs, each task runs several one after another")
    p.add_argument("--time", default="24:00:00", help="time limit of each array task")
    p.add_argument("--pack", type=pack_setting, default="1", help="configurations per array task: a number, or "
                   "'auto' (as many as the input path can feed and --gpu-memory holds)")
    p.add_argument("--gpu-memory", type=float, default=80.0,
                   help="GiB of memory of the cluster's GPUs, for --pack auto")
    p.add_argument("--throughput", help="benchmarks/train_throughput.py --json output, for --pack auto")
    p.add_argument("--job-name", default="grid", help="Slurm job name")
    p.add_argument("--logs", default="slurm-logs", help="folder of the array tasks' output files")
    p.add_argument("--sbatch-option", action="append", default=[], help="one more #SBATCH option, e.g. "
                   "--sbatch-option=--account=abc (repeat for more)")

    p = commands.add_parser("estimate", help="GPU-hours and wall-clock of the planned runs (CPU process-hours for "
                            "runs on a CPU)", **options)
    p.add_argument("--paper", action="store_true", help="estimate the paper's full study (19 models x 6 datasets x "
                                                        "60 configurations) instead of a manifest")
    p.add_argument("--gpus", type=cli.positive_int, default=1, help="GPUs the runs share, for the wall-clock")
    p.add_argument("--precision", choices=["bf16", "fp32"], help="with --paper: the training precision (when not "
                   "given: bf16, train.py's default on GPUs); a manifest's runs use their planned precision")
    p.add_argument("--throughput", help="benchmarks/train_throughput.py --json output measured on your machine "
                                        "(when not given: the documented H200 table)")
    p.add_argument("--device", choices=["auto", "gpu", "cpu"], default="auto", help="where the manifest's runs "
                   "train: 'auto' takes their records' device, else the CPU on a machine without a GPU when no run "
                   "asks for bf16 or fp16")
    p.add_argument("--json", action="store_true", help="print the estimate as JSON")

    for sub in commands.choices.values():
        sub.set_defaults(subparser=sub)  # so that an error is reported by the sub-command's parser, naming it
    for name in ("status", "run", "slurm", "estimate"):
        sub = commands.choices[name]
        if name != "status":
            sub.add_argument("--manifest", default=DEFAULT_MANIFEST, help="manifest written by grid.py plan")
        if name != "estimate":
            sub.add_argument("--stale-after", type=cli.positive_float, default=DEFAULT_STALE_AFTER_S, help="seconds "
                             "after which another host's lock that is no longer touched is stale")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, passthrough = parser.parse_known_args(argv)
    if passthrough and args.command != "plan":
        args.subparser.error(f"unrecognized arguments: {' '.join(passthrough)}")
    if args.command == "plan":
        wanted = {axis: getattr(args, axis) for axis in PACKED if getattr(args, axis)}
        return plan_grid(args.datasets, args.models, args.seeds, args.grid, wanted, passthrough, args.manifest)
    if args.command == "status":
        return show_status(args.manifest, args.folders, args.stale_after, args.json)
    if args.command == "run":
        return run_grid(args.manifest, args.runs, args.gpus, args.slots, args.gpus_per_run, args.pack, args.halving,
                        args.retries, args.stale_after, args.throughput)
    if args.command == "slurm":
        return write_script(args.manifest, partition=args.partition, gpus_per_run=args.gpus_per_run,
                            cpus_per_run=args.cpus_per_run, memory=args.mem, max_parallel=args.max_parallel,
                            max_array_size=args.max_array_size, time_limit=args.time, pack=args.pack,
                            gpu_memory=args.gpu_memory, throughput=args.throughput, job_name=args.job_name,
                            logs=args.logs, extra=args.sbatch_option, stale_after=args.stale_after)
    return show_estimate(args.manifest, args.paper, args.precision, args.gpus, args.throughput, args.json,
                         args.device)


if __name__ == "__main__":
    errors.run_main("grid.py", main)
