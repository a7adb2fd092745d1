"""analyze.py's settings, typed once from its command line and checked before any record is read."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from common import cli, errors


@dataclass(frozen=True)
class AnalyzeOptions:
    records: tuple[str, ...] = ()
    out: str = "reports"
    datasets: str = "all"
    models: str = "all"
    metric: str | None = None
    threshold: float = 70.0
    slope_threshold: float = 0.05
    logit: bool = False
    n_boot: int = 10000
    level: float = 0.95
    seed: int = 0
    compare: str | None = None
    grid: str = "per-optimizer"
    clip_x: str = "linear-probe"
    reference: tuple[str, ...] | None = None
    export: str | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> AnalyzeOptions:
        options = cli.typed(cls, args)
        cli.check_interval_settings(options.level, options.n_boot)
        if not options.records and not options.reference:
            raise errors.UsageError("give run records (files or folders) to analyse, or --reference FILE")
        return options

    def analysis_arguments(self) -> dict[str, Any]:
        """pipeline.analyze's arguments."""
        return {"paths": self.records, "datasets": names(self.datasets), "model_names": names(self.models),
                "metric": self.metric, "threshold": self.threshold, "slope_threshold": self.slope_threshold,
                "use_logit": self.logit, "n_boot": self.n_boot, "level": self.level, "seed": self.seed,
                "grid": self.grid, "compare": self.compare, "clip_x": self.clip_x, "references": self.reference or ()}


def names(text: str) -> list[str] | None:
    """A comma-separated list of names; None (every one) for 'all' or nothing."""
    listed = [name.strip() for name in text.split(",") if name.strip()]
    return None if listed in ([], ["all"]) else listed
