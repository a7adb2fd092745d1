"""What `grid.py status` reports: per dataset x model how many runs are in each state, the best complete
configuration so far, the failed runs' errors and the training time left. It only reads: the manifest or the
records, the runs' locks and launch logs (sweep/state.py); nothing is written.
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

from common import choice, errors, fileio, runrecord
from common.runrecord import best_value, epochs_done, selection_key
from sweep import estimate
from sweep.state import AXES, DEFAULT_MANIFEST, Entry, live_holder, read_log, read_manifest, record_of

PENDING = "pending"  # no record yet, or one that never saved an epoch
STATES = (runrecord.COMPLETE, runrecord.RUNNING, runrecord.INTERRUPTED, runrecord.PAUSED, runrecord.DIVERGED,
          runrecord.FAILED, PENDING)


def entries_from_records(folder: Path) -> list[Entry]:
    """Entries for the run records found in a folder (status without a manifest)."""
    found = []
    for path in sorted(folder.glob("*.json")):
        try:
            record = fileio.read_json(path)
            found.append(Entry(record["run_id"], (), str(folder), {**record["config"], "out": "."}))
        except (OSError, ValueError, KeyError, TypeError):
            print(f"grid.py: {path} is not a run record; left out", file=sys.stderr)
    return found


def run_state(entry: Entry, record: dict | None, holder: dict | None) -> tuple[str, str | None]:
    """(state, error) of a run for the status table: running while locked (`holder`: its live lock), else as its
    record says; a run whose last launch failed before it wrote a record is failed too. A record left 'running'
    with no live lock was stopped without saying so (killed): it shows as interrupted once it holds an epoch's
    state, else as pending; either way the same command resumes it."""
    if holder:
        return runrecord.RUNNING, None
    status = (record or {}).get("status")
    ends = [event for event in read_log(entry) if event["event"] == "end"]
    if ends and ends[-1]["outcome"] == runrecord.FAILED and status != runrecord.COMPLETE:
        return runrecord.FAILED, ends[-1].get("error") or (record or {}).get("error")
    if status == runrecord.RUNNING:
        return (runrecord.INTERRUPTED if epochs_done(record) else PENDING), None
    if status in STATES:
        return status, (record or {}).get("error")
    return PENDING, None


def holding_process(holder: dict) -> tuple:
    """Which process a live lock names: the runs of a pack share one train.py process (and its grid.py)."""
    return holder.get("host"), holder.get("boot"), tuple(map(tuple, holder.get("processes") or []))


def status_report(entries: list[Entry], stale_after: float) -> dict:
    """Per dataset x model: how many runs are in each state and the best complete configuration so far; the failed
    runs' errors; and the training time left at the speed the records measured (images/s of that model)."""
    found = {e.run_id: record_of(e) for e in entries}
    known = [record for record in found.values() if record]  # split sizes of the datasets
    groups: dict[tuple, dict] = {}
    speeds: dict[tuple, list[float]] = defaultdict(list)
    failed, interrupted, left, processes = [], [], [], set()
    complete: dict[tuple, list[Entry]] = defaultdict(list)
    for entry in entries:
        record = found[entry.run_id]
        holder = live_holder(entry, stale_after)
        state, error = run_state(entry, record, holder)
        if holder:
            processes.add(holding_process(holder))
        group = groups.setdefault((entry.dataset, entry.model), {"dataset": entry.dataset, "model": entry.model,
                                                                  **{s: 0 for s in STATES}, "best": None})
        group[state] += 1
        if state == runrecord.FAILED:
            failed.append({"run_id": entry.run_id, "error": " ".join(str(error).split())[:300]})
        if state == runrecord.INTERRUPTED:
            interrupted.append({"run_id": entry.run_id, "epochs_done": epochs_done(record),
                                "epochs": entry.config["epochs"], "stopped_at": record.get("stopped_at")})
        if state in (runrecord.RUNNING, runrecord.INTERRUPTED, PENDING) or (state == runrecord.PAUSED
                                                                              and "halving" not in record):
            left.append(entry)  # a run halving stopped for good is not left to do
        # a packed run's images/s is its pack's; the pack trains packed_with runs at that speed at once
        speeds[(entry.dataset, entry.model)] += [h["images_per_s"] * (record.get("packed_with") or 1)
                                                 for h in (record or {}).get("history") or [] if h.get("images_per_s")]
        if state == runrecord.COMPLETE:
            complete[(entry.dataset, entry.model)].append(entry)
    for key, members in complete.items():  # analyze.py's choice, by the same rule
        chosen = choice.best_of(members, lambda e: best_value(found[e.run_id]), order=lambda e: e.run_id)
        if chosen is not None:
            groups[key]["best"] = {"run_id": chosen.run_id, "metric": selection_key(found[chosen.run_id]),
                                   "value": best_value(found[chosen.run_id]),
                                   **{axis: chosen.config[axis] for axis in AXES}}
    hours, unmeasured, sizes = 0.0, 0, {}
    for entry in left:
        measured = speeds[(entry.dataset, entry.model)]
        if entry.dataset not in sizes:
            try:
                sizes[entry.dataset] = estimate.split_sizes(entry.dataset, known)
            except errors.UsageError:
                sizes[entry.dataset] = None
        if not measured or not sizes[entry.dataset]:
            unmeasured += 1
            continue
        train, evaluated, _ = sizes[entry.dataset]
        epochs = entry.config["epochs"] - epochs_done(found[entry.run_id])
        hours += estimate.run_hours(train, evaluated, epochs, sum(measured) / len(measured))
    totals = {s: sum(g[s] for g in groups.values()) for s in STATES}
    return {"groups": list(groups.values()), "totals": totals, "failed": failed, "interrupted": interrupted,
            "hours_left": hours,
            "runs_without_measured_speed": unmeasured, "running_now": totals[runrecord.RUNNING],
            "processes_now": len(processes)}


SHOWN = 10  # interrupted runs listed by name in the table (a stopped Slurm array may leave hundreds)


def where_stopped(run: dict) -> str:
    """Where an interrupted run stopped: in an epoch (SIGTERM, its state saved mid-epoch), or after its last
    recorded epoch (killed outright: it resumes from that epoch's state)."""
    stopped = run["stopped_at"]
    if stopped:
        return (f"stopped by SIGTERM in epoch {stopped['epoch']} of {run['epochs']}, at step {stopped['step']} of "
                f"{stopped['steps']}")
    return f"killed after epoch {run['epochs_done']} of {run['epochs']}"


def hours(value: float) -> str:
    return f"{value:.1f} h" if value >= 1 else f"{value * 60:.1f} min"


def format_status(report: dict) -> str:
    width = max([len(g["model"]) for g in report["groups"]] + [5]) + 2
    lines = [f"{'dataset':<10}{'model':<{width}}" + "".join(f"{s:>12}" for s in STATES) + "  best so far"]
    for g in report["groups"]:
        best = g["best"]
        text = (f"{best['optimizer']} {best['schedule']} lr {best['lr']:g} wd {best['wd']:g}: "
                f"{best['metric']} {best['value']:.4f}") if best else "-"
        lines.append(f"{g['dataset']:<10}{g['model']:<{width}}" + "".join(f"{g[s]:>12}" for s in STATES)
                     + f"  {text}")
    lines.append(f"{'total':<{10 + width}}" + "".join(f"{report['totals'].get(s, 0):>12}" for s in STATES))
    if report["failed"]:
        lines += ["", "failed runs:"] + [f"  {f['run_id']}: {f['error']}" for f in report["failed"]]
    if report["interrupted"]:
        shown = report["interrupted"][:SHOWN]
        lines += ["", "interrupted runs (the same command resumes each where it stopped):"]
        lines += [f"  {run['run_id']}: {where_stopped(run)}" for run in shown]
        if len(report["interrupted"]) > len(shown):
            lines.append(f"  ... and {len(report['interrupted']) - len(shown)} more (--json lists them all)")
    left, unmeasured = report["hours_left"], report["runs_without_measured_speed"]
    running, parallel = report["running_now"], report["processes_now"]
    # hours_left counts process-hours (a pack's runs train together), so the wall-clock divides by processes
    parts = [f"{hours(left)} of training at each model's measured speed"
             + (f", about {hours(left / parallel)} with the {parallel} train.py processes now running "
                f"({running} runs)" if parallel else "")] if left else []
    parts += [f"{unmeasured} runs of models whose speed is not measured yet"] if unmeasured else []
    line = "time left: " + (" plus ".join(parts) or "none")
    return "\n".join(lines + ["", line])


def show_status(manifest: str | None, folders: list[str], stale_after: float, as_json: bool) -> int:
    """grid.py status: the report of the manifest's runs, or of the records in `folders` (default runs/)."""
    manifest = manifest or (DEFAULT_MANIFEST if Path(DEFAULT_MANIFEST).exists() and not folders else None)
    if manifest:
        entries = read_manifest(manifest)
    elif not folders and not Path("runs").is_dir():
        raise errors.UsageError(f"neither {DEFAULT_MANIFEST} nor runs/ in {Path.cwd()}: run in the study's folder, or "
                                "give the manifest (--manifest FILE) or the folder of run records")
    else:
        entries = []
        for folder in folders or ["runs"]:
            if not Path(folder).is_dir():
                raise errors.UsageError(f"{folder}: no such folder; give the folder of run records (train.py --out) "
                                        "or the manifest (--manifest FILE)")
            found = entries_from_records(Path(folder))
            if not found:
                raise errors.UsageError(f"{folder}: no run records (<run_id>.json) in it; give the folder train.py "
                                        "wrote to (--out) or the manifest (--manifest FILE)")
            entries += found
    report = status_report(entries, stale_after)
    print(json.dumps(report, indent=2, sort_keys=True) if as_json else format_status(report))
    return 0
