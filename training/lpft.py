"""Linear probe, then fine-tuning (LP-FT), as the paper fine-tunes the CLIP models (section 5.2, appendices I and J).

    accelerate launch train.py --dataset eurosat --model clip_vit_b16 --lp-ft

The paper: "a linear probe, followed by end-to-end fine-tuning on the best model from the first part ... a third of
the epochs going toward linear probing ... AdamW with a cosine decay schedule. During the linear probe, we search
over 1e-1, 1e-2 and 1e-3 learning rates, and during fine-tuning, over 1e-4, 1e-5 and 1e-6. For both parts, we search
over 1e-3 to 1e-6 and 0 for weight decay." (training/recipe.py holds these values.)

Phase one trains the 15 probes (--probe-lr x --probe-wd) together, the backbone frozen: only the fresh head's
parameters are optimised and the rest of the network stays in eval mode, so its weights and BatchNorm statistics
are exactly the pretrained ones (training/run.py). The probe with the best selection-split metric (at its best
epoch; common/choice.py's rule) wins; phase two fine-tunes 15 configurations (--lr x --wd) end to end from that
probe's best weights. Every probe and every fine-tuning run is a run with its own record (`lp_ft.phase`: probe or
finetune; a fine-tuning record also holds the probe's id, configuration and history) and resumes like any other;
the fine-tuning run ids include the probe's, so a different winning probe gives different runs. analyze.py selects
among the fine-tuning runs.
"""
from __future__ import annotations

import itertools
from dataclasses import replace

from common import choice, errors, runrecord
from data import get_spec
from data.inputs import Inputs
from training import recipe
from training.config import RunConfig, run_config
from training.options import TrainOptions

PROBE, FINETUNE = "probe", "finetune"


def total_epochs(options: TrainOptions) -> int:
    total = options.epochs if options.epochs is not None else get_spec(options.dataset).epochs
    if total < 2:
        raise errors.UsageError(f"--lp-ft needs at least 2 epochs (a probe and a fine-tuning phase), got {total}")
    return total


def phase_configurations(options: TrainOptions, inputs: Inputs, phase: str,
                         init_from: str | None = None) -> list[RunConfig]:
    """The runs of one phase: AdamW and cosine over its lr x wd grid, a third of the epochs for the probes and the
    rest for fine-tuning."""
    total = total_epochs(options)
    probe_epochs = recipe.probe_epochs(total)
    lrs, wds = ((options.probe_lr, options.probe_wd) if phase == PROBE
                else (options.values("lr"), options.values("wd")))
    return [replace(run_config(options, inputs, optimizer="adamw", schedule="cosine", lr=lr, wd=wd),
                    epochs=probe_epochs if phase == PROBE else total - probe_epochs, lp_ft_phase=phase,
                    lp_ft_total_epochs=total, init_from=init_from)
            for lr, wd in itertools.product(dict.fromkeys(lrs), dict.fromkeys(wds))]


def best_probe(probes: list[RunConfig], out: str) -> str:
    """The run id of the probe with the best selection-split metric at its best epoch."""
    def value(config: RunConfig) -> float | None:
        record = runrecord.read_raw(runrecord.RunFiles(out, config.run_id).record)
        if not record or record.get("status") != runrecord.COMPLETE or not record.get("best"):
            return None
        return record["best"]["metrics"].get(runrecord.selection_key(record))

    winner = choice.best_of(probes, value, order=lambda config: config.run_id)
    if winner is None:
        raise errors.DataError(f"no linear probe completed with a defined selection metric (records under {out}); "
                               f"see the probes' records for their errors")
    return winner.run_id
