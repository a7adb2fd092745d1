"""The run record as training writes it: the one place that fills in common/runrecord.py's schema from a run's
configuration, data, model, device and input pipeline. TrainRun.write_record adds what changes every epoch
(history, best epoch, predictions) and the status.
"""
from __future__ import annotations

import os

from common import fileio, provenance, runrecord
from data.inputs import Inputs
from nets.networks import ModelInfo
from training.config import RunConfig
from training.options import TrainOptions
from training.pipeline import Pipeline


def dataset_block(inputs: Inputs, fingerprint: dict[str, int]) -> runrecord.DatasetBlock:
    spec, samples, split = inputs.samples.spec, inputs.samples, inputs.split
    return {"name": spec.name, "task": spec.task, "metric": spec.metric, "num_classes": spec.num_classes,
            "class_names": list(samples.class_names), "selection_split": inputs.selection_split,
            "report_split": spec.report_split if spec.report_split in inputs.eval_splits else None,
            "extra_splits": [s for s in spec.extra_splits if s in inputs.eval_splits],
            "split_file": str(inputs.split_path), "split_sha256": inputs.split_sha256,
            "split_method": split.method, "split_seed": split.seed, "papers_split": split.papers,
            "papers_method_on": split.papers_method_on, "split_description": split.description,
            "split_sizes": {name: int(len(rows)) for name, rows in inputs.split_indices.items()},
            "data_fingerprint": fingerprint, "excluded": samples.options.get("excluded", {}),
            "combined_with": samples.options.get("concatenated")}


def new_record(config: RunConfig, model: ModelInfo, options: TrainOptions, inputs: Inputs,
               fingerprint: dict[str, int], pipeline: Pipeline, accelerator, precision: str,
               packed_with: int) -> runrecord.RunRecord:
    """A run's record as it starts (status running), before any epoch."""
    return {
        "schema_version": runrecord.SCHEMA_VERSION, "run_id": config.run_id, "status": runrecord.RUNNING,
        "error": None, "diverged_epoch": None, "config": config.to_dict(), "model": model.to_record(),
        "dataset": dataset_block(inputs, fingerprint), "lp_ft": lp_ft_block(config, options.out),
        "paths": {"root": provenance.path_as_given(config.root),
                  "split_file": provenance.path_as_given(inputs.split_path),
                  "out": provenance.path_as_given(options.out),
                  "cache_dir": provenance.path_as_given(options.cache_dir)},
        "normalization": {"mode": options.normalize, "mean": list(pipeline.mean), "std": list(pipeline.std)},
        "precision": precision, "num_processes": accelerator.num_processes, "packed_with": packed_with,
        "input_path": pipeline.input_path,
        "runtime": provenance.runtime(accelerator.device, accelerator.num_processes),
        "slurm": slurm_ids(), "cache": pipeline.cache,
        "started_at": provenance.now(), "finished_at": None, **provenance.provenance(),
    }


def lp_ft_block(config: RunConfig, out: str) -> dict | None:
    """Which LP-FT phase this run is and, for fine-tuning, the probe it started from."""
    if config.lp_ft_phase is None:
        return None
    block = {"phase": config.lp_ft_phase}
    if config.init_from:
        probe = fileio.read_json(runrecord.RunFiles(out, config.init_from).record)
        block.update(probe_run_id=config.init_from, probe_history=probe["history"], probe_best=probe["best"],
                     probe_config={key: probe["config"][key] for key in ("lr", "wd", "epochs")})
    return block


def slurm_ids() -> dict[str, str] | None:
    """The Slurm job (and array task) this run was trained in, when it was."""
    names = {"job_id": "SLURM_JOB_ID", "array_job_id": "SLURM_ARRAY_JOB_ID", "array_task_id": "SLURM_ARRAY_TASK_ID",
             "node": "SLURMD_NODENAME"}
    ids = {key: os.environ[name] for key, name in names.items() if os.environ.get(name)}
    return ids or None
