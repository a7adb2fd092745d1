"""Every script's --help shows each default exactly once (issue 15.7), and says nothing of a default of None."""
from __future__ import annotations

import argparse

import pytest

import analyze
import cache
import evaluate
import fid
import grid
import train

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
