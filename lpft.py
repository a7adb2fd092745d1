"""Linear probe, then fine-tuning (LP-FT), as the paper fine-tunes the CLIP models (section 5.2, appendices I and J).

    accelerate launch train.py --dataset eurosat --model clip_vit_b16 --lp-ft

The paper: "a linear probe, followed by end-to-end fine-tuning on the best model from the first part ... a third of
the epochs going toward linear probing ... AdamW with a cosine decay schedule. During the linear probe, we search
over 1e-1, 1e-2 and 1e-3 learning rates, and during fine-tuning, over 1e-4, 1e-5 and 1e-6. For both parts, we search
over 1e-3 to 1e-6 and 0 for weight decay."

Phase one trains the 15 probes (--probe-lr x --probe-wd) together, the backbone frozen: only the fresh head's
parameters are optimised and the rest of the network stays in eval mode, so its weights and BatchNorm statistics
are exactly the pretrained ones. The probe with the best selection-split metric (at its best epoch) wins; phase
two fine-tunes 15 configurations (--lr x --wd) end to end from that probe's best weights. Every probe and every
fine-tuning run is a run with its own record (`lp_ft.phase`: probe or finetune; a fine-tuning record also holds
the probe's id, configuration and history) and resumes like any other; the fine-tuning run ids include the probe's,
so a different winning probe gives different runs. analyze.py selects among the fine-tuning runs.
"""
from __future__ import annotations

import itertools

import errors
import records
from trainrun import RunFiles

PROBE_LR = (1e-1, 1e-2, 1e-3)
FINETUNE_LR = (1e-4, 1e-5, 1e-6)
WEIGHT_DECAYS = (1e-3, 1e-4, 1e-5, 1e-6, 0.0)
FINETUNE_WD = WEIGHT_DECAYS


def probe_epochs(total: int) -> int:
    """A third of the epochs go to the linear probe (at least one, and at least one left for fine-tuning)."""
    return min(max(1, round(total / 3)), total - 1)


def check_arguments(args) -> None:
    if args.optimizer not in (None, ["adamw"]) or args.schedule not in (None, ["cosine"]):
        raise errors.UsageError("--lp-ft trains with AdamW and a cosine schedule, as the paper: leave out "
                                "--optimizer and --schedule")
    if args.train_on == "all":
        raise errors.UsageError("--lp-ft picks its probe on the selection split, which --train-on all trains on: "
                                "train the final model with --train-on all without --lp-ft, at the chosen settings")
    if args.until_epoch is not None:
        raise errors.UsageError("--lp-ft runs both phases; --until-epoch applies to single-phase runs only")


def total_epochs(args, inputs) -> int:
    total = args.epochs if args.epochs is not None else inputs.samples.spec.epochs
    if total < 2:
        raise errors.UsageError(f"--lp-ft needs at least 2 epochs (a probe and a fine-tuning phase), got {total}")
    return total


def _phase_configurations(args, inputs, phase: str, lrs, wds, init_from: str | None = None) -> list[dict]:
    from train import make_run_id, resolve_config  # train.py imports this module
    total = total_epochs(args, inputs)
    epochs = probe_epochs(total) if phase == "probe" else total - probe_epochs(total)
    configs = []
    for lr, wd in itertools.product(dict.fromkeys(lrs), dict.fromkeys(wds)):
        config = resolve_config(args, inputs, optimizer="adamw", schedule="cosine", lr=lr, wd=wd)
        config.update(lp_ft_phase=phase, lp_ft_total_epochs=total, epochs=epochs)
        if init_from:
            config["init_from"] = init_from
        configs.append({**config, "run_id": make_run_id(config)})
    return configs


def probe_configurations(args, inputs) -> list[dict]:
    return _phase_configurations(args, inputs, "probe", args.probe_lr, args.probe_wd)


def best_probe(configs: list[dict], out) -> str:
    """The run id of the probe with the best selection-split metric at its best epoch."""
    scored = []
    for config in configs:
        path = RunFiles(out, config["run_id"]).record
        record = records.read_json(path) if path.exists() else {}
        if record.get("status") == "complete" and record.get("best"):
            key = f"{record['dataset']['selection_split']}_{record['dataset']['metric']}"
            value = record["best"]["metrics"].get(key)
            if value is not None:
                scored.append((value, config["run_id"]))
    if not scored:
        raise errors.DataError(f"no linear probe completed with a defined selection metric (records under {out}); "
                               f"see the probes' records for their errors")
    return max(scored, key=lambda item: item[0])[1]  # ties: the first in grid order


def run(args, inputs, train_configurations) -> int:
    """Both phases: train (or resume, or skip) the probes, then fine-tune from the best one."""
    from train import default_values  # train.py imports this module
    probes = probe_configurations(args, inputs)
    status = train_configurations(args, inputs, probes)
    if status != 0:
        return status
    winner = best_probe(probes, args.out)
    print(f"lp-ft: best probe {winner}; fine-tuning from it")
    finetunes = _phase_configurations(args, inputs, "finetune", default_values(args, "lr"),
                                      default_values(args, "wd"), winner)
    return train_configurations(args, inputs, finetunes)
