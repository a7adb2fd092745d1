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
