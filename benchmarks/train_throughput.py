"""How close does train.py itself run to what the device can do? Images/s of the model alone vs train.py end to end.

    python benchmarks/train_throughput.py --model resnet50                      # on a GPU: the issue's setting
    python benchmarks/train_throughput.py --model deit_small alexnet mobilenet_v3_small squeezenet1_1 --json h200.json
    python benchmarks/train_throughput.py --model resnet18 --device cpu --img-size 64 --batch-size 32 --steps 100

Measured in one run on this machine, in images/s:
  (a) the model alone: forward, loss, backward and optimizer step on a uint8 batch already on the device, with
      train.py's own pieces (networks.create_model, run.build_optimizer, engine.Outputs, engine.to_model_input,
      the same precision and memory format): the ceiling no input pipeline can beat;
  (b) train.py end to end: `train.main(...)` on a synthetic Cassava-layout dataset (hard-linked copies of a few
      hundred photo-like JPEGs) read through a prepared cache, --steps training steps per epoch, 3 epochs; the rate
      is what train.py records per epoch (training time only), averaged over epochs 2 and 3 (the first includes
      worker start-up);
and b/a, the input path train.py chose (record "input_path"), and with --compile the same two with torch.compile.
With --pack N, also (c) N configurations trained together by one train.py (several --lr values): images/s per
configuration, against (b) for one. --json FILE saves the results for `grid.py estimate --throughput FILE`.
"""
from __future__ import annotations

import csv
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere: the toolkit's modules

import train
from common import cli, fileio, provenance
from data.synthetic import write_fixture
from nets import networks, registry
from training import engine, run

DISTINCT_IMAGES_PER_CLASS = 40


def write_dataset(root: Path, images: int, size: tuple[int, int]) -> Path:
    """A Cassava-layout dataset of `images` JPEGs: a few hundred distinct ones, the rest hard links to them."""
    write_fixture("cassava", root, per_class=DISTINCT_IMAGES_PER_CLASS, size=size)
    with open(root / "train.csv", newline="") as f:
        header, *rows = list(csv.reader(f))
    extra, copy = [], 0
    while len(rows) + len(extra) < images:
        image_id, label = rows[copy % len(rows)]
        name = f"copy{copy:06d}-{image_id}"
        os.link(root / "train_images" / image_id, root / "train_images" / name)
        extra.append([name, label])
        copy += 1
    with open(root / "train.csv", "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows([header, *rows, *extra])
    return root


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_alone(args, model_name: str, img_size: int, compile_model: bool) -> float:
    """(a): images/s of train.py's training step on one batch that is already on the device."""
    from accelerate import Accelerator
    accelerator = Accelerator(mixed_precision=precision(args), cpu=args.device == "cpu")
    device = accelerator.device
    channels_last = device.type == "cuda"
    model, info = networks.create_model(model_name, 5, weights="random")
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if compile_model:
        model = torch.compile(model)
    optimizer = run.build_optimizer(model.parameters(), {"optimizer": "sgd", "lr": 0.01, "wd": 1e-4})
    model, optimizer = accelerator.prepare(model, optimizer)
    outputs = engine.Outputs("multiclass")
    images = torch.randint(0, 256, (args.batch_size, 3, img_size, img_size), dtype=torch.uint8, device=device)
    labels = torch.randint(0, 5, (args.batch_size,), device=device)
    model.train()

    def step() -> None:
        with accelerator.autocast():
            loss = outputs.loss(model(engine.to_model_input(images, registry.IMAGENET_MEAN, registry.IMAGENET_STD,
                                                            channels_last)), labels)
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        optimizer.step()

    for _ in range(args.warmup):
        step()
    synchronize(device)
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    synchronize(device)
    return args.steps * args.batch_size / (time.perf_counter() - started)


def end_to_end(args, model_name: str, root: Path, work: Path, compile_model: bool, pack: int = 1) -> tuple[float, str]:
    """(b): train.py's own training rate per configuration (epochs 2-3 of 3) and the input path it chose; with
    pack > 1, of each of `pack` configurations trained together (c)."""
    out = work / f"runs-{model_name}-{'compiled' if compile_model else 'eager'}-pack{pack}"
    argv = ["--dataset", "cassava", "--root", str(root), "--model", model_name, "--weights", "random",
            "--epochs", "3", "--batch-size", str(args.batch_size), "--workers", str(args.workers),
            "--cache", "build", "--cache-dir", str(work / "cache"), "--out", str(out), "--save-weights", "none",
            "--split-file", str(work / "split.csv"), "--lr", *[f"{0.01 / 2 ** i:g}" for i in range(pack)],
            "--precision", precision(args)]
    if args.img_size:
        argv += ["--img-size", str(args.img_size)]
    if compile_model:
        argv.append("--compile")
    if train.main(argv) != 0:
        raise SystemExit(f"train.py {' '.join(argv)} did not complete")
    found = [fileio.read_json(p) for p in out.glob("*.json")]
    later = [entry["images_per_s"] for record in found for entry in record["history"][1:]]
    return sum(later) / len(later), found[0].get("input_path", "cpu")


def precision(args) -> str:
    if args.precision != "auto":
        return args.precision
    return "bf16" if args.device == "cuda" and torch.cuda.is_bf16_supported() else "no"


def write_split(root: Path, path: Path, train_images: int) -> None:
    """Exactly `train_images` for training (whole batches) and the rest, at most 1,000, for validation."""
    with open(root / "train.csv", newline="") as f:
        _, *rows = list(csv.reader(f))
    lines = ["id,label,split"] + [f"{image_id},{label},{'train' if i < train_images else 'val'}"
                                  for i, (image_id, label) in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = cli.parser(__doc__.split("\n\n")[0])
    p.add_argument("--model", nargs="+", default=["resnet50"], help="registry or timm model names")
    p.add_argument("--img-size", type=int, default=None,
                   help="input size; by default registry.input_size for Cassava (256, 224 for DeiT)")
    p.add_argument("--batch-size", type=int, default=128, help="global batch size")
    p.add_argument("--steps", type=int, default=100, help="training steps per epoch in (b), and timed steps in (a)")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps before (a)")
    p.add_argument("--workers", type=int, default=min(8, cli.usable_cores()), help="train.py --workers")
    p.add_argument("--originals", default="400x300", help="size WIDTHxHEIGHT of the synthetic JPEGs")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cuda", "cpu"],
                   help="where to train; by default CUDA when there is one")
    p.add_argument("--precision", default="auto", choices=["auto", "no", "bf16"],
                   help="'auto': bf16 on a GPU, fp32 on a CPU")
    p.add_argument("--compile", action="store_true", help="also measure (a) and (b) with torch.compile")
    p.add_argument("--pack", type=int, default=1,
                   help="also measure (c): this many configurations packed in one train.py")
    p.add_argument("--json", default=None, help="save the results to this file, for grid.py estimate")
    args = p.parse_args(argv)
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # train.main must not pick a GPU either
    width, height = (int(v) for v in args.originals.lower().split("x"))
    device_name = provenance.runtime("cuda" if args.device == "cuda" else "cpu")["device_name"]
    print(f"machine: {device_name}, {os.cpu_count()} CPU cores ({provenance.cpu_name()}); torch {torch.__version__}; "
          f"batch {args.batch_size}, {args.steps} steps/epoch, {args.workers} workers, precision {precision(args)}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        train_images = args.batch_size * args.steps
        root = write_dataset(work / "cassava", train_images + min(1000, train_images // 4), (height, width))
        write_split(root, work / "split.csv", train_images)
        for model_name in args.model:
            img_size = registry.input_size(model_name, "cassava", args.img_size)
            for compiled in ([False, True] if args.compile else [False]):
                a = model_alone(args, model_name, img_size, compiled)
                b, path = end_to_end(args, model_name, root, work, compiled)
                results.append({"model": model_name, "img_size": img_size, "batch_size": args.batch_size,
                                "precision": precision(args), "compile": compiled, "model_alone_img_per_s": a,
                                "train_py_img_per_s": b, "input_path": path})
                print(f"{model_name:<22} @{img_size} {'compiled' if compiled else 'eager   '}  (a) model alone "
                      f"{a:8.0f} img/s  (b) train.py {b:8.0f} img/s  b/a {b / a:.2f}  input path: {path}")
                if args.pack > 1:
                    c, _ = end_to_end(args, model_name, root, work, compiled, args.pack)
                    results[-1]["packed"] = {"configurations": args.pack, "img_per_s_per_configuration": c}
                    print(f"{'':<22}  (c) {args.pack} packed: {c:8.0f} img/s per configuration ({c / b:.2f} of (b)), "
                          f"{c * args.pack:8.0f} img/s of training in all")
    if args.json:
        fileio.atomic_write_json(args.json, {"machine": f"{device_name}, {os.cpu_count()} cores",
                                              "device": device_name, "device_type": args.device,
                                              "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
