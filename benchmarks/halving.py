"""How often successive halving (grid.py run --halving K) picks the configuration the full grid picks, and how much
training it saves: measured on the offline fixtures.

    python benchmarks/halving.py --work /tmp/halving                  # full grids, then the halving replayed
    python benchmarks/halving.py --work /tmp/halving --verify         # and one real halving run, checked against it

1. Plans and runs the full grid (grid.py plan + grid.py run, every configuration to the last epoch) for each dataset
   x model: random weights, small inputs, on scikit-learn's digits and on data/synthetic.py's fixtures.
2. Replays the halving on those records for each factor K (sweep/halving.halving_outcome): since a paused and resumed
   run equals an uninterrupted one, the configurations halving keeps at each rung and the one it finally selects are
   exactly what `grid.py run --halving K` would get. --verify runs one group with --halving for real and checks it.
3. Prints, per group and in total, whether halving selects the full grid's configuration, the selection metric of
   each choice, and the epochs trained.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import cli, fileio
from common.choice import best_of
from common.runrecord import COMPLETE, best_value
from data.synthetic import write_fixture
from sweep.halving import halving_outcome
from sweep.state import read_manifest, record_of

REPO = Path(__file__).resolve().parent.parent


def grid_py(args: list[str], cwd: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, str(REPO / "grid.py"), *args], cwd=cwd, env=env, check=True,
                   stdout=subprocess.DEVNULL)


def plan_and_run(work: Path, dataset: str, model_names: list[str], options: argparse.Namespace, manifest: str,
                 out: str, *run: str) -> list:
    grid_py(["plan", "--datasets", dataset, "--models", *model_names, "--grid", "product", "--optimizer", "sgd",
             "--schedule", "cosine", "--lr", *options.lrs, "--wd", *options.wds, "--weights", "random", "--epochs",
             str(options.epochs), "--img-size", str(options.img_size), "--batch-size", "32", "--workers", "0",
             "--out", out, "--manifest", manifest], work)
    configurations = len(options.lrs) * len(options.wds)
    grid_py(["run", "--manifest", manifest, "--slots", str(options.slots), "--pack", str(configurations), *run], work)
    return read_manifest(work / manifest)


def chosen_value(found: dict, run_id: str | None) -> float | None:
    """The selection metric of a chosen run; None when no run of the group completed (all diverged or failed)."""
    return best_value(found[run_id]) if run_id else None


def shown(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="folder for the fixtures, runs and manifests")
    parser.add_argument("--datasets", nargs="+", default=["digits", "eurosat", "cassava"], help="datasets (fixtures)")
    parser.add_argument("--models", nargs="+", default=["resnet18", "mobilenet_v3_small", "shufflenet_v2_x0_5"],
                        help="models, trained from random weights")
    parser.add_argument("--lrs", nargs="+", default=["0.3", "0.1", "0.03", "0.01"], help="learning rates (SGD)")
    parser.add_argument("--wds", nargs="+", default=["1e-3", "1e-5"], help="weight decays")
    parser.add_argument("--epochs", type=int, default=6, help="epochs of the full grid")
    parser.add_argument("--img-size", type=int, default=24, help="input size")
    parser.add_argument("--per-class", type=int, default=30, help="images per class of the synthetic fixtures")
    parser.add_argument("--factors", nargs="+", type=int, default=[2, 3], help="halving factors to replay")
    parser.add_argument("--slots", type=int, default=2, help="grid.py run --slots")
    parser.add_argument("--verify", action="store_true", help="also run the first group with --halving (first "
                                                              "factor) and check it matches the replay")
    options = parser.parse_args(argv)
    work = options.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    rows, found_all = [], {}
    for dataset in options.datasets:
        if dataset != "digits" and not (work / "datasets" / dataset).exists():
            write_fixture(dataset, work / "datasets" / dataset, per_class=options.per_class)
        entries = plan_and_run(work, dataset, options.models, options, f"manifests/{dataset}.jsonl", "runs")
        found = {e.run_id: record_of(e) for e in entries}
        found_all.update(found)
        for model in options.models:
            members = [e for e in entries if e.model == model]
            for factor in options.factors:
                outcome = halving_outcome(members, found, factor)
                rows.append({"dataset": dataset, "model": model, "factor": factor, "configurations": len(members),
                             **outcome, "same": outcome["full_choice"] is not None
                             and outcome["full_choice"] == outcome["halving_choice"],
                             "full_value": chosen_value(found, outcome["full_choice"]),
                             "halving_value": chosen_value(found, outcome["halving_choice"])})
    if options.verify:
        first = rows[0]
        entries = plan_and_run(work, first["dataset"], [first["model"]], options, "manifests/verify.jsonl",
                               "runs-halving", "--halving", str(first["factor"]))
        halved = {e.run_id: record_of(e) for e in entries}
        complete = sorted(run_id for run_id, record in halved.items() if record["status"] == COMPLETE)
        choice = best_of(complete, lambda run_id: best_value(halved[run_id]), order=str) or "no complete run"
        trained = sum(len(record["history"]) for record in halved.values())
        same_histories = all(abs(a[k] - b[k]) < 1e-6 for run_id in complete
                             for a, b in zip(halved[run_id]["history"], found_all[run_id]["history"])
                             for k in a if k.startswith("val_"))
        print(f"verify ({first['dataset']}, {first['model']}, K={first['factor']}): real halving selected {choice}, "
              f"trained {trained} epochs; the replay selected {first['halving_choice']}, "
              f"{first['halving_epochs']} epochs; survivors' histories equal the full grid's: {same_histories}")
    print(f"{'dataset':<10}{'model':<22}{'K':>3}{'configs':>9}{'same':>6}{'full':>8}{'halving':>9}{'epochs':>14}")
    for r in rows:
        print(f"{r['dataset']:<10}{r['model']:<22}{r['factor']:>3}{r['configurations']:>9}"
              f"{'yes' if r['same'] else 'no':>6}{shown(r['full_value']):>8}{shown(r['halving_value']):>9}"
              f"{r['halving_epochs']:>7}/{r['full_epochs']:<6}")
    for factor in options.factors:
        chosen = [r for r in rows if r["factor"] == factor]
        compared = [r for r in chosen if r["full_value"] is not None and r["halving_value"] is not None]
        saved = 1 - sum(r["halving_epochs"] for r in chosen) / sum(r["full_epochs"] for r in chosen)
        loss = (f"{sum(r['full_value'] - r['halving_value'] for r in compared) / len(compared):.4f}" if compared
                else "-")
        print(f"K={factor}: same configuration in {sum(r['same'] for r in chosen)} "
              f"of {len(chosen)} groups; mean selection-metric loss {loss}; {saved:.0%} of the epochs saved")
        if len(compared) < len(chosen):
            print(f"  {len(chosen) - len(compared)} group(s) without a complete run in the full grid or among "
                  "halving's survivors ('-' above): left out of the loss")
    fileio.atomic_write_json(work / "halving.json", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
