"""studies/benchmark_model.sh, issue 22's one command: a new model from a models file, trained on the six datasets
(fixtures, random weights) and ranked beside a results file exported from other runs."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from common import fileio

from conftest import REPO, read_csv
from test_studies import study

SIX = "cct20 aptos hpa melanoma cassava eurosat"


def test_benchmark_a_model_of_a_models_file_against_a_reference_on_the_six_datasets(tmp_path):
    """Issue 22's path on fixtures with random weights: the testbed's results published by one lab (here a grid of
    resnet18, exported), a model absent from the registry with its top-1 from a models file, trained by
    benchmark_model.sh on the six datasets and ranked beside the reference: marked new in Figure 1's points, the
    trend table and the leaderboard, which gives its score an interval."""
    study("paper_grid.sh", tmp_path, "--slots", "2", DATASETS=SIX, MODELS="resnet18")
    smoke = tmp_path / "smoke"
    exported = subprocess.run([sys.executable, str(REPO / "analyze.py"), "runs", "--n-boot", "200", "--export",
                               str(tmp_path / "testbed.json"), "--out", "reports/testbed"], cwd=smoke,
                              capture_output=True, text=True, timeout=300)
    assert exported.returncode == 0, exported.stderr
    (tmp_path / "models.json").write_text(json.dumps({"models": [{
        "name": "my_net", "label": "My network", "library": "torchvision", "constructor": "mobilenet_v3_small",
        "weights_tag": "IMAGENET1K_V1", "input_size": 224, "imagenet_top1": 71.5,
        "top1_source": "our measurement (evaluate.py --imagenet-val)"}]}))
    result = study("benchmark_model.sh", tmp_path, "my_net", "--models-file", "models.json", "--reference",
                   "testbed.json", "--", "--slots", "2", DATASETS=SIX)
    assert result.stdout.startswith("12 runs"), result.stdout  # grid.py estimate first: 6 datasets x 2 configurations
    records = records_in(smoke / "runs-benchmark")
    assert {r["config"]["dataset"] for r in records} == set(SIX.split())
    assert {(r["model"]["name"], r["model"]["imagenet_top1"]) for r in records} == {("my_net", 71.5)}
    report = smoke / "reports" / "benchmark-my_net"
    header, rows = read_csv(report / "tables" / "best.csv")  # Figure 1's points
    assert {(row[header.index("model")], row[header.index("new")]) for row in rows} == {("my_net", "True"),
                                                                                         ("resnet18", "False")}
    header, rows = read_csv(report / "tables" / "leaderboard.csv")
    board = {row[header.index("model")]: row for row in rows}
    assert set(board) == {"my_net", "resnet18"} and board["my_net"][header.index("new")] == "True"
    low, score, high = (float(board["my_net"][header.index(c)]) for c in ("score_low", "score", "score_high"))
    assert low <= score <= high
    header, rows = read_csv(report / "tables" / "trends.csv")
    assert all("my_net" in row[header.index("new")] for row in rows if row[header.index("new")])
    assert "**my_net** (new)" in (report / "report.md").read_text()
    assert (report / "figures" / "figure1.png").is_file()
    exported = json.loads((report / "my_net-results.json").read_text())  # the model's own, not the reference's too
    assert {(r["dataset"], r["model"]) for r in exported["results"]} == {(d, "my_net") for d in SIX.split()}


def records_in(folder: Path) -> list[dict]:
    return [fileio.read_json(path) for path in sorted(folder.glob("*.json"))]


def test_a_benchmark_on_a_halving_budget_says_so(tmp_path, split_file):
    """--budget halving: successive halving (factor 3) over the configurations, and the report says the score is
    that of the configuration halving kept."""
    study("benchmark_model.sh", tmp_path, "resnet18", "--budget", "halving", DATASETS="digits",
          PLAN_OPTIONS=f"--epochs 3 --split-file {split_file}")
    runs = [fileio.read_json(path) for path in sorted((tmp_path / "smoke" / "runs-benchmark").glob("*.json"))]
    assert sorted(len(r["history"]) for r in runs) == [1, 3] and all(r["halving"]["factor"] == 3 for r in runs)
    report = (tmp_path / "smoke" / "reports" / "benchmark-resnet18" / "report.md").read_text()
    assert "Configurations were chosen by successive halving" in report
    refused = study("benchmark_model.sh", tmp_path, "resnet18", "--budget", "halving", "--slurm", check=False)
    assert refused.returncode == 2 and "--budget halving trains here" in refused.stderr
