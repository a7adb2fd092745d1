"""What a grid costs: GPU-hours and wall-clock from per-model training throughput, and how many configurations to
pack into one process (grid.py estimate, grid.py run and grid.py slurm --pack auto).

Time of one run = train images x epochs / training rate + evaluated images x epochs / (EVAL_SPEEDUP x training
rate). The training rate comes from, in this order:
  1. --throughput FILE, written by `benchmarks/train_throughput.py --json FILE` on the user's own machine: train.py's
     end-to-end images/s for that model, precision and compile mode (a run is eager unless planned with --compile);
  2. the reference measurement, benchmarks/throughput-h200.json (in the --throughput format, with how it was
     measured): one H200's model-alone ceilings (batch 128, bf16 autocast + channels-last, or fp32), times the share
     of that ceiling train.py reached end to end (0.77 for ResNet-50 on that H200, project at a799033);
  3. for a testbed model that table lacks, its stand-in's figure (STAND_INS: the same family's nearest measured
     model), divided by the ratio of their multiply-adds per pixel when the model is larger; a smaller model keeps
     the stand-in's figure (small networks are held back by memory traffic and kernel launches, not arithmetic),
     so the rule errs on the slow side;
  4. for a registry name neither table has, the figure of its constructor (resnet50_augmix builds a resnet50).
A run's precision is its configuration's (train.py's "no" is fp32, anything else trains at bf16's speed);
`grid.py estimate --paper` takes it from --precision.
Rates scale with the pixel count when a run's input size differs from the measured one. The estimate assumes the
input path keeps up (the prepared cache, and packing for the small models).

Train and evaluated sizes come from a run record of the dataset when one exists (dataset.split_sizes), else from
the paper's split as the dataset registry holds it (data/__init__.py, Published.split_sizes).

These are GPU figures. A manifest whose runs train on a CPU is costed in CPU process-hours instead
(sweep/cost.py), from speeds measured on a CPU.
"""
from __future__ import annotations

import functools
import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from common import errors
from data import REAL_WORLD, get_spec
from nets import registry
from training.recipe import PAPER_CONFIGURATIONS

REFERENCE = Path(__file__).resolve().parents[1] / "benchmarks" / "throughput-h200.json"


@dataclass(frozen=True)
class Reference:
    """The reference measurement (REFERENCE, which says how each number was measured): model-alone ceilings on one
    H200, the share of them train.py reached end to end, and the images/s one run's input path delivered."""
    ceilings: dict[str, tuple[int, float, float]]  # model -> (input size, fp32 img/s, bf16 channels-last img/s)
    efficiency: float
    input_rate: float
    source: str


@functools.lru_cache(maxsize=None)
def reference() -> Reference:
    saved = json.loads(REFERENCE.read_text(encoding="utf-8"))
    ceilings: dict[str, tuple] = {}
    for row in saved["results"]:
        size, fp32, bf16 = ceilings.get(row["model"], (row["img_size"], None, None))
        if row["precision"] == "fp32":
            fp32 = row["model_alone_img_per_s"]
        else:
            bf16 = row["model_alone_img_per_s"]
        ceilings[row["model"]] = (size, fp32, bf16)
    efficiency = saved["train_py_efficiency"]
    return Reference(ceilings, efficiency, saved["input_path_img_per_s"],
                     f"H200 model-alone ceilings x train.py efficiency {efficiency:g} (benchmarks/{REFERENCE.name})")

# model -> (stand-in, multiply-adds of the model, of the stand-in): torchvision's GFLOPS ("_ops") at 224 px, or timm's
# GMACs per pixel at the pretrained size (inception_resnet_v2 13.18 @299, pnasnet5large 25.04 @331), so ratios match.
STAND_INS = {
    "shufflenet_v2_x0_5": ("shufflenet_v2_x1_0", 0.04, 0.145), "mnasnet0_5": ("mobilenet_v3_small", 0.104, 0.057),
    "vgg13_bn": ("vgg16_bn", 11.308, 15.47), "deit_tiny": ("deit_small", 1.26, 4.61),
    "resnext50_32x4d": ("resnet50", 4.23, 4.089),
    "pnasnet5large": ("inception_resnet_v2", 25.04 / 331**2, 13.18 / 299**2),
    "resnet18": ("resnet50", 1.814, 4.089),
}
EVAL_SPEEDUP = 3.0  # a forward pass without backward and optimizer step costs about a third of a training step
def precision_of(config: dict) -> str:
    """The precision a run trains in, as the tables name it: train.py's "no" is fp32; "auto" is bf16 on the GPUs
    these estimates are for (fit.py), and fp16 runs at bf16's speed."""
    return "fp32" if config.get("precision") in ("no", "fp32") else "bf16"


def load_throughput(path: str | Path) -> dict[tuple[str, str, bool], dict]:
    """benchmarks/train_throughput.py's JSON, keyed by (model, precision, compiled): with --compile it writes an
    eager and a compiled row per model. Raises DataError naming the field."""
    try:
        saved = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise errors.DataError(f"{path}: cannot read the throughput file ({error}); write it with "
                               "`python benchmarks/train_throughput.py --json FILE`") from error
    results = saved.get("results") if isinstance(saved, dict) else None
    if not isinstance(results, list):
        raise errors.DataError(f"{path}: no 'results' list; write it with benchmarks/train_throughput.py --json")
    table = {}
    for i, row in enumerate(results):
        for key, kind in (("model", str), ("img_size", int), ("precision", str),
                          ("model_alone_img_per_s", (int, float)), ("train_py_img_per_s", (int, float))):
            if not isinstance(row.get(key), kind) or (kind is not str and row[key] <= 0):
                raise errors.DataError(f"{path}: results[{i}].{key} is {row.get(key)!r}, not a positive "
                                       f"{'text' if kind is str else 'number'}")
        if not isinstance(row.get("compile", False), bool):
            raise errors.DataError(f"{path}: results[{i}].compile is {row['compile']!r}, not true or false")
        # where it was measured: files written before benchmarks/train_throughput.py said so are GPU measurements
        device = "cpu" if saved.get("device_type") == "cpu" else "cuda"
        key = (row["model"], precision_of(row), row.get("compile", False), device)
        table[key] = {**row, "source": f"{path} ({saved.get('device', 'device unnamed')})",
                      "input_rate": saved.get("input_path_img_per_s")}
    return table


def measured_row(measured: dict | None, model: str, precision: str, compiled: bool,
                 device: str = "cuda") -> dict | None:
    """The --throughput row of this model (or of its registry constructor) in this precision and compile mode,
    measured on this kind of device ("cuda" or "cpu")."""
    for name in dict.fromkeys([model, constructor(model)]):
        if measured and (name, precision, compiled, device) in measured:
            return measured[(name, precision, compiled, device)]
    return None


def constructor(model: str) -> str:
    """The architecture a registry name builds (resnet50_augmix: resnet50); other names stand for themselves."""
    entry = registry.REGISTRY.get(model)
    return entry.constructor if entry else model


def training_rate(model: str, img_size: int, precision: str, measured: dict | None = None,
                  compiled: bool = False) -> tuple[float, str]:
    """(train.py images/s, where the figure comes from) for one model at one input size, precision and compile
    mode (train.py runs eager unless given --compile). A registry model the tables lack is looked up by its
    constructor (the augmentation ablation's ResNet-50 weights train at ResNet-50's speed)."""
    row = measured_row(measured, model, precision, compiled)
    if row:
        return row["train_py_img_per_s"] * (row["img_size"] / img_size) ** 2, row["source"]
    table = reference()
    name = model if model in table.ceilings or model in STAND_INS else constructor(model)
    factor, via = 1.0, [] if name == model else [f"{model} is a {name}"]
    if name in STAND_INS:
        stand_in, macs, stand_in_macs = STAND_INS[name]
        factor = min(1.0, stand_in_macs / macs)
        via.append(f"{name} via stand-in {stand_in}")
        name = stand_in
    if name not in table.ceilings:
        raise errors.UsageError(f"no throughput figure for model '{model}' ({precision}); measure it with "
                                f"`python benchmarks/train_throughput.py --model {model} --json FILE` and pass "
                                "--throughput FILE")
    size, fp32, bf16 = table.ceilings[name]
    ceiling = bf16 if precision == "bf16" else fp32
    source = table.source + "".join(f"; {step}" for step in via)
    return ceiling * factor * table.efficiency * (size / img_size) ** 2, source


def split_sizes(dataset: str, found_records: list[dict]) -> tuple[int, int, str]:
    """(train images, images evaluated per epoch, source) of a dataset: a record's evaluated splits are its
    selection split, reported split and the extra splits shown beside it (HPA's test_val), each every epoch."""
    for record in found_records:
        info = record.get("dataset", {})
        sizes = info.get("split_sizes")
        if info.get("name") == dataset and sizes:
            evaluated = dict.fromkeys([info.get("selection_split"), info.get("report_split"),
                                       *(info.get("extra_splits") or []),
                                       *((record.get("config") or {}).get("eval_splits") or [])])
            return sizes["train"], sum(sizes.get(s, 0) for s in evaluated if s), f"record {record['run_id']}"
    published = get_spec(dataset).published
    if published is not None and published.split_sizes:  # the paper's split, as the dataset registry holds it
        (_, train), *evaluated = published.split_sizes
        return train, sum(size for _, size in evaluated), "the paper's split (data/__init__.py)"
    raise errors.UsageError(f"no split sizes known for dataset '{dataset}': finish one run of it first (its record "
                            "holds them), then estimate again")


def run_hours(train: int, evaluated: int, epochs: int, rate: float) -> float:
    return epochs * (train + evaluated / EVAL_SPEEDUP) / rate / 3600


def paper_study(precision: str) -> list[dict]:
    """The paper's study as (dataset, model, epochs, img_size, precision, count) rows: 19 models x 6 datasets x 60
    configurations, eager (train.py's default)."""
    return [{"dataset": d, "model": m, "epochs": get_spec(d).epochs, "img_size": registry.input_size(m, d),
             "precision": precision, "compile": False, "count": PAPER_CONFIGURATIONS}
            for d in REAL_WORLD for m in registry.group_models("testbed")]


def manifest_rows(configs: list[dict]) -> list[dict]:
    """The planned runs' configurations as rows for `estimate`: one per dataset, model, epochs, size, precision
    and compile mode, with the number of runs."""
    keys = [(c["dataset"], c["model"], c["epochs"], c["img_size"], precision_of(c), bool(c.get("compile")))
            for c in configs]
    return [{"dataset": d, "model": m, "epochs": epochs, "img_size": size, "precision": precision,
             "compile": compiled, "count": count}
            for (d, m, epochs, size, precision, compiled), count in Counter(keys).items()]


def estimate(rows: list[dict], gpus: int, measured: dict | None = None,
             found_records: list[dict] | None = None) -> dict:
    """GPU-hours per dataset and per model, their total, and the wall-clock on `gpus` GPUs (ideal packing of
    the runs onto the GPUs, never shorter than the longest run)."""
    by_dataset, by_model, sources, sizes_used = defaultdict(float), defaultdict(float), set(), {}
    runs, longest = 0, 0.0
    for row in rows:
        rate, source = training_rate(row["model"], row["img_size"], row["precision"], measured, row["compile"])
        train, evaluated, size_source = split_sizes(row["dataset"], found_records or [])
        hours = run_hours(train, evaluated, row["epochs"], rate)
        by_dataset[row["dataset"]] += hours * row["count"]
        by_model[row["model"]] += hours * row["count"]
        runs += row["count"]
        longest = max(longest, hours)
        sources.add(source)
        sizes_used[row["dataset"]] = {"train": train, "evaluated_per_epoch": evaluated, "source": size_source}
    total = sum(by_dataset.values())
    precisions = sorted({row["precision"] + (" compiled" if row["compile"] else "") for row in rows})
    return {"runs": runs, "gpu_hours": total, "gpus": gpus, "wall_clock_hours": max(total / gpus, longest),
            "precision": ", ".join(precisions), "by_dataset": dict(by_dataset), "by_model": dict(by_model),
            "throughput_sources": sorted(sources), "split_sizes": sizes_used}


def format_estimate(result: dict) -> str:
    lines = [f"{result['runs']:,} runs, {result['precision']}: {result['gpu_hours']:,.0f} GPU-hours; "
             f"wall-clock on {result['gpus']} GPU(s): {result['wall_clock_hours']:,.1f} h "
             f"({result['wall_clock_hours'] / 24:,.1f} days)", "", f"{'dataset':<12}{'GPU-hours':>12}"]
    lines += [f"{name:<12}{hours:>12,.1f}" for name, hours in result["by_dataset"].items()]
    lines += ["", f"{'model':<22}{'GPU-hours':>12}"]
    lines += [f"{name:<22}{hours:>12,.1f}" for name, hours in sorted(result["by_model"].items(), key=lambda x: -x[1])]
    table = reference().source
    measured = [source for source in result["throughput_sources"] if not source.startswith(table)]
    from_table = sorted(source for source in result["throughput_sources"] if source.startswith(table))
    lines += ["", "throughput: " + "; ".join(measured + ([table] if from_table else []))]
    lines += [f"  {source.removeprefix(table + '; ')}" for source in from_table if source != table]
    lines += [f"sizes of {name}: train {s['train']:,}, evaluated per epoch {s['evaluated_per_epoch']:,} ({s['source']})"
              for name, s in result["split_sizes"].items()]
    return "\n".join(lines)


# --- packing -------------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def config_memory_bytes(model: str, img_size: int, batch_size: int, precision: str, optimizer: str) -> int:
    """An upper bound on one configuration's GPU memory: fp32 weights and gradients, the optimizer's state
    (momentum; AdamW two moments), and every layer's output for a batch (what backward keeps, counted without the
    savings of in-place layers). Computed on PyTorch's meta device: no memory, no arithmetic, a second or two."""
    import torch

    from nets import networks
    with torch.device("meta"):
        network, _ = networks.create_model(model, 2, weights="random")
    outputs = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: outputs.append(out.numel() if torch.is_tensor(out) else 0))
             for m in network.modules() if not list(m.children())]
    network.train()
    network(torch.zeros(2, 3, img_size, img_size, device="meta"))
    for hook in hooks:
        hook.remove()
    params = sum(p.numel() for p in network.parameters())
    per_param = 4 + 4 + (8 if optimizer == "adamw" else 4)
    return params * per_param + sum(outputs) // 2 * batch_size * (2 if precision in ("bf16", "fp16") else 4)


def pack_size(configs: list[dict], gpu_memory: int, measured: dict | None = None) -> int:
    """How many configurations of one group (runs that differ only in optimizer, schedule, lr and wd) to train in
    one process on one GPU of `gpu_memory` bytes (grid.py run and grid.py slurm --pack auto): as many as keep the
    GPU busy while one input path feeds them (model-alone rate / train.py rate, or the ceiling / the reference's
    input_rate), within 80% of the GPU's memory with the hungriest optimizer among them. Precision and compile mode
    are the runs' own. A row whose train.py figure is derived from its model-alone one (train_py_from: the
    reference table's) says nothing of the input path, so its ceiling is held against the input rate, as the
    reference table's are."""
    config = configs[0]
    precision, compiled = precision_of(config), bool(config.get("compile"))
    row = measured_row(measured, config["model"], precision, compiled)
    if row and not row.get("train_py_from"):
        speed_bound = row["model_alone_img_per_s"] / row["train_py_img_per_s"]
    elif row:
        ceiling = row["model_alone_img_per_s"] * (row["img_size"] / config["img_size"]) ** 2
        speed_bound = ceiling / (row.get("input_rate") or reference().input_rate)
    else:
        try:
            rate, _ = training_rate(config["model"], config["img_size"], precision)
        except errors.UsageError:
            return 1
        speed_bound = rate / reference().efficiency / reference().input_rate
    memory = max(config_memory_bytes(config["model"], config["img_size"], config["batch_size"], precision, optimizer)
                 for optimizer in {c["optimizer"] for c in configs})
    return max(1, min(math.floor(speed_bound), math.floor(0.8 * gpu_memory / memory)))
