"""What one train.py command does: open its data, skip the runs that are finished, train the rest (packed, at most
--max-pack at a time), and for --lp-ft both phases in turn.

A run is found again by its id (training/identity.py), and its record must have been made from the same data: a
finished or partial record whose split file or image fingerprint differs from the command's is refused, since
skipping it would reuse a result computed on other images and resuming it would mix two datasets.
"""
from __future__ import annotations

from pathlib import Path

from common import errors, runrecord
from data.inputs import Inputs, open_inputs
from training import lpft
from training.config import RunConfig, configurations
from training.options import TrainOptions


def run_command(options: TrainOptions) -> int:
    """The whole command: 0, 1 if a run failed, or 143 after a SIGTERM (the same command resumes)."""
    inputs = open_inputs(options.data, options.eval_splits)
    print(inputs.describe())
    if not options.lp_ft:
        return train_configurations(options, inputs, configurations(options, inputs))
    probes = lpft.phase_configurations(options, inputs, lpft.PROBE)
    status = train_configurations(options, inputs, probes)
    if status != 0:
        return status
    winner = lpft.best_probe(probes, options.out)
    print(f"lp-ft: best probe {winner}; fine-tuning from it")
    return train_configurations(options, inputs, lpft.phase_configurations(options, inputs, lpft.FINETUNE, winner))


def train_configurations(options: TrainOptions, inputs: Inputs, configs: list[RunConfig]) -> int:
    """Train the runs of `configs` that are not finished yet, packed together (--max-pack at a time); 0, 1 if a run
    failed, or 143 after a SIGTERM."""
    fingerprint = inputs.fingerprint()
    pending = []
    for config in configs:
        record = runrecord.read_raw(runrecord.RunFiles(options.out, config.run_id).record)
        check_same_data(record, inputs, fingerprint, Path(options.out) / f"{config.run_id}.json")
        if runrecord.is_finished(record):
            print(f"{config.run_id}: already {record['status']} ({Path(options.out) / config.run_id}.json), skipping")
        else:
            pending.append(config)
    if not pending:
        return 0
    from training.loop import fit  # torch: imported only once a run is left to train, so that skipping takes a second
    size, status = options.max_pack or len(pending), 0
    for start in range(0, len(pending), size):
        status = max(status, fit(options, inputs, pending[start:start + size], fingerprint))
        if status == 143:  # stopped: the same command resumes these and trains the rest
            break
    return status


def check_same_data(record: runrecord.RunRecord | None, inputs: Inputs, fingerprint: dict[str, int],
                    path: Path) -> None:
    """Refuse a run's existing record when it was made from another split or other images (records written before
    fingerprints existed are accepted as they are)."""
    if not record or not isinstance(record.get("dataset"), dict):
        return
    dataset = record["dataset"]
    ours = {"split file SHA-256": inputs.split_sha256, "images": fingerprint}
    theirs = {"split file SHA-256": dataset.get("split_sha256"), "images": dataset.get("data_fingerprint")}
    for what, value in ours.items():
        if theirs[what] is not None and theirs[what] != value:
            raise errors.DataError(
                f"{path}: this run's record was made from other data ({what} {fingerprint_text(theirs[what])}, "
                f"the command reads {fingerprint_text(value)}, from {inputs.samples.root}); skipping it would "
                f"reuse its result and resuming would mix two datasets: give another --out for this copy of the "
                f"data, or move the record and its folder away to train it anew")


def fingerprint_text(value) -> str:
    if isinstance(value, dict):
        return f"{value.get('images')} images of {value.get('bytes')} bytes"
    return str(value)
