"""Successive halving over one model's configurations on one dataset (grid.py run --halving K).

With factor K every configuration trains for 1/K of the epochs; the best 1/K of them (by the best selection-split
metric so far, as the full grid's choice is made) continue for another 1/K; and so on, until the last ones reach
all the epochs. A configuration stops with `train.py --until-epoch E` and is continued later by the same command
without it, so the schedule (e.g. cosine over all the epochs) and the data order are those of the full run and no
epoch is trained twice. A configuration that diverges or fails is out of the race, and the next best of the rung
where it was chosen takes its place.

Everything here is computed from the run records alone, so a halving interrupted at any point continues where it
was, and `halving_outcome` can replay the decisions on the records of a finished full grid (benchmarks/halving.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from common import choice, runrecord
from common.runrecord import FINISHED, best_value, epochs_done
from sweep.state import Entry


def rung_epochs(epochs: int, factor: int) -> list[int]:
    """The epochs at which the configurations are compared: E/K, 2E/K, ..., E (rounded, at least 1)."""
    return sorted({max(1, round(epochs * (i + 1) / factor)) for i in range(factor)} | {epochs})


@dataclass
class Halving:
    rungs: list[int]                                         # the epochs of each rung
    alive: list[list[Entry]] = field(default_factory=list)   # the configurations of each rung reached so far
    work: list[Entry] = field(default_factory=list)          # still to train up to the current rung
    until_epoch: int | None = None                           # the current rung's epoch (None on the last rung)

    @property
    def done(self) -> bool:
        return not self.work

    def left(self, found: dict[str, dict | None], out: set[str]) -> list[Entry]:
        """The configurations still in the race that have not finished (those that may train again)."""
        return [m for m in self.alive[-1] if m.run_id not in out
                and not (found.get(m.run_id) and found[m.run_id]["status"] in FINISHED)]

    def annotation(self, entry: Entry, factor: int) -> dict:
        """What a record says about the halving that chose or stopped it."""
        last = max(i for i, members in enumerate(self.alive) if entry in members)
        return {"factor": factor, "rung_epochs": self.rungs, "group_size": len(self.alive[0]),
                "survivors": [len(members) for members in self.alive], "trained_to_epoch": self.rungs[last],
                "selected": last == len(self.rungs) - 1}


def halving_state(members: list[Entry], found: dict[str, dict | None], factor: int, out: set[str]) -> Halving:
    """Where the halving of one group stands. `found` maps run ids to records (None: no record yet); `out` holds
    the ids of runs that failed for good."""
    epochs = members[0].config["epochs"]
    state = Halving(rung_epochs(epochs, factor))
    alive = list(members)
    for rung, epoch in enumerate(state.rungs):
        state.alive.append(alive)

        def reached(m: Entry) -> bool:
            record = found.get(m.run_id)
            return m.run_id in out or bool(record) and (record["status"] in FINISHED or epochs_done(record) >= epoch)

        state.work = [m for m in alive if not reached(m)]
        if state.work:
            state.until_epoch = epoch if epoch < epochs else None
            return state
        if rung == len(state.rungs) - 1:
            return state
        racing = [m for m in alive if m.run_id not in out and found[m.run_id]["status"] != runrecord.DIVERGED]
        ranked = choice.ranked(racing, lambda m: best_value(found[m.run_id], epoch), order=lambda m: m.run_id)
        alive = ranked[:math.ceil(len(alive) / factor)]
    return state


def trained_epochs(members: list[Entry], state: Halving) -> int:
    """Epochs the halving trains in this group once finished (a diverged run stops early: counted in full)."""
    return sum(state.rungs[max(i for i, alive in enumerate(state.alive) if m in alive)] for m in members)


def halving_outcome(members: list[Entry], full_records: dict[str, dict], factor: int) -> dict:
    """Replay the halving on the records of a finished full grid (valid because a resumed run equals an
    uninterrupted one): the configuration it selects, the full grid's, and the epochs each trains."""
    def truncated(record: dict, epoch: int) -> dict:
        """The record as a run stopped at `epoch` would have it (a run diverging later is paused there)."""
        history = [e for e in record["history"] if e["epoch"] <= epoch]
        ended = record.get("diverged_epoch") or epochs_done(record)
        return {**record, "history": history, "status": record["status"] if ended <= epoch else runrecord.PAUSED}

    state = halving_state(members, {}, factor, set())
    found: dict[str, dict] = {}
    while not state.done:
        for m in state.work:
            epoch = state.until_epoch or m.config["epochs"]
            found[m.run_id] = truncated(full_records[m.run_id], epoch)
        state = halving_state(members, found, factor, set())

    def chosen_run(records_by_id: dict[str, dict], candidates: list[Entry]) -> str | None:
        """analyze.py's choice: the best complete run (common/choice.py's rule)."""
        complete = [m for m in candidates if records_by_id[m.run_id]["status"] == runrecord.COMPLETE]
        chosen = choice.best_of(complete, lambda m: best_value(records_by_id[m.run_id]), order=lambda m: m.run_id)
        return chosen.run_id if chosen else None

    return {"full_choice": chosen_run(full_records, members), "halving_choice": chosen_run(found, state.alive[-1]),
            "full_epochs": sum(m.config["epochs"] for m in members), "halving_epochs": trained_epochs(members, state)}
