"""grid.py estimate: what a manifest's runs (or the paper's study) cost on the device they train on.

    python grid.py estimate --paper --gpus 8          # the paper's study: GPU-hours and wall-clock (sweep/estimate.py)
    python grid.py estimate                           # grid.jsonl: GPU-hours, or CPU process-hours for CPU runs

Runs that train on a GPU are costed in GPU-hours from GPU throughput (sweep/estimate.py). Runs that train on a CPU
are costed in process-hours of train.py, from speeds measured on a CPU: a --throughput file written on a CPU
(benchmarks/train_throughput.py --device cpu --json FILE), else what the manifest's own records measured (their
images/s, as `grid.py status` uses them). A GPU table would say "0 GPU-hours" for them, which is no estimate at all.

Which device: the records' (where the manifest's runs trained so far), else this machine's when no run asks for a
GPU precision (bf16, fp16): without a GPU here, runs planned with the default --precision auto or with no train
here on the CPU. `--device gpu|cpu` decides instead (a login node without GPUs costing a GPU cluster's grid).
"""
from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

from common import errors
from sweep import estimate
from sweep.state import read_manifest, record_of


def machine_has_gpu() -> bool:
    """Whether this machine shows an NVIDIA GPU to its processes (torch-free: the device files)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES") == "":
        return False
    return any(Path("/dev").glob("nvidia[0-9]*"))


def runs_device(configs: list[dict], records: list[dict], asked: str) -> tuple[str, str]:
    """("cpu" or "gpu", why) for a manifest's runs."""
    if asked != "auto":
        return asked, f"--device {asked}"
    trained = {str((record.get("runtime") or {}).get("device", "")).split(":")[0] for record in records} - {""}
    if trained:
        device = "cpu" if trained == {"cpu"} else "gpu"
        return device, f"its runs' records trained on {'a CPU' if device == 'cpu' else 'a GPU'}"
    if any(config.get("precision") in ("bf16", "fp16") for config in configs):
        return "gpu", "its runs ask for a GPU precision (bf16 or fp16)"
    if not machine_has_gpu():
        return "cpu", "this machine has no GPU and its runs ask for none (--device gpu costs them on GPUs)"
    return "gpu", "this machine has a GPU"


def measured_on_cpu(row: dict, measured: dict | None, records: list[dict]) -> tuple[float, str] | None:
    """(train.py images/s of one process, where it comes from) for a manifest row on a CPU: a --throughput file
    measured on a CPU, else the records of the same dataset, model and input size (a packed record's images/s is
    its process's, which trains packed_with runs at that speed at once); None when neither has it."""
    row_measured = estimate.measured_row(measured, row["model"], "fp32", row["compile"], "cpu")
    if row_measured:
        return (row_measured["train_py_img_per_s"] * (row_measured["img_size"] / row["img_size"]) ** 2,
                row_measured["source"])
    speeds = [entry["images_per_s"] * (record.get("packed_with") or 1) for record in records
              if (record.get("dataset") or {}).get("name") == row["dataset"]
              and (record.get("config") or {}).get("model") == row["model"]
              and (record.get("config") or {}).get("img_size") == row["img_size"]
              for entry in record.get("history") or [] if entry.get("images_per_s")]
    if not speeds:
        return None
    return sum(speeds) / len(speeds), f"this grid's records ({len(speeds)} epochs measured)"


def cpu_estimate(rows: list[dict], measured: dict | None, records: list[dict]) -> dict:
    """Process-hours of train.py per dataset and model for runs on a CPU, and the rows no speed is known for."""
    by_dataset, by_model, sources, unmeasured, sizes_used = defaultdict(float), defaultdict(float), set(), [], {}
    for row in rows:
        found = measured_on_cpu(row, measured, records)
        if found is None:
            unmeasured.append({key: row[key] for key in ("dataset", "model", "img_size", "count")})
            continue
        rate, source = found
        train, evaluated, size_source = estimate.split_sizes(row["dataset"], records)
        hours = estimate.run_hours(train, evaluated, row["epochs"], rate) * row["count"]
        by_dataset[row["dataset"]] += hours
        by_model[row["model"]] += hours
        sources.add(source)
        sizes_used[row["dataset"]] = {"train": train, "evaluated_per_epoch": evaluated, "source": size_source}
    return {"device": "cpu", "runs": sum(row["count"] for row in rows), "process_hours": sum(by_dataset.values()),
            "by_dataset": dict(by_dataset), "by_model": dict(by_model), "throughput_sources": sorted(sources),
            "unmeasured": unmeasured, "split_sizes": sizes_used}


def format_cpu_estimate(result: dict) -> str:
    hours, runs = result["process_hours"], result["runs"]
    costed = runs - sum(row["count"] for row in result["unmeasured"])
    if not costed:
        lines = [f"{runs:,} runs on a CPU (fp32): not costed, no CPU speed is known for any of them yet"]
    else:
        which = "" if costed == runs else f" for the {costed:,} whose speed is known"
        lines = [f"{runs:,} runs on a CPU (fp32): {hours:,.2f} process-hours of train.py at the measured speed{which} "
                 f"({hours:,.2f} h of wall-clock one run at a time; runs side by side share the cores)", "",
                 f"{'dataset':<12}{'process-hours':>15}"]
        lines += [f"{name:<12}{value:>15,.2f}" for name, value in result["by_dataset"].items()]
        lines += ["", f"{'model':<22}{'process-hours':>15}"]
        lines += [f"{name:<22}{value:>15,.2f}"
                  for name, value in sorted(result["by_model"].items(), key=lambda x: -x[1])]
        lines += ["", "speed: " + "; ".join(result["throughput_sources"])]
    for row in result["unmeasured"]:
        lines.append(f"not costed, no CPU speed known: {row['count']} run(s) of {row['model']} on {row['dataset']} at "
                     f"{row['img_size']} px; finish one of them (its record measures the speed) or measure it with "
                     f"`python benchmarks/train_throughput.py --device cpu --model {row['model']} --img-size "
                     f"{row['img_size']} --json FILE` and pass --throughput FILE")
    lines += [f"sizes of {name}: train {s['train']:,}, evaluated per epoch {s['evaluated_per_epoch']:,} ({s['source']})"
              for name, s in result["split_sizes"].items()]
    return "\n".join(lines)


def show_estimate(manifest: str, paper: bool, precision: str | None, gpus: int, throughput: str | None,
                  as_json: bool, device: str = "auto") -> int:
    """grid.py estimate: GPU-hours and wall-clock of a manifest's runs or of the paper's study; CPU process-hours
    of a manifest whose runs train on a CPU."""
    measured = estimate.load_throughput(throughput) if throughput else None
    if paper:
        if device == "cpu":
            raise errors.UsageError("--paper --device cpu: the paper's study is costed on GPUs only (no CPU speeds "
                                    "of the testbed); plan a grid and estimate its manifest on a CPU instead")
        rows, found, why = estimate.paper_study(precision or "bf16"), [], None
    elif precision:
        raise errors.UsageError(f"--precision {precision} is for --paper; a manifest's runs train in the "
                                "precision they were planned with (grid.py plan ... --precision no|bf16)")
    else:
        entries = read_manifest(manifest)
        configs = [e.config for e in entries]
        rows = estimate.manifest_rows(configs)
        found = [record for record in map(record_of, entries) if record]
        chosen, why = runs_device(configs, found, device)
        if chosen == "cpu":
            result = {**cpu_estimate(rows, measured, found), "device_because": why}
            print(json.dumps(result, indent=2, sort_keys=True) if as_json
                  else format_cpu_estimate(result) + f"\ndevice: CPU, because {why}")
            return 0
    result = {**estimate.estimate(rows, gpus, measured, found), "device": "gpu", "device_because": why}
    print(json.dumps(result, indent=2, sort_keys=True) if as_json
          else estimate.format_estimate(result) + (f"\ndevice: GPU, because {why}" if why else ""))
    return 0
