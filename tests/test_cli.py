"""Every script's --help shows each default exactly once (issue 15.7), and says nothing of a default of None; a usage
error is one line that points at --help (issue 20.7)."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest

import analyze
import cache
import evaluate
import fid
import grid
import train

from conftest import REPO
from test_report import assert_each_default_shown_once


def subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += subparsers(sub)
    return found


@pytest.mark.parametrize("script", [train, evaluate, analyze, cache, fid, grid], ids=lambda m: m.__name__)
def test_help_shows_each_default_once(script):
    for parser in subparsers(script.build_parser()):
        assert_each_default_shown_once(parser)


@pytest.mark.parametrize("command", [
    ["train.py", "--dataset", "digits", "--lr", "fast"], ["evaluate.py", "runs/x", "--tta", "sideways"],
    ["analyze.py", "runs/", "--n-boot", "many"], ["splits.py", "eurosat", "--method", "halves"],
    ["fid.py", "a", "b", "--subset", "some"], ["models.py", "--jsn"], ["cache.py", "eurosat", "--workers", "all"],
    ["grid.py", "plan", "--datasets", "digits"], ["grid.py", "run", "--slots", "0"], ["grid.py", "status", "--jsn"],
    ["grid.py", "launch"]], ids=lambda command: " ".join(command[:2]))
def test_a_usage_error_is_one_line_that_points_at_help(command, tmp_path):
    """Not argparse's usage block (30 lines for train.py) before the error: the error alone, and where help is."""
    result = subprocess.run([sys.executable, str(REPO / command[0]), *command[1:]], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    prog = command[0] + (f" {command[1]}" if command[0] == "grid.py" and command[1] != "launch" else "")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"{prog}: error: "), result.stderr
    assert result.stderr.endswith(f" (see {prog} --help)\n")


def test_an_error_of_one_rank_is_reported_once_the_ranks_read_different_data(monkeypatch, capsys):
    from common import errors
    monkeypatch.setattr(errors, "_every_rank", False)
    monkeypatch.setenv("RANK", "1")
    errors.report("train.py", errors.DataError("img/7.png: truncated"))
    assert capsys.readouterr().err == ""  # before training: every rank has the same error, rank 0 says it
    errors.report_from_every_rank()
    errors.report("train.py", errors.DataError("img/7.png: truncated"))
    assert capsys.readouterr().err == "[rank 1] train.py: error: img/7.png: truncated\n"


def test_output_piped_into_head_ends_quietly(tmp_path):
    import subprocess
    import sys

    from conftest import REPO
    script = tmp_path / "many.py"
    script.write_text("from common import errors\n"
                      "def main():\n    for i in range(200000):\n        print('line', i)\n"
                      "errors.run_main('many.py', main)\n")
    result = subprocess.run(f"{sys.executable} {script} | head -1", shell=True, capture_output=True, text=True,
                            env={"PYTHONPATH": str(REPO)}, timeout=60)
    assert result.stdout == "line 0\n" and result.stderr == ""
