"""Fine-tune an ImageNet model on a dataset with the paper's recipe: one run of the study's grid, or several at once.

    accelerate launch train.py --dataset hpa --model densenet121                 # the paper's defaults
    accelerate launch train.py --dataset digits --model resnet18 --weights random --epochs 2   # offline demo
    python train.py --dataset aptos --model resnet50 --optimizer adamw --lr 1e-4 --wd 1e-5
    accelerate launch train.py --dataset cassava --model alexnet --lr 0.1 0.01 0.001 0.0001 --wd 1e-4 0  # 8 runs
    accelerate launch train.py --dataset eurosat --model clip_vit_b16 --lp-ft    # linear probe, then fine-tune

The same command on a CPU, one GPU, many GPUs or a TPU (Accelerate places everything). Each run writes
runs/<run_id>.json, where run_id is derived from the configuration (training/identity.py), and runs/<run_id>/
(common/runrecord.py says what each holds). Re-running the same command skips a complete (or diverged) run and resumes
a partial one, so a shell loop over the grid can be restarted at any time.

Several values of --optimizer, --schedule, --lr and --wd train every combination in one process ("packed"), on the
same decoded and augmented batches: each is its own run, with its own run id, record and random stream, exactly as
if it ran alone; one that diverges stops alone. One input pipeline then feeds several models.

Defaults reproduce the paper: batch 128; SGD with Nesterov momentum 0.9, or AdamW with the decay passed as
wd/lr; cosine annealing over the epochs or x0.1 steps at 15, 20, 25 (Melanoma: 10 epochs, step at 5), stepped once
per epoch; 30 epochs; input 224 for DeiT and EuroSAT, 256 otherwise (registry.input_size); random resized crop (area
0.65-1) plus the dataset's flips; evaluation resizes the short side and centre-crops; ImageNet mean/std.
"""
from __future__ import annotations

from common import errors
from training.command import run_command
from training.config import run_config
from training.options import TrainOptions, build_parser


def main(argv: list[str] | None = None) -> int:
    options = TrainOptions.from_args(build_parser(__doc__).parse_args(argv))  # checked before torch is imported
    run_config(options)  # and the combination of flags, before any data is read
    return run_command(options)  # torch is imported once a run is left to train


if __name__ == "__main__":
    errors.run_main("train.py", main)
