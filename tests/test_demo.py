"""demo.sh, the README's first command: fine-tunes on digits offline and analyses the runs, in its own folder."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO


def test_the_demo_trains_above_chance_into_its_own_folder(tmp_path):
    """demo.sh with one of its three models (the README gives all three's results): well above chance (10%)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHON": sys.executable, "DEMO_MODELS": "shufflenet_v2_x0_5",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    result = subprocess.run(["bash", str(REPO / "demo.sh")], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (tmp_path / "runs").exists() and (tmp_path / "demo" / "report" / "report.md").exists()
    with open(tmp_path / "demo" / "report" / "tables" / "best.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert row["model"] == "shufflenet_v2_x0_5" and float(row["report_value"]) > 0.5
